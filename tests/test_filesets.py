"""#20: many files through — a glob reconstructed with a kill in between equals an uninterrupted run;
shards cover every file once; a folder of reconstructions is summarised."""
from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

import invrim.reconstruct
from invrim import data
from invrim.data import DataError
from invrim.filesets import (evaluate_folder, format_folder, output_names, parse_shard, read_manifest,
                             reconstruct_many, resolve_inputs, shard_of)
from invrim.training.from_file import train_on_file

SMALL = {"nf": 4, "hidden_units": 8, "ch_mult": [1]}
COMMON = dict(generator="ellipses", generator_config={"shape": [16, 16]}, forward_model_config={"psf_sigma": 1.0},
              likelihood_config={"sigma": 0.05}, progress=False)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = tmp_path_factory.mktemp("many")
    train = data.simulate(folder / "train.h5", "blur", "gaussian", 8, seed=0, **COMMON)
    run = folder / "run"
    train_on_file(train, run, backbone_config=SMALL, rim_options={"T": 2}, epochs=1, batch_size=4, seed=0,
                  progress=False)
    inputs = folder / "data"
    inputs.mkdir()
    for i in range(4):
        data.simulate(inputs / f"part{i}.h5", "blur", "gaussian", 3, seed=10 + i, **COMMON)
    return run, inputs


def _x_hats(folder):
    out = {}
    for p in sorted(folder.glob("*.h5")):
        with h5py.File(p, "r") as f:
            out[p.name] = f["x_hat"][...]
    return out


def test_a_killed_glob_resumes_to_the_uninterrupted_result(setup, tmp_path, monkeypatch):
    run, inputs = setup
    whole = reconstruct_many(run, str(inputs / "*.h5"), tmp_path / "whole", batch_size=2, progress=False)
    assert [p.name for p in whole] == [f"part{i}.h5" for i in range(4)]
    reference = _x_hats(tmp_path / "whole")

    real = invrim.reconstruct.reconstruct
    calls = []

    def dies_in_the_second_file(*args, **kwargs):
        calls.append(args[1])
        if len(calls) == 2:
            raise KeyboardInterrupt("killed")           # the job is stopped during its second file
        return real(*args, **kwargs)
    monkeypatch.setattr(invrim.reconstruct, "reconstruct", dies_in_the_second_file)
    with pytest.raises(KeyboardInterrupt):
        reconstruct_many(run, str(inputs / "*.h5"), tmp_path / "cut", batch_size=2, progress=False)
    assert list(read_manifest(tmp_path / "cut")["finished"]) == [str((inputs / "part0.h5").resolve())]
    monkeypatch.setattr(invrim.reconstruct, "reconstruct", real)
    again = []
    monkeypatch.setattr(invrim.reconstruct, "reconstruct", lambda *a, **k: again.append(a[1]) or real(*a, **k))
    reconstruct_many(run, str(inputs / "*.h5"), tmp_path / "cut", batch_size=2, progress=False)
    assert [p.name for p in again] == ["part1.h5", "part2.h5", "part3.h5"]   # the finished file is skipped
    got = _x_hats(tmp_path / "cut")
    assert got.keys() == reference.keys() and all(np.array_equal(got[k], reference[k]) for k in got)
    assert len(read_manifest(tmp_path / "cut")["finished"]) == 4


def test_two_shards_cover_each_file_exactly_once(setup, tmp_path):
    run, inputs = setup
    manifest = tmp_path / "inputs.txt"
    manifest.write_text("\n".join(str(p) for p in sorted(inputs.glob("*.h5"), reverse=True)) + "\n")
    first = reconstruct_many(run, manifest, tmp_path / "out", shard=(0, 2), batch_size=2, progress=False)
    second = reconstruct_many(run, manifest, tmp_path / "out", shard=parse_shard("1/2"), batch_size=2, progress=False)
    names = [p.name for p in first] + [p.name for p in second]
    assert sorted(names) == [f"part{i}.h5" for i in range(4)] and len(set(names)) == 4
    assert [p.name for p in first] == ["part0.h5", "part2.h5"]
    done = json.loads((tmp_path / "out" / "manifest.json").read_text())["finished"]
    assert sorted(v["output"] for v in done.values()) == sorted(names)

    summary = evaluate_folder(tmp_path / "out")
    assert [f["samples"] for f in summary["files"]] == [3, 3, 3, 3] and summary["overall"]["samples"] == 12
    assert summary["overall"]["median"]["rim"]["psnr"] is not None
    table = format_folder(summary)
    assert "(all files)" in table and "part3.h5" in table


def test_inputs_names_and_shards(tmp_path):
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / "scan.h5").write_bytes(b"")
    files = resolve_inputs([str(tmp_path / "*" / "scan.h5"), tmp_path / "a" / "scan.h5"])
    assert len(files) == 2
    names = output_names(files)
    assert len(set(names)) == 2 and all(n.startswith("scan-") and n.endswith(".h5") for n in names)
    assert output_names(list(reversed(files))) == list(reversed(names))       # a name depends on its file only
    assert shard_of(list(range(5)), (1, 2)) == [1, 3]
    with pytest.raises(DataError, match="no file matches"):
        resolve_inputs(str(tmp_path / "*.nothing"))
    with pytest.raises(ValueError, match="I/N"):
        parse_shard("2/2")


