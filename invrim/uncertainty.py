"""How sure is the reconstruction? Conformal intervals, their coverage, and data consistency.

Split conformal prediction on a *calibration file* of simulated pairs ``(x, y)`` that training
never saw (see ``docs/uncertainty.md``):

1. Every calibration sample is reconstructed exactly as ``invrim reconstruct`` does it
   (:func:`invrim.reconstruct.estimate`), with a per-pixel *scale* ``s`` that adapts to the
   sample: for one RIM the spread of the second half of its trajectory around the final estimate
   (:func:`invrim.reconstruct.trajectory_scale`), for an ensemble the members' standard deviation.
2. On a first part of the samples (the *tuning* part) a learned scale is fitted (least squares of
   ``log |x − x̂|`` on the logs of :data:`~invrim.reconstruct.SCALE_FEATURES`); the normalised error
   of every pixel is ``r = |x − x̂| / (s + δ)`` with ``s`` the base or the learned scale and the
   floor ``δ`` (a multiple of the mean scale), both chosen there as the narrowest intervals; the
   conformal quantiles come from the rest alone, so the guarantee is exact for that rest.
3. **Per pixel**, the quantile ``q`` is chosen by conformal risk control (Angelopoulos et al.
   2022): the smallest ``q`` with ``n/(n+1) · L̂(q) + 1/(n+1) ≤ α``, ``L̂`` the calibration
   samples' mean fraction of pixels with ``r > q``. For a new sample drawn like the calibration
   samples, the *expected fraction of its pixels inside* ``x̂ ± q (s + δ)`` is at least
   ``1 − α`` — coverage marginal over pixels and samples, not per pixel and not per image.
4. **Per image**, ``q_image`` is the ``⌈(n+1)(1−α)⌉``-th smallest of the samples' largest ``r``:
   a new sample lies *entirely* inside ``x̂ ± q_image (s + δ)`` with probability at least
   ``1 − α`` (and below ``1 − α + 1/(n+1)`` when the scores have no ties).
5. **Data consistency**: the calibration samples' ``data_fit`` (:func:`invrim.reconstruct.data_fit`)
   gives a two-sided range ``[low, high]``, each tail at ``false_alarm/2`` by the same rank rule, so
   a new in-distribution sample falls outside (is flagged ``ood``) with probability at most
   ``false_alarm``.

:func:`calibrate` stores the result as ``calibration.json`` in the run folder
(:meth:`invrim.runs.RunFolder.write_calibration`); ``reconstruct(..., uncertainty=True)`` applies
it. :func:`intervals`, :func:`coverage`, :class:`CoverageTally` and :func:`rank_correlation` are the
pieces to check it with.

>>> from invrim.uncertainty import calibrate                        # doctest: +SKIP
>>> record = calibrate("run/", "cal.h5", coverage=0.9)               # doctest: +SKIP
>>> record["pixel"]["quantile"], record["data_fit"]["high"]          # doctest: +SKIP
"""
from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np
import torch
from tqdm.auto import tqdm

from .config import CalibrationConfig
from .data import HDF5Dataset
from .data.schema import OBSERVATION, TRUTH, DataError
from .reconstruct import (SCALE_FEATURES, check_distinct, check_match, data_fit, data_fit_name, estimate,
                          gradient_magnitude, half_width, load_members, load_run, member_record, pixel_scale,
                          scale_features)
from .runs import RunFolder, file_digest

__all__ = ["calibrate", "intervals", "coverage", "CoverageTally", "rank_correlation", "conformal_quantiles",
           "describe", "GUARANTEE"]

PathLike = Union[str, "os.PathLike[str]"]

#: What a calibration guarantees, in words (stored with it and printed by ``invrim calibrate``).
GUARANTEE = ("for a new sample drawn from the calibration file's distribution: the expected fraction of its "
             "pixels inside x_hat +- x_uncertainty is at least the coverage (marginal over pixels and samples); "
             "the whole image lies inside x_hat +- image_factor * x_uncertainty with at least that probability; "
             "it is flagged as out of distribution with probability at most false_alarm")

#: At most this many pixels enter :func:`rank_correlation` in a :class:`CoverageTally`.
MAX_CORRELATION_PIXELS = 2_000_000


# ----------------------------------------------------------------------------------------------
# the conformal arithmetic
# ----------------------------------------------------------------------------------------------
def _order_statistic(values: np.ndarray, k: int) -> Optional[float]:
    """The ``k``-th smallest of ``values`` (1-based); None when ``k`` is beyond them."""
    if k > values.size:
        return None
    if k < 1:
        return None
    return float(np.partition(values, k - 1)[k - 1])


