"""The worst day: API misuse, reruns, a full disk, two writers, a killed start, silent acceptance.

Each test stands for a class of cases: the answer is one line that names what is wrong, a clean
exit code, and nothing lost.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import pytest
import torch
from torch.func import vmap

from invrim import RIM, Gaussian, Hourglass, Problem
from invrim.data import simulate
from invrim.data.reconstruction import exclusive
from invrim.physics import Blur
from invrim.physics.blur import gaussian_psf
from invrim.runs import RunFolder
from invrim.training.from_file import train_on_file

TINY = {"nf": 4, "hidden_units": 8, "ch_mult": [2]}


def cli(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "invrim", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


def one_line_error(result: subprocess.CompletedProcess, *needles: str) -> str:
    """The command failed with exit 2 and one stderr line naming every needle, no traceback."""
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("worst")
    options = dict(forward_model_config={"psf_sigma": 1.2}, likelihood_config={"sigma": 0.05},
                   generator_config={"shape": [16, 16]}, progress=False)
    train = simulate(root / "train.h5", "blur", "gaussian", 32, generator="ellipses", seed=0, **options)
    test = simulate(root / "test.h5", "blur", "gaussian", 40, generator="ellipses", seed=1, **options)
    run = root / "run"
    train_on_file(train, run, backbone_config=TINY, epochs=1, batch_size=16, T=2, progress=False, seed=0)
    return root, train, test, run


# ---- API misuse: one sentence naming the argument --------------------------------------------------
def small_rim(**physics):
    torch.manual_seed(0)
    net = Hourglass(1, dimensions=2, nf=4, ch_mult=(2,), hidden_units=4, num_layers=1)
    return RIM((8, 8), net, T=2, **physics)


def blur_problem():
    return Problem(Blur(gaussian_psf(3, 1.0), boundary="periodic"), Gaussian(sigma=0.1))


@pytest.mark.parametrize("make, y, error, needle", [
    (lambda: small_rim(score_fn=lambda x, y: 1.0), torch.rand(2, 1, 8, 8), TypeError, "score_fn must return a tensor"),
    (lambda: small_rim(energy_fn=lambda x, y: 0.5), torch.rand(2, 1, 8, 8), TypeError, "energy_fn must return a tensor"),
    (lambda: small_rim(energy_fn=lambda x, y: ((x - y) ** 2).sum((1, 2))), torch.rand(2, 1, 8, 8), ValueError,
     "one energy per sample"),
    (lambda: small_rim(problem=blur_problem()), torch.rand(2, 1, 8, 6), ValueError, "y has shape (2, 1, 8, 6)"),
    (lambda: small_rim(problem=blur_problem()), torch.rand(2, 1, 8, 8, dtype=torch.float64), TypeError,
     "y has dtype torch.float64 but the model's weights are torch.float32"),
    (lambda: small_rim(problem=blur_problem()), torch.rand(2, 1, 8, 8, dtype=torch.complex64), ValueError,
     "y is complex"),
    (lambda: small_rim(problem=blur_problem()), torch.rand(2, 1, 8, 8, device="meta"), ValueError,
     "y is on meta but the model is on cpu"),
    (lambda: small_rim(problem=blur_problem()), [[0.0]], TypeError, "y must be a torch.Tensor"),
], ids=["score_fn-number", "energy_fn-float", "energy_fn-shape", "y-shape", "y-float64", "y-complex",
        "y-device", "y-list"])
def test_api_misuse_is_one_sentence_naming_the_argument(make, y, error, needle):
    rim = make()
    with pytest.raises(error) as info:
        rim.predict(y)
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_the_seed_readmes_vmap_over_a_function_is_explained():
    """torch-rim's README vmaps ``energy_fn(x, y, F, Sigma)`` over F too, which vmap cannot do."""
    from invrim import MLPGRU
    A = torch.randn(6, 4)

    def F(x):
        return A @ x

    def energy(x, y, F, Sigma):
        return (y - F(x)) @ torch.linalg.inv(Sigma) @ (y - F(x))

    y, Sigma = torch.randn(3, 6), torch.eye(6).expand(3, 6, 6)
    literal = RIM((), MLPGRU(4, hidden_units=8), energy_fn=vmap(energy), T=2)     # the README's @vmap
    with pytest.raises(TypeError, match=r"in_dims=\(0, 0, None, 0\).*migrating"):
        literal.predict(y, F, Sigma)
    fixed = RIM((), MLPGRU(4, hidden_units=8), energy_fn=vmap(energy, in_dims=(0, 0, None, 0)), T=2)
    assert fixed.predict(y, F, Sigma).shape == (3, 4)


def test_an_approximate_inverse_fn_beside_a_problem_is_refused_not_ignored():
    with pytest.raises(ValueError, match="approximate_inverse_fn goes with score_fn"):
        small_rim(problem=blur_problem(), approximate_inverse_fn=lambda y: y)


