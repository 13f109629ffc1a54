"""Super-resolution: block averaging by an integer factor."""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import SPATIAL_DIMS, LinearForwardModel

_POOL = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}


class SuperResolution(LinearForwardModel):
    """``y = D x``: each ``factor``-sized block of ``x`` averaged to one pixel (1-, 2- or 3-D).

    The spatial sizes of ``x`` must be multiples of ``factor``. The adjoint spreads each pixel over
    its block divided by the block size; the pseudo-inverse repeats each pixel over its block
    (nearest-neighbour upsampling), so ``D(pinv(y)) = y``.
    """

    name = "super_resolution"
    x_dims = ("channel", "height", "width")
    y_dims = ("channel", "height_low", "width_low")

    def __init__(self, factor: int = 2, dimensions: int = 2):
        super().__init__()
        if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
            raise ValueError(f"super-resolution factor must be an integer >= 1, got {factor!r}")
        if dimensions not in _POOL:
            raise ValueError(f"dimensions must be 1, 2 or 3, got {dimensions}")
        self.factor, self.dimensions = factor, dimensions
        spatial = SPATIAL_DIMS[dimensions]
        self.x_dims = ("channel", *spatial)
        self.y_dims = ("channel", *(f"{s}_low" for s in spatial))

    def config(self) -> dict[str, Any]:
        return {"factor": self.factor, "dimensions": self.dimensions}

    @classmethod
    def example(cls):
        return cls(3, 2), torch.randn(2, 2, 9, 12, generator=torch.Generator().manual_seed(0)), {}

    def _check(self, x: Tensor, name: str, multiple: bool) -> None:
        d = self.dimensions
        if x.dim() != d + 2:
            raise ValueError(f"SuperResolution expects {name} of shape (B, C, {d} spatial axes), got {tuple(x.shape)}")
        if multiple and any(n % self.factor for n in x.shape[2:]):
            raise ValueError(f"{name} sizes {tuple(x.shape[2:])} are not multiples of the factor {self.factor}")

    def forward(self, x: Tensor, **params: Any) -> Tensor:
        self._check(x, "x", multiple=True)
        return _POOL[self.dimensions](x, self.factor)

    def _repeat(self, y: Tensor) -> Tensor:
        self._check(y, "y", multiple=False)
        for axis in range(2, y.dim()):
            y = torch.repeat_interleave(y, self.factor, dim=axis)
        return y

    def adjoint(self, y: Tensor, **params: Any) -> Tensor:
        return self._repeat(y) / self.factor ** self.dimensions

    def pseudo_inverse(self, y: Tensor, **params: Any) -> Tensor:
        return self._repeat(y)
