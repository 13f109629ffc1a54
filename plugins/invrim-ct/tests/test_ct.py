"""Tests of invrim-ct: invrim's conformance kit, plus independent references from scikit-image."""
import json

import numpy as np
import pytest
import torch

import invrim
from invrim import Problem
from invrim.likelihoods import Gaussian
from invrim.plugins import testing
from invrim_ct.physics import ParallelBeamCT

torch.set_num_threads(1)

skimage = pytest.importorskip("skimage")
from skimage.data import shepp_logan_phantom  # noqa: E402
from skimage.transform import iradon, radon, resize  # noqa: E402


def phantom(N: int) -> np.ndarray:
    """Shepp-Logan resized to N x N, zero outside the circle of radius N // 2 (skimage's circle)."""
    img = resize(shepp_logan_phantom(), (N, N), anti_aliasing=True)
    yy, xx = np.mgrid[:N, :N] - N // 2
    img[yy ** 2 + xx ** 2 > (N // 2) ** 2] = 0
    return img


def psnr(a: np.ndarray, ref: np.ndarray) -> float:
    return float(10 * np.log10(ref.max() ** 2 / np.mean((a - ref) ** 2)))


# ---- invrim's conformance kit --------------------------------------------------------------
def test_conformance_example():
    op, x, params = ParallelBeamCT.example()
    testing.check_forward_model(op, x, **params)


@pytest.mark.parametrize("N,angles", [(12, {"n_angles": 5}), (9, {"angles": [0.0, 33.3, 90.0, 151.0, 200.0, -20.0]}),
                                      (16, {"n_angles": 40, "filter": "hann"})])
def test_conformance_odd_even_multichannel(N, angles):
    op = ParallelBeamCT(N, **angles)
    x = torch.randn(3, 2, N, N, generator=torch.Generator().manual_seed(N))
    ran = testing.check_forward_model(op, x)
    assert "adjoint[float64]" in ran and "score-vs-autograd" in ran


# ---- exactness of the adjoint, independently of the kit ----------------------------------------
def test_adjoint_is_the_transpose_of_the_explicit_matrix():
    N, n_a = 7, 4
    op = ParallelBeamCT(N, n_angles=n_a).double()
    basis = torch.eye(N * N, dtype=torch.float64).reshape(N * N, 1, N, N)
    A = op(basis).reshape(N * N, -1).T                         # columns: images of unit pixels
    ybasis = torch.eye(N * n_a, dtype=torch.float64).reshape(N * n_a, 1, N, n_a)
    At = op.adjoint(ybasis).reshape(N * n_a, -1).T
    torch.testing.assert_close(At, A.T, rtol=0, atol=1e-15)
    # and autograd of the forward model is the adjoint
    x = torch.randn(2, 1, N, N, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 1, N, n_a, dtype=torch.float64)
    (op(x) * w).sum().backward()
    torch.testing.assert_close(x.grad, op.adjoint(w))


def test_score_through_torch_func_matches_the_analytic_score():
    op = ParallelBeamCT(10, n_angles=6).double()
    problem = Problem(op, Gaussian(0.3))
    x = torch.randn(2, 1, 10, 10, dtype=torch.float64)
    y = op(torch.randn_like(x))
    torch.testing.assert_close(problem.autograd_score(x, y), problem.score(x, y))


# ---- independent references: scikit-image ------------------------------------------------------
@pytest.mark.parametrize("N", [64, 63])
@pytest.mark.parametrize("n_angles", [180, 30])
def test_forward_matches_skimage_radon(N, n_angles):
    img = phantom(N)
    op = ParallelBeamCT(N, n_angles=n_angles).double()
    ref = radon(img, theta=np.array(op.angles), circle=True)
    y = op(torch.from_numpy(img)[None, None])[0, 0].numpy()
    assert y.shape == ref.shape == (N, n_angles)
    # same geometry and the same bilinear interpolation: agreement to rounding (measured ~1e-15)
    assert np.linalg.norm(y - ref) / np.linalg.norm(ref) < 1e-12
    y32 = ParallelBeamCT(N, n_angles=n_angles)(torch.from_numpy(img).float()[None, None])[0, 0].numpy()
    assert np.linalg.norm(y32 - ref) / np.linalg.norm(ref) < 1e-5


def test_arbitrary_angles_match_skimage_radon():
    N = 32
    angles = [-15.0, 0.0, 12.5, 45.0, 90.0, 133.0, 179.0, 250.0]
    img = phantom(N)
    ref = radon(img, theta=np.array(angles), circle=True)
    y = ParallelBeamCT(N, angles=angles).double()(torch.from_numpy(img)[None, None])[0, 0].numpy()
    assert np.linalg.norm(y - ref) / np.linalg.norm(ref) < 1e-12


@pytest.mark.parametrize("N,n_angles,filter_name", [(64, 180, "ramp"), (63, 30, "ramp"), (64, 60, "hann"),
                                                    (48, 45, "shepp-logan")])
def test_fbp_matches_skimage_iradon(N, n_angles, filter_name):
    img = phantom(N)
    op = ParallelBeamCT(N, n_angles=n_angles, filter=filter_name).double()
    sino = radon(img, theta=np.array(op.angles), circle=True)
    ours = op.pseudo_inverse(torch.from_numpy(sino)[None, None])[0, 0].numpy()
    ref = iradon(sino, theta=np.array(op.angles), filter_name=filter_name, circle=True)
    # same filter and scaling; the back-projection is our exact adjoint (ray-driven bilinear)
    # where iradon interpolates linearly along the detector: measured 1-3.5 % apart
    assert np.linalg.norm(ours - ref) / np.linalg.norm(ref) < 0.05
    assert abs(psnr(ours, img) - psnr(ref, img)) < 0.5


def test_fbp_of_noiseless_full_angle_data_reconstructs_the_phantom():
    img = phantom(64)
    op = ParallelBeamCT(64, n_angles=180).double()
    rec = op.pseudo_inverse(op(torch.from_numpy(img)[None, None]))[0, 0].numpy()
    assert psnr(rec, img) > 26            # measured 28.2 dB (skimage's iradon: 28.2 dB)
    assert not rec[~op.circle_mask.numpy()].any()    # zero outside the reconstruction circle


def test_fbp_preserves_batch_dtype_and_channels():
    op = ParallelBeamCT(15, n_angles=9)
    y = torch.randn(3, 2, 15, 9)
    out = op.pseudo_inverse(y)
    assert out.shape == (3, 2, 15, 15) and out.dtype == torch.float32
    torch.testing.assert_close(op.pseudo_inverse(y[1:2])[0], out[1])
    assert op.pseudo_inverse(y.double()).dtype == torch.float64


# ---- configuration ------------------------------------------------------------------------------
def test_config_round_trip_and_angles():
    op = ParallelBeamCT(20, n_angles=4, filter="hann")
    assert op.angles == [0.0, 45.0, 90.0, 135.0]
    cfg = json.loads(json.dumps(op.config()))
    rebuilt = ParallelBeamCT(**cfg)
    assert rebuilt.angles == op.angles and rebuilt.filter == "hann"
    assert ParallelBeamCT(8).n_angles == 180
    assert op.state_dict() == {}          # the matrix is rebuilt from config, never saved


@pytest.mark.parametrize("kwargs,word", [
    ({"image_size": 1}, "image_size"), ({"image_size": 0}, "image_size"), ({"image_size": 8.5}, "image_size"),
    ({"image_size": True}, "image_size"), ({"image_size": 8, "n_angles": 0}, "n_angles"),
    ({"image_size": 8, "n_angles": -3}, "n_angles"), ({"image_size": 8, "n_angles": 2.5}, "n_angles"),
    ({"image_size": 8, "angles": []}, "angles"), ({"image_size": 8, "angles": [0.0, float("nan")]}, "angles"),
    ({"image_size": 8, "angles": [[0.0, 1.0]]}, "angles"), ({"image_size": 8, "angles": ["a"]}, "angles"),
    ({"image_size": 8, "angles": [0.0], "n_angles": 3}, "angles"), ({"image_size": 8, "filter": "foo"}, "filter"),
    ({"image_size": 4096, "n_angles": 720}, "image_size"),
])
def test_bad_configuration_raises_value_error(kwargs, word):
    with pytest.raises(ValueError, match=word) as info:
        ParallelBeamCT(**kwargs)
    assert "\n" not in str(info.value)


def test_bad_inputs_raise_value_error():
    op = ParallelBeamCT(8, n_angles=3)
    with pytest.raises(ValueError, match="x of shape"):
        op(torch.randn(2, 1, 9, 8))
    with pytest.raises(ValueError, match="x of shape"):
        op(torch.randn(8, 8))
    with pytest.raises(ValueError, match="y of shape"):
        op.adjoint(torch.randn(2, 1, 8, 4))
    with pytest.raises(ValueError, match="real floating-point"):
        op(torch.randn(1, 1, 8, 8, dtype=torch.complex64))
    with pytest.raises(ValueError, match="angles"):
        op(torch.randn(1, 1, 8, 8), angles=torch.zeros(1, 3))
    op(torch.randn(1, 1, 8, 8), sigma=torch.ones(1), mask=None)    # unknown params are ignored


# ---- plugin registration and a RIM smoke test --------------------------------------------------
def test_registered_through_the_entry_point():
    invrim.plugins.refresh()
    reg = invrim.plugins.registry()
    info = reg.forward_models.info("ct_parallel")
    assert info.distribution == "invrim-ct" and info.status == "active"
    op = reg.forward_models.build("ct_parallel", image_size=10, n_angles=5)
    assert isinstance(op, ParallelBeamCT)
    problem = Problem.from_config(**Problem(op, Gaussian(0.1)).config())
    assert problem.forward_model.angles == op.angles


def test_hooks_module_is_light():
    import subprocess
    import sys
    code = "import sys, invrim_ct.hooks; print('invrim_ct.physics' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_rim_trains_and_predicts_with_the_fbp_start():
    torch.manual_seed(0)
    N = 12
    op = ParallelBeamCT(N, n_angles=6)
    problem = Problem(op, Gaussian(0.1))
    x = torch.rand(4, 1, N, N) * op.circle_mask
    y = problem.simulate(x, torch.Generator().manual_seed(1))
    rim = invrim.RIM((N, N), invrim.Hourglass(1, dimensions=2, nf=4, ch_mult=(1,), hidden_units=4),
                     problem=problem, T=2, initialization_method="approximate_inverse", standardize_score=True)
    x0, _ = rim.initialization(y)
    torch.testing.assert_close(x0, op.pseudo_inverse(y))
    history = rim.fit([{"y": y[i], "x": x[i]} for i in range(4)], epochs=1, batch_size=2, progress=False)
    assert np.isfinite(history[-1])
    assert rim.predict(y).shape == x.shape


# ---- the plugin speaks for its domain: FBP as the named baseline, a sinogram panel -------------
def test_fbp_is_the_named_baseline_and_tikhonov_cg_beats_it_at_16_views():
    from invrim.baselines import choose_tikhonov, tikhonov
    from invrim.evaluation import baseline_name
    N = 32
    op = ParallelBeamCT(image_size=N, n_angles=16)
    assert baseline_name(op) == "FBP"
    g = torch.Generator().manual_seed(0)
    truth = torch.from_numpy(phantom(N)).float()[None, None]
    x = torch.cat([truth, truth.flip(-1), truth.transpose(-1, -2), truth.flip(-2)])
    y = op(x) + 0.5 * torch.randn(op(x).shape, generator=g)
    fbp = op.baseline(y)
    torch.testing.assert_close(fbp, op.pseudo_inverse(y))
    choice = choose_tikhonov(op, [(y, x, {})])
    mse = lambda e: float(((e - x) ** 2).mean())   # noqa: E731
    assert mse(tikhonov(op, y, choice)) < mse(fbp)   # sparse views: regularised least squares wins


def test_plot_observation_draws_the_sinogram_against_angle():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    op = ParallelBeamCT(image_size=16, n_angles=10)
    y = op(torch.rand(1, 1, 16, 16))[0]
    fig, ax = plt.subplots()
    op.plot_observation(ax, y)
    assert ax.images and ax.images[0].get_array().shape == (16, 10)
    assert ax.get_xlabel() == "angle [°]" and "10 angles" in ax.get_title()
    plt.close(fig)


def test_cli_evaluate_reports_fbp_and_tikhonov(tmp_path, capsys):
    from invrim.cli import main
    physics = ["--forward-model", "ct_parallel", "-f", "image_size=24", "-f", "n_angles=12", "--generator",
               "ellipses", "-g", "shape=[24,24]", "-l", "sigma=0.2", "--quiet"]
    assert main(["simulate", *physics, "--samples", "8", "--seed", "0", "-o", str(tmp_path / "train.h5")]) == 0
    assert main(["simulate", *physics, "--samples", "4", "--seed", "1", "-o", str(tmp_path / "test.h5")]) == 0
    assert main(["train", str(tmp_path / "train.h5"), "-o", str(tmp_path / "run"), "-b", "nf=4", "-b",
                 "hidden_units=8", "--T", "2", "--epochs", "1", "--quiet"]) == 0
    assert main(["reconstruct", str(tmp_path / "run"), str(tmp_path / "test.h5"), "-o", str(tmp_path / "r.h5"),
                 "--quiet"]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "r.h5")]) == 0
    out = capsys.readouterr().out
    assert "FBP (baseline)" in out and "Tikhonov-CG (λ=" in out, out
