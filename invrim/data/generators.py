"""Ground-truth generators: random signals ``x`` for simulating training data ``y = F(x) + noise``.

The generator interface
-----------------------
A generator is a class (registered as an invrim component of kind ``generators``) with

* a class attribute ``name``: its registry name;
* a constructor taking keyword options only, with JSON-serialisable values; an invalid value
  raises ``ValueError`` with one line naming the option;
* ``config() -> dict``: the constructor's keyword arguments, so that ``type(g)(**g.config())``
  rebuilds an equal generator (same output for the same seed);
* ``dims``: the names of the non-batch axes of the output, e.g. ``("channel", "height", "width")``
  (spatial names from :data:`invrim.physics.base.SPATIAL_DIMS`);
* a class method ``example() -> (generator, call_kwargs)``: a small instance and the keyword
  arguments of a call, used by ``invrim plugins check``;
* ``__call__(batch, generator=None, dtype=torch.float32) -> Tensor`` of shape
  ``(batch, channels, *spatial)`` on the CPU. All randomness is drawn from ``generator`` (a CPU
  :class:`torch.Generator`), so two identically seeded generators give bit-identical output; the
  global RNG is never used (``generator=None`` draws a fresh, randomly seeded one);
* optionally ``deterministic = True`` for a generator whose output does not depend on the seed
  (a fixed phantom): the conformance kit then skips its "different seeds differ" check.

:func:`invrim.plugins.testing.check_generator` checks all of this.

The core generators
-------------------
* :class:`GaussianRandomField` (``random_field``): Gaussian random fields with an isotropic power
  spectrum ``P(k) ∝ k^-power`` in 1-, 2- or 3-D;
* :class:`RandomEllipses` (``ellipses``): 2-D piecewise-constant phantoms of random ellipses;
* :class:`ImageCrops` (``image_crops``): random zoomed, flipped crops of the natural images bundled
  with scikit-image (needs scikit-image, imported only when an ``ImageCrops`` is built).

>>> field = GaussianRandomField(shape=[64, 64], power=3.0)
>>> x = field(8, generator=torch.Generator().manual_seed(0))      # (8, 1, 64, 64) in [0, 1]
"""
from __future__ import annotations

import json
import math
import numbers
from typing import Any, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ..physics.base import SPATIAL_DIMS

__all__ = ["GaussianRandomField", "RandomEllipses", "ImageCrops", "SKIMAGE_IMAGES", "NORMALIZATIONS"]

NORMALIZATIONS = ("minmax", "standard")

#: The images of ``skimage.data`` that ship inside the scikit-image wheel (no download, no pooch)
#: and are natural photographs or micrographs at least 172 pixels on a side.
SKIMAGE_IMAGES = ("astronaut", "brick", "camera", "cell", "chelsea", "clock", "coffee", "coins", "grass",
                  "gravel", "hubble_deep_field", "immunohistochemistry", "moon", "page", "retina", "rocket",
                  "text")

_SKIMAGE_HINT = "image_crops needs scikit-image: pip install scikit-image"


# ---------------------------------------------------------------------------------------------
# option validation
# ---------------------------------------------------------------------------------------------

def _is_int(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(float(v))


def _int_list(option: str, value: Any, lengths: Sequence[int], minimum: int) -> list[int]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) not in lengths \
            or not all(_is_int(v) and v >= minimum for v in value):
        count = " or ".join(map(str, lengths)) if len(lengths) < 3 else f"{min(lengths)}-{max(lengths)}"
        raise ValueError(f"{option} must be a list of {count} integers >= {minimum}, got {value!r}")
    return [int(v) for v in value]


def _positive_int(option: str, value: Any) -> int:
    if not _is_int(value) or value < 1:
        raise ValueError(f"{option} must be a positive integer, got {value!r}")
    return int(value)


def _call_args(name: str, batch: Any, generator: Any, dtype: Any) -> torch.Generator:
    if not _is_int(batch) or batch < 1:
        raise ValueError(f"{name}: batch must be a positive integer, got {batch!r}")
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"{name}: dtype must be a floating-point torch.dtype, got {dtype!r}")
    if generator is None:
        g = torch.Generator()
        g.seed()                       # a fresh random seed; the global RNG is left alone
        return g
    if not isinstance(generator, torch.Generator) or generator.device.type != "cpu":
        raise ValueError(f"{name}: generator must be a CPU torch.Generator, got {generator!r}")
    return generator


