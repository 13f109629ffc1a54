"""Gaussian likelihood with a scalar, per-sample or per-pixel noise level."""
from __future__ import annotations

import math
from typing import Any, Optional, Sequence

import torch
from torch import Tensor

from .base import Likelihood


class Gaussian(Likelihood):
    """``y = F(x) + σ ε`` with ``ε ~ N(0, 1)``; energy ``½ Σ |y − F(x)|² / σ²`` per sample.

    For complex data the real and imaginary parts each carry noise of standard deviation σ.

    Parameters
    ----------
    sigma
        Noise standard deviation (> 0), in the units of ``y``. The default, 0.05, is a moderate
        noise level for signals in [0, 1] (as the core generators make); set it to your data's.
        (It used to be 1.0, which buries signals in [0, 1]; data files record the ``sigma`` they
        were simulated with, so existing files rebuild unchanged.) A per-sample ``(B,)`` or per-pixel
        (``y``'s shape) ``sigma`` keyword passed to :meth:`energy` / :meth:`sample` overrides it.
    sigma_range
        For simulation: :meth:`sample_parameters` draws a per-sample ``sigma`` log-uniformly in
        ``[low, high]`` (stored with the data, so training sees each sample's own noise level).
    """

    name = "gaussian"
    param_dims = {"sigma": ()}

    #: The default noise standard deviation (for signals in [0, 1]).
    DEFAULT_SIGMA = 0.05

    def __init__(self, sigma: float = DEFAULT_SIGMA, sigma_range: Optional[Sequence[float]] = None):
        try:
            if isinstance(sigma, (str, bytes, bool)):
                raise TypeError
            sigma = float(sigma)
        except (TypeError, ValueError):
            raise ValueError(f"Gaussian sigma must be a positive number, got {sigma!r}") from None
        if not sigma > 0:
            raise ValueError(f"Gaussian sigma must be positive, got {sigma}")
        self.sigma = sigma
        if sigma_range is not None:
            sigma_range = [float(v) for v in sigma_range]
            if len(sigma_range) != 2 or not 0 < sigma_range[0] <= sigma_range[1]:
                raise ValueError(f"sigma_range must be [low, high] with 0 < low <= high, got {sigma_range!r}")
        self.sigma_range = sigma_range

    def config(self) -> dict[str, Any]:
        cfg: dict[str, Any] = {"sigma": self.sigma}
        if self.sigma_range is not None:
            cfg["sigma_range"] = self.sigma_range
        return cfg

    def sample_parameters(self, prediction: Tensor, generator: Optional[torch.Generator] = None
                          ) -> dict[str, Tensor]:
        """A per-sample ``sigma`` ``(B,)``, log-uniform in ``sigma_range`` (none without one)."""
        if self.sigma_range is None:
            return {}
        low, high = (math.log(v) for v in self.sigma_range)
        u = torch.rand(prediction.shape[0], generator=generator, dtype=torch.float64)
        return {"sigma": torch.exp(low + (high - low) * u).to(prediction.real.dtype).to(prediction.device)}

    @classmethod
    def example(cls):
        g = torch.Generator().manual_seed(0)
        prediction = torch.randn(3, 1, 6, 5, generator=g)
        sigma = torch.tensor([0.1, 0.5, 2.0])
        return cls(0.3), prediction, prediction + torch.randn(3, 1, 6, 5, generator=g), {"sigma": sigma}

    def _sigma(self, y: Tensor, sigma: Optional[Tensor]) -> Tensor | float:
        if sigma is None:
            return self.sigma
        sigma = torch.as_tensor(sigma, dtype=y.real.dtype, device=y.device)
        if not bool((sigma > 0).all()):
            raise ValueError("Gaussian sigma must be positive everywhere; got a value <= 0 or NaN")
        if sigma.dim() == 1 and y.dim() > 1:        # per-sample: broadcast over the other axes
            sigma = sigma.reshape(-1, *([1] * (y.dim() - 1)))
        return sigma

    def energy(self, prediction: Tensor, y: Tensor, sigma: Optional[Tensor] = None,
               **params: Any) -> Tensor:
        s = self._sigma(y, sigma)
        r = (y - prediction) / s
        r2 = r.real ** 2 + r.imag ** 2 if r.is_complex() else r ** 2
        return 0.5 * r2.reshape(r2.shape[0], -1).sum(dim=1)

    def residual_score(self, prediction: Tensor, y: Tensor, sigma: Optional[Tensor] = None,
                       **params: Any) -> Tensor:
        s = self._sigma(y, sigma)
        return (y - prediction) / (s * s)

    def sample(self, prediction: Tensor, generator: Optional[torch.Generator] = None,
               sigma: Optional[Tensor] = None, **params: Any) -> Tensor:
        s = self._sigma(prediction, sigma)
        real = prediction.real.dtype
        noise = torch.randn(prediction.shape, generator=generator, dtype=real, device=prediction.device)
        if prediction.is_complex():   # each of the real and imaginary parts has variance σ², as the energy says
            noise = torch.complex(noise, torch.randn(prediction.shape, generator=generator, dtype=real,
                                                     device=prediction.device))
        return prediction + s * noise
