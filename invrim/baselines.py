"""The generic classical baseline of every linear forward model: Tikhonov-regularised least
squares by conjugate gradients, with its damping chosen on training data.

For ``y = A x + n`` the Tikhonov solution ``x_λ = argmin ‖A x − y‖² + λ ‖x − x̄‖²`` solves
``(A^H A + λ I) x = A^H y + λ x̄`` (:meth:`LinearForwardModel.least_squares
<invrim.physics.LinearForwardModel.least_squares>`). It is the posterior mean under a white
Gaussian prior of mean ``x̄`` — the regularised baseline a domain scientist compares a learned
method with, unlike the adjoint or a pseudo-inverse, which ignore the noise.
:func:`choose_tikhonov` picks ``λ`` on a log grid (relative to ``‖A‖²``) and ``x̄`` (the mean of
the truths) by the mean squared error on pairs ``(y, x)``; ``invrim train`` stores the choice in
the run folder and ``invrim evaluate`` reports the baseline beside the RIM.

>>> from invrim.baselines import choose_tikhonov, tikhonov       # doctest: +SKIP
>>> choice = choose_tikhonov(model, [(y, x, params)])              # doctest: +SKIP
>>> x_hat = tikhonov(model, y, choice, **params)                   # doctest: +SKIP
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Optional

import torch
from torch import Tensor

from .physics.base import ForwardModel, LinearForwardModel

__all__ = ["TIKHONOV", "RELATIVE_DAMPING_GRID", "has_tikhonov", "tikhonov", "choose_tikhonov", "tikhonov_label"]

#: The method name of this baseline in evaluation results and run folders.
TIKHONOV = "tikhonov"
#: ``λ / ‖A‖²`` tried by :func:`choose_tikhonov`: half-decades from 1e-6 to 10.
RELATIVE_DAMPING_GRID = tuple(10.0 ** (k / 2) for k in range(-12, 3))
#: Samples the damping is chosen on: the first training samples (or, for a run without a stored
#: choice, the first evaluated ones).
TUNING_SAMPLES = 32
#: Conjugate-gradient iterations and relative tolerance of the solves.
ITERATIONS, TOLERANCE = 100, 1e-6


def has_tikhonov(forward_model: ForwardModel) -> bool:
    """Whether the Tikhonov-CG baseline applies (a linear forward model)."""
    return isinstance(forward_model, LinearForwardModel)


def tikhonov(forward_model: LinearForwardModel, y: Tensor, choice: dict[str, Any], **params: Any) -> Tensor:
    """The Tikhonov-CG reconstruction of ``y`` with the damping and prior mean of ``choice`` (the
    record :func:`choose_tikhonov` returns)."""
    with torch.no_grad():
        return forward_model.least_squares(y, damping=float(choice["damping"]),
                                           prior_mean=float(choice.get("prior_mean", 0.0)),
                                           iterations=int(choice.get("iterations", ITERATIONS)),
                                           tol=float(choice.get("tol", TOLERANCE)), **params)


def tikhonov_label(choice: Optional[dict[str, Any]]) -> str:
    """``"Tikhonov-CG (λ=3.2e-03)"`` for tables and figures."""
    if not choice:
        return "Tikhonov-CG"
    return f"Tikhonov-CG (λ={float(choice['damping']):.1e})"


def _mse(estimate: Tensor, truth: Tensor) -> Tensor:
    return (estimate.to(torch.float64) - truth.to(torch.float64)).pow(2).flatten(1).mean(1)


def choose_tikhonov(forward_model: LinearForwardModel, batches: Iterable[tuple[Tensor, Tensor, dict[str, Any]]],
                    grid=RELATIVE_DAMPING_GRID, iterations: int = ITERATIONS, tol: float = TOLERANCE,
                    source: Optional[str] = None) -> dict[str, Any]:
    """Choose the damping ``λ`` (and the prior mean ``x̄``, the mean of the truths) of the
    Tikhonov-CG baseline by the mean squared error on ``batches`` of ``(y, x, params)``.

    ``λ = r ‖A‖²`` for ``r`` in ``grid``, with ``‖A‖`` the median operator norm of the first
    batch (power iteration). Returns a JSON-serialisable record: ``method``, ``damping``,
    ``relative_damping``, ``operator_norm``, ``prior_mean``, ``iterations``, ``tol``,
    ``samples``, ``grid`` (``[{"relative", "damping", "mse"}]``), ``source`` (what it was chosen on).
    """
    if not has_tikhonov(forward_model):
        raise ValueError(f"forward model {forward_model.name!r} is not linear: no Tikhonov-CG baseline")
    batches = list(batches)
    if not batches:
        raise ValueError("choose_tikhonov needs at least one batch of (y, x, params)")
    with torch.no_grad():
        y0, x0, p0 = batches[0]
        generator = torch.Generator().manual_seed(0)
        norm = float(forward_model.norm(x0, generator=generator, iterations=100, tol=1e-4, **p0).median())
        total = sum(float(x.to(torch.float64).sum()) for _, x, _ in batches)
        count = sum(x.numel() for _, x, _ in batches)
        prior_mean = total / count
        rows = []
        for r in grid:
            lam = float(r) * norm ** 2
            errors = torch.cat([_mse(forward_model.least_squares(y, damping=lam, prior_mean=prior_mean,
                                                                 iterations=iterations, tol=tol, **p), x)
                                for y, x, p in batches])
            rows.append({"relative": float(r), "damping": lam, "mse": float(errors.mean())})
    finite = [row for row in rows if math.isfinite(row["mse"])]
    if not finite:
        raise ValueError(f"every Tikhonov-CG solve of {forward_model.name!r} diverged (non-finite error)")
    best = min(finite, key=lambda row: row["mse"])
    return {"method": TIKHONOV, "forward_model": forward_model.name, "damping": best["damping"],
            "relative_damping": best["relative"], "operator_norm": norm, "prior_mean": prior_mean,
            "iterations": iterations, "tol": tol, "samples": sum(x.shape[0] for _, x, _ in batches),
            "grid": rows, "source": source}
