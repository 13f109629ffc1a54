"""MRI forward models: invrim's conformance kit plus numpy's FFT as the independent reference."""
import json

import numpy as np
import pytest
import torch

from invrim import Gaussian, Problem
from invrim.plugins import testing
from invrim_mri.coils import gaussian_coil_maps
from invrim_mri.fft import fft2c, ifft2c, to_channels, to_complex
from invrim_mri.masks import random_mask
from invrim_mri.physics import MultiCoilMRI, SingleCoilMRI

AX = (-2, -1)


def np_fft2c(z):
    return np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(z, axes=AX), norm="ortho"), axes=AX)


def np_ifft2c(k):
    return np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(k, axes=AX), norm="ortho"), axes=AX)


def data(B=3, H=10, W=7, coils=4, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, 2, H, W, generator=g, dtype=dtype)
    mask = random_mask(B, W, acceleration=2, center_fraction=0.3, generator=g)
    sens = gaussian_coil_maps(coils, H, W, batch=B, generator=g,
                              dtype=torch.complex128 if dtype == torch.float64 else torch.complex64)
    return x, mask, sens


# ---- conformance kit ------------------------------------------------------------------------
@pytest.mark.parametrize("cls", [SingleCoilMRI, MultiCoilMRI])
def test_conformance_with_example(cls):
    model, x, params = cls.example()
    ran = testing.check_forward_model(model, x, **params)
    assert "adjoint[float32]" in ran and "adjoint[float64]" in ran and "score-vs-autograd" in ran


@pytest.mark.parametrize("H,W", [(8, 8), (9, 6), (7, 11)])
def test_conformance_full_masks_odd_sizes(H, W):
    x, mask, sens = data(2, H, W, coils=3, dtype=torch.float32)
    full = mask[:, None, :].expand(2, H, W) & (torch.rand(2, H, W, generator=torch.Generator().manual_seed(1)) > 0.2)
    testing.check_forward_model(SingleCoilMRI(), x, mask=full)
    testing.check_forward_model(MultiCoilMRI(), x, mask=full, sens=sens)


def test_score_with_complex_gaussian_noise_matches_autograd():
    x, mask, sens = data()
    problem = Problem(MultiCoilMRI(), Gaussian(0.05))
    y = problem.simulate(x, generator=torch.Generator().manual_seed(2), mask=mask, sens=sens)
    assert y.is_complex() and y.shape == (3, 4, 10, 7)
    testing.check_score_matches_autograd(problem, 0.5 * x, y, mask=mask, sens=sens,
                                         sigma=torch.tensor([0.05, 0.1, 0.2]))


def test_class_attributes_and_config():
    for cls, ydims in ((SingleCoilMRI, ("ky", "kx")), (MultiCoilMRI, ("coil", "ky", "kx"))):
        op = cls()
        assert op.y_is_complex and op.linear and op.x_dims == ("channel", "height", "width") and op.y_dims == ydims
        assert type(op)(**json.loads(json.dumps(op.config()))).config() == op.config()


# ---- numpy reference ------------------------------------------------------------------------
def test_centred_fft_matches_numpy():
    z = torch.randn(2, 9, 6, dtype=torch.complex128)
    np.testing.assert_allclose(fft2c(z).numpy(), np_fft2c(z.numpy()), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ifft2c(z).numpy(), np_ifft2c(z.numpy()), rtol=1e-12, atol=1e-12)
    # DC of a constant image sits at the centre (H // 2, W // 2), with the orthonormal scale
    k = fft2c(torch.ones(1, 9, 6, dtype=torch.complex128))
    assert abs(k[0, 4, 3] - np.sqrt(54)) < 1e-12 and float(k.abs().sum()) == pytest.approx(np.sqrt(54))


