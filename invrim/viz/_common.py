"""Shared drawing helpers of the figures (private): tensors turned into drawable arrays, image
panels, colour limits, titles with metrics, the observation panel and saving.

matplotlib is imported inside the functions, so importing this module never needs it.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch

from ..data.schema import DataError
from ..evaluation import observation_comparable, sample_metrics

PathLike = Union[str, "os.PathLike[str]"]

#: Colour maps: images, k-space / observations that are not images of x, residuals.
IMAGE_CMAP, OBSERVATION_CMAP, RESIDUAL_CMAP = "gray", "magma", "RdBu_r"
#: Above this many entries a single spatial axis is drawn as a signal (line), below it as points.
MAX_POINTS = 16
_COLOURS = {"truth": "black", "rim": "C3", "baseline": "C0", "tikhonov": "C2", "observation": "0.6"}


# ----------------------------------------------------------------------------------------------
# turning tensors into something drawable
# ----------------------------------------------------------------------------------------------
def _upper_first(text: str) -> str:
    """``"zero-filled SENSE"`` -> ``"Zero-filled SENSE"`` (``str.capitalize`` lowers the rest)."""
    return text[:1].upper() + text[1:]


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


# ----------------------------------------------------------------------------------------------
# what the reconstruction and data-file figures share: the observation panel, the metrics
# ----------------------------------------------------------------------------------------------
def _draw_observation(fig, ax, sample, x_how: str = "") -> None:
    """The observation ``sample["y"]`` on ``ax``: an image (log magnitude when complex), a line or
    points; ``x_how`` is how x was sliced (said once, in the figure title)."""
    y = sample.get("y")
    if y is None:
        _note(ax, "the observation file is not available", "Observation y")
        return
    draw = getattr(sample.get("forward_model"), "plot_observation", None)
    if callable(draw):                         # the plugin speaks for its domain
        try:
            draw(ax, y, **(sample.get("params") or {}))
            return
        except Exception as e:  # noqa: BLE001 — a plugin's drawing bug must not cost the figure
            import warnings
            ax.clear()
            warnings.warn(f"forward model {getattr(sample['forward_model'], 'name', '?')!r}: plot_observation "
                          f"failed ({type(e).__name__}: {e}); the observation is drawn the default way",
                          UserWarning, stacklevel=2)
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
            x_ref = next((sample[k] for k in ("x_hat", "truth", "baseline") if sample.get(k) is not None), None)
            comparable = x_ref is not None and observation_comparable(y[None], tuple(x_ref.shape))
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


def _sample_metric_values(sample: dict) -> dict[str, dict[str, float]]:
    """PSNR / SSIM / … of the RIM, the baseline and an x-shaped observation against the truth
    (``{}`` without truth)."""
    truth = sample.get("truth")
    out: dict[str, dict[str, float]] = {}
    if truth is None:
        return out
    cands = {"rim": sample["x_hat"], "baseline": sample.get("baseline")}
    y = sample.get("y")
    if y is not None and observation_comparable(y[None], tuple(truth.shape)):
        cands["observation"] = y
    for key, est in cands.items():
        if est is None or tuple(est.shape) != tuple(truth.shape):
            continue
        with torch.no_grad():
            m = sample_metrics(est[None], truth[None], sample["x_dims"], sample["complex_channels"])
        out[key] = {k: float(v[0]) for k, v in m.items()}
    return out


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
