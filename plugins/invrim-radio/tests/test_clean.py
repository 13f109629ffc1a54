"""Högbom CLEAN recovers point sources; the restoring beam fit; the dirty image in sky units."""
from __future__ import annotations

import math

import torch

from invrim_radio.clean import clean_reconstruction, fit_restoring_beam, gaussian_beam, hogbom_clean
from invrim_radio.physics import RadioInterferometry

SOURCES = [((16, 16), 1.0), ((9, 22), 0.6), ((24, 8), 0.3)]


def _observe(noise=1e-3, seed=0):
    model = RadioInterferometry(image_size=32, layout="vla", declination=50.0, duration=4.0, hour_angle=(-2, 2),
                                integration=20.0, noise=noise)
    x = torch.zeros(2, 1, 32, 32, dtype=torch.float64)
    for (h, w), flux in SOURCES:
        x[:, 0, h, w] = flux
    g = torch.Generator().manual_seed(seed)
    p = {k: v.double() for k, v in model.sample_parameters(x.float(), g).items()}
    y = model.double()(x, **p)
    y = y + p["sigma"] * torch.complex(torch.randn(y.shape, generator=g, dtype=torch.float64),
                                       torch.randn(y.shape, generator=g, dtype=torch.float64)) * (p["weight"] > 0)
    return model, x, y, p


def test_clean_recovers_point_source_positions_and_fluxes():
    model, x, y, p = _observe()
    restored, parts = clean_reconstruction(model, y, p["uv"], p["weight"], gain=0.1, iterations=3000, threshold=3.0,
                                           return_parts=True)
    comps = parts["components"]
    total = comps.sum((1, 2))
    for b in range(2):
        assert abs(float(total[b]) - 1.9) < 0.02 * 1.9
        found = comps[b].abs().flatten().topk(3).indices
        assert {(int(i) // 32, int(i) % 32) for i in found} == {pos for pos, _ in SOURCES}   # positions
        for (h, w), flux in SOURCES:                                                       # fluxes
            assert abs(float(comps[b, h, w]) - flux) < 0.02
    # the restored image (Jy/pixel, unit-sum beam) keeps the total flux and peaks at the brightest source
    assert abs(float(restored[0].sum()) - 1.9) < 0.05
    assert int(restored[0].argmax()) == 16 * 32 + 16
    # the baseline of the forward model is this restored image (no primary beam here)
    torch.testing.assert_close(model.baseline(y, **p)[:, 0], clean_reconstruction(model, y, p["uv"], p["weight"]))


def test_clean_stops_at_the_threshold_and_keeps_dirty_equal_to_model_plus_residual():
    model, x, y, p = _observe(noise=0.05)
    _, parts = clean_reconstruction(model, y, p["uv"], p["weight"], threshold=5.0, return_parts=True)
    sigma_d = p["weight"].sum(1).rsqrt()
    assert bool((parts["residual"].flatten(1).abs().max(1).values <= 5.0 * sigma_d + 1e-12).all())
    comps, psf = parts["components"], parts["psf"]
    # dirty = components ⊛ dirty beam + residual, exactly
    rebuilt = parts["residual"].clone()
    for b, h, w in zip(*torch.nonzero(comps, as_tuple=True)):
        rebuilt[b] += comps[b, h, w] * psf[b, 32 - h:64 - h, 32 - w:64 - w]
    torch.testing.assert_close(rebuilt, parts["dirty"])


def test_hogbom_on_a_delta_psf_copies_the_image():
    dirty = torch.zeros(1, 4, 5, dtype=torch.float64)
    dirty[0, 1, 2], dirty[0, 3, 0] = 2.0, -1.0
    psf = torch.zeros(1, 8, 10, dtype=torch.float64)
    psf[0, 4, 5] = 1.0
    comps, residual = hogbom_clean(dirty, psf, gain=1.0, iterations=10)
    torch.testing.assert_close(comps, dirty)
    assert float(residual.abs().max()) == 0.0


def test_restoring_beam_fit_recovers_an_elliptical_gaussian():
    a, b, c = 0.5, 0.12, 0.3
    psf = gaussian_beam(torch.tensor([[a, b, c]], dtype=torch.float64), (40, 40))
    abc, area = fit_restoring_beam(psf)
    torch.testing.assert_close(abc[0], torch.tensor([a, b, c], dtype=torch.float64), rtol=1e-6, atol=1e-8)
    assert math.isclose(float(area[0]), 2 * math.pi / math.sqrt(a * c - b * b), rel_tol=1e-6)


def test_dirty_image_of_a_point_source_in_sky_units_has_its_flux_at_the_peak():
    model, x, y, p = _observe(noise=1e-4)
    one = torch.zeros_like(x)
    one[:, 0, 16, 16] = 1.0
    y1 = model(one, **p)
    dirty = model.dirty_image(y1, p["uv"], p["weight"])
    assert abs(float(dirty[0, 16, 16]) - 1.0) < 1e-8                # Jy/beam: dirty beam peak 1
    pinv = model.dirty_sky(y1, **p)                            # Jy/pixel: divided by the beam area
    from invrim_radio.clean import dirty_beam
    _, area = fit_restoring_beam(dirty_beam(model, p["uv"], p["weight"], like=dirty))
    assert pinv.shape == x.shape and 1.0 < float(area[0]) < 30.0
    torch.testing.assert_close(pinv[:, 0, 16, 16], 1.0 / area)
