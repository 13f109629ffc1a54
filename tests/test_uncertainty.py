"""Calibrated uncertainty: conformal coverage within its binomial band, the data-consistency
statistic against its definition, out-of-distribution flags, ensembles, files and clear errors."""
from __future__ import annotations

import json
import math
import shutil

import h5py
import numpy as np
import pytest
import torch

from invrim.cli import main
from invrim.data import DataError, HDF5Dataset, simulate
from invrim.evaluation import evaluate, format_table
from invrim.reconstruct import data_fit, read_reconstruction, reconstruct
from invrim.runs import CALIBRATION_FILE, CheckpointError
from invrim.training.from_file import train_on_file
from invrim.uncertainty import (CoverageTally, calibrate, conformal_quantiles, coverage, intervals,
                                rank_correlation)

TINY = {"nf": 4, "hidden_units": 8, "ch_mult": [2]}
PHYSICS = dict(generator="ellipses", forward_model_config={"psf_sigma": [0.8, 1.5]},
               likelihood_config={"sigma": 0.05}, generator_config={"shape": [16, 16]}, progress=False)


def _band(p: float, n: int, z: float = 3.5) -> float:
    return z * math.sqrt(p * (1 - p) / n)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("unc")
    train = simulate(root / "train.h5", "blur", "gaussian", 192, seed=0, **PHYSICS)
    cal = simulate(root / "cal.h5", "blur", "gaussian", 240, seed=1, **PHYSICS)
    test = simulate(root / "test.h5", "blur", "gaussian", 240, seed=2, **PHYSICS)
    runs = []
    for seed, epochs in ((0, 5), (1, 1)):      # the first learns to fit y; the second is an ensemble member
        run = root / f"run{seed}"
        train_on_file(train, run, backbone_config=TINY, epochs=epochs, batch_size=16, progress=False, seed=seed)
        runs.append(run)
    return root, runs, cal, test


# ---- the conformal arithmetic on exchangeable scores (no RIM) -----------------------------------
def test_conformal_quantiles_cover_new_draws_within_the_binomial_band():
    rng = np.random.default_rng(0)
    n, pixels, level = 400, 32, 0.9
    scales = rng.uniform(0.1, 2.0, (n + 4000, 1)) * np.ones((1, pixels))
    scores = np.abs(rng.standard_normal((n + 4000, pixels))) * scales        # heavy per-sample spread
    q = conformal_quantiles(scores[:n], level)
    new = scores[n:]
    pixel_cov = float((new <= q["pixel"]).mean())
    image_cov = float((new.max(axis=1) <= q["image"]).mean())
    # the realised coverage of one calibration is Beta-distributed around the nominal level
    assert abs(pixel_cov - level) < _band(level, n) + 1 / (n + 1)
    assert abs(image_cov - level) < _band(level, n) + 1 / (n + 1)
    assert pixel_cov >= level - _band(level, n)
    # too few samples for a level: no quantile rather than a wrong one
    assert conformal_quantiles(scores[:5], 0.99)["image"] is None


def test_rank_correlation_matches_its_definition():
    a = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    assert rank_correlation(a, a ** 3) == pytest.approx(1.0)
    assert rank_correlation(a, -a) == pytest.approx(-1.0)
    b = np.array([2.0, 1.0, 4.0, 3.0, 5.0])            # Spearman: 1 - 6 Σd² / (n(n²-1)) = 1 - 24/120
    assert rank_correlation(a, b) == pytest.approx(0.8)
    assert math.isnan(rank_correlation(a, np.ones(5)))


# ---- the data-consistency statistic ---------------------------------------------------------------
def test_reduced_chi_square_of_the_truth_is_one_and_matches_numpy(setup):
    root, runs, cal, test = setup
    ds = HDF5Dataset(test, dtype=torch.float64)
    batch = ds.read(0, len(ds))
    y, x = batch.pop("y"), batch.pop("x")
    fit = data_fit(ds.problem, x, y, **batch).numpy()
    # the definition, computed independently: Σ (y − F(x))² / σ² over the number of values
    fx = ds.problem.forward_model(x, **batch).numpy()
    sigma = 0.05
    direct = (((y.numpy() - fx) / sigma) ** 2).reshape(len(ds), -1).mean(axis=1)
    np.testing.assert_allclose(fit, direct, rtol=1e-6)
    # for the true image, χ²/values has mean 1 and standard deviation √(2/values)
    values = y[0].numel()
    assert abs(fit.mean() - 1) < 4 * math.sqrt(2 / values) / math.sqrt(len(ds))
    ds.close()


