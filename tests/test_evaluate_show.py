"""invrim evaluate / invrim show: metrics checked against skimage on arrays read with plain h5py,
the baseline against the problem's approximate_inverse, figures, and one-line CLI errors."""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from invrim.cli import main
from invrim.evaluation import evaluate, format_table, read_sample, to_json

pytest.importorskip("invrim_mri")
matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")

BLUR = ["--forward-model", "blur", "-f", "psf_sigma=[1,2]", "--generator", "ellipses", "-g", "shape=[24,24]",
        "-l", "sigma=0.05"]
MRI = ["--forward-model", "mri_singlecoil", "-f", "acceleration=4", "--generator", "mri_phantom", "-g", "height=24",
       "-l", "sigma=0.02"]
TINY = ["-b", "nf=4", "-b", "hidden_units=8", "--T", "3", "--epochs", "2", "--validation-split", "0.25"]


def _cli(*argv) -> None:
    assert main([str(a) for a in argv]) == 0


def _make(folder: Path, physics, n_test: int) -> dict:
    folder.mkdir()
    train, test, run, recon = (folder / n for n in ("train.h5", "test.h5", "run", "recon.h5"))
    _cli("simulate", *physics, "--samples", 16, "--seed", 0, "-o", train, "--quiet")
    _cli("train", train, "-o", run, *TINY, "--quiet")
    _cli("simulate", *physics, "--samples", n_test, "--seed", 1, "-o", test, "--quiet")
    _cli("reconstruct", run, test, "-o", recon, "--trajectory", "--quiet")
    return {"train": train, "test": test, "run": run, "recon": recon, "dir": folder}


@pytest.fixture(scope="module")
def blur(tmp_path_factory):
    return _make(tmp_path_factory.mktemp("blur") / "b", BLUR, 10)


@pytest.fixture(scope="module")
def mri(tmp_path_factory):
    return _make(tmp_path_factory.mktemp("mri") / "m", MRI, 4)


def _arrays(recon: Path, test: Path):
    with h5py.File(recon, "r") as f:
        x_hat = f["x_hat"][:].astype(np.float64)
    with h5py.File(test, "r") as f:
        x = f["x"][:].astype(np.float64)
        y = f["y"][:]
    return x_hat, x, y


def _reference(est: np.ndarray, truth: np.ndarray) -> dict:
    """PSNR / SSIM with skimage (data range of the truth, 7-pixel window), NMSE by hand."""
    rng = truth.max() - truth.min()
    return {"psnr": peak_signal_noise_ratio(truth, est, data_range=rng),
            "ssim": structural_similarity(truth, est, data_range=rng, win_size=7),
            "nmse": ((est - truth) ** 2).sum() / (truth ** 2).sum()}


def _one_line_error(capsys, argv, *fragments) -> str:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert code == 2, (code, captured.err)
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"invrim {argv[0]}: error: ")
    for fragment in fragments:
        assert fragment in err, err
    return err


# ---------------------------------------------------------------------------------------------
# evaluate
# ---------------------------------------------------------------------------------------------
def test_evaluate_blur_matches_skimage(blur):
    result = evaluate(blur["recon"], batch_size=3)            # batches that do not divide 10
    assert result["samples"] == 10 and result["magnitude"] is False
    assert result["methods"] == ["rim", "baseline", "tikhonov", "observation"]
    assert result["labels"]["baseline"] == "adjoint"            # blur: pseudo-inverse = adjoint
    assert result["tikhonov"]["from_run"] is True               # λ chosen by 'invrim train' on train.h5
    assert result["labels"]["tikhonov"].startswith("Tikhonov-CG (λ=")
    x_hat, x, y = _arrays(blur["recon"], blur["test"])
    for i in (0, 7):
        for method, est in (("rim", x_hat[i, 0]), ("observation", y[i, 0].astype(np.float64))):
            ref = _reference(est, x[i, 0])
            for metric, value in ref.items():
                assert result["per_sample"][method][metric][i] == pytest.approx(value, rel=1e-6, abs=1e-9)
    for method in result["methods"]:
        for metric in ("psnr", "ssim", "nmse"):
            values = np.array(result["per_sample"][method][metric])
            assert len(values) == 10
            s = result["summary"][method][metric]
            assert s["mean"] == pytest.approx(values.mean()) and s["median"] == pytest.approx(np.median(values))
            assert s["std"] == pytest.approx(values.std()) and s["n"] == 10


