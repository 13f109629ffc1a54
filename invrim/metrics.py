"""Image-quality metrics: NMSE, MSE, PSNR and SSIM, batched and in pure torch.

Every metric takes an ``estimate`` and a ``truth`` of the same shape ``(B, *dims)``, treats the
first axis as the batch and returns one value per sample: a float64 tensor of shape ``(B,)`` on
the inputs' device, so that per-sample tables and summaries (:func:`summarize`) are easy to make.

Conventions shared by all metrics
---------------------------------
* **dtype.** Inputs of any dtype are accepted; the computation is done in float64 (integer and
  bool inputs are converted, float16/32 inputs are upcast), and the result is float64.
* **Complex inputs.** A complex tensor is replaced by its magnitude ``|z|`` before anything else
  (the MRI convention: metrics are reported on magnitude images). When only one of the two inputs
  is complex, only that one is replaced. Note that ``invrim`` stores complex images as two real
  channels ``(real, imag)``; such tensors are *not* detected automatically, use
  :func:`magnitude` first if the metric should be taken on the magnitude image.
* **Device.** Nothing is moved between devices: both images must be on the same device, and a
  tensor ``data_range`` must be on that device as well (or be a CPU scalar).
* **Gradients.** The metrics are built from differentiable torch operations and are not wrapped
  in :func:`torch.no_grad`; call them under ``torch.no_grad()`` when evaluating.

>>> import torch
>>> from invrim.metrics import psnr, ssim, nmse, summarize
>>> truth = torch.rand(4, 1, 32, 32)
>>> estimate = truth + 0.05 * torch.randn_like(truth)
>>> psnr(estimate, truth, data_range=1.0).shape
torch.Size([4])
>>> summarize(ssim(estimate, truth, data_range=1.0))["n"]
4
"""
from __future__ import annotations

import math
from typing import Any, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["nmse", "mse", "psnr", "ssim", "magnitude", "summarize"]

#: What ``data_range`` may be: a positive number, or a tensor of shape ``()`` or ``(B,)``.
DataRange = Union[float, int, Tensor, None]

_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------
def _as_real64(x: Tensor) -> Tensor:
    """Float64 view of ``x``; complex tensors are replaced by their magnitude."""
    if x.is_complex():
        return x.to(torch.complex128).abs()
    return x.to(torch.float64)


def _prepare(name: str, estimate: Any, truth: Any, min_ndim: int = 2) -> tuple[Tensor, Tensor]:
    """Validate the pair of images and return them as real float64 tensors."""
    if not isinstance(estimate, Tensor) or not isinstance(truth, Tensor):
        raise TypeError(f"{name}: estimate and truth must be torch tensors, got "
                        f"{type(estimate).__name__} and {type(truth).__name__}")
    if estimate.shape != truth.shape:
        raise ValueError(f"{name}: estimate and truth must have the same shape, got "
                         f"estimate {tuple(estimate.shape)} and truth {tuple(truth.shape)}")
    if estimate.ndim < min_ndim:
        raise ValueError(f"{name}: expected a batch of shape (B, ...) with at least {min_ndim} axes, "
                         f"got shape {tuple(estimate.shape)}")
    if estimate.device != truth.device:
        raise ValueError(f"{name}: estimate and truth are on different devices "
                         f"({estimate.device} and {truth.device}); metrics never move data")
    if estimate.shape[0] > 0 and any(n == 0 for n in estimate.shape[1:]):
        raise ValueError(f"{name}: the samples are empty (shape {tuple(estimate.shape)})")
    return _as_real64(estimate), _as_real64(truth)


def _data_range(name: str, data_range: DataRange, truth: Tensor) -> Tensor:
    """``data_range`` as a float64 tensor of shape ``(B,)`` on ``truth``'s device.

    ``None`` gives the per-sample range ``max - min`` of ``truth``, with NaN where that range is 0
    (a constant truth image has no meaningful range).
    """
    batch = truth.shape[0]
    if data_range is None:
        flat = truth.flatten(1)
        if batch == 0:
            return flat.new_zeros(0)
        rng = flat.amax(dim=1) - flat.amin(dim=1)
        return torch.where(rng > 0, rng, torch.full_like(rng, math.nan))
    if isinstance(data_range, Tensor):
        if data_range.device != truth.device and not (data_range.ndim == 0
                                                       and data_range.device.type == "cpu"):
            raise ValueError(f"{name}: data_range is on {data_range.device} but the images are on "
                             f"{truth.device}; metrics never move data")
        if data_range.is_complex():
            raise ValueError(f"{name}: data_range must be real, got dtype {data_range.dtype}")
        dr = data_range.to(device=truth.device, dtype=torch.float64)
    else:
        dr = torch.as_tensor(data_range, dtype=torch.float64, device=truth.device)
    if dr.ndim > 1 or (dr.ndim == 1 and dr.numel() not in (1, batch)):
        raise ValueError(f"{name}: data_range must be a number or a tensor of shape () or ({batch},), "
                         f"got shape {tuple(dr.shape)}")
    if dr.numel() and not bool((dr > 0).all()):
        raise ValueError(f"{name}: data_range must be positive, got {dr.tolist()}")
    return dr.reshape(-1).expand(batch)