def test_poisson_deviance_matches_its_definition_and_is_about_one_at_high_counts(tmp_path):
    from scipy.special import xlogy
    path = simulate(tmp_path / "p.h5", "blur", "poisson", 64, generator="ellipses",
                    forward_model_config={"psf_sigma": 1.0}, likelihood_config={"gain": 200.0, "background": 50.0},
                    generator_config={"shape": [16, 16]}, seed=0, progress=False)
    ds = HDF5Dataset(path, dtype=torch.float64)
    batch = ds.read(0, len(ds))
    y, x = batch.pop("y"), batch.pop("x")
    fit = data_fit(ds.problem, x, y, **batch).numpy()
    lam = 200.0 * ds.problem.forward_model(x, **batch).numpy() + 50.0
    yn = y.numpy()
    direct = (2 * (xlogy(yn, yn / lam) - (yn - lam))).reshape(len(ds), -1).mean(axis=1)
    np.testing.assert_allclose(fit, direct, rtol=1e-9)
    # with every rate far above one the deviance per value has mean about 1 (not at low counts)
    assert 0.9 < float(fit.mean()) < 1.1
    ds.close()


# ---- calibrate, reconstruct --uncertainty, evaluate -------------------------------------------------
def test_coverage_on_held_out_file_lies_in_its_band_and_flags_shifted_data(setup, tmp_path):
    root, runs, cal, test = setup
    record = calibrate(runs[0], cal, 0.9, progress=False)
    assert (runs[0] / CALIBRATION_FILE).is_file()
    saved = json.loads((runs[0] / CALIBRATION_FILE).read_text())
    assert saved["format"] == "invrim-calibration" and saved["pixel"]["quantile"] == record["pixel"]["quantile"]
    out = reconstruct(runs[0], test, tmp_path / "r.h5", uncertainty=True, progress=False)
    with h5py.File(out, "r") as f, h5py.File(test, "r") as g:
        x, x_hat, u = (torch.from_numpy(a) for a in (g["x"][:], f["x_hat"][:], f["x_uncertainty"][:]))
        ood = f["ood"][:]
        assert f["data_fit"].shape == (240,) and u.shape == x_hat.shape
    n_cal = record["pixel"]["samples"]
    lower, upper = intervals(x_hat, u / record["pixel"]["quantile"] - record["scale"]["floor"], record)
    cov = coverage(x, lower, upper)
    # per pixel: the per-sample fractions are independent across test samples; the calibration adds
    # the Beta spread of one draw of n_cal samples
    spread = float(cov["per_sample"].std()) / math.sqrt(len(x)) + _band(0.9, n_cal, 1.0)
    assert abs(cov["pixel"] - 0.9) < 3.5 * spread, cov["pixel"]
    # whole images at the image quantile
    lo_i, hi_i = intervals(x_hat, u / record["pixel"]["quantile"] - record["scale"]["floor"], record, per="image")
    image_cov = coverage(x, lo_i, hi_i)["image"]
    assert abs(image_cov - 0.9) < 3.5 * math.sqrt(0.09 / len(x) + 0.09 / n_cal)
    # in distribution: flagged at about the stated false-alarm rate
    assert ood.mean() <= 0.05 + _band(0.05, len(x)) + _band(0.05, record["data_fit"]["samples"])
    # observations noisier than their file says: flagged in most samples
    noisy = tmp_path / "noisy.h5"
    noisy.write_bytes(test.read_bytes())
    with h5py.File(noisy, "r+") as f:
        f["y"][...] = f["y"][:] + np.random.default_rng(0).normal(0, 0.15, f["y"].shape).astype(np.float32)
    out_noisy = reconstruct(runs[0], noisy, tmp_path / "rn.h5", uncertainty=True, progress=False)
    with h5py.File(out_noisy, "r") as f:
        assert f["ood"][:].mean() > 0.8
    # evaluate reports both, from the file alone
    result = evaluate(out)
    assert result["uncertainty"]["pixel_coverage"] == pytest.approx(cov["pixel"], abs=1e-9)
    assert result["data_fit"]["flagged"] == int(ood.sum())
    text = format_table(result)
    assert "uncertainty (x_hat +- x_uncertainty, calibrated for 90%): pixels inside" in text
    assert "data consistency (reduced chi-square" in text