class _Generator:
    """Shared plumbing: equality and ``repr`` through :meth:`config`."""

    name = "generator"
    deterministic = False

    def config(self) -> dict[str, Any]:  # pragma: no cover - every subclass overrides it
        raise NotImplementedError

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.config() == self.config()

    def __hash__(self) -> int:
        return hash((type(self), json.dumps(self.config(), sort_keys=True)))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.config().items())})"


# ---------------------------------------------------------------------------------------------
# Gaussian random fields
# ---------------------------------------------------------------------------------------------

def _normalize(x: Tensor, how: str) -> Tensor:
    """Per sample and channel: ``minmax`` to [0, 1] or ``standard`` to zero mean, unit std."""
    flat = x.flatten(2)
    shape = (*x.shape[:2],) + (1,) * (x.dim() - 2)
    if how == "minmax":
        lo, hi = flat.amin(2).view(shape), flat.amax(2).view(shape)
        return ((x - lo) / (hi - lo).clamp_min(1e-30)).clamp(0, 1)
    mean, std = flat.mean(2).view(shape), flat.std(2, correction=0).view(shape)
    return (x - mean) / std.clamp_min(1e-30)


class GaussianRandomField(_Generator):
    """Gaussian random fields with an isotropic power spectrum ``P(k) ∝ k^-power`` (``random_field``).

    White Gaussian noise is filtered in Fourier space (``torch.fft.rfftn``) by ``k^(-power/2)``,
    ``k`` the spatial frequency in cycles per pixel, with the ``k = 0`` mode zeroed; the field is
    periodic. Computed in float64 and cast to ``dtype``, so float32 and float64 outputs of the
    same seed agree to float32 rounding.

    Options
    -------
    shape
        Spatial shape, a list of 1–3 positive integers (default ``[64, 64]``); ``dims`` is
        ``("channel", *SPATIAL_DIMS[len(shape)])``, e.g. ``("channel", "length")`` for ``[128]``.
    channels
        Independent fields per sample (default 1).
    power
        Spectral index (default 3.0): larger is smoother; 0 is white noise.
    normalize
        ``"minmax"`` (default: each sample and channel scaled to [0, 1]) or ``"standard"``
        (zero mean, unit standard deviation).
    """

    name = "random_field"

    def __init__(self, shape: Sequence[int] = (64, 64), channels: int = 1, power: float = 3.0,
                 normalize: str = "minmax"):
        self.shape = _int_list("shape", shape, (1, 2, 3), 1)
        self.channels = _positive_int("channels", channels)
        if not _is_number(power):
            raise ValueError(f"power must be a finite number, got {power!r}")
        self.power = float(power)
        if normalize not in NORMALIZATIONS:
            raise ValueError(f"normalize must be one of {NORMALIZATIONS}, got {normalize!r}")
        self.normalize = normalize

    @property
    def dims(self) -> tuple[str, ...]:
        return ("channel", *SPATIAL_DIMS[len(self.shape)])

    def config(self) -> dict[str, Any]:
        return {"shape": list(self.shape), "channels": self.channels, "power": self.power,
                "normalize": self.normalize}

    @classmethod
    def example(cls) -> tuple["GaussianRandomField", dict[str, Any]]:
        return cls(shape=[16, 12], channels=2), {"batch": 2}

    def amplitude(self) -> Tensor:
        """The Fourier filter ``k^(-power/2)`` on the ``rfftn`` grid (float64, zero at ``k = 0``)."""
        freqs = [torch.fft.fftfreq(n, dtype=torch.float64) for n in self.shape[:-1]]
        freqs.append(torch.fft.rfftfreq(self.shape[-1], dtype=torch.float64))
        k2 = torch.zeros((), dtype=torch.float64)
        for axis, f in enumerate(freqs):
            view = [1] * len(freqs)
            view[axis] = -1
            k2 = k2 + f.view(view) ** 2
        k = k2.sqrt()
        amp = torch.where(k > 0, k.clamp_min(1e-300) ** (-self.power / 2), torch.zeros_like(k))
        return amp

    def __call__(self, batch: int, generator: Optional[torch.Generator] = None,
                 dtype: torch.dtype = torch.float32) -> Tensor:
        g = _call_args(self.name, batch, generator, dtype)
        d = len(self.shape)
        noise = torch.randn(batch, self.channels, *self.shape, generator=g, dtype=torch.float64)
        axes = tuple(range(-d, 0))
        spectrum = torch.fft.rfftn(noise, dim=axes) * self.amplitude()
        field = torch.fft.irfftn(spectrum, s=self.shape, dim=axes)
        return _normalize(field, self.normalize).to(dtype)


