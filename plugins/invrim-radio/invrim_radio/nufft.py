"""Non-uniform discrete Fourier transforms between an image grid and visibilities, with autograd.

Convention (one place): an image ``z`` ``(B, H, W)`` (complex) on pixels ``(h, w)`` whose centres are
at ``(h − H//2, w − W//2)`` pixels from the phase centre, and frequencies ``(fv, fu)`` ``(B, V)`` in
cycles per pixel (``fu = u · δ``, ``fv = v · δ`` for ``(u, v)`` in wavelengths and a pixel of ``δ``
radians; ``u`` along the width, ``v`` along the height), give the visibilities

    vis[b, k] = Σ_{h, w} z[b, h, w] · exp(−2πi (fu[b, k] (w − W//2) + fv[b, k] (h − H//2)))   (type 2)

and the adjoint (type 1), ``img[b, h, w] = Σ_k vis[b, k] · exp(+2πi (…))``. Each sample has its own
points, so the transforms loop over the batch.

Backends:

* ``"finufft"`` — the Flatiron NUFFT (``pip install finufft``; CPU, float32 and float64). Type 1
  is the exact adjoint of type 2 (same spreading kernel), to rounding. Default tolerance ``eps``:
  ``1e-10`` in float64, ``1e-6`` in float32 (relative error against the direct sum: ~1e-10 and
  ~4e-6, see the plugin's RESULTS.md).
* ``"dft"`` — the direct sum in pure torch, separable in the two axes
  (``O(B · V · H · W)``): exact, any device, autograd-native; the reference for the tests and the
  choice for tiny problems or a GPU.

Both are differentiable in the image (or the visibilities), not in the frequencies.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor

__all__ = ["BACKENDS", "nufft_type2", "nufft_type1", "dft_type2", "dft_type1", "default_eps"]

BACKENDS = ("finufft", "dft")


def default_eps(dtype: torch.dtype) -> float:
    """The finufft tolerance used when none is given: 1e-10 in double, 1e-6 in single precision."""
    return 1e-10 if dtype in (torch.float64, torch.complex128) else 1e-6


def _complex_of(dtype: torch.dtype) -> torch.dtype:
    return {torch.float32: torch.complex64, torch.float64: torch.complex128}.get(dtype, dtype)


# ----------------------------------------------------------------------------------------------
# the direct sum (pure torch)
# ----------------------------------------------------------------------------------------------
def _phasors(f: Tensor, n: int, sign: float) -> Tensor:
    """``exp(sign · 2πi f (j − n//2))`` of shape ``(B, V, n)``, computed in ``f``'s precision."""
    j = torch.arange(n, dtype=f.dtype, device=f.device) - (n // 2)
    phase = (sign * 2 * math.pi) * f[..., None] * j
    return torch.polar(torch.ones_like(phase), phase)


def dft_type2(image: Tensor, fu: Tensor, fv: Tensor) -> Tensor:
    """Direct sum, image ``(B, H, W)`` → visibilities ``(B, V)`` (see the module convention)."""
    _, H, W = image.shape
    eu = _phasors(fu.to(image.real.dtype), W, -1.0)             # (B, V, W)
    ev = _phasors(fv.to(image.real.dtype), H, -1.0)             # (B, V, H)
    rows = torch.einsum("bhw,bkw->bkh", image, eu)              # Σ_w z e_u   (B, V, H)
    return (rows * ev).sum(-1)


def dft_type1(vis: Tensor, fu: Tensor, fv: Tensor, shape: tuple[int, int]) -> Tensor:
    """Direct sum, visibilities ``(B, V)`` → image ``(B, H, W)``: the exact adjoint of :func:`dft_type2`."""
    H, W = shape
    eu = _phasors(fu.to(vis.real.dtype), W, 1.0)                # (B, V, W)
    ev = _phasors(fv.to(vis.real.dtype), H, 1.0)                # (B, V, H)
    return torch.einsum("bk,bkh,bkw->bhw", vis, ev, eu)


# ----------------------------------------------------------------------------------------------
# finufft, wrapped as a pair of autograd functions (each one's backward is the other)
# ----------------------------------------------------------------------------------------------
def _finufft():
    try:
        import finufft
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError("the 'finufft' backend needs finufft: pip install finufft "
                          "(or use backend='dft', pure torch)") from None
    return finufft


def _threads() -> int:
    return max(1, torch.get_num_threads())


def _points(f: Tensor, dtype) -> "object":
    import numpy as np
    # finufft wants angles 2π f in [-3π, 3π); the sum is 2π-periodic in them, so wrap to [-π, π)
    a = 2 * np.pi * f.detach().cpu().to(torch.float64).numpy()
    a = (a + np.pi) % (2 * np.pi) - np.pi
    return np.ascontiguousarray(a.astype(dtype))


def _type2_numpy(image: Tensor, fu: Tensor, fv: Tensor, eps: Optional[float]) -> Tensor:
    import numpy as np
    fin = _finufft()
    real = np.float64 if image.dtype == torch.complex128 else np.float32
    eps = default_eps(image.dtype) if eps is None else eps
    z = image.detach().cpu().numpy()
    out = np.empty(fu.shape, dtype=z.dtype)
    for b in range(z.shape[0]):
        if fu.shape[1] == 0:
            continue
        # finufft's first coordinate runs along the first image axis (height: v)
        out[b] = fin.nufft2d2(_points(fv[b], real), _points(fu[b], real), np.ascontiguousarray(z[b]),
                              isign=-1, eps=eps, modeord=0, nthreads=_threads())
    return torch.from_numpy(out).to(image.device)


def _type1_numpy(vis: Tensor, fu: Tensor, fv: Tensor, shape: tuple[int, int], eps: Optional[float]) -> Tensor:
    import numpy as np
    fin = _finufft()
    real = np.float64 if vis.dtype == torch.complex128 else np.float32
    eps = default_eps(vis.dtype) if eps is None else eps
    c = vis.detach().cpu().numpy()
    out = np.zeros((c.shape[0], *shape), dtype=c.dtype)
    for b in range(c.shape[0]):
        if fu.shape[1] == 0:
            continue
        out[b] = fin.nufft2d1(_points(fv[b], real), _points(fu[b], real), np.ascontiguousarray(c[b]),
                              n_modes=tuple(shape), isign=1, eps=eps, modeord=0, nthreads=_threads())
    return torch.from_numpy(out).to(vis.device)


class _Type2(torch.autograd.Function):
    @staticmethod
    def forward(ctx, image, fu, fv, eps):
        ctx.save_for_backward(fu, fv)
        ctx.eps, ctx.shape = eps, tuple(image.shape[-2:])
        return _type2_numpy(image, fu, fv, eps)

    @staticmethod
    def backward(ctx, grad):                  # for a C-linear map A, PyTorch's vjp is Aᴴ grad
        fu, fv = ctx.saved_tensors
        return _Type1.apply(grad, fu, fv, ctx.shape, ctx.eps), None, None, None


class _Type1(torch.autograd.Function):
    @staticmethod
    def forward(ctx, vis, fu, fv, shape, eps):
        ctx.save_for_backward(fu, fv)
        ctx.eps = eps
        return _type1_numpy(vis, fu, fv, shape, eps)

    @staticmethod
    def backward(ctx, grad):
        fu, fv = ctx.saved_tensors
        return _Type2.apply(grad.contiguous(), fu, fv, ctx.eps), None, None, None, None


def _check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"unknown NUFFT backend {backend!r}; choose one of {', '.join(BACKENDS)}")


def nufft_type2(image: Tensor, fu: Tensor, fv: Tensor, backend: str = "finufft",
                eps: Optional[float] = None) -> Tensor:
    """Image ``(B, H, W)`` (complex) → visibilities ``(B, V)`` at ``(fu, fv)`` cycles per pixel."""
    _check_backend(backend)
    if backend == "dft":
        return dft_type2(image, fu, fv)
    return _Type2.apply(image.contiguous(), fu, fv, eps)


def nufft_type1(vis: Tensor, fu: Tensor, fv: Tensor, shape: tuple[int, int], backend: str = "finufft",
                eps: Optional[float] = None) -> Tensor:
    """Visibilities ``(B, V)`` (complex) → image ``(B, H, W)``: the adjoint of :func:`nufft_type2`."""
    _check_backend(backend)
    if backend == "dft":
        return dft_type1(vis, fu, fv, tuple(shape))
    return _Type1.apply(vis.contiguous(), fu, fv, tuple(int(s) for s in shape), eps)
