"""The forward model: a radial gain ``v(r) = 1 / (1 + strength · r²)²`` (cos⁴-like vignetting)."""
from __future__ import annotations

from typing import Any, Optional

import torch
from torch import Tensor

from invrim.physics import LinearForwardModel


class Vignette(LinearForwardModel):
    """``y = v ⊙ x`` with ``v`` falling from 1 at the centre; ``r`` is 1 at the image corners.

    Parameters
    ----------
    strength
        How strongly the corners darken (``>= 0``); a per-sample ``strength`` of shape ``(B,)``
        passed to a call overrides it.
    """

    name = "vignette"
    x_dims = ("channel", "height", "width")
    y_dims = ("channel", "height", "width")

    def __init__(self, strength: float = 0.5):
        super().__init__()
        if not strength >= 0:
            raise ValueError(f"vignette strength must be >= 0, got {strength}")
        self.strength = float(strength)

    def config(self) -> dict[str, Any]:
        return {"strength": self.strength}

    @classmethod
    def example(cls):
        g = torch.Generator().manual_seed(0)
        return cls(0.5), torch.randn(2, 1, 10, 13, generator=g), {"strength": torch.tensor([0.2, 1.0])}

    def gain(self, x: Tensor, strength: Optional[Tensor] = None) -> Tensor:
        if x.dim() != 4:
            raise ValueError(f"Vignette expects x of shape (B, C, H, W), got {tuple(x.shape)}")
        H, W = x.shape[-2:]
        yy = torch.linspace(-1, 1, H, dtype=x.real.dtype, device=x.device)[:, None]
        xx = torch.linspace(-1, 1, W, dtype=x.real.dtype, device=x.device)[None, :]
        r2 = (yy ** 2 + xx ** 2) / 2
        s = self.strength if strength is None else strength.to(x.real.dtype).view(-1, 1, 1, 1)
        return 1.0 / (1.0 + s * r2) ** 2

    def forward(self, x: Tensor, strength: Optional[Tensor] = None, **params: Any) -> Tensor:
        return self.gain(x, strength) * x

    def adjoint(self, y: Tensor, strength: Optional[Tensor] = None, **params: Any) -> Tensor:
        return self.gain(y, strength) * y          # a real diagonal operator is self-adjoint

    def pseudo_inverse(self, y: Tensor, strength: Optional[Tensor] = None, **params: Any) -> Tensor:
        return y / self.gain(y, strength)
