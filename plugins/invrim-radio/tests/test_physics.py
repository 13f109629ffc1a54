"""The forward model: conformance, point-source visibilities, padding, coverage, primary beam."""
from __future__ import annotations

import math

import pytest
import torch

from invrim import Gaussian, Problem
from invrim.plugins import testing
from invrim_radio.coverage import ARCSEC, SPEED_OF_LIGHT, earth_rotation_uv, load_layout
from invrim_radio.physics import RadioInterferometry


def test_conformance_kit_finufft_and_dft_backends():
    model, x, params = RadioInterferometry.example()
    assert "score-vs-autograd" in testing.check_forward_model(model, x, **params)
    dft = RadioInterferometry(**{**model.config(), "backend": "dft"})
    testing.check_forward_model(dft, x, **params)


def test_conformance_with_primary_beam_and_per_visibility_sigma():
    model, x, params = RadioInterferometry.example()
    beamed = RadioInterferometry(**{**model.config(), "primary_beam_fwhm": 15.0})
    sigma = torch.where(params["weight"] > 0, params["weight"].rsqrt(), torch.ones_like(params["weight"]))
    testing.check_forward_model(beamed, x, likelihood=Gaussian(), **params, sigma=sigma)


def test_adjoint_dot_product_in_float64_to_rounding():
    model, x, params = RadioInterferometry.example()
    model = RadioInterferometry(**{**model.config(), "primary_beam_fwhm": 20.0}).double()
    g = torch.Generator().manual_seed(3)
    xd = torch.randn(x.shape, dtype=torch.float64, generator=g)
    p = {k: v.double() for k, v in params.items()}
    y = torch.randn(2, 40, dtype=torch.complex128, generator=g)
    lhs = float((model(xd, **p).conj() * y).real.sum())
    rhs = float((xd * model.adjoint(y, **p)).sum())
    assert abs(lhs - rhs) <= 1e-11 * abs(lhs)


def test_point_source_visibilities_are_its_fourier_phases():
    model = RadioInterferometry(image_size=(16, 20), pixel_scale=1.0, layout="random")
    x = torch.zeros(1, 1, 16, 20, dtype=torch.float64)
    x[0, 0, 8 + 3, 10 - 5] = 2.0                      # m = +3 pixels, l = −5 pixels
    g = torch.Generator().manual_seed(0)
    uv = (torch.rand(1, 30, 2, generator=g, dtype=torch.float64) - 0.5) * 0.9 / model.pixel_radians
    y = model(x, uv=uv)
    l, m = -5 * model.pixel_radians, 3 * model.pixel_radians
    expected = 2.0 * torch.exp(-2j * math.pi * (uv[..., 0] * l + uv[..., 1] * m))
    torch.testing.assert_close(y, expected, rtol=0, atol=1e-8)
    centre = torch.zeros_like(x)
    centre[0, 0, 8, 10] = 1.5                          # at the phase centre: a real constant
    torch.testing.assert_close(model(centre, uv=uv), torch.full((1, 30), 1.5, dtype=torch.complex128),
                               rtol=0, atol=1e-9)


def _padded(model, x, params, extra):
    """The same observation with ``extra`` more padded slots (uv random, weight 0) at random places."""
    B, V = params["weight"].shape
    g = torch.Generator().manual_seed(7)
    order = torch.randperm(V + extra, generator=g)
    uv = torch.cat([params["uv"], (torch.rand(B, extra, 2, generator=g) - 0.5) * 0.9 / model.pixel_radians], 1)
    weight = torch.cat([params["weight"], torch.zeros(B, extra)], 1)
    return {"uv": uv[:, order], "weight": weight[:, order]}, order