def conformal_quantiles(scores: np.ndarray, level: float) -> dict[str, Optional[float]]:
    """The per-pixel (conformal risk control) and per-image (split conformal on the largest
    score) quantiles of normalised scores ``(n, pixels)`` at coverage ``level``; None where ``n``
    is too small for that level."""
    n = scores.shape[0]
    alpha = 1.0 - level
    out: dict[str, Optional[float]] = {"pixel": None, "image": None}
    if n == 0:
        return out
    target = (alpha * (n + 1) - 1) / n               # L̂(q) ≤ target  ⇔  n/(n+1) L̂ + 1/(n+1) ≤ α
    if target >= 0:
        pooled = scores.reshape(-1)
        k = max(1, math.ceil((1 - target) * pooled.size - 1e-9))
        out["pixel"] = _order_statistic(pooled, min(k, pooled.size))
    out["image"] = _order_statistic(scores.max(axis=1), math.ceil((n + 1) * level - 1e-9))
    return out


def _data_fit_range(fits: np.ndarray, false_alarm: float) -> dict[str, Any]:
    """Two-sided conformal range of the calibration's data fits: each tail at ``false_alarm / 2``."""
    n = fits.size
    low_rank = math.floor((n + 1) * false_alarm / 2 + 1e-9)           # P(new < k-th) = k/(n+1)
    high_rank = math.ceil((n + 1) * (1 - false_alarm / 2) - 1e-9)     # P(new > k-th) = (n+1-k)/(n+1)
    low = _order_statistic(fits, low_rank) if low_rank >= 1 else None
    high = _order_statistic(fits, high_rank)
    stated = (low_rank + (n + 1 - high_rank if high is not None else 0)) / (n + 1)
    return {"low": low, "high": high, "false_alarm": false_alarm, "false_alarm_bound": stated,
            "samples": n, "median": float(np.median(fits)) if n else None,
            "range": [float(fits.min()), float(fits.max())] if n else None}


def _choose_floor(errors: np.ndarray, scales: np.ndarray, level: float, factors: Sequence[float]
                  ) -> tuple[float, dict[str, float]]:
    """The floor factor whose intervals are narrowest on the tuning samples at ``level``."""
    mean_scale = float(scales.mean()) if scales.size else 0.0
    widths = {}
    for c in factors:
        floor = c * mean_scale if mean_scale > 0 else 1.0
        r = errors / (scales + floor)
        q = float(np.quantile(r, level))
        widths[repr(c)] = q * float((scales + floor).mean())
    best = min(widths, key=widths.get)
    return float(best), widths


# ----------------------------------------------------------------------------------------------
# calibrate
# ----------------------------------------------------------------------------------------------
def _check_held_out(cal: Path, run: Path, record: dict[str, Any]) -> None:
    used = [record.get("path"), (record.get("validation") or {}).get("path")]
    if str(cal.resolve()) in [u for u in used if u]:
        raise DataError(f"{cal} is a file {run} was trained (or validated) on: calibrate on held-out simulated "
                        "pairs (e.g. 'invrim simulate' with another --seed), or the intervals are too narrow")


def _check_enough(cal: Path, samples: int, cfg: CalibrationConfig, force: bool = False) -> None:
    """A one-line error, before any work, when ``samples`` are too few for the coverage."""
    rest = samples - int(round(cfg.tuning_fraction * samples))
    if force or math.ceil((rest + 1) * cfg.coverage - 1e-9) > rest:
        need = math.ceil(cfg.coverage / (1 - cfg.coverage) - 1e-9)
        raise DataError(f"{cal} holds {samples} samples, {rest} of them for the conformal quantiles: too few "
                        f"for coverage {cfg.coverage} (at least {need} needed there, so about "
                        f"{math.ceil(need / (1 - cfg.tuning_fraction))} in the file)")


