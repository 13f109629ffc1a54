"""Evaluation of a reconstruction file: PSNR, SSIM and NMSE of the RIM, the classical baseline and
the observation, per sample and summarised.

``invrim reconstruct`` writes ``x_hat``; the ground truth ``x`` and the observations ``y`` (with
their per-sample physics parameters) stay in the observation file the reconstruction records as
its ``input_file`` attribute. :func:`evaluate` streams the three files side by side in batches, so
files larger than memory work, and compares, per sample,

* ``rim`` — the reconstruction ``x_hat``;
* ``baseline`` — the forward model's own classical baseline of ``y``
  (:meth:`ForwardModel.baseline <invrim.physics.ForwardModel.baseline>`, named by its
  ``baseline_name``: FBP for CT, zero-filled SENSE for MRI …; by default the pseudo-inverse or the
  adjoint), with the problem rebuilt from the observation file;
* ``tikhonov`` — for a linear forward model, Tikhonov-regularised least squares by conjugate
  gradients (:mod:`invrim.baselines`) with the damping the run chose on its training data (stored
  in the run folder); for a run without one the damping is chosen on the first samples of the
  evaluated file itself, against their truth — an oracle, which the notes say;
* ``observation`` — ``y`` itself, only when it is real and has exactly the shape of ``x``
  (denoising, deblurring, inpainting).

Metrics follow :mod:`invrim.metrics`: PSNR with each sample's truth range as data range, SSIM with
skimage's conventions (7-pixel uniform window; only when ``x`` has spatial axes, all at least 7
long), NMSE. When the forward model stores a complex image as two real channels
(``x_complex_channels``), every image is replaced by its magnitude first.

>>> from invrim.evaluation import evaluate, format_table            # doctest: +SKIP
>>> result = evaluate("recon.h5")                                   # doctest: +SKIP
>>> print(format_table(result))                                     # doctest: +SKIP
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch

from .baselines import TIKHONOV, TUNING_SAMPLES, choose_tikhonov, has_tikhonov, tikhonov, tikhonov_label
from .data import HDF5Dataset
from .data.dataset import validate
from .data.reconstruction import (DATA_FIT, DATA_FIT_ATTR, OOD, SPREAD, TRAJECTORY, TRAJECTORY_NMSE, UNCERTAINTY,
                                  UNCERTAINTY_ATTR, estimate_layout, read_reconstruction, read_rows)
from .data.schema import ESTIMATE, OBSERVATION, TRUTH, DataError
from .data.validation import problem_from_attrs
from .metrics import magnitude, nmse, psnr, ssim, summarize
from .physics.base import ForwardModel, LinearForwardModel
from .runs import CheckpointError, RunFolder
from .uncertainty import CoverageTally

__all__ = ["evaluate", "format_table", "to_json", "read_sample", "sample_metrics", "baseline_name",
           "spatial_dims", "METRICS", "METHODS"]

PathLike = Union[str, "os.PathLike[str]"]

#: Metric keys, in table order, with their column titles.
METRICS = {"psnr": "PSNR [dB]", "ssim": "SSIM", "nmse": "NMSE"}
#: Method keys, in table order.
METHODS = ("rim", "baseline", TIKHONOV, "observation")
#: The SSIM window (skimage's default); SSIM is skipped for images with a shorter spatial axis.
SSIM_WINDOW = 7


# ----------------------------------------------------------------------------------------------
# small helpers shared with invrim.viz
# ----------------------------------------------------------------------------------------------
def spatial_dims(x_dims) -> int:
    """How many axes of ``x`` are spatial: all of ``x_dims`` but a leading ``channel`` axis."""
    x_dims = tuple(x_dims)
    return len(x_dims) - 1 if x_dims and x_dims[0] == "channel" else len(x_dims)


def baseline_name(forward_model) -> Optional[str]:
    """The forward model's own ``baseline_name`` when it names one; else ``"pseudo-inverse"``,
    ``"adjoint"`` (a linear model whose pseudo-inverse is its adjoint), or ``None`` when the
    forward model offers no baseline."""
    own = getattr(forward_model, "baseline_name", None)
    overridden = getattr(type(forward_model), "baseline", None) is not ForwardModel.baseline
    pinv = getattr(type(forward_model), "pseudo_inverse", None)
    # the model's own name labels its own method: the adjoint that LinearForwardModel falls back
    # to keeps the name "adjoint" whatever baseline_name says
    if own and (overridden or (pinv is not None and pinv is not LinearForwardModel.pseudo_inverse)):
        return str(own)
    if overridden:
        return "baseline"
    pinv = getattr(type(forward_model), "pseudo_inverse", None)
    if pinv is None:
        return None
    if pinv is LinearForwardModel.pseudo_inverse:
        return "adjoint"
    return "pseudo-inverse"


def _ssim_ok(x_shape, x_dims) -> bool:
    k = spatial_dims(x_dims)
    return 1 <= k <= 3 and min(x_shape[len(x_shape) - k:]) >= SSIM_WINDOW


def prepare_images(x: torch.Tensor, complex_channels: bool) -> torch.Tensor:
    """A batch ``(B, *x_dims)`` as the metrics see it: float64, magnitude of the (real, imag)
    channels when ``complex_channels``."""
    x = x.detach().to("cpu", torch.float64)
    return magnitude(x, channel_axis=1) if complex_channels else x


def sample_metrics(estimate: torch.Tensor, truth: torch.Tensor, x_dims, complex_channels: bool = False
                   ) -> dict[str, torch.Tensor]:
    """PSNR, SSIM (when the images allow it) and NMSE of a batch ``(B, *x_dims)``: ``{metric: (B,)}``
    float64 tensors, computed exactly as :func:`evaluate` does."""
    est = prepare_images(estimate, complex_channels)
    ref = prepare_images(truth, complex_channels)
    out = {"psnr": psnr(est, ref)}
    if _ssim_ok(tuple(truth.shape[1:]), x_dims):
        out["ssim"] = ssim(est, ref, spatial_dims=spatial_dims(x_dims), window_size=SSIM_WINDOW)
    out["nmse"] = nmse(est, ref)
    return out


# ----------------------------------------------------------------------------------------------
# opening a reconstruction with its observation and truth files
# ----------------------------------------------------------------------------------------------
@dataclass
class Sources:
    """A reconstruction file with the files it is compared against (see :func:`open_sources`)."""

    path: Path
    attrs: dict[str, Any]
    samples: int
    x_dims: tuple[str, ...]
    x_shape: tuple[int, ...]
    problem: Any
    observations: Any = None           # HDF5Dataset of y and the per-sample parameters, or None
    truth: Any = None                  # HDF5Dataset of x, or None
    truth_path: Optional[Path] = None
    observations_path: Optional[Path] = None
    complex_channels: bool = False
    baseline: Optional[str] = None
    tikhonov: Optional[dict[str, Any]] = None   # the Tikhonov-CG choice, once known
    tikhonov_from_run: bool = False
    notes: list[str] = field(default_factory=list)
    names: set = field(default_factory=set)

    def close(self) -> None:
        for ds in (self.observations, self.truth):
            if ds is not None:
                ds.close()


def _dtype_of(np_dtype) -> torch.dtype:
    return torch.float64 if np.dtype(np_dtype) == np.float64 else torch.float32


def open_sources(reconstruction: PathLike, truth: Optional[PathLike] = None,
                 observations: Optional[PathLike] = None, require_truth: bool = True,
                 require_observations: bool = True) -> Sources:
    """Open a reconstruction file and the files holding its observations and ground truth.

    Observations default to the reconstruction's ``input_file``; the truth to ``truth``'s ``x``,
    else the observation file's ``x``. Every failure is a one-line :class:`DataError`.
    """

    path = Path(reconstruction)
    attrs = read_reconstruction(path)
    x_dims, shape, np_dtype, names = estimate_layout(path)
    n, x_shape = shape[0], shape[1:]
    dtype = _dtype_of(np_dtype)
    problem = problem_from_attrs(attrs, path)
    src = Sources(path=path, attrs=attrs, samples=n, x_dims=x_dims, x_shape=x_shape, problem=problem,
                  complex_channels=bool(getattr(problem.forward_model, "x_complex_channels", False)),
                  names=names)

    # observations -----------------------------------------------------------------------------
    if observations is not None:
        obs_path = Path(observations)
    else:
        recorded = attrs.get("input_file")
        if not recorded:
            obs_path = None
            if require_observations:
                raise DataError(f"{path} does not record its observation file (no 'input_file' attribute): "
                                "pass --observations FILE")
        else:
            obs_path = Path(recorded)
            if not obs_path.is_file():
                obs_path = None
                if require_observations or truth is None:
                    raise DataError(f"the observation file {recorded} that {path} was reconstructed from no "
                                    "longer exists: pass --observations FILE (observations=…) where it is now")
    if obs_path is not None:
        info = validate(obs_path, check_values=False)
        # y and the per-sample parameters; x (when there) is read separately, as the truth
        obs = HDF5Dataset(obs_path, variables=[OBSERVATION, *info.parameters], dtype=dtype, info=info)
        src.observations, src.observations_path = obs, obs_path
        fa = obs.info.attrs
        for key in ("forward_model", "forward_model_config", "likelihood", "likelihood_config"):
            if fa.get(key) != attrs.get(key):
                obs.close()
                raise DataError(f"{obs_path} was made with another {key.replace('_', ' ')} "
                                f"({fa.get(key)!r}) than the observations {path} was reconstructed from "
                                f"({attrs.get(key)!r})")
        if len(obs) != n:
            obs.close()
            raise DataError(f"{obs_path} holds {len(obs)} samples but {path} holds {n}: pass the observation "
                            "file that was reconstructed")
        created = attrs.get("input_created")
        if created and fa.get("created") and fa.get("created") != created:
            src.notes.append(f"{obs_path} was written at {fa.get('created')}, not at {created} like the file "
                             f"{path} was reconstructed from: is it the same data?")
        src.baseline = baseline_name(obs.problem.forward_model)
        if src.baseline is None:
            src.notes.append(f"forward model {attrs['forward_model']!r} has no pseudo-inverse or adjoint: "
                             "no baseline")
        _run_tikhonov(src)

    # truth ------------------------------------------------------------------------------------
    if truth is not None:
        truth_path = Path(truth)
        info = validate(truth_path, check_values=False, check_physics=False)
        if not info.has_truth:
            src.close()
            raise DataError(f"{truth_path} has no ground truth (no variable 'x')")
        src.truth = HDF5Dataset(truth_path, variables=[TRUTH], dtype=dtype, info=info)
        src.truth_path = truth_path
    elif src.observations is not None and src.observations.info.has_truth:
        src.truth = HDF5Dataset(obs_path, variables=[TRUTH], dtype=dtype, info=src.observations.info)
        src.truth_path = obs_path
    elif require_truth:
        where = obs_path if obs_path is not None else path
        src.close()
        raise DataError(f"{where} has no ground truth: pass --truth FILE (truth=…), a data file whose x "
                        f"are the true images of {path}")
    if src.truth is not None:
        t = src.truth
        if len(t) != n:
            src.close()
            raise DataError(f"{src.truth_path} holds {len(t)} samples but {path} holds {n}: the truth must "
                            "have one x per reconstructed sample")
        v = t.info.variables[TRUTH]
        t_shape = tuple(v.shape[1 + v.dims[1:].index(d)] for d in t.target_dims(TRUTH))
        if t_shape != x_shape:
            src.close()
            raise DataError(f"{src.truth_path} has ground truth x of shape {t_shape} but {path} has x_hat of "
                            f"shape {x_shape}")
    return src


def _baseline(src: Sources, batch: dict[str, torch.Tensor]) -> Optional[torch.Tensor]:
    if src.baseline is None:
        return None
    batch = dict(batch)
    y = batch.pop(OBSERVATION)
    batch.pop(TRUTH, None)
    with torch.inference_mode():
        return src.observations.problem.forward_model.baseline(y, **batch)


def _run_tikhonov(src: Sources) -> None:
    """The Tikhonov-CG damping the run chose on its training data, when the run is there."""
    if src.observations is None or not has_tikhonov(src.observations.problem.forward_model):
        return
    run = src.attrs.get("run")
    if run:
        try:
            choice = RunFolder(run).baselines().get(TIKHONOV)
        except (CheckpointError, OSError):
            choice = None
        if choice:
            src.tikhonov, src.tikhonov_from_run = choice, True


def _oracle_tikhonov(src: Sources) -> None:
    """No damping stored with the run: choose it on the first samples of this file (an oracle)."""
    n = min(TUNING_SAMPLES, src.samples)
    batch = src.observations.read_checked(0, n)
    y = batch.pop(OBSERVATION)
    x = src.truth.read_checked(0, n)[TRUTH]
    src.tikhonov = choose_tikhonov(src.observations.problem.forward_model, [(y, x, batch)],
                                   source=f"{src.truth_path} (the first {n} evaluated samples: an oracle)")
    src.notes.append(f"the run stores no Tikhonov-CG damping (trained before invrim recorded one, or not with "
                     f"'invrim train'): λ was chosen on the truth of the first {n} evaluated samples, which "
                     "favours that baseline")


def _tikhonov(src: Sources, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    batch = dict(batch)
    y = batch.pop(OBSERVATION)
    batch.pop(TRUTH, None)
    return tikhonov(src.observations.problem.forward_model, y, src.tikhonov, **batch)


def observation_comparable(y: torch.Tensor, x_shape) -> bool:
    return (not y.is_complex()) and tuple(y.shape[1:]) == tuple(x_shape)


# ----------------------------------------------------------------------------------------------
# evaluate
# ----------------------------------------------------------------------------------------------
def evaluate(reconstruction: PathLike, truth: Optional[PathLike] = None, observations: Optional[PathLike] = None,
             batch_size: int = 64) -> dict[str, Any]:
    """PSNR, SSIM and NMSE of every sample of a reconstruction file, for the RIM, the baseline and
    (when comparable) the observation.

    Parameters
    ----------
    reconstruction
        A file written by ``invrim reconstruct`` (:func:`invrim.reconstruct.reconstruct`).
    truth
        A data file whose ``x`` is the ground truth (same sample count and order); default: the
        ``x`` of the observation file.
    observations
        The observation file (``y`` and the per-sample parameters, for the baseline); default: the
        reconstruction's ``input_file`` attribute. Give it when that file has moved.
    batch_size
        Samples read and evaluated at a time.

    Returns
    -------
    dict
        ``{"file", "observations", "truth", "samples", "forward_model", "magnitude", "methods",
        "labels", "metrics", "per_sample": {method: {metric: [float, …]}}, "summary": {method:
        {metric: summarize(...)}}, "notes", "tikhonov"}``. ``methods`` lists the methods present
        (``rim``; ``baseline`` unless the forward model offers none; ``tikhonov`` for a linear
        forward model; ``observation`` when ``y`` is real and has ``x``'s shape); ``labels`` names
        them (``baseline`` by the forward model's ``baseline_name``, ``"pseudo-inverse"`` or
        ``"adjoint"``); ``tikhonov`` is the damping record used (:func:`invrim.baselines.choose_tikhonov`,
        with ``from_run``: whether the run chose it on its training data); ``magnitude`` says
        whether the metrics were taken on magnitude images; ``data_fit`` the data consistency
        (``statistic``, ``per_sample``, ``summary`` and, for a file written with
        ``--uncertainty``, ``flagged`` with the thresholds) or None for an older file;
        ``uncertainty`` the coverage of the file's intervals
        (:meth:`invrim.uncertainty.CoverageTally.result`) or None.

    Raises
    ------
    DataError
        One line: the reconstruction, observation or truth file is missing or invalid, no file has
        ground truth, or the sample counts or shapes differ.
    """

    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    src = open_sources(reconstruction, truth=truth, observations=observations)
    try:
        n = src.samples
        linear = has_tikhonov(src.observations.problem.forward_model)
        if linear and src.tikhonov is None:
            _oracle_tikhonov(src)
        methods = ["rim"] + (["baseline"] if src.baseline else []) + ([TIKHONOV] if linear else [])
        values: dict[str, dict[str, list]] = {}
        calibration = src.attrs.get(UNCERTAINTY_ATTR) if UNCERTAINTY in src.names else None
        tally = CoverageTally(calibration) if calibration else None
        fits: list[float] = []
        flags: list[int] = []
        for lo in range(0, n, batch_size):
            hi = min(lo + batch_size, n)
            rows = read_rows(src.path, lo, hi, (ESTIMATE, DATA_FIT, OOD, UNCERTAINTY))
            x_hat = rows[ESTIMATE]
            if rows[DATA_FIT] is not None:
                fits.extend(float(v) for v in rows[DATA_FIT])
            if rows[OOD] is not None:
                flags.extend(int(v) for v in rows[OOD])
            batch = src.observations.read_checked(lo, hi)
            t = src.truth.read_checked(lo, hi)[TRUTH]
            if tally is not None:
                tally.add(t, x_hat, rows[UNCERTAINTY])
            estimates = {"rim": x_hat}
            if src.baseline:
                estimates["baseline"] = _baseline(src, batch)
            if linear:
                estimates[TIKHONOV] = _tikhonov(src, batch)
            if lo == 0 and observation_comparable(batch[OBSERVATION], src.x_shape):
                methods.append("observation")
            if "observation" in methods:
                estimates["observation"] = batch[OBSERVATION]
            for method, est in estimates.items():
                if tuple(est.shape) != tuple(t.shape):
                    raise DataError(f"{src.path}: the {method} has shape {tuple(est.shape[1:])} but the truth "
                                    f"has shape {tuple(t.shape[1:])}")
                with torch.no_grad():
                    m = sample_metrics(est, t, src.x_dims, src.complex_channels)
                for metric, v in m.items():
                    values.setdefault(method, {}).setdefault(metric, []).extend(float(a) for a in v)
    finally:
        src.close()
    labels = {"rim": "RIM", "baseline": src.baseline or "baseline", TIKHONOV: tikhonov_label(src.tikhonov),
              "observation": "observation"}
    metrics = [k for k in METRICS if k in values["rim"]]
    summary = {method: {metric: summarize(torch.tensor(values[method][metric], dtype=torch.float64))
                        for metric in metrics} for method in methods}
    rim_psnr = summary["rim"]["psnr"]["mean"] if "psnr" in summary["rim"] else None
    for method in methods[1:]:
        other = summary[method].get("psnr", {}).get("mean")
        if rim_psnr is not None and other is not None and math.isfinite(other) and not rim_psnr > other:
            src.notes.append(f"the RIM does not beat {labels[method]} in mean PSNR ({rim_psnr:.2f} dB vs "
                             f"{other:.2f} dB): train longer or larger before trusting it")
    consistency = _consistency(src.attrs, fits, flags, calibration)
    if consistency and consistency.get("flagged"):
        src.notes.append(f"{consistency['flagged']} of {n} samples fit y worse or better than the calibration set "
                         f"allows ({consistency['statistic']} outside [{_bound(consistency['low'])}, "
                         f"{_bound(consistency['high'])}]): possibly out of distribution, see ood in {src.path}")
    return {
        "uncertainty": tally.result() if tally is not None else None, "data_fit": consistency,
        "file": str(src.path), "observations": str(src.observations_path), "truth": str(src.truth_path),
        "samples": n, "forward_model": src.attrs.get("forward_model"), "magnitude": src.complex_channels,
        "methods": methods, "labels": {m: labels[m] for m in methods}, "metrics": metrics,
        "per_sample": {m: values[m] for m in methods}, "summary": summary, "notes": list(src.notes),
        "tikhonov": ({**src.tikhonov, "from_run": src.tikhonov_from_run} if src.tikhonov else None),
    }


def _bound(v: Optional[float]) -> str:
    return "-" if v is None else f"{v:.4g}"


def _consistency(attrs: dict[str, Any], fits: list[float], flags: list[int],
                 calibration: Optional[dict[str, Any]]) -> Optional[dict[str, Any]]:
    """The data-consistency summary of a reconstruction file: its per-sample ``data_fit``, their
    summary and, when calibrated, how many samples were flagged ``ood`` at which thresholds."""
    if not fits:
        return None
    statistic = (attrs.get(DATA_FIT_ATTR) or {}).get("statistic", DATA_FIT)
    out: dict[str, Any] = {"statistic": statistic, "per_sample": fits,
                           "summary": summarize(torch.tensor(fits, dtype=torch.float64))}
    if calibration and flags:
        rule = calibration.get("data_fit") or {}
        out.update({"flagged": int(sum(flags)), "flagged_fraction": sum(flags) / len(flags), "low": rule.get("low"),
                    "high": rule.get("high"), "false_alarm": rule.get("false_alarm"),
                    "calibration_median": rule.get("median")})
    return out


# ----------------------------------------------------------------------------------------------
# output
# ----------------------------------------------------------------------------------------------
def _fmt(metric: str, v: float) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    if metric == "psnr":
        return f"{v:.2f}"
    if metric == "ssim":
        return f"{v:.4f}"
    return f"{v:.3e}"


def _cell(metric: str, s: dict[str, float]) -> str:
    return f"{_fmt(metric, s['mean'])} ± {_fmt(metric, s['std'])}  ({_fmt(metric, s['median'])})"


def _row_label(result: dict[str, Any], method: str) -> str:
    label = result["labels"][method]
    return {"rim": "RIM", "baseline": f"{label} (baseline)", TIKHONOV: f"{label} (generic baseline)",
            "observation": "observation y"}[method]


def _table(header: list[str], rows: list[list[str]], right_from: int = 1) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(r):
        return "  ".join(c.ljust(w) if i < right_from else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
    return [line(header), "  ".join("-" * w for w in widths), *[line(r) for r in rows]]


def format_table(result: dict[str, Any], per_sample: bool = False) -> str:
    """The terminal table of an :func:`evaluate` result: one row per method, one column per metric,
    each cell ``mean ± std (median)``; with ``per_sample`` also one row per sample."""
    metrics = result["metrics"]
    what = "on magnitude images; " if result.get("magnitude") else ""
    lines = [f"{result['file']}: {result['samples']} samples, forward model {result['forward_model']!r}, "
             f"truth from {result['truth']}",
             f"each cell: mean ± std (median) over the samples ({what}higher PSNR and SSIM, lower NMSE are better)",
             ""]
    header = ["method", *[METRICS[m] for m in metrics]]
    rows = [[_row_label(result, method), *[_cell(m, result["summary"][method][m]) for m in metrics]]
            for method in result["methods"]]
    lines += _table(header, rows)
    if "ssim" not in metrics:
        lines.append(f"(no SSIM: x has no spatial axes of at least {SSIM_WINDOW} samples)")
    lines += _uncertainty_lines(result)
    if per_sample and "per_sample" in result:
        lines.append("")
        short = {"rim": "RIM", "baseline": result["labels"].get("baseline", "baseline"), TIKHONOV: "Tikhonov",
                 "observation": "y"}
        header = ["sample", *[f"{short[meth]} {METRICS[m].split()[0]}" for meth in result["methods"] for m in metrics]]
        rows = []
        for i in range(result["samples"]):
            rows.append([str(i), *[_fmt(m, result["per_sample"][meth][m][i])
                                   for meth in result["methods"] for m in metrics]])
        lines += _table(header, rows)
    for note in result.get("notes", []):
        lines.append(f"note: {note}")
    return "\n".join(lines)


def _uncertainty_lines(result: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    fit = result.get("data_fit")
    if fit:
        s = fit["summary"]
        line = f"data consistency ({fit['statistic']} of F(x_hat) against y): median {s['median']:.4g}"
        if "flagged" in fit:
            line += (f", calibration median {_bound(fit['calibration_median'])}; flagged as possibly out of "
                     f"distribution: {fit['flagged']} of {result['samples']} ({fit['flagged_fraction']:.1%}; "
                     f"outside [{_bound(fit['low'])}, {_bound(fit['high'])}], expected at most "
                     f"{fit['false_alarm']:.0%} in distribution)")
        lines += ["", line]
    u = result.get("uncertainty")
    if u:
        def pct(v):
            return "n/a" if v is None else f"{v:.1%}"
        rho = u["rank_correlation"]
        lines += ["", f"uncertainty (x_hat +- x_uncertainty, calibrated for {u['coverage']:.0%}): pixels inside "
                      f"{pct(u['pixel_coverage'])}, whole images inside {pct(u['image_coverage'])} (at the image "
                      f"factor), mean half-width {_fmt('nmse', u['mean_half_width'])}, rank correlation of the "
                      f"half-width with the error {'n/a' if rho is None else f'{rho:.2f}'}"]
    return lines


def _finite(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def to_json(result: dict[str, Any], per_sample: bool = True, indent: Optional[int] = 2) -> str:
    """An :func:`evaluate` result as strict JSON (NaN and ±inf become ``null``); without
    ``per_sample`` only the summary."""
    out = dict(result)
    if not per_sample:
        out.pop("per_sample", None)
    return json.dumps(_finite(out), indent=indent, allow_nan=False)


# ----------------------------------------------------------------------------------------------
# one sample, for figures
# ----------------------------------------------------------------------------------------------
def sample_index(index: int, samples: int, path: PathLike) -> int:
    """``index`` as a position in ``0 … samples-1`` (negative counts from the end); a one-line
    :class:`DataError` naming ``path`` when it is not an integer or out of range."""
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
        raise DataError(f"the sample index must be an integer, got {index!r}")
    i = int(index) + samples if index < 0 else int(index)
    if not 0 <= i < samples:
        raise DataError(f"sample index {index} is out of range: {path} holds {samples} samples "
                        f"(0 to {samples - 1})")
    return i


def read_sample(reconstruction: PathLike, index: int, truth: Optional[PathLike] = None,
                observations: Optional[PathLike] = None) -> dict[str, Any]:
    """Everything about sample ``index`` of a reconstruction file, as CPU tensors without the
    sample axis: ``x_hat``, ``baseline`` (or None), ``y``, ``truth`` (or None), ``trajectory``
    ``(step, *x_dims)``, ``trajectory_nmse`` ``(step,)``, ``x_uncertainty``, ``x_spread``,
    ``data_fit`` and ``ood`` when stored (else None), ``params``; and
    ``tikhonov`` (Tikhonov-CG with the damping the run chose on its training data, for a linear
    forward model whose run stores one; else None) and its ``tikhonov_label``,
    ``x_dims``, ``y_dims``, ``complex_channels``, ``baseline_name``, ``attrs``, ``samples``,
    ``index``, ``notes``, ``forward_model`` (the rebuilt instance, for its ``plot_observation``). A missing ground truth is allowed (``truth`` is None); negative indices
    count from the end. Raises a one-line :class:`DataError` for an index out of range.
    """
    src = open_sources(reconstruction, truth=truth, observations=observations, require_truth=False)
    try:
        n = src.samples
        i = sample_index(index, n, src.path)
        out: dict[str, Any] = {"index": i, "samples": n, "x_dims": src.x_dims, "attrs": src.attrs,
                               "complex_channels": src.complex_channels, "baseline_name": src.baseline,
                               "notes": list(src.notes), "path": src.path,
                               "forward_model": src.problem.forward_model}
        rows = read_rows(src.path, i, i + 1, (ESTIMATE, TRAJECTORY, TRAJECTORY_NMSE, UNCERTAINTY, SPREAD, DATA_FIT, OOD))
        out["x_hat"] = rows[ESTIMATE][0]
        for name in (TRAJECTORY, TRAJECTORY_NMSE, UNCERTAINTY, SPREAD, DATA_FIT, OOD):
            out[name] = rows[name][0] if rows[name] is not None else None
        out["truth"] = src.truth.read_checked(i, i + 1)[TRUTH][0] if src.truth is not None else None
        out["y"] = out["baseline"] = out[TIKHONOV] = None
        out["tikhonov_label"] = tikhonov_label(src.tikhonov)
        out["params"] = {}
        out["y_dims"] = tuple(src.problem.forward_model.y_dims)
        if src.observations is not None:
            batch = src.observations.read_checked(i, i + 1)
            b = _baseline(src, batch)
            out["baseline"] = b[0] if b is not None else None
            if src.tikhonov is not None:              # the run's own choice only (no oracle for one sample)
                with torch.inference_mode():
                    out[TIKHONOV] = _tikhonov(src, batch)[0]
            out["y"] = batch[OBSERVATION][0]
            out["y_dims"] = src.observations.target_dims(OBSERVATION)
            out["params"] = {k: v[0] for k, v in batch.items() if k not in (OBSERVATION, TRUTH)}
        return out
    finally:
        src.close()
