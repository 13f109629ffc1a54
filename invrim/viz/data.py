"""The figure of one sample of a data file, before any training: the observation, the classical
baseline computed from it and the truth."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ..data import HDF5Dataset, validate
from ..data.schema import OBSERVATION, TRUTH
from ..evaluation import baseline_name, sample_index
from ._common import (_upper_first, _COLOURS, IMAGE_CMAP, PathLike, _check_output, _draw_observation, _image, _kind, _limits,
                      _metric_text, _sample_metric_values, _title, _x_view, save_figure)

__all__ = ["plot_data_sample"]


def _describe(value: torch.Tensor) -> str:
    if value.numel() == 1:
        return f"{float(value.real if value.is_complex() else value):.4g}"
    return "×".join(str(n) for n in value.shape)


def plot_data_sample(data: PathLike, index: int = 0, *, output: Optional[PathLike] = None, dpi: int = 150,
                     check_values: bool = True):
    """The figure of sample ``index`` of a data file (made by ``invrim simulate`` or
    :func:`invrim.data.write_dataset`): the observation, the classical baseline computed from it
    (the physics' pseudo-inverse or adjoint) and the truth ``x`` when the file holds it, with the
    baseline's PSNR / SSIM and the sample's per-sample parameters in the title.

    A look at the data before training: is the noise level right, does the baseline look like
    the truth. Negative indices count from the end. With ``output`` the figure is saved there and
    closed. ``check_values`` first scans the whole file for NaN/Inf, as training does (one read
    pass). Returns the matplotlib ``Figure``; every failure is a one-line :class:`~invrim.data.DataError`.
    """
    import matplotlib.pyplot as plt

    if output is not None:
        _check_output(output)
    info = validate(data, check_values=check_values)
    n = info.samples
    i = sample_index(index, n, info.path)
    ds = HDF5Dataset(data, info=info)
    try:
        batch = ds.read_checked(i, i + 1)
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
            baseline = problem.forward_model.baseline(y, **batch)[0]
    cc = bool(getattr(problem.forward_model, "x_complex_channels", False))
    sample = {"y": y[0], "y_dims": y_dims, "truth": None if truth is None else truth[0],
              "baseline": baseline, "x_hat": None, "x_dims": x_dims, "complex_channels": cc,
              "forward_model": problem.forward_model, "params": {k: v[0] for k, v in batch.items()}}
    sample["metrics"] = _sample_metric_values(sample)
    views = {k: _x_view(sample[k], x_dims, cc) for k in ("baseline", "truth") if sample[k] is not None}
    how = next(iter(views.values()))[2] if views else ""
    base_title = f"{_upper_first(base_name or 'baseline')} (baseline)"
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