# ---------------------------------------------------------------------------------------------
# random ellipses
# ---------------------------------------------------------------------------------------------

def _gaussian_blur(x: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur of ``(N, H, W)`` images, edges replicated; preserves [0, 1]."""
    radius = max(1, int(math.ceil(3 * sigma)))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype)
    kernel = torch.exp(-0.5 * (t / sigma) ** 2)
    kernel = kernel / kernel.sum()
    y = x.unsqueeze(1)
    y = F.conv2d(F.pad(y, (radius, radius, 0, 0), mode="replicate"), kernel.view(1, 1, 1, -1))
    y = F.conv2d(F.pad(y, (0, 0, radius, radius), mode="replicate"), kernel.view(1, 1, -1, 1))
    return y.squeeze(1)


class RandomEllipses(_Generator):
    """2-D phantoms of random uniform ellipses in ``[0, 1]`` (``ellipses``).

    Each image holds between ``ellipses[0]`` and ``ellipses[1]`` ellipses (uniformly many) with
    centres uniform over the image, semi-axes uniform in 3–40 % of the longer side, uniform
    orientations and intensities uniform in [0.1, 1]; overlapping ellipses add and the sum is
    clipped to [0, 1]. Pixels are square: a circle stays round when ``height ≠ width``.

    Options
    -------
    shape
        ``[height, width]`` (default ``[64, 64]``); ``dims = ("channel", "height", "width")``.
    channels
        Independent phantoms per sample (default 1).
    ellipses
        ``[min, max]`` ellipses per image, ``0 <= min <= max`` (default ``[1, 6]``).
    smooth
        Gaussian blur standard deviation in pixels after clipping (default 0: sharp edges).
    """

    name = "ellipses"
    dims = ("channel", "height", "width")

    def __init__(self, shape: Sequence[int] = (64, 64), channels: int = 1, ellipses: Sequence[int] = (1, 6),
                 smooth: float = 0.0):
        self.shape = _int_list("shape", shape, (2,), 1)
        self.channels = _positive_int("channels", channels)
        count = _int_list("ellipses", ellipses, (2,), 0)
        if count[0] > count[1]:
            raise ValueError(f"ellipses must be [min, max] with min <= max, got {ellipses!r}")
        self.ellipses = count
        if not _is_number(smooth) or smooth < 0:
            raise ValueError(f"smooth must be a number >= 0 (pixels), got {smooth!r}")
        self.smooth = float(smooth)

    def config(self) -> dict[str, Any]:
        return {"shape": list(self.shape), "channels": self.channels, "ellipses": list(self.ellipses),
                "smooth": self.smooth}

    @classmethod
    def example(cls) -> tuple["RandomEllipses", dict[str, Any]]:
        return cls(shape=[16, 12], ellipses=[1, 3], smooth=0.5), {"batch": 2}

    def __call__(self, batch: int, generator: Optional[torch.Generator] = None,
                 dtype: torch.dtype = torch.float32) -> Tensor:
        g = _call_args(self.name, batch, generator, dtype)
        H, W = self.shape
        lo, hi = self.ellipses
        n = batch * self.channels
        wdt = torch.float64 if dtype == torch.float64 else torch.float32
        # all parameters drawn in one go (float64 uniforms), whatever the dtype
        counts = torch.randint(lo, hi + 1, (n,), generator=g)
        u = torch.rand(n, hi, 6, generator=g, dtype=torch.float64)
        half = max(H, W) / 2                       # coordinates: pixels / half the longer side
        cx = (u[..., 0] * 2 - 1) * (W / 2 / half)
        cy = (u[..., 1] * 2 - 1) * (H / 2 / half)
        a = 0.06 + 0.74 * u[..., 2]                # semi-axes: 3-40 % of the longer side
        b = 0.06 + 0.74 * u[..., 3]
        theta = math.pi * u[..., 4]
        value = 0.1 + 0.9 * u[..., 5]
        value = value * (torch.arange(hi)[None, :] < counts[:, None])       # inactive ellipses: 0
        params = [p.to(wdt) for p in (cx, cy, 1 / a ** 2, 1 / b ** 2, theta.cos(), theta.sin(), value)]
        xs = ((torch.arange(W, dtype=wdt) + 0.5 - W / 2) / half).view(1, 1, W)
        ys = ((torch.arange(H, dtype=wdt) + 0.5 - H / 2) / half).view(1, H, 1)
        image = torch.zeros(n, H, W, dtype=wdt)
        for j in range(hi):                        # vectorised over images; a few ellipses each
            x0, y0, ia2, ib2, c, s, v = (p[:, j].view(n, 1, 1) for p in params)
            dx, dy = xs - x0, ys - y0
            p, q = dx * c + dy * s, dy * c - dx * s
            image += v * ((p * p) * ia2 + (q * q) * ib2 <= 1)
        image = image.clamp_(0, 1)
        if self.smooth > 0:
            image = _gaussian_blur(image, self.smooth)
        return image.view(batch, self.channels, H, W).to(dtype)


# ---------------------------------------------------------------------------------------------
# crops of scikit-image's bundled images
# ---------------------------------------------------------------------------------------------

_IMAGE_CACHE: dict[tuple[str, bool], Tensor] = {}


def _skimage():
    try:
        import skimage.color
        import skimage.data
        import skimage.util
    except ImportError as e:
        raise ImportError(_SKIMAGE_HINT) from e
    return skimage


def load_image(name: str, color: bool = False) -> Tensor:
    """One of :data:`SKIMAGE_IMAGES` as float32 ``(C, H, W)`` in [0, 1], cached: ``C = 1`` (RGB
    converted by ``skimage.color.rgb2gray``) or, with ``color``, ``C = 3`` (grey replicated)."""
    key = (name, bool(color))
    if key not in _IMAGE_CACHE:
        if name not in SKIMAGE_IMAGES:
            raise ValueError(f"unknown image {name!r}; choose from {', '.join(SKIMAGE_IMAGES)}")
        ski = _skimage()
        array = ski.util.img_as_float(getattr(ski.data, name)())
        if array.ndim == 3:
            array = array[..., :3]
        if color:
            image = torch.from_numpy(array).float()
            image = image.permute(2, 0, 1) if image.dim() == 3 else image.expand(3, *image.shape)
        else:
            if array.ndim == 3:
                array = ski.color.rgb2gray(array)
            image = torch.from_numpy(array).float()[None]
        _IMAGE_CACHE[key] = image.clamp(0, 1).contiguous()
    return _IMAGE_CACHE[key]


class ImageCrops(_Generator):
    """Random crops of the natural images bundled with scikit-image (``image_crops``).

    For each sample: an image drawn uniformly from ``images``, a zoom factor ``s`` uniform in
    ``scale`` (the image is resized by ``s`` before cropping, so ``s < 1`` shows a larger field
    of view), a uniformly placed crop, then (with ``flips``) a random horizontal flip, vertical
    flip and — when the crop is square — a random multiple of 90° rotation. In practice a window
    of ``round(shape / s)`` pixels is cut from the original image and resized to ``shape`` by
    ``torch.nn.functional.interpolate`` (bilinear, antialiased); with ``s = 1`` the crop is an
    exact window of the image. An image smaller than the window is zoomed in just enough.
    Values are float in [0, 1]. Images are loaded (and cached) only when first drawn.

    The usable images are those that ship inside the scikit-image wheel (no download):
    astronaut, brick, camera, cell, chelsea, clock, coffee, coins, grass, gravel,
    hubble_deep_field, immunohistochemistry, moon, page, retina, rocket, text
    (:data:`SKIMAGE_IMAGES`). Colour images are converted to grey by ``skimage.color.rgb2gray``.

    Options
    -------
    shape
        ``[height, width]`` of a crop (default ``[64, 64]``); ``dims = ("channel", "height", "width")``.
    images
        Names of the images to crop from (default: all of :data:`SKIMAGE_IMAGES`).
    scale
        ``[min, max]`` zoom range, ``0 < min <= max`` (default ``[0.5, 1.0]``).
    flips
        Random flips and rotations (default True).
    color
        False (default): one grey channel; True: three RGB channels, grey images replicated.
    """

    name = "image_crops"
    dims = ("channel", "height", "width")

    def __init__(self, shape: Sequence[int] = (64, 64), images: Optional[Sequence[str]] = None,
                 scale: Sequence[float] = (0.5, 1.0), flips: bool = True, color: bool = False):
        self.shape = _int_list("shape", shape, (2,), 1)
        if images is None:
            images = list(SKIMAGE_IMAGES)
        if isinstance(images, str) or not isinstance(images, Sequence) or not images:
            raise ValueError(f"images must be a non-empty list of names from {', '.join(SKIMAGE_IMAGES)}, "
                             f"got {images!r}")
        unknown = [i for i in images if i not in SKIMAGE_IMAGES]
        if unknown:
            raise ValueError(f"images: unknown {', '.join(map(repr, unknown))}; choose from "
                             f"{', '.join(SKIMAGE_IMAGES)}")
        self.images = list(images)
        if isinstance(scale, (str, bytes)) or not isinstance(scale, Sequence) or len(scale) != 2 \
                or not all(_is_number(s) and s > 0 for s in scale) or scale[0] > scale[1]:
            raise ValueError(f"scale must be [min, max] with 0 < min <= max, got {scale!r}")
        self.scale = [float(s) for s in scale]
        if not isinstance(flips, bool):
            raise ValueError(f"flips must be true or false, got {flips!r}")
        if not isinstance(color, bool):
            raise ValueError(f"color must be true or false, got {color!r}")
        self.flips, self.color = flips, color
        _skimage()                                    # fail early, with the install hint

    @property
    def channels(self) -> int:
        return 3 if self.color else 1

    def config(self) -> dict[str, Any]:
        return {"shape": list(self.shape), "images": list(self.images), "scale": list(self.scale),
                "flips": self.flips, "color": self.color}

    @classmethod
    def example(cls) -> tuple["ImageCrops", dict[str, Any]]:
        return cls(shape=[16, 16], images=["camera", "coins"]), {"batch": 2}

    def __call__(self, batch: int, generator: Optional[torch.Generator] = None,
                 dtype: torch.dtype = torch.float32) -> Tensor:
        g = _call_args(self.name, batch, generator, dtype)
        h, w = self.shape
        lo, hi = self.scale
        which = torch.randint(len(self.images), (batch,), generator=g)
        u = torch.rand(batch, 6, generator=g, dtype=torch.float64)   # scale, top, left, flips, rot
        crops = []
        for i in range(batch):
            image = load_image(self.images[int(which[i])], self.color)
            H, W = image.shape[-2:]
            s = max(lo + (hi - lo) * float(u[i, 0]), h / H, w / W)
            wh, ww = min(H, max(1, round(h / s))), min(W, max(1, round(w / s)))
            top = min(int(float(u[i, 1]) * (H - wh + 1)), H - wh)
            left = min(int(float(u[i, 2]) * (W - ww + 1)), W - ww)
            crop = image[:, top:top + wh, left:left + ww].to(dtype)
            if (wh, ww) != (h, w):
                crop = F.interpolate(crop[None], size=(h, w), mode="bilinear", align_corners=False,
                                     antialias=True)[0].clamp(0, 1)
            if self.flips:
                if u[i, 3] < 0.5:
                    crop = crop.flip(-1)
                if u[i, 4] < 0.5:
                    crop = crop.flip(-2)
                if h == w:
                    crop = torch.rot90(crop, int(u[i, 5] * 4), dims=(-2, -1))
            crops.append(crop)
        return torch.stack(crops).contiguous()
