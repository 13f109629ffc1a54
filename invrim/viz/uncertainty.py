"""The calibration figure of ``invrim evaluate --plot``: nominal against empirical coverage of a
reconstruction file's intervals, the half-width against the true error, and the data fit of every
sample against the calibration's out-of-distribution thresholds."""
from __future__ import annotations

from typing import Any, Optional

import numpy as np

from ..data.schema import DataError
from ._common import PathLike, _check_output, save_figure

__all__ = ["plot_calibration"]


def plot_calibration(result: dict[str, Any], output: Optional[PathLike] = None, dpi: int = 150):
    """The calibration figure of an :func:`invrim.evaluation.evaluate` result of a file written
    with ``--uncertainty``: coverage curve (per pixel and per image, with the diagonal), each
    sample's mean half-width against its RMS error, and each sample's data fit with the
    calibration's thresholds. With ``output`` the figure is saved and closed; returns the Figure."""
    import matplotlib.pyplot as plt

    u, fit = result.get("uncertainty"), result.get("data_fit")
    if not u:
        raise DataError(f"{result['file']} has no calibrated intervals: reconstruct it with --uncertainty "
                        "(after 'invrim calibrate RUN CAL.h5') to plot their calibration")
    if output is not None:
        _check_output(output)
    fig, axes = plt.subplots(1, 3, figsize=(13.5, 4.2), layout="constrained")
    ax = axes[0]
    curve = u["curve"]
    nominal = [c["nominal"] for c in curve]
    ax.plot([0, 1], [0, 1], color="0.6", lw=1, ls="--", label="ideal")
    ax.plot(nominal, [c["pixel"] for c in curve], "o-", color="C3", label="pixels inside")
    images = [(c["nominal"], c["image"]) for c in curve if c["image"] is not None]
    if images:
        ax.plot(*zip(*images), "s--", color="C0", label="whole images inside")
    lo = min(nominal) - 0.05
    ax.set_xlim(lo, 1.0)
    ax.set_ylim(lo, 1.0)
    ax.set_xlabel("nominal coverage")
    ax.set_ylabel("empirical coverage")
    ax.set_title(f"Coverage over {u['samples']} samples", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, frameon=False)

    ax = axes[1]
    w, e = np.asarray(u["sample_width"] if "sample_width" in u else []), np.asarray(u.get("sample_error", []))
    if w.size:
        ax.loglog(e, w, ".", color="C3", alpha=0.7)
        both = np.concatenate([w[w > 0], e[e > 0]])
        if both.size:
            ax.plot([both.min(), both.max()], [both.min(), both.max()], color="0.6", lw=1, ls="--")
    rho = u.get("sample_rank_correlation")
    ax.set_xlabel("RMS error of the sample")
    ax.set_ylabel("mean half-width of the sample")
    ax.set_title("Interval width against error" + (f" (rank corr. {rho:.2f})" if rho is not None else ""),
                 fontsize=10)
    ax.grid(alpha=0.3, which="both")

    ax = axes[2]
    if fit:
        values = np.asarray(fit["per_sample"], dtype=float)
        ax.hist(values, bins=min(40, max(5, values.size // 4)), color="C0", alpha=0.8)
        for key, label in (("low", "lower threshold"), ("high", "upper threshold")):
            if fit.get(key) is not None:
                ax.axvline(fit[key], color="C3", ls="--", lw=1.2, label=label)
        ax.set_xlabel(fit["statistic"])
        ax.set_ylabel("samples")
        flagged = fit.get("flagged")
        ax.set_title("Data consistency" + (f": {flagged} flagged" if flagged is not None else ""), fontsize=10)
        ax.legend(fontsize=8, frameon=False)
    else:
        ax.set_axis_off()
    fig.suptitle(f"{result['file']}: calibrated for {u['coverage']:.0%}", fontsize=11)
    if output is not None:
        save_figure(fig, output, dpi=dpi)
    return fig
