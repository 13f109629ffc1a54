#!/usr/bin/env python
"""DataLoader throughput of :class:`invrim.data.HDF5Dataset` against the same arrays in memory,
and against the rate at which a RIM trains on them.

For every data set (simulated into a temporary folder with :func:`invrim.data.simulate`):

* ``blur64``  -- 1x64x64 ellipses, per-sample 13x13 Gaussian PSF (``psf_sigma=[1, 2]``) and
  per-sample noise level (``sigma_range=[0.01, 0.1]``), 4096 samples;
* ``blur128`` -- the same at 1x128x128, 1024 samples;
* ``mri``     -- plugin ``mri_multicoil`` (8 coils, complex k-space ``y`` and sensitivities,
  per-sample mask) on 64x64 ``mri_phantom`` images, 512 samples;

it times full epochs (median over ``--epochs``) of

* ``memory``: every variable loaded into tensors (``HDF5Dataset.read(0, n)``), items
  ``{k: v[i]}`` through ``__getitem__`` + default collate -- what a ``TensorDataset`` does;
* ``hdf5``: :class:`~invrim.data.HDF5Dataset` (lazy h5py reads, ``__getitems__``),

with the DataLoader built as :func:`invrim.training.fit` builds it (a new loader per epoch,
``persistent_workers=False``, ``RandomSampler`` seeded per epoch or ``SequentialSampler``), for
every num_workers and batch size; worker start-up is part of the epoch, as in ``fit``. The two
sources are interleaved epoch by epoch so that machine noise hits both alike.

It then times the training step (``zero_grad; loss_fn(y, x, **params); backward; Adam.step``, as
``fit`` runs it) of a RIM built like ``train_on_file`` builds it (problem rebuilt from the file,
``T=6, standardize_score, loss_weights="linear"``, approximate-inverse initialisation) on a batch
of the same data, for a small Hourglass (``nf=16, ch_mult=(2,), hidden_units=16``; the fastest
to train, so the hardest test for the loader) and, at batch 16, ``train_on_file``'s default
Hourglass. The table puts loader samples/s next to training samples/s.

Other measurements: whether the file is in the page cache (``mincore``), an epoch after
``posix_fadvise(POSIX_FADV_DONTNEED)`` (drops the file from *this* machine's page cache; a
virtual disk's host may still cache it, so this is "cold-ish"), a per-read breakdown of the
shuffled case and two benchmark-only what-ifs (a subclass, not library code) showing what a
fix would give. The CPU use of other processes during every timed block is measured from
``/proc/stat`` (as in ``bench_torch_rim.py``) and reported.

Usage::

    python benchmarks/bench_data.py                  # default run (~2-3 min on 2 busy cores)
    python benchmarks/bench_data.py --quick          # smoke test (~20 s)
    python benchmarks/bench_data.py --json out.json --variants blur64 --epochs 3
"""
from __future__ import annotations

import argparse
import ctypes
import json
import mmap
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Optional

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import DataLoader, Dataset, RandomSampler, SequentialSampler  # noqa: E402

from machine_load import ForeignLoad, cpu_name, wait_quiet  # noqa: E402  (benchmarks/ is on sys.path)

# ----------------------------------------------------------------------------- data sets
VARIANTS: dict[str, dict[str, Any]] = {
    "blur64": dict(forward_model="blur", likelihood="gaussian", generator="ellipses",
                   forward_model_config={"psf_sigma": [1, 2]}, likelihood_config={"sigma_range": [0.01, 0.1]},
                   generator_config={"shape": [64, 64]}, samples=4096, quick_samples=512,
                   label="blur 1x64x64, psf 13x13 + sigma per sample"),
    "blur128": dict(forward_model="blur", likelihood="gaussian", generator="ellipses",
                    forward_model_config={"psf_sigma": [1, 2]}, likelihood_config={"sigma_range": [0.01, 0.1]},
                    generator_config={"shape": [128, 128]}, samples=1024, quick_samples=128,
                    label="blur 1x128x128, psf 13x13 + sigma per sample"),
    "mri": dict(forward_model="mri_multicoil", likelihood="gaussian", generator="mri_phantom",
                forward_model_config={"coils": 8}, likelihood_config={"sigma": 0.05},
                generator_config={"height": 64}, samples=512, quick_samples=64,
                label="mri_multicoil 8 coils, 2x64x64 x, complex y + sens, mask per sample"),
}
MODELS = {
    "small": dict(nf=16, ch_mult=(2,), hidden_units=16),
    "default": {},                          # train_on_file's: Hourglass defaults
}
SEED = 0


