"""Cartesian MRI forward models: single-coil and multi-coil (SENSE) undersampled k-space.

Shapes (``B`` samples, image ``H × W``, ``C`` coils):

===============  ==========================================  ===============================
                 single-coil (``mri_singlecoil``)            multi-coil (``mri_multicoil``)
===============  ==========================================  ===============================
``x``            real ``(B, 2, H, W)`` (real, imaginary)     real ``(B, 2, H, W)``
``y``            complex ``(B, H, W)``                       complex ``(B, C, H, W)``
``mask``         ``(B, H, W)`` or columns ``(B, W)``         same, shared by all coils
``sens``         —                                           complex ``(B, C, H, W)``
===============  ==========================================  ===============================

The leading axis of ``mask`` / ``sens`` may also be 1 (one mask or one set of coil maps for the
whole batch). The Fourier transform is the centred orthonormal 2-D FFT
``fftshift(fft2(ifftshift(z), norm="ortho"))`` (see :mod:`invrim_mri.fft`); the mask is real
(binary for ordinary Cartesian sampling; a real weighting also keeps the model linear and the
adjoint exact).

Adjoints are exact for the real inner product ``Re⟨A x, y⟩ = ⟨x, Aᵀ y⟩`` because ``x`` is the
real two-channel representation of a complex image.
"""
from __future__ import annotations

from typing import Any, Optional

import torch
from torch import Tensor

from invrim.physics import LinearForwardModel

from .fft import complex_dtype_of, fft2c, ifft2c, to_channels, to_complex

__all__ = ["SingleCoilMRI", "MultiCoilMRI"]


class _Sampling:
    """Simulation settings shared by both models: how :meth:`sample_parameters` draws masks."""

    def _init_sampling(self, acceleration: float, center_fraction: float, mask_type: str) -> None:
        from .masks import MASK_TYPES
        acceleration, center_fraction = float(acceleration), float(center_fraction)
        if not acceleration >= 1:
            raise ValueError(f"acceleration must be >= 1, got {acceleration}")
        if not 0 <= center_fraction <= 1:
            raise ValueError(f"center_fraction must lie in [0, 1], got {center_fraction}")
        if mask_type not in MASK_TYPES:
            raise ValueError(f"mask_type must be one of {MASK_TYPES}, got {mask_type!r}")
        self.acceleration, self.center_fraction, self.mask_type = acceleration, center_fraction, mask_type

    def plot_observation(self, ax, y: Tensor, mask: Optional[Tensor] = None, **params: Any) -> None:
        """The observation panel of ``invrim show``: log₁₀ of the k-space magnitude (root sum of
        squares over the coils), centred, with the fraction of sampled columns in the title."""
        import numpy as np
        k = _as_complex(y.detach().cpu())
        mag = (k.abs() if k.dim() == 2 else k.abs().pow(2).sum(0).sqrt()).to(torch.float64).numpy()
        measured = mag[mag > 0]
        floor = np.percentile(measured, 1) if measured.size else 1.0
        img = np.log10(np.maximum(mag, floor))
        ax.imshow(img, cmap="magma", vmin=float(img.min()), vmax=float(img.max()), interpolation="nearest")
        coils = "" if k.dim() == 2 else f", RSS of {k.shape[0]} coils"
        rate = ""
        if mask is not None:
            m = mask.detach().cpu()
            cols = (m != 0) if m.dim() == 1 else (m != 0).any(0)
            rate = f"\n{int(cols.sum())}/{cols.numel()} columns sampled"
        ax.set_title(f"k-space |y| (log₁₀{coils}){rate}", fontsize=10)
        ax.set_xlabel("kx", fontsize=8)
        ax.set_ylabel("ky", fontsize=8)
        ax.tick_params(labelsize=7)

    def _sampling_config(self) -> dict[str, Any]:
        return {"acceleration": self.acceleration, "center_fraction": self.center_fraction,
                "mask_type": self.mask_type}

    def _sample_mask(self, x: Tensor, generator: Optional[torch.Generator]) -> Tensor:
        from .masks import make_mask
        B, _, W = _check_x(x, self.name)
        mask = make_mask(self.mask_type, B, W, self.acceleration, self.center_fraction, generator=generator)
        return mask.to(device=x.device)