def test_tikhonov_baseline_uses_the_runs_damping_and_beats_the_adjoint(blur):
    from invrim.baselines import tikhonov
    from invrim.data import problem_from_file
    from invrim.runs import RunFolder
    choice = RunFolder(blur["run"]).baselines()["tikhonov"]
    assert "train.h5" in choice["source"] and choice["samples"] == 12     # 16 less the validation quarter
    grid = {row["relative"]: row["mse"] for row in choice["grid"]}
    assert min(grid.values()) == grid[choice["relative_damping"]]      # the best of its grid
    problem = problem_from_file(blur["test"])
    with h5py.File(blur["test"], "r") as f:
        y, psf = torch.from_numpy(f["y"][:]), torch.from_numpy(f["psf"][:])
        x = f["x"][:].astype(np.float64)
    by_hand = tikhonov(problem.forward_model, y, choice, psf=psf).numpy().astype(np.float64)
    result = evaluate(blur["recon"])
    for i in (0, 5):
        for metric, value in _reference(by_hand[i, 0], x[i, 0]).items():
            assert result["per_sample"]["tikhonov"][metric][i] == pytest.approx(value, rel=1e-4)
    # regularised least squares is the stronger baseline: on these blurred, noisy ellipses it beats
    # the adjoint and the observation on average
    mean = {m: result["summary"][m]["psnr"]["mean"] for m in result["methods"]}
    assert mean["tikhonov"] > mean["baseline"] and mean["tikhonov"] > mean["observation"]


def test_a_run_trained_by_the_cli_starts_from_tikhonov_least_squares(blur):
    from invrim import RIM
    saved = json.loads((blur["run"] / "model.json").read_text())["rim"]
    assert saved["initialization_method"] == "auto" and saved["initialization_damping"] > 0   # chosen by train
    rim = RIM.from_checkpoint(blur["run"])
    assert rim.start_method == "tikhonov"
    with h5py.File(blur["test"], "r") as f:
        y, psf = torch.from_numpy(f["y"][:4]), torch.from_numpy(f["psf"][:4])
    x0, _ = rim.initialization(y, psf=psf)
    expected = rim.problem.forward_model.least_squares(y, damping=saved["initialization_damping"],
                                                       prior_mean=saved["initialization_prior_mean"],
                                                       iterations=10, tol=0.0, psf=psf)
    torch.testing.assert_close(x0, expected)
    assert not torch.allclose(x0, rim.problem.forward_model.pseudo_inverse(y, psf=psf))


def test_a_run_without_a_stored_damping_gets_an_oracle_and_says_so(blur, tmp_path):
    import shutil
    run = tmp_path / "old_run"
    shutil.copytree(blur["run"], run)
    (run / "baselines.json").unlink()                      # a run trained before invrim stored one
    recon = tmp_path / "recon.h5"
    assert main(["reconstruct", str(run), str(blur["test"]), "-o", str(recon), "--quiet"]) == 0
    result = evaluate(recon)
    assert result["tikhonov"]["from_run"] is False and "an oracle" in result["tikhonov"]["source"]
    assert any("favours that baseline" in note for note in result["notes"])


def test_baseline_is_the_problems_approximate_inverse(blur):
    from invrim.data import HDF5Dataset, problem_from_file
    problem = problem_from_file(blur["test"])
    with h5py.File(blur["test"], "r") as f:
        y = torch.from_numpy(f["y"][:])
        psf = torch.from_numpy(f["psf"][:])
        x = f["x"][:].astype(np.float64)
    by_hand = problem.approximate_inverse(y, psf=psf).numpy().astype(np.float64)
    result = evaluate(blur["recon"])
    for i in (2, 9):
        ref = _reference(by_hand[i, 0], x[i, 0])
        for metric, value in ref.items():
            assert result["per_sample"]["baseline"][metric][i] == pytest.approx(value, rel=1e-5)
    sample = read_sample(blur["recon"], 2)
    # float32 values computed by two routes: a few ulp apart on some CPUs (1.8e-7 seen on an AMD EPYC)
    torch.testing.assert_close(sample["baseline"].double(), torch.from_numpy(by_hand[2]), rtol=1e-6, atol=1e-6)
    with h5py.File(blur["recon"], "r") as f:
        np.testing.assert_array_equal(sample["x_hat"].numpy(), f["x_hat"][2])
        np.testing.assert_array_equal(sample["trajectory"].numpy(), f["trajectory"][2])
    ds = HDF5Dataset(blur["test"])
    torch.testing.assert_close(sample["truth"], ds[2]["x"])
    # Tikhonov-CG with the damping the run chose on its training data (baselines.json), as evaluate has it
    from invrim.baselines import TIKHONOV, tikhonov
    choice = json.loads((blur["run"] / "baselines.json").read_text())[TIKHONOV]
    by_hand_tik = tikhonov(problem.forward_model, y[2:3], choice, psf=psf[2:3])[0]
    torch.testing.assert_close(sample["tikhonov"], by_hand_tik, rtol=1e-5, atol=1e-6)
    assert sample["tikhonov_label"].startswith("Tikhonov-CG (λ=")
    tik_nmse = float(((sample["tikhonov"].double() - ds[2]["x"].double()) ** 2).sum() / (ds[2]["x"].double() ** 2).sum())
    assert tik_nmse == pytest.approx(result["per_sample"]["tikhonov"]["nmse"][2], rel=1e-5)


