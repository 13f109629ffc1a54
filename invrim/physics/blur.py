"""Blur by a point-spread function (1-, 2- or 3-D; one PSF or one per sample)."""
from __future__ import annotations

import math
from typing import Any, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import SPATIAL_DIMS, LinearForwardModel

_CONV = {1: (F.conv1d,), 2: (F.conv2d,), 3: (F.conv3d,)}
_BOUNDARIES = ("same", "periodic")


def gaussian_psf(size: int, sigma: float, dimensions: int = 2, dtype=torch.float32) -> Tensor:
    """A normalised Gaussian PSF of odd ``size`` along each of ``dimensions`` axes."""
    if size < 1 or size % 2 == 0:
        raise ValueError(f"PSF size must be a positive odd integer, got {size}")
    if sigma <= 0:
        raise ValueError(f"PSF sigma must be positive, got {sigma}")
    r = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-0.5 * (r / sigma) ** 2)
    psf = g
    for _ in range(dimensions - 1):
        psf = psf[..., None] * g
    return (psf / psf.sum()).to(dtype)


class Blur(LinearForwardModel):
    """Convolution with a point-spread function: ``y = psf * x``.

    Parameters
    ----------
    psf
        The kernel, shape ``(k1[, k2[, k3]])`` with odd sizes, centred on its middle pixel.
        Omit it to pass a per-sample ``psf`` of shape ``(B, k1, ...)`` to every call instead.
    dimensions
        Number of spatial axes (1, 2 or 3); taken from ``psf`` when given.
    boundary
        ``"same"`` (zero padding, output the size of the input) or ``"periodic"`` (circular).
    psf_sigma, psf_size
        A Gaussian PSF instead of ``psf``: ``psf_sigma`` (pixels) fixes it, a range
        ``[low, high]`` makes :meth:`sample_parameters` draw one PSF per sample with a width
        uniform in the range (for simulation). ``psf_size`` (odd) defaults to ``2⌈3σ_max⌉ + 1``.
        ``invrim simulate`` uses ``psf_sigma=1.5`` when given neither ``psf`` nor ``psf_sigma``,
        and takes ``dimensions`` from the ground truth (the generator's or the ``--from`` file's).

    Notes
    -----
    ``x`` has shape ``(B, C, *spatial)``; every channel is blurred by the same PSF. This is a true
    convolution (the PSF is flipped), as in ``scipy.signal.convolve(..., mode="same")``.
    """

    name = "blur"
    x_dims = ("channel", "height", "width")
    y_dims = ("channel", "height", "width")

    def __init__(self, psf: Optional[Tensor] = None, dimensions: Optional[int] = None,
                 boundary: str = "same", psf_sigma: Union[float, Sequence[float], None] = None,
                 psf_size: Optional[int] = None):
        super().__init__()
        if boundary not in _BOUNDARIES:
            raise ValueError(f"boundary must be one of {_BOUNDARIES}, got {boundary!r}")
        self.psf_sigma, self.psf_size = None, None
        if psf_sigma is not None:
            if psf is not None:
                raise ValueError("give either psf or psf_sigma, not both")
            bad = ValueError(f"psf_sigma must be a positive number or a range [low, high], got {psf_sigma!r}")
            values = psf_sigma if isinstance(psf_sigma, (list, tuple)) else [psf_sigma]
            if any(isinstance(v, (str, bytes, bool)) for v in values):
                raise bad
            try:
                sigmas = [float(v) for v in values]
            except (TypeError, ValueError):
                raise bad from None
            if len(sigmas) not in (1, 2) or not all(v > 0 for v in sigmas) or sigmas != sorted(sigmas):
                raise bad
            if psf_size is None:
                psf_size = 2 * math.ceil(3 * sigmas[-1]) + 1
            if isinstance(psf_size, bool) or not isinstance(psf_size, int) or psf_size < 1 or psf_size % 2 == 0:
                raise ValueError(f"psf_size must be a positive odd integer, got {psf_size!r}")
            dimensions = 2 if dimensions is None else dimensions
            self.psf_sigma = sigmas[0] if len(sigmas) == 1 else sigmas
            self.psf_size = psf_size
            if len(sigmas) == 1:
                psf = gaussian_psf(psf_size, sigmas[0], dimensions if dimensions in _CONV else 1)
        elif psf_size is not None:
            raise ValueError("psf_size is only used with psf_sigma")
        if psf is not None:
            psf = torch.as_tensor(psf)
            if dimensions is not None and psf.dim() != dimensions:
                raise ValueError(f"psf has {psf.dim()} axes but dimensions={dimensions}")
            dimensions = psf.dim()
            self._check_psf(psf, batched=False)
            self.register_buffer("psf", psf.clone())
        else:
            self.psf = None
        if dimensions not in _CONV:
            raise ValueError(f"dimensions must be 1, 2 or 3, got {dimensions}")
        self.dimensions = dimensions
        self.boundary = boundary
        spatial = SPATIAL_DIMS[dimensions]
        self.x_dims = self.y_dims = ("channel", *spatial)
        self.param_dims = {"psf": tuple(f"psf_{d}" for d in spatial)}

    #: The width (pixels) of the Gaussian PSF that ``invrim simulate --forward-model blur`` uses
    #: when no PSF option is given (see :meth:`simulation_defaults`).
    DEFAULT_PSF_SIGMA = 1.5

    @classmethod
    def simulation_defaults(cls, options: dict[str, Any]) -> dict[str, Any]:
        """The options ``invrim simulate`` adds to ``options`` (the command line's): with neither
        ``psf`` nor ``psf_sigma``, a Gaussian PSF of ``psf_sigma=1.5`` px. (The constructor itself
        keeps no default PSF: ``Blur(dimensions=2)`` takes a per-sample ``psf`` in every call.)"""
        if options.get("psf") is None and options.get("psf_sigma") is None:
            return {"psf_sigma": cls.DEFAULT_PSF_SIGMA}
        return {}

    @classmethod
    def example(cls):
        g = torch.Generator().manual_seed(0)
        psf = torch.rand(2, 5, 3, generator=g)
        return cls(dimensions=2), torch.randn(2, 2, 12, 9, generator=g), {"psf": psf}

    def config(self) -> dict[str, Any]:
        cfg: dict[str, Any] = {"dimensions": self.dimensions, "boundary": self.boundary}
        if self.psf_sigma is not None:
            cfg.update(psf_sigma=self.psf_sigma, psf_size=self.psf_size)
        elif self.psf is not None:
            cfg["psf"] = self.psf.tolist()
        return cfg

    def sample_parameters(self, x: Tensor, generator: Optional[torch.Generator] = None) -> dict[str, Tensor]:
        """One Gaussian ``psf`` per sample, width uniform in ``psf_sigma = [low, high]``."""
        if not isinstance(self.psf_sigma, list):
            return {}
        low, high = self.psf_sigma
        sigmas = low + (high - low) * torch.rand(x.shape[0], generator=generator, dtype=torch.float64)
        psf = torch.stack([gaussian_psf(self.psf_size, float(s), self.dimensions, dtype=x.dtype) for s in sigmas])
        return {"psf": psf.to(x.device)}

    def _check_psf(self, psf: Tensor, batched: bool) -> None:
        k = psf.shape[1:] if batched else psf.shape
        if any(s % 2 == 0 for s in k):
            raise ValueError(f"psf sizes must be odd (centred kernel), got {tuple(k)}")

    def _kernel(self, x: Tensor, psf: Optional[Tensor]) -> tuple[Tensor, bool]:
        if psf is None:
            if self.psf is None:
                raise ValueError("Blur was built without a psf: pass psf=... of shape (B, k, ...)")
            return self.psf.to(dtype=x.dtype, device=x.device), False
        psf = psf.to(dtype=x.dtype, device=x.device)
        if psf.dim() == self.dimensions:
            return psf, False
        if psf.dim() != self.dimensions + 1 or psf.shape[0] != x.shape[0]:
            raise ValueError(f"per-sample psf must have shape (B={x.shape[0]}, k1, ...) with "
                             f"{self.dimensions} kernel axes, got {tuple(psf.shape)}")
        return psf, True

    def _blur(self, x: Tensor, psf: Optional[Tensor], adjoint: bool) -> Tensor:
        d = self.dimensions
        if x.dim() != d + 2:
            raise ValueError(f"Blur expects x of shape (B, C, {d} spatial axes), got {tuple(x.shape)}")
        kernel, batched = self._kernel(x, psf)
        ks = kernel.shape[-d:]
        if any(k > n for k, n in zip(ks, x.shape[2:])):
            raise ValueError(f"psf {tuple(ks)} is larger than the signal {tuple(x.shape[2:])}")
        if self.boundary == "periodic":
            return self._periodic(x, kernel, batched, adjoint)
        B, C = x.shape[:2]
        conv = _CONV[d][0]
        # F.conv*d is a correlation: the flipped kernel gives a true convolution; with zero 'same'
        # padding and an odd kernel its adjoint is the correlation with the kernel itself (much
        # faster on CPU than conv_transpose).
        w = kernel if adjoint else torch.flip(kernel, dims=list(range(-d, 0)))
        pad = [k // 2 for k in ks]
        if batched:
            w = w.repeat_interleave(C, dim=0).unsqueeze(1)           # (B*C, 1, k...)
            inp = x.reshape(1, B * C, *x.shape[2:])
            groups = B * C
        else:
            w = w.expand(C, 1, *ks)                                     # depthwise, same PSF
            inp, groups = x, C
        out = conv(inp, w, padding=pad, groups=groups)
        return out.reshape(x.shape)

    def _periodic(self, x: Tensor, kernel: Tensor, batched: bool, adjoint: bool) -> Tensor:
        d = self.dimensions
        axes = list(range(-d, 0))
        size = x.shape[-d:]
        # Place the kernel centre at the origin, zero-padded to the signal size.
        full = torch.zeros(*kernel.shape[:-d], *size, dtype=kernel.dtype, device=kernel.device)
        full[(...,) + tuple(slice(0, k) for k in kernel.shape[-d:])] = kernel
        full = torch.roll(full, shifts=[-(k // 2) for k in kernel.shape[-d:]], dims=axes)
        H = torch.fft.rfftn(full, dim=axes)
        if batched:
            H = H.unsqueeze(1)
        if adjoint:
            H = H.conj()
        return torch.fft.irfftn(torch.fft.rfftn(x, dim=axes) * H, s=size, dim=axes)

    def forward(self, x: Tensor, psf: Optional[Tensor] = None, **params: Any) -> Tensor:
        return self._blur(x, psf, adjoint=False)

    def adjoint(self, y: Tensor, psf: Optional[Tensor] = None, **params: Any) -> Tensor:
        return self._blur(y, psf, adjoint=True)