# ----------------------------------------------------------------------------------------------
# pixel-wise metrics
# ----------------------------------------------------------------------------------------------
def mse(estimate: Tensor, truth: Tensor) -> Tensor:
    """Mean squared error of each sample.

    Parameters
    ----------
    estimate, truth : Tensor
        Images of the same shape ``(B, *dims)``; any dtype (computed in float64). Complex inputs
        are replaced by their magnitude first (see the module notes).

    Returns
    -------
    Tensor
        Float64 tensor of shape ``(B,)``: ``mean((estimate - truth)**2)`` over all non-batch axes.

    Raises
    ------
    ValueError
        If the shapes differ, the inputs have fewer than 2 axes, or they are on different devices.
    """
    x, y = _prepare("mse", estimate, truth)
    return (x - y).square().flatten(1).mean(dim=1)


def nmse(estimate: Tensor, truth: Tensor) -> Tensor:
    """Normalised mean squared error ``||estimate - truth||^2 / ||truth||^2`` of each sample.

    Parameters
    ----------
    estimate, truth : Tensor
        Images of the same shape ``(B, *dims)``; any dtype (computed in float64). Complex inputs
        are replaced by their magnitude first (MRI convention, as in fastMRI), so the error is
        ``|| |estimate| - |truth| ||^2 / || |truth| ||^2``, not the norm of the complex difference.

    Returns
    -------
    Tensor
        Float64 tensor of shape ``(B,)``. ``sqrt(nmse)`` is skimage's
        ``normalized_root_mse(truth, estimate, normalization="euclidean")``.

    Notes
    -----
    A sample whose truth is all zeros gives ``inf``, or ``nan`` if its estimate is all zeros too
    (the ratio ``0 / 0``).

    Raises
    ------
    ValueError
        If the shapes differ, the inputs have fewer than 2 axes, or they are on different devices.
    """
    x, y = _prepare("nmse", estimate, truth)
    err = (x - y).square().flatten(1).sum(dim=1)
    ref = y.square().flatten(1).sum(dim=1)
    return err / ref


def psnr(estimate: Tensor, truth: Tensor, data_range: DataRange = None) -> Tensor:
    """Peak signal-to-noise ratio ``10 log10(data_range^2 / mse)`` of each sample, in dB.

    Parameters
    ----------
    estimate, truth : Tensor
        Images of the same shape ``(B, *dims)``; any dtype (computed in float64). Complex inputs
        are replaced by their magnitude first (see the module notes).
    data_range : float or Tensor, optional
        The dynamic range of the images: a positive number, or a tensor of shape ``()`` or
        ``(B,)`` (one range per sample). When given, the result equals
        ``skimage.metrics.peak_signal_noise_ratio(truth, estimate, data_range=data_range)``.
        When ``None`` (default), each sample uses the range of its truth, ``truth.max() -
        truth.min()``; this differs from skimage, which guesses the range from the dtype.

    Returns
    -------
    Tensor
        Float64 tensor of shape ``(B,)``. A sample with zero error gives ``inf``. With
        ``data_range=None``, a sample whose truth is constant (range 0) and whose error is not
        zero gives ``nan``.

    Raises
    ------
    ValueError
        If the shapes differ, ``data_range`` is not positive or has the wrong shape, the inputs
        have fewer than 2 axes, or anything is on a different device.
    """
    x, y = _prepare("psnr", estimate, truth)
    dr = _data_range("psnr", data_range, y)
    err = (x - y).square().flatten(1).mean(dim=1)
    value = 10.0 * torch.log10(dr.square() / err)
    return torch.where(err == 0, torch.full_like(value, math.inf), value)


