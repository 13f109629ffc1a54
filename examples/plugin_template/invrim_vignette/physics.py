"""The forward model: a radial gain ``v(r) = 1 / (1 + strength · r²)²`` (cos⁴-like vignetting)."""
from __future__ import annotations

from typing import Any, Optional

import torch
from torch import Tensor

from invrim.physics import LinearForwardModel


class Vignette(LinearForwardModel):
    """``y = v ⊙ x`` with ``v`` falling from 1 at the centre; ``r`` is 1 at the image corners.

    Parameters
    ----------
    strength
        How strongly the corners darken (``>= 0``); a per-sample ``strength`` of shape ``(B,)``
        passed to a call overrides it.
    """

    name = "vignette"
    x_dims = ("channel", "height", "width")
    y_dims = ("channel", "height", "width")

    def __init__(self, strength: float = 0.5):
        super().__init__()
        if not strength >= 0:
            raise ValueError(f"vignette strength must be >= 0, got {strength}")
        self.strength = float(strength)

    def config(self) -> dict[str, Any]:
        return {"strength": self.strength}

    @classmethod
    def example(cls):
        g = torch.Generator().manual_seed(0)
        return cls(0.5), torch.randn(2, 1, 10, 13, generator=g), {"strength": torch.tensor([0.2, 1.0])}

    def gain(self, x: Tensor, strength: Optional[Tensor] = None) -> Tensor:
        if x.dim() != 4:
            raise ValueError(f"Vignette expects x of shape (B, C, H, W), got {tuple(x.shape)}")
        H, W = x.shape[-2:]
        yy = torch.linspace(-1, 1, H, dtype=x.real.dtype, device=x.device)[:, None]
        xx = torch.linspace(-1, 1, W, dtype=x.real.dtype, device=x.device)[None, :]
        r2 = (yy ** 2 + xx ** 2) / 2
        s = self.strength if strength is None else strength.to(x.real.dtype).view(-1, 1, 1, 1)
        return 1.0 / (1.0 + s * r2) ** 2

    def forward(self, x: Tensor, strength: Optional[Tensor] = None, **params: Any) -> Tensor:
        return self.gain(x, strength) * x

    def adjoint(self, y: Tensor, strength: Optional[Tensor] = None, **params: Any) -> Tensor:
        return self.gain(y, strength) * y          # a real diagonal operator is self-adjoint

    def pseudo_inverse(self, y: Tensor, strength: Optional[Tensor] = None, **params: Any) -> Tensor:
        return y / self.gain(y, strength)


