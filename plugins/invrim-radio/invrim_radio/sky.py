"""Random radio skies: point sources, elliptical Gaussians and exponential disks, ``(B, 1, H, W)``.

Brightness is in Jy/pixel, non-negative. Each sample draws its number of components of each kind
uniformly in the given ``[low, high]`` ranges; a point source has a flux uniform in
``point_flux`` on one pixel (pixel-centred, as a CLEAN component is); a Gaussian or a disk has a
peak brightness uniform in ``peak``, a random position angle, an axis ratio in ``[0.4, 1]`` and a
size (Gaussian σ, or disk scale length, of the major axis) uniform in ``size`` pixels. Centres
lie uniformly in the central ``extent`` fraction of the field. All randomness comes from the
``generator``.
"""
from __future__ import annotations

import math
from typing import Any, Optional, Sequence

import torch
from torch import Tensor

__all__ = ["RadioSky"]


def _pair(value: Any, label: str, integer: bool = False, low: float = 0.0) -> list:
    try:
        pair = [int(v) if integer else float(v) for v in value]
    except (TypeError, ValueError):
        raise ValueError(f"{label} must be [low, high], got {value!r}") from None
    if len(pair) != 2 or not low <= pair[0] <= pair[1]:
        raise ValueError(f"{label} must be [low, high] with {low} <= low <= high, got {value!r}")
    return pair


class RadioSky:
    """Generator ``radio_sky``: random skies of point sources, Gaussians and exponential disks."""

    name = "radio_sky"
    dims = ("channel", "height", "width")
    deterministic = False

    def __init__(self, shape: Sequence[int] = (32, 32), points: Sequence[int] = (0, 3),
                 gaussians: Sequence[int] = (1, 3), disks: Sequence[int] = (0, 2),
                 point_flux: Sequence[float] = (0.3, 1.0), peak: Sequence[float] = (0.2, 1.0),
                 size: Sequence[float] = (0.8, 4.0), extent: float = 0.7) -> None:
        if isinstance(shape, int):
            shape = (shape, shape)
        try:
            self.shape = [int(v) for v in shape]
        except (TypeError, ValueError):
            raise ValueError(f"shape must be [height, width], got {shape!r}") from None
        if len(self.shape) != 2 or min(self.shape) < 2:
            raise ValueError(f"shape must be [height, width] of at least 2 pixels each, got {shape!r}")
        self.points = _pair(points, "points", integer=True)
        self.gaussians = _pair(gaussians, "gaussians", integer=True)
        self.disks = _pair(disks, "disks", integer=True)
        self.point_flux = _pair(point_flux, "point_flux")
        self.peak = _pair(peak, "peak")
        self.size = _pair(size, "size", low=1e-3)
        if not 0 < float(extent) <= 1:
            raise ValueError(f"extent must lie in (0, 1], got {extent!r}")
        self.extent = float(extent)

    def config(self) -> dict[str, Any]:
        return {"shape": self.shape, "points": self.points, "gaussians": self.gaussians, "disks": self.disks,
                "point_flux": self.point_flux, "peak": self.peak, "size": self.size, "extent": self.extent}

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.config() == self.config()

    def __hash__(self) -> int:
        return hash(repr(sorted(self.config().items())))

    def __repr__(self) -> str:
        return f"RadioSky({', '.join(f'{k}={v!r}' for k, v in self.config().items())})"

    @classmethod
    def example(cls):
        return cls(shape=(16, 12)), {}

    def _uniform(self, g, n: int, low: float, high: float) -> Tensor:
        return low + (high - low) * torch.rand(n, generator=g, dtype=torch.float64)

    def __call__(self, batch: int, generator: Optional[torch.Generator] = None,
                 dtype: torch.dtype = torch.float32) -> Tensor:
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise ValueError(f"batch must be a positive integer, got {batch!r}")
        g = generator if generator is not None else torch.Generator().manual_seed(0)
        H, W = self.shape
        hh = (torch.arange(H, dtype=torch.float64) - H // 2)[:, None]
        ww = (torch.arange(W, dtype=torch.float64) - W // 2)[None, :]
        out = torch.zeros(batch, 1, H, W, dtype=torch.float64)
        for b in range(batch):
            sky = out[b, 0]
            counts = [int(torch.randint(lo, hi + 1, (1,), generator=g)) for lo, hi in
                      (self.points, self.gaussians, self.disks)]
            # extended components
            for kind, n in (("gaussian", counts[1]), ("disk", counts[2])):
                for _ in range(n):
                    u = torch.rand(6, generator=g, dtype=torch.float64)
                    cy = (u[0] - 0.5) * self.extent * H
                    cx = (u[1] - 0.5) * self.extent * W
                    peak = self.peak[0] + (self.peak[1] - self.peak[0]) * u[2]
                    major = self.size[0] + (self.size[1] - self.size[0]) * u[3]
                    minor = major * (0.4 + 0.6 * u[4])
                    angle = math.pi * float(u[5])
                    c, s = math.cos(angle), math.sin(angle)
                    a = (ww - cx) * c + (hh - cy) * s
                    d = -(ww - cx) * s + (hh - cy) * c
                    r2 = (a / major) ** 2 + (d / minor) ** 2
                    sky += peak * (torch.exp(-0.5 * r2) if kind == "gaussian" else torch.exp(-torch.sqrt(r2)))
            # point sources, on pixel centres
            for _ in range(counts[0]):
                u = torch.rand(3, generator=g, dtype=torch.float64)
                py = int(H // 2 + math.floor((float(u[0]) - 0.5) * self.extent * H))
                px = int(W // 2 + math.floor((float(u[1]) - 0.5) * self.extent * W))
                sky[min(max(py, 0), H - 1), min(max(px, 0), W - 1)] += \
                    self.point_flux[0] + (self.point_flux[1] - self.point_flux[0]) * float(u[2])
        return out.to(dtype)
