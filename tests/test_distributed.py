"""torchrun with two CPU processes (gloo): training and reconstruction match the single-process runs."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

import invrim.cli
from invrim.data import simulate
from invrim.runs import read_tensors

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
TINY = ["-b", "nf=4", "-b", "hidden_units=8", "-b", "ch_mult=[2]"]

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not available")


def torchrun(*args: str, nproc: int = 2, check: bool = True) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", *args]
    out = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)
    if check:
        assert out.returncode == 0, out.stderr[-3000:]
    return out


def single(*args: str) -> subprocess.CompletedProcess:
    out = subprocess.run([sys.executable, "-m", "invrim", *args], env=ENV, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return out


def metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("dist")
    path = simulate(root / "d.h5", "blur", "gaussian", 60, generator="ellipses",
                    forward_model_config={"psf_sigma": [0.8, 1.5]}, likelihood_config={"sigma_range": [0.02, 0.08]},
                    generator_config={"shape": [16, 16]}, seed=0, progress=False)
    return root, path


def test_training_two_processes_follows_the_single_process_curve_and_resumes(data, tmp_path):
    root, path = data
    common = ["train", str(path), "--batch-size", "8", "--seed", "3", "--quiet", "--validation-split", "0.2", *TINY]
    single(*common, "-o", str(tmp_path / "one"), "--epochs", "3")
    torchrun("-m", "invrim", *common, "-o", str(tmp_path / "two"), "--epochs", "2")
    resumed = torchrun("-m", "invrim", *common, "-o", str(tmp_path / "two"), "--epochs", "3", "--resume")
    assert resumed.stdout.count("trained to epoch 3") == 1          # only rank 0 reports
    one, two = metrics(tmp_path / "one"), metrics(tmp_path / "two")
    assert [r["epoch"] for r in two] == [1, 2, 3]
    for a, b in zip(one, two):
        assert a["step"] == b["step"]
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-4)
        assert b["val_loss"] == pytest.approx(a["val_loss"], rel=1e-4)
    assert two[-1]["train_loss"] < two[0]["train_loss"]               # it learns
    w1 = read_tensors(tmp_path / "one" / "weights_epoch0003.safetensors")
    w2 = read_tensors(tmp_path / "two" / "weights_epoch0003.safetensors")
    for k in w1:
        torch.testing.assert_close(w2[k], w1[k], rtol=1e-3, atol=1e-5)
    # rank 0 alone wrote the folder: no temporary or duplicate files
    assert not list((tmp_path / "two").glob(".*.tmp"))


def test_python_fit_under_torchrun(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent(f"""
        import torch
        from invrim import RIM, Hourglass, Problem, Gaussian
        from invrim.physics.blur import Blur, gaussian_psf
        torch.manual_seed(0)
        problem = Problem(Blur(gaussian_psf(5, 1.0)), Gaussian(0.05))
        x = torch.rand(40, 1, 12, 12, generator=torch.Generator().manual_seed(1))
        y = problem.simulate(x, generator=torch.Generator().manual_seed(2))
        rim = RIM((12, 12), Hourglass(1, dimensions=2, nf=4, hidden_units=8, ch_mult=(2,)), problem=problem, T=3)
        history = rim.fit(torch.utils.data.TensorDataset(y, x), epochs=2, learning_rate=1e-3, batch_size=10,
                          seed=0, progress=False, checkpoints_directory={str(tmp_path / 'run')!r})
        import torch.distributed as dist
        world = dist.get_world_size() if dist.is_initialized() else 1
        rank = dist.get_rank() if dist.is_initialized() else 0
        import json, pathlib
        pathlib.Path({str(tmp_path)!r}, f"result{{rank}}of{{world}}.json").write_text(json.dumps(list(history)))
    """))
    one = subprocess.run([sys.executable, str(script)], env=ENV, capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr[-2000:]
    import shutil
    shutil.rmtree(tmp_path / "run")
    torchrun(str(script))
    single_losses = json.loads((tmp_path / "result0of1.json").read_text())
    for rank in (0, 1):                      # every rank returns the global history
        losses = json.loads((tmp_path / f"result{rank}of2.json").read_text())
        np.testing.assert_allclose(losses, single_losses, rtol=1e-4)


def test_sharded_reconstruction_equals_single_process(data, tmp_path):
    root, path = data
    run = tmp_path / "run"
    single("train", str(path), "-o", str(run), "--epochs", "1", "--batch-size", "8", "--seed", "0", "--quiet", *TINY)
    single("reconstruct", str(run), str(path), "-o", str(tmp_path / "one.h5"), "--batch-size", "7", "--trajectory",
           "--quiet")
    args = ["-m", "invrim", "reconstruct", str(run), str(path), "-o", str(tmp_path / "two.h5"), "--batch-size", "7",
            "--trajectory", "--quiet"]
    torchrun(*args)
    with h5py.File(tmp_path / "one.h5", "r") as a, h5py.File(tmp_path / "two.h5", "r") as b:
        for name in ("x_hat", "trajectory", "trajectory_nmse", "done"):
            np.testing.assert_array_equal(a[name][:], b[name][:])
    assert not list(tmp_path.glob("two.h5.part*")) and not (tmp_path / "two.h5.partial").exists()
    # rerunning the finished job is a no-op on every rank; an existing output of another job is
    # refused (by rank 0, and every rank exits cleanly)
    before = (tmp_path / "two.h5").read_bytes()
    again = torchrun(*args, check=False)
    assert again.returncode == 0 and "complete already" in again.stdout, again.stdout + again.stderr
    assert (tmp_path / "two.h5").read_bytes() == before
    refused = torchrun(*[a for a in args if a != "--trajectory"], check=False)
    assert refused.returncode != 0 and "already exists" in refused.stderr
    # a NaN in the observations, found by rank 0's scan, stops every rank with its one-line error
    bad = tmp_path / "bad.h5"
    shutil.copy(path, bad)
    with h5py.File(bad, "r+") as f:
        y = f["y"][:]
        y[5, 0, 3, 3] = np.nan
        f["y"][:] = y
    failed = torchrun("-m", "invrim", "reconstruct", str(run), str(bad), "-o", str(tmp_path / "bad_out.h5"),
                      "--quiet", check=False)
    assert failed.returncode != 0
    # both ranks print the one-line error (the traceback torchrun's own agent adds is not invrim's)
    assert failed.stderr.count("holds NaN or Inf values (first in sample 5)") == 2, failed.stderr
    # ... and nothing else of invrim's: no traceback frame in invrim's code (torchrun's agent's own
    # traceback has torch's frames only). Judged by the frames' files, not by the text "invrim/", so
    # that it holds wherever the repository and the venv live (e.g. a clone in a folder "invrim").
    own = [Path(invrim.__file__).resolve().parent, Path(__file__).resolve().parents[1] / "invrim"]
    frames = [Path(f).resolve() for f in re.findall(r'^\s*File "([^"<]+)"', failed.stderr, flags=re.M)]
    assert not [f for f in frames if any(f.is_relative_to(d) for d in own)], failed.stderr
    assert failed.stderr.count("Traceback (most recent call last)") <= 1, failed.stderr
    # the ranks print their error lines and nothing else (the two lines may share a line of stderr)
    expected = f"invrim reconstruct: error: {bad}: variable 'y' holds NaN or Inf values (first in sample 5)"
    assert failed.stderr.count(expected) == 2, failed.stderr
    assert "invrim reconstruct" not in failed.stderr.replace(expected, ""), failed.stderr
    assert not list(tmp_path.glob("bad_out.h5*"))


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc to find the worker processes")
def test_killed_torchrun_reconstruction_resumes_to_the_same_file(tmp_path):
    """SIGKILL the torchrun agent and both workers mid-run (a lost node); rerunning finishes the job."""
    path = simulate(tmp_path / "big.h5", "blur", "gaussian", 1500, generator="ellipses",
                    forward_model_config={"psf_sigma": [0.8, 1.5]}, generator_config={"shape": [16, 16]},
                    seed=4, progress=False)
    run = tmp_path / "run"
    single("train", str(path), "-o", str(run), "--epochs", "1", "--batch-size", "64", "--seed", "0", "--quiet",
           "--max-time", "0.001", *TINY)
    args = ["-m", "invrim", "reconstruct", str(run), str(path), "--batch-size", "4", "--quiet"]
    single(*args[2:], "-o", str(tmp_path / "one.h5"))
    out = tmp_path / "two.h5"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *args, "-o", str(out)]
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        parts = list(tmp_path.glob("two.h5.part*"))
        if len(parts) == 2:
            break
        time.sleep(0.005)
    time.sleep(0.3)
    for pid in reversed(_descendants(proc.pid)):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()
    assert not out.exists(), "the job finished before it could be killed: make it longer"
    torchrun(*args, "-o", str(out))
    with h5py.File(tmp_path / "one.h5", "r") as a, h5py.File(out, "r") as b:
        np.testing.assert_array_equal(a["x_hat"][:], b["x_hat"][:])
    assert not list(tmp_path.glob("two.h5.part*")) and not (tmp_path / "two.h5.partial").exists()


def test_single_process_cli_is_unaffected_by_the_distributed_code(data, tmp_path, capsys):
    root, path = data
    assert invrim.cli.main(["train", str(path), "-o", str(tmp_path / "r"), "--epochs", "1", "--quiet", *TINY]) == 0
    assert "trained to epoch 1" in capsys.readouterr().out
