"""The loss curves of a training run: training and validation loss against the epoch, with the
best checkpoint marked. The run folder is read through :class:`invrim.runs.RunFolder`."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import numpy as np

from ..data.schema import DataError
from ..runs import CheckpointError, RunFolder
from ._common import PathLike, _check_output, _log_axis, save_figure

__all__ = ["plot_training", "read_metrics"]


def read_metrics(run: PathLike) -> list[dict[str, Any]]:
    """The per-epoch records of a run folder (:meth:`invrim.runs.RunFolder.metrics`; a torn last
    line is skipped). A folder without finished epochs is a one-line :class:`~invrim.data.DataError`."""
    try:
        return RunFolder(run).metrics()
    except CheckpointError as e:
        raise DataError(str(e)) from None


def _run_title(run: Path) -> str:
    title = f"Training of {run.resolve().name}"
    try:
        cfg = RunFolder(run).model_config()
        return f"{title} — {cfg['backbone']['name']} backbone, T = {cfg['rim']['T']}"
    except (CheckpointError, OSError, KeyError, TypeError):
        return title


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
    try:
        best, monitor = RunFolder(run).best_epoch()
    except CheckpointError as e:
        raise DataError(str(e)) from None

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
    ax.set_title(_run_title(run), fontsize=11)
    if output is not None:
        save_figure(fig, output, dpi=dpi)
    return fig