def test_evaluate_mri_uses_magnitude_and_has_no_observation_row(mri):
    result = evaluate(mri["recon"])
    assert result["magnitude"] is True
    assert result["methods"] == ["rim", "baseline", "tikhonov"]  # y is complex k-space: not comparable
    assert result["labels"]["baseline"] == "zero-filled"         # the plugin names its baseline
    x_hat, x, _ = _arrays(mri["recon"], mri["test"])
    mag_hat, mag = np.hypot(x_hat[:, 0], x_hat[:, 1]), np.hypot(x[:, 0], x[:, 1])
    for i in range(4):
        ref = _reference(mag_hat[i], mag[i])
        for metric, value in ref.items():
            assert result["per_sample"]["rim"][metric][i] == pytest.approx(value, rel=1e-6, abs=1e-9)
        raw = ((x_hat[i] - x[i]) ** 2).sum() / (x[i] ** 2).sum()      # the (real, imag) channels
        assert not math.isclose(raw, result["per_sample"]["rim"]["nmse"][i], rel_tol=1e-6)
    assert "on magnitude images" in format_table(result)


def test_cli_evaluate_table_and_json(blur, capsys):
    assert main(["evaluate", str(blur["recon"])]) == 0
    out = capsys.readouterr().out
    for text in ("RIM", "adjoint (baseline)", "Tikhonov-CG (λ=", "(generic baseline)", "observation y",
                 "PSNR [dB]", "SSIM", "NMSE", "±"):
        assert text in out
    assert main(["evaluate", str(blur["recon"]), "--per-sample"]) == 0
    out = capsys.readouterr().out
    assert "sample" in out and len(out.splitlines()) >= 10 + 9
    assert main(["evaluate", str(blur["recon"]), "--json", "--per-sample"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["samples"] == 10 and len(data["per_sample"]["rim"]["psnr"]) == 10
    assert set(data["summary"]) == {"rim", "baseline", "tikhonov", "observation"}
    assert data["tikhonov"]["from_run"] is True and data["tikhonov"]["damping"] > 0
    assert data["summary"]["rim"]["ssim"]["n"] == 10
    assert main(["evaluate", str(blur["recon"]), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert "per_sample" not in data


def test_json_is_strict_with_non_finite_values():
    result = {"file": "f", "summary": {"rim": {"psnr": {"mean": math.inf, "std": math.nan}}}, "per_sample": {}}
    data = json.loads(to_json(result))
    assert data["summary"]["rim"]["psnr"] == {"mean": None, "std": None}


def test_missing_truth_then_truth_file(blur, tmp_path, capsys):
    import xarray as xr

    from invrim.data import write_dataset
    with xr.open_dataset(blur["test"], engine="h5netcdf") as ds:
        obs_only = ds.drop_vars("x").load()
    obs_only.attrs = dict(ds.attrs)
    obs = write_dataset(obs_only, tmp_path / "obs.h5")
    recon = tmp_path / "recon.h5"
    _cli("reconstruct", blur["run"], obs, "-o", recon, "--quiet")
    _one_line_error(capsys, ["evaluate", recon], "has no ground truth: pass --truth FILE")
    with pytest.raises(ValueError, match="has no ground truth"):
        evaluate(recon)
    with_truth = evaluate(recon, truth=blur["test"])
    reference = evaluate(blur["recon"])
    assert with_truth["per_sample"] == reference["per_sample"]
    _one_line_error(capsys, ["evaluate", recon, "--truth", obs], "has no ground truth")
    # the figure works without truth too, and with it
    assert main(["show", str(recon), "--index", "1", "-o", str(tmp_path / "no_truth.png")]) == 0
    assert main(["show", str(recon), "--index", "1", "--truth", str(blur["test"]),
                 "-o", str(tmp_path / "truth.png")]) == 0
    capsys.readouterr()
    assert (tmp_path / "no_truth.png").stat().st_size > 10_000


def test_mismatched_sample_counts_and_moved_observations(blur, tmp_path, capsys):
    # train.h5 holds 16 samples, the reconstruction 10
    _one_line_error(capsys, ["evaluate", blur["recon"], "--truth", blur["train"]], "holds 16 samples", "holds 10")
    _one_line_error(capsys, ["evaluate", blur["recon"], "--observations", blur["train"]], "holds 16 samples")
    moved = tmp_path / "test.h5"
    shutil.copy(blur["test"], moved)
    recon = tmp_path / "recon.h5"
    _cli("reconstruct", blur["run"], moved, "-o", recon, "--quiet")
    elsewhere = tmp_path / "elsewhere.h5"
    moved.rename(elsewhere)
    _one_line_error(capsys, ["evaluate", recon], "no longer exists", "--observations")
    _one_line_error(capsys, ["show", recon, "-o", tmp_path / "f.png"], "no longer exists")
    result = evaluate(recon, observations=elsewhere)
    assert result["per_sample"] == evaluate(blur["recon"])["per_sample"]


def test_cli_errors_are_one_line(blur, mri, tmp_path, capsys):
    _one_line_error(capsys, ["evaluate", tmp_path / "nothing.h5"], "no such file")
    _one_line_error(capsys, ["evaluate", blur["test"]], "not an invrim reconstruction file")
    _one_line_error(capsys, ["evaluate", blur["recon"], "--observations", mri["test"]], "forward model")
    _one_line_error(capsys, ["show", blur["recon"], "--index", "10", "-o", tmp_path / "f.png"],
                    "out of range", "10 samples")
    _one_line_error(capsys, ["show", blur["recon"], "--index", "-11", "-o", tmp_path / "f.png"], "out of range")
    assert not (tmp_path / "f.png").exists()
    _one_line_error(capsys, ["show", blur["recon"], "-o", tmp_path / "no" / "f.png"], "does not exist")
    _one_line_error(capsys, ["show", blur["recon"], "-o", tmp_path / "f.xyz"], "unknown figure format")
    _one_line_error(capsys, ["show", tmp_path, "-o", tmp_path / "loss.png"], "no metrics.jsonl")
    _one_line_error(capsys, ["show", blur["run"], "--index", "2", "-o", tmp_path / "loss.png"], "run folder")


# ---------------------------------------------------------------------------------------------
# show
# ---------------------------------------------------------------------------------------------
def _check_png(path: Path, min_bytes: int = 20_000) -> np.ndarray:
    import matplotlib.image as mpimg
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > min_bytes
    image = mpimg.imread(path)
    assert image.shape[0] > 300 and image.shape[1] > 500
    assert image[..., :3].std() > 0.05                  # not blank
    return image


def test_show_blur_mri_and_loss(blur, mri, tmp_path, capsys):
    assert main(["show", str(blur["recon"]), "--index", "3", "-o", str(tmp_path / "blur.png")]) == 0
    assert "wrote" in capsys.readouterr().out
    _check_png(tmp_path / "blur.png")
    assert main(["show", str(mri["recon"]), "--index", "-1", "-o", str(tmp_path / "mri.png")]) == 0
    _check_png(tmp_path / "mri.png")
    assert main(["show", str(blur["run"]), "-o", str(tmp_path / "loss.png")]) == 0
    _check_png(tmp_path / "loss.png", min_bytes=10_000)
    assert main(["show", str(blur["recon"]), "--index", "0", "-o", str(tmp_path / "blur.pdf")]) == 0
    assert (tmp_path / "blur.pdf").read_bytes()[:4] == b"%PDF"


def test_figure_panels_and_titles(blur, mri):
    import matplotlib.pyplot as plt

    from invrim.viz import plot_reconstruction, plot_training
    fig = plot_reconstruction(blur["recon"], 3)
    titles = [ax.get_title() for ax in fig.get_axes()]
    text = " | ".join(titles)
    for fragment in ("Observation y", "Adjoint (baseline)", "RIM reconstruction", "Truth", "RIM − truth",
                     "Error along the RIM trajectory", "PSNR", "SSIM"):
        assert fragment in text, text
    # the metrics in the titles are those of evaluate
    result = evaluate(blur["recon"])
    rim_title = next(t for t in titles if t.startswith("RIM reconstruction"))
    assert f"PSNR {result['per_sample']['rim']['psnr'][3]:.1f} dB" in rim_title
    # the trajectory panel has the run's Tikhonov-CG beside the adjoint and the observation
    trajectory = next(ax for ax in fig.get_axes() if ax.get_title() == "Error along the RIM trajectory")
    labels = trajectory.get_legend_handles_labels()[1]
    tik = f"{result['labels']['tikhonov']}: {result['per_sample']['tikhonov']['nmse'][3]:.3g}"
    assert tik in labels and any(label.startswith("adjoint: ") for label in labels), labels
    plt.close(fig)
    fig = plot_reconstruction(mri["recon"], 0)
    text = " | ".join(ax.get_title() for ax in fig.get_axes())
    # the MRI plugin draws its own observation panel (plot_observation) and names its baseline
    assert "k-space |y| (log₁₀)" in text and "columns sampled" in text and "Zero-filled (baseline)" in text
    panel = next(ax for ax in fig.get_axes() if ax.get_title().startswith("k-space |y|"))
    assert panel.images and np.isfinite(panel.images[0].get_array()).all()
    assert "x shown as magnitude" in fig.subfigs[0]._suptitle.get_text()
    plt.close(fig)
    fig = plot_training(blur["run"])
    labels = fig.get_axes()[0].get_legend_handles_labels()[1]
    assert "training loss" in labels and "validation loss" in labels
    assert any(label.startswith("best checkpoint: epoch") for label in labels)
    plt.close(fig)


def _sample(x, truth, y, y_dims, x_dims, traj=None, complex_channels=False, baseline=None):
    return {"index": 0, "samples": 1, "x_dims": x_dims, "attrs": {"forward_model": "fm", "likelihood": "gaussian"},
            "complex_channels": complex_channels, "baseline_name": "pseudo-inverse" if baseline is not None else None,
            "notes": [], "path": "r.h5", "x_hat": x, "truth": truth, "baseline": baseline, "y": y,
            "y_dims": y_dims, "trajectory": traj, "trajectory_nmse": None, "params": {}}


@pytest.mark.parametrize("case", ["volume", "signal", "parameters", "multicoil"])
def test_plot_sample_shapes(case, tmp_path):
    """3-D volumes (middle slice), 1-D signals (lines), parameter vectors (points), multi-coil k-space."""
    from invrim.viz import plot_sample, save_figure
    g = torch.Generator().manual_seed(0)
    if case == "volume":
        t = torch.rand(1, 10, 12, 12, generator=g)
        dims = ("channel", "depth", "height", "width")
        s = _sample(t + 0.1, t, t + 0.05 * torch.randn(1, 10, 12, 12, generator=g), dims, dims, baseline=t * 0.9)
        expect = "middle slice depth=5 of 10"
    elif case == "signal":
        t = torch.sin(torch.linspace(0, 6, 64))[None]
        traj = t + torch.linspace(1, 0.1, 5)[:, None, None] * torch.randn(5, 1, 64, generator=g)
        s = _sample(traj[-1], t, torch.randn(1, 20, generator=g), ("channel", "m"), ("channel", "n"), traj=traj,
                    baseline=t + 0.3)
        expect = "Reconstruction against truth"
    elif case == "parameters":
        t = torch.tensor([1.0, 0.5, 3.0, -0.2])
        s = _sample(t + 0.1, t, torch.randn(96, generator=g), ("time",), ("channel",))
        expect = "parameter (index)"
    else:
        t = torch.rand(2, 16, 16, generator=g)
        y = torch.randn(4, 16, 16, dtype=torch.complex64, generator=g)
        s = _sample(t * 0.9, t, y, ("coil", "ky", "kx"), ("channel", "height", "width"), complex_channels=True)
        expect = "root-sum-of-squares over 4 coils"
    fig = plot_sample(s)
    texts = [ax.get_title() for ax in fig.get_axes()] + [ax.get_xlabel() for ax in fig.get_axes()]
    texts += [fig._suptitle.get_text()] if fig._suptitle is not None else []
    texts += [sf._suptitle.get_text() for sf in fig.subfigs if sf._suptitle is not None]
    assert any(expect in t for t in texts), texts
    save_figure(fig, tmp_path / "f.png")
    assert (tmp_path / "f.png").stat().st_size > 10_000


# ---------------------------------------------------------------------------------------------
# show a data file (before training)
# ---------------------------------------------------------------------------------------------
def test_show_data_file_panels_metrics_and_parameters(blur, tmp_path, capsys):
    import matplotlib.pyplot as plt

    from invrim.data import HDF5Dataset
    from invrim.viz import plot_data_sample
    assert main(["show", str(blur["test"]), "--index", "-2", "-o", str(tmp_path / "data.png")]) == 0
    assert "wrote" in capsys.readouterr().out
    _check_png(tmp_path / "data.png")

    fig = plot_data_sample(blur["test"], 4)
    titles = [ax.get_title() for ax in fig.get_axes()]
    assert [t.splitlines()[0] for t in titles if t] == ["Observation y", "Adjoint (baseline)", "Truth x"]
    # the baseline's PSNR, recomputed independently: the problem's adjoint, skimage's PSNR
    with h5py.File(blur["test"], "r") as f:
        x = f["x"][4].astype(np.float64)
        y = torch.from_numpy(f["y"][4:5])
        psf = torch.from_numpy(f["psf"][4:5])
    ds = HDF5Dataset(blur["test"])
    base = ds.problem.approximate_inverse(y, psf=psf).double().numpy()[0]
    ds.close()
    expected = peak_signal_noise_ratio(x, base, data_range=x.max() - x.min())
    assert f"PSNR {expected:.1f} dB" in titles[1]
    head = fig._suptitle.get_text()
    assert "sample 4 of 10" in head and "psf = 13×13" in head
    plt.close(fig)


def test_show_observation_only_data_file_and_errors(blur, tmp_path, capsys):
    import xarray as xr

    import matplotlib.pyplot as plt

    from invrim.data import write_dataset
    from invrim.viz import plot_data_sample
    with xr.open_dataset(blur["test"], engine="h5netcdf") as ds:
        obs_only = ds.drop_vars("x").load()
    obs_only.attrs = dict(ds.attrs)
    obs = write_dataset(obs_only, tmp_path / "obs.h5")
    fig = plot_data_sample(obs, 0)
    titles = [ax.get_title().splitlines()[0] for ax in fig.get_axes() if ax.get_title()]
    assert titles == ["Observation y", "Adjoint (baseline)"]
    plt.close(fig)
    _one_line_error(capsys, ["show", blur["test"], "--index", "10", "-o", tmp_path / "d.png"],
                    "out of range", "10 samples")
    _one_line_error(capsys, ["show", blur["test"], "--truth", blur["test"], "-o", tmp_path / "d.png"],
                    "is a data file")
    assert not (tmp_path / "d.png").exists()


def test_observation_panel_without_anything_x_shaped():
    """A data file with no truth and a physics without a baseline: the observation is still drawn."""
    import matplotlib.pyplot as plt

    from invrim.viz._common import _draw_observation
    fig, ax = plt.subplots()
    y = torch.rand(12, 10)
    _draw_observation(fig, ax, {"y": y, "y_dims": ("detector", "angle"), "metrics": {}})
    assert ax.get_title() == "Observation y" and ax.get_ylabel() == "detector"
    plt.close(fig)


def test_figures_is_a_deprecated_alias_of_viz():
    import subprocess
    import sys
    code = ("import warnings\n"
            "with warnings.catch_warnings(record=True) as caught:\n"
            "    warnings.simplefilter('always')\n"
            "    import invrim.figures as old\n"
            "import invrim.viz as new\n"
            "names = ['plot_sample', 'plot_reconstruction', 'plot_data_sample', 'plot_training', 'read_metrics',"
            " 'save_figure']\n"
            "print(all(getattr(old, n) is getattr(new, n) for n in names))\n"
            "print([w.category.__name__ for w in caught])\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.splitlines()
    assert out[0] == "True" and "DeprecationWarning" in out[1]


def test_a_rim_that_does_not_beat_a_baseline_is_told_plainly(blur, capsys):
    result = evaluate(blur["recon"])
    rim = result["summary"]["rim"]["psnr"]["mean"]
    beaten_by = [m for m in result["methods"][1:] if result["summary"][m]["psnr"]["mean"] >= rim]
    said = [n for n in result["notes"] if n.startswith("the RIM does not beat")]
    assert beaten_by, result["summary"]                # the tiny test RIM (2 epochs on 16 images) loses
    assert len(said) == len(beaten_by)                 # one note per baseline at or above it
    for method in beaten_by:
        assert any(result["labels"][method] in n for n in said)
    assert main(["evaluate", str(blur["recon"])]) == 0
    assert capsys.readouterr().out.count("note: the RIM does not beat") == len(beaten_by)
