"""Independent references for the lensing physics.

* analytic: a circular SIS deflects by exactly theta_E everywhere; a point source on the lens
  centre becomes an Einstein ring of radius theta_E; div(alpha) = 2 kappa and curl(alpha) = 0 for
  the SIE (autograd), so the deflection is the gradient of a potential with the stated convergence;
* caustics (if installed): SIE + external shear deflection angles;
* the pixelated-convergence deflection of a discretised SIS recovers the analytic SIS deflection,
  and its pixel-integrated kernel matches brute-force sub-pixel integration;
* the two operators agree when the pixelated convergence is an SIS.
"""
import math

import pytest
import torch

from invrim_lensing.data import hubble_sources, random_lenses, sis_convergence
from invrim_lensing.geometry import (convergence_kernels, gaussian_source, pixel_grid, shear_deflection,
                                     sie_deflection)
from invrim_lensing.physics import PixelatedConvergenceLensing, SIELensing

D = torch.float64


def _t(*values):
    return [torch.tensor(v, dtype=D) for v in values]


# ---- analytic ----------------------------------------------------------------------------------
def test_sis_deflection_has_magnitude_theta_E_and_points_to_the_centre():
    x, y = pixel_grid(31, 4.0, D)
    theta_E, q, phi, x0, y0 = _t(1.3, 1.0, 0.7, 0.11, -0.07)
    ax, ay = sie_deflection(x, y, theta_E, q, phi, x0, y0)
    r = torch.sqrt((x - x0) ** 2 + (y - y0) ** 2)
    torch.testing.assert_close(torch.sqrt(ax ** 2 + ay ** 2), torch.full_like(r, 1.3), rtol=0, atol=1e-10)
    torch.testing.assert_close(ax * r, 1.3 * (x - x0), rtol=0, atol=1e-10)   # radial
    torch.testing.assert_close(ay * r, 1.3 * (y - y0), rtol=0, atol=1e-10)


def test_sie_deflection_is_finite_at_the_centre():
    ax, ay = sie_deflection(*_t(0.0, 0.0, 1.0, 0.6, 0.3, 0.0, 0.0))
    assert float(ax) == 0 and float(ay) == 0


