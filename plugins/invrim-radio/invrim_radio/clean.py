"""Högbom CLEAN, the radio astronomer's classical deconvolution, batched over samples.

1. the naturally weighted dirty image ``I_D`` and dirty beam ``B_D`` (on a grid twice the image's
   size, so that it can be shifted to any pixel; both peak-normalised, Jy/beam);
2. Högbom (1974): repeatedly find the peak ``|I_R|`` of the residual, add ``g · I_R(peak)`` to the
   component model there and subtract ``g · I_R(peak) · B_D`` shifted to it, until the peak falls
   below ``threshold × σ_D`` (``σ_D = 1/√Σw``, the dirty image's thermal noise under natural
   weighting) or after ``iterations`` components;
3. the restoring beam: an elliptical Gaussian fitted to the main lobe of ``B_D`` (least squares on
   ``log B_D`` over the pixels of the central 5 × 5 above 0.3);
4. the restored image in the units of the sky (Jy/pixel): the components convolved with the
   unit-sum restoring beam, plus the residual divided by the beam area (pixels).
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor

__all__ = ["dirty_beam", "fit_restoring_beam", "gaussian_beam", "hogbom_clean", "clean_reconstruction",
           "dirty_noise"]


def dirty_beam(model, uv: Tensor, weight: Optional[Tensor], like: Tensor) -> Tensor:
    """The dirty beam (PSF) ``(B, 2H, 2W)``, peak 1 at pixel ``(H, W)``."""
    B = like.shape[0]
    V = torch.as_tensor(uv).shape[1]
    ones = torch.ones(B, V, dtype=torch.complex128 if like.dtype == torch.float64 else torch.complex64,
                      device=like.device)
    return model.dirty_image(ones, uv, weight, shape=(2 * model.height, 2 * model.width))


def dirty_noise(weight: Optional[Tensor], V: int, like: Tensor) -> Tensor:
    """``σ_D = 1/√Σw`` per sample: the thermal noise of a naturally weighted dirty image, ``(B,)``."""
    if weight is None:
        return torch.full((like.shape[0],), float("inf"), dtype=like.dtype, device=like.device)
    w = torch.as_tensor(weight).to(like.device, like.dtype).clamp_min(0).expand(like.shape[0], V)
    return w.sum(1).clamp_min(torch.finfo(like.dtype).tiny).rsqrt()


def fit_restoring_beam(psf: Tensor) -> tuple[Tensor, Tensor]:
    """Fit ``exp(−(a dx² + 2b dx dy + c dy²)/2)`` to the main lobe of ``psf`` ``(B, 2H, 2W)``.

    Returns ``(abc (B, 3), area (B,))``: the quadratic form and the beam area ``2π/√(ac − b²)`` in
    pixels. Falls back to a circular beam where the fit is not positive definite.
    """
    device, dtype = psf.device, psf.dtype
    psf = psf.detach().cpu()
    B, H2, W2 = psf.shape
    cy, cx = H2 // 2, W2 // 2
    r = 2
    dy, dx = torch.meshgrid(torch.arange(-r, r + 1, dtype=torch.float64), torch.arange(-r, r + 1, dtype=torch.float64),
                            indexing="ij")
    patch = psf[:, cy - r:cy + r + 1, cx - r:cx + r + 1].to(torch.float64)
    use = (patch > 0.3) & ((dx != 0) | (dy != 0))
    design = torch.stack([dx ** 2, 2 * dx * dy, dy ** 2], -1).reshape(-1, 3)           # (25, 3)
    target = -2 * torch.log(patch.clamp_min(1e-6)).reshape(B, -1)                     # (B, 25)
    wts = (use.reshape(B, -1).to(torch.float64) * patch.reshape(B, -1).clamp_min(0))
    abc = torch.empty(B, 3, dtype=torch.float64)
    for b in range(B):
        w = wts[b]
        ok = False
        if int((w > 0).sum()) >= 3:
            A = design * w[:, None]                        # weighted normal equations (3 x 3)
            sol, info = torch.linalg.solve_ex(A.T @ design, (A.T @ target[b])[:, None])
            a, bb, c = (float(v) for v in sol[:, 0])
            ok = int(info) == 0 and a > 0 and c > 0 and a * c - bb * bb > 0 and math.isfinite(a + bb + c)
        if not ok:                        # circular: from the mean fall-off of the 4 neighbours
            ring = patch[b][[r - 1, r + 1, r, r], [r, r, r - 1, r + 1]].clamp(1e-6, 0.999)
            a = c = float((-2 * torch.log(ring)).mean())
            bb = 0.0
        abc[b] = torch.tensor([a, bb, c], dtype=torch.float64)
    area = 2 * math.pi / torch.sqrt(abc[:, 0] * abc[:, 2] - abc[:, 1] ** 2)
    return abc.to(device), area.to(device=device, dtype=dtype)


def gaussian_beam(abc: Tensor, shape: tuple[int, int], dtype=torch.float64) -> Tensor:
    """The restoring beam (peak 1 at ``(H//2, W//2)``) on a ``shape`` grid, ``(B, H, W)``."""
    H, W = shape
    dy = (torch.arange(H, dtype=torch.float64) - H // 2)[:, None]
    dx = (torch.arange(W, dtype=torch.float64) - W // 2)[None, :]
    a, b, c = (abc[:, k, None, None].to(torch.float64).cpu() for k in range(3))
    return torch.exp(-0.5 * (a * dx ** 2 + 2 * b * dx * dy + c * dy ** 2)).to(dtype)


def hogbom_clean(dirty: Tensor, psf: Tensor, gain: float = 0.1, iterations: int = 1000,
                 threshold: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
    """Högbom CLEAN of ``dirty`` ``(B, H, W)`` with the dirty beam ``psf`` ``(B, 2H, 2W)`` (peak at
    ``(H, W)``). Stops per sample when ``max |residual| ≤ threshold`` (``(B,)``, default 0).
    Returns ``(components (B, H, W), residual (B, H, W))``, with ``dirty = components ⊛ psf + residual``."""
    B, H, W = dirty.shape
    if tuple(psf.shape) != (B, 2 * H, 2 * W):
        raise ValueError(f"psf must have shape {(B, 2 * H, 2 * W)}, got {tuple(psf.shape)}")
    residual = dirty.clone()
    model = torch.zeros_like(dirty)
    limit = torch.zeros(B, dtype=dirty.dtype, device=dirty.device) if threshold is None else \
        torch.as_tensor(threshold, dtype=dirty.dtype, device=dirty.device).expand(B)
    rows0 = torch.arange(H, device=dirty.device)
    cols0 = torch.arange(W, device=dirty.device)
    batch = torch.arange(B, device=dirty.device)
    flat_model = model.view(B, -1)
    for _ in range(int(iterations)):
        flat = residual.reshape(B, -1)
        idx = flat.abs().argmax(1)
        peak = flat[batch, idx]
        active = peak.abs() > limit
        if not bool(active.any()):
            break
        step = gain * peak * active
        py, px = idx // W, idx % W
        rows = (H - py)[:, None] + rows0                    # (B, H)
        cols = (W - px)[:, None] + cols0                    # (B, W)
        shifted = psf[batch[:, None, None], rows[:, :, None], cols[:, None, :]]
        residual = residual - step[:, None, None] * shifted
        flat_model[batch, idx] += step
    return model, residual


def _convolve(image: Tensor, kernel: Tensor) -> Tensor:
    """Linear convolution of ``image`` ``(B, H, W)`` with a centred kernel ``(B, H, W)``
    (centre ``(H//2, W//2)``) by zero-padded FFTs."""
    B, H, W = image.shape
    pad = torch.zeros(B, 2 * H, 2 * W, dtype=image.dtype, device=image.device)
    pad[:, :H, :W] = image
    k = torch.zeros_like(pad)
    k[:, :H, :W] = kernel.to(image.device, image.dtype)
    k = torch.roll(k, shifts=(-(H // 2), -(W // 2)), dims=(1, 2))
    out = torch.fft.irfft2(torch.fft.rfft2(pad) * torch.fft.rfft2(k), s=(2 * H, 2 * W))
    return out[:, :H, :W]


def clean_reconstruction(model, y: Tensor, uv: Tensor, weight: Optional[Tensor], gain: float = 0.1,
                         iterations: int = 1000, threshold: float = 3.0, return_parts: bool = False):
    """Högbom CLEAN of the visibilities ``y`` ``(B, V)`` of ``model`` (a :class:`RadioInterferometry`),
    restored in Jy/pixel (no primary-beam correction): ``(B, H, W)``; with ``return_parts`` also a
    dict of the dirty image, dirty beam, components, residual, beam ``abc`` and area."""
    with torch.no_grad():
        dirty = model.dirty_image(y, uv, weight)
        psf = dirty_beam(model, uv, weight, like=dirty)
        abc, area = fit_restoring_beam(psf)
        sigma_d = dirty_noise(weight, y.shape[1], dirty)
        limit = torch.where(torch.isfinite(sigma_d), threshold * sigma_d, torch.zeros_like(sigma_d))
        comps, residual = hogbom_clean(dirty, psf, gain=gain, iterations=iterations, threshold=limit)
        beam = gaussian_beam(abc, (model.height, model.width), dirty.dtype).to(dirty.device)
        beam = beam / beam.sum((1, 2), keepdim=True)
        restored = _convolve(comps, beam) + residual / area[:, None, None]
    if return_parts:
        return restored, {"dirty": dirty, "psf": psf, "components": comps, "residual": residual,
                          "beam": abc, "area": area}
    return restored