class SubsampledFourier(LinearForwardModel):
    """``y = M ⊙ F(x)``: a real image observed through its subsampled 2-D Fourier transform.

    An example of a forward model from a **real** ``x`` to a **complex** ``y`` (as in MRI or radio
    interferometry). ``x`` is real ``(B, C, H, W)``; ``y`` is complex ``(B, C, H, W)``, ``F`` the
    orthonormal 2-D FFT (``torch.fft.fft2(x, norm="ortho")``: zero frequency at index ``[0, 0]``,
    not centred) and ``M`` the real per-sample ``mask`` keyword ``(B, H, W)`` (or ``(1, H, W)`` for
    the whole batch; binary, or a real weighting), shared by the channels. Without a mask the
    k-space is fully sampled.

    The adjoint, between the real space of ``x`` and the complex space of ``y`` (inner product
    ``Re⟨a, b⟩``), is ``Aᴴ y = Re(F⁻¹(M ⊙ y))``: real, exact. The classical baseline is the
    zero-filled reconstruction ``Re(F⁻¹(1[M ≠ 0] ⊙ y))`` (the adjoint for a binary mask).

    Parameters
    ----------
    fraction
        For simulation (:meth:`sample_parameters`): the probability with which each frequency
        outside the centre is sampled.
    center
        For simulation: frequencies with ``|k| ≤ center`` (cycles per pixel, 0 to 0.71) are always
        sampled.
    """

    name = "vignette_fourier"
    x_dims = ("channel", "height", "width")
    y_dims = ("channel", "ky", "kx")                  # never "height"/"width": a k-space is not an image
    y_is_complex = True
    param_dims = {"mask": ("ky", "kx")}
    baseline_name = "zero-filled"                     # what `invrim evaluate` and `invrim show` call it

    def __init__(self, fraction: float = 0.3, center: float = 0.08):
        super().__init__()
        if not 0 <= fraction <= 1:
            raise ValueError(f"fraction must lie in [0, 1], got {fraction}")
        if not 0 <= center:
            raise ValueError(f"center must be >= 0, got {center}")
        self.fraction, self.center = float(fraction), float(center)

    def config(self) -> dict[str, Any]:
        return {"fraction": self.fraction, "center": self.center}

    @classmethod
    def example(cls):
        g = torch.Generator().manual_seed(0)
        model = cls(fraction=0.4)
        x = torch.randn(2, 1, 10, 13, generator=g)              # odd and even sizes
        return model, x, model.sample_parameters(x, g)

    def sample_parameters(self, x: Tensor, generator: Optional[torch.Generator] = None) -> dict[str, Tensor]:
        """A random binary ``mask`` ``(B, H, W)`` per sample: the centre of k-space and a
        ``fraction`` of the other frequencies (drawn with ``generator`` only)."""
        B, _, H, W = self._check_x(x)
        ky = torch.fft.fftfreq(H, dtype=torch.float64)[:, None]
        kx = torch.fft.fftfreq(W, dtype=torch.float64)[None, :]
        centre = (ky ** 2 + kx ** 2).sqrt() <= self.center
        keep = torch.rand(B, H, W, generator=generator, dtype=torch.float64) < self.fraction
        return {"mask": (keep | centre).to(dtype=x.real.dtype, device=x.device)}

    # -- the operator ------------------------------------------------------------------------------
    def _check_x(self, x: Tensor) -> tuple[int, ...]:
        if x.is_complex() or x.dim() != 4:
            raise ValueError(f"{self.name}: x must be real of shape (B, C, H, W), got "
                             f"{'complex ' if x.is_complex() else ''}{tuple(x.shape)}")
        return tuple(x.shape)

    def _mask(self, mask: Optional[Tensor], like: Tensor) -> Optional[Tensor]:
        """The mask as a real ``(B | 1, 1, H, W)`` tensor in ``like``'s real dtype (None: all ones)."""
        if mask is None:
            return None
        mask = torch.as_tensor(mask)
        B, _, H, W = like.shape
        if mask.is_complex() or mask.dim() != 3 or tuple(mask.shape[1:]) != (H, W) or mask.shape[0] not in (1, B):
            raise ValueError(f"{self.name}: mask must be real of shape (B={B}, H={H}, W={W}), got "
                             f"{mask.dtype} {tuple(mask.shape)}")
        return mask.to(dtype=like.real.dtype, device=like.device)[:, None]

    def _check_y(self, y: Tensor) -> Tensor:
        if y.dim() != 4:
            raise ValueError(f"{self.name}: y must be complex of shape (B, C, H, W), got {tuple(y.shape)}")
        return y if y.is_complex() else torch.complex(y, torch.zeros_like(y))

    def forward(self, x: Tensor, mask: Optional[Tensor] = None, **params: Any) -> Tensor:
        self._check_x(x)
        k = torch.fft.fft2(x, norm="ortho")                     # real -> complex, follows x's dtype
        m = self._mask(mask, x)
        return k if m is None else m * k

    def adjoint(self, y: Tensor, mask: Optional[Tensor] = None, **params: Any) -> Tensor:
        # The adjoint of a map from a real space: the real part of the complex adjoint. y has x's
        # shape here, so nothing needs to be told how big x is (see docs/plugins.md otherwise).
        y = self._check_y(y)
        m = self._mask(mask, y)
        return torch.fft.ifft2(y if m is None else m * y, norm="ortho").real

    def zero_filled(self, y: Tensor, mask: Optional[Tensor] = None) -> Tensor:
        """``Re(F⁻¹(1[M ≠ 0] ⊙ y))``: the measured frequencies kept, the others set to zero."""
        y = self._check_y(y)
        m = self._mask(mask, y)
        return torch.fft.ifft2(y if m is None else (m != 0).to(y.real.dtype) * y, norm="ortho").real

    def pseudo_inverse(self, y: Tensor, mask: Optional[Tensor] = None, **params: Any) -> Tensor:
        """The RIM's starting point (``initialization_method="approximate_inverse"``): zero-filled."""
        return self.zero_filled(y, mask)

    def baseline(self, y: Tensor, mask: Optional[Tensor] = None, **params: Any) -> Tensor:
        """The domain's classical reconstruction (named by ``baseline_name``), which ``invrim
        evaluate`` compares the RIM with. Here the same as the pseudo-inverse; a CT plugin would
        return filtered back-projection, however it initialises the RIM."""
        return self.zero_filled(y, mask)

    # -- figures -----------------------------------------------------------------------------------
    def plot_observation(self, ax, y: Tensor, mask: Optional[Tensor] = None, **params: Any) -> None:
        """The observation panel of ``invrim show``: ``log₁₀ |y|`` with the zero frequency centred
        (root sum of squares over channels), the unmeasured frequencies at the bottom of the colour
        scale. ``y`` is one observation ``(C, H, W)`` and ``mask`` its ``(H, W)``: no sample axis."""
        import numpy as np
        k = torch.as_tensor(y).detach().cpu()
        mag = k.abs().to(torch.float64).pow(2).sum(0).sqrt()              # (H, W)
        mag = torch.fft.fftshift(mag, dim=(-2, -1)).numpy()
        measured = mag[mag > 0]
        floor = float(np.percentile(measured, 1)) if measured.size else 1.0
        img = np.log10(np.maximum(mag, floor))
        ax.imshow(img, cmap="magma", interpolation="nearest")
        rate = ""
        if mask is not None:
            m = torch.as_tensor(mask).detach().cpu()
            rate = f"\n{int((m != 0).sum())}/{m.numel()} frequencies sampled"
        ax.set_title(f"|y| (k-space, log₁₀){rate}", fontsize=10)
        ax.set_xlabel("kx", fontsize=8)
        ax.set_ylabel("ky", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