def calibrate(run: PathLike, calibration_file: PathLike, coverage: Optional[float] = None, *,
              false_alarm: Optional[float] = None, ensemble: Optional[Sequence[PathLike]] = None,
              weights: Union[str, int] = "best", device: Union[str, torch.device, None] = None,
              batch_size: Optional[int] = None, progress: bool = True, check_values: bool = True,
              save: bool = True, **options: Any) -> dict[str, Any]:
    """Calibrate the RIM (or ensemble) of ``run`` on held-out simulated pairs; store the result.

    Parameters
    ----------
    run
        A run folder (``invrim train``). The calibration is written to it as ``calibration.json``.
    calibration_file
        An invrim data file with ground truth ``x`` and observations ``y`` of the same physics,
        not used for training; validated like every data file (one-line :class:`DataError`).
    coverage
        Nominal coverage of the intervals (default :class:`~invrim.config.CalibrationConfig`'s 0.9).
    false_alarm
        Rate at which in-distribution samples are flagged by the data-consistency check (0.05).
    ensemble
        Further run folders of the same problem: the scale is then the members' spread.
    weights
        Which weights of the run(s): ``"best"``, ``"last"`` or an epoch number.
    save
        Write ``calibration.json`` (else only return the record).
    options
        Further :class:`~invrim.config.CalibrationConfig` fields (``scale``, ``levels``,
        ``tuning_fraction``, ``floor_factors``, ``seed``).

    Returns
    -------
    dict
        The calibration record: ``coverage``, ``guarantee``, ``scale`` (``method``, ``floor``),
        ``pixel`` and ``image`` (``quantile``, ``samples``), ``levels`` (``{coverage: {pixel,
        image}}``), ``data_fit`` (``statistic``, ``low``, ``high``, ``false_alarm``), ``file``,
        ``weights``, ``ensemble``, ``tuning``.
    """
    given = {k: v for k, v in (("coverage", coverage), ("false_alarm", false_alarm), ("batch_size", batch_size))
             if v is not None}
    unknown = set(options) - set(CalibrationConfig.__dataclass_fields__)
    if unknown:
        raise TypeError(f"calibrate() got unknown option(s) {sorted(unknown)}")
    cfg = CalibrationConfig(**{**options, **given})
    run, cal = Path(run), Path(calibration_file)
    folder = RunFolder(run)
    rim, weight_file, record = load_run(run, weights, device)
    members = load_members(ensemble or [], weights, device, rim.precision)
    check_distinct(weight_file, members)
    _check_held_out(cal, run, record)
    for _, _, member_data, member_run in members:
        _check_held_out(cal, member_run, member_data)
    dtype = next(rim.model.parameters()).dtype
    dataset = HDF5Dataset(cal, dtype=dtype, require_truth=True, check_values=check_values)
    try:
        check_match(rim, record, dataset, run, cal)
        _check_enough(cal, len(dataset), cfg)
        rim.problem = dataset.problem
        for member, _, member_data, member_run in members:
            check_match(member, member_data, dataset, member_run, cal)
            member.problem = dataset.problem
        errors, base, fits, x_hats = _collect(dataset, [rim, *(m[0] for m in members)], cfg.batch_size, progress)
        created = dataset.info.attrs.get("created")
        samples = len(dataset)
        x_dims = tuple(dataset.problem.forward_model.x_dims)
    finally:
        dataset.close()

    n = errors.shape[0]
    order = np.random.default_rng(cfg.seed).permutation(n)
    n_tune = int(round(cfg.tuning_fraction * n))
    tune, rest = np.sort(order[:n_tune]), np.sort(order[n_tune:])
    method = "ensemble" if members else "trajectory"
    # candidate scales, chosen between on the tuning samples only (so the guarantee on the rest holds)
    candidates: dict[str, tuple[np.ndarray, Optional[dict[str, Any]]]] = {}
    if cfg.scale != "learned" or n_tune < 2:
        candidates[method] = (base, None)
    if cfg.scale != "base" and n_tune >= 2:
        rule = _fit_scale(errors[tune], base[tune], x_hats[tune], fits[tune], x_dims, cfg.seed)
        candidates["learned"] = (_learned(rule, base, x_hats, fits, x_dims), rule)
    tried: dict[str, dict[str, Any]] = {}
    for name, (scale, _) in candidates.items():
        if n_tune:
            factor, widths = _choose_floor(errors[tune], scale[tune], cfg.coverage, cfg.floor_factors)
        else:
            factor, widths = 1.0, {}
        tried[name] = {"floor_factor": factor, "mean_half_width_by_floor_factor": widths,
                       "mean_half_width": min(widths.values()) if widths else None}
    chosen = min(tried, key=lambda k: tried[k]["mean_half_width"] if tried[k]["mean_half_width"] is not None
                 else math.inf)
    scales, rule = candidates[chosen]
    factor = tried[chosen]["floor_factor"]
    mean_scale = float(scales[tune].mean() if n_tune else scales.mean())
    floor = factor * mean_scale if mean_scale > 0 else 1.0
    scores = errors[rest] / (scales[rest] + floor)
    levels = {}
    for level in cfg.levels:
        q = conformal_quantiles(scores, level)
        if q["pixel"] is not None:
            levels[repr(level)] = q
    main = levels.get(repr(cfg.coverage))
    if main is None or main["image"] is None:
        _check_enough(cal, samples, cfg, force=True)
    out = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "coverage": cfg.coverage, "false_alarm": cfg.false_alarm, "guarantee": GUARANTEE,
        "scale": {"method": chosen, "base": method, "floor": floor, "floor_factor": factor, "mean_scale": mean_scale,
                  **({"features": list(SCALE_FEATURES), "weights": rule["weights"], "eps": rule["eps"]}
                     if rule else {})},
        "pixel": {"quantile": main["pixel"], "samples": int(rest.size), "method": "conformal risk control",
                  "mean_half_width": float((main["pixel"] * (scales[rest] + floor)).mean())},
        "image": {"quantile": main["image"], "samples": int(rest.size),
                  "method": "split conformal on the largest normalised error of each sample"},
        "levels": levels,
        "data_fit": {"statistic": data_fit_name(rim.problem.likelihood), **_data_fit_range(fits, cfg.false_alarm)},
        "file": {"path": str(cal.resolve()), "samples": samples, "created": created},
        "weights": {"file": weight_file.name, "sha256": file_digest(weight_file)},
        "ensemble": member_record(members),
        "tuning": {"samples": int(n_tune), "seed": cfg.seed, "scales": tried},
    }
    return folder.write_calibration(out) if save else out