def _check_x(x: Tensor, label: str) -> tuple[int, int, int]:
    if x.is_complex() or x.dim() != 4 or x.shape[1] != 2:
        raise ValueError(f"{label}: x must be real of shape (B, 2, H, W) (real, imaginary channels), "
                         f"got {'complex ' if x.is_complex() else ''}{tuple(x.shape)}")
    return x.shape[0], x.shape[2], x.shape[3]


def _as_complex(y: Tensor) -> Tensor:
    if y.is_complex():
        return y
    return torch.complex(y, torch.zeros_like(y))


def _mask(mask: Optional[Tensor], B: int, H: int, W: int, like: Tensor, label: str) -> Tensor:
    """The mask as a real tensor broadcastable to ``(B, H, W)`` in ``like``'s real dtype."""
    if mask is None:
        raise ValueError(f"{label}: mask is required: pass mask=... of shape (B, H, W) or (B, W) "
                         "(torch.ones for fully sampled k-space)")
    mask = torch.as_tensor(mask)
    if mask.is_complex():
        raise ValueError(f"{label}: mask must be real (binary or a real weighting), got {mask.dtype}")
    if mask.dim() == 2:                         # column mask (B, W)
        if mask.shape[-1] != W:
            raise ValueError(f"{label}: column mask must have shape (B, W={W}), got {tuple(mask.shape)}")
        mask = mask[:, None, :]
    elif mask.dim() == 3:
        if mask.shape[-1] != W or mask.shape[-2] not in (1, H):
            raise ValueError(f"{label}: mask must have shape (B, H={H}, W={W}), got {tuple(mask.shape)}")
    else:
        raise ValueError(f"{label}: mask must have shape (B, H, W) or (B, W), got {tuple(mask.shape)}")
    if mask.shape[0] not in (1, B):
        raise ValueError(f"{label}: mask has batch size {mask.shape[0]}, but the data has {B}")
    return mask.to(dtype=like.real.dtype, device=like.device)


def _sens(sens: Optional[Tensor], B: int, H: int, W: int, like: Tensor, label: str) -> Tensor:
    """Coil maps as a complex ``(B | 1, C, H, W)`` tensor in ``like``'s complex dtype."""
    if sens is None:
        raise ValueError(f"{label}: sens (coil sensitivities) is required: pass sens=... complex of "
                         "shape (B, coils, H, W), e.g. from invrim_mri.coils.gaussian_coil_maps")
    sens = torch.as_tensor(sens)
    if sens.dim() != 4 or sens.shape[-2:] != (H, W):
        raise ValueError(f"{label}: sens must have shape (B, coils, H={H}, W={W}), got {tuple(sens.shape)}")
    if sens.shape[0] not in (1, B):
        raise ValueError(f"{label}: sens has batch size {sens.shape[0]}, but the data has {B}")
    return sens.to(dtype=complex_dtype_of(like.dtype), device=like.device)


