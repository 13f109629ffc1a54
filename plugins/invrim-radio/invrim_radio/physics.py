"""The radio-interferometer forward model: a sky image to complex visibilities through a NUFFT.

Shapes (``B`` samples, an ``H × W`` sky, ``V`` visibility slots per sample):

===========  =========================  ==========================================================
``x``        real ``(B, 1, H, W)``      sky brightness per pixel (Jy/pixel), dims (channel, height, width)
``y``        complex ``(B, V)``         visibilities (Jy), dims (visibility,)
``uv``       real ``(B, V, 2)``         ``(u, v)`` in wavelengths, dims (visibility, uv_component)
``weight``   real ``(B, V)``            natural weight ``1/σ²`` of each visibility; **0 = padding**
``sigma``    real ``(B, V)``            noise σ of the real and of the imaginary part (for ``gaussian``)
===========  =========================  ==========================================================

Samples may measure different numbers of visibilities: each is stored in ``V`` slots (the largest
count the configuration allows), the unused slots padded with ``uv = 0``, ``weight = 0`` and
``sigma = 1`` (the padding sits at the end, but nothing relies on that). A slot with ``weight = 0``
is not measured: ``A`` returns 0 there and ``Aᴴ`` ignores whatever ``y`` holds there, so it adds
nothing to the score, the dirty image, CLEAN or Tikhonov (with the core ``gaussian`` likelihood
its energy term is a constant independent of ``x``).

The model (pixel ``δ`` radians, pixel ``(h, w)`` at ``l = (w − W//2) δ``, ``m = (h − H//2) δ``)::

    y_k = M_k Σ_{h,w} P(l, m) x(l, m) exp(−2πi (u_k l + v_k m)),   M_k = [weight_k > 0]

with an optional Gaussian primary beam ``P`` (``primary_beam_fwhm``). The adjoint is
``Aᴴ y = P · Re Σ_k M_k y_k exp(+2πi (u_k l + v_k m))``, exact to rounding (finufft's type 1 is the
transpose of its type 2). With the ``gaussian`` likelihood and ``sigma`` the score is
``Re Aᴴ W (y − A x)``, the naturally weighted dirty image of the residual.
"""
from __future__ import annotations

import math
from typing import Any, Optional, Sequence, Union

import torch
from torch import Tensor

from invrim.physics import LinearForwardModel

from .coverage import ARCSEC, SPEED_OF_LIGHT, _check_range, earth_rotation_uv, load_layout
from .nufft import BACKENDS, nufft_type1, nufft_type2

__all__ = ["RadioInterferometry"]

#: With ``pixel_scale=None`` the pixel is chosen so that the longest baseline reaches this many
#: cycles per pixel (Nyquist is 0.5): about 2.5 pixels across the synthesised beam.
AUTO_MAX_FREQUENCY = 0.4
#: What the pseudo-inverse (the RIM's start) may be.
STARTS = ("clean", "least_squares", "dirty")


def _size(image_size) -> tuple[int, int]:
    if isinstance(image_size, int) and not isinstance(image_size, bool):
        image_size = (image_size, image_size)
    try:
        H, W = (int(s) for s in image_size)
    except (TypeError, ValueError):
        raise ValueError(f"image_size must be an int or [height, width], got {image_size!r}") from None
    if H < 2 or W < 2:
        raise ValueError(f"image_size must be at least 2 x 2, got {image_size!r}")
    return H, W


