"""Ground truth for simulation: complex MRI phantoms with a smooth phase, as real ``(B, 2, H, W)``.

* :func:`shepp_logan` — the modified Shepp–Logan phantom (Toft's intensities), drawn analytically
  from its ellipse table at any size (no download, no scikit-image needed);
* :func:`random_ellipses` — a head-like outer ellipse filled with random inner ellipses, for
  training sets of unlimited variety;
* :func:`smooth_phase` — a random low-order polynomial phase map;
* :class:`PhantomGenerator` — both behind one callable, registered as the invrim generator
  ``mri_phantom``.

Magnitudes lie in ``[0, 1]`` (each image scaled so its maximum magnitude is 1).
"""
from __future__ import annotations

import math
from typing import Any, Optional

import torch
from torch import Tensor

from .masks import _generator

__all__ = ["SHEPP_LOGAN", "ellipse_image", "shepp_logan", "random_ellipses", "smooth_phase",
           "PhantomGenerator", "PHANTOM_KINDS"]

PHANTOM_KINDS = ("ellipses", "shepp_logan")

#: Modified Shepp–Logan (Toft 1996): intensity, semi-axis x, semi-axis y, centre x, centre y, angle (deg)
SHEPP_LOGAN = (
    (1.0, 0.69, 0.92, 0.0, 0.0, 0.0),
    (-0.8, 0.6624, 0.874, 0.0, -0.0184, 0.0),
    (-0.2, 0.11, 0.31, 0.22, 0.0, -18.0),
    (-0.2, 0.16, 0.41, -0.22, 0.0, 18.0),
    (0.1, 0.21, 0.25, 0.0, 0.35, 0.0),
    (0.1, 0.046, 0.046, 0.0, 0.1, 0.0),
    (0.1, 0.046, 0.046, 0.0, -0.1, 0.0),
    (0.1, 0.046, 0.023, -0.08, -0.605, 0.0),
    (0.1, 0.023, 0.023, 0.0, -0.606, 0.0),
    (0.1, 0.023, 0.046, 0.06, -0.605, 0.0),
)


