"""Cartesian undersampling masks (fastMRI-style): sampled phase-encode columns of centred k-space.

Both functions keep a fully sampled block of ``round(width * center_fraction)`` columns around the
DC column ``width // 2`` (placed as fastMRI does: starting at ``(width - n_center + 1) // 2``)
and add outer columns until about ``width / acceleration`` columns are sampled:

* :func:`random_mask` picks exactly ``round(width / acceleration) - n_center`` outer columns
  uniformly at random (without replacement), so the measured acceleration is the requested one
  up to rounding;
* :func:`equispaced_mask` takes outer columns on an equispaced grid with a random offset, its
  spacing adjusted (as fastMRI's ``EquiSpacedMaskFractionFunc``) so that the total number of
  sampled columns is about ``width / acceleration``.

They return boolean column masks ``(batch, width)`` — one independent draw per sample — or, with
``height=``, full masks ``(batch, height, width)``. Draws are reproducible from ``seed`` or a
``torch.Generator``.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

__all__ = ["random_mask", "equispaced_mask", "center_columns", "acceleration_of", "MASK_TYPES", "make_mask"]

MASK_TYPES = ("random", "equispaced")


def _check(batch: int, width: int, acceleration: float, center_fraction: float,
           height: Optional[int]) -> tuple[int, int]:
    for label, v in (("batch", batch), ("width", width)) + ((("height", height),) if height is not None else ()):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{label} must be a positive integer, got {v!r}")
    try:
        acceleration = float(acceleration)
        center_fraction = float(center_fraction)
    except (TypeError, ValueError):
        raise ValueError("acceleration and center_fraction must be numbers") from None
    if not acceleration >= 1:       # also rejects NaN
        raise ValueError(f"acceleration must be >= 1, got {acceleration}")
    if not 0 < center_fraction < 1:
        raise ValueError(f"center_fraction must lie in (0, 1), got {center_fraction}")
    n_center = max(1, int(round(width * center_fraction)))
    n_total = min(width, max(1, int(round(width / acceleration))))
    if n_center > n_total:
        raise ValueError(f"center_fraction={center_fraction} samples {n_center} centre columns, more than the "
                         f"{n_total} columns allowed by acceleration={acceleration} at width {width}")
    return n_center, n_total


def _generator(generator: Optional[torch.Generator], seed: Optional[int]) -> torch.Generator:
    if generator is not None and seed is not None:
        raise ValueError("pass either seed or generator, not both")
    if generator is not None:
        if not isinstance(generator, torch.Generator):
            raise ValueError(f"generator must be a torch.Generator, got {type(generator).__name__}")
        return generator
    g = torch.Generator()
    if seed is None:
        g.seed()
    else:
        g.manual_seed(int(seed))
    return g


def center_columns(width: int, center_fraction: float) -> slice:
    """The fully sampled centre block of columns (contains the DC column ``width // 2``)."""
    n_center = max(1, int(round(width * center_fraction)))
    start = (width - n_center + 1) // 2
    return slice(start, start + n_center)


def _finish(columns: Tensor, height: Optional[int]) -> Tensor:
    if height is None:
        return columns
    return columns[:, None, :].expand(columns.shape[0], height, columns.shape[1]).clone()


def random_mask(batch: int, width: int, acceleration: float = 4.0, center_fraction: float = 0.08, *,
                height: Optional[int] = None, generator: Optional[torch.Generator] = None,
                seed: Optional[int] = None) -> Tensor:
    """Random Cartesian column masks with a fully sampled centre.

    Returns a boolean ``(batch, width)`` tensor, or ``(batch, height, width)`` with ``height``.
    Raises ``ValueError`` for ``acceleration < 1``, ``center_fraction`` outside ``(0, 1)`` or a
    centre block larger than ``width / acceleration`` columns.
    """
    n_center, n_total = _check(batch, width, acceleration, center_fraction, height)
    g = _generator(generator, seed)
    centre = center_columns(width, center_fraction)
    outer = torch.ones(width, dtype=torch.bool)
    outer[centre] = False
    candidates = torch.nonzero(outer).flatten()
    extra = n_total - n_center
    mask = torch.zeros(batch, width, dtype=torch.bool)
    mask[:, centre] = True
    for i in range(batch):
        if extra > 0:
            mask[i, candidates[torch.randperm(candidates.numel(), generator=g)[:extra]]] = True
    return _finish(mask, height)


def equispaced_mask(batch: int, width: int, acceleration: float = 4.0, center_fraction: float = 0.08, *,
                    height: Optional[int] = None, generator: Optional[torch.Generator] = None,
                    seed: Optional[int] = None) -> Tensor:
    """Equispaced Cartesian column masks (random offset per sample) with a fully sampled centre.

    The outer spacing is ``acceleration · (n_center − width) / (n_center · acceleration − width)``
    (fastMRI's ``EquiSpacedMaskFractionFunc``), so about ``width / acceleration`` columns are
    sampled in total. Same shapes and errors as :func:`random_mask`.
    """
    n_center, n_total = _check(batch, width, acceleration, center_fraction, height)
    g = _generator(generator, seed)
    centre = center_columns(width, center_fraction)
    mask = torch.zeros(batch, width, dtype=torch.bool)
    mask[:, centre] = True
    acceleration = float(acceleration)
    denominator = n_center * acceleration - width
    spacing = acceleration * (n_center - width) / denominator if denominator < 0 else float("inf")
    for i in range(batch):
        if n_total <= n_center or spacing == float("inf"):
            continue
        if spacing <= 1:
            mask[i] = True
            continue
        offset = int(torch.randint(0, max(1, int(round(spacing))), (1,), generator=g))
        positions = torch.arange(offset, width, spacing, dtype=torch.float64).round().long()
        mask[i, positions[positions < width]] = True
    return _finish(mask, height)


def make_mask(kind: str, batch: int, width: int, acceleration: float = 4.0, center_fraction: float = 0.08,
              **options) -> Tensor:
    """``random_mask`` or ``equispaced_mask`` by name (``kind`` in :data:`MASK_TYPES`)."""
    if kind == "random":
        return random_mask(batch, width, acceleration, center_fraction, **options)
    if kind == "equispaced":
        return equispaced_mask(batch, width, acceleration, center_fraction, **options)
    raise ValueError(f"mask kind must be one of {MASK_TYPES}, got {kind!r}")


def acceleration_of(mask: Tensor) -> Tensor:
    """Measured acceleration per sample: number of k-space locations / number sampled.

    ``mask`` is ``(B, W)`` or ``(B, H, W)``; returns a float64 ``(B,)`` tensor.
    """
    m = torch.as_tensor(mask).reshape(mask.shape[0], -1) != 0
    return m.shape[1] / m.sum(dim=1).to(torch.float64)