@pytest.mark.parametrize("H,W", [(10, 7), (8, 8)])
def test_singlecoil_forward_and_adjoint_match_numpy(H, W):
    x, mask, _ = data(3, H, W)
    z = x[:, 0].numpy() + 1j * x[:, 1].numpy()
    m = mask.numpy()[:, None, :].astype(float)
    y = SingleCoilMRI()(x, mask=mask)
    assert y.shape == (3, H, W) and y.dtype == torch.complex128
    np.testing.assert_allclose(y.numpy(), m * np_fft2c(z), rtol=1e-12, atol=1e-12)
    k = np.random.default_rng(0).standard_normal((3, H, W)) + 1j * np.random.default_rng(1).standard_normal((3, H, W))
    xa = SingleCoilMRI().adjoint(torch.from_numpy(k), mask=mask).numpy()
    ref = np_ifft2c(m * k)
    np.testing.assert_allclose(xa[:, 0] + 1j * xa[:, 1], ref, rtol=1e-12, atol=1e-12)
    # zero-filled pseudo-inverse ignores whatever sits at unsampled locations
    xz = SingleCoilMRI().pseudo_inverse(torch.from_numpy(k), mask=mask).numpy()
    np.testing.assert_allclose(xz[:, 0] + 1j * xz[:, 1], ref, rtol=1e-12, atol=1e-12)


def test_multicoil_forward_and_adjoint_match_numpy():
    x, mask, sens = data(2, 8, 11, coils=5)
    z = x[:, 0].numpy() + 1j * x[:, 1].numpy()
    m = mask.numpy()[:, None, None, :].astype(float)
    s = sens.numpy()
    y = MultiCoilMRI()(x, mask=mask, sens=sens)
    assert y.shape == (2, 5, 8, 11)
    np.testing.assert_allclose(y.numpy(), m * np_fft2c(s * z[:, None]), rtol=1e-12, atol=1e-12)
    xa = MultiCoilMRI().adjoint(y, mask=mask, sens=sens).numpy()
    ref = (np.conj(s) * np_ifft2c(m * y.numpy())).sum(axis=1)
    np.testing.assert_allclose(xa[:, 0] + 1j * xa[:, 1], ref, rtol=1e-12, atol=1e-12)


def test_column_mask_equals_full_mask():
    x, mask, sens = data()
    full = mask[:, None, :].expand(3, 10, 7)
    for op, p in ((SingleCoilMRI(), {}), (MultiCoilMRI(), {"sens": sens})):
        torch.testing.assert_close(op(x, mask=mask, **p), op(x, mask=full, **p))
        torch.testing.assert_close(op(x, mask=mask.float(), **p), op(x, mask=full, **p))


def test_shared_mask_and_maps_broadcast_over_the_batch():
    x, mask, sens = data()
    y = MultiCoilMRI()(x, mask=mask[:1], sens=sens[:1])
    torch.testing.assert_close(y, MultiCoilMRI()(x, mask=mask[:1].expand(3, -1), sens=sens[:1].expand(3, -1, -1, -1)))


def test_unknown_params_are_ignored():
    x, mask, sens = data()
    torch.testing.assert_close(MultiCoilMRI()(x, mask=mask, sens=sens, sigma=0.1, angles=None),
                               MultiCoilMRI()(x, mask=mask, sens=sens))


# ---- pseudo-inverses (the classical baselines) ----------------------------------------------
def test_fully_sampled_singlecoil_inverse_is_exact():
    x, _, _ = data()
    ones = torch.ones(3, 7)
    torch.testing.assert_close(SingleCoilMRI().pseudo_inverse(SingleCoilMRI()(x, mask=ones), mask=ones), x)


def test_sense_of_fully_sampled_noiseless_data_recovers_x():
    x, _, sens = data(coils=4)
    ones = torch.ones(3, 10, 7)
    op = MultiCoilMRI()
    y = op(x, mask=ones, sens=sens)
    torch.testing.assert_close(op.pseudo_inverse(y, mask=ones, sens=sens), x, rtol=1e-12, atol=1e-12)
    # with normalised maps the SENSE combination is the adjoint
    torch.testing.assert_close(op.adjoint(y, mask=ones, sens=sens), x, rtol=1e-12, atol=1e-12)
    # unnormalised maps: the pseudo-inverse still inverts (it divides by sum |S|^2), the adjoint does not
    scaled = sens * torch.linspace(0.5, 2.0, 7, dtype=torch.float64)
    y2 = op(x, mask=ones, sens=scaled)
    torch.testing.assert_close(op.pseudo_inverse(y2, mask=ones, sens=scaled), x, rtol=1e-12, atol=1e-12)


