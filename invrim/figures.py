"""Figures: one reconstructed sample next to its observation, baseline and truth; the loss curves of
a training run.

* :func:`plot_reconstruction` — panels for the observation ``y``, the classical baseline
  (pseudo-inverse or adjoint), the RIM's ``x_hat``, the truth, the residuals and the error along
  the RIM's trajectory, with PSNR / SSIM in the titles. Images share their colour limits; complex
  images stored as (real, imag) channels are shown as magnitude, 3-D volumes as their middle
  slice, 1-D signals as overlaid lines and parameter vectors as points.
* :func:`plot_data_sample` — one sample of a data file: the observation, the baseline computed from
  it and the truth, before any training.
* :func:`plot_training` — training and validation loss against the epoch, marking the best epoch.

matplotlib is imported inside the functions (with the non-interactive Agg backend when saving),
so ``import invrim`` never needs it.

>>> from invrim.figures import plot_reconstruction, plot_training      # doctest: +SKIP
>>> plot_reconstruction("recon.h5", index=3, output="sample3.png")     # doctest: +SKIP
>>> plot_training("run/", output="loss.png")                           # doctest: +SKIP
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch

from .data.schema import DataError

__all__ = ["plot_data_sample", "plot_reconstruction", "plot_sample", "plot_training", "save_figure",
           "read_metrics"]

PathLike = Union[str, "os.PathLike[str]"]

#: Colour maps: images, k-space / observations that are not images of x, residuals.
IMAGE_CMAP, OBSERVATION_CMAP, RESIDUAL_CMAP = "gray", "magma", "RdBu_r"
#: Above this many entries a single spatial axis is drawn as a signal (line), below it as points.
MAX_POINTS = 16
_COLOURS = {"truth": "black", "rim": "C3", "baseline": "C0", "observation": "0.6"}


# ----------------------------------------------------------------------------------------------
# turning tensors into something drawable
# ----------------------------------------------------------------------------------------------
def _np(t) -> np.ndarray:
    if isinstance(t, torch.Tensor):
        t = t.detach().cpu()
        if t.dtype == torch.bool:
            t = t.to(torch.uint8)
        return t.numpy()
    return np.asarray(t)


def _middle(a: np.ndarray, dims: list[str], keep: int, notes: list[str]) -> tuple[np.ndarray, list[str]]:
    """Take the middle index of leading axes until ``keep`` axes remain."""
    while a.ndim > keep:
        mid = a.shape[0] // 2
        notes.append(f"middle slice {dims[0]}={mid} of {a.shape[0]}")
        a, dims = a[mid], dims[1:]
    return a, dims


def _x_view(t, x_dims, complex_channels: bool) -> tuple[np.ndarray, list[str], str]:
    """A sample of ``x`` as a 0-, 1- or 2-D array, its axis names and how it was obtained."""
    a = _np(t).astype(np.float64)
    dims = list(x_dims) or [f"axis{i}" for i in range(a.ndim)]
    notes: list[str] = []
    if complex_channels:
        a, dims = np.hypot(a[0], a[1]), dims[1:]
        notes.append("magnitude")
    elif dims and dims[0] == "channel":
        if a.ndim == 1:                           # a parameter vector: the channels are the entries
            return a, dims, ""
        if a.shape[0] > 1:
            notes.append(f"channel 0 of {a.shape[0]}")
        a, dims = a[0], dims[1:]
    a, dims = _middle(a, dims, 2, notes)
    return a, dims, ", ".join(notes)


def _kind(a: np.ndarray) -> str:
    if a.ndim == 2:
        return "image"
    if a.ndim == 1 and a.size > MAX_POINTS:
        return "line"
    return "points"


def _y_view(y, y_dims) -> tuple[np.ndarray, list[str], str, bool]:
    """The observation as a 0-, 1- or 2-D real array (log10 magnitude when complex), its axis
    names, a description and whether it is a log magnitude."""
    a = _np(y)
    dims = list(y_dims) if len(y_dims) == a.ndim else [f"axis{i}" for i in range(a.ndim)]
    notes: list[str] = []
    if np.iscomplexobj(a):
        mag = np.abs(a)
        if mag.ndim > 2:                          # coils / channels: root-sum-of-squares
            lead = mag.ndim - 2
            count = int(np.prod(mag.shape[:lead]))
            name = " × ".join(dims[:lead])
            plural = "" if count == 1 or name.endswith("s") else "s"
            mag = np.sqrt((mag.reshape(-1, *mag.shape[lead:]) ** 2).sum(axis=0))
            notes.append(f"root-sum-of-squares over {count} {name}{plural}")
            dims = dims[lead:]
        return mag, dims, ", ".join(notes), True
    a = a.astype(np.float64)
    while a.ndim > 2 and (dims[0] in ("channel", "coil") or a.ndim > 3):
        if a.shape[0] > 1:
            notes.append(f"{dims[0]} 0 of {a.shape[0]}")
        a, dims = a[0], dims[1:]
    if a.ndim == 2 and dims[0] in ("channel", "coil") and a.shape[0] == 1:
        a, dims = a[0], dims[1:]
    a, dims = _middle(a, dims, 2, notes)
    return a, dims, ", ".join(notes), False


def _log_limits(mag: np.ndarray) -> tuple[np.ndarray, float, float]:
    """log10 of a magnitude with the unmeasured (zero) entries at the bottom of the colour scale."""
    positive = mag[mag > 0]
    if positive.size == 0:
        return np.zeros_like(mag), 0.0, 1.0
    lo = float(np.percentile(positive, 1.0))
    hi = float(positive.max())
    lo = min(lo, hi / 10)
    return np.log10(np.maximum(mag, lo)), math.log10(lo), math.log10(hi)


def _metric_text(m: Optional[dict]) -> str:
    if not m:
        return ""
    parts = []
    if "psnr" in m:
        v = m["psnr"]
        parts.append("PSNR ∞" if math.isinf(v) and v > 0 else f"PSNR {v:.1f} dB")
    if "ssim" in m:
        parts.append(f"SSIM {m['ssim']:.3f}")
    return " · ".join(parts)


def _title(name: str, m: Optional[dict] = None) -> str:
    text = _metric_text(m)
    return f"{name}\n{text}" if text else name


# ----------------------------------------------------------------------------------------------
# drawing helpers
# ----------------------------------------------------------------------------------------------
def _image(fig, ax, img, title, cmap, vmin, vmax, dims=None, axes_labels=False, cbar_label=None):
    h, w = img.shape
    aspect = "equal" if max(h, w) / max(1, min(h, w)) <= 4 else "auto"
    im = ax.imshow(img, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest", aspect=aspect, origin="upper")
    ax.set_title(title, fontsize=10)
    if axes_labels and dims is not None and len(dims) == 2:
        ax.set_ylabel(dims[0], fontsize=8)
        ax.set_xlabel(dims[1], fontsize=8)
        ax.tick_params(labelsize=7)
    else:
        ax.set_xticks([])
        ax.set_yticks([])
    finite = img[np.isfinite(img)]
    below = finite.size and vmin is not None and finite.min() < vmin
    above = finite.size and vmax is not None and finite.max() > vmax
    extend = "both" if below and above else "min" if below else "max" if above else "neither"
    cb = fig.colorbar(im, ax=ax, shrink=0.82, pad=0.02, extend=extend)   # arrows: values beyond the limits
    cb.ax.tick_params(labelsize=7)
    if cbar_label:
        cb.set_label(cbar_label, fontsize=8)
    return im


def _note(ax, text: str, title: Optional[str] = None) -> None:
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=10)
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True, fontsize=9, color="0.35",
            transform=ax.transAxes)


def _limits(*arrays, robust: bool = False) -> tuple[float, float]:
    vals = np.concatenate([a[np.isfinite(a)].ravel() for a in arrays if a is not None])
    if vals.size == 0:
        return 0.0, 1.0
    lo, hi = (np.percentile(vals, [0.5, 99.5]) if robust else (vals.min(), vals.max()))
    if hi <= lo:
        hi = lo + 1.0
    return float(lo), float(hi)


def _draw_observation(fig, ax, sample, x_how: str = "") -> None:
    y = sample.get("y")
    if y is None:
        _note(ax, "the observation file is not available", "Observation y")
        return
    a, dims, how, is_log = _y_view(y, sample.get("y_dims") or ())
    metrics = sample["metrics"].get("observation")
    name = "Observation y"
    if is_log:
        where = "k-space" if any(d.startswith("k") for d in dims) else "complex"
        name = f"Observation |y| ({where}, log₁₀)"
    if how and how != x_how:                 # the slicing of x is said once, in the figure title
        name = f"{name}\n{how}"
    title = _title(name, metrics)
    kind = _kind(a)
    if kind == "image":
        if is_log:
            img, lo, hi = _log_limits(a)
            _image(fig, ax, img, title, OBSERVATION_CMAP, lo, hi, dims, axes_labels=True)
        else:
            from .evaluation import _observation_comparable
            x_ref = next((sample[k] for k in ("x_hat", "truth", "baseline") if sample.get(k) is not None), None)
            comparable = x_ref is not None and _observation_comparable(y[None], tuple(x_ref.shape))
            lo, hi = _limits(a, robust=True)
            _image(fig, ax, a, title, IMAGE_CMAP if comparable else OBSERVATION_CMAP, lo, hi, dims,
                   axes_labels=not comparable)
    elif kind == "line":
        ax.plot(np.arange(a.size), a, color="0.3", lw=1)
        if is_log:
            ax.set_yscale("log")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(dims[0] if dims else "index", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    else:
        v = a.reshape(-1)
        ax.plot(np.arange(v.size), v, "o", color="0.3")
        if is_log:
            ax.set_yscale("log")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(dims[0] if dims else "index", fontsize=8)
        ax.set_xticks(np.arange(v.size))
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)


def _trajectory_errors(sample: dict) -> tuple[Optional[np.ndarray], str]:
    """NMSE per RIM step (or None) and the label of what it measures."""
    from .evaluation import sample_metrics
    truth, traj = sample.get("truth"), sample.get("trajectory")
    cc = sample["complex_channels"]
    if truth is not None and traj is not None:
        m = sample_metrics(traj, truth.expand(traj.shape[0], *truth.shape), sample["x_dims"], cc)
        return m["nmse"].numpy(), "NMSE of |x|" if cc else "NMSE"
    stored = sample.get("trajectory_nmse")
    if stored is not None:
        return _np(stored).astype(np.float64), ("NMSE of |x|" if cc else "NMSE")
    return None, ""


def _draw_trajectory(ax, sample: dict) -> None:
    from .metrics import nmse
    nm, label = _trajectory_errors(sample)
    title = "Error along the RIM trajectory"
    if nm is None:
        why = ("no ground truth: the error along the trajectory needs the truth (--truth FILE)"
               if sample.get("truth") is None else
               "no trajectory stored: reconstruct with --trajectory\n(trajectory_nmse needs the truth in the input)")
        _note(ax, why, title)
        return
    steps = np.arange(1, nm.size + 1)
    ax.plot(steps, nm, "o-", color=_COLOURS["rim"], lw=1.8, ms=4, label="RIM estimate $x_t$")
    ax.annotate(f"{nm[-1]:.3g}", (steps[-1], nm[-1]), textcoords="offset points", xytext=(-3, 7), fontsize=8,
                color=_COLOURS["rim"], ha="right")
    ax.set_xlim(0.6, steps[-1] + 0.4)
    truth = sample.get("truth")
    if truth is not None:
        cc = sample["complex_channels"]
        on_magnitude = label.startswith("NMSE of |x|")
        from .evaluation import prepare_images
        ref = prepare_images(truth[None], cc and on_magnitude)
        for key, name, style in (("baseline", sample.get("baseline_name") or "baseline", "--"),
                                 ("y", "observation", ":")):
            est = sample.get(key)
            if est is None or (key == "y" and "observation" not in sample["metrics"]):
                continue
            v = float(nmse(prepare_images(est[None], cc and on_magnitude), ref)[0])
            colour = _COLOURS["baseline" if key == "baseline" else "observation"]
            ax.axhline(v, ls=style, color=colour, lw=1.3, label=f"{name}: {v:.3g}")
    _log_axis(ax, np.concatenate([nm, [ln.get_ydata()[0] for ln in ax.get_lines()[1:]]]))
    ax.set_xlabel("RIM step t", fontsize=9)
    ax.set_ylabel(label, fontsize=9)
    if steps.size <= 12:
        ax.set_xticks(steps)
    else:
        from matplotlib.ticker import MaxNLocator
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.tick_params(labelsize=8)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, frameon=False)
    ax.set_title(title, fontsize=10)


# ----------------------------------------------------------------------------------------------
# the reconstruction figure
# ----------------------------------------------------------------------------------------------
def _sample_metric_values(sample: dict) -> dict[str, dict[str, float]]:
    from .evaluation import _observation_comparable, sample_metrics
    truth = sample.get("truth")
    out: dict[str, dict[str, float]] = {}
    if truth is None:
        return out
    cands = {"rim": sample["x_hat"], "baseline": sample.get("baseline")}
    y = sample.get("y")
    if y is not None and _observation_comparable(y[None], tuple(truth.shape)):
        cands["observation"] = y
    for key, est in cands.items():
        if est is None or tuple(est.shape) != tuple(truth.shape):
            continue
        with torch.no_grad():
            m = sample_metrics(est[None], truth[None], sample["x_dims"], sample["complex_channels"])
        out[key] = {k: float(v[0]) for k, v in m.items()}
    return out


def _log_axis(ax, values: np.ndarray) -> None:
    """Log scale with plain-number tick labels (minor ones too when less than a decade is shown)."""
    from matplotlib.ticker import FuncFormatter, NullFormatter
    v = values[np.isfinite(values)]
    if not v.size or not (v > 0).all():
        return
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda t, _: f"{t:g}"))
    if math.log10(v.max() / v.min()) < 1.0:
        ax.yaxis.set_minor_formatter(FuncFormatter(lambda t, _: f"{t:g}"))
    else:
        ax.yaxis.set_minor_formatter(NullFormatter())


def _draw_images(fig, sample, views, how, base_name):
    """Layout for images: observation, baseline, reconstruction, truth on top; residuals and the
    error along the trajectory below (each row laid out on its own). Returns the (sub)figure that
    carries the title."""
    metrics = sample["metrics"]
    has_truth, has_base = "truth" in views, "baseline" in views
    top = ["observation"] + (["baseline"] if has_base else []) + ["x_hat"] + (["truth"] if has_truth else [])
    if has_truth:
        rows = fig.subfigures(2, 1, height_ratios=[1, 1.02], hspace=0.04)
    else:
        rows = [fig]
        top.append("note")
    if has_truth:       # the truth's range, shared by baseline, reconstruction and truth
        lo, hi = _limits(views["truth"][0])
    else:
        lo, hi = _limits(*(v[0] for v in views.values()), robust=True)
    names = {"baseline": f"{base_name} (baseline)", "x_hat": "RIM reconstruction", "truth": "Truth"}
    axes = rows[0].subplots(1, len(top))
    for ax, key in zip(np.atleast_1d(axes), top):
        if key == "observation":
            _draw_observation(rows[0], ax, sample, how)
        elif key == "note":
            _note(ax, "The residuals, the metrics and the error\nalong the RIM trajectory need the truth:\n"
                      "pass --truth FILE (truth=…)", "No ground truth")
        else:
            m = metrics.get({"baseline": "baseline", "x_hat": "rim"}.get(key, ""))
            _image(rows[0], ax, views[key][0], _title(names[key], m), IMAGE_CMAP, lo, hi)
    if not has_truth:
        return rows[0]
    res = {k: views[k][0] - views["truth"][0] for k in ("x_hat", "baseline") if k in views}
    r = max(float(np.percentile(np.abs(v), 99.5)) for v in res.values()) or 1.0
    n_res = len(res)
    ncols = max(len(top), n_res + 2)
    gs = rows[1].add_gridspec(1, ncols)
    for col, key in enumerate(k for k in ("x_hat", "baseline") if k in res):
        ax = rows[1].add_subplot(gs[0, col])
        label = "RIM" if key == "x_hat" else base_name
        _image(rows[1], ax, res[key], f"{label} − truth", RESIDUAL_CMAP, -r, r)
    _draw_trajectory(rows[1].add_subplot(gs[0, n_res:]), sample)
    return rows[0]


def _draw_signals(fig, sample, views, how, base_name, kind) -> None:
    """Layout for 1-D signals (lines) and parameter vectors (points)."""
    from matplotlib.gridspec import GridSpec
    metrics = sample["metrics"]
    img, img_dims, _ = views["x_hat"]
    has_truth = "truth" in views
    gs = GridSpec(2, 3, figure=fig)
    _draw_observation(fig, fig.add_subplot(gs[0, 0]), sample, how)
    ax = fig.add_subplot(gs[0, 1:])
    xaxis = np.arange(img.size)
    for key, name, mkey in (("truth", "Truth", None), ("baseline", base_name, "baseline"), ("x_hat", "RIM", "rim")):
        if key not in views:
            continue
        v = views[key][0].reshape(-1)
        label = name + (f" ({_metric_text(metrics[mkey])})" if mkey and mkey in metrics else "")
        colour = _COLOURS["truth" if key == "truth" else mkey]
        if kind == "line":
            ax.plot(xaxis, v, color=colour, lw=2.2 if key == "truth" else 1.4, ls="--" if key == "baseline" else "-",
                    label=label, zorder=3 if key == "x_hat" else 2)
        else:
            marker = {"truth": "o", "baseline": "^", "x_hat": "s"}[key]
            ax.plot(xaxis, v, marker, color=colour, ms=11 if key == "truth" else 6, label=label,
                    mfc="none" if key == "truth" else colour, mew=1.8, ls="none", zorder=3 if key == "truth" else 2)
    axis_name = img_dims[0] if img_dims and img_dims[0] != "channel" else "parameter"
    if kind == "points":
        ax.set_xticks(xaxis)
        ax.set_xlabel(f"{axis_name} (index)", fontsize=9)
    else:
        ax.set_xlabel(axis_name, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, frameon=False)
    ax.tick_params(labelsize=8)
    ax.set_title("Reconstruction against truth" if has_truth else "Reconstruction", fontsize=10)
    if not has_truth:
        _draw_trajectory(fig.add_subplot(gs[1, :]), sample)
        return
    ax = fig.add_subplot(gs[1, 0:2])
    present = [(k, n) for k, n in (("x_hat", "RIM"), ("baseline", base_name)) if k in views]
    width = 0.8 / len(present)
    for j, (key, name) in enumerate(present):
        r = (views[key][0] - views["truth"][0]).reshape(-1)
        colour = _COLOURS["rim" if key == "x_hat" else "baseline"]
        if kind == "line":
            ax.plot(xaxis, r, color=colour, lw=1.2, ls="-" if key == "x_hat" else "--", label=name)
        else:
            ax.bar(xaxis + (j - (len(present) - 1) / 2) * width, r, width=width, color=colour, label=name)
    ax.axhline(0, color="black", lw=0.8)
    if kind == "points":
        ax.set_xticks(xaxis)
        ax.set_xlabel(f"{axis_name} (index)", fontsize=9)
    else:
        ax.set_xlabel(axis_name, fontsize=9)
    ax.set_title("Residual (estimate − truth)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, frameon=False)
    ax.tick_params(labelsize=8)
    _draw_trajectory(fig.add_subplot(gs[1, 2]), sample)


def plot_sample(sample: dict[str, Any]):
    """The figure of one sample as returned by :func:`invrim.evaluation.read_sample`."""
    import matplotlib.pyplot as plt

    sample = dict(sample)
    sample["metrics"] = _sample_metric_values(sample)
    cc, x_dims = sample["complex_channels"], sample["x_dims"]
    views = {key: _x_view(sample[key], x_dims, cc) for key in ("baseline", "x_hat", "truth")
             if sample.get(key) is not None}
    img, _, how = views["x_hat"]
    kind = _kind(img)
    base_name = (sample.get("baseline_name") or "baseline").capitalize()
    if kind == "image":
        ncols = 4 if ("truth" in views or "baseline" in views) else 3
        rows = 2 if "truth" in views else 1
        fig = plt.figure(figsize=(3.7 * ncols, 3.45 * rows + 0.75), layout="constrained")
        header = _draw_images(fig, sample, views, how, base_name)
    else:
        fig = plt.figure(figsize=(12, 7.2), layout="constrained")
        header = fig
        _draw_signals(fig, sample, views, how, base_name, kind)

    attrs = sample.get("attrs") or {}
    run = Path(str(attrs.get("run", ""))).name
    ckpt = attrs.get("checkpoint_file", "")
    head = f"{Path(str(sample.get('path', ''))).name}: sample {sample['index']} of {sample['samples']}"
    physics = f"{attrs.get('forward_model', '?')} with {attrs.get('likelihood', '?')} noise"
    line2 = f"RIM {run}/{ckpt}" + (f"   ·   x shown as {how}" if how else "")
    header.suptitle(f"{head}   ·   {physics}\n{line2}", fontsize=11)
    return fig


def plot_reconstruction(reconstruction: PathLike, index: int = 0, *, truth: Optional[PathLike] = None,
                        observations: Optional[PathLike] = None, output: Optional[PathLike] = None, dpi: int = 150):
    """The figure of sample ``index`` of a reconstruction file (see the module docstring).

    ``truth`` / ``observations`` override the files the reconstruction records (as in
    :func:`invrim.evaluation.evaluate`); without any ground truth the figure shows the observation,
    baseline and reconstruction only. With ``output`` the figure is saved there (format from the
    suffix: .png, .pdf, .svg …) and closed. Returns the matplotlib ``Figure``.
    """
    from .evaluation import read_sample
    if output is not None:
        _check_output(output)
    sample = read_sample(reconstruction, index, truth=truth, observations=observations)
    fig = plot_sample(sample)
    if output is not None:
        save_figure(fig, output, dpi=dpi)
    return fig


# ----------------------------------------------------------------------------------------------
# a sample of a data file
# ----------------------------------------------------------------------------------------------
def _describe(value: torch.Tensor) -> str:
    if value.numel() == 1:
        return f"{float(value.real if value.is_complex() else value):.4g}"
    return "×".join(str(n) for n in value.shape)


def plot_data_sample(data: PathLike, index: int = 0, *, output: Optional[PathLike] = None, dpi: int = 150):
    """The figure of sample ``index`` of a data file (made by ``invrim simulate`` or
    :func:`invrim.data.write_dataset`): the observation, the classical baseline computed from it
    (the physics' pseudo-inverse or adjoint) and the truth ``x`` when the file holds it, with the
    baseline's PSNR / SSIM and the sample's per-sample parameters in the title.

    A look at the data before training: is the noise level right, does the baseline look like
    the truth. Negative indices count from the end. With ``output`` the figure is saved there and
    closed. Returns the matplotlib ``Figure``; every failure is a one-line :class:`DataError`.
    """
    import matplotlib.pyplot as plt

    from .data import HDF5Dataset, validate
    from .data.schema import OBSERVATION, TRUTH
    from .evaluation import baseline_name, sample_index

    if output is not None:
        _check_output(output)
    info = validate(data, check_values=False)
    n = info.samples
    i = sample_index(index, n, info.path)
    ds = HDF5Dataset(data, info=info)
    try:
        batch = ds.read(i, i + 1)
        y_dims = ds.target_dims(OBSERVATION)
        x_dims = ds.target_dims(TRUTH) if info.has_truth else tuple(info.problem.forward_model.x_dims)
    finally:
        ds.close()
    problem = info.problem
    y, truth = batch.pop(OBSERVATION), batch.pop(TRUTH, None)
    base_name = baseline_name(problem.forward_model)
    baseline = None
    if base_name is not None:
        with torch.inference_mode():
            baseline = problem.approximate_inverse(y, **batch)[0]
    cc = bool(getattr(problem.forward_model, "x_complex_channels", False))
    sample = {"y": y[0], "y_dims": y_dims, "truth": None if truth is None else truth[0],
              "baseline": baseline, "x_hat": None, "x_dims": x_dims, "complex_channels": cc}
    sample["metrics"] = _sample_metric_values(sample)
    views = {k: _x_view(sample[k], x_dims, cc) for k in ("baseline", "truth") if sample[k] is not None}
    how = next(iter(views.values()))[2] if views else ""
    base_title = f"{(base_name or 'baseline').capitalize()} (baseline)"
    names = {"baseline": base_title, "truth": "Truth x"}
    kinds = {_kind(v[0]) for v in views.values()}

    if views and kinds <= {"image"}:
        fig = plt.figure(figsize=(3.7 * (1 + len(views)), 4.2), layout="constrained")
        axes = np.atleast_1d(fig.subplots(1, 1 + len(views)))
        _draw_observation(fig, axes[0], sample, how)
        lo, hi = _limits(views["truth"][0]) if "truth" in views else _limits(
            *(v[0] for v in views.values()), robust=True)
        for ax, key in zip(axes[1:], views):
            _image(fig, ax, views[key][0], _title(names[key], sample["metrics"].get(key)), IMAGE_CMAP, lo, hi)
    else:
        fig = plt.figure(figsize=(12, 4.2), layout="constrained")
        ax_y, ax_x = fig.subplots(1, 2, width_ratios=[1, 2])
        _draw_observation(fig, ax_y, sample, how)
        for key in ("truth", "baseline"):
            if key not in views:
                continue
            v = views[key][0].reshape(-1)
            m = sample["metrics"].get(key)
            label = names[key] + (f" ({_metric_text(m)})" if m else "")
            style = dict(color=_COLOURS[key], lw=2.2 if key == "truth" else 1.4)
            if _kind(views[key][0]) == "line":
                ax_x.plot(np.arange(v.size), v, ls="--" if key == "baseline" else "-", label=label, **style)
            else:
                ax_x.plot(np.arange(v.size), v, "o" if key == "truth" else "^", ls="none", label=label,
                          color=style["color"], mfc="none" if key == "truth" else style["color"], ms=9)
        ax_x.grid(alpha=0.3)
        ax_x.legend(fontsize=8, frameon=False)
        ax_x.tick_params(labelsize=8)
        ax_x.set_title("Truth and baseline" if views else "No truth and no baseline", fontsize=10)

    attrs = info.attrs
    physics = f"{attrs.get('forward_model', '?')} with {attrs.get('likelihood', '?')} noise"
    params = ",  ".join(f"{k} = {_describe(v[0])}" for k, v in batch.items())
    line2 = (params or "no per-sample parameters") + (f"   ·   x shown as {how}" if how else "")
    fig.suptitle(f"{Path(info.path).name}: sample {i} of {n}   ·   {physics}\n{line2}", fontsize=11)
    if output is not None:
        save_figure(fig, output, dpi=dpi)
    return fig


# ----------------------------------------------------------------------------------------------
# training curves
# ----------------------------------------------------------------------------------------------
def read_metrics(run: PathLike) -> list[dict[str, Any]]:
    """The per-epoch records of a run folder's ``metrics.jsonl`` (a torn last line is skipped)."""
    run = Path(run)
    path = run / "metrics.jsonl"
    if not run.is_dir():
        raise DataError(f"{run} is not a folder")
    if not path.is_file():
        raise DataError(f"{run} has no metrics.jsonl: not a run folder made by 'invrim train', or no epoch "
                        "has finished yet")
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    records = []
    for i, line in enumerate(lines):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if i == len(lines) - 1:            # a run killed while appending
                continue
            raise DataError(f"{path}: line {i + 1} is not valid JSON") from None
    records = [r for r in records if isinstance(r, dict) and "epoch" in r]
    if not records:
        raise DataError(f"{path} holds no epochs yet")
    return records


def _best_epoch(run: Path, records: list[dict]) -> tuple[Optional[int], str]:
    """The epoch of the run's 'best' checkpoint (what reconstruct uses) and the monitored loss."""
    has_val = any(r.get("val_loss") is not None for r in records)
    monitor = "val_loss" if has_val else "train_loss"
    try:
        index = json.loads((run / "checkpoints.json").read_text())
        best = next(c for c in index["checkpoints"] if c["file"] == index["best"])
        return int(best["epoch"]), best.get("monitor", monitor)
    except Exception:
        pass
    vals = [(r.get(monitor), r["epoch"]) for r in records
            if isinstance(r.get(monitor), (int, float)) and math.isfinite(r.get(monitor))]
    return (min(vals)[1] if vals else None), monitor


def plot_training(run: PathLike, output: Optional[PathLike] = None, dpi: int = 150):
    """Training and validation loss against the epoch (log scale when all losses are positive),
    with the epoch of the best checkpoint marked. Returns the ``Figure`` (saved and closed when
    ``output`` is given)."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    run = Path(run)
    if output is not None:
        _check_output(output)
    records = read_metrics(run)
    epochs = np.array([r["epoch"] for r in records], dtype=float)

    def series(key):
        return np.array([r.get(key) if isinstance(r.get(key), (int, float)) else np.nan for r in records],
                        dtype=float)
    train, val = series("train_loss"), series("val_loss")
    best, monitor = _best_epoch(run, records)

    fig, ax = plt.subplots(figsize=(7, 4.3), layout="constrained")
    ax.plot(epochs, train, "o-", color="C0", ms=3.5, lw=1.6, label="training loss")
    if np.isfinite(val).any():
        ax.plot(epochs, val, "s-", color="C1", ms=3.5, lw=1.6, label="validation loss")
    finite = np.concatenate([train[np.isfinite(train)], val[np.isfinite(val)]])
    _log_axis(ax, finite)
    if best is not None and best in epochs:
        curve = val if monitor == "val_loss" else train
        value = curve[list(epochs).index(best)]
        ax.axvline(best, color="0.5", ls=":", lw=1)
        ax.plot([best], [value], "*", color="C3", ms=15, zorder=5,
                label=f"best checkpoint: epoch {best} ({monitor.replace('_', ' ')} {value:.4g})")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3, which="both")
    ax.legend(frameon=False, fontsize=9)
    title = f"Training of {run.resolve().name}"
    try:
        cfg = json.loads((run / "model.json").read_text())
        title += f" — {cfg['backbone']['name']} backbone, T = {cfg['rim']['T']}"
    except Exception:
        pass
    ax.set_title(title, fontsize=11)
    if output is not None:
        save_figure(fig, output, dpi=dpi)
    return fig


# ----------------------------------------------------------------------------------------------
# saving
# ----------------------------------------------------------------------------------------------
def _check_output(path: PathLike) -> None:
    from matplotlib.backend_bases import FigureCanvasBase
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path} is a folder; give a figure file name such as fig.png")
    if not path.parent.is_dir():
        raise DataError(f"cannot write {path}: folder {path.parent} does not exist")
    suffix = path.suffix.lower().lstrip(".")
    supported = FigureCanvasBase.get_supported_filetypes()
    if suffix not in supported:
        raise DataError(f"cannot write {path}: unknown figure format {suffix!r} (use a suffix such as "
                        f"{', '.join('.' + s for s in sorted(supported))})")


def save_figure(fig, path: PathLike, dpi: int = 150) -> Path:
    """Save ``fig`` (format from the suffix) and close it."""
    import matplotlib.pyplot as plt
    _check_output(path)
    fig.savefig(path, dpi=dpi, facecolor="white")
    plt.close(fig)
    return Path(path)
