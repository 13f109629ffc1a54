"""Batch reconstruction: equal to predict, provenance, resumable after SIGKILL, clear errors."""
from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from invrim import RIM
from invrim.cli import main
from invrim.data import DataError, HDF5Dataset, simulate
from invrim.reconstruct import file_digest, read_reconstruction, reconstruct
from invrim.training.from_file import train_on_file

TINY = {"nf": 4, "hidden_units": 8, "ch_mult": [2]}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("recon")
    train = simulate(root / "train.h5", "blur", "gaussian", 64, generator="ellipses",
                     forward_model_config={"psf_sigma": [0.8, 1.5]}, likelihood_config={"sigma_range": [0.02, 0.08]},
                     generator_config={"shape": [24, 24]}, seed=0, progress=False)
    test = simulate(root / "test.h5", "blur", "gaussian", 37, generator="ellipses",
                    forward_model_config={"psf_sigma": [0.8, 1.5]}, likelihood_config={"sigma_range": [0.02, 0.08]},
                    generator_config={"shape": [24, 24]}, seed=1, progress=False)
    run = root / "run"
    train_on_file(train, run, backbone_config=TINY, epochs=1, batch_size=16, progress=False, seed=0)
    return root, run, test


def test_reconstruction_equals_predict_with_provenance(setup, tmp_path):
    root, run, test = setup
    out = reconstruct(run, test, tmp_path / "r.h5", batch_size=8, trajectory=True, progress=False)
    assert out == tmp_path / "r.h5" and not (tmp_path / "r.h5.partial").exists()
    rim = RIM(checkpoints_directory=run)
    ds = HDF5Dataset(test, dtype=torch.float32)
    batch = ds.read(0, len(ds))
    y, x = batch.pop("y"), batch.pop("x")
    expected = rim.predict(y, **batch).numpy()
    with h5py.File(out, "r") as f:
        x_hat = f["x_hat"][:]
        traj = f["trajectory"][:]
        nmse = f["trajectory_nmse"][:]
        assert f["done"][:].all()
    np.testing.assert_allclose(x_hat, expected, rtol=1e-5, atol=1e-6)
    assert traj.shape == (37, rim.T, 1, 24, 24)
    np.testing.assert_array_equal(traj[:, -1], x_hat)
    direct = ((x_hat - x.numpy()) ** 2).reshape(37, -1).sum(1) / (x.numpy() ** 2).reshape(37, -1).sum(1)
    np.testing.assert_allclose(nmse[:, -1], direct, rtol=1e-5)
    attrs = read_reconstruction(out)
    assert attrs["input_file"] == str(Path(test).resolve())
    weights = sorted(run.glob("weights_epoch*.safetensors"))[-1]
    assert attrs["checkpoint_sha256"] == file_digest(weights)
    assert attrs["forward_model"] == "blur" and attrs["options"]["batch_size"] == 8
    assert attrs["versions"]["invrim"]


def test_existing_output_needs_overwrite_and_mismatches_are_refused(setup, tmp_path):
    root, run, test = setup
    out = reconstruct(run, test, tmp_path / "r.h5", progress=False)
    before = out.read_bytes()
    # the same job again (a scheduler's rerun after a kill past the final rename) is a no-op ...
    assert reconstruct(run, test, out, progress=False) == out
    assert out.read_bytes() == before
    # ... another job on an existing output needs --overwrite
    with pytest.raises(DataError, match="already exists.*overwrite"):
        reconstruct(run, test, out, trajectory=True, progress=False)
    assert out.read_bytes() == before
    reconstruct(run, test, out, overwrite=True, progress=False)
    other = simulate(tmp_path / "other.h5", "blur", "gaussian", 4, generator="ellipses",
                     forward_model_config={"psf_sigma": 1.0}, generator_config={"shape": [16, 16]},
                     progress=False)
    with pytest.raises(DataError, match="shape"):
        reconstruct(run, other, tmp_path / "o.h5", progress=False)
    inpaint = simulate(tmp_path / "inp.h5", "inpainting", "gaussian", 4, generator="ellipses",
                       forward_model_config={"fraction": 0.5}, generator_config={"shape": [24, 24]}, progress=False)
    with pytest.raises(DataError, match="inpainting.*trained for 'blur'"):
        reconstruct(run, inpaint, tmp_path / "o.h5", progress=False)
    assert not (tmp_path / "o.h5").exists() and not (tmp_path / "o.h5.partial").exists()
    (tmp_path / "junk.h5").write_text("not hdf5")
    assert main(["reconstruct", str(run), str(tmp_path / "junk.h5"), "-o", str(tmp_path / "o.h5"), "--quiet"]) == 2
    assert main(["reconstruct", str(tmp_path), str(test), "-o", str(tmp_path / "o.h5"), "--quiet"]) == 2


def test_observation_only_file(setup, tmp_path):
    import xarray as xr

    from invrim.data import write_dataset
    root, run, test = setup
    ds = xr.open_dataset(test, engine="h5netcdf").load().drop_vars("x")
    obs = write_dataset(ds, tmp_path / "obs.h5")
    out = reconstruct(run, obs, tmp_path / "r.h5", progress=False)
    with h5py.File(out, "r") as f:
        assert "trajectory_nmse" not in f and f["x_hat"].shape == (37, 1, 24, 24)