#: At most this many pixels enter the least-squares fit of the learned scale.
MAX_FIT_PIXELS = 400_000


def _fit_scale(errors: np.ndarray, base: np.ndarray, x_hats: torch.Tensor, fits: np.ndarray,
               x_dims: tuple[str, ...], seed: int) -> dict[str, Any]:
    """The learned scale: least squares of ``log(|x − x̂| + ε)`` on the logarithms of
    :data:`~invrim.reconstruct.SCALE_FEATURES`, over (a sample of) the tuning pixels."""
    n = errors.shape[0]
    shape = tuple(x_hats.shape[1:])
    base_t = torch.from_numpy(base).reshape(n, *shape)
    grad = torch.cat([gradient_magnitude(x_hats[i:i + 64].double(), x_dims) for i in range(0, n, 64)])
    eps = {"base": 0.01 * float(base.mean()) + 1e-12, "gradient": 0.01 * float(grad.mean()) + 1e-12,
           "data_fit": 1e-6}
    feats = scale_features(base_t, x_hats, torch.from_numpy(fits), x_dims, eps).reshape(-1, len(SCALE_FEATURES))
    target = np.log(errors.reshape(-1) + 0.01 * float(errors.mean()) + 1e-12)
    rows = np.arange(target.size)
    if rows.size > MAX_FIT_PIXELS:
        rows = np.sort(np.random.default_rng(seed).choice(rows.size, MAX_FIT_PIXELS, replace=False))
    design = np.concatenate([np.ones((rows.size, 1)), feats.numpy()[rows]], axis=1)
    weights = np.linalg.lstsq(design, target[rows], rcond=None)[0]
    return {"weights": [float(w) for w in weights], "eps": eps}


def _learned(rule: dict[str, Any], base: np.ndarray, x_hats: torch.Tensor, fits: np.ndarray,
             x_dims: tuple[str, ...]) -> np.ndarray:
    """The learned scale of every sample ``(n, pixels)`` float64, as :func:`invrim.reconstruct.pixel_scale`
    computes it at reconstruction time."""
    n, shape = base.shape[0], tuple(x_hats.shape[1:])
    record = {"scale": rule}
    out = []
    for i in range(0, n, 64):
        result = {"scale": torch.from_numpy(base[i:i + 64]).reshape(-1, *shape), "x_hat": x_hats[i:i + 64].double()}
        out.append(pixel_scale(record, result, torch.from_numpy(fits[i:i + 64]), x_dims).flatten(1).numpy())
    return np.concatenate(out)