class SingleCoilMRI(_Sampling, LinearForwardModel):
    """Single-coil Cartesian MRI: ``y = M ⊙ F(x)``.

    ``x`` is real ``(B, 2, H, W)`` (real and imaginary channels of the complex image), ``y`` is
    complex ``(B, H, W)``, ``F`` the centred orthonormal 2-D FFT and ``M`` the per-sample k-space
    ``mask`` keyword, ``(B, H, W)`` or a column mask ``(B, W)`` (see :mod:`invrim_mri.masks`).

    The adjoint is ``x = [Re, Im](F⁻¹(M ⊙ y))``; the pseudo-inverse is the classical zero-filled
    reconstruction ``F⁻¹(1[M ≠ 0] ⊙ y)`` (equal to the adjoint for a binary mask).
    """

    name = "mri_singlecoil"
    baseline_name = "zero-filled"
    x_dims = ("channel", "height", "width")
    y_dims = ("ky", "kx")
    y_is_complex = True
    x_complex_channels = True
    param_dims = {"mask": [("kx",), ("ky", "kx")]}

    def __init__(self, acceleration: float = 4.0, center_fraction: float = 0.08, mask_type: str = "random") -> None:
        super().__init__()
        self._init_sampling(acceleration, center_fraction, mask_type)

    def config(self) -> dict[str, Any]:
        return self._sampling_config()

    def sample_parameters(self, x: Tensor, generator: Optional[torch.Generator] = None) -> dict[str, Tensor]:
        """A column ``mask`` ``(B, W)`` per sample (``mask_type``, ``acceleration``, ``center_fraction``)."""
        return {"mask": self._sample_mask(x, generator)}

    @classmethod
    def example(cls):
        from .masks import random_mask
        g = torch.Generator().manual_seed(0)
        x = torch.randn(2, 2, 12, 9, generator=g)
        mask = random_mask(2, 9, acceleration=2, center_fraction=0.25, generator=g)
        return cls(), x, {"mask": mask}

    def forward(self, x: Tensor, mask: Optional[Tensor] = None, **params: Any) -> Tensor:
        B, H, W = _check_x(x, self.name)
        return _mask(mask, B, H, W, x, self.name) * fft2c(to_complex(x))

    def _check_y(self, y: Tensor) -> Tensor:
        if y.dim() != 3:
            raise ValueError(f"{self.name}: y must be complex of shape (B, H, W), got {tuple(y.shape)}")
        return _as_complex(y)

    def adjoint(self, y: Tensor, mask: Optional[Tensor] = None, **params: Any) -> Tensor:
        y = self._check_y(y)
        B, H, W = y.shape
        return to_channels(ifft2c(_mask(mask, B, H, W, y, self.name) * y))

    def pseudo_inverse(self, y: Tensor, mask: Optional[Tensor] = None, **params: Any) -> Tensor:
        """Zero-filled reconstruction: inverse FFT of the measured k-space, zeros elsewhere."""
        y = self._check_y(y)
        B, H, W = y.shape
        sampled = (_mask(mask, B, H, W, y, self.name) != 0).to(y.real.dtype)
        return to_channels(ifft2c(sampled * y))


