"""Figures, split by what they draw (layer 5: above :mod:`invrim.evaluation`, below the CLI).

* :func:`plot_reconstruction` / :func:`plot_sample` (:mod:`invrim.viz.reconstruction`) — one
  reconstructed sample: panels for the observation ``y``, the classical baseline (pseudo-inverse
  or adjoint), the RIM's ``x_hat``, the truth, the residuals and the error along the RIM's
  trajectory, with PSNR / SSIM in the titles. Images share their colour limits; complex images
  stored as (real, imag) channels are shown as magnitude, 3-D volumes as their middle slice, 1-D
  signals as overlaid lines and parameter vectors as points.
* :func:`plot_data_sample` (:mod:`invrim.viz.data`) — one sample of a data file: the
  observation, the baseline computed from it and the truth, before any training.
* :func:`plot_training` / :func:`read_metrics` (:mod:`invrim.viz.training`) — training and
  validation loss against the epoch, marking the best epoch.
* :func:`plot_calibration` (:mod:`invrim.viz.uncertainty`) — the calibration of a file's
  intervals: nominal against empirical coverage, width against error, the data fit per sample.
* :func:`save_figure` — save a figure (format from the suffix) and close it.

matplotlib is imported inside the functions (with the non-interactive Agg backend when saving),
so ``import invrim`` never needs it.

>>> from invrim.viz import plot_reconstruction, plot_training          # doctest: +SKIP
>>> plot_reconstruction("recon.h5", index=3, output="sample3.png")     # doctest: +SKIP
>>> plot_training("run/", output="loss.png")                           # doctest: +SKIP
"""
from __future__ import annotations

from ._common import save_figure
from .data import plot_data_sample
from .reconstruction import plot_reconstruction, plot_sample
from .training import plot_training, read_metrics
from .uncertainty import plot_calibration

__all__ = ["plot_calibration", "plot_data_sample", "plot_reconstruction", "plot_sample", "plot_training", "read_metrics",
           "save_figure"]