def _check_size(height: int, width: int) -> None:
    for label, v in (("height", height), ("width", width)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{label} must be a positive integer, got {v!r}")


def _grid(height: int, width: int) -> tuple[Tensor, Tensor]:
    """Pixel-centre coordinates in [-1, 1]: ``x`` to the right, ``y`` up (row 0 is the top)."""
    ys = (1 - (2 * torch.arange(height, dtype=torch.float64) + 1) / height)[:, None].expand(height, width)
    xs = ((2 * torch.arange(width, dtype=torch.float64) + 1) / width - 1)[None, :].expand(height, width)
    return xs, ys


def ellipse_image(ellipses, height: int, width: int) -> Tensor:
    """Sum of uniform ellipses ``(intensity, a, b, x0, y0, angle_deg)`` on a ``height × width``
    grid spanning ``[-1, 1]²`` (float64)."""
    _check_size(height, width)
    xs, ys = _grid(height, width)
    image = torch.zeros(height, width, dtype=torch.float64)
    for value, a, b, x0, y0, angle in ellipses:
        t = math.radians(angle)
        c, s = math.cos(t), math.sin(t)
        u = (xs - x0) * c + (ys - y0) * s
        v = -(xs - x0) * s + (ys - y0) * c
        image += value * ((u / a) ** 2 + (v / b) ** 2 <= 1).to(torch.float64)
    return image


def smooth_phase(batch: int, height: int, width: int, strength: float = 1.0,
                 generator: Optional[torch.Generator] = None, seed: Optional[int] = None) -> Tensor:
    """Random smooth phase maps ``(batch, H, W)`` in radians: a constant, linear and quadratic
    polynomial with coefficients uniform in ``[-strength, strength]``."""
    _check_size(height, width)
    if not strength >= 0:
        raise ValueError(f"phase strength must be >= 0, got {strength}")
    g = _generator(generator, seed)
    xs, ys = _grid(height, width)
    basis = torch.stack([torch.ones_like(xs), xs, ys, xs * ys, xs ** 2 - ys ** 2, xs ** 2 + ys ** 2])
    coeffs = (torch.rand(batch, basis.shape[0], generator=g, dtype=torch.float64) * 2 - 1) * strength
    return torch.einsum("bk,khw->bhw", coeffs, basis)


def _complex_channels(magnitude: Tensor, phase: Tensor, dtype: torch.dtype) -> Tensor:
    peak = magnitude.flatten(1).amax(dim=1).clamp_min(1e-12).view(-1, 1, 1)
    z = torch.polar(magnitude / peak, phase)
    return torch.stack([z.real, z.imag], dim=1).to(dtype)


def shepp_logan(height: int, width: Optional[int] = None, *, batch: int = 1, phase_strength: float = 0.0,
                generator: Optional[torch.Generator] = None, seed: Optional[int] = None,
                dtype: torch.dtype = torch.float32) -> Tensor:
    """The modified Shepp–Logan phantom as real ``(batch, 2, H, W)``; with ``phase_strength > 0``
    each copy gets a random smooth phase (otherwise the imaginary channel is zero)."""
    width = height if width is None else width
    magnitude = ellipse_image(SHEPP_LOGAN, height, width).clamp_min(0)
    magnitude = magnitude.expand(batch, height, width)
    if phase_strength > 0:
        phase = smooth_phase(batch, height, width, phase_strength, generator, seed)
    else:
        phase = torch.zeros(batch, height, width, dtype=torch.float64)
    return _complex_channels(magnitude, phase, dtype)


def random_ellipses(batch: int, height: int, width: Optional[int] = None, *, ellipses: tuple[int, int] = (3, 8),
                    phase_strength: float = 1.0, generator: Optional[torch.Generator] = None,
                    seed: Optional[int] = None, dtype: torch.dtype = torch.float32) -> Tensor:
    """Random head-like phantoms ``(batch, 2, H, W)``: an outer ellipse (skull-like rim and a
    darker interior) holding ``ellipses = (min, max)`` random inner ellipses of random intensity,
    times a random smooth phase of scale ``phase_strength`` radians."""
    width = height if width is None else width
    _check_size(height, width)
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be a positive integer, got {batch!r}")
    lo, hi = ellipses
    if not 1 <= lo <= hi:
        raise ValueError(f"ellipses must be (min, max) with 1 <= min <= max, got {ellipses!r}")
    g = _generator(generator, seed)

    def u(low: float, high: float) -> float:
        return low + (high - low) * float(torch.rand(1, generator=g, dtype=torch.float64))

    magnitudes = []
    for _ in range(batch):
        a, b = u(0.65, 0.9), u(0.75, 0.95)
        rotation = u(-20, 20)
        rim = u(0.04, 0.08)
        table = [(1.0, a, b, 0.0, 0.0, rotation), (-u(0.5, 0.8), a - rim, b - rim, 0.0, 0.0, rotation)]
        for _ in range(int(torch.randint(lo, hi + 1, (1,), generator=g))):
            r = u(0.0, 0.55)
            t = u(0, 2 * math.pi)
            table.append((u(-0.25, 0.5), u(0.05, 0.35), u(0.05, 0.35), r * a * math.cos(t), r * b * math.sin(t),
                          u(0, 180)))
        magnitudes.append(ellipse_image(table, height, width).clamp(0, 1.5))
    phase = smooth_phase(batch, height, width, phase_strength, generator=g) if phase_strength > 0 \
        else torch.zeros(batch, height, width, dtype=torch.float64)
    return _complex_channels(torch.stack(magnitudes), phase, dtype)


class PhantomGenerator:
    """Ground-truth generator ``mri_phantom``: ``PhantomGenerator(height, width, kind)(batch=…, seed=…)``
    returns real ``(batch, 2, H, W)`` complex images (see :func:`random_ellipses`, :func:`shepp_logan`).
    """

    name = "mri_phantom"
    dims = ("channel", "height", "width")

    def __init__(self, height: int = 64, width: Optional[int] = None, kind: str = "ellipses",
                 phase_strength: float = 1.0, shape: Optional[list] = None):
        if shape is not None:                   # the core generators' spelling: shape=[H, W]
            if not isinstance(shape, (list, tuple)) or len(shape) != 2:
                raise ValueError(f"shape must be [height, width], got {shape!r}")
            height, width = shape
        width = height if width is None else width
        _check_size(height, width)
        if kind not in PHANTOM_KINDS:
            raise ValueError(f"kind must be one of {PHANTOM_KINDS}, got {kind!r}")
        if not phase_strength >= 0:
            raise ValueError(f"phase_strength must be >= 0, got {phase_strength}")
        self.height, self.width, self.kind, self.phase_strength = height, width, kind, float(phase_strength)
        self.deterministic = kind == "shepp_logan" and self.phase_strength == 0

    def config(self) -> dict[str, Any]:
        return {"height": self.height, "width": self.width, "kind": self.kind,
                "phase_strength": self.phase_strength}

    @classmethod
    def example(cls):
        return cls(16, 12), {"batch": 2, "seed": 0}

    def __call__(self, batch: int = 1, generator: Optional[torch.Generator] = None, seed: Optional[int] = None,
                 dtype: torch.dtype = torch.float32) -> Tensor:
        if self.kind == "shepp_logan":
            return shepp_logan(self.height, self.width, batch=batch, phase_strength=self.phase_strength,
                               generator=generator, seed=seed, dtype=dtype)
        return random_ellipses(batch, self.height, self.width, phase_strength=self.phase_strength,
                               generator=generator, seed=seed, dtype=dtype)
