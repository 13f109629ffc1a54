"""Poisson likelihood for photon counts, with a detector gain and a background."""
from __future__ import annotations

from typing import Any, Optional

import torch
from torch import Tensor

from .base import Likelihood


class Poisson(Likelihood):
    """``y ~ Poisson(λ)`` with rate ``λ = gain · F(x) + background``.

    Energy (negative log-likelihood up to a constant) per sample: ``Σ λ − y log λ``.
    The rate is clamped below at ``epsilon`` so a non-physical negative prediction gives a large
    but finite energy rather than NaN. ``gain`` and ``background`` may also be passed per call
    (per sample ``(B,)`` or per pixel).

    Parameters
    ----------
    gain
        Counts per unit of the prediction (> 0).
    background
        Expected background counts per pixel (>= 0).
    """

    name = "poisson"

    def __init__(self, gain: float = 1.0, background: float = 0.0, epsilon: float = 1e-6):
        gain, background = float(gain), float(background)
        if not gain > 0:
            raise ValueError(f"Poisson gain must be positive, got {gain}")
        if not background >= 0:
            raise ValueError(f"Poisson background must be non-negative, got {background}")
        if not epsilon > 0:
            raise ValueError(f"Poisson epsilon must be positive, got {epsilon}")
        self.gain, self.background, self.epsilon = gain, background, float(epsilon)

    def config(self) -> dict[str, Any]:
        return {"gain": self.gain, "background": self.background, "epsilon": self.epsilon}

    @classmethod
    def example(cls):
        g = torch.Generator().manual_seed(0)
        prediction = torch.rand(3, 1, 6, 5, generator=g) + 0.1
        lik = cls(gain=20.0, background=2.0)
        return lik, prediction, lik.sample(prediction, g), {}

    @staticmethod
    def _param(value: Optional[Tensor], default: float, ref: Tensor):
        if value is None:
            return default
        value = torch.as_tensor(value, dtype=ref.dtype, device=ref.device)
        if value.dim() == 1 and ref.dim() > 1:
            value = value.reshape(-1, *([1] * (ref.dim() - 1)))
        return value

    def rate(self, prediction: Tensor, gain: Optional[Tensor] = None,
             background: Optional[Tensor] = None) -> Tensor:
        g = self._param(gain, self.gain, prediction)
        b = self._param(background, self.background, prediction)
        return (g * prediction + b).clamp_min(self.epsilon)

    def energy(self, prediction: Tensor, y: Tensor, gain: Optional[Tensor] = None,
               background: Optional[Tensor] = None, **params: Any) -> Tensor:
        lam = self.rate(prediction, gain, background)
        e = lam - y * torch.log(lam)
        return e.reshape(e.shape[0], -1).sum(dim=1)

    def residual_score(self, prediction: Tensor, y: Tensor, gain: Optional[Tensor] = None,
                       background: Optional[Tensor] = None, **params: Any) -> Tensor:
        g = self._param(gain, self.gain, prediction)
        b = self._param(background, self.background, prediction)
        raw = g * prediction + b
        lam = raw.clamp_min(self.epsilon)
        # the clamp has zero derivative where it is active, exactly as autograd of energy() says
        return torch.where(raw > self.epsilon, g * (y / lam - 1), torch.zeros_like(lam))

    def sample(self, prediction: Tensor, generator: Optional[torch.Generator] = None,
               gain: Optional[Tensor] = None, background: Optional[Tensor] = None, **params: Any) -> Tensor:
        return torch.poisson(self.rate(prediction, gain, background), generator=generator)