def test_sense_is_the_adjoint_for_binary_masks_and_normalised_maps():
    x, mask, sens = data()
    op = MultiCoilMRI()
    y = op(x, mask=mask, sens=sens) + 0.1 * torch.randn(3, 4, 10, 7, dtype=torch.complex128)
    torch.testing.assert_close(op.pseudo_inverse(y, mask=mask, sens=sens), op.adjoint(y, mask=mask, sens=sens))


def test_float32_in_complex64_out():
    x, mask, sens = data(dtype=torch.float32)
    assert SingleCoilMRI()(x, mask=mask).dtype == torch.complex64
    y = MultiCoilMRI()(x, mask=mask, sens=sens.to(torch.complex128))
    assert y.dtype == torch.complex64
    assert MultiCoilMRI().pseudo_inverse(y, mask=mask, sens=sens).dtype == torch.float32


def test_channel_helpers_are_inverse():
    x = torch.randn(2, 2, 5, 4)
    torch.testing.assert_close(to_channels(to_complex(x)), x)


# ---- bad configuration ----------------------------------------------------------------------
def test_bad_inputs_raise_value_error_naming_the_argument():
    x, mask, sens = data()
    s, m = SingleCoilMRI(), MultiCoilMRI()
    cases = [
        (lambda: s(x), "mask"),
        (lambda: s(x[:, :1], mask=mask), "x"),
        (lambda: s(to_complex(x)[:, None], mask=mask), "x"),
        (lambda: s(x, mask=mask[:, :5]), "mask"),
        (lambda: s(x, mask=torch.ones(3, 9, 7)), "mask"),
        (lambda: s(x, mask=torch.ones(2, 7)), "mask"),
        (lambda: s(x, mask=torch.ones(3, 1, 10, 7)), "mask"),
        (lambda: s(x, mask=mask.to(torch.complex64)), "mask"),
        (lambda: s.adjoint(torch.zeros(3, 1, 10, 7, dtype=torch.complex64), mask=mask), "y"),
        (lambda: m(x, mask=mask), "sens"),
        (lambda: m(x, mask=mask, sens=sens[:, :, :5]), "sens"),
        (lambda: m(x, mask=mask, sens=sens[:2]), "sens"),
        (lambda: m(x, mask=mask, sens=sens[0]), "sens"),
        (lambda: m.adjoint(torch.zeros(3, 2, 10, 7, dtype=torch.complex128), mask=mask, sens=sens), "sens"),
        (lambda: m.adjoint(torch.zeros(3, 10, 7, dtype=torch.complex128), mask=mask, sens=sens), "y"),
    ]
    for fn, word in cases:
        with pytest.raises(ValueError, match=word):
            fn()


# ---- the plugin speaks for its domain: its baseline's name and a k-space panel -----------------
def test_named_baselines_and_the_k_space_panel():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from invrim.evaluation import baseline_name
    from invrim_mri.physics import MultiCoilMRI, SingleCoilMRI
    assert baseline_name(SingleCoilMRI()) == "zero-filled"
    assert baseline_name(MultiCoilMRI()) == "zero-filled SENSE"
    op, x, params = MultiCoilMRI.example()
    y = op(x, **params)
    torch.testing.assert_close(op.baseline(y, **params), op.pseudo_inverse(y, **params))
    fig, ax = plt.subplots()
    op.plot_observation(ax, y[0], **{k: v[0] for k, v in params.items()})
    image = ax.images[0].get_array()
    assert image.shape == tuple(y.shape[-2:]) and np.isfinite(image).all()
    sampled = int((params["mask"][0] != 0).sum())
    assert f"{sampled}/{y.shape[-1]} columns sampled" in ax.get_title() and "RSS of 3 coils" in ax.get_title()
    plt.close(fig)
