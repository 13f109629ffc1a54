"""Centred orthonormal 2-D FFTs and the real two-channel representation of complex images.

Conventions used throughout invrim-mri:

* k-space is *centred*: the DC component sits at index ``(H // 2, W // 2)``, as produced by
  ``fftshift(fft2(ifftshift(x), norm="ortho"))`` (numpy and torch agree on this for odd and even
  sizes);
* the transform is orthonormal (unitary), so its adjoint is its inverse;
* an image is complex ``(B, H, W)`` inside the physics, and real ``(B, 2, H, W)`` (real part,
  imaginary part) wherever a RIM sees it (RIM backbones work on real tensors).
"""
from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["fft2c", "ifft2c", "to_complex", "to_channels", "magnitude", "complex_dtype_of"]

_AXES = (-2, -1)


def fft2c(z: Tensor) -> Tensor:
    """Centred orthonormal 2-D FFT over the last two axes."""
    return torch.fft.fftshift(torch.fft.fft2(torch.fft.ifftshift(z, dim=_AXES), norm="ortho"), dim=_AXES)


def ifft2c(k: Tensor) -> Tensor:
    """Inverse (= adjoint) of :func:`fft2c`."""
    return torch.fft.fftshift(torch.fft.ifft2(torch.fft.ifftshift(k, dim=_AXES), norm="ortho"), dim=_AXES)


def complex_dtype_of(dtype: torch.dtype) -> torch.dtype:
    """``float32 -> complex64``, ``float64 -> complex128`` (complex dtypes pass through)."""
    if dtype.is_complex:
        return dtype
    return {torch.float64: torch.complex128}.get(dtype, torch.complex64)


def to_complex(x: Tensor) -> Tensor:
    """Real ``(B, 2, H, W)`` (real, imaginary channels) -> complex ``(B, H, W)``."""
    if x.is_complex():
        raise ValueError(f"x must be real with 2 channels (real, imaginary), got complex {tuple(x.shape)}")
    if x.dim() != 4 or x.shape[1] != 2:
        raise ValueError(f"x must have shape (B, 2, H, W) (real, imaginary channels), got {tuple(x.shape)}")
    return torch.complex(x[:, 0], x[:, 1])


def to_channels(z: Tensor) -> Tensor:
    """Complex ``(B, H, W)`` -> real ``(B, 2, H, W)``; the adjoint of :func:`to_complex` for the
    real inner product ``Re⟨·,·⟩``."""
    if not z.is_complex():
        z = torch.complex(z, torch.zeros_like(z))
    return torch.stack([z.real, z.imag], dim=1)


def magnitude(x: Tensor) -> Tensor:
    """Magnitude image ``(B, H, W)`` of a two-channel image ``(B, 2, H, W)`` (or of a complex one)."""
    if x.is_complex():
        return x.abs()
    if x.dim() != 4 or x.shape[1] != 2:
        raise ValueError(f"x must have shape (B, 2, H, W), got {tuple(x.shape)}")
    return torch.sqrt(x[:, 0] ** 2 + x[:, 1] ** 2)
