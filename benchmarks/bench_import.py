#!/usr/bin/env python
"""Throughput of ``invrim import`` (streamed copy and ``--link``) against a plain h5py copy of the
same arrays.

The source is a fastMRI-layout multi-coil scan made in a temporary folder: ``kspace``
``(slices, coils, ky, kx)`` complex64, a boolean ``mask`` ``(kx,)`` and an ``ismrmrd_header``
string, plus the coil maps ``sens`` of the same shape in a second HDF5 file (fastMRI has none).
Every round times, interleaved so that machine noise hits all alike:

* ``h5py loop``: read and write ``kspace`` and ``sens`` block by block (the blocks the importer
  uses) into a new h5py file -- what a hand-written converter does;
* ``h5py copy``: ``h5py.File.copy`` (HDF5's own ``H5Ocopy``) of both datasets;
* ``import copy``: :func:`invrim.data.importer.import_data` -- planning (the mapping checked
  against ``mri_multicoil``, the adjoint applied to the first sample), the streamed copy through
  ``DatasetWriter`` with the NaN/Inf check, and the rename;
* ``import copy, no value check``: the same with ``check_values=False``;
* ``import --link``: the same mapping with ``link=True`` (virtual datasets; the mask is copied).

MB/s is the input bytes (``kspace`` + ``sens``) over the wall time; medians over ``--rounds``.
Files stay in the page cache (what a user importing a file just written or read sees); the CPU
model (``lscpu``) and the cores other processes used during the run are recorded.

Usage::

    python benchmarks/bench_import.py                       # 32 slices x 8 coils x 128 x 128, 5 rounds
    python benchmarks/bench_import.py --quick               # a smoke test
    python benchmarks/bench_import.py --json out.json --slices 64 --size 256
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import h5py  # noqa: E402
import numpy as np  # noqa: E402

from machine_load import ForeignLoad, cpu_name, machine  # noqa: E402


def lscpu() -> dict[str, str]:
    """The CPU as ``lscpu`` reports it (model, cores, threads), or /proc/cpuinfo's model name."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return {"Model name": cpu_name()}
    keep = ("Model name", "CPU(s)", "Thread(s) per core", "Core(s) per socket", "L3 cache")
    info = {}
    for line in out.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in keep:
            info[key.strip()] = value.strip()
    return info or {"Model name": cpu_name()}