class InMemory(Dataset):
    """The reference: the same dict items, every variable held as one tensor in memory."""

    def __init__(self, tensors: dict[str, torch.Tensor]):
        self.tensors = tensors
        self.n = len(next(iter(tensors.values())))

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {k: v[i] for k, v in self.tensors.items()}


# ----------------------------------------------------------------------------- page cache
def page_cache_fraction(path: Path) -> Optional[float]:
    """Fraction of the file's pages in this machine's page cache (``mincore``), None if unknown."""
    size = os.path.getsize(path)
    if size == 0:
        return 1.0
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mmap.restype = ctypes.c_void_p
        libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                              ctypes.c_long]
        libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
        libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    except (OSError, AttributeError):
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        if addr is None or addr == ctypes.c_void_p(-1).value:
            return None
        try:
            pages = (size + mmap.PAGESIZE - 1) // mmap.PAGESIZE
            vec = (ctypes.c_ubyte * pages)()
            if libc.mincore(ctypes.c_void_p(addr), size, vec) != 0:
                return None
            return float(np.count_nonzero(np.frombuffer(vec, dtype=np.uint8) & 1)) / pages
        finally:
            libc.munmap(ctypes.c_void_p(addr), size)
    finally:
        os.close(fd)


def drop_from_page_cache(path: Path) -> bool:
    """``POSIX_FADV_DONTNEED`` on the whole file (after fsync, so its pages are clean)."""
    if not hasattr(os, "posix_fadvise"):
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


# ----------------------------------------------------------------------------- timing
def epoch(ds: Dataset, batch_size: int, workers: int, shuffle: bool, seed: int) -> dict[str, Any]:
    """One epoch through a DataLoader built as ``fit`` builds it; samples/s includes start-up."""
    sampler = RandomSampler(ds, generator=torch.Generator().manual_seed(seed)) if shuffle \
        else SequentialSampler(ds)
    n, first = 0, None
    t0 = time.perf_counter()
    loader = DataLoader(ds, batch_size=batch_size, sampler=sampler, num_workers=workers,
                        persistent_workers=False)
    for batch in loader:
        if first is None:
            first = time.perf_counter() - t0
        n += batch["y"].shape[0]
    del loader
    dt = time.perf_counter() - t0
    return {"samples": n, "seconds": dt, "rate": n / dt, "first_batch_s": first}


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    rates = [r["rate"] for r in runs]
    return {"rate": statistics.median(rates), "rate_min": min(rates), "rate_max": max(rates),
            "first_batch_s": statistics.median(r["first_batch_s"] for r in runs),
            "seconds": [r["seconds"] for r in runs], "epochs": len(runs)}


def split_batch(batch: dict[str, torch.Tensor]):
    rest = {k: v for k, v in batch.items() if k not in ("y", "x")}
    return batch["y"], batch["x"], rest


