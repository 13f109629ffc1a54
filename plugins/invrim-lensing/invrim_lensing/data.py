"""Simulation helpers: real galaxy sources (Hubble Deep Field crops), random lenses, an SIS map."""
from __future__ import annotations

import math
from functools import lru_cache
from typing import Optional

import numpy as np
import torch
from torch import Tensor

from .geometry import LENS_PARAMETERS, pixel_grid

__all__ = ["hubble_sources", "random_lenses", "sis_convergence", "HubbleSources", "LENS_PARAMETERS"]

_SPLIT_COLUMN = 700          # galaxies left of this column of the 1000-px-wide field: "train"


@lru_cache(maxsize=1)
def _hubble() -> tuple[np.ndarray, np.ndarray]:
    """The grey Hubble Deep Field (background-subtracted) and the positions of its bright blobs."""
    from scipy import ndimage
    from skimage import color, data
    from skimage.feature import peak_local_max

    grey = color.rgb2gray(data.hubble_deep_field()).astype(np.float64)   # bundled: no download
    grey = np.clip(grey - np.median(grey), 0, None)
    smooth = ndimage.gaussian_filter(grey, 2.0)
    peaks = peak_local_max(smooth, min_distance=12, threshold_abs=np.percentile(smooth, 99.0),
                           exclude_border=32)
    return grey, peaks


def hubble_sources(n: int, size: int = 32, crop: int = 40, split: str = "train", seed: int = 0,
                   max_shift: int = 4, dtype: torch.dtype = torch.float32) -> Tensor:
    """``n`` galaxy images ``(n, 1, size, size)`` in ``[0, 1]``, cropped from scikit-image's bundled
    Hubble Deep Field (``skimage.data.hubble_deep_field``, works offline).

    Each is a ``crop x crop`` cut centred (up to ``max_shift`` pixels off) on one of the ~100
    brightest blobs of the field, resized to ``size``, randomly flipped / rotated by multiples of
    90°, background-subtracted and scaled to a peak of 1. ``split="train"`` uses the galaxies in
    the left 70 % of the field, ``"test"`` those in the right 30 % (no galaxy in both), ``"all"``
    every one.
    """
    from skimage.transform import resize

    if split not in ("train", "test", "all"):
        raise ValueError(f"split must be 'train', 'test' or 'all', got {split!r}")
    if crop < 4 or size < 2:
        raise ValueError(f"crop must be >= 4 and size >= 2, got crop={crop}, size={size}")
    grey, peaks = _hubble()
    if split == "train":
        peaks = peaks[peaks[:, 1] < _SPLIT_COLUMN]
    elif split == "test":
        peaks = peaks[peaks[:, 1] >= _SPLIT_COLUMN]
    rng = np.random.default_rng(seed)
    H, W = grey.shape
    half = crop // 2
    out = np.empty((n, size, size))
    for k in range(n):
        r, c = peaks[rng.integers(len(peaks))] + rng.integers(-max_shift, max_shift + 1, size=2)
        r = int(np.clip(r, half, H - crop + half))
        c = int(np.clip(c, half, W - crop + half))
        img = grey[r - half:r - half + crop, c - half:c - half + crop]
        img = resize(img, (size, size), anti_aliasing=True)
        img = np.rot90(img, rng.integers(4))
        if rng.integers(2):
            img = img[:, ::-1]
        img = np.clip(img - np.median(img), 0, None)
        out[k] = img / max(img.max(), 1e-12)
    return torch.from_numpy(out).unsqueeze(1).to(dtype)


def random_lenses(n: int, generator: Optional[torch.Generator] = None, theta_E: tuple[float, float] = (0.9, 1.3),
                  q: tuple[float, float] = (0.6, 1.0), centre: float = 0.1, shear: float = 0.03,
                  dtype: torch.dtype = torch.float32) -> Tensor:
    """``n`` random SIE + shear lenses ``(n, 7)`` (columns :data:`LENS_PARAMETERS`): ``theta_E`` and
    ``q`` uniform in their ranges, ``phi`` uniform in ``[0, pi)``, centre uniform in
    ``[-centre, centre]²`` arcsec, shear components normal with standard deviation ``shear``."""
    u = torch.rand(n, 5, generator=generator, dtype=torch.float64)
    g = torch.randn(n, 2, generator=generator, dtype=torch.float64)
    lens = torch.stack([
        theta_E[0] + (theta_E[1] - theta_E[0]) * u[:, 0],
        q[0] + (q[1] - q[0]) * u[:, 1],
        math.pi * u[:, 2],
        centre * (2 * u[:, 3] - 1),
        centre * (2 * u[:, 4] - 1),
        shear * g[:, 0],
        shear * g[:, 1],
    ], dim=1)
    return lens.to(dtype)


def sis_convergence(pixels: int, fov: float, theta_E: float = 1.0, oversample: int = 8,
                    dtype: torch.dtype = torch.float64) -> Tensor:
    """The convergence ``kappa = theta_E / (2 |theta|)`` of a singular isothermal sphere centred on
    the grid, averaged over each pixel (``oversample²`` sub-pixels): ``(1, 1, pixels, pixels)``."""
    x, y = pixel_grid(pixels * oversample, fov, torch.float64)
    r = torch.sqrt(x * x + y * y).clamp_min(1e-12)
    kappa = (theta_E / (2 * r)).reshape(pixels, oversample, pixels, oversample).mean((1, 3))
    return kappa[None, None].to(dtype)


class HubbleSources:
    """Ground-truth generator ``hubble_sources``: galaxy images ``(batch, 1, size, size)`` in
    ``[0, 1]`` cropped from the Hubble Deep Field bundled with scikit-image (see
    :func:`hubble_sources`), for ``invrim simulate --forward-model lensing_sie``."""

    name = "hubble_sources"
    dims = ("channel", "source_height", "source_width")

    def __init__(self, size: int = 32, crop: int = 40, split: str = "train", max_shift: int = 4):
        if split not in ("train", "test", "all"):
            raise ValueError(f"split must be 'train', 'test' or 'all', got {split!r}")
        for label, v, low in (("size", size, 2), ("crop", crop, 4), ("max_shift", max_shift, 0)):
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise ValueError(f"{label} must be an integer >= {low}, got {v!r}")
        self.size, self.crop, self.split, self.max_shift = size, crop, split, max_shift

    def config(self) -> dict:
        return {"size": self.size, "crop": self.crop, "split": self.split, "max_shift": self.max_shift}

    @classmethod
    def example(cls):
        return cls(size=12, crop=16), {"batch": 2}

    def __call__(self, batch: int = 1, generator: Optional[torch.Generator] = None,
                 dtype: torch.dtype = torch.float32) -> Tensor:
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        return hubble_sources(batch, self.size, self.crop, self.split, seed, self.max_shift, dtype)
