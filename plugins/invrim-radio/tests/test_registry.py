"""The entry point, the generator, the observation figure and the FITS writer."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

import invrim.plugins
from invrim.plugins import registry, testing
from invrim_radio.physics import RadioInterferometry
from invrim_radio.sky import RadioSky


def test_entry_point_registers_the_components():
    invrim.plugins.refresh()
    reg = registry()
    info = reg.forward_models.info("radio_interferometry")
    assert info.distribution == "invrim-radio" and info.status == "active"
    model = reg.forward_models.build("radio_interferometry", image_size=16, layout="alma_compact")
    assert isinstance(model, RadioInterferometry) and model.config()["layout"] == "alma_compact"
    assert reg.generators.info("radio_sky").distribution == "invrim-radio"
    assert testing.check_component(reg.generators.info("radio_sky")) == ["generate"]


def test_problem_from_config_through_the_registry():
    from invrim import Problem
    invrim.plugins.refresh()
    problem = Problem.from_config("radio_interferometry", "gaussian", {"image_size": 16}, {})
    assert Problem.from_config(**problem.config()).config() == problem.config()


def test_hooks_module_is_light():
    code = ("import sys, invrim_radio.hooks; "
            "bad = [m for m in ('torch', 'finufft', 'invrim_radio.physics', 'invrim_radio.nufft') if m in sys.modules]; "
            "print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() in ("[]", "['torch']"), out          # invrim itself may import torch


def test_sky_generator_conforms_and_makes_non_negative_skies():
    gen, kwargs = RadioSky.example()
    assert testing.check_generator(gen, **kwargs) == ["generate"]
    sky = RadioSky(shape=(20, 24), points=(2, 2), gaussians=(0, 0), disks=(0, 0))(4, torch.Generator().manual_seed(0))
    assert sky.shape == (4, 1, 20, 24) and bool((sky >= 0).all())
    assert ((sky > 0).flatten(1).sum(1) <= 2).all() and bool((sky.flatten(1).sum(1) >= 0.6).all())
    with pytest.raises(ValueError, match="points must be"):
        RadioSky(points=(3, 1))


@pytest.mark.parametrize("layout", ["vla", "alma_compact", "random"])
def test_bundled_layouts_simulate(layout):
    model = RadioInterferometry(image_size=16, layout=layout, duration=0.5, integration=15)
    x = RadioSky(shape=(16, 16))(2, torch.Generator().manual_seed(0))
    p = model.sample_parameters(x, torch.Generator().manual_seed(1))
    y = model(x, **p)
    assert y.shape == (2, model.max_visibilities) and y.dtype == torch.complex64 and bool(torch.isfinite(y.abs()).all())


def test_plot_observation_draws_the_uv_coverage_without_padding():
    from matplotlib.figure import Figure
    model, x, params = RadioInterferometry.example()
    y = model(x, **params)
    ax = Figure().subplots()
    model.plot_observation(ax, y[1], uv=params["uv"][1], weight=params["weight"][1])   # no sample axis
    points = ax.collections[0].get_offsets()
    assert len(points) == 2 * 30 and np.isfinite(np.asarray(points)).all()        # 30 measured, ± conjugates
    assert "30 visibilities" in ax.get_title()


def test_write_fits_round_trips_with_a_celestial_wcs(tmp_path):
    fits = pytest.importorskip("astropy.io.fits")
    from invrim_radio.fits import write_fits
    image = torch.arange(12.0).reshape(1, 3, 4)
    path = write_fits(image, tmp_path / "sky.fits", pixel_scale=2.5, ra=150.0, dec=2.2, frequency=1.4e9)
    with fits.open(path) as hdul:
        np.testing.assert_array_equal(hdul[0].data, image[0].numpy()[:, ::-1])     # east to the left
        h = hdul[0].header
        assert h["CTYPE1"] == "RA---SIN" and h["CRPIX1"] == 2 and h["CRPIX2"] == 2
        # the phase-centre pixel (H//2, W//2) = (1, 2) lands on (CRPIX2, CRPIX1), 1-based
        assert hdul[0].data[h["CRPIX2"] - 1, h["CRPIX1"] - 1] == image[0, 1, 2]
    from astropy.wcs import WCS
    with fits.open(path) as hdul:
        wcs = WCS(hdul[0].header)
        ra_east, _ = wcs.wcs_pix2world([[0, 1]], 0)[0]        # FITS column 0 = image column W − 1 (east)
        ra_west, _ = wcs.wcs_pix2world([[3, 1]], 0)[0]
        assert ra_east > 150.0 > ra_west
    with fits.open(path) as hdul:
        h = hdul[0].header
        assert h["CDELT1"] == pytest.approx(-2.5 / 3600) and h["CRVAL2"] == 2.2 and h["BUNIT"] == "Jy/pixel"
    with pytest.raises(ValueError, match="shape"):
        write_fits(torch.zeros(2, 3, 4), tmp_path / "bad.fits", pixel_scale=1.0)