@pytest.mark.parametrize("q, phi", [(0.4, 0.0), (0.7, 1.1), (0.95, 2.5), (1.0, 0.3)])
def test_sie_deflection_is_the_gradient_of_a_potential_with_its_convergence(q, phi):
    """div(alpha) = 2 kappa with kappa = theta_E sqrt(q) / (2 sqrt(q² x'² + y'²)); curl(alpha) = 0."""
    g = torch.Generator().manual_seed(0)
    pts = (torch.rand(50, 2, generator=g, dtype=D) - 0.5) * 4
    pts = pts[pts.norm(dim=1) > 0.2].requires_grad_(True)
    theta_E, q_, phi_, x0, y0 = _t(1.2, q, phi, 0.05, -0.1)
    ax, ay = sie_deflection(pts[:, 0], pts[:, 1], theta_E, q_, phi_, x0, y0)
    dax = torch.autograd.grad(ax.sum(), pts, retain_graph=True)[0]
    day = torch.autograd.grad(ay.sum(), pts)[0]
    c, s = math.cos(phi), math.sin(phi)
    xt, yt = pts[:, 0].detach() - 0.05, pts[:, 1].detach() + 0.1
    xr, yr = xt * c + yt * s, -xt * s + yt * c
    kappa = 1.2 * math.sqrt(q) / (2 * torch.sqrt(q * q * xr * xr + yr * yr))
    torch.testing.assert_close(dax[:, 0] + day[:, 1], 2 * kappa, rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(dax[:, 1], day[:, 0], rtol=1e-6, atol=1e-9)


def test_shear_is_traceless_and_symmetric():
    x, y = _t([0.3, -1.0], [0.5, 2.0])
    ax, ay = shear_deflection(x, y, *_t(0.1, -0.05))
    torch.testing.assert_close(ax, 0.1 * x - 0.05 * y)
    torch.testing.assert_close(ay, -0.05 * x - 0.1 * y)


def test_point_source_on_the_lens_centre_makes_an_einstein_ring_of_radius_theta_E():
    theta_E, fov, n = 1.2, 4.0, 128
    pixel = fov / n
    op = SIELensing(source_pixels=64, source_fov=1.0, image_pixels=n, image_fov=fov)
    image = op(gaussian_source(64, 1.0, sigma=0.03, dtype=D),
               lens=torch.tensor([theta_E, 1.0, 0, 0, 0, 0, 0], dtype=D))[0, 0]
    x, y = pixel_grid(n, fov, D)
    r = torch.sqrt(x ** 2 + y ** 2)
    ring = float((image * r).sum() / image.sum())              # flux-weighted radius
    assert abs(ring - theta_E) < pixel, ring
    # and the ring is round: the flux-weighted radius in each quadrant agrees
    for m in ((x > 0) & (y > 0), (x < 0) & (y > 0), (x < 0) & (y < 0), (x > 0) & (y < 0)):
        assert abs(float((image * r)[m].sum() / image[m].sum()) - theta_E) < pixel
    assert float(image[r < 0.6].max()) < 1e-3 * float(image.max())   # nothing inside the ring


# ---- caustics -----------------------------------------------------------------------------------
CAUSTICS_LENSES = [
    (1.0, 0.7, 0.4, 0.05, -0.1, 0.03, -0.02),
    (1.3, 0.5, 2.0, -0.2, 0.1, -0.05, 0.04),
    (0.8, 0.99, 1.0, 0.0, 0.0, 0.0, 0.0),
    (1.1, 0.25, -0.6, 0.3, 0.2, 0.1, 0.08),
    (1.1, 1.0, 0.3, 0.1, 0.1, 0.02, 0.0),
]


@pytest.mark.parametrize("lens", CAUSTICS_LENSES)
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_deflection_matches_caustics(lens):
    """Tolerance 1e-10 arcsec (float64); 1e-5 for q = 1, where caustics evaluates q = 1 - 1e-6."""
    caustics = pytest.importorskip("caustics")
    op = SIELensing(source_pixels=8, image_pixels=24, image_fov=4.0)
    like = torch.zeros(1, 1, 8, 8, dtype=D)
    ax, ay = op.deflection(like, torch.tensor(lens, dtype=D))
    theta_E, q, phi, x0, y0, g1, g2 = _t(*lens)
    cosmo = caustics.FlatLambdaCDM(name="cosmo")
    sie = caustics.SIE(cosmology=cosmo, z_l=0.5, z_s=1.0, x0=x0, y0=y0, q=q, phi=phi, Rein=theta_E)
    shear = caustics.ExternalShear(cosmology=cosmo, z_l=0.5, z_s=1.0, x0=0.0, y0=0.0, gamma_1=g1, gamma_2=g2)
    x, y = pixel_grid(24, 4.0, D)
    cx, cy = sie.reduced_deflection_angle(x.flatten(), y.flatten())
    hx, hy = shear.reduced_deflection_angle(x.flatten(), y.flatten())
    tol = 1e-5 if lens[1] == 1.0 else 1e-10
    torch.testing.assert_close(ax[0], cx + hx, rtol=0, atol=tol)
    torch.testing.assert_close(ay[0], cy + hy, rtol=0, atol=tol)


# ---- pixelated convergence ---------------------------------------------------------------------------
def test_convergence_kernel_matches_subpixel_integration():
    n, fov, S = 6, 1.2, 100
    Kx, Ky = convergence_kernels(n, fov)
    d = fov / n
    sub = (torch.arange(S, dtype=D) + 0.5) / S * d - d / 2
    for mx, my in [(1, 0), (0, 2), (2, -3), (-1, 1), (5, 5), (-5, 4)]:
        ux, uy = mx * d + sub[None, :], my * d + sub[:, None]
        r2 = ux ** 2 + uy ** 2
        bx = float((ux / r2).mean()) * d * d / math.pi
        by = float((uy / r2).mean()) * d * d / math.pi
        assert abs(float(Kx[my % (2 * n), mx % (2 * n)]) - bx) < 1e-6 * max(abs(bx), 1e-3)
        assert abs(float(Ky[my % (2 * n), mx % (2 * n)]) - by) < 1e-6 * max(abs(by), 1e-3)
    assert float(Kx[0, 0]) == 0 and float(Ky[0, 0]) == 0


def test_discretised_sis_convergence_recovers_the_sis_deflection():
    """64² pixels over 4": |alpha - theta_E r_hat| / theta_E < 3 % for 0.25" < r < 1.4" (away from the
    singular centre and from the field edge, where the truncated square mass distribution matters)."""
    n, fov, theta_E = 64, 4.0, 1.0
    op = PixelatedConvergenceLensing(pixels=n, fov=fov)
    ax, ay = op.deflection(sis_convergence(n, fov, theta_E))
    x, y = pixel_grid(n, fov, D)
    r = torch.sqrt(x ** 2 + y ** 2)
    err = torch.sqrt((ax[0] - theta_E * x / r) ** 2 + (ay[0] - theta_E * y / r) ** 2) / theta_E
    ring = (r > 0.25) & (r < 1.4)
    assert float(err[ring].max()) < 0.03, float(err[ring].max())
    assert float(err[ring].mean()) < 0.012, float(err[ring].mean())


def test_convergence_deflection_is_linear_and_float32_agrees():
    op = PixelatedConvergenceLensing(pixels=16, fov=3.0)
    g = torch.Generator().manual_seed(0)
    k1, k2 = torch.rand(2, 1, 1, 16, 16, generator=g, dtype=D)
    a1, a2, a12 = op.deflection(k1)[0], op.deflection(k2)[0], op.deflection(2 * k1 + k2)[0]
    torch.testing.assert_close(a12, 2 * a1 + a2)
    torch.testing.assert_close(op.deflection(k1.float())[0].double(), a1, rtol=1e-5, atol=1e-5)


def test_the_two_operators_agree_for_an_sis():
    """kappa operator with a discretised SIS vs the SIE operator with q = 1: same lensed image of a
    smooth source, to 3 % (relative L2) — the residual is the discretisation of kappa."""
    n, fov = 64, 4.0
    source = gaussian_source(32, 2.4, 0.15, -0.1, 0.25, dtype=D)
    sie = SIELensing(source_pixels=32, source_fov=2.4, image_pixels=n, image_fov=fov, psf_sigma=1.0)
    kap = PixelatedConvergenceLensing(pixels=n, fov=fov, source_pixels=32, source_fov=2.4, psf_sigma=1.0)
    y_sie = sie.to(D)(source, lens=torch.tensor([1.0, 1.0, 0, 0, 0, 0, 0], dtype=D))
    y_kap = kap.to(D)(sis_convergence(n, fov, 1.0), source=source)
    rel = float((y_sie - y_kap).norm() / y_sie.norm())
    assert rel < 0.03, rel


def test_pseudo_inverse_recovers_a_smooth_source():
    op = SIELensing(source_pixels=32, source_fov=2.4, image_pixels=64, image_fov=4.8)
    source = gaussian_source(32, 2.4, 0.1, 0.0, 0.3, dtype=D)
    lens = random_lenses(1, torch.Generator().manual_seed(2), dtype=D)
    est = op.to(D).pseudo_inverse(op(source, lens=lens), lens=lens)
    x, y = pixel_grid(32, 2.4, D)
    centre = torch.sqrt(x ** 2 + y ** 2) < 0.8
    assert float((est - source)[0, 0][centre].abs().max()) < 0.05
    assert torch.isfinite(est).all()


def test_hubble_sources_load_offline_and_splits_differ():
    train = hubble_sources(4, split="train", seed=0)
    test = hubble_sources(4, split="test", seed=0)
    assert train.shape == (4, 1, 32, 32) and float(train.min()) >= 0
    torch.testing.assert_close(train.flatten(1).max(1).values, torch.ones(4))
    assert not torch.allclose(train, test)
