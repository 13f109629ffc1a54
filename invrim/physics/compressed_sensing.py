"""Compressed sensing with a random Gaussian matrix, for 1-D signals and parameter vectors."""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .base import LinearForwardModel


class CompressedSensing(LinearForwardModel):
    """``y = A x`` with ``A`` an ``m × n`` matrix of i.i.d. ``N(0, 1/m)`` entries drawn from ``seed``.

    Acts on the last axis: ``x`` is ``(B, n)`` (a parameter vector) or ``(B, C, n)`` (a 1-D
    signal), ``y`` is ``(B, m)`` or ``(B, C, m)``. The pseudo-inverse is the minimum-norm
    least-squares solution ``A⁺ y``. The matrix is rebuilt from ``(n, m, seed)``, so ``config()`` stays small.
    """

    name = "compressed_sensing"
    x_dims = ("channel", "n")
    y_dims = ("channel", "m")

    def __init__(self, n: int, m: int, seed: int = 0):
        super().__init__()
        for label, v in (("n", n), ("m", m)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"compressed sensing {label} must be a positive integer, got {v!r}")
        self.n, self.m, self.seed = n, m, int(seed)
        g = torch.Generator().manual_seed(self.seed)
        # Kept in float64 outside the module's buffers, so that .to(float32).to(float64) loses nothing;
        # cast (and cached) per dtype and device on use.
        self._A64 = torch.randn(m, n, generator=g, dtype=torch.float64) / m ** 0.5
        self._pinv64 = torch.linalg.pinv(self._A64)
        self._cache: dict = {}

    @property
    def matrix(self) -> Tensor:
        """The sensing matrix ``A`` (float64)."""
        return self._A64

    def _get(self, which: str, like: Tensor) -> Tensor:
        key = (which, like.dtype, like.device)
        if key not in self._cache:
            source = self._A64 if which == "A" else self._pinv64
            self._cache[key] = source.to(device=like.device, dtype=like.dtype)
        return self._cache[key]

    def config(self) -> dict[str, Any]:
        return {"n": self.n, "m": self.m, "seed": self.seed}

    @classmethod
    def example(cls):
        return cls(20, 8, seed=1), torch.randn(3, 20, generator=torch.Generator().manual_seed(0)), {}

    def _check(self, t: Tensor, size: int, name: str) -> None:
        if t.dim() not in (2, 3) or t.shape[-1] != size:
            raise ValueError(f"CompressedSensing expects {name} of shape (B, {size}) or (B, C, {size}), "
                             f"got {tuple(t.shape)}")

    def forward(self, x: Tensor, **params: Any) -> Tensor:
        self._check(x, self.n, "x")
        return x @ self._get("A", x).T

    def adjoint(self, y: Tensor, **params: Any) -> Tensor:
        self._check(y, self.m, "y")
        return y @ self._get("A", y)

    def pseudo_inverse(self, y: Tensor, **params: Any) -> Tensor:
        self._check(y, self.m, "y")
        return y @ self._get("pinv", y).T
