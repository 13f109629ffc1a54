"""The figure of one reconstructed sample: the observation ``y``, the classical baseline
(pseudo-inverse or adjoint), the RIM's ``x_hat``, the truth, the residuals and the error along the
RIM's trajectory, with PSNR / SSIM in the titles.

Images share their colour limits; complex images stored as (real, imag) channels are shown as
magnitude, 3-D volumes as their middle slice, 1-D signals as overlaid lines and parameter vectors
as points.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import numpy as np

from ..data.reconstruction import DATA_FIT, OOD, SPREAD, TRAJECTORY, TRAJECTORY_NMSE, UNCERTAINTY
from ..evaluation import prepare_images, read_sample, sample_metrics
from ..metrics import nmse
from ._common import (_upper_first, _COLOURS, IMAGE_CMAP, RESIDUAL_CMAP, PathLike, _check_output, _draw_observation, _image,
                      _kind, _limits, _log_axis, _metric_text, _note, _np, _sample_metric_values, _title,
                      _x_view, save_figure)

__all__ = ["plot_reconstruction", "plot_sample"]


# ----------------------------------------------------------------------------------------------
# the error along the RIM's trajectory
# ----------------------------------------------------------------------------------------------
def _trajectory_errors(sample: dict) -> tuple[Optional[np.ndarray], str]:
    """NMSE per RIM step (or None) and the label of what it measures."""
    truth, traj = sample.get("truth"), sample.get(TRAJECTORY)
    cc = sample["complex_channels"]
    if truth is not None and traj is not None:
        m = sample_metrics(traj, truth.expand(traj.shape[0], *truth.shape), sample["x_dims"], cc)
        return m["nmse"].numpy(), "NMSE of |x|" if cc else "NMSE"
    stored = sample.get(TRAJECTORY_NMSE)
    if stored is not None:
        return _np(stored).astype(np.float64), ("NMSE of |x|" if cc else "NMSE")
    return None, ""


def _draw_trajectory(ax, sample: dict) -> None:
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
        ref = prepare_images(truth[None], cc and on_magnitude)
        for key, name, style, colour in (
                ("baseline", sample.get("baseline_name") or "baseline", "--", _COLOURS["baseline"]),
                ("tikhonov", sample.get("tikhonov_label") or "Tikhonov-CG", "-.", _COLOURS["tikhonov"]),
                ("y", "observation", ":", _COLOURS["observation"])):
            est = sample.get(key)
            if est is None or (key == "y" and "observation" not in sample["metrics"]):
                continue
            v = float(nmse(prepare_images(est[None], cc and on_magnitude), ref)[0])
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
# layouts
# ----------------------------------------------------------------------------------------------
UNCERTAINTY_CMAP = "magma"
_SPREAD_TITLES = {UNCERTAINTY: "Uncertainty (interval half-width)", SPREAD: "Ensemble spread (std)"}


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
    spread = next((k for k in (UNCERTAINTY, SPREAD) if k in views), None)
    if spread and not has_truth:
        top[top.index("note")] = spread
    axes = rows[0].subplots(1, len(top))
    for ax, key in zip(np.atleast_1d(axes), top):
        if key == "observation":
            _draw_observation(rows[0], ax, sample, how)
        elif key in (UNCERTAINTY, SPREAD):
            u = views[key][0]
            _image(rows[0], ax, u, _SPREAD_TITLES[key], UNCERTAINTY_CMAP, 0.0,
                   float(np.percentile(u, 99.5)) or 1.0)
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
    n_res = len(res) + (1 if spread else 0)
    ncols = max(len(top), n_res + 2)
    gs = rows[1].add_gridspec(1, ncols)
    # the RIM's error, its uncertainty beside it (on the error's scale), the baseline's error
    panels = ["x_hat"] + ([spread] if spread else []) + (["baseline"] if "baseline" in res else [])
    for col, key in enumerate(panels):
        ax = rows[1].add_subplot(gs[0, col])
        if key == spread:
            _image(rows[1], ax, views[spread][0], _SPREAD_TITLES[spread], UNCERTAINTY_CMAP, 0.0, r)
        else:
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
    views = {key: _x_view(sample[key], x_dims, cc) for key in ("baseline", "x_hat", "truth", UNCERTAINTY, SPREAD)
             if sample.get(key) is not None}
    img, _, how = views["x_hat"]
    kind = _kind(img)
    base_name = _upper_first(sample.get("baseline_name") or "baseline")
    if kind == "image":
        ncols = 4 if ("truth" in views or "baseline" in views) else 3
        if "truth" in views and (UNCERTAINTY in views or SPREAD in views):
            ncols = 5                        # residuals, the uncertainty and the trajectory below
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
    if sample.get(DATA_FIT) is not None:
        statistic = (attrs.get("data_fit") or {}).get("statistic", "data fit")
        line2 += f"   ·   {statistic} {float(sample[DATA_FIT]):.3g}"
        if sample.get(OOD) is not None and int(sample[OOD]):
            line2 += " (flagged: possibly out of distribution)"
    header.suptitle(f"{head}   ·   {physics}\n{line2}", fontsize=11)
    return fig


def plot_reconstruction(reconstruction: PathLike, index: int = 0, *, truth: Optional[PathLike] = None,
                        observations: Optional[PathLike] = None, output: Optional[PathLike] = None, dpi: int = 150):
    """The figure of sample ``index`` of a reconstruction file: observation, baseline, RIM
    reconstruction, truth, residuals and the error along the RIM trajectory.

    ``truth`` / ``observations`` override the files the reconstruction records (as in
    :func:`invrim.evaluation.evaluate`); without any ground truth the figure shows the observation,
    baseline and reconstruction only. With ``output`` the figure is saved there (format from the
    suffix: .png, .pdf, .svg …) and closed. Returns the matplotlib ``Figure``.
    """
    if output is not None:
        _check_output(output)
    sample = read_sample(reconstruction, index, truth=truth, observations=observations)
    fig = plot_sample(sample)
    if output is not None:
        save_figure(fig, output, dpi=dpi)
    return fig

