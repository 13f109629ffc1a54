"""invrim.metrics against independent references (scikit-image) and on its own conventions."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from invrim.metrics import magnitude, mse, nmse, psnr, ssim, summarize

skm = pytest.importorskip("skimage.metrics")
skdata = pytest.importorskip("skimage.data")

RTOL = 1e-9    # same algorithm in float64: only summation order differs (measured ~1e-15)
ATOL = 1e-10


@pytest.fixture(scope="module")
def images() -> tuple[torch.Tensor, torch.Tensor]:
    """(truth, estimate) of shape (5, 48, 48), float64: camera crops (different scenes and noise
    levels) and random images with different ranges."""
    rng = np.random.default_rng(0)
    cam = skdata.camera().astype(np.float64) / 255.0
    truths, estimates = [], []
    for k, (i, j) in enumerate([(40, 200), (250, 100), (300, 330)]):
        t = cam[i:i + 48, j:j + 48]
        truths.append(t)
        estimates.append(t + (0.02 + 0.05 * k) * rng.standard_normal(t.shape))
    for scale in (1.0, 7.5):
        t = scale * rng.random((48, 48))
        truths.append(t)
        estimates.append(t + 0.3 * scale * rng.random((48, 48)) - 0.1 * scale)
    return torch.from_numpy(np.stack(truths)), torch.from_numpy(np.stack(estimates))


def close(ours: torch.Tensor, ref) -> None:
    assert ours.dtype == torch.float64
    np.testing.assert_allclose(ours.numpy(), np.asarray(ref, dtype=np.float64), rtol=RTOL, atol=ATOL)


# ----------------------------------------------------------------------------------------------
# against skimage
# ----------------------------------------------------------------------------------------------
def test_psnr_matches_skimage(images):
    truth, est = images
    ours = psnr(est, truth, data_range=1.0)
    close(ours, [skm.peak_signal_noise_ratio(t, e, data_range=1.0)
                 for t, e in zip(truth.numpy(), est.numpy())])


def test_psnr_per_sample_data_range_and_default(images):
    truth, est = images
    dr = torch.tensor([1.0, 2.0, 0.5, 1.5, 10.0], dtype=torch.float64)
    close(psnr(est, truth, data_range=dr),
          [skm.peak_signal_noise_ratio(t, e, data_range=float(r))
           for t, e, r in zip(truth.numpy(), est.numpy(), dr.numpy())])
    # default: per-sample max - min of the truth
    close(psnr(est, truth),
          [skm.peak_signal_noise_ratio(t, e, data_range=float(t.max() - t.min()))
           for t, e in zip(truth.numpy(), est.numpy())])
    # a 0-d tensor behaves like the float
    close(psnr(est, truth, data_range=torch.tensor(2.0)), psnr(est, truth, data_range=2.0).numpy())


def test_mse_nmse_match_skimage(images):
    truth, est = images
    t_np, e_np = truth.numpy(), est.numpy()
    close(mse(est, truth), [skm.mean_squared_error(t, e) for t, e in zip(t_np, e_np)])
    # skimage's NRMSE with 'euclidean' normalisation is sqrt(NMSE)
    nrmse = [skm.normalized_root_mse(t, e, normalization="euclidean") for t, e in zip(t_np, e_np)]
    close(nmse(est, truth), np.square(nrmse))
    close(nmse(est, truth).sqrt(), nrmse)


def test_ssim_2d_grey_matches_skimage(images):
    truth, est = images
    ref = [skm.structural_similarity(t, e, data_range=1.0) for t, e in zip(truth.numpy(), est.numpy())]
    close(ssim(est, truth, data_range=1.0), ref)
    close(ssim(est[:, None], truth[:, None], data_range=1.0), ref)      # (B, 1, H, W)


def test_ssim_window_and_constants_match_skimage(images):
    truth, est = images
    ref = [skm.structural_similarity(t, e, data_range=2.0, win_size=5, K1=0.02, K2=0.05)
           for t, e in zip(truth.numpy(), est.numpy())]
    close(ssim(est, truth, data_range=2.0, window_size=5, K1=0.02, K2=0.05), ref)


def test_ssim_default_data_range_and_per_sample(images):
    truth, est = images
    t_np, e_np = truth.numpy(), est.numpy()
    close(ssim(est, truth), [skm.structural_similarity(t, e, data_range=float(t.max() - t.min()))
                             for t, e in zip(t_np, e_np)])
    dr = torch.tensor([1.0, 2.0, 0.5, 1.5, 10.0], dtype=torch.float64)
    close(ssim(est, truth, data_range=dr), [skm.structural_similarity(t, e, data_range=float(r))
                                            for t, e, r in zip(t_np, e_np, dr.numpy())])


def test_ssim_gaussian_matches_skimage(images):
    truth, est = images
    for sigma in (1.5, 1.0):
        ref = [skm.structural_similarity(t, e, data_range=1.0, gaussian_weights=True, sigma=sigma,
                                         use_sample_covariance=False)
               for t, e in zip(truth.numpy(), est.numpy())]
        close(ssim(est, truth, data_range=1.0, gaussian=True, sigma=sigma), ref)
    # window_size is ignored with gaussian=True
    close(ssim(est, truth, data_range=1.0, gaussian=True, window_size=3),
          ssim(est, truth, data_range=1.0, gaussian=True).numpy())


def test_ssim_channels_match_skimage_channel_axis():
    rng = np.random.default_rng(1)
    truth = rng.random((3, 3, 20, 24))                       # (B, C, H, W)
    est = truth + 0.2 * rng.standard_normal(truth.shape)
    ref = [skm.structural_similarity(t, e, data_range=1.0, channel_axis=0) for t, e in zip(truth, est)]
    close(ssim(torch.from_numpy(est), torch.from_numpy(truth), data_range=1.0), ref)
    # several channel axes are averaged together: (B, 3, 1, H, W) gives the same
    close(ssim(torch.from_numpy(est[:, :, None]), torch.from_numpy(truth[:, :, None]), data_range=1.0),
          ref)


def test_ssim_3d_matches_skimage():
    rng = np.random.default_rng(2)
    truth = rng.random((2, 1, 10, 12, 11))
    est = truth + np.array([0.05, 0.3])[:, None, None, None, None] * rng.standard_normal(truth.shape)
    t, e = torch.from_numpy(truth), torch.from_numpy(est)
    close(ssim(e, t, data_range=1.0, spatial_dims=3),
          [skm.structural_similarity(a[0], b[0], data_range=1.0) for a, b in zip(truth, est)])
    # the gaussian window (11 taps) needs 11 pixels per side
    truth = rng.random((2, 12, 11, 13))
    est = truth + 0.1 * rng.standard_normal(truth.shape)
    close(ssim(torch.from_numpy(est), torch.from_numpy(truth), data_range=1.0, spatial_dims=3,
               gaussian=True),
          [skm.structural_similarity(a, b, data_range=1.0, gaussian_weights=True,
                                     use_sample_covariance=False) for a, b in zip(truth, est)])


def test_ssim_1d_matches_skimage():
    rng = np.random.default_rng(3)
    truth = rng.random((4, 2, 40))                          # (B, C, L)
    est = truth + 0.1 * rng.standard_normal(truth.shape)
    close(ssim(torch.from_numpy(est), torch.from_numpy(truth), data_range=1.0, spatial_dims=1),
          [skm.structural_similarity(a, b, data_range=1.0, channel_axis=0) for a, b in zip(truth, est)])


# ----------------------------------------------------------------------------------------------
# conventions
# ----------------------------------------------------------------------------------------------
def test_identical_images(images):
    truth, _ = images
    assert torch.isinf(psnr(truth, truth)).all() and (psnr(truth, truth) > 0).all()
    assert torch.equal(nmse(truth, truth), torch.zeros(5, dtype=torch.float64))
    assert torch.equal(mse(truth, truth), torch.zeros(5, dtype=torch.float64))
    torch.testing.assert_close(ssim(truth, truth), torch.ones(5, dtype=torch.float64), rtol=0, atol=1e-12)
    torch.testing.assert_close(ssim(truth, truth, gaussian=True), torch.ones(5, dtype=torch.float64),
                               rtol=0, atol=1e-12)


def test_degenerate_truth():
    zero = torch.zeros(2, 8, 8)
    est = torch.stack([torch.ones(8, 8), torch.zeros(8, 8)])
    v = nmse(est, zero)
    assert math.isinf(v[0]) and math.isnan(v[1])
    # data_range=None on a constant truth: PSNR is inf for a perfect estimate, nan otherwise
    p = psnr(est, zero)
    assert math.isnan(p[0]) and math.isinf(p[1])
    assert torch.isnan(ssim(est, zero)).all()
    assert torch.isfinite(ssim(est, zero, data_range=1.0)).all()


def test_shape_mismatch_message():
    with pytest.raises(ValueError) as info:
        psnr(torch.zeros(2, 8, 8), torch.zeros(2, 8, 9))
    msg = str(info.value)
    assert "(2, 8, 8)" in msg and "(2, 8, 9)" in msg and "\n" not in msg
    for fn in (mse, nmse, ssim):
        with pytest.raises(ValueError, match=r"\(3, 8, 8\).*\(2, 8, 8\)"):
            fn(torch.zeros(3, 8, 8), torch.zeros(2, 8, 8))


def test_validation_errors():
    x = torch.rand(2, 8, 8)
    for bad in (0.0, -1.0, torch.tensor([1.0, 0.0]), float("nan")):
        with pytest.raises(ValueError, match="data_range must be positive"):
            psnr(x, x, data_range=bad)
        with pytest.raises(ValueError, match="data_range must be positive"):
            ssim(x, x, data_range=bad)
    with pytest.raises(ValueError, match="shape"):
        psnr(x, x, data_range=torch.ones(3))
    with pytest.raises(ValueError, match=r"window exceeds the spatial size \(6, 8\)"):
        ssim(torch.rand(2, 6, 8), torch.rand(2, 6, 8))
    with pytest.raises(ValueError, match=r"11-pixel window"):
        ssim(torch.rand(2, 10, 12), torch.rand(2, 10, 12), gaussian=True)
    with pytest.raises(ValueError, match="spatial_dims"):
        ssim(x, x, spatial_dims=4)
    with pytest.raises(ValueError, match="window_size"):
        ssim(x, x, window_size=4)
    with pytest.raises(ValueError, match="at least 3 axes"):
        ssim(torch.rand(8, 8), torch.rand(8, 8))
    with pytest.raises(ValueError, match="different devices"):
        mse(torch.rand(2, 8, device="meta"), torch.rand(2, 8))


def test_complex_equals_magnitude(images):
    truth, est = images
    rng = np.random.default_rng(4)
    phase_t = torch.from_numpy(np.exp(2j * np.pi * rng.random(truth.shape)))
    phase_e = torch.from_numpy(np.exp(2j * np.pi * rng.random(truth.shape)))
    zt, ze = truth * phase_t, est.abs() * phase_e
    for fn in (mse, nmse, psnr, ssim):
        torch.testing.assert_close(fn(ze, zt), fn(est.abs(), truth), rtol=1e-12, atol=1e-12)
    # complex64 is computed in float64 as well
    assert psnr(ze.to(torch.complex64), zt.to(torch.complex64)).dtype == torch.float64
    # invrim's 2-channel (real, imag) layout: magnitude() gives the same as the complex tensor
    two = torch.stack([zt.real, zt.imag], dim=1)                       # (B, 2, H, W)
    mag = magnitude(two)
    assert mag.shape == (5, 1, 48, 48) and mag.dtype == torch.float64
    torch.testing.assert_close(mag[:, 0], truth, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(magnitude(two.movedim(1, -1), channel_axis=-1)[..., 0], truth,
                               rtol=1e-12, atol=1e-12)
    assert magnitude(two.float()).dtype == torch.float32
    with pytest.raises(ValueError, match="size 2"):
        magnitude(torch.zeros(2, 3, 4, 4))


def test_dtypes_give_float64(images):
    truth, est = images
    t32, e32 = truth.float(), est.float()
    for fn in (mse, nmse, psnr, ssim):
        out = fn(e32, t32)
        assert out.dtype == torch.float64 and out.shape == (5,)
        # computed on the float32 values, upcast exactly
        torch.testing.assert_close(out, fn(e32.double(), t32.double()), rtol=0, atol=0)
    ti = (truth * 255).round().to(torch.uint8)
    ei = (est.clamp(0, 1) * 255).round().to(torch.uint8)
    torch.testing.assert_close(psnr(ei, ti, data_range=255),
                               psnr(ei.double(), ti.double(), data_range=255.0), rtol=0, atol=0)
    close(psnr(ei, ti, data_range=255),
          [skm.peak_signal_noise_ratio(t, e) for t, e in zip(ti.numpy(), ei.numpy())])


def test_batch_consistency(images):
    truth, est = images
    dr = torch.tensor([1.0, 2.0, 0.5, 1.5, 10.0], dtype=torch.float64)
    for fn, kw in ((mse, {}), (nmse, {}), (psnr, {"data_range": dr}), (ssim, {"data_range": dr}),
                   (ssim, {"gaussian": True})):
        batched = fn(est, truth, **kw)
        single = torch.cat([fn(est[i:i + 1], truth[i:i + 1],
                               **{k: (v[i:i + 1] if isinstance(v, torch.Tensor) else v)
                                  for k, v in kw.items()})
                            for i in range(5)])
        torch.testing.assert_close(batched, single, rtol=1e-12, atol=1e-14)
    assert psnr(est[:0], truth[:0]).shape == (0,) and ssim(est[:0], truth[:0]).shape == (0,)


def test_differentiable(images):
    truth, est = images
    e = est.clone().requires_grad_(True)
    (ssim(e, truth, data_range=1.0).sum() + psnr(e, truth, data_range=1.0).sum()).backward()
    assert e.grad is not None and torch.isfinite(e.grad).all()


def test_summarize():
    s = summarize(torch.tensor([1.0, float("nan"), 3.0, 2.0, 6.0]))
    assert s == {"mean": 3.0, "std": pytest.approx(np.std([1, 3, 2, 6])), "median": 2.5,
                 "min": 1.0, "max": 6.0, "n": 4}
    assert all(isinstance(s[k], float) for k in ("mean", "std", "median", "min", "max"))
    s = summarize(torch.tensor([30.0, float("inf"), 20.0, float("nan")]))
    assert s["n"] == 3 and s["mean"] == math.inf and s["max"] == math.inf
    assert s["median"] == 30.0 and s["min"] == 20.0 and math.isnan(s["std"])
    s = summarize(torch.tensor([float("nan")]))
    assert s["n"] == 0 and all(math.isnan(s[k]) for k in ("mean", "std", "median", "min", "max"))