KILLER = """
import os, signal, sys
import invrim.data.reconstruction as fmt
from invrim.filesets import reconstruct_many
calls = []
real = fmt.RowWriter.write
def write(self, lo, hi, arrays):
    real(self, lo, hi, arrays)
    calls.append(lo)
    if len(calls) == 3:                  # the second file's first batch is on disk: SIGKILL
        os.kill(os.getpid(), signal.SIGKILL)
fmt.RowWriter.write = write
reconstruct_many(sys.argv[1], sys.argv[2], sys.argv[3], batch_size=2, progress=False)
"""


def _python(*args, **kwargs):
    import os
    import subprocess
    import sys
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, timeout=300, **kwargs)


def test_a_sigkilled_job_resumes_the_partial_file(setup, tmp_path):
    run, inputs = setup
    reconstruct_many(run, str(inputs / "*.h5"), tmp_path / "whole", batch_size=2, progress=False)
    script = tmp_path / "killer.py"
    script.write_text(KILLER)
    killed = _python(str(script), str(run), str(inputs / "*.h5"), str(tmp_path / "cut"))
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert (tmp_path / "cut" / "part1.h5.partial").is_file() and not (tmp_path / "cut" / "part1.h5").exists()
    assert len(read_manifest(tmp_path / "cut")["finished"]) == 1
    reconstruct_many(run, str(inputs / "*.h5"), tmp_path / "cut", batch_size=2, progress=False)
    got, want = _x_hats(tmp_path / "cut"), _x_hats(tmp_path / "whole")
    assert got.keys() == want.keys() and all(np.array_equal(got[k], want[k]) for k in got)
    assert not list((tmp_path / "cut").glob("*.partial"))


TORCHRUN = """
import sys
import torch.distributed as dist
from invrim.filesets import reconstruct_many
out = reconstruct_many(sys.argv[1], sys.argv[2], sys.argv[3], batch_size=2, progress=False)
print("rank", dist.get_rank(), [p.name for p in out])
"""


@pytest.mark.skipif(not __import__("torch").distributed.is_available(), reason="no torch.distributed")
def test_reconstruct_many_under_torchrun_equals_one_process(setup, tmp_path):
    import sys
    run, inputs = setup
    reconstruct_many(run, str(inputs / "part[01].h5"), tmp_path / "one", batch_size=2, progress=False)
    script = tmp_path / "many.py"
    script.write_text(TORCHRUN)
    done = _python("-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script), str(run),
                   str(inputs / "part[01].h5"), str(tmp_path / "two"))
    assert done.returncode == 0, done.stderr[-3000:]
    got, want = _x_hats(tmp_path / "two"), _x_hats(tmp_path / "one")
    assert got.keys() == want.keys() == {"part0.h5", "part1.h5"}
    assert all(np.array_equal(got[k], want[k]) for k in got)
    assert len(read_manifest(tmp_path / "two")["finished"]) == 2


def test_a_bad_input_stops_only_itself(setup, tmp_path):
    run, inputs = setup
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for name in ("part0.h5", "part1.h5"):
        (mixed / name).symlink_to(inputs / name)
    data.simulate(mixed / "other.h5", "inpainting", "gaussian", 2, seed=0, generator="ellipses",
                  generator_config={"shape": [16, 16]}, forward_model_config={"fraction": 0.5}, progress=False)
    with pytest.raises(DataError, match=r"^1 of 3 inputs could not be reconstructed \(the other 2 are in .*\): "
                                        r".*other\.h5 was made with forward model 'inpainting'") as e:
        reconstruct_many(run, str(mixed / "*.h5"), tmp_path / "out", batch_size=2, progress=False)
    assert "\n" not in str(e.value)
    assert sorted(p.name for p in (tmp_path / "out").glob("*.h5")) == ["part0.h5", "part1.h5"]


def test_the_command_line_reconstructs_a_glob_in_shards_and_evaluates_the_folder(setup, tmp_path, capsys):
    from invrim.cli import main
    run, inputs = setup
    out = tmp_path / "out"
    for i in (0, 1):                         # a job array of two
        assert main(["reconstruct", str(run), str(inputs / "*.h5"), "-o", f"{out}/", "--shard", f"{i}/2",
                     "--quiet"]) == 0
    assert "reconstruction(s) in" in capsys.readouterr().out
    assert sorted(p.name for p in out.glob("*.h5")) == [f"part{i}.h5" for i in range(4)]
    assert len(read_manifest(out)["finished"]) == 4           # both jobs recorded their files in one manifest
    # two files named on the command line go to a folder too; one file and --shard is a usage error
    assert main(["reconstruct", str(run), str(inputs / "part0.h5"), str(inputs / "part1.h5"), "-o",
                 str(tmp_path / "two"), "--quiet"]) == 0
    assert sorted(p.name for p in (tmp_path / "two").glob("*.h5")) == ["part0.h5", "part1.h5"]
    assert main(["reconstruct", str(run), str(inputs / "part0.h5"), "-o", str(tmp_path / "one.h5"),
                 "--shard", "0/2"]) == 2
    assert "--shard" in capsys.readouterr().err
    assert main(["evaluate", str(out)]) == 0
    text = capsys.readouterr().out
    assert all(f"part{i}.h5" in text for i in range(4))
    assert main(["evaluate", str(out), "--plot", str(tmp_path / "x.png")]) == 2
