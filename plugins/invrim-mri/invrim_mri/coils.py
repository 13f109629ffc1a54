"""Simulated coil sensitivity maps: smooth complex Gaussian-profile coils around the image.

Coil ``c`` sits on a circle of radius ``radius`` (in units of the half field of view) at angle
``θ_c = θ_0 + 2π c / coils``; its magnitude is a Gaussian of width ``width`` centred there and
its phase is smooth (a linear ramp towards the coil plus a random low-order polynomial phase).
The maps are normalised so that ``Σ_c |S_c|² = 1`` at every pixel, so the SENSE combination is
the adjoint of the multi-coil model.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor

from .masks import _generator

__all__ = ["gaussian_coil_maps", "normalize_sensitivities", "rss"]


def normalize_sensitivities(sens: Tensor, eps: float = 0.0) -> Tensor:
    """Divide complex maps ``(…, coils, H, W)`` by ``sqrt(Σ_c |S_c|²)`` (pixels with zero power stay 0)."""
    power = (sens.real ** 2 + sens.imag ** 2).sum(dim=-3, keepdim=True) if sens.is_complex() \
        else (sens ** 2).sum(dim=-3, keepdim=True)
    norm = torch.sqrt(power + eps)
    return torch.where(norm > 0, sens / torch.where(norm > 0, norm, 1.0), 0.0)


def rss(sens: Tensor) -> Tensor:
    """Root sum of squares over the coil axis (``-3``)."""
    return torch.sqrt((sens.abs() ** 2).sum(dim=-3))


def gaussian_coil_maps(coils: int, height: int, width: int, *, batch: Optional[int] = None,
                       radius: float = 1.2, coil_width: float = 0.9, phase_strength: float = 1.0,
                       rotate: bool = True, generator: Optional[torch.Generator] = None,
                       seed: Optional[int] = None, dtype: torch.dtype = torch.complex64) -> Tensor:
    """Smooth complex sensitivity maps normalised to ``Σ_c |S_c|² = 1``.

    Parameters
    ----------
    coils, height, width
        Number of coils and image size.
    batch
        Draw ``batch`` independent sets, shape ``(batch, coils, H, W)``; ``None``: one set
        ``(coils, H, W)``.
    radius
        Distance of the coil centres from the image centre, in half fields of view (> 0).
    coil_width
        Standard deviation of each coil's Gaussian profile, in half fields of view (> 0).
    phase_strength
        Scale of the random smooth phase, in radians (>= 0; 0 gives real positive maps).
    rotate
        Rotate the coil ring by a random angle per set (otherwise the first coil is at angle 0).
    generator, seed
        Randomness (rotation and phase); reproducible with either.
    dtype
        ``torch.complex64`` or ``torch.complex128``.
    """
    for label, v in (("coils", coils), ("height", height), ("width", width)) + \
            ((("batch", batch),) if batch is not None else ()):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{label} must be a positive integer, got {v!r}")
    if not radius > 0:
        raise ValueError(f"radius must be positive, got {radius}")
    if not coil_width > 0:
        raise ValueError(f"coil_width must be positive, got {coil_width}")
    if not phase_strength >= 0:
        raise ValueError(f"phase_strength must be >= 0, got {phase_strength}")
    if dtype not in (torch.complex64, torch.complex128):
        raise ValueError(f"dtype must be torch.complex64 or torch.complex128, got {dtype}")
    g = _generator(generator, seed)
    n = 1 if batch is None else batch
    real = torch.float64
    yy = torch.linspace(-1, 1, height, dtype=real)[:, None].expand(height, width)
    xx = torch.linspace(-1, 1, width, dtype=real)[None, :].expand(height, width)
    maps = []
    for _ in range(n):
        theta0 = float(torch.rand(1, generator=g, dtype=real)) * 2 * math.pi if rotate else 0.0
        # random smooth phase shared by all coils (object phase-like) + per-coil terms
        coeffs = (torch.rand(coils, 5, generator=g, dtype=real) * 2 - 1) * phase_strength
        set_maps = []
        for c in range(coils):
            angle = theta0 + 2 * math.pi * c / coils
            cy, cx = radius * math.sin(angle), radius * math.cos(angle)
            d2 = (yy - cy) ** 2 + (xx - cx) ** 2
            magnitude = torch.exp(-0.5 * d2 / coil_width ** 2)
            a = coeffs[c]
            phase = (a[0] * math.pi + a[1] * xx + a[2] * yy + 0.5 * a[3] * xx * yy
                     + 0.5 * a[4] * (xx ** 2 - yy ** 2))
            set_maps.append(torch.polar(magnitude, phase))
        maps.append(torch.stack(set_maps))
    out = normalize_sensitivities(torch.stack(maps)).to(dtype)
    return out if batch is not None else out[0]