def make_source(folder: Path, slices: int, coils: int, size: int) -> int:
    g = np.random.default_rng(0)
    shape = (slices, coils, size, size)
    with h5py.File(folder / "scan.h5", "w") as f:
        ks = f.create_dataset("kspace", shape, np.complex64)
        for s in range(slices):
            ks[s] = (g.standard_normal(shape[1:]) + 1j * g.standard_normal(shape[1:])).astype(np.complex64)
        f["mask"] = (np.arange(size) % 4 == 0) | (abs(np.arange(size) - size // 2) < size // 16)
        f["ismrmrd_header"] = "<ismrmrdHeader/>"
    with h5py.File(folder / "maps.h5", "w") as f:
        sens = f.create_dataset("sens", shape, np.complex64)
        for s in range(slices):
            m = (g.standard_normal(shape[1:]) + 1j * g.standard_normal(shape[1:])).astype(np.complex64)
            sens[s] = m / np.sqrt((np.abs(m) ** 2).sum(0, keepdims=True))
    return 2 * int(np.prod(shape)) * 8


def mapping(folder: Path, coils: int):
    from invrim.data.importer import mapping_from_dict
    return mapping_from_dict({
        "forward_model": "mri_multicoil", "forward_model_config": {"coils": coils},
        "likelihood": "gaussian", "likelihood_config": {"sigma": 0.01}, "file": "scan.h5",
        "variables": {"y": {"array": "kspace", "dims": ["sample", "coil", "ky", "kx"]},
                      "mask": {"array": "mask", "dims": ["kx"]},
                      "sens": {"file": "maps.h5", "array": "sens", "dims": ["sample", "coil", "height", "width"]}}},
        base=folder)


def h5py_loop(folder: Path, out: Path) -> None:
    from invrim.data.importer import COPY_BYTES
    with h5py.File(out, "w") as dst:
        for src_name, name in (("scan.h5", "kspace"), ("maps.h5", "sens")):
            with h5py.File(folder / src_name, "r") as src:
                ds = src[name]
                per = int(np.prod(ds.shape[1:])) * ds.dtype.itemsize
                step = max(1, COPY_BYTES // (2 * per))
                target = dst.create_dataset(name, ds.shape, ds.dtype, chunks=(1, *ds.shape[1:]))
                for lo in range(0, ds.shape[0], step):
                    target[lo:lo + step] = ds[lo:lo + step]


def h5py_copy(folder: Path, out: Path) -> None:
    with h5py.File(out, "w") as dst:
        for src_name, name in (("scan.h5", "kspace"), ("maps.h5", "sens")):
            with h5py.File(folder / src_name, "r") as src:
                src.copy(src[name], dst, name=name)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slices", type=int, default=32)
    ap.add_argument("--coils", type=int, default=8)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="8 slices x 4 coils x 64 x 64, 2 rounds")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    if args.quick:
        args.slices, args.coils, args.size, args.rounds = 8, 4, 64, 2

    from invrim.data.importer import import_data, plan_import

    folder = Path(tempfile.mkdtemp(prefix="bench_import_"))
    try:
        nbytes = make_source(folder, args.slices, args.coils, args.size)
        m = mapping(folder, args.coils)
        plan_import(m)                                         # warm: registry, plugin imports
        methods = {
            "h5py loop": lambda out: h5py_loop(folder, out),
            "h5py copy (H5Ocopy)": lambda out: h5py_copy(folder, out),
            "import copy": lambda out: import_data(m, out, progress=False),
            "import copy, no value check": lambda out: import_data(m, out, progress=False, check_values=False),
            "import --link": lambda out: import_data(m, out, link=True, progress=False),
        }
        times: dict[str, list[float]] = {k: [] for k in methods}
        sizes: dict[str, int] = {}
        with ForeignLoad() as load:
            for r in range(args.rounds):
                for name, fn in methods.items():
                    out = folder / f"out_{r}_{len(sizes)}_{abs(hash(name))}.h5"
                    t = time.perf_counter()
                    fn(out)
                    times[name].append(time.perf_counter() - t)
                    sizes[name] = out.stat().st_size
                    out.unlink()
        # the linked file reads back like the source
        out = import_data(m, folder / "check.h5", link=True, progress=False)
        with h5py.File(out) as f, h5py.File(folder / "scan.h5") as s:
            assert np.array_equal(f["y"][...], s["kspace"][...])
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    mb = nbytes / 1e6
    rows = []
    for name, ts in times.items():
        med = statistics.median(ts)
        rows.append({"method": name, "median_s": med, "MB_per_s": mb / med, "min_s": min(ts), "max_s": max(ts),
                     "output_bytes": sizes[name], "output_fraction": sizes[name] / nbytes})
    result = {"input_MB": mb, "shape": [args.slices, args.coils, args.size, args.size], "rounds": args.rounds,
              "cpu": lscpu(), "flags": machine().get("flags"), "python": platform.python_version(), "h5py": h5py.__version__,
              "hdf5": h5py.version.hdf5_version, "numpy": np.__version__,
              "foreign_cores": None if load.value is None else round(load.value, 2), "rows": rows}
    print(f"input: kspace + sens {tuple(result['shape'])} complex64 = {mb:.1f} MB; {args.rounds} rounds; "
          f"CPU {result['cpu'].get('Model name')}; other processes used {result['foreign_cores']} cores")
    print("| method | median s | MB/s | output / input |")
    print("|---|---:|---:|---:|")
    for row in rows:
        print(f"| {row['method']} | {row['median_s']:.3f} | {row['MB_per_s']:.0f} | {100 * row['output_fraction']:.2f} % |")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
