"""Denoising: the identity forward model."""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .base import LinearForwardModel


class Identity(LinearForwardModel):
    """``y = x`` (denoising). Its adjoint and pseudo-inverse are the identity too."""

    name = "identity"
    x_dims = ("channel", "height", "width")
    y_dims = ("channel", "height", "width")

    @classmethod
    def example(cls):
        return cls(), torch.randn(2, 1, 8, 7, generator=torch.Generator().manual_seed(0)), {}

    def forward(self, x: Tensor, **params: Any) -> Tensor:
        return x

    def adjoint(self, y: Tensor, **params: Any) -> Tensor:
        return y
