"""Phantoms: scikit-image's bundled Shepp-Logan as the reference; generator checks."""
import numpy as np
import pytest
import torch

from invrim.plugins import testing
from invrim_mri.fft import magnitude
from invrim_mri.phantoms import SHEPP_LOGAN, PhantomGenerator, ellipse_image, random_ellipses, shepp_logan


def test_shepp_logan_matches_scikit_image():
    data = pytest.importorskip("skimage.data")
    ref = data.shepp_logan_phantom()                  # bundled with scikit-image: 400 x 400
    mine = ellipse_image(SHEPP_LOGAN, 400, 400).numpy()
    close = np.abs(ref - mine) < 0.011                # skimage stores 0.098 for 0.1 etc.
    assert close.mean() > 0.98 and np.abs(ref - mine).mean() < 0.01


def test_shepp_logan_channels_and_phase():
    x = shepp_logan(24, 20)
    assert x.shape == (1, 2, 24, 20) and x.dtype == torch.float32 and x[:, 1].abs().max() == 0
    assert float(x[:, 0].max()) == pytest.approx(1.0)
    xp = shepp_logan(24, batch=2, phase_strength=1.0, seed=0, dtype=torch.float64)
    torch.testing.assert_close(magnitude(xp), magnitude(shepp_logan(24, dtype=torch.float64)).expand(2, -1, -1))
    assert xp[:, 1].abs().max() > 0


def test_random_ellipses():
    x = random_ellipses(4, 32, seed=0)
    assert x.shape == (4, 2, 32, 32) and torch.isfinite(x).all()
    m = magnitude(x)
    assert (m.flatten(1).amax(1) - 1).abs().max() < 1e-5 and m.min() >= 0
    assert m[:, 0, 0].max() == 0                              # background outside the head
    torch.testing.assert_close(x, random_ellipses(4, 32, generator=torch.Generator().manual_seed(0)))
    assert not torch.allclose(x[0], x[1])


def test_generator_component_and_errors():
    gen, kwargs = PhantomGenerator.example()
    assert gen(**kwargs).shape == (2, 2, 16, 12)
    assert PhantomGenerator(8, kind="shepp_logan")(batch=3, seed=1).shape == (3, 2, 8, 8)
    assert PhantomGenerator(**PhantomGenerator(10, 6).config()).config() == PhantomGenerator(10, 6).config()
    with pytest.raises(ValueError, match="kind"):
        PhantomGenerator(8, kind="brain")
    with pytest.raises(ValueError, match="height"):
        PhantomGenerator(0)
    with pytest.raises(ValueError, match="phase_strength"):
        PhantomGenerator(8, phase_strength=-1)
