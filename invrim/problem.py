"""A Problem couples a forward model with a likelihood: energy and score of ``x`` given ``y``."""
from __future__ import annotations

from typing import Any, Optional

import torch
from torch import Tensor
from torch.func import vjp

from .likelihoods.base import Likelihood
from .physics.base import ForwardModel


class Problem:
    """Forward model ``F`` + likelihood ``p(y | F(x))``.

    ``energy(x, y, **params)`` is the negative log-likelihood per sample ``(B,)`` and
    ``score(x, y, **params) = -∇ₓ energy = ∇ₓ log p(y | x)``. For a linear forward model whose
    likelihood offers an analytic ``residual_score`` the score is ``F.adjoint(residual_score)``
    (no autograd); otherwise it is computed by ``torch.func.vjp`` through ``F`` and the energy.
    ``params`` are the per-sample parameters of the forward model and likelihood (``psf``,
    ``mask``, ``sigma`` …), passed by keyword.
    """

    def __init__(self, forward_model: ForwardModel, likelihood: Likelihood):
        if not isinstance(forward_model, ForwardModel):
            raise TypeError(f"forward_model must be an invrim ForwardModel, got {type(forward_model).__name__}")
        if not isinstance(likelihood, Likelihood):
            raise TypeError(f"likelihood must be an invrim Likelihood, got {type(likelihood).__name__}")
        self.forward_model = forward_model
        self.likelihood = likelihood

    @property
    def analytic_score(self) -> bool:
        """True when :meth:`score` uses the adjoint fast path instead of autograd."""
        return bool(self.forward_model.linear and self.likelihood.residual_score is not None)

    def energy(self, x: Tensor, y: Tensor, **params: Any) -> Tensor:
        return self.likelihood.energy(self.forward_model(x, **params), y, **params)

    def score(self, x: Tensor, y: Tensor, **params: Any) -> Tensor:
        if self.analytic_score:
            prediction = self.forward_model(x, **params)
            residual = self.likelihood.residual_score(prediction, y, **params)
            return self.forward_model.adjoint(residual, **params)
        return self.autograd_score(x, y, **params)

    def autograd_score(self, x: Tensor, y: Tensor, **params: Any) -> Tensor:
        """``-∇ₓ energy`` by automatic differentiation (the reference for the fast path)."""
        energy, pullback = vjp(lambda x_: self.energy(x_, y, **params), x)
        return -pullback(torch.ones_like(energy))[0]

    def simulate(self, x: Tensor, generator: Optional[torch.Generator] = None, **params: Any) -> Tensor:
        """An observation ``y ~ p(y | F(x))``."""
        with torch.no_grad():
            return self.likelihood.sample(self.forward_model(x, **params), generator, **params)

    def approximate_inverse(self, y: Tensor, **params: Any) -> Tensor:
        """The forward model's pseudo-inverse (or adjoint) of ``y``, for initialisation."""
        pinv = getattr(self.forward_model, "pseudo_inverse", None)
        if pinv is None:
            raise ValueError(f"forward model '{self.forward_model.name}' has no pseudo_inverse or "
                             "adjoint: use initialization_method='zeros' or 'model'")
        return pinv(y, **params)

    @classmethod
    def from_config(cls, forward_model: str, likelihood: str, forward_model_config: Optional[dict] = None,
                    likelihood_config: Optional[dict] = None) -> "Problem":
        """Build a problem from registry names (built-in or plugin) and their configurations,
        e.g. ``Problem.from_config("blur", "gaussian", {"psf": ...}, {"sigma": 0.1})`` — the
        inverse of :meth:`config`."""
        from .plugins import registry
        reg = registry()
        return cls(reg.forward_models.build(forward_model, **(forward_model_config or {})),
                   reg.likelihoods.build(likelihood, **(likelihood_config or {})))

    def config(self) -> dict[str, Any]:
        return {"forward_model": self.forward_model.name,
                "forward_model_config": self.forward_model.config(),
                "likelihood": self.likelihood.name,
                "likelihood_config": self.likelihood.config()}
