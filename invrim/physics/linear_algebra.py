"""Batched iterative linear algebra on the operators of :class:`~invrim.physics.LinearForwardModel`:
conjugate gradients and power iteration, one independent problem per sample (batch axis first)."""
from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import Tensor


def batch_dot(a: Tensor, b: Tensor) -> Tensor:
    """``Re ⟨a, b⟩`` per sample: ``(B,)``, summed over every non-batch axis."""
    if a.is_complex() or b.is_complex():
        return (a.conj() * b).real.flatten(1).sum(1)
    return (a * b).flatten(1).sum(1)


def _per_sample(v: Tensor, like: Tensor) -> Tensor:
    return v.view(-1, *([1] * (like.dim() - 1)))


def conjugate_gradient(apply: Callable[[Tensor], Tensor], b: Tensor, x0: Optional[Tensor] = None,
                       iterations: int = 50, tol: float = 1e-6) -> Tensor:
    """Solve ``apply(x) = b`` for a symmetric positive (semi-)definite ``apply``, per sample.

    Every sample stops updating once its residual norm falls below ``tol`` times the norm of its
    ``b`` (the loop ends when all have, or after ``iterations``). Starting from ``x0`` (default
    zeros), with ``apply`` singular it converges to the solution nearest ``x0`` (for ``x0 = 0``,
    the minimum-norm least-squares solution).
    """
    if iterations < 1:
        raise ValueError(f"iterations must be at least 1, got {iterations}")
    x = torch.zeros_like(b) if x0 is None else x0.clone()
    r = b - apply(x) if x0 is not None else b.clone()
    p = r.clone()
    rr = batch_dot(r, r)
    stop = (tol * batch_dot(b, b).sqrt()) ** 2
    for _ in range(iterations):
        active = rr > stop
        if not bool(active.any()):
            break
        Ap = apply(p)
        pAp = batch_dot(p, Ap)
        alpha = torch.where(active & (pAp > 0), rr / pAp.clamp_min(torch.finfo(pAp.dtype).tiny), 0.0)
        x = x + _per_sample(alpha, x) * p
        r = r - _per_sample(alpha, r) * Ap
        rr_new = batch_dot(r, r)
        beta = torch.where(active, rr_new / rr.clamp_min(torch.finfo(rr.dtype).tiny), 0.0)
        p = r + _per_sample(beta, p) * p
        rr = torch.where(active, rr_new, rr)
    return x


def power_iteration(apply: Callable[[Tensor], Tensor], x: Tensor, iterations: int = 100, tol: float = 1e-6,
                    generator: Optional[torch.Generator] = None) -> Tensor:
    """The largest eigenvalue of a symmetric positive semi-definite ``apply`` per sample ``(B,)``,
    from a random start shaped like ``x`` (iterating until the estimate changes by less than
    ``tol`` relative, or ``iterations``)."""
    v = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
    v = v / _per_sample(batch_dot(v, v).sqrt(), v)
    value = torch.zeros(x.shape[0], dtype=v.real.dtype, device=x.device)
    for _ in range(iterations):
        w = apply(v)
        new = batch_dot(v, w)
        norm = batch_dot(w, w).sqrt()
        if bool((norm == 0).all()):
            return torch.zeros_like(value)
        v = w / _per_sample(norm.clamp_min(torch.finfo(norm.dtype).tiny), w)
        done = bool(((new - value).abs() <= tol * new.abs()).all())
        value = new
        if done:
            break
    return value