def test_padded_visibilities_contribute_nothing():
    model, x, params = RadioInterferometry.example()
    model = model.double()
    x = x.double()
    params = {k: v.double() for k, v in params.items()}
    padded, order = _padded(model, x, params, extra=25)
    padded = {k: v.double() for k, v in padded.items()}
    y = model(x, **params)
    y_pad = model(x, **padded)
    measured = padded["weight"] > 0
    assert bool((y_pad[~measured] == 0).all())                       # A is zero on padding
    torch.testing.assert_close(y_pad[:, order.argsort()][:, :40], y)
    # whatever y holds on padded slots, the adjoint (and so the score and the dirty image) ignores it
    g = torch.Generator().manual_seed(1)
    y_obs = torch.cat([y, 1e3 * torch.randn(2, 25, dtype=torch.complex128, generator=g)], 1)[:, order]
    torch.testing.assert_close(model.adjoint(y_obs, **padded), model.adjoint(y, **params), rtol=1e-9, atol=1e-9)
    # the Gaussian likelihood with sigma = 1/sqrt(w) (1 on padding): the same score, an energy that
    # differs by a constant independent of x
    sig = lambda p: torch.where(p["weight"] > 0, p["weight"].clamp_min(1e-30).rsqrt(), torch.ones_like(p["weight"]))
    problem = Problem(model, Gaussian())
    x1 = x + 0.1
    torch.testing.assert_close(problem.score(x1, y_obs, **padded, sigma=sig(padded)),
                               problem.score(x1, y, **params, sigma=sig(params)), rtol=1e-9, atol=1e-9)
    e_pad = problem.energy(x1, y_obs, **padded, sigma=sig(padded)) - problem.energy(x, y_obs, **padded, sigma=sig(padded))
    e = problem.energy(x1, y, **params, sigma=sig(params)) - problem.energy(x, y, **params, sigma=sig(params))
    torch.testing.assert_close(e_pad, e, rtol=1e-9, atol=1e-9)
    # and the baselines: dirty image, CLEAN, Tikhonov
    torch.testing.assert_close(model.pseudo_inverse(y_obs, **padded), model.pseudo_inverse(y, **params))
    torch.testing.assert_close(model.dirty_sky(y_obs, **padded), model.dirty_sky(y, **params))
    torch.testing.assert_close(model.least_squares_weighted(y_obs, **padded), model.least_squares_weighted(y, **params))
    torch.testing.assert_close(model.baseline(y_obs, **padded), model.baseline(y, **params))
    torch.testing.assert_close(model.least_squares(y_obs, damping=1.0, iterations=20, **padded),
                               model.least_squares(y, damping=1.0, iterations=20, **params))


def test_sample_parameters_pad_tracks_of_different_lengths():
    model = RadioInterferometry(image_size=16, layout="random", duration=(0.5, 3.0), integration=15.0,
                                noise=(0.1, 1.0))
    x = torch.zeros(6, 1, 16, 16)
    p = model.sample_parameters(x, torch.Generator().manual_seed(0))
    V = model.max_visibilities
    assert V == 66 * 13 and p["uv"].shape == (6, V, 2) and p["weight"].shape == p["sigma"].shape == (6, V)
    counts = (p["weight"] > 0).sum(1)
    assert len(set(counts.tolist())) > 1 and bool((counts % 66 == 0).all())       # whole snapshots
    for b, n in enumerate(counts.tolist()):
        assert bool((p["weight"][b, :n] > 0).all()) and bool((p["weight"][b, n:] == 0).all())
        assert bool((p["uv"][b, n:] == 0).all()) and bool((p["sigma"][b, n:] == 1).all())
        torch.testing.assert_close(p["weight"][b, :n], p["sigma"][b, :n] ** -2)
    # no (u, v) is longer than the longest baseline over the wavelength, and all below Nyquist
    layout = load_layout("random")
    lam = SPEED_OF_LIGHT / model.frequency
    assert float(p["uv"].double().norm(dim=-1).max()) <= layout.max_baseline() / lam * (1 + 1e-5)
    assert float((p["uv"].abs().max() * model.pixel_radians)) <= 0.4 + 1e-5
    torch.testing.assert_close(model.sample_parameters(x, torch.Generator().manual_seed(0))["uv"], p["uv"])


def test_earth_rotation_traces_ellipses_of_the_baseline_length_at_the_pole():
    layout = load_layout("vla")
    ha = torch.linspace(-6, 6, 25, dtype=torch.float64)
    uv = earth_rotation_uv(layout, ha, declination=90.0, wavelength=1.0)       # (T, P, 2)
    radius = uv.norm(dim=-1)
    torch.testing.assert_close(radius, radius[:1].expand_as(radius))          # circles at δ = 90°
    # at δ = 0 the tracks are lines of constant v (v = Z / λ)
    flat = earth_rotation_uv(layout, ha, declination=0.0, wavelength=1.0)
    torch.testing.assert_close(flat[..., 1], flat[:1, :, 1].expand_as(flat[..., 1]))