class MultiCoilMRI(_Sampling, LinearForwardModel):
    """Multi-coil Cartesian MRI: ``y_c = M ⊙ F(S_c x)`` for every coil ``c``.

    ``x`` is real ``(B, 2, H, W)``, ``y`` complex ``(B, coils, H, W)``; keywords ``mask``
    (``(B, H, W)`` or columns ``(B, W)``, shared by all coils) and ``sens``, the complex coil
    sensitivities ``(B, coils, H, W)`` (see :mod:`invrim_mri.coils`; normalise them so that
    ``Σ_c |S_c|² = 1``).

    The adjoint is ``x = [Re, Im](Σ_c conj(S_c) F⁻¹(M ⊙ y_c))``. The pseudo-inverse is the
    classical SENSE combination of the zero-filled coil images,
    ``Σ_c conj(S_c) F⁻¹(1[M ≠ 0] ⊙ y_c) / Σ_c |S_c|²`` (zero where no coil sees the pixel): it is
    the adjoint when the maps are normalised and the mask binary, and it inverts fully sampled,
    noiseless data exactly.
    """

    name = "mri_multicoil"
    baseline_name = "zero-filled SENSE"
    x_dims = ("channel", "height", "width")
    y_dims = ("coil", "ky", "kx")
    y_is_complex = True
    x_complex_channels = True
    param_dims = {"mask": [("kx",), ("ky", "kx")], "sens": ("coil", "height", "width")}

    def __init__(self, acceleration: float = 4.0, center_fraction: float = 0.08, mask_type: str = "random",
                 coils: int = 8) -> None:
        super().__init__()
        self._init_sampling(acceleration, center_fraction, mask_type)
        if isinstance(coils, bool) or not isinstance(coils, int) or coils < 1:
            raise ValueError(f"coils must be a positive integer, got {coils!r}")
        self.coils = coils

    def config(self) -> dict[str, Any]:
        return {**self._sampling_config(), "coils": self.coils}

    def sample_parameters(self, x: Tensor, generator: Optional[torch.Generator] = None) -> dict[str, Tensor]:
        """A column ``mask`` ``(B, W)`` and random smooth coil maps ``sens`` ``(B, coils, H, W)``
        (normalised, see :func:`invrim_mri.coils.gaussian_coil_maps`) per sample."""
        from .coils import gaussian_coil_maps
        B, H, W = _check_x(x, self.name)
        mask = self._sample_mask(x, generator)
        sens = gaussian_coil_maps(self.coils, H, W, batch=B, generator=generator,
                                  dtype=complex_dtype_of(x.dtype))
        return {"mask": mask, "sens": sens.to(x.device)}

    @classmethod
    def example(cls):
        from .coils import gaussian_coil_maps
        from .masks import equispaced_mask
        g = torch.Generator().manual_seed(0)
        x = torch.randn(2, 2, 10, 13, generator=g)
        mask = equispaced_mask(2, 13, acceleration=2, center_fraction=0.2, generator=g)
        sens = gaussian_coil_maps(3, 10, 13, batch=2, generator=g)
        return cls(), x, {"mask": mask, "sens": sens}

    def _check_y(self, y: Tensor) -> Tensor:
        if y.dim() != 4:
            raise ValueError(f"{self.name}: y must be complex of shape (B, coils, H, W), got {tuple(y.shape)}")
        return _as_complex(y)

    def forward(self, x: Tensor, mask: Optional[Tensor] = None, sens: Optional[Tensor] = None,
                **params: Any) -> Tensor:
        B, H, W = _check_x(x, self.name)
        m = _mask(mask, B, H, W, x, self.name)
        s = _sens(sens, B, H, W, x, self.name)
        return m[:, None] * fft2c(s * to_complex(x)[:, None])

    def adjoint(self, y: Tensor, mask: Optional[Tensor] = None, sens: Optional[Tensor] = None,
                **params: Any) -> Tensor:
        y = self._check_y(y)
        B, C, H, W = y.shape
        m = _mask(mask, B, H, W, y, self.name)
        s = self._coils(_sens(sens, B, H, W, y, self.name), C)
        return to_channels((s.conj() * ifft2c(m[:, None] * y)).sum(dim=1))

    def pseudo_inverse(self, y: Tensor, mask: Optional[Tensor] = None, sens: Optional[Tensor] = None,
                       **params: Any) -> Tensor:
        """SENSE-combined zero-filled reconstruction (see the class docstring)."""
        y = self._check_y(y)
        B, C, H, W = y.shape
        sampled = (_mask(mask, B, H, W, y, self.name) != 0).to(y.real.dtype)
        s = self._coils(_sens(sens, B, H, W, y, self.name), C)
        combined = (s.conj() * ifft2c(sampled[:, None] * y)).sum(dim=1)
        power = (s.real ** 2 + s.imag ** 2).sum(dim=1)
        tiny = torch.finfo(power.dtype).tiny ** 0.5
        seen = power > tiny
        return to_channels(torch.where(seen, combined / torch.where(seen, power, 1.0), 0.0))

    def _coils(self, s: Tensor, C: int) -> Tensor:
        if s.shape[1] != C:
            raise ValueError(f"{self.name}: sens has {s.shape[1]} coils but y has {C}")
        return s
