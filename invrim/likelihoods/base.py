"""Likelihood base class: energy (negative log-likelihood), score and noise simulation."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from torch import Tensor

if TYPE_CHECKING:
    import torch


class Likelihood:
    """A likelihood ``p(y | prediction)`` where ``prediction = F(x)``.

    Sign convention (the same everywhere in invrim): ``energy`` is the negative log-likelihood,
    up to a constant, one value per sample ``(B,)``; the score is ``-∇ energy = ∇ log p``.

    Subclasses implement :meth:`energy` and :meth:`sample`, and may implement
    :meth:`residual_score` — the analytic ``∇_prediction log p(y | prediction)`` — which lets a
    linear problem compute its score as ``F.adjoint(residual_score)`` without autograd.
    """

    name: str = "likelihood"

    def energy(self, prediction: Tensor, y: Tensor, **params: Any) -> Tensor:  # pragma: no cover
        raise NotImplementedError

    def sample(self, prediction: Tensor, generator: Optional["torch.Generator"] = None,
               **params: Any) -> Tensor:  # pragma: no cover
        raise NotImplementedError

    residual_score = None  # optional: (prediction, y, **params) -> ∇_prediction log p

    #: named non-batch axes of each per-sample parameter (``{"sigma": ()}``: one number a sample)
    param_dims: dict[str, tuple[str, ...]] = {}

    def sample_parameters(self, prediction: Tensor, generator: Optional["torch.Generator"] = None
                          ) -> dict[str, Tensor]:
        """Random per-sample parameters (e.g. noise levels) for simulating observations of the
        noiseless ``prediction = F(x)``; leading axis ``B``. The default draws none."""
        return {}

    def config(self) -> dict[str, Any]:
        return {}
