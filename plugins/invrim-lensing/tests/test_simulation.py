"""invrim simulate with the lensing plugin: galaxy sources and one random lens per sample."""
from __future__ import annotations

import h5py
import numpy as np
import torch

import invrim.plugins
from invrim.data import HDF5Dataset, simulate
from invrim.plugins import testing
from invrim_lensing.data import HubbleSources
from invrim_lensing.physics import SIELensing


def test_generator_is_registered_and_conforms():
    invrim.plugins.refresh()
    info = invrim.plugins.registry().generators.info("hubble_sources")
    assert info.distribution == "invrim-lensing"
    assert testing.check_generator(*HubbleSources.example()[:1], batch=2) == ["generate"]


def test_simulated_lensing_file_holds_per_sample_lenses_that_reproduce_y(tmp_path):
    path = simulate(tmp_path / "lens.h5", "lensing_sie", "gaussian", 10, generator="hubble_sources",
                    forward_model_config={"source_pixels": 16, "image_pixels": 24, "psf_sigma": 0.7},
                    likelihood_config={"sigma": 1e-6}, generator_config={"size": 16, "crop": 24},
                    seed=0, progress=False)
    with h5py.File(path, "r") as f:
        lens, x, y = f["lens"][:], f["x"][:], f["y"][:]
    assert lens.shape == (10, 7) and len(np.unique(lens[:, 0])) == 10          # one lens per sample
    assert (lens[:, 0] >= 0.9).all() and (lens[:, 0] <= 1.3).all()              # theta_E in its prior
    op = SIELensing(source_pixels=16, image_pixels=24, psf_sigma=0.7)
    again = op(torch.from_numpy(x).double(), lens=torch.from_numpy(lens).double()).numpy()
    np.testing.assert_allclose(y, again, atol=1e-4)                             # y = F(x; lens) + tiny noise
    item = HDF5Dataset(path)[3]
    assert set(item) == {"x", "y", "lens"} and item["lens"].shape == (7,)