def _collect(dataset, rims: list, batch_size: int, progress: bool
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray, torch.Tensor]:
    """``|x − x̂|`` and the base scale ``(n, pixels)`` float64, the data fit ``(n,)`` and ``x̂``
    ``(n, *x_dims)`` of every sample."""
    n = len(dataset)
    device = next(rims[0].model.parameters()).device
    errors, scales, fits, x_hats = [], [], [], []
    bar = tqdm(total=n, disable=not progress, desc="calibrate", unit="sample", dynamic_ncols=True)
    try:
        for lo in range(0, n, batch_size):
            batch = dataset.read(lo, min(lo + batch_size, n))
            y = batch.pop(OBSERVATION).to(device)
            x = batch.pop(TRUTH).to(device)
            params = {k: v.to(device) for k, v in batch.items()}
            result = estimate(rims, y, params)
            errors.append((x - result["x_hat"]).abs().flatten(1).double().cpu().numpy())
            scales.append(result["scale"].flatten(1).double().cpu().numpy())
            fits.append(data_fit(dataset.problem, result["x_hat"], y, **params).cpu().numpy())
            x_hats.append(result["x_hat"].float().cpu())
            bar.update(y.shape[0])
    finally:
        bar.close()
    return np.concatenate(errors), np.concatenate(scales), np.concatenate(fits), torch.cat(x_hats)


# ----------------------------------------------------------------------------------------------
# applying and checking
# ----------------------------------------------------------------------------------------------
def intervals(x_hat: torch.Tensor, scale: torch.Tensor, calibration: dict[str, Any],
              coverage: Optional[float] = None, per: str = "pixel") -> tuple[torch.Tensor, torch.Tensor]:
    """``(lower, upper)``: the calibrated interval of every pixel of ``x_hat`` given its ``scale``
    (as :func:`invrim.reconstruct.pixel_scale` computes it for this calibration); ``per="image"``
    gives the whole-image band; ``coverage`` another of the calibration's ``levels``."""
    w = half_width(calibration, scale, coverage, per)
    return x_hat - w, x_hat + w


def coverage(x: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor) -> dict[str, Any]:
    """How well intervals cover the truth, for a batch ``(B, *x_dims)``: ``pixel`` (the fraction
    of all pixels inside), ``image`` (the fraction of samples entirely inside), ``per_sample``
    (each sample's fraction inside, a ``(B,)`` tensor) and ``mean_width`` (of ``upper − lower``)."""
    inside = ((x >= lower) & (x <= upper)).flatten(1)
    per_sample = inside.double().mean(dim=1)
    return {"pixel": float(per_sample.mean()), "image": float(inside.all(dim=1).double().mean()),
            "per_sample": per_sample, "mean_width": float((upper - lower).double().mean())}


