"""Lensing geometry: pixel grids, SIE and shear deflections, pixelated-convergence deflections and
bilinear interpolation with its exact transpose.

Conventions (used throughout the plugin)
----------------------------------------
* A square grid of ``n`` pixels spanning ``fov`` arcsec has pixel size ``d = fov / n`` and pixel
  centres at ``(k - (n - 1) / 2) * d``, ``k = 0..n-1`` — the optical axis is the grid centre.
* In an image ``(..., rows, columns)`` the column index runs along ``x`` and the row index along
  ``y`` (``y`` grows with the row index: no flip).
* Angles are in arcsec, orientations in radians counter-clockwise from the ``x`` axis.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor

#: columns of the per-sample ``lens`` tensor of :class:`~invrim_lensing.physics.SIELensing`
LENS_PARAMETERS = ("theta_E", "q", "phi", "x0", "y0", "gamma1", "gamma2")

_SOFTENING = 1e-9       # arcsec: keeps the SIE finite (and zero) exactly at its centre
_F_MIN = 1e-6           # sqrt(1 - q²) floor: atan(f u)/f and atanh(f u)/f are exact to ~1e-12 there


def pixel_coordinates(n: int, fov: float, dtype=torch.float64, device=None) -> Tensor:
    """The ``n`` pixel-centre coordinates (arcsec) of a grid spanning ``fov`` arcsec."""
    d = fov / n
    return (torch.arange(n, dtype=dtype, device=device) - (n - 1) / 2) * d


def pixel_grid(n: int, fov: float, dtype=torch.float64, device=None) -> tuple[Tensor, Tensor]:
    """``(x, y)`` of every pixel centre, each of shape ``(n, n)`` (rows = y, columns = x)."""
    c = pixel_coordinates(n, fov, dtype, device)
    y, x = torch.meshgrid(c, c, indexing="ij")
    return x, y


# ---- analytic deflections ---------------------------------------------------------------------
def sie_deflection(x: Tensor, y: Tensor, theta_E: Tensor, q: Tensor, phi: Tensor,
                   x0: Tensor, y0: Tensor) -> tuple[Tensor, Tensor]:
    """Deflection ``(alpha_x, alpha_y)`` of a singular isothermal ellipsoid at ``(x, y)``.

    Convergence ``kappa = theta_E sqrt(q) / (2 sqrt(q² x'² + y'²))`` in the frame ``(x', y')``
    centred on ``(x0, y0)`` and rotated by ``phi`` (the major axis lies along ``x'``); ``q`` in
    ``(0, 1]`` is the axis ratio; for ``q = 1`` this is the SIS, ``|alpha| = theta_E``. This is the
    standard analytic result (Kormann et al. 1994; Keeton 2001, with ``b = theta_E / sqrt(q)``)::

        alpha_x' = theta_E sqrt(q) / f * atan (f x' / psi)
        alpha_y' = theta_E sqrt(q) / f * atanh(f y' / psi),   f = sqrt(1 - q²),
        psi = sqrt(q² x'² + y'²)

    rotated back by ``phi``. All arguments broadcast together.
    """
    c, s = torch.cos(phi), torch.sin(phi)
    xt, yt = x - x0, y - y0
    xr = xt * c + yt * s
    yr = -xt * s + yt * c
    psi = torch.sqrt(q * q * xr * xr + yr * yr + _SOFTENING ** 2)
    f = torch.sqrt((1 - q * q).clamp_min(0)).clamp_min(_F_MIN)
    norm = theta_E * torch.sqrt(q) / f
    ax = norm * torch.atan(f * xr / psi)
    ay = norm * torch.atanh(f * yr / psi)
    return ax * c - ay * s, ax * s + ay * c


def shear_deflection(x: Tensor, y: Tensor, gamma1: Tensor, gamma2: Tensor) -> tuple[Tensor, Tensor]:
    """External shear centred on the optical axis: ``alpha = [[g1, g2], [g2, -g1]] (x, y)``
    (lensing potential ``psi = g1 (x² - y²) / 2 + g2 x y``)."""
    return gamma1 * x + gamma2 * y, gamma2 * x - gamma1 * y


# ---- pixelated convergence -----------------------------------------------------------------------
def _rect_primitive(x: Tensor, y: Tensor) -> Tensor:
    """``F(x, y) = x atan(y/x) + (y/2) ln(x² + y²)``, a primitive with ``d²F/dxdy = x / (x² + y²)``
    (continuous, zero on the axes' singular points)."""
    safe_x = torch.where(x == 0, torch.ones_like(x), x)
    r2 = x * x + y * y
    safe_r2 = torch.where(r2 == 0, torch.ones_like(r2), r2)
    term1 = torch.where(x == 0, torch.zeros_like(x), x * torch.atan(y / safe_x))
    term2 = torch.where(r2 == 0, torch.zeros_like(r2), 0.5 * y * torch.log(safe_r2))
    return term1 + term2


def convergence_kernels(n: int, fov: float) -> tuple[Tensor, Tensor]:
    """Deflection kernels of a pixelated convergence, on a ``(2n, 2n)`` circular grid (float64).

    ``alpha(theta_i) = sum_j kappa_j K(theta_i - theta_j)`` with ``K`` the deflection of a unit
    convergence *uniform over one pixel* (``kappa`` piecewise constant), integrated exactly::

        K_x(d) = 1/pi  ∫∫_{|u - d|_inf < pixel/2}  u_x / |u|²  d²u

    Offsets ``m = -(n-1)..(n-1)`` (in pixels) are stored at index ``m mod 2n``, so the circular
    convolution of a zero-padded ``(2n, 2n)`` ``kappa`` equals the linear one on the first ``n x n``
    outputs (no wrap-around).
    """
    d = fov / n
    m = torch.arange(2 * n, dtype=torch.float64)
    m = torch.where(m < n, m, m - 2 * n)                     # offsets 0..n-1, -n..-1
    dy, dx = torch.meshgrid(m * d, m * d, indexing="ij")
    h = d / 2

    def kx(ax: Tensor, ay: Tensor) -> Tensor:
        return (_rect_primitive(ax + h, ay + h) - _rect_primitive(ax - h, ay + h)
                - _rect_primitive(ax + h, ay - h) + _rect_primitive(ax - h, ay - h)) / math.pi

    Kx = kx(dx, dy)
    Ky = kx(dy, dx)                          # by symmetry: swap the roles of x and y
    unused = (m == -n)                       # offset -n never occurs between two pixels
    Kx[unused, :] = 0
    Kx[:, unused] = 0
    Ky[unused, :] = 0
    Ky[:, unused] = 0
    return Kx, Ky


def convergence_deflection(kappa: Tensor, Kx: Tensor, Ky: Tensor) -> tuple[Tensor, Tensor]:
    """Deflection ``(alpha_x, alpha_y)``, each ``(B, n, n)``, of ``kappa`` ``(B, n, n)`` by FFT
    convolution with the kernels of :func:`convergence_kernels` (zero padding: no wrap-around)."""
    n = kappa.shape[-1]
    M = 2 * n
    Kx = Kx.to(dtype=kappa.dtype, device=kappa.device)
    Ky = Ky.to(dtype=kappa.dtype, device=kappa.device)
    K = torch.fft.rfft2(torch.stack([Kx, Ky]))                      # (2, M, M//2+1)
    kap = torch.fft.rfft2(kappa, s=(M, M))                          # zero-padded
    alpha = torch.fft.irfft2(kap.unsqueeze(-3) * K, s=(M, M))[..., :n, :n]
    return alpha[..., 0, :, :], alpha[..., 1, :, :]


# ---- bilinear interpolation and its transpose -----------------------------------------------------
def bilinear_weights(bx: Tensor, by: Tensor, n: int, fov: float) -> tuple[Tensor, Tensor]:
    """Indices and weights of the bilinear interpolation, on an ``n x n`` grid spanning ``fov``,
    at positions ``(bx, by)`` of shape ``(B, P)``.

    Returns ``index`` (long, ``(B, 4P)``: flat pixel indices of the 4 neighbours of each point)
    and ``weight`` (``(B, P, 4)``; zero for neighbours outside the grid: the field is zero there).
    The weights are differentiable with respect to the positions.
    """
    d = fov / n
    u = bx / d + (n - 1) / 2                  # fractional column
    v = by / d + (n - 1) / 2                  # fractional row
    i0 = torch.floor(u.detach())
    j0 = torch.floor(v.detach())
    fu = u - i0
    fv = v - j0
    i0 = i0.long()
    j0 = j0.long()
    cols = torch.stack([i0, i0 + 1, i0, i0 + 1], dim=-1)
    rows = torch.stack([j0, j0, j0 + 1, j0 + 1], dim=-1)
    w = torch.stack([(1 - fu) * (1 - fv), fu * (1 - fv), (1 - fu) * fv, fu * fv], dim=-1)
    inside = (cols >= 0) & (cols < n) & (rows >= 0) & (rows < n)
    w = torch.where(inside, w, torch.zeros_like(w))
    index = torch.where(inside, rows * n + cols, torch.zeros_like(cols))
    return index.reshape(index.shape[0], -1), w


def interpolate(field: Tensor, index: Tensor, weight: Tensor) -> Tensor:
    """Sample ``field`` ``(B, C, n, n)`` at the points of :func:`bilinear_weights`: ``(B, C, P)``."""
    B, C = field.shape[:2]
    P = weight.shape[1]
    flat = field.reshape(B, C, -1)
    vals = torch.gather(flat, 2, index.unsqueeze(1).expand(B, C, index.shape[-1]))
    return (vals.reshape(B, C, P, 4) * weight.unsqueeze(1)).sum(-1)


def interpolate_adjoint(values: Tensor, index: Tensor, weight: Tensor, n: int) -> Tensor:
    """The exact transpose of :func:`interpolate`: scatter-add ``values`` ``(B, C, P)`` with the
    same weights onto an ``(B, C, n, n)`` grid."""
    B, C, P = values.shape
    contrib = (values.unsqueeze(-1) * weight.unsqueeze(1)).reshape(B, C, P * 4)
    out = torch.zeros(B, C, n * n, dtype=values.dtype, device=values.device)
    out = out.scatter_add(2, index.unsqueeze(1).expand(B, C, P * 4), contrib)
    return out.reshape(B, C, n, n)


def gaussian_source(n: int, fov: float, x0: float = 0.0, y0: float = 0.0, sigma: float = 0.1,
                    dtype=torch.float64, device: Optional[torch.device] = None) -> Tensor:
    """A circular Gaussian blob (peak 1) on an ``n x n`` grid: shape ``(1, 1, n, n)``."""
    x, y = pixel_grid(n, fov, dtype, device)
    return torch.exp(-0.5 * ((x - x0) ** 2 + (y - y0) ** 2) / sigma ** 2)[None, None]
