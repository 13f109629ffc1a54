"""Inpainting: observe only the pixels where a mask is set."""
from __future__ import annotations

from typing import Any, Optional

import torch
from torch import Tensor

from .base import LinearForwardModel


class Inpainting(LinearForwardModel):
    """``y = m ⊙ x`` with a binary (or weighting) mask ``m``.

    Parameters
    ----------
    mask
        A fixed mask broadcastable to ``x`` without its batch axis (e.g. ``(H, W)`` or
        ``(C, H, W)``). Omit it to pass a per-sample ``mask`` of shape ``(B, …)`` to every call.
    fraction
        For simulation without a fixed mask: :meth:`sample_parameters` draws a random binary
        ``mask`` ``(B, H, W)`` per sample observing each pixel with this probability.

    Notes
    -----
    The missing pixels of ``y`` are zero; the pseudo-inverse is ``m ⊙ y`` (missing pixels left at
    zero), which is exact on the observed pixels for a binary mask.
    """

    name = "inpainting"
    x_dims = ("channel", "height", "width")
    y_dims = ("channel", "height", "width")
    param_dims = {"mask": [("height", "width"), ("channel", "height", "width")]}

    def __init__(self, mask: Optional[Tensor] = None, fraction: Optional[float] = None):
        super().__init__()
        if fraction is not None:
            fraction = float(fraction)
            if not 0 < fraction <= 1:
                raise ValueError(f"inpainting fraction must lie in (0, 1], got {fraction}")
            if mask is not None:
                raise ValueError("give either a fixed mask or a fraction for random masks, not both")
        self.fraction = fraction
        if mask is not None:
            mask = torch.as_tensor(mask)
            if mask.dtype == torch.bool:
                mask = mask.to(torch.get_default_dtype())
            if not torch.isfinite(mask).all() or (mask < 0).any():
                raise ValueError("inpainting mask must be finite and non-negative")
            self.register_buffer("mask", mask.clone())
        else:
            self.mask = None

    def config(self) -> dict[str, Any]:
        if self.mask is not None:
            return {"mask": self.mask.tolist()}
        return {} if self.fraction is None else {"fraction": self.fraction}

    def sample_parameters(self, x: Tensor, generator: Optional[torch.Generator] = None) -> dict[str, Tensor]:
        """A random ``mask`` ``(B, *spatial)`` per sample when built with ``fraction``."""
        if self.fraction is None:
            return {}
        u = torch.rand((x.shape[0], *x.shape[2:]), generator=generator)
        return {"mask": (u < self.fraction).to(x.device)}

    @classmethod
    def example(cls):
        g = torch.Generator().manual_seed(0)
        mask = (torch.rand(2, 1, 9, 11, generator=g) > 0.4)
        return cls(), torch.randn(2, 1, 9, 11, generator=g), {"mask": mask}

    def _mask(self, x: Tensor, mask: Optional[Tensor]) -> Tensor:
        if mask is None:
            if self.mask is None:
                raise ValueError("Inpainting was built without a mask: pass mask=... of shape (B, ...)")
            m = self.mask
            if m.dim() > x.dim() - 1 or tuple(m.shape) != tuple(x.shape[x.dim() - m.dim():]):
                raise ValueError(f"inpainting mask of shape {tuple(m.shape)} does not fit x of shape "
                                 f"{tuple(x.shape)} (it must match x's trailing axes)")
        else:
            m = mask
            if m.shape[0] != x.shape[0]:
                raise ValueError(f"per-sample mask has batch {m.shape[0]} but x has batch {x.shape[0]}")
            if m.dim() == x.dim() - 1:             # (B, *spatial): same mask for every channel
                m = m.unsqueeze(1)
            if m.dim() != x.dim() or any(a not in (1, b) for a, b in zip(m.shape[1:], x.shape[1:])):
                raise ValueError(f"per-sample mask of shape {tuple(mask.shape)} does not fit x of shape "
                                 f"{tuple(x.shape)}")
        return m.to(device=x.device, dtype=x.real.dtype)

    def forward(self, x: Tensor, mask: Optional[Tensor] = None, **params: Any) -> Tensor:
        return self._mask(x, mask) * x

    def adjoint(self, y: Tensor, mask: Optional[Tensor] = None, **params: Any) -> Tensor:
        return self._mask(y, mask) * y