def training_rate(path: Path, ds, batch_size: int, model_name: str, steps: int, budget_s: float) -> dict[str, Any]:
    """Samples/s of ``fit``'s training step for a RIM built like ``train_on_file`` builds it."""
    from invrim.backbones.hourglass import Hourglass
    from invrim.data import problem_from_file
    from invrim.rim import RIM

    problem = problem_from_file(path)
    fm = problem.forward_model
    init = "approximate_inverse" if (getattr(fm, "linear", False) or hasattr(fm, "pseudo_inverse")) else "zeros"
    batch = next(iter(DataLoader(ds, batch_size=batch_size,
                                 sampler=RandomSampler(ds, generator=torch.Generator().manual_seed(SEED)))))
    y, x, params = split_batch(batch)
    torch.manual_seed(SEED)
    model = Hourglass(int(x.shape[1]), dimensions=x.dim() - 2, **MODELS[model_name])
    # the settings of the recorded runs (invrim train's defaults then; RIMConfig's T is now 10)
    rim = RIM(tuple(x.shape[2:]), model, problem=problem, initialization_method=init, T=6, standardize_score=True,
              loss_weights="linear")
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss = rim.loss_fn(y, x, **params)
        float(loss.detach())
        loss.backward()
        opt.step()

    step()                                                   # warm-up (oneDNN primitives, Adam state)
    times, loads = [], []
    start = time.perf_counter()
    while len(times) < steps:
        with ForeignLoad() as fl:
            t0 = time.perf_counter()
            step()
            times.append(time.perf_counter() - t0)
        loads.append(fl.value)
        if time.perf_counter() - start > budget_s:
            break
    step_s = statistics.median(times)
    loads = [v for v in loads if v is not None]
    return {"model": model_name, "batch_size": batch_size, "T": RIM_DEFAULTS["T"], "step_s": step_s,
            "rate": batch_size / step_s, "steps": len(times), "initialization": init,
            "params": sum(p.numel() for p in model.parameters()),
            "foreign_max": max(loads) if loads else None}


