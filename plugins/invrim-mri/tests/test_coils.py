"""Coil sensitivity maps: normalisation, smoothness, reproducibility, errors."""
import pytest
import torch

from invrim_mri.coils import gaussian_coil_maps, normalize_sensitivities, rss
from invrim_mri.fft import fft2c


def test_sum_of_squares_is_one_everywhere():
    for kwargs in ({}, {"batch": 3}, {"dtype": torch.complex128, "phase_strength": 3.0, "radius": 2.0}):
        s = gaussian_coil_maps(6, 20, 17, seed=0, **kwargs)
        assert s.is_complex() and s.shape[-3:] == (6, 20, 17)
        tol = 1e-12 if s.dtype == torch.complex128 else 1e-6
        assert float((rss(s) - 1).abs().max()) < tol


def test_maps_are_smooth_and_differ_between_coils():
    s = gaussian_coil_maps(4, 32, 32, seed=1, dtype=torch.complex128)
    k = fft2c(s).abs() ** 2
    low = k[:, 16 - 4:16 + 5, 16 - 4:16 + 5].sum()
    assert low / k.sum() > 0.95                       # energy concentrated at low spatial frequencies
    mags = s.abs()
    assert (mags[0] - mags[2]).abs().max() > 0.3      # coils on opposite sides see different regions
    assert s.angle().std() > 0.1                      # a non-trivial phase


def test_reproducible_and_random_per_batch():
    a = gaussian_coil_maps(4, 8, 8, batch=2, seed=5)
    b = gaussian_coil_maps(4, 8, 8, batch=2, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and not torch.allclose(a[0], a[1])
    plain = gaussian_coil_maps(4, 8, 8, phase_strength=0.0, rotate=False, seed=0)
    assert plain.imag.abs().max() < 1e-6 and (plain.real > 0).all()


def test_normalize_sensitivities():
    s = torch.randn(2, 3, 5, 4, dtype=torch.complex128)
    s[0, :, 0, 0] = 0
    n = normalize_sensitivities(s)
    assert torch.isfinite(n.real).all() and n[0, :, 0, 0].abs().max() == 0
    r = rss(n)
    r[0, 0, 0] = 1
    torch.testing.assert_close(r, torch.ones_like(r))


@pytest.mark.parametrize("kwargs,word", [({"coils": 0}, "coils"), ({"height": 0}, "height"), ({"batch": 0}, "batch"),
                                         ({"radius": -1.0}, "radius"), ({"coil_width": 0.0}, "coil_width"),
                                         ({"phase_strength": -1.0}, "phase_strength"),
                                         ({"dtype": torch.float32}, "dtype")])
def test_bad_configuration(kwargs, word):
    args = {"coils": 4, "height": 8, "width": 8, **kwargs}
    with pytest.raises(ValueError, match=word):
        gaussian_coil_maps(**args)