# ----------------------------------------------------------------------------------------------
# SSIM
# ----------------------------------------------------------------------------------------------
def _gaussian_kernel1d(sigma: float, radius: int, like: Tensor) -> Tensor:
    # scipy.ndimage's kernel: exp(-x^2 / (2 sigma^2)) on [-radius, radius], normalised to sum 1
    t = torch.arange(-radius, radius + 1, dtype=torch.float64, device=like.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


def _filter_valid(x: Tensor, kernel: Tensor, spatial_dims: int) -> Tensor:
    """Separable correlation of ``x`` (N, 1, *spatial) with ``kernel`` along each spatial axis,
    keeping only the positions where the window fits inside the image ('valid')."""
    conv = _CONV[spatial_dims]
    k = kernel.numel()
    for d in range(spatial_dims):
        shape = [1, 1] + [1] * spatial_dims
        shape[2 + d] = k
        x = conv(x, kernel.reshape(shape))
    return x


def ssim(estimate: Tensor, truth: Tensor, data_range: DataRange = None, spatial_dims: int = 2,
         window_size: int = 7, gaussian: bool = False, sigma: float = 1.5, K1: float = 0.01,
         K2: float = 0.03) -> Tensor:
    """Mean structural similarity (SSIM) of each sample, with skimage's conventions.

    Parameters
    ----------
    estimate, truth : Tensor
        Images of the same shape ``(B, *channels, *spatial)``; the last ``spatial_dims`` axes are
        spatial, the axes between the batch axis and those are channels (any number, including
        none). Any dtype (computed in float64); complex inputs are replaced by their magnitude
        first (see the module notes).
    data_range : float or Tensor, optional
        The dynamic range of the images: a positive number, or a tensor of shape ``()`` or
        ``(B,)``. When ``None`` (default), each sample uses the range of its truth,
        ``truth.max() - truth.min()`` over all its channels (skimage instead requires
        ``data_range`` for floating-point images); a sample whose truth is constant then gives
        ``nan``.
    spatial_dims : int
        How many trailing axes are spatial: 1, 2 (default) or 3.
    window_size : int
        Side of the uniform sliding window (odd, at least 3; default 7, as skimage). Ignored
        when ``gaussian`` is true.
    gaussian : bool
        If true, weight each window with a normalised Gaussian of standard deviation ``sigma``,
        truncated at ``3.5 sigma`` (an 11-tap window for ``sigma=1.5``) and use the population
        covariance: Wang et al. (2004), i.e. skimage's ``gaussian_weights=True,
        use_sample_covariance=False``.
    sigma : float
        Standard deviation of the Gaussian window (only with ``gaussian=True``).
    K1, K2 : float
        The SSIM constants: ``C1 = (K1 * data_range)^2``, ``C2 = (K2 * data_range)^2``.

    Returns
    -------
    Tensor
        Float64 tensor of shape ``(B,)``: the SSIM map averaged over the interior positions whose
        window lies entirely inside the image (skimage crops ``(window - 1) // 2`` pixels off each
        border), then over the channels (like skimage's ``channel_axis``). With a given
        ``data_range`` and the uniform window, this equals, per sample and channel,
        ``skimage.metrics.structural_similarity(truth, estimate, data_range=data_range)``.

    Notes
    -----
    The uniform window uses the sample covariance (factor ``NP / (NP - 1)`` with ``NP =
    window_size ** spatial_dims``), as skimage does by default. The local statistics are computed
    with ``torch.nn.functional.conv{1,2,3}d`` on float64, one axis at a time.

    Raises
    ------
    ValueError
        If the shapes differ, a spatial size is smaller than the window, ``data_range`` is not
        positive, ``spatial_dims``/``window_size``/``sigma``/``K1``/``K2`` are invalid, or
        anything is on a different device.
    """
    if spatial_dims not in (1, 2, 3) or isinstance(spatial_dims, bool):
        raise ValueError(f"ssim: spatial_dims must be 1, 2 or 3, got {spatial_dims!r}")
    if K1 < 0 or K2 < 0:
        raise ValueError(f"ssim: K1 and K2 must be non-negative, got K1={K1}, K2={K2}")
    x, y = _prepare("ssim", estimate, truth, min_ndim=spatial_dims + 1)
    if gaussian:
        if not sigma > 0:
            raise ValueError(f"ssim: sigma must be positive, got {sigma}")
        radius = int(3.5 * sigma + 0.5)          # truncate=3.5, radius as in scipy.ndimage
        win = 2 * radius + 1
        kernel = _gaussian_kernel1d(sigma, radius, y)
        cov_norm = 1.0
    else:
        if (isinstance(window_size, bool) or int(window_size) != window_size or window_size < 3
                or window_size % 2 == 0):
            raise ValueError(f"ssim: window_size must be an odd integer >= 3, got {window_size!r}")
        win = int(window_size)
        kernel = torch.full((win,), 1.0 / win, dtype=torch.float64, device=y.device)
        n_points = win ** spatial_dims
        cov_norm = n_points / (n_points - 1)
    spatial = tuple(y.shape[-spatial_dims:])
    if min(spatial) < win:
        raise ValueError(f"ssim: the {win}-pixel window exceeds the spatial size {spatial} of the "
                         f"images (shape {tuple(y.shape)}, spatial_dims={spatial_dims}); "
                         "use a smaller window_size or check spatial_dims")

    batch = y.shape[0]
    dr = _data_range("ssim", data_range, y)
    if batch == 0:
        return y.new_zeros(0)
    channels = math.prod(y.shape[1:-spatial_dims])
    x = x.reshape(batch * channels, 1, *spatial)
    y = y.reshape(batch * channels, 1, *spatial)
    n = x.shape[0]

    stats = _filter_valid(torch.cat([x, y, x * x, y * y, x * y]), kernel, spatial_dims)
    ux, uy, uxx, uyy, uxy = stats.split(n)
    vx = cov_norm * (uxx - ux * ux)
    vy = cov_norm * (uyy - uy * uy)
    vxy = cov_norm * (uxy - ux * uy)

    r = dr.repeat_interleave(channels).reshape(n, *([1] * (spatial_dims + 1)))
    c1 = (K1 * r) ** 2
    c2 = (K2 * r) ** 2
    a1 = 2 * ux * uy + c1
    a2 = 2 * vxy + c2
    b1 = ux * ux + uy * uy + c1
    b2 = vx + vy + c2
    s = (a1 * a2) / (b1 * b2)
    return s.reshape(batch, channels, -1).mean(dim=2).mean(dim=1)


# ----------------------------------------------------------------------------------------------
# utilities
# ----------------------------------------------------------------------------------------------
def magnitude(x: Tensor, channel_axis: int = 1) -> Tensor:
    """Magnitude of a complex image stored as two real channels ``(real, imag)``.

    ``invrim`` stores complex images as two real channels; the metrics do not recognise that
    layout by themselves, so call this first to compare magnitude images::

        psnr(magnitude(estimate), magnitude(truth))

    Parameters
    ----------
    x : Tensor
        Real tensor whose axis ``channel_axis`` has size 2 (real part first, then imaginary).
    channel_axis : int
        The channel axis (default 1, for ``(B, 2, *spatial)``); negative values count from the end.

    Returns
    -------
    Tensor
        ``sqrt(real^2 + imag^2)`` with a size-1 axis in place of the channel axis. Floating-point
        inputs keep their dtype; other real dtypes give float64.

    Raises
    ------
    ValueError
        If the channel axis does not have size 2 or is out of range.
    TypeError
        If ``x`` is complex (take ``x.abs()`` instead).
    """
    if x.is_complex():
        raise TypeError("magnitude: x is already complex; use x.abs() for its magnitude")
    if not -x.ndim <= channel_axis < x.ndim:
        raise ValueError(f"magnitude: channel_axis {channel_axis} is out of range for shape "
                         f"{tuple(x.shape)}")
    if x.shape[channel_axis] != 2:
        raise ValueError(f"magnitude: axis {channel_axis} must have size 2 (real, imag), got shape "
                         f"{tuple(x.shape)}")
    if not x.is_floating_point():
        x = x.to(torch.float64)
    return torch.linalg.vector_norm(x, ord=2, dim=channel_axis, keepdim=True)


def summarize(values: Tensor) -> dict[str, float]:
    """Summary statistics of per-sample metric values, ignoring NaN.

    Parameters
    ----------
    values : Tensor
        Metric values, any shape (flattened); NaN entries (undefined metrics, e.g. the NMSE of an
        all-zero truth and estimate) are dropped.

    Returns
    -------
    dict
        ``{"mean", "std", "median", "min", "max", "n"}``: Python floats, except ``n`` (the number
        of non-NaN values) which is an int. ``std`` is the population standard deviation
        (``ddof=0``); ``median`` averages the two middle values for an even count (like numpy).

    Notes
    -----
    Infinite values are kept and counted in ``n``: e.g. a batch with one perfect reconstruction
    has a PSNR mean and max of ``inf`` (``nan`` if both ``+inf`` and ``-inf`` occur), and a ``std``
    of ``nan`` (the spread around an infinite mean is undefined); ``min`` and ``median`` stay
    finite when they are. With no non-NaN values, ``n`` is 0 and every statistic is ``nan``.
    """
    arr = torch.as_tensor(values).detach()
    if arr.is_complex():
        raise TypeError("summarize: values must be real")
    arr = arr.to(device="cpu", dtype=torch.float64).reshape(-1).numpy()
    arr = arr[~np.isnan(arr)]
    if arr.size == 0:
        nan = math.nan
        return {"mean": nan, "std": nan, "median": nan, "min": nan, "max": nan, "n": 0}
    with np.errstate(invalid="ignore", over="ignore"):
        mean = float(np.mean(arr))
        std = math.nan if np.isinf(arr).any() else float(np.std(arr))
        return {"mean": mean, "std": std, "median": float(np.median(arr)),
                "min": float(arr.min()), "max": float(arr.max()), "n": int(arr.size)}
