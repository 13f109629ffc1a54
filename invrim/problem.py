"""A Problem couples a forward model with a likelihood: energy and score of ``x`` given ``y``."""
from __future__ import annotations

from typing import Any, Callable, Optional

import torch
from torch import Tensor
from torch.func import vjp

from . import compat
from .likelihoods.base import Likelihood
from .physics.base import ForwardModel
from .plugins import registry


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

    def check_observation(self, y: Tensor) -> None:
        """A one-line error when ``y`` is complex for a real-valued forward model (or the reverse)."""
        fm = self.forward_model
        if y.is_complex() != bool(fm.y_is_complex):
            want = "complex" if fm.y_is_complex else "real"
            raise ValueError(f"y is {'complex' if y.is_complex() else 'real'} ({y.dtype}) but forward model "
                             f"{fm.name!r} produces {want} observations")

    def _predict(self, x: Tensor, y: Tensor, params: dict) -> Tensor:
        prediction = self.forward_model(x, **params)
        if prediction.shape != y.shape:
            raise ValueError(f"y has shape {tuple(y.shape)} but forward model {self.forward_model.name!r} maps "
                             f"x of shape {tuple(x.shape)} to {tuple(prediction.shape)}")
        return prediction

    def energy(self, x: Tensor, y: Tensor, **params: Any) -> Tensor:
        return self.likelihood.energy(self._predict(x, y, params), y, **params)

    def score(self, x: Tensor, y: Tensor, **params: Any) -> Tensor:
        if self.analytic_score:
            prediction = self._predict(x, y, params)
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

    @property
    def has_approximate_inverse(self) -> bool:
        return getattr(self.forward_model, "pseudo_inverse", None) is not None

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
        reg = registry()
        return cls(reg.forward_models.build(forward_model, **(forward_model_config or {})),
                   reg.likelihoods.build(likelihood, **(likelihood_config or {})))

    def config(self) -> dict[str, Any]:
        return {"forward_model": self.forward_model.name,
                "forward_model_config": self.forward_model.config(),
                "likelihood": self.likelihood.name,
                "likelihood_config": self.likelihood.config()}


class CallableProblem:
    """A torch-rim style physics given as functions, with the interface of :class:`Problem` that
    the RIM uses: ``score(x, y, *args)``, ``approximate_inverse(y, *args)``.

    ``score_fn(x, y, *args) -> ∇ₓ log p(y|x)`` (the shape of ``x``), or ``energy_fn(x, y, *args)
    -> -log p(y|x)`` per sample ``(B,)`` whose score ``-∇ₓ energy`` is computed by ``torch.func``;
    ``approximate_inverse_fn(y, *args)`` (or ``(y)``) is optional.
    """

    def __init__(self, score_fn: Optional[Callable] = None, energy_fn: Optional[Callable] = None,
                 approximate_inverse_fn: Optional[Callable] = None):
        if (score_fn is None) == (energy_fn is None):
            raise ValueError("pass exactly one of score_fn or energy_fn")
        for fn, label in ((score_fn, "score_fn"), (energy_fn, "energy_fn")):
            if fn is not None:
                compat.check_callable(fn, label)
        if approximate_inverse_fn is not None and not callable(approximate_inverse_fn):
            raise TypeError("approximate_inverse_fn must be callable")
        self.score_fn, self.energy_fn, self.approximate_inverse_fn = score_fn, energy_fn, approximate_inverse_fn

    @property
    def has_approximate_inverse(self) -> bool:
        return self.approximate_inverse_fn is not None

    def energy(self, x: Tensor, y: Tensor, *args: Any, **kwargs: Any) -> Tensor:
        energy = compat.call_user(self.energy_fn, "energy_fn", x, y, *args, **kwargs)
        if not isinstance(energy, Tensor):
            raise TypeError(f"energy_fn must return a tensor with one energy per sample, shape ({x.shape[0]},); "
                            f"it returned a {type(energy).__name__}")
        if energy.shape not in ((), (x.shape[0],)):
            raise ValueError(f"energy_fn must return one energy per sample, shape ({x.shape[0]},); it returned "
                             f"shape {tuple(energy.shape)}")
        return energy

    def score(self, x: Tensor, y: Tensor, *args: Any, **kwargs: Any) -> Tensor:
        if self.score_fn is None:
            energy, pullback = vjp(lambda x_: self.energy(x_, y, *args, **kwargs), x)
            return -pullback(torch.ones_like(energy))[0]
        score = compat.call_user(self.score_fn, "score_fn", x, y, *args, **kwargs)
        if not isinstance(score, Tensor):
            raise TypeError(f"score_fn must return a tensor of x's shape {tuple(x.shape)}; it returned a "
                            f"{type(score).__name__}")
        if score.shape != x.shape:
            raise ValueError(f"the score has shape {tuple(score.shape)} (from score_fn) but x has shape {tuple(x.shape)}")
        return score

    def approximate_inverse(self, y: Tensor, *args: Any, **kwargs: Any) -> Tensor:
        if self.approximate_inverse_fn is None:
            raise ValueError("initialization_method='approximate_inverse' needs approximate_inverse_fn "
                             "(or a problem whose forward model has a pseudo_inverse)")
        return compat.call_approximate_inverse(self.approximate_inverse_fn, y, args, kwargs)