@pytest.mark.parametrize("argument", ["verbose", "n_iterations_in_epoch", "model_checkpoint"])
def test_removed_torch_rim_arguments_point_at_the_migration_page(argument):
    rim = small_rim(score_fn=lambda x, y: y - x)
    data = torch.utils.data.TensorDataset(torch.rand(4, 1, 8, 8), torch.rand(4, 1, 8, 8))
    with pytest.raises(TypeError, match=rf"'{argument}'.*docs/migrating.md"):
        rim.fit(data, epochs=1, progress=False, **{argument: 1})


# ---- reruns are idempotent ------------------------------------------------------------------------
def test_rerunning_a_finished_reconstruction_is_a_no_op(files, tmp_path):
    _, _, test, run = files
    out = tmp_path / "r.h5"
    assert cli("reconstruct", run, test, "-o", out, "--quiet").returncode == 0
    before = out.stat().st_mtime_ns, out.read_bytes()
    again = cli("reconstruct", run, test, "-o", out, "--quiet")
    assert again.returncode == 0 and "complete already" in again.stdout, again.stdout + again.stderr
    assert (out.stat().st_mtime_ns, out.read_bytes()) == before
    other = cli("reconstruct", run, test, "-o", out, "--quiet", "--trajectory")     # another job
    one_line_error(other, str(out), "--overwrite")


def test_a_run_killed_while_creating_its_folder_starts_again(files, tmp_path):
    _, train, _, run = files
    killed = tmp_path / "killed"
    killed.mkdir()
    for name in ("model.json", "training.json", "data.json"):      # what a run writes before its first save
        shutil.copy(run / name, killed / name)
    (killed / ".model.json.abc.tmp").write_text("{")                 # a torn temporary file
    result = cli("train", train, "-o", killed, "--epochs", "1", "--T", "2", "-b", "nf=4", "-b", "hidden_units=8",
                 "-b", "ch_mult=[2]", "--quiet")
    assert result.returncode == 0, result.stderr
    assert RunFolder(killed).has_state()
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    one_line_error(cli("train", train, "-o", foreign, "--epochs", "1", "--quiet"), str(foreign), "notes.txt")


def test_resuming_with_other_backbone_options_is_refused(files, tmp_path):
    _, train, _, run = files
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    result = cli("train", train, "-o", copy, "--epochs", "2", "--resume", "-b", "nf=16", "--quiet")
    one_line_error(result, "nf=4", "16")
    result = cli("train", train, "-o", copy, "--epochs", "2", "--resume", "--backbone", "unet", "--quiet")
    one_line_error(result, "'hourglass'", "'unet'")


# ---- a full disk ----------------------------------------------------------------------------------
@pytest.fixture
def small_disk(tmp_path):
    """A 300 KiB tmpfs (root only; skipped where mounting is not allowed)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=300k", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    yield mount
    subprocess.run(["umount", str(mount)], capture_output=True)


def test_a_full_disk_is_one_line_and_keeps_what_was_saved(files, small_disk):
    _, train, test, run = files
    result = cli("reconstruct", run, test, "-o", small_disk / "r.h5", "--trajectory", "--quiet")
    one_line_error(result, "r.h5", "no space left on device")
    assert not list(small_disk.iterdir())                  # nothing half-written under any name
    target = small_disk / "run"
    result = cli("train", train, "-o", target, "--epochs", "3", "--T", "2", "-b", "nf=32", "--quiet")
    one_line_error(result, "no space left on device", "the same command resumes")
    assert (target / "model.json").is_file() and not list(target.glob(".*.tmp"))


# ---- two writers, one output ------------------------------------------------------------------------
def test_a_second_writer_of_one_output_is_told_so(files, tmp_path):
    _, _, test, run = files
    out = tmp_path / "r.h5"
    with exclusive(out):                                    # as if another command were running
        result = cli("reconstruct", run, test, "-o", out, "--quiet")
    one_line_error(result, "another process is writing", str(out))
    assert not out.exists() and not Path(f"{out}.partial").exists()
    assert cli("reconstruct", run, test, "-o", out, "--quiet").returncode == 0     # and the lock is gone


# ---- silent acceptance ------------------------------------------------------------------------------
def test_show_and_evaluate_refuse_nan_observations(files, tmp_path):
    _, _, test, run = files
    bad = tmp_path / "nan.h5"
    shutil.copy(test, bad)
    with h5py.File(bad, "r+") as f:
        f["y"][3, 0, 0, 0] = float("nan")
    one_line_error(cli("show", bad, "--index", "3", "-o", tmp_path / "s.png"), str(bad), "'y'", "sample 3")
    assert not (tmp_path / "s.png").exists()
    out = tmp_path / "r.h5"
    assert cli("reconstruct", run, test, "-o", out, "--quiet").returncode == 0
    one_line_error(cli("evaluate", out, "--observations", bad), str(bad), "'y'")
    os.remove(out)