# ----------------------------------------------------------------------------- breakdown
def per_call_us(fn: Callable[[], Any], calls: int, repeats: int = 2) -> float:
    """Best of ``repeats`` (the least disturbed by other processes), per call, in microseconds."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best / calls * 1e6


def make_whatif(base):
    """A benchmark-only subclass of HDF5Dataset (NOT library code) for two candidate fixes:
    keep the h5py Dataset objects instead of looking ``f[name]`` up on every read, and
    optionally open the file with ``rdcc_nbytes`` (0: no chunk cache, so a one-sample read
    copies one sample instead of pulling its whole 256 KiB chunk into the cache)."""

    class WhatIf(base):
        rdcc_nbytes: Optional[int] = None

        def _h5(self):
            if self._file is None or self._pid != os.getpid():
                import h5py
                kw = {} if self.rdcc_nbytes is None else {"rdcc_nbytes": self.rdcc_nbytes}
                self._file = h5py.File(self.path, "r", **kw)
                self._pid = os.getpid()
                self._bool = {n for n in self.variables
                              if self._file[n].attrs.get("invrim_dtype") in ("bool", b"bool")}
                self._handles = {n: self._file[n] for n in self.variables}
            return self._file

        def read(self, start: int, stop: int) -> dict[str, torch.Tensor]:
            self._h5()
            return {n: self._convert(n, self._handles[n][start:stop]) for n in self.variables}

    return WhatIf


def breakdown(path: Path, ds, n: int = 1024) -> dict[str, float]:
    """Microseconds per sample of the pieces of a shuffled one-sample-per-run read."""
    import h5py
    from torch.utils.data import default_collate
    idx = [int(i) for i in np.random.default_rng(SEED).permutation(len(ds))[:n]]
    names = ds.variables
    out: dict[str, float] = {}
    ds.read(0, 1)                                             # open in this process
    out["HDF5Dataset.__getitems__ (16 random indices), per sample"] = per_call_us(
        lambda: [ds.__getitems__(idx[k:k + 16]) for k in range(0, n, 16)], n)
    with h5py.File(path, "r") as f:
        out["f[name][i:i+1] per variable (what HDF5Dataset.read does: look-up + read "
            "through a new h5py Dataset object), per sample"] = per_call_us(
            lambda: [f[v][i:i + 1] for i in idx for v in names], n)
        out["  of which the f[name] look-ups alone, per sample"] = per_call_us(
            lambda: [f[v] for _ in idx for v in names], n)
        handles = {v: f[v] for v in names}
        out["h5py slice reads, handles kept, default 1 MiB chunk cache, per sample"] = per_call_us(
            lambda: [handles[v][i:i + 1] for i in idx for v in names], n)
    with h5py.File(path, "r", rdcc_nbytes=0) as f:
        handles = {v: f[v] for v in names}
        out["h5py slice reads, handles kept, rdcc_nbytes=0, per sample"] = per_call_us(
            lambda: [handles[v][i:i + 1] for i in idx for v in names], n)
    first = ds.read(0, 1)
    out["numpy->torch conversion (_convert), per sample"] = per_call_us(
        lambda: [ds._convert(v, first[v].numpy()) for _ in idx for v in names], n)
    items = [{k: t[0] for k, t in first.items()} for _ in range(16)]
    out["default_collate of 16 dict items, per sample"] = per_call_us(
        lambda: [default_collate(items) for _ in range(n // 16)], n)
    return out


# ----------------------------------------------------------------------------- reporting
def machine() -> dict[str, Any]:
    import h5py
    cpu = cpu_name()
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "torch": torch.__version__, "h5py": h5py.__version__, "hdf5": h5py.version.hdf5_version,
            "torch_threads": torch.get_num_threads(), "platform": platform.platform()}


def mib(b: float) -> str:
    return f"{b / 2**20:.1f} MiB"


def fmt_rate(v: Optional[float]) -> str:
    if v is None:
        return "-"
    return f"{v:,.0f}" if v >= 100 else f"{v:.1f}"


def fmt_load(v: Optional[float]) -> str:
    return "-" if v is None else f"{v:.2f}"


def table(rows: list[list[str]], header: list[str]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- main
def run_variant(name: str, folder: Path, args, report: dict[str, Any]) -> None:
    from invrim.data import HDF5Dataset, simulate
    spec = VARIANTS[name]
    samples = args.samples or (spec["quick_samples"] if args.quick else spec["samples"])
    path = folder / f"{name}.h5"
    print(f"\n== {name}: {spec['label']}, {samples} samples", flush=True)
    t0 = time.perf_counter()
    simulate(path, spec["forward_model"], spec["likelihood"], samples, generator=spec["generator"],
             forward_model_config=spec["forward_model_config"], likelihood_config=spec["likelihood_config"],
             generator_config=spec["generator_config"], seed=SEED, progress=False)
    sim_s = time.perf_counter() - t0
    size = os.path.getsize(path)
    h5 = HDF5Dataset(path, dtype=torch.float32)           # as train_on_file opens it (minus the NaN scan)
    shapes = {k: [list(v.shape), str(v.dtype).replace("torch.", "")] for k, v in h5[0].items()}
    import h5py
    with h5py.File(path, "r") as f:
        chunks = {v: list(f[v].chunks) if f[v].chunks else None for v in h5.variables}
    t0 = time.perf_counter()
    mem = InMemory(h5.read(0, len(h5)))
    load_s = time.perf_counter() - t0
    mem_bytes = sum(t.numel() * t.element_size() for t in mem.tensors.values())
    print(f"   file {mib(size)} ({size / samples / 1024:.1f} KiB/sample), simulated in {sim_s:.1f} s; "
          f"in memory {mib(mem_bytes)} (loaded in {load_s:.2f} s); chunks {chunks}", flush=True)
    out: dict[str, Any] = {"label": spec["label"], "samples": samples, "file_bytes": size,
                           "memory_bytes": mem_bytes, "simulate_s": sim_s, "load_all_s": load_s,
                           "shapes": shapes, "chunks": chunks, "simulate": {
                               k: spec[k] for k in ("forward_model", "likelihood", "generator",
                                                    "forward_model_config", "likelihood_config",
                                                    "generator_config")}}
    # warm-up: one epoch of each source (page cache, file handles, allocator)
    epoch(h5, 16, 0, True, SEED)
    epoch(mem, 16, 0, True, SEED)
    out["page_cache_after_warmup"] = page_cache_fraction(path)
    print(f"   page cache after the warm-up epoch: {fmt_pct(out['page_cache_after_warmup'])}", flush=True)

    # loader epochs, memory and hdf5 interleaved
    if args.wait_quiet > 0:
        out["foreign_before_loader"] = wait_quiet(args.max_foreign, args.wait_quiet)
    loader_rows = []
    for shuffle in (True, False):
        for workers in args.workers:
            for bs in args.batch_sizes:
                runs: dict[str, list] = {"memory": [], "hdf5": []}
                with ForeignLoad() as fl:             # over all epochs: /proc/stat ticks are 10 ms
                    for e in range(args.epochs):
                        order = ("memory", "hdf5") if e % 2 == 0 else ("hdf5", "memory")
                        for src in order:
                            runs[src].append(epoch(mem if src == "memory" else h5, bs, workers, shuffle,
                                                   SEED + 1 + e))
                row = {"order": "shuffled" if shuffle else "sequential", "workers": workers, "batch_size": bs,
                       "memory": summarise(runs["memory"]), "hdf5": summarise(runs["hdf5"]),
                       "foreign": fl.value}
                row["hdf5_over_memory"] = row["hdf5"]["rate"] / row["memory"]["rate"]
                loader_rows.append(row)
                print(f"   {row['order']:>10} workers={workers} batch={bs:>3}: "
                      f"memory {fmt_rate(row['memory']['rate']):>7}  hdf5 {fmt_rate(row['hdf5']['rate']):>7} "
                      f"samples/s  (x{row['hdf5_over_memory']:.2f}; first batch "
                      f"{row['hdf5']['first_batch_s'] * 1e3:.0f} ms; others used {fmt_load(row_load(row))} cores)",
                      flush=True)
    out["loader"] = loader_rows

    # cold-ish epochs: after dropping the file from this machine's page cache
    if not args.no_cold:
        cold = []
        for shuffle in (True, False):
            dropped = drop_from_page_cache(path)
            before = page_cache_fraction(path)
            fresh = HDF5Dataset(path, dtype=torch.float32, info=h5.info)
            r = epoch(fresh, 16, 0, shuffle, SEED + 100)
            fresh.close()
            cold.append({"order": "shuffled" if shuffle else "sequential", "workers": 0, "batch_size": 16,
                         "dropped": dropped, "page_cache_before": before,
                         "page_cache_after": page_cache_fraction(path), **r})
            print(f"   after FADV_DONTNEED (page cache {fmt_pct(before)}): {cold[-1]['order']} workers=0 batch=16: "
                  f"hdf5 {fmt_rate(r['rate'])} samples/s", flush=True)
        out["cold"] = cold

    # training step rate on the same data
    if args.wait_quiet > 0:
        out["foreign_before_training"] = wait_quiet(args.max_foreign, args.wait_quiet)
    train = []
    for model_name in args.models:
        for bs in args.batch_sizes:
            if model_name != "small" and not args.all_models_all_batches and (
                    bs != 16 or name not in args.default_rim_on):
                continue
            r = training_rate(path, h5, bs, model_name, args.train_steps, args.train_budget)
            train.append(r)
            print(f"   training, {model_name} Hourglass ({r['params']:,} parameters), T={r['T']}, batch {bs}: "
                  f"{r['step_s']:.2f} s/step = {fmt_rate(r['rate'])} samples/s ({r['steps']} steps; others used "
                  f"<= {fmt_load(r['foreign_max'])} cores)", flush=True)
    out["training"] = train

    # where the time of the shuffled read goes (blur64 only unless asked)
    if name == args.profile_variant:
        out["breakdown_us_per_sample"] = breakdown(path, h5, n=min(1024, len(h5)))
        for k, v in out["breakdown_us_per_sample"].items():
            print(f"   {v:8.1f} us  {k}", flush=True)
        # what-ifs, interleaved with the library's HDF5Dataset (the "baseline" of the ratio)
        readers = {"HDF5Dataset": h5}
        for label, rdcc in (("handles kept", None), ("handles kept + rdcc_nbytes=0", 0)):
            cls = make_whatif(HDF5Dataset)
            cls.rdcc_nbytes = rdcc
            readers[label] = cls(path, dtype=torch.float32, info=h5.info)
            epoch(readers[label], 16, 0, True, SEED)                  # warm-up
        whatif = []
        for shuffle in (True, False):
            runs: dict[str, list] = {k: [] for k in readers}
            for e in range(max(args.epochs, 2)):
                keys = list(readers) if e % 2 == 0 else list(readers)[::-1]
                for k in keys:
                    runs[k].append(epoch(readers[k], 16, 0, shuffle, SEED + 1 + e))
            base = summarise(runs["HDF5Dataset"])["rate"]
            for k in list(readers)[1:]:
                r = summarise(runs[k])
                whatif.append({"what": k, "order": "shuffled" if shuffle else "sequential", "workers": 0,
                               "batch_size": 16, "rate": r["rate"], "baseline_rate": base, "runs": runs[k]})
                print(f"   what-if ({k}, bench-only subclass): {whatif[-1]['order']} workers=0 batch=16: "
                      f"{fmt_rate(r['rate'])} samples/s vs HDF5Dataset {fmt_rate(base)} in the same rounds",
                      flush=True)
        for k in list(readers)[1:]:
            readers[k].close()
        out["whatif"] = whatif
    h5.close()
    report["variants"][name] = out
    if not args.keep:
        path.unlink(missing_ok=True)


def row_load(row: dict[str, Any]) -> Optional[float]:
    return row.get("foreign")


def fmt_pct(v: Optional[float]) -> str:
    return "?" if v is None else f"{100 * v:.0f} %"


def final_table(report: dict[str, Any]) -> str:
    rows = []
    for name, v in report["variants"].items():
        small = {t["batch_size"]: t for t in v.get("training", []) if t["model"] == "small"}
        default = {t["batch_size"]: t for t in v.get("training", []) if t["model"] == "default"}
        for r in v["loader"]:
            tr = small.get(r["batch_size"])
            dtr = default.get(r["batch_size"])
            rows.append([name, r["order"], str(r["workers"]), str(r["batch_size"]),
                         fmt_rate(r["memory"]["rate"]), fmt_rate(r["hdf5"]["rate"]),
                         f"{r['hdf5_over_memory']:.2f}",
                         f"{r['hdf5']['first_batch_s'] * 1e3:.0f} ms",
                         fmt_rate(tr["rate"]) if tr else "-",
                         f"{r['hdf5']['rate'] / tr['rate']:.0f}x" if tr else "-",
                         fmt_rate(dtr["rate"]) if dtr else "-",
                         fmt_load(row_load(r))])
    return table(rows, ["data", "order", "workers", "batch", "memory samples/s", "HDF5 samples/s",
                        "HDF5 / memory", "HDF5 first batch", "training samples/s (small RIM)",
                        "HDF5 / training", "training samples/s (default RIM)", "others' cores"])


def extra_table(report: dict[str, Any]) -> str:
    rows = []
    for name, v in report["variants"].items():
        warm = {(r["order"], r["workers"], r["batch_size"]): r["hdf5"]["rate"] for r in v["loader"]}
        for r in v.get("cold", []):
            w = warm.get((r["order"], r["workers"], r["batch_size"]))
            rows.append([name, f"HDF5Dataset after FADV_DONTNEED (page cache {fmt_pct(r['page_cache_before'])})",
                         r["order"], str(r["workers"]), str(r["batch_size"]), fmt_rate(r["rate"]),
                         fmt_rate(w), f"{r['rate'] / w:.2f}" if w else "-"])
        for r in v.get("whatif", []):
            w = r["baseline_rate"]
            rows.append([name, f"what-if: {r['what']}", r["order"], str(r["workers"]), str(r["batch_size"]),
                         fmt_rate(r["rate"]), fmt_rate(w), f"{r['rate'] / w:.2f}" if w else "-"])
    if not rows:
        return ""
    return table(rows, ["data", "reader", "order", "workers", "batch", "samples/s",
                        "HDF5Dataset warm samples/s (what-ifs: same rounds)", "ratio"])


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smoke test (~20 s): fewer samples, batch 16, one epoch")
    p.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=None,
                   help="data sets (default: all; --quick: blur64 mri)")
    p.add_argument("--samples", type=int, default=None, help="samples per data set (default: per data set)")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=None, help="default 16 64 (--quick: 16)")
    p.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="num_workers values (default 0 2)")
    p.add_argument("--epochs", type=int, default=None, help="timed epochs per configuration and source "
                   "(median reported; default 2, --quick 1)")
    p.add_argument("--models", nargs="+", choices=list(MODELS), default=None,
                   help="RIM backbones to time (default: small default; --quick: small)")
    p.add_argument("--all-models-all-batches", action="store_true",
                   help="time the default model at every batch size and on every data set (default: batch 16 "
                        "on --default-rim-on only; it is slow on CPU)")
    p.add_argument("--default-rim-on", nargs="+", default=["blur64"], metavar="VARIANT",
                   help="data sets on which the default RIM is timed at batch 16 (default blur64)")
    p.add_argument("--train-steps", type=int, default=None, help="timed training steps after one warm-up (default 2)")
    p.add_argument("--train-budget", type=float, default=6.0,
                   help="stop timing training steps after this many seconds (at least one step)")
    p.add_argument("--profile-variant", default="blur64", help="data set for the per-read breakdown ('' = none)")
    p.add_argument("--no-cold", action="store_true", help="skip the epochs after POSIX_FADV_DONTNEED")
    p.add_argument("--wait-quiet", type=float, default=0.0, metavar="SECONDS",
                   help="before the loader and training parts of each data set, wait up to this long for "
                        "other processes to use at most --max-foreign cores (default 0: run as the machine is)")
    p.add_argument("--max-foreign", type=float, default=0.3, help="see --wait-quiet (default 0.3 cores)")
    p.add_argument("--threads", type=int, default=1, help="torch threads in the main process (default 1)")
    p.add_argument("--tmpdir", default=None, help="where to write the data files (default: system temp)")
    p.add_argument("--keep", action="store_true", help="keep the data files (implies --tmpdir is not removed)")
    p.add_argument("--json", default=None, help="write all results to this JSON file")
    args = p.parse_args(argv)
    args.variants = args.variants or (["blur64", "mri"] if args.quick else list(VARIANTS))
    args.batch_sizes = args.batch_sizes or ([16] if args.quick else [16, 64])
    args.epochs = args.epochs or (1 if args.quick else 2)
    args.models = args.models or (["small"] if args.quick else ["small", "default"])
    args.train_steps = args.train_steps or (1 if args.quick else 2)
    torch.set_num_threads(args.threads)

    report: dict[str, Any] = {"command": " ".join([os.path.basename(sys.executable)] + sys.argv),
                              "machine": machine(), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                              "loadavg_before": os.getloadavg(), "variants": {}}
    m = report["machine"]
    print(f"{m['cpu']}, {m['cores']} cores; torch {m['torch']} ({m['torch_threads']} threads), h5py {m['h5py']} "
          f"(HDF5 {m['hdf5']}); load average {report['loadavg_before'][0]:.2f} {report['loadavg_before'][1]:.2f} "
          f"{report['loadavg_before'][2]:.2f}", flush=True)
    began = time.perf_counter()
    if args.tmpdir:
        Path(args.tmpdir).mkdir(parents=True, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="invrim_bench_data_", dir=args.tmpdir)
    try:
        for name in args.variants:
            run_variant(name, Path(tmp), args, report)
    finally:
        if not args.keep:
            for f in Path(tmp).glob("*"):
                f.unlink(missing_ok=True)
            os.rmdir(tmp)
        else:
            print(f"data files kept in {tmp}")
    report["seconds"] = time.perf_counter() - began
    report["loadavg_after"] = os.getloadavg()
    print("\nSamples/s over full epochs (median of %d); DataLoader as fit builds it (new loader per epoch, "
          "worker start-up included)." % args.epochs)
    print(final_table(report))
    extra = extra_table(report)
    if extra:
        print("\nCold-ish epochs (after POSIX_FADV_DONTNEED; the host of a virtual disk may still cache the file) "
              "and benchmark-only what-ifs (a subclass of HDF5Dataset, not library code):")
        print(extra)
    print(f"\ntotal {report['seconds']:.0f} s; load average before {report['loadavg_before'][0]:.2f}, "
          f"after {report['loadavg_after'][0]:.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1, default=str)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
