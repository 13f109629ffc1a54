"""Deprecated: the figures moved to :mod:`invrim.viz` (split by what they draw: reconstruction,
data and training figures).

``invrim.figures.plot_reconstruction`` and the other names here are the same functions as
``invrim.viz.plot_reconstruction`` …; import them from :mod:`invrim.viz`.
"""
from __future__ import annotations

import warnings

from .viz import plot_data_sample, plot_reconstruction, plot_sample, plot_training, read_metrics, save_figure

__all__ = ["plot_data_sample", "plot_reconstruction", "plot_sample", "plot_training", "read_metrics",
           "save_figure"]

warnings.warn("invrim.figures is deprecated: use invrim.viz (plot_reconstruction, plot_sample, "
              "plot_data_sample, plot_training, read_metrics, save_figure)", DeprecationWarning, stacklevel=2)
