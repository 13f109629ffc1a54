"""The worst day: bad inputs that a real user and a real machine produce.

Every CLI case runs ``python -m invrim ...`` as a subprocess against one tiny data file, run folder
and reconstruction built once for the module, and asserts that the command fails (non-zero exit)
with exactly one line on stderr, no traceback, and that the line names the offending file, variable
or option. The Python-API cases check that misuse raises one sentence naming the argument.

The subprocesses of the selected cases are started ahead, two at a time (the fixture
``cli_results``), so that the file stays fast on a small machine; each test then checks its own.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple, Optional

import h5py
import numpy as np
import pytest
import torch

from invrim.cli import main

SIZE = ["-g", "shape=[16,16]"]
BLUR = ["--forward-model", "blur", "-f", "psf_sigma=1", "--generator", "random_field", *SIZE, "-l", "sigma=0.05"]
SIM = "simulate --forward-model blur -f psf_sigma=1 --generator random_field -g shape=[16,16] --samples 2 --quiet"
TRAIN = "--epochs 1 --T 2 -b nf=4 -b hidden_units=8 --batch-size 8 --quiet"
TQDM = re.compile(r"\d+%\||it/s\]|s/it\]")


class Case(NamedTuple):
    id: str
    args: str            # split on whitespace, then each word is formatted with the workspace paths
    expect: str          # the stderr line must contain this (formatted too)
    skip: Optional[str] = None


NO_CUDA = "a CUDA device is available here" if torch.cuda.is_available() else None

CASES = [
    # ---- simulate ---------------------------------------------------------------------------
    Case("simulate-unknown-forward-model", "simulate --forward-model banana --generator random_field "
         "-g shape=[16,16] --samples 2 --quiet -o {out}/a.h5", "banana"),
    Case("simulate-unknown-generator", "simulate --forward-model blur -f psf_sigma=1 --generator banana "
         "--samples 2 --quiet -o {out}/a.h5", "banana"),
    Case("simulate-unknown-likelihood", SIM + " --likelihood banana -o {out}/a.h5", "banana"),
    Case("simulate-psf_sigma-not-a-number", "simulate --forward-model blur -f psf_sigma=wide "
         "--generator random_field -g shape=[16,16] --samples 2 --quiet -o {out}/a.h5", "psf_sigma"),
    Case("simulate-shape-zero", "simulate --forward-model blur -f psf_sigma=1 --generator random_field "
         "-g shape=[0,0] --samples 2 --quiet -o {out}/a.h5", "shape"),
    Case("simulate-samples-zero", "simulate --forward-model blur -f psf_sigma=1 --generator random_field "
         "-g shape=[16,16] --samples 0 --quiet -o {out}/a.h5", "--samples"),
    Case("simulate-sigma-negative", SIM + " -l sigma=-1 -o {out}/a.h5", "sigma"),
    Case("simulate-output-unwritable", SIM + " -o /proc/forbidden.h5", "/proc/forbidden.h5"),
    # ---- train: the data file ---------------------------------------------------------------
    Case("train-missing-file", "train {out}/missing.h5 -o {out}/run " + TRAIN, "missing.h5"),
    Case("train-directory-as-file", "train {somedir} -o {out}/run " + TRAIN, "somedir"),
    Case("train-empty-file", "train {empty} -o {out}/run " + TRAIN, "empty.h5"),
    Case("train-text-file-named-h5", "train {text} -o {out}/run " + TRAIN, "text.h5"),
    Case("train-truncated-hdf5", "train {truncated} -o {out}/run " + TRAIN, "truncated.h5"),
    Case("train-foreign-hdf5", "train {foreign} -o {out}/run " + TRAIN, "foreign.h5"),
    Case("train-data-without-y", "train {noy} -o {out}/run " + TRAIN, "'y'"),
    Case("train-y-with-nan", "train {nan} -o {out}/run " + TRAIN, "nan.h5"),
    Case("train-y-wrong-dims", "train {wrongdims} -o {out}/run " + TRAIN, "'y'"),
    Case("train-reconstruction-as-data", "train {recon} -o {out}/run " + TRAIN, "recon.h5"),
    # ---- train: options ---------------------------------------------------------------------
    Case("train-unknown-backbone", "train {data} -o {out}/run --backbone banana " + TRAIN, "banana"),
    Case("train-unknown-backbone-option", "train {data} -o {out}/run -b wobble=1 " + TRAIN, "wobble"),
    Case("train-backbone-nf-abc", "train {data} -o {out}/run " + TRAIN + " -b nf=abc", "nf"),
    Case("train-epochs-zero", "train {data} -o {out}/run " + TRAIN + " --epochs 0", "--epochs"),
    Case("train-epochs-negative", "train {data} -o {out}/run " + TRAIN + " --epochs -3", "--epochs"),
    Case("train-epochs-not-a-number", "train {data} -o {out}/run " + TRAIN + " --epochs banana", "--epochs"),
    Case("train-batch-size-zero", "train {data} -o {out}/run " + TRAIN + " --batch-size 0", "--batch-size"),
    Case("train-learning-rate-negative", "train {data} -o {out}/run " + TRAIN + " --learning-rate -1",
         "--learning-rate"),
    Case("train-validation-split-above-one", "train {data} -o {out}/run " + TRAIN + " --validation-split 1.5",
         "--validation-split"),
    Case("train-clip-negative", "train {data} -o {out}/run " + TRAIN + " --clip -1", "--clip"),
    Case("train-device-cuda-without-gpu", "train {data} -o {out}/run " + TRAIN + " --device cuda", "cuda",
         skip=NO_CUDA),
    Case("train-device-banana", "train {data} -o {out}/run " + TRAIN + " --device banana", "banana"),
    # ---- train: the run folder --------------------------------------------------------------
    # (--resume on an empty folder starts a new run: a job script's rerun is safe; see invrim train --help)
    Case("train-output-folder-with-foreign-files", "train {data} -o {foreigndir} " + TRAIN, "foreigndir"),
    Case("train-existing-run-without-resume", "train {data} -o {runcopy} " + TRAIN, "runcopy"),
    # ---- reconstruct: the run folder --------------------------------------------------------
    Case("reconstruct-run-missing", "reconstruct {out}/norun {data} -o {out}/r.h5 --quiet", "norun"),
    Case("reconstruct-data-file-as-run", "reconstruct {data} {data} -o {out}/r.h5 --quiet", "data.h5"),
    Case("reconstruct-run-corrupt-model-json", "reconstruct {badjson} {data} -o {out}/r.h5 --quiet",
         "model.json"),
    Case("reconstruct-run-weights-missing", "reconstruct {noweights} {data} -o {out}/r.h5 --quiet", "{weights}"),
    Case("reconstruct-run-weights-truncated", "reconstruct {truncweights} {data} -o {out}/r.h5 --quiet",
         "{weights}"),
    Case("reconstruct-checkpoint-no-such-epoch", "reconstruct {run} {data} -o {out}/r.h5 --quiet "
         "--checkpoint 99", "99"),
    Case("reconstruct-checkpoint-banana", "reconstruct {run} {data} -o {out}/r.h5 --quiet --checkpoint banana",
         "banana"),
    # ---- reconstruct: the observations ------------------------------------------------------
    Case("reconstruct-y-with-nan", "reconstruct {run} {nan} -o {out}/r.h5 --quiet", "nan.h5"),
    Case("reconstruct-reconstruction-as-observations", "reconstruct {run} {recon} -o {out}/r.h5 --quiet",
         "recon.h5"),
    Case("reconstruct-other-forward-model", "reconstruct {run} {inpaint} -o {out}/r.h5 --quiet", "inpainting"),
    Case("reconstruct-other-image-size", "reconstruct {run} {small} -o {out}/r.h5 --quiet", "small.h5"),
    # ---- reconstruct: the output and options ------------------------------------------------
    Case("reconstruct-output-is-directory", "reconstruct {run} {data} -o {somedir} --quiet", "somedir"),
    Case("reconstruct-output-equals-input", "reconstruct {run} {same} -o {same} --quiet", "same.h5"),
    Case("reconstruct-batch-size-zero", "reconstruct {run} {data} -o {out}/r.h5 --quiet --batch-size 0",
         "--batch-size"),
    # ---- evaluate ---------------------------------------------------------------------------
    Case("evaluate-data-file-as-reconstruction", "evaluate {data}", "data.h5"),
    Case("evaluate-truth-other-sample-count", "evaluate {recon} --truth {other8}", "other8.h5"),
    Case("evaluate-observations-with-nan", "evaluate {recon} --observations {nan}", "nan.h5"),
    Case("evaluate-batch-size-zero", "evaluate {recon} --batch-size 0", "--batch-size"),
    # ---- show -------------------------------------------------------------------------------
    Case("show-y-with-nan", "show {nan} -o {out}/f.png", "nan.h5"),
    Case("show-index-out-of-range", "show {data} --index 1000 -o {out}/f.png", "--index"),
    Case("show-truth-on-data-file", "show {data} --truth {data} -o {out}/f.png", "--truth"),
    Case("show-empty-folder", "show {emptyfolder} -o {out}/f.png", "emptyfolder"),
    # ---- plugins ----------------------------------------------------------------------------
    Case("plugins-check-unknown-name", "plugins check unknown_name", "unknown_name"),
]


# ---- the workspace: one tiny data file, run and reconstruction, and their broken variants --------
def _cli(*argv) -> None:
    assert main([str(a) for a in argv]) == 0, argv


def _copy_without(src: Path, dst: Path, name: str) -> None:
    shutil.copy(src, dst)
    with h5py.File(dst, "r+") as f:
        del f[name]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> dict[str, str]:
    w = tmp_path_factory.mktemp("worst_day")
    p = {k: w / v for k, v in dict(
        data="data.h5", run="run", recon="recon.h5", inpaint="inpaint.h5", small="small.h5",
        other8="other8.h5", nan="nan.h5", noy="noy.h5", wrongdims="wrongdims.h5", truncated="truncated.h5",
        foreign="foreign.h5", empty="empty.h5", text="text.h5", same="same.h5", somedir="somedir",
        emptyrun="emptyrun", emptyfolder="emptyfolder", foreigndir="foreigndir", runcopy="runcopy",
        badjson="badjson", noweights="noweights", truncweights="truncweights").items()}

    _cli("simulate", *BLUR, "--samples", 16, "--seed", 0, "-o", p["data"], "--quiet")
    _cli("train", p["data"], "-o", p["run"], *TRAIN.split())
    _cli("reconstruct", p["run"], p["data"], "-o", p["recon"], "--quiet")
    _cli("simulate", "--forward-model", "inpainting", "-f", "fraction=0.5", "--generator", "random_field", *SIZE,
         "-l", "sigma=0.05", "--samples", 4, "--seed", 1, "-o", p["inpaint"], "--quiet")
    _cli("simulate", "--forward-model", "blur", "-f", "psf_sigma=1", "--generator", "random_field",
         "-g", "shape=[8,8]", "--samples", 4, "--seed", 2, "-o", p["small"], "--quiet")
    _cli("simulate", *BLUR, "--samples", 8, "--seed", 3, "-o", p["other8"], "--quiet")

    shutil.copy(p["data"], p["nan"])
    with h5py.File(p["nan"], "r+") as f:
        y = f["y"][...]
        y[3, 0, 5, 7] = np.nan
        f["y"][...] = y
    _copy_without(p["data"], p["noy"], "y")
    _copy_without(p["data"], p["wrongdims"], "y")
    with h5py.File(p["wrongdims"], "r+") as f:
        f.create_dataset("y", data=np.zeros((16, 16, 16), dtype=np.float32))    # the channel axis lost
    raw = p["data"].read_bytes()
    p["truncated"].write_bytes(raw[: len(raw) // 2])
    with h5py.File(p["foreign"], "w") as f:
        f.create_dataset("image", data=np.ones((4, 4), dtype=np.float32))
    p["empty"].write_bytes(b"")
    p["text"].write_text("sample,value\n0,1.5\n1,2.5\n")
    shutil.copy(p["data"], p["same"])
    p["somedir"].mkdir()
    p["emptyrun"].mkdir()
    p["emptyfolder"].mkdir()
    p["foreigndir"].mkdir()
    (p["foreigndir"] / "notes.txt").write_text("my thesis notes\n")
    (p["foreigndir"] / "holiday.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")

    weights = json.loads((p["run"] / "checkpoints.json").read_text())["best"]
    for name in ("runcopy", "badjson", "noweights", "truncweights"):
        shutil.copytree(p["run"], p[name])
    (p["badjson"] / "model.json").write_text('{"format": "invrim-checkpoint", "dimensions": [16, 16],')
    (p["noweights"] / weights).unlink()
    raw = (p["truncweights"] / weights).read_bytes()
    (p["truncweights"] / weights).write_bytes(raw[: len(raw) // 2])

    out = {k: str(v) for k, v in p.items()}
    out["weights"] = weights
    out["root"] = str(w)
    return out


def _argv(case: Case, paths: dict[str, str]) -> list[str]:
    return [word.format(**paths) for word in case.args.split()]


def _run(case: Case, workspace: dict[str, str], folder: Path) -> subprocess.CompletedProcess:
    folder.mkdir(parents=True, exist_ok=True)
    paths = {**workspace, "out": str(folder)}
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", MPLBACKEND="Agg")
    env.pop("INVRIM_KEEP_HEAP", None)
    try:
        return subprocess.run([sys.executable, "-m", "invrim", *_argv(case, paths)], cwd=folder, env=env,
                              capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        return subprocess.CompletedProcess(e.cmd, -999, e.stdout or "", f"timed out after 300 s: {e.stderr!r}")


@pytest.fixture(scope="module")
def cli_results(request, workspace) -> dict[str, subprocess.CompletedProcess]:
    """Run the selected cases ahead, two subprocesses at a time."""
    selected = [item.callspec.params["case"] for item in request.session.items
                if getattr(item, "originalname", None) == "test_bad_cli_input"
                and getattr(item, "module", None) is request.module and hasattr(item, "callspec")]
    todo = [c for c in selected if c.skip is None]
    root = Path(workspace["root"]) / "cases"
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {c.id: pool.submit(_run, c, workspace, root / c.id) for c in todo}
        return {k: f.result() for k, f in futures.items()}


def _stderr_lines(stderr: str) -> list[str]:
    lines = []
    for line in stderr.strip().splitlines():
        line = line.rsplit("\r", 1)[-1].strip()            # a progress bar redraws with \r
        if line and not TQDM.search(line):
            lines.append(line)
    return lines


def test_corpus_is_large_and_ids_unique():
    assert len(CASES) >= 45
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_cli_input(case: Case, cli_results, workspace):
    if case.skip:
        pytest.skip(case.skip)
    out = cli_results.get(case.id)
    if out is None:                                        # not prefetched (an unusual collection)
        out = _run(case, workspace, Path(workspace["root"]) / "cases" / case.id)
    shown = f"exit {out.returncode}; stderr:\n{out.stderr[-2000:]}\nstdout:\n{out.stdout[-500:]}"
    assert out.returncode != 0, shown
    assert "Traceback" not in out.stderr, shown
    lines = _stderr_lines(out.stderr)
    assert len(lines) == 1, shown
    expect = case.expect.format(**{**workspace, "out": ""})
    assert expect in lines[0], f"{expect!r} not named in: {lines[0]}"


# ---- the Python API ------------------------------------------------------------------------------
def _net():
    from invrim import Hourglass
    return Hourglass(1, dimensions=2, nf=4, hidden_units=8)


def _problem():
    from invrim import Gaussian, Problem
    from invrim.physics.blur import Blur
    return Problem(Blur(psf_sigma=1.0), Gaussian(sigma=0.1))


def _rim(**kw):
    from invrim import RIM
    if "score_fn" not in kw and "energy_fn" not in kw:
        kw["problem"] = _problem()
    kw.setdefault("T", 2)
    return RIM((16, 16), _net(), **kw)


def _y(*shape, dtype=torch.float32):
    return torch.randn(*(shape or (2, 1, 16, 16)), generator=torch.Generator().manual_seed(0), dtype=dtype)


def _dataset():
    return torch.utils.data.TensorDataset(_y(), _y())


API_CASES = [
    ("score_fn-returns-float", lambda: _rim(score_fn=lambda x, y: 1.0)(_y()), [r"score_fn", r"float"]),
    ("energy_fn-returns-python-float", lambda: _rim(energy_fn=lambda x, y: 1.0)(_y()), [r"energy_fn", r"float"]),
    ("y-wrong-spatial-shape", lambda: _rim()(_y(2, 1, 12, 12)), [r"\by\b", r"12, 12"]),
    ("y-wrong-spatial-shape-zeros-init", lambda: _rim(initialization_method="zeros")(_y(2, 1, 12, 12)),
     [r"\by\b", r"12, 12"]),
    ("y-float64-for-float32-model", lambda: _rim()(_y(dtype=torch.float64)), [r"\by\b", r"float64"]),
    ("y-complex-for-real-problem", lambda: _rim()(_y(dtype=torch.complex64)), [r"\by\b", r"complex"]),
    ("y-numpy-array", lambda: _rim()(_y().numpy()), [r"\by\b", r"ndarray|numpy"]),
    ("T-zero", lambda: _rim(T=0), [r"\bT\b"]),
    ("unknown-initialization_method", lambda: _rim(initialization_method="banana"),
     [r"initialization_method", r"banana"]),
    ("fit-checkpointing", lambda: _rim().fit(_dataset(), epochs=1, progress=False, checkpointing=True),
     [r"checkpointing", r"RIM"]),
    ("fit-verbose-removed", lambda: _rim().fit(_dataset(), epochs=1, verbose=True),
     [r"verbose", r"docs/migrating\.md"]),
]


@pytest.mark.parametrize("call, patterns", [(c, p) for _, c, p in API_CASES], ids=[i for i, _, _ in API_CASES])
def test_bad_python_api_use(call, patterns):
    with pytest.raises((TypeError, ValueError)) as info:
        call()
    message = str(info.value)
    assert message and "\n" not in message.strip(), message
    for pattern in patterns:
        assert re.search(pattern, message), f"{pattern!r} not in: {message}"