def test_primary_beam_attenuates_off_axis_sources():
    model = RadioInterferometry(image_size=32, pixel_scale=2.0, primary_beam_fwhm=20.0)
    beam = model.primary_beam()
    assert float(beam[16, 16]) == 1.0
    assert abs(float(beam[16, 21]) - 0.5) < 1e-12            # 5 px = 10" = FWHM / 2: half power
    x = torch.zeros(1, 1, 32, 32, dtype=torch.float64)
    x[0, 0, 16, 21] = 1.0
    uv = torch.zeros(1, 1, 2, dtype=torch.float64)
    assert abs(complex(model(x, uv=uv)[0, 0]) - 0.5) < 1e-9


def test_auto_pixel_scale_and_one_line_errors():
    model = RadioInterferometry(layout="vla", frequency=1.4e9)
    lam = SPEED_OF_LIGHT / 1.4e9
    assert math.isclose(model.pixel_scale * ARCSEC, 0.4 * lam / load_layout("vla").max_baseline())
    assert RadioInterferometry(**model.config()).config() == model.config()
    x = torch.zeros(1, 1, 32, 32)
    with pytest.raises(ValueError, match="above Nyquist"):
        model(x, uv=torch.full((1, 3, 2), 0.6 / model.pixel_radians))
    with pytest.raises(ValueError, match="uv is required"):
        model(x)
    with pytest.raises(ValueError, match=r"x must be real of shape \(B, 1, 32, 32\)"):
        model(torch.zeros(1, 1, 16, 16), uv=torch.zeros(1, 3, 2))
    with pytest.raises(ValueError, match="unknown antenna layout 'meerkat'"):
        RadioInterferometry(layout="meerkat")


def test_a_layout_file_by_path(tmp_path):
    path = tmp_path / "two.txt"
    path.write_text("# latitude_deg: 52.9\n0 0 0 25\n100 0 0 25\n")
    model = RadioInterferometry(image_size=8, layout=str(path), duration=1.0, integration=30.0)
    p = model.sample_parameters(torch.zeros(2, 1, 8, 8), torch.Generator().manual_seed(0))
    assert p["uv"].shape == (2, 3, 2)


def test_snapshots_below_the_elevation_limit_are_not_observed():
    # VLA at +34°: a source at δ = −40° culminates at 16° elevation, so only hour angles near transit
    low = RadioInterferometry(image_size=8, layout="vla", declination=-40.0, hour_angle=(-4, 4), duration=8.0,
                              integration=60.0, min_elevation=10.0)
    high = RadioInterferometry(**{**low.config(), "declination": [60.0, 60.0]})
    x = torch.zeros(1, 1, 8, 8)
    n_low = int((low.sample_parameters(x, torch.Generator().manual_seed(0))["weight"] > 0).sum())
    n_high = int((high.sample_parameters(x, torch.Generator().manual_seed(0))["weight"] > 0).sum())
    assert n_high == 351 * 9 and 0 < n_low < n_high and n_low % 351 == 0
    with pytest.raises(ValueError, match="never rises above min_elevation"):
        RadioInterferometry(layout="vla", declination=-70.0)


def test_pseudo_inverse_is_weighted_least_squares_closer_to_the_sky_than_the_dirty_image():
    from invrim_radio.sky import RadioSky
    model = RadioInterferometry(image_size=24, layout="random", duration=(1.0, 2.0), integration=20.0, noise=0.05)
    x = RadioSky(shape=(24, 24))(3, torch.Generator().manual_seed(0))
    p = model.sample_parameters(x, torch.Generator().manual_seed(1))
    y = model(x, **p)
    err = lambda e: float((e - x).pow(2).mean())                              # noqa: E731
    pinv, dirty = model.least_squares_weighted(y, **p), model.dirty_sky(y, **p)
    torch.testing.assert_close(RadioInterferometry(**{**model.config(), "start": "least_squares"}).pseudo_inverse(y, **p),
                               pinv)
    torch.testing.assert_close(model.pseudo_inverse(y, **p), model.baseline(y, **p))      # start="clean"
    assert pinv.shape == dirty.shape == x.shape
    assert err(pinv) < 0.5 * err(dirty)
    chi = lambda e: float((p["weight"] * (y - model(e, **p)).abs() ** 2).sum())  # noqa: E731
    assert chi(pinv) < 0.05 * chi(torch.zeros_like(x))