def test_write_failure_keeps_partial_and_resumes(setup, tmp_path, monkeypatch):
    root, run, test = setup
    full = reconstruct(run, test, tmp_path / "full.h5", batch_size=4, progress=False)
    out = tmp_path / "r.h5"
    real_flush = h5py.File.flush
    calls = {"n": 0}

    def failing_flush(self):
        calls["n"] += 1
        if calls["n"] == 5:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_flush(self)

    monkeypatch.setattr(h5py.File, "flush", failing_flush)
    with pytest.raises(OSError, match="No space left.*kept in .*partial.*resumes"):
        reconstruct(run, test, out, batch_size=4, progress=False)
    monkeypatch.setattr(h5py.File, "flush", real_flush)
    assert not out.exists() and (tmp_path / "r.h5.partial").exists()
    with h5py.File(tmp_path / "r.h5.partial", "r") as f:
        assert 0 < f["done"][:].sum() < 37
    reconstruct(run, test, out, batch_size=4, progress=False)
    with h5py.File(out, "r") as a, h5py.File(full, "r") as b:
        np.testing.assert_array_equal(a["x_hat"][:], b["x_hat"][:])


def test_partial_of_another_input_is_not_mixed(setup, tmp_path):
    root, run, test = setup
    out = tmp_path / "r.h5"
    reconstruct(run, test, out, progress=False)
    os.replace(out, tmp_path / "r.h5.partial")          # pretend it is unfinished
    with h5py.File(tmp_path / "r.h5.partial", "r+") as f:
        f["done"][:5] = 0
    other = simulate(tmp_path / "test2.h5", "blur", "gaussian", 37, generator="ellipses",
                     forward_model_config={"psf_sigma": [0.8, 1.5]}, generator_config={"shape": [24, 24]},
                     seed=5, progress=False)
    with pytest.raises(DataError, match="different input"):
        reconstruct(run, other, out, progress=False)
    reconstruct(run, other, out, overwrite=True, progress=False)
    assert out.exists()


def test_sigkill_at_many_points_then_rerun_gives_the_uninterrupted_file(tmp_path):
    """Kill real `invrim reconstruct` processes with SIGKILL at several moments; the rerun finishes and
    the result equals an uninterrupted run's, sample for sample."""
    test = simulate(tmp_path / "big.h5", "blur", "gaussian", 1200, generator="ellipses",
                    forward_model_config={"psf_sigma": [0.8, 1.5]}, likelihood_config={"sigma": 0.05},
                    generator_config={"shape": [24, 24]}, seed=3, progress=False)
    run = tmp_path / "run"
    train_on_file(test, run, backbone_config=TINY, epochs=1, batch_size=64, progress=False, seed=0,
                  max_time=0.002)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "invrim", "reconstruct", str(run), str(test), "--batch-size", "4", "--quiet"]
    reference = tmp_path / "reference.h5"
    subprocess.run(cmd + ["-o", str(reference)], check=True, env=env, capture_output=True)
    out = tmp_path / "killed.h5"
    partial = tmp_path / "killed.h5.partial"
    progress = []
    for delay in (0.0, 0.05, 0.3, 0.7, 1.2):
        before = partial.stat().st_mtime_ns if partial.exists() else None
        proc = subprocess.Popen(cmd + ["-o", str(out)], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60       # wait until this process has written something
        while proc.poll() is None and time.monotonic() < deadline and \
                (not partial.exists() or partial.stat().st_mtime_ns == before):
            time.sleep(0.002)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if out.exists():
            break
        assert partial.exists()
        try:
            with h5py.File(partial, "r") as f:
                progress.append(int(f["done"][:].sum()))
        except (OSError, KeyError):  # killed while the file was being created or a header written
            progress.append(-1)        # (h5py: KeyError "bad object header"): the rerun must cope
    print("done counts after each kill:", progress)
    assert any(0 < p < 1200 for p in progress), progress         # at least one kill landed mid-run
    if not out.exists():         # (a fast machine may finish the job during the last attempt)
        final = subprocess.run(cmd + ["-o", str(out)], env=env, capture_output=True, text=True)
        assert final.returncode == 0, final.stderr
    assert not partial.exists()
    with h5py.File(out, "r") as a, h5py.File(reference, "r") as b:
        assert a["done"][:].all()
        np.testing.assert_array_equal(a["x_hat"][:], b["x_hat"][:])


def test_unwritable_output_location_is_one_clear_line(setup, tmp_path, monkeypatch, capsys):
    import h5netcdf
    root, run, test = setup

    real = h5netcdf.File

    def refuse(path, mode="r", *args, **kwargs):
        if mode == "w":
            raise PermissionError(13, "Permission denied")
        return real(path, mode, *args, **kwargs)

    monkeypatch.setattr(h5netcdf, "File", refuse)
    out = tmp_path / "r.h5"
    assert main(["reconstruct", str(run), str(test), "-o", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot write" in err and "Permission denied" in err
    assert not out.exists() and not (tmp_path / "r.h5.partial").exists()
    monkeypatch.setattr("os.access", lambda *a, **k: False)
    assert main(["reconstruct", str(run), str(test), "-o", str(out), "--quiet"]) == 2
    assert "not writable" in capsys.readouterr().err