def test_coverage_tally_agrees_with_direct_counts(setup):
    root, runs, cal, test = setup
    record = calibrate(runs[0], cal, 0.9, progress=False, save=False)
    rng = torch.Generator().manual_seed(0)
    x = torch.rand(20, 1, 8, 8, generator=rng, dtype=torch.float64)
    x_hat = x + 0.1 * torch.randn(20, 1, 8, 8, generator=rng, dtype=torch.float64)
    scale = torch.rand(20, 1, 8, 8, generator=rng, dtype=torch.float64)
    lower, upper = intervals(x_hat, scale, record)
    tally = CoverageTally(record)
    for lo in (0, 7, 13):                                  # uneven batches
        hi = {0: 7, 7: 13, 13: 20}[lo]
        tally.add(x[lo:hi], x_hat[lo:hi], (upper - x_hat)[lo:hi])
    r = tally.result()
    assert r["pixel_coverage"] == pytest.approx(coverage(x, lower, upper)["pixel"])
    at95 = next(c for c in r["curve"] if c["nominal"] == 0.95)
    lo95, hi95 = intervals(x_hat, scale, record, coverage=0.95)
    assert at95["pixel"] == pytest.approx(coverage(x, lo95, hi95)["pixel"])


def test_ensemble_mean_and_spread_and_its_calibration(setup, tmp_path):
    root, runs, cal, test = setup
    out = reconstruct(runs[0], test, tmp_path / "e.h5", ensemble=[runs[1]], progress=False)
    singles = [reconstruct(r, test, tmp_path / f"s{i}.h5", progress=False) for i, r in enumerate(runs)]
    with h5py.File(out, "r") as f:
        x_hat, spread = f["x_hat"][:], f["x_spread"][:]
    members = []
    for s in singles:
        with h5py.File(s, "r") as f:
            members.append(f["x_hat"][:])
    np.testing.assert_allclose(x_hat, np.mean(members, axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(spread, np.std(members, axis=0, ddof=1), rtol=1e-4, atol=1e-6)
    assert read_reconstruction(out)["ensemble"][0]["run"] == str(runs[1].resolve())
    record = calibrate(runs[0], cal, 0.9, ensemble=[runs[1]], progress=False, save=False)
    # the ensemble's spread is the base scale; "auto" keeps it or the learned scale built on it,
    # whichever gives the narrower intervals on the tuning half
    assert record["scale"]["base"] == "ensemble" and len(record["ensemble"]) == 1
    assert set(record["tuning"]["scales"]) == {"ensemble", "learned"}
    assert record["scale"]["method"] == min(record["tuning"]["scales"],
                                            key=lambda k: record["tuning"]["scales"][k]["mean_half_width"])
    base_only = calibrate(runs[0], cal, 0.9, ensemble=[runs[1]], scale="base", progress=False, save=False)
    assert base_only["scale"]["method"] == "ensemble" and set(base_only["tuning"]["scales"]) == {"ensemble"}
    with pytest.raises(DataError, match="same weights as the main run"):
        reconstruct(runs[0], test, tmp_path / "dup.h5", ensemble=[runs[0]], progress=False)


# ---- the command line and its errors -----------------------------------------------------------------
def _one_line(capsys, argv, match):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and match in err, err
    return err


def test_cli_calibrate_reconstruct_evaluate_show(setup, tmp_path, capsys):
    root, runs, cal, test = setup
    assert main(["calibrate", str(runs[1]), str(cal), "--coverage", "0.95", "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "per pixel, 95% coverage" in text and "wrote" in text
    out = tmp_path / "r.h5"
    assert main(["reconstruct", str(runs[1]), str(test), "-o", str(out), "--uncertainty", "--quiet"]) == 0
    assert read_reconstruction(out)["uncertainty"]["coverage"] == 0.95
    # the same job again is a no-op; the job without --uncertainty is another one
    before = out.read_bytes()
    assert main(["reconstruct", str(runs[1]), str(test), "-o", str(out), "--uncertainty", "--quiet"]) == 0
    assert out.read_bytes() == before
    _one_line(capsys, ["reconstruct", str(runs[1]), str(test), "-o", str(out), "--quiet"], "--overwrite")
    fig = tmp_path / "cal.png"
    assert main(["evaluate", str(out), "--plot", str(fig)]) == 0
    assert "pixels inside" in capsys.readouterr().out and fig.stat().st_size > 10_000
    assert main(["show", str(out), "--index", "1", "-o", str(tmp_path / "s.png")]) == 0


def test_clear_errors(setup, tmp_path, capsys):
    root, runs, cal, test = setup
    fresh = tmp_path / "fresh"                       # a copy of a run, without its calibration
    shutil.copytree(runs[1], fresh, ignore=shutil.ignore_patterns(CALIBRATION_FILE))
    # no calibration yet: say how to make one
    err = _one_line(capsys, ["reconstruct", str(fresh), str(test), "-o", str(tmp_path / "x.h5"), "--uncertainty"],
                    "has no calibration")
    assert "invrim calibrate" in err and not (tmp_path / "x.h5").exists()
    with pytest.raises(CheckpointError):
        reconstruct(fresh, test, tmp_path / "x.h5", uncertainty=True, progress=False)
    # the training file is not a calibration file
    _one_line(capsys, ["calibrate", str(fresh), str(root / "train.h5")], "trained (or validated) on")
    # a calibration file needs ground truth
    obs_only = tmp_path / "obs.h5"
    obs_only.write_bytes(test.read_bytes())
    with h5py.File(obs_only, "r+") as f:
        del f["x"]
    _one_line(capsys, ["calibrate", str(fresh), str(obs_only)], "x")
    # another physics
    other = simulate(tmp_path / "other.h5", "identity", "gaussian", 30, generator="ellipses",
                     generator_config={"shape": [16, 16]}, seed=0, progress=False)
    _one_line(capsys, ["calibrate", str(fresh), str(other)], "forward model")
    # too few samples for the coverage
    small = simulate(tmp_path / "small.h5", "blur", "gaussian", 12, seed=5, **PHYSICS)
    err = _one_line(capsys, ["calibrate", str(fresh), str(small), "--coverage", "0.95", "--quiet"], "too few")
    assert "so about 38 in the file" in err
    _one_line(capsys, ["calibrate", str(fresh), str(cal), "--coverage", "1.5"], "coverage must lie")
    assert not (fresh / CALIBRATION_FILE).exists()
    # a calibration of other weights is refused
    calibrate(fresh, cal, progress=False)
    data = json.loads((fresh / CALIBRATION_FILE).read_text())
    data["weights"]["sha256"] = "0" * 64
    (fresh / CALIBRATION_FILE).write_text(json.dumps(data))
    _one_line(capsys, ["reconstruct", str(fresh), str(test), "-o", str(tmp_path / "y.h5"), "--uncertainty"],
              "other weights")
    # a reconstruction without intervals has no calibration figure
    plain = reconstruct(fresh, test, tmp_path / "plain.h5", progress=False)
    _one_line(capsys, ["evaluate", str(plain), "--plot", str(tmp_path / "c.png")], "--uncertainty")


def test_learned_scale_is_applied_at_reconstruction_as_calibrated(setup, tmp_path):
    """The learned scale is fitted on the tuning half only; reconstruct applies exactly the formula
    the calibration chose, and --scale base keeps the trajectory's scale."""
    from invrim.reconstruct import estimate, load_run, pixel_scale
    root, runs, cal, test = setup
    base = calibrate(runs[0], cal, 0.9, scale="base", progress=False, save=False)
    assert base["scale"]["method"] == "trajectory" and "weights" not in base["scale"]
    record = calibrate(runs[0], cal, 0.9, scale="learned", progress=False)
    assert record["scale"]["method"] == "learned" and len(record["scale"]["weights"]) == 5
    tried = record["tuning"]["scales"]
    assert set(tried) == {"learned"}
    auto = calibrate(runs[0], cal, 0.9, progress=False, save=False)
    widths = {k: v["mean_half_width"] for k, v in auto["tuning"]["scales"].items()}
    assert set(widths) == {"trajectory", "learned"} and auto["scale"]["method"] == min(widths, key=widths.get)
    out = reconstruct(runs[0], test, tmp_path / "l.h5", uncertainty=True, batch_size=7, progress=False)
    rim, _, _ = load_run(runs[0])
    ds = HDF5Dataset(test, dtype=torch.float32)
    batch = ds.read(0, 20)
    y, _ = batch.pop("y"), batch.pop("x")
    rim.problem = ds.problem
    result = estimate([rim], y, batch)
    fit = data_fit(ds.problem, result["x_hat"], y, **batch)
    scale = pixel_scale(record, result, fit, ds.problem.forward_model.x_dims)
    expected = record["pixel"]["quantile"] * (scale + record["scale"]["floor"])
    with h5py.File(out, "r") as f:
        np.testing.assert_allclose(f["x_uncertainty"][:20], expected.numpy(), rtol=1e-4, atol=1e-6)
    ds.close()
    assert main(["calibrate", str(runs[0]), str(cal), "--scale", "bogus"]) == 2