class RadioInterferometry(LinearForwardModel):
    """Visibilities of a sky image, ``y = M ⊙ NUFFT(P ⊙ x)`` at per-sample ``(u, v)`` points.

    Parameters
    ----------
    image_size
        ``H`` or ``[H, W]`` pixels of the sky ``x`` (the adjoint needs it).
    pixel_scale
        Pixel size in arcsec. ``None``: chosen from the layout and frequency so that the longest
        baseline reaches 0.4 cycles per pixel (``config()`` then returns the number).
    layout, frequency, declination, hour_angle, duration, integration, noise
        Simulation (:meth:`sample_parameters`): a bundled layout (``"vla"``, ``"alma_compact"``,
        ``"random"``) or a layout file; the observing frequency in Hz; the source declination in
        degrees (a number, or ``[low, high]`` drawn uniformly per sample; ``None``: the layout's
        latitude ± 30 deg); the hour-angle range ``[start, stop]`` in hours; the length of each sample's track in hours (a number or
        ``[low, high]``, drawn per sample, a window at a random place in ``hour_angle``); the time
        between snapshots in minutes; the noise σ (Jy, on each of the real and imaginary parts) of
        a baseline between two dishes of the layout's median diameter, ``σ_ij = noise · D²/(D_i D_j)``
        (a number or ``[low, high]``, log-uniform per sample).
    min_elevation
        Snapshots with the source lower than this (degrees) are not observed (their slots padded).
    primary_beam_fwhm
        FWHM in arcsec of a Gaussian primary beam multiplying the sky (``None``: no beam).
    backend, eps
        The NUFFT: ``"finufft"`` (default) or ``"dft"`` (direct sum in torch); finufft's tolerance
        (``None``: 1e-10 in float64, 1e-6 in float32).
    clean_gain, clean_iterations, clean_threshold
        The Högbom CLEAN baseline (:meth:`baseline`): loop gain, most components, and the stopping
        threshold in units of the dirty image's thermal noise.
    start, pinv_iterations
        What :meth:`pseudo_inverse` (the RIM's starting point with
        ``initialization_method="approximate_inverse"``) computes: ``"clean"`` (default), the
        CLEAN :meth:`baseline`; ``"least_squares"``, ``pinv_iterations`` conjugate-gradient steps of
        naturally weighted least squares; ``"dirty"``, :meth:`dirty_sky`.
    """

    name = "radio_interferometry"
    baseline_name = "Högbom CLEAN"
    #: the RIM starts from :meth:`pseudo_inverse` (``start``: CLEAN by default), as RESULTS.md measured;
    #: Tikhonov least squares is naturally weighted ``start="least_squares"``
    auto_start = "pseudo_inverse"
    x_dims = ("channel", "height", "width")
    y_dims = ("visibility",)
    y_is_complex = True
    param_dims = {"uv": ("visibility", "uv_component"), "weight": ("visibility",), "sigma": ("visibility",)}

    def __init__(self, image_size: Union[int, Sequence[int]] = 32, pixel_scale: Optional[float] = None,
                 layout: str = "vla", frequency: float = 1.4e9, declination: Any = None,
                 hour_angle: Sequence[float] = (-4.0, 4.0), duration: Any = (1.0, 4.0), integration: float = 15.0,
                 noise: Any = 0.5, min_elevation: float = 15.0, primary_beam_fwhm: Optional[float] = None,
                 backend: str = "finufft", eps: Optional[float] = None, clean_gain: float = 0.1, clean_iterations: int = 1000,
                 clean_threshold: float = 3.0, start: str = "clean", pinv_iterations: int = 10) -> None:
        super().__init__()
        self.height, self.width = _size(image_size)
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        self.backend, self.eps = backend, (None if eps is None else float(eps))
        self.layout = str(layout)
        self._layout = load_layout(self.layout)
        if not float(frequency) > 0:
            raise ValueError(f"frequency must be positive (Hz), got {frequency!r}")
        self.frequency = float(frequency)
        if declination is None:                 # the band through the zenith, latitude ± 30 deg
            lat = self._layout.latitude_deg
            declination = (max(lat - 30.0, -85.0), min(lat + 30.0, 85.0))
        self.declination = _check_range(declination, "declination")
        if not (-90 <= self.declination[0] and self.declination[1] <= 90):
            raise ValueError(f"declination must lie in [-90, 90] degrees, got {declination!r}")
        self.hour_angle = _check_range(hour_angle, "hour_angle")
        self.integration = float(integration)
        if not self.integration > 0:
            raise ValueError(f"integration must be positive (minutes), got {integration!r}")
        self.duration = _check_range(duration, "duration")
        if self.duration[0] < 0 or self.duration[1] > self.hour_angle[1] - self.hour_angle[0] + 1e-9:
            raise ValueError(f"duration {duration!r} must lie in [0, the hour_angle range "
                             f"{self.hour_angle[1] - self.hour_angle[0]:g} h]")
        self.noise = _check_range(noise, "noise", low=0.0)
        self.min_elevation = float(min_elevation)
        for dec in torch.linspace(*self.declination, 7).tolist():
            if float(self._elevation(self._hour_angles(), dec).max()) < self.min_elevation:
                raise ValueError(f"a source at declination {dec:.3g} deg never rises above min_elevation "
                                 f"{self.min_elevation:g} deg at the latitude of layout {self.layout!r} "
                                 f"({self._layout.latitude_deg:g} deg) within hour_angle {list(self.hour_angle)}")
        if pixel_scale is None:
            wavelength = SPEED_OF_LIGHT / self.frequency
            pixel_scale = AUTO_MAX_FREQUENCY * wavelength / self._layout.max_baseline() / ARCSEC
        if not float(pixel_scale) > 0:
            raise ValueError(f"pixel_scale must be positive (arcsec), got {pixel_scale!r}")
        self.pixel_scale = float(pixel_scale)
        if primary_beam_fwhm is not None and not float(primary_beam_fwhm) > 0:
            raise ValueError(f"primary_beam_fwhm must be positive (arcsec) or None, got {primary_beam_fwhm!r}")
        self.primary_beam_fwhm = None if primary_beam_fwhm is None else float(primary_beam_fwhm)
        self.clean_gain, self.clean_iterations = float(clean_gain), int(clean_iterations)
        self.clean_threshold = float(clean_threshold)
        if isinstance(pinv_iterations, bool) or int(pinv_iterations) < 1:
            raise ValueError(f"pinv_iterations must be a positive integer, got {pinv_iterations!r}")
        self.pinv_iterations = int(pinv_iterations)
        if start not in STARTS:
            raise ValueError(f"start must be one of {', '.join(STARTS)}, got {start!r}")
        self.start = start
        if not 0 < self.clean_gain <= 1 or self.clean_iterations < 0 or self.clean_threshold < 0:
            raise ValueError("clean_gain must lie in (0, 1], clean_iterations and clean_threshold be >= 0")

    # ------------------------------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        return {"image_size": [self.height, self.width], "pixel_scale": self.pixel_scale, "layout": self.layout,
                "frequency": self.frequency, "declination": list(self.declination),
                "hour_angle": list(self.hour_angle), "duration": list(self.duration),
                "integration": self.integration, "noise": list(self.noise), "min_elevation": self.min_elevation,
                "primary_beam_fwhm": self.primary_beam_fwhm, "backend": self.backend, "eps": self.eps,
                "clean_gain": self.clean_gain, "clean_iterations": self.clean_iterations,
                "clean_threshold": self.clean_threshold, "start": self.start,
                "pinv_iterations": self.pinv_iterations}

    def _hour_angles(self) -> Tensor:
        """The snapshot grid over ``hour_angle`` (hours)."""
        step = self.integration / 60
        total = 1 + int(math.floor((self.hour_angle[1] - self.hour_angle[0]) / step + 1e-9))
        return self.hour_angle[0] + torch.arange(total, dtype=torch.float64) * step

    def _elevation(self, hour_angles: Tensor, declination: float) -> Tensor:
        """Elevation (degrees) of the source at ``hour_angles`` (hours) from the layout's latitude."""
        lat, dec = math.radians(self._layout.latitude_deg), math.radians(declination)
        h = hour_angles * (math.pi / 12)
        s = math.sin(lat) * math.sin(dec) + math.cos(lat) * math.cos(dec) * torch.cos(h)
        return torch.rad2deg(torch.asin(s.clamp(-1, 1)))

    @property
    def pixel_radians(self) -> float:
        return self.pixel_scale * ARCSEC

    @property
    def slots(self) -> int:
        """Snapshots in the longest track the configuration allows."""
        total = 1 + int(math.floor((self.hour_angle[1] - self.hour_angle[0]) * 60 / self.integration + 1e-9))
        return min(total, 1 + int(math.floor(self.duration[1] * 60 / self.integration + 1e-9)))

    @property
    def max_visibilities(self) -> int:
        """``V``, the visibility slots of every sample (pairs × snapshots of the longest track)."""
        n = self._layout.antennas
        return n * (n - 1) // 2 * self.slots

    @classmethod
    def example(cls):
        g = torch.Generator().manual_seed(0)
        model = cls(image_size=(12, 10), pixel_scale=2.0, layout="random")
        B, V = 2, 40
        f = torch.rand(B, V, 2, generator=g, dtype=torch.float64) - 0.5          # cycles per pixel
        uv = (0.95 * f / model.pixel_radians).to(torch.float32)
        weight = torch.rand(B, V, generator=g) + 0.5
        weight[1, 30:] = 0                                                         # 10 padded slots
        x = torch.rand(B, 1, 12, 10, generator=g)
        return model, x, {"uv": uv, "weight": weight}

    # ------------------------------------------------------------------------------------------
    def _check_x(self, x: Tensor) -> Tensor:
        if x.is_complex() or x.dim() != 4 or x.shape[1] != 1 or tuple(x.shape[2:]) != (self.height, self.width):
            raise ValueError(f"{self.name}: x must be real of shape (B, 1, {self.height}, {self.width}) "
                             f"(image_size), got {'complex ' if x.is_complex() else ''}{tuple(x.shape)}")
        return x

    def _frequencies(self, uv: Optional[Tensor], B: int, like: Tensor) -> tuple[Tensor, Tensor]:
        if uv is None:
            raise ValueError(f"{self.name}: uv is required: pass uv=... of shape (B, V, 2) in wavelengths")
        uv = torch.as_tensor(uv)
        if uv.dim() != 3 or uv.shape[-1] != 2 or uv.shape[0] not in (1, B) or uv.is_complex():
            raise ValueError(f"{self.name}: uv must be real of shape (B={B}, V, 2), got {tuple(uv.shape)}")
        f = uv.to(device=like.device, dtype=torch.float64) * self.pixel_radians
        f = f.expand(B, *f.shape[1:])
        return f[..., 0].to(like.real.dtype), f[..., 1].to(like.real.dtype)

    def _measured(self, weight: Optional[Tensor], B: int, V: int, like: Tensor) -> Tensor:
        """``M``: 1 where a visibility is measured (``weight > 0``), 0 on padding; ``(B, V)``."""
        if weight is None:
            return torch.ones(B, V, dtype=like.real.dtype, device=like.device)
        weight = torch.as_tensor(weight)
        if weight.dim() != 2 or weight.shape[1] != V or weight.shape[0] not in (1, B):
            raise ValueError(f"{self.name}: weight must have shape (B={B}, V={V}), got {tuple(weight.shape)}")
        return (weight > 0).to(device=like.device, dtype=like.real.dtype).expand(B, V)

    def _check_nyquist(self, fu: Tensor, fv: Tensor, m: Tensor) -> None:
        worst = float(((fu.abs().maximum(fv.abs())) * m).max()) if fu.numel() else 0.0
        if worst > 0.5 + 1e-6:
            raise ValueError(f"{self.name}: (u, v) reaches {worst:.3g} cycles per pixel (above Nyquist, 0.5) with "
                             f"pixel_scale {self.pixel_scale:g}\"; use a smaller pixel_scale")

    def primary_beam(self, like: Optional[Tensor] = None) -> Optional[Tensor]:
        """The primary beam ``P`` on the image grid, ``(H, W)`` (peak 1 at the phase centre), or None."""
        if self.primary_beam_fwhm is None:
            return None
        dtype = like.real.dtype if like is not None else torch.float64
        device = like.device if like is not None else None
        h = torch.arange(self.height, dtype=torch.float64) - self.height // 2
        w = torch.arange(self.width, dtype=torch.float64) - self.width // 2
        r2 = (h[:, None] ** 2 + w[None, :] ** 2) * (self.pixel_scale / self.primary_beam_fwhm) ** 2
        return torch.exp(-4 * math.log(2) * r2).to(dtype=dtype, device=device)

    def forward(self, x: Tensor, uv: Optional[Tensor] = None, weight: Optional[Tensor] = None,
                **params: Any) -> Tensor:
        x = self._check_x(x)
        B = x.shape[0]
        fu, fv = self._frequencies(uv, B, x)
        m = self._measured(weight, B, fu.shape[1], x)
        self._check_nyquist(fu, fv, m)
        beam = self.primary_beam(x)
        sky = x[:, 0] if beam is None else x[:, 0] * beam
        complex_dtype = torch.complex128 if x.dtype == torch.float64 else torch.complex64
        vis = nufft_type2(sky.to(complex_dtype), fu, fv, self.backend, self.eps)
        return m * vis

    def adjoint(self, y: Tensor, uv: Optional[Tensor] = None, weight: Optional[Tensor] = None,
                **params: Any) -> Tensor:
        if y.dim() != 2:
            raise ValueError(f"{self.name}: y must be complex of shape (B, V), got {tuple(y.shape)}")
        if not y.is_complex():
            y = torch.complex(y, torch.zeros_like(y))
        B = y.shape[0]
        fu, fv = self._frequencies(uv, B, y)
        if fu.shape[1] != y.shape[1]:
            raise ValueError(f"{self.name}: uv has {fu.shape[1]} visibilities but y has {y.shape[1]}")
        m = self._measured(weight, B, y.shape[1], y)
        image = nufft_type1(m * y, fu, fv, (self.height, self.width), self.backend, self.eps).real
        beam = self.primary_beam(image)
        return (image if beam is None else image * beam)[:, None]

    # ------------------------------------------------------------------------------------------
    def dirty_image(self, y: Tensor, uv: Optional[Tensor] = None, weight: Optional[Tensor] = None,
                    shape: Optional[tuple[int, int]] = None) -> Tensor:
        """The naturally weighted dirty image ``Re Σ_k w_k y_k e^{+2πi(ul+vm)} / Σ_k w_k`` (Jy/beam,
        no primary beam), ``(B, H, W)``; with ``y = 1`` on a ``shape`` grid it is the dirty beam."""
        if not y.is_complex():
            y = torch.complex(y, torch.zeros_like(y))
        B, V = y.shape
        fu, fv = self._frequencies(uv, B, y)
        w = (torch.ones(B, V, dtype=y.real.dtype, device=y.device) if weight is None
             else torch.as_tensor(weight).to(device=y.device, dtype=y.real.dtype).expand(B, V).clamp_min(0))
        total = w.sum(1).clamp_min(torch.finfo(w.dtype).tiny)
        image = nufft_type1(w * y, fu, fv, shape or (self.height, self.width), self.backend, self.eps).real
        return image / total[:, None, None]

    def dirty_sky(self, y: Tensor, uv: Optional[Tensor] = None, weight: Optional[Tensor] = None,
                  **params: Any) -> Tensor:
        """The dirty image in the units of ``x`` (Jy/pixel), ``(B, 1, H, W)``: the naturally weighted
        dirty image divided by the area (pixels) of the restoring beam fitted to the dirty beam, and
        corrected for the primary beam where it exceeds 0.1. The radio astronomer's first look."""
        from .clean import dirty_beam, fit_restoring_beam
        dirty = self.dirty_image(y, uv, weight)
        psf = dirty_beam(self, uv, weight, like=dirty)
        _, area = fit_restoring_beam(psf)
        return self._primary_beam_correct(dirty / area[:, None, None])[:, None]

    def pseudo_inverse(self, y: Tensor, uv: Optional[Tensor] = None, weight: Optional[Tensor] = None,
                       **params: Any) -> Tensor:
        """The RIM's starting point (``initialization_method="approximate_inverse"``), chosen by
        ``start``: the CLEAN :meth:`baseline` (default), :meth:`least_squares_weighted` or
        :meth:`dirty_sky`."""
        if self.start == "clean":
            return self.baseline(y, uv=uv, weight=weight)
        if self.start == "dirty":
            return self.dirty_sky(y, uv=uv, weight=weight)
        return self.least_squares_weighted(y, uv=uv, weight=weight)

    def least_squares_weighted(self, y: Tensor, uv: Optional[Tensor] = None, weight: Optional[Tensor] = None,
                               **params: Any) -> Tensor:
        """Naturally weighted least squares, ``min_x Σ_k w_k |y_k − (A x)_k|²``, by
        ``pinv_iterations`` conjugate-gradient steps from zero (the early stop regularises; no
        damping)."""
        from invrim.physics.linear_algebra import conjugate_gradient
        if y.dim() != 2:
            raise ValueError(f"{self.name}: y must be complex of shape (B, V), got {tuple(y.shape)}")
        if not y.is_complex():
            y = torch.complex(y, torch.zeros_like(y))
        B, V = y.shape
        w = (torch.ones(B, V, dtype=y.real.dtype, device=y.device) if weight is None
             else torch.as_tensor(weight).to(device=y.device, dtype=y.real.dtype).expand(B, V).clamp_min(0))
        rhs = self.adjoint(w * y, uv=uv, weight=weight)
        return conjugate_gradient(lambda v: self.adjoint(w * self.forward(v, uv=uv, weight=weight), uv=uv,
                                                         weight=weight),
                                  rhs, iterations=self.pinv_iterations, tol=0.0)

    def baseline(self, y: Tensor, uv: Optional[Tensor] = None, weight: Optional[Tensor] = None,
                 **params: Any) -> Tensor:
        """Högbom CLEAN (:func:`invrim_radio.clean.hogbom_clean`) restored with a Gaussian beam
        fitted to the dirty beam, in Jy/pixel, primary-beam corrected: ``(B, 1, H, W)``."""
        from .clean import clean_reconstruction
        image = clean_reconstruction(self, y, uv, weight, gain=self.clean_gain, iterations=self.clean_iterations,
                                     threshold=self.clean_threshold)
        return self._primary_beam_correct(image)[:, None]

    def _primary_beam_correct(self, image: Tensor) -> Tensor:
        beam = self.primary_beam(image)
        if beam is None:
            return image
        return torch.where(beam > 0.1, image / beam.clamp_min(0.1), torch.zeros_like(image))

    # ------------------------------------------------------------------------------------------
    def sample_parameters(self, x: Tensor, generator: Optional[torch.Generator] = None) -> dict[str, Tensor]:
        """Per sample: a declination, a track of random length at a random place in ``hour_angle``
        (snapshots with the source below ``min_elevation`` degrees are not observed; a track that
        misses the source entirely is replaced by the highest snapshot of ``hour_angle``), a noise level; returns ``uv`` ``(B, V, 2)`` (wavelengths), ``weight`` ``(B, V)`` (``1/σ²``,
        0 on padding) and ``sigma`` ``(B, V)`` (1 on padding)."""
        from .coverage import baselines
        B = self._check_x(x).shape[0]
        layout = self._layout
        _, i, j = baselines(layout)
        d = layout.diameters()
        pair_scale = d.median() ** 2 / (d[i] * d[j])                                # (P,)
        P, V = i.numel(), self.max_visibilities
        grid = self._hour_angles()
        total, step = grid.numel(), self.integration / 60
        wavelength = SPEED_OF_LIGHT / self.frequency
        uv = torch.zeros(B, V, 2, dtype=torch.float64)
        sigma = torch.ones(B, V, dtype=torch.float64)
        weight = torch.zeros(B, V, dtype=torch.float64)
        u = torch.rand(B, 4, generator=generator, dtype=torch.float64)
        for b in range(B):
            dec = self.declination[0] + (self.declination[1] - self.declination[0]) * float(u[b, 0])
            hours = self.duration[0] + (self.duration[1] - self.duration[0]) * float(u[b, 1])
            n = max(1, min(self.slots, 1 + int(math.floor(hours / step + 1e-9))))
            start = int(math.floor(float(u[b, 2]) * (total - n + 1 - 1e-9)))
            lo, hi = (math.log(v) for v in self.noise)
            noise = math.exp(lo + (hi - lo) * float(u[b, 3]))
            ha = grid[start:start + n]
            elevation = self._elevation(ha, dec)
            if bool((elevation >= self.min_elevation).any()):
                ha = ha[elevation >= self.min_elevation]       # the source is below the limit otherwise
            else:                                              # the window misses it: its highest snapshot
                ha = grid[self._elevation(grid, dec).argmax()][None]
            n = ha.numel()
            points = earth_rotation_uv(layout, ha, dec, wavelength).reshape(n * P, 2)
            uv[b, :n * P] = points
            s = (noise * pair_scale).repeat(n)
            sigma[b, :n * P] = s
            weight[b, :n * P] = 1 / s ** 2
        dtype = x.dtype
        return {"uv": uv.to(dtype).to(x.device), "weight": weight.to(dtype).to(x.device),
                "sigma": sigma.to(dtype).to(x.device)}

    # ------------------------------------------------------------------------------------------
    def plot_observation(self, ax, y: Tensor, uv: Optional[Tensor] = None, weight: Optional[Tensor] = None,
                         **params: Any) -> None:
        """The observation panel of ``invrim show``: the measured ``(u, v)`` points and their
        conjugates, coloured by log₁₀ of the visibility amplitude (padding left out)."""
        import numpy as np
        y = y.detach().cpu()
        if uv is None:
            raise ValueError("plot_observation needs uv")
        uv = torch.as_tensor(uv).detach().cpu().to(torch.float64)
        keep = torch.ones(y.shape[0], dtype=torch.bool) if weight is None else torch.as_tensor(weight).cpu() > 0
        pts = uv[keep].numpy() / 1e3
        amp = np.log10(np.maximum(y[keep].abs().to(torch.float64).numpy(), 1e-12))
        both = np.concatenate([pts, -pts])
        sc = ax.scatter(both[:, 0], both[:, 1], c=np.concatenate([amp, amp]), s=2, cmap="viridis", linewidths=0)
        ax.figure.colorbar(sc, ax=ax, fraction=0.046, pad=0.04, label="log₁₀ |V| (Jy)")
        ax.set_aspect("equal")
        ax.set_xlabel("u (kλ)", fontsize=8)
        ax.set_ylabel("v (kλ)", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_title(f"uv coverage, {int(keep.sum())} visibilities", fontsize=10)