def _ranks(a: np.ndarray) -> np.ndarray:
    _, inverse, counts = np.unique(a, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    return (ends - (counts - 1) / 2.0)[inverse.reshape(-1)]


def rank_correlation(a, b) -> float:
    """Spearman's rank correlation of two equally long arrays (average ranks for ties); NaN when
    either is constant."""
    a = np.asarray(a, dtype=np.float64).reshape(-1)
    b = np.asarray(b, dtype=np.float64).reshape(-1)
    if a.size != b.size:
        raise ValueError(f"rank_correlation needs arrays of one length, got {a.size} and {b.size}")
    ra, rb = _ranks(a) - (a.size + 1) / 2.0, _ranks(b) - (b.size + 1) / 2.0
    denom = math.sqrt(float((ra ** 2).sum()) * float((rb ** 2).sum()))
    return float((ra * rb).sum() / denom) if denom > 0 else math.nan


class CoverageTally:
    """Coverage of a reconstruction file's intervals, batch by batch (``invrim evaluate`` uses it).

    ``attrs`` is the file's ``uncertainty`` attribute (the calibration applied). :meth:`add`
    takes the truth, ``x_hat`` and ``x_uncertainty`` of a batch; :meth:`result` gives the
    per-pixel and per-image coverage at the calibrated level and at every stored level, the mean
    half-width and the rank correlation of the half-width with the true error, over pixels and
    over samples (each sample's mean half-width against its RMS error).
    """

    def __init__(self, attrs: dict[str, Any], max_pixels: int = MAX_CORRELATION_PIXELS):
        self.attrs = attrs
        self.q = float(attrs["pixel"]["quantile"])
        self.levels = {float(k): v for k, v in attrs.get("levels", {}).items()}
        self.max_pixels = max_pixels
        self.samples = 0
        self.pixels = 0
        self.inside = {level: 0 for level in self.levels}
        self.whole = {level: 0 for level in self.levels}
        self.width_sum = 0.0
        self.per_sample: list[float] = []
        self.sample_width: list[float] = []
        self.sample_error: list[float] = []
        self._w: list[np.ndarray] = []
        self._e: list[np.ndarray] = []
        self._kept = 0

    def add(self, x: torch.Tensor, x_hat: torch.Tensor, x_uncertainty: torch.Tensor) -> None:
        e = (x - x_hat).abs().flatten(1).double()
        w = x_uncertainty.flatten(1).double()
        self.samples += e.shape[0]
        self.pixels += e.numel()
        self.width_sum += float(w.sum())
        main = (e <= w)
        self.per_sample.extend(main.double().mean(dim=1).tolist())
        self.sample_width.extend(w.mean(dim=1).tolist())
        self.sample_error.extend(e.pow(2).mean(dim=1).sqrt().tolist())
        # e ≤ q_L (s + δ)  ⇔  e ≤ (q_L / q) · w   (w = q (s + δ))
        for level, qs in self.levels.items():
            ratio = qs["pixel"] / self.q if self.q > 0 else math.inf
            self.inside[level] += int((e <= ratio * w).sum())
            if qs.get("image") is not None:
                ratio = qs["image"] / self.q if self.q > 0 else math.inf
                self.whole[level] += int((e <= ratio * w).all(dim=1).sum())
        room = self.max_pixels - self._kept
        if room > 0:
            step = max(1, math.ceil(e.numel() / room))
            self._e.append(e.reshape(-1)[::step].cpu().numpy())
            self._w.append(w.reshape(-1)[::step].cpu().numpy())
            self._kept += self._e[-1].size

    def result(self) -> dict[str, Any]:
        level = float(self.attrs["coverage"])
        curve = [{"nominal": lv, "pixel": self.inside[lv] / self.pixels if self.pixels else None,
                  "image": (self.whole[lv] / self.samples if self.samples and qs.get("image") is not None
                            else None)} for lv, qs in sorted(self.levels.items())]
        at = next((c for c in curve if abs(c["nominal"] - level) < 1e-9), None)
        return {
            "coverage": level, "samples": self.samples,
            "pixel_coverage": at["pixel"] if at else (float(np.mean(self.per_sample)) if self.per_sample else None),
            "image_coverage": at["image"] if at else None,
            "mean_half_width": self.width_sum / self.pixels if self.pixels else None,
            "rank_correlation": (rank_correlation(np.concatenate(self._w), np.concatenate(self._e))
                                 if self._kept > 1 else None),
            "sample_rank_correlation": (rank_correlation(self.sample_width, self.sample_error)
                                        if self.samples > 1 else None),
            "per_sample": self.per_sample, "sample_width": self.sample_width, "sample_error": self.sample_error,
            "curve": curve,
        }



def describe(record: dict[str, Any]) -> str:
    """A few lines saying what a calibration record holds (printed by ``invrim calibrate``)."""
    pixel, image, fit = record["pixel"], record["image"], record["data_fit"]
    scale = record["scale"]
    members = len(record.get("ensemble") or [])
    base = (f"the spread of {members + 1} ensemble members" if scale.get("base", scale["method"]) == "ensemble"
            else "the movement of the RIM's last steps")
    how = (f"learned on the tuning samples from {base}, the image gradient, the sample's mean scale and data fit"
           if scale["method"] == "learned" else base)
    low = "-" if fit["low"] is None else f"{fit['low']:.4g}"
    high = "-" if fit["high"] is None else f"{fit['high']:.4g}"
    lines = [
        f"calibrated on {record['file']['samples']} samples of {record['file']['path']} "
        f"({record['tuning']['samples']} to choose the floor, {pixel['samples']} for the quantiles)",
        f"scale: {how}, plus a floor of {scale['floor']:.3g} ({scale['floor_factor']:g}x its mean {scale['mean_scale']:.3g})",
        f"per pixel, {record['coverage']:.0%} coverage: x_hat +- {pixel['quantile']:.4g} x (scale + floor), "
        f"mean half-width {pixel['mean_half_width']:.4g}",
        f"whole image inside with {record['coverage']:.0%} probability: the half-width times "
        f"{image['quantile'] / pixel['quantile']:.3g}" if pixel["quantile"] > 0 else "",
        f"data consistency ({fit['statistic']}): calibration median {fit['median']:.4g}; flagged as out of "
        f"distribution outside [{low}, {high}] (false-alarm rate at most {fit['false_alarm_bound']:.3g})",
    ]
    return "\n".join(line for line in lines if line)
