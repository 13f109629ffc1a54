#!/usr/bin/env python
"""Two processes (torchrun) against one on a small multi-core CPU machine: samples/s of
``invrim train`` and ``invrim reconstruct``.

In a temporary folder the script simulates a training file and an observation file with
``invrim simulate`` (blur + gaussian, ellipses), then runs each command in three configurations:

* ``1x1``: one process, ``OMP_NUM_THREADS=1``;
* ``1x2``: one process, ``OMP_NUM_THREADS=2``;
* ``2x1``: ``python -m torch.distributed.run --standalone --nproc_per_node=2``, ``OMP_NUM_THREADS=1``
  in each worker (invrim shards every global batch over the ranks and all-reduces the gradients).

**Training.** ``invrim train`` with the same ``--seed``, global batch and epochs. Steady-state
samples/s come from ``metrics.jsonl``: the ``seconds`` of every epoch after the first (the first is
warm-up: oneDNN primitives, allocator, page cache), i.e. ``samples x timed epochs / their seconds``.
Everything else of the wall time (interpreter, imports, torchrun's agent and rendezvous, process
group, opening the file with its NaN/Inf scan, model build, checkpoint writes, shutdown) is
reported separately as start-up / tear-down. The loss curve of every configuration is compared
with ``1x1``'s (``2x1`` should agree to float rounding: the global batches are the same).

**Reconstruction.** ``invrim reconstruct`` of the observation file with the ``1x1`` run, same three
configurations. Reported: wall time and samples/s end to end, and samples/s of the compute phase
alone (``_compute``; for ``2x1`` the slower rank's). The ``x_hat`` of every configuration is
compared with ``1x1`` (``np.array_equal``).

**Where the time goes.** Every process runs ``invrim.cli.main(argv)`` -- exactly what
``python -m invrim`` runs -- from this file's ``--child`` mode, which first wraps a few library
functions with timers (``init_if_needed``, ``all_sum``, ``average_gradients``, ``broadcast_*``,
``barrier``, ``shutdown``, ``fit``, ``_save``, ``torch.optim.Adam``, ``load_run``, ``_open``,
``_compute``, ``_merge``; a ``perf_counter`` pair per call; names the library no longer has are
reported, not fatal). Time inside ``all_sum`` / ``average_gradients`` is
communication *plus waiting for the other rank*; a separate torchrun micro-benchmark times gloo
all-reduces of the model's gradient size with both ranks ready, and a ``--no-python true``
torchrun times the launcher alone.

**Load.** The CPU use of other processes during each configuration is measured from
``/proc/stat`` minus this script's own and its children's CPU time, and the load average is
recorded before and after. By default nothing is re-run when the machine is busy: read the
"others' cores" column before trusting a ratio (``--wait-quiet`` waits and re-runs;
``--background-load N`` adds N busy loops on purpose to emulate other users). The per-process CPU
time over the timed epochs (a 20 Hz trace of ``process_time`` in every process) gives "CPU ms per
sample" and "our cores", which show spinning threads: under load, OpenMP's default active wait
burns CPU without progress.

Usage::

    python benchmarks/bench_distributed.py                   # default run: ~1 min on 2 idle cores,
                                                             # ~3.5 min when another job holds a core
    python benchmarks/bench_distributed.py --quick           # smoke test (~40 s, tiny model)
    python benchmarks/bench_distributed.py --json out.json --epochs 4
    python benchmarks/bench_distributed.py --configs 1x1,1x2,2x1,1x2p --background-load 1
        # also 1 process x 2 threads with OMP_WAIT_POLICY=PASSIVE, while a busy loop emulates another user
    python benchmarks/bench_distributed.py --wait-quiet 600  # wait for (and re-run until) a quiet machine
"""
from __future__ import annotations

import time

_T_START = time.time()          # first thing: the child's "interpreter is up" time stamp

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Optional  # noqa: E402

HERE = Path(__file__).resolve()
DEFAULT_CONFIGS = "1x1,1x2,2x1"     # PROCESSESxTHREADS; a trailing "p" adds OMP_WAIT_POLICY=PASSIVE


def parse_configs(text: str) -> list[tuple[str, int, int, bool]]:
    """``"1x1,1x2,2x1,1x2p"`` -> (label, processes, threads per process, passive wait policy)."""
    out = []
    for label in (t.strip() for t in text.split(",") if t.strip()):
        passive = label.endswith("p")
        nproc, threads = (int(v) for v in label.rstrip("p").split("x"))
        out.append((label, nproc, threads, passive))
    labels = [c[0] for c in out]
    if "1x1" not in labels or len(set(labels)) != len(labels):
        raise SystemExit("--configs must hold 1x1 (the reference) and no duplicates")
    return out


# ======================================================================= child (inside a run)
def _child(argv: list[str]) -> None:
    """Run ``invrim.cli.main(argv)`` with timers around a few library functions; write them to
    ``$BENCH_TIMING_DIR/rank<R>.json``."""
    rec: dict[str, Any] = {"t_start": _T_START, "rank": int(os.environ.get("RANK", "0")), "pid": os.getpid()}
    import torch
    import invrim.cli
    import invrim.reconstruct as rmod
    import invrim.training.fit
    from invrim import distributed as dd
    fitmod = sys.modules["invrim.training.fit"]      # (invrim.training.fit is also the function's name)
    rec["t_imported"] = time.time()
    rec["torch_threads"] = torch.get_num_threads()
    timers: dict[str, dict[str, Any]] = {}
    # a trace of this process's CPU time (all threads), to split it over the epochs afterwards
    trace: list[list[float]] = []

    def sample() -> None:
        while True:
            trace.append([time.time(), time.process_time()])
            time.sleep(0.05)
    import threading
    threading.Thread(target=sample, name="bench-cpu-trace", daemon=True).start()
    rec["cpu_trace"] = trace

    def wrap(module: Any, name: str) -> None:
        original = getattr(module, name)

        def timed(*a: Any, **k: Any) -> Any:
            w0, t0, c0 = time.time(), time.perf_counter(), time.process_time()
            try:
                return original(*a, **k)
            finally:
                d = timers.setdefault(name, {"seconds": 0.0, "cpu": 0.0, "calls": 0, "first_start": w0, "max": 0.0,
                                             "intervals": []})
                dt, dc = time.perf_counter() - t0, time.process_time() - c0
                d["seconds"] += dt
                d["cpu"] += dc
                d["calls"] += 1
                d["max"] = max(d["max"], dt)
                d["last_end"] = time.time()
                d["cpu_last_end"] = time.process_time()
                d["intervals"].append([w0, w0 + dt, c0, c0 + dc])     # wall and process CPU (all threads)
                trace.append([w0, c0])
                trace.append([w0 + dt, c0 + dc])
        setattr(module, name, timed)

    rec["not_wrapped"] = []
    for module, names in ((dd, ("init_if_needed", "all_sum", "average_gradients", "broadcast_object",
                                "broadcast_parameters", "barrier", "shutdown")),
                          (fitmod, ("fit", "_save")),
                          (torch.optim, ("Adam",)),          # the first Adam() imports torch._dynamo
                          (rmod, ("load_run", "_open", "_compute", "_merge"))):
        for name in names:
            if callable(getattr(module, name, None)):
                wrap(module, name)
            else:                                              # the library changed: report, carry on
                rec["not_wrapped"].append(f"{module.__name__}.{name}")
    rec["t_main"] = time.time()
    code = invrim.cli.main(argv)
    rec["t_main_end"] = time.time()
    trace.append([time.time(), time.process_time()])
    rec["cpu_trace"] = sorted(trace)
    rec["code"] = code
    rec["timers"] = timers
    ru = resource.getrusage(resource.RUSAGE_SELF)
    rec["cpu_seconds"] = ru.ru_utime + ru.ru_stime
    folder = os.environ.get("BENCH_TIMING_DIR")
    if folder:
        Path(folder, f"rank{rec['rank']}.json").write_text(json.dumps(rec))
    sys.exit(code)


def _child_allreduce(numel: int, reps: int) -> None:
    """Under torchrun: gloo all-reduce of ``numel`` float32 (the flattened gradients) and of one
    float64 (the per-step loss), with both ranks ready (a barrier before each)."""
    import torch
    import torch.distributed as dist
    dist.init_process_group("gloo")
    big = torch.randn(numel)
    small = torch.zeros(1, dtype=torch.float64)
    for _ in range(3):
        dist.all_reduce(big)
        dist.all_reduce(small)
    out: dict[str, list[float]] = {"big": [], "small": []}
    for _ in range(reps):
        for key, t in (("big", big), ("small", small)):
            dist.barrier()
            t0 = time.perf_counter()
            dist.all_reduce(t)
            out[key].append(time.perf_counter() - t0)
    if dist.get_rank() == 0:
        Path(os.environ["BENCH_TIMING_DIR"], "allreduce.json").write_text(json.dumps(out))
    dist.destroy_process_group()


# ======================================================================= measurement helpers
def _busy_jiffies() -> int:
    with open("/proc/stat") as f:
        vals = [int(v) for v in f.readline().split()[1:]]
    return sum(vals) - vals[3] - (vals[4] if len(vals) > 4 else 0)      # minus idle, iowait


def _own_cpu() -> float:
    """CPU seconds of this process and of its reaped descendants (torchrun reaps its workers)."""
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


class Usage:
    """Wall time, CPU seconds of the children, and cores used by *other* processes meanwhile."""

    def __enter__(self) -> "Usage":
        self.t0, self.cpu0 = time.perf_counter(), _own_cpu()
        self.child0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        try:
            self.busy0: Optional[int] = _busy_jiffies()
        except OSError:
            self.busy0 = None
        return self

    def __exit__(self, *exc: Any) -> None:
        self.wall = time.perf_counter() - self.t0
        own = _own_cpu() - self.cpu0
        c = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.child_cpu = (c.ru_utime + c.ru_stime) - (self.child0.ru_utime + self.child0.ru_stime)
        self.foreign: Optional[float] = None
        if self.busy0 is not None:
            busy = (_busy_jiffies() - self.busy0) / os.sysconf("SC_CLK_TCK")
            self.foreign = max(0.0, (busy - own) / max(self.wall, 1e-9))


class QuietWaiter:
    """Before a configuration, wait (up to a total budget over the run) until other processes use
    less than ``below`` cores over a 2 s window."""

    def __init__(self, budget: float, below: float):
        self.budget, self.below, self.waited = budget, below, 0.0

    def left(self) -> float:
        return self.budget - self.waited

    def __call__(self) -> Optional[float]:
        while True:
            with Usage() as u:
                time.sleep(2.0)
            self.waited += u.wall
            if u.foreign is None or u.foreign < self.below or self.waited >= self.budget:
                return u.foreign


def loadavg() -> list[float]:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return []


def machine() -> dict[str, Any]:
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import h5py
    import torch

    import invrim
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE.parent, capture_output=True,
                                text=True, timeout=10).stdout.strip() or None
    except Exception:
        commit = None
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
            "h5py": h5py.__version__, "invrim": invrim.__version__, "commit": commit}


def _cmd(nproc: int, argv: list[str]) -> list[str]:
    if nproc == 1:
        return [sys.executable, str(HERE), "--child", *argv]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
            str(HERE), "--child", *argv]


def launch(cmd: list[str], threads: int, timing: Path, timeout: float = 900, passive: bool = False) -> dict[str, Any]:
    import shutil
    shutil.rmtree(timing, ignore_errors=True)
    timing.mkdir(parents=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "BENCH_TIMING_DIR": str(timing), "PYTHONUNBUFFERED": "1"}
    env.pop("OMP_WAIT_POLICY", None)
    if passive:
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    t_launch = time.time()
    with Usage() as u:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    t_end = time.time()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    ranks = sorted((json.loads(p.read_text()) for p in timing.glob("rank*.json")), key=lambda r: r["rank"])
    return {"t_launch": t_launch, "t_end": t_end, "wall": u.wall, "cpu": u.child_cpu, "foreign": u.foreign,
            "ranks": ranks, "stdout": proc.stdout[-2000:]}


def _timer(rank: dict[str, Any], name: str, key: str = "seconds", default: float = 0.0) -> float:
    return rank.get("timers", {}).get(name, {}).get(key, default)


def metrics(run: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]


# ======================================================================= the benchmark
class _Killer:
    """Kill (by pid) and reap the background-load processes this script started."""

    def __init__(self, procs: list):
        self.procs = procs

    def __enter__(self) -> "_Killer":
        return self

    def __exit__(self, *exc: Any) -> None:
        for p in self.procs:
            p.kill()
            p.wait()


def simulate(path: Path, samples: int, seed: int, size: int) -> float:
    cmd = [sys.executable, "-m", "invrim", "simulate", "--forward-model", "blur", "-f", "psf_sigma=[1,2]",
           "--generator", "ellipses", "-g", f"shape=[{size},{size}]", "-l", "sigma=0.05", "--samples", str(samples),
           "--seed", str(seed), "-o", str(path), "--quiet"]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    return time.perf_counter() - t0


def _cpu_at(trace: list[list[float]], t: float) -> Optional[float]:
    """Process CPU seconds at wall time ``t``, interpolated in a (wall, cpu) trace."""
    if not trace or t < trace[0][0] or t > trace[-1][0]:
        return None
    for (w0, c0), (w1, c1) in zip(trace, trace[1:]):
        if w0 <= t <= w1:
            return c0 + (c1 - c0) * (t - w0) / max(w1 - w0, 1e-9)
    return trace[-1][1]


def _timed_windows(ranks: list[dict[str, Any]], warmup: int, epochs: int) -> list[tuple[float, Optional[float]]]:
    """Wall and process-CPU seconds of every rank over the epochs after ``warmup``. Rank 0 writes a
    checkpoint after every epoch (``_save``): the window runs from the end of the save after the
    warm-up epoch(s) to the start of the last save, without the saves in between."""
    saves = ranks[0].get("timers", {}).get("_save", {}).get("intervals", [])
    if warmup < 1 or len(saves) != epochs:
        return [(0.0, None) for _ in ranks]
    w0, w1 = saves[warmup - 1][1], saves[-1][0]
    between = saves[warmup:-1]
    out = []
    for i, r in enumerate(ranks):
        wall = w1 - w0 - sum(b - a for a, b, _, _ in between)
        c0, c1 = _cpu_at(r.get("cpu_trace", []), w0), _cpu_at(r.get("cpu_trace", []), w1)
        cpu = None if c0 is None or c1 is None else c1 - c0
        if cpu is not None and i == 0:
            cpu -= sum(cb - ca for _, _, ca, cb in between)
        out.append((wall, cpu))
    return out


def measure(what: str, run: Any, waiter: Optional["QuietWaiter"], clean: Any, discarded: list,
            attempts: int = 3) -> dict[str, Any]:
    """``run()`` once; with a waiter: after waiting for a quiet machine, and again (after ``clean()``,
    at most ``attempts`` in all) while others used more than twice the quiet threshold during it and
    waiting budget is left."""
    for attempt in range(1, attempts + 1):
        before = waiter() if waiter else None
        res = run()
        res["foreign_before"] = before
        busy = res["foreign"] is not None and waiter is not None and res["foreign"] > 2 * waiter.below
        if not busy or waiter.left() <= 0 or attempt == attempts:
            return res
        discarded.append({"what": what, "wall_s": res["wall"], "foreign_cores": res["foreign"]})
        print(f"   (others used {res['foreign']:.2f} cores: run again)", flush=True)
        clean()


def train_row(label: str, nproc: int, threads: int, res: dict[str, Any], run: Path, samples: int,
              warmup: int) -> dict[str, Any]:
    recs = metrics(run)
    secs = [r["seconds"] for r in recs]
    timed = secs[warmup:]
    r0 = res["ranks"][0]
    fit_start = _timer(r0, "fit", "first_start")
    fit_end = _timer(r0, "fit", "last_end")
    in_epochs_comm = [(_timer(r, "all_sum") + _timer(r, "average_gradients")) for r in res["ranks"]]
    steps = recs[-1]["step"]
    row = {
        "config": label, "processes": nproc, "threads": threads,
        "epoch_seconds": secs, "timed_epochs": len(timed),
        "samples_per_s": samples * len(timed) / sum(timed) if timed else None,
        "first_epoch_samples_per_s": samples / secs[0],
        "wall_s": res["wall"], "cpu_s": res["cpu"], "foreign_cores": res["foreign"],
        "foreign_cores_before": res.get("foreign_before"),
        "train_loss": [r["train_loss"] for r in recs], "steps": [r["step"] for r in recs],
        "torch_threads": [r["torch_threads"] for r in res["ranks"]],
        # where the wall time goes (rank 0's view; seconds)
        "launch_to_python": r0["t_start"] - res["t_launch"],
        "imports": r0["t_imported"] - r0["t_start"],
        "process_group_init": _timer(r0, "init_if_needed"),
        "setup": fit_start - r0["t_imported"],          # parse, init, open + NaN scan, model build
        "epochs_total": sum(secs),
        "fit_other": (fit_end - fit_start) - sum(secs),  # checkpoint writes, broadcasts, final barrier
        "teardown": res["t_end"] - fit_end,              # shutdown, interpreter exit, torchrun agent exit
        "checkpoint_writes": _timer(r0, "_save"),
        "adam_construction": _timer(r0, "Adam"),
        "comm_seconds_per_rank": in_epochs_comm,         # inside all_sum + average_gradients (incl. waiting)
        "comm_per_step_ms": [1e3 * c / max(steps, 1) for c in in_epochs_comm],
        "average_gradients_per_step_ms": [1e3 * _timer(r, "average_gradients") / max(steps, 1)
                                          for r in res["ranks"]],
        "all_sum_per_step_ms": [1e3 * _timer(r, "all_sum") / max(steps, 1) for r in res["ranks"]],
        "shutdown": [_timer(r, "shutdown") for r in res["ranks"]],
        "rank_start_skew": max(r["t_start"] for r in res["ranks"]) - min(r["t_start"] for r in res["ranks"]),
        "broadcasts": [_timer(r, "broadcast_object") + _timer(r, "broadcast_parameters") for r in res["ranks"]],
        "final_barrier": [_timer(r, "barrier") for r in res["ranks"]],
    }
    row["startup"] = row["launch_to_python"] + row["imports"] + row["setup"]
    windows = _timed_windows(res["ranks"], warmup, len(recs))
    row["timed_wall"] = windows[0][0]                 # check: should equal sum of the timed epochs' seconds
    row["timed_cpu_per_rank"] = [c for _, c in windows]
    row["timed_cores_per_rank"] = [c / w if c is not None and w > 0 else None for w, c in windows]
    timed_samples = samples * len(timed)
    cpus = [c for _, c in windows]
    row["cpu_ms_per_sample"] = 1e3 * sum(cpus) / timed_samples if timed_samples and None not in cpus else None
    row["not_wrapped"] = res["ranks"][0].get("not_wrapped", [])
    return row


def recon_row(label: str, nproc: int, threads: int, res: dict[str, Any], samples: int) -> dict[str, Any]:
    ranks = res["ranks"]
    r0 = ranks[0]
    compute = [_timer(r, "_compute") for r in ranks]
    row = {
        "config": label, "processes": nproc, "threads": threads,
        "wall_s": res["wall"], "samples_per_s": samples / res["wall"],
        "compute_s": compute, "compute_samples_per_s": samples / max(compute) if max(compute) > 0 else None,
        "compute_cpu_s": [_timer(r, "_compute", "cpu") for r in ranks],
        "cpu_s": res["cpu"], "foreign_cores": res["foreign"],
        "foreign_cores_before": res.get("foreign_before"),
        "torch_threads": [r["torch_threads"] for r in ranks],
        "launch_to_python": r0["t_start"] - res["t_launch"],
        "imports": r0["t_imported"] - r0["t_start"],
        "process_group_init": _timer(r0, "init_if_needed"),
        "load_run": _timer(r0, "load_run"),
        # rank 0: its part file (2x1) and the full output: zero-filled allocation + a one-sample forward
        "open_outputs": [_timer(r, "_open") for r in ranks],
        "open_calls": [_timer(r, "_open", "calls") for r in ranks],
        "merge": _timer(r0, "_merge"),
        "wait_for_other_rank": [_timer(r, "all_sum") for r in ranks],
        "broadcast_and_barrier": [_timer(r, "broadcast_object") + _timer(r, "barrier") for r in ranks],
        "shutdown": [_timer(r, "shutdown") for r in ranks],
        "main_total": r0["t_main_end"] - r0["t_main"],
        "teardown": res["t_end"] - r0["t_main_end"],
        "not_wrapped": r0.get("not_wrapped", []),
    }
    row["startup"] = row["launch_to_python"] + row["imports"]
    known = row["process_group_init"] + row["load_run"] + row["open_outputs"][0] + compute[0] + row["merge"] \
        + row["wait_for_other_rank"][0] + row["broadcast_and_barrier"][0] + row["shutdown"][0]
    row["other_in_main"] = row["main_total"] - known      # NaN scan of the input, output check, rename
    row["compute_cores_per_rank"] = [c / w if w > 0 else None for c, w in zip(row["compute_cpu_s"], compute)]
    row["compute_cpu_ms_per_sample"] = 1e3 * sum(row["compute_cpu_s"]) / samples
    return row


def fmt(v: Optional[float], digits: int = 1) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def fmt_pair(vs: list[Optional[float]], digits: int = 1) -> str:
    return " / ".join(fmt(v, digits) for v in vs)


def report(out: dict[str, Any]) -> str:
    lines: list[str] = []
    cfg = out["setup"]
    lines.append(f"machine: {out['machine']['cpu']}, {out['machine']['cores']} cores; python "
                 f"{out['machine']['python']}, torch {out['machine']['torch']}, invrim {out['machine']['invrim']} "
                 f"({out['machine']['commit']})")
    lines.append(f"set-up: {cfg['train_samples']} training samples 1x{cfg['size']}x{cfg['size']}, "
                 f"{cfg['epochs']} epochs ({cfg['warmup_epochs']} warm-up), global batch {cfg['batch_size']}, "
                 f"backbone {cfg['backbone']} {cfg['backbone_options'] or '(default options)'}, T={cfg['T']}; "
                 f"{cfg['obs_samples']} observations reconstructed at batch {cfg['batch_size']}"
                 + (f"; {cfg['background_load']} busy-loop process(es) emulating other users"
                    if cfg.get("background_load") else ""))
    lines.append(f"load average before {out['loadavg_before']}, after {out['loadavg_after']}; "
                 f"total {out['total_seconds']:.0f} s (of which {out['waited_for_quiet_s']:.0f} s waiting for a quiet "
                 f"machine)")
    lines.append("")
    base = out["train"][0]["samples_per_s"]
    lines.append("Training (invrim train): steady-state samples/s from metrics.jsonl epochs after warm-up")
    lines.append("")
    lines.append("| config | timed epochs (s) | samples/s | vs 1x1 | 1st epoch samples/s | CPU ms/sample (timed) "
                 "| our cores (timed, per rank) | start-up s | teardown s | wall s | CPU s | others' cores |")
    lines.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in out["train"]:
        lines.append(f"| {r['config']} | {', '.join(f'{s:.1f}' for s in r['epoch_seconds'][cfg['warmup_epochs']:])} "
                     f"| **{fmt(r['samples_per_s'], 2)}** | {r['samples_per_s'] / base:.2f}x "
                     f"| {fmt(r['first_epoch_samples_per_s'], 2)} | {fmt(r['cpu_ms_per_sample'], 0)} "
                     f"| {fmt_pair(r['timed_cores_per_rank'], 2)} | {r['startup']:.1f} | {r['teardown']:.1f} "
                     f"| {r['wall_s']:.1f} | {r['cpu_s']:.1f} | {fmt(r['foreign_cores'], 2)} |")
    lines.append("")
    a = out["train"][0]
    lines.append(f"1x1 start-up: launch->python {a['launch_to_python']:.2f} s, imports {a['imports']:.2f} s, setup "
                 f"{a['setup']:.2f} s; fit outside epochs {a['fit_other']:.2f} s (torch.optim.Adam() "
                 f"{a['adam_construction']:.2f} s: it imports torch._dynamo); teardown {a['teardown']:.2f} s")
    for c in (r for r in out["train"] if r["processes"] > 1):
        lines.append(f"{c['config']} start-up: launch->python {c['launch_to_python']:.2f} s (torchrun agent + spawn), "
                     f"imports {c['imports']:.2f} s, setup {c['setup']:.2f} s (process group "
                     f"{c['process_group_init']:.2f} s); "
                     f"fit outside epochs {c['fit_other']:.2f} s (Adam() {c['adam_construction']:.2f} s, checkpoint "
                     f"writes {c['checkpoint_writes']:.2f} s, broadcasts on rank 0 {c['broadcasts'][0]:.2f} s); "
                     f"teardown {c['teardown']:.2f} s; ranks started {c['rank_start_skew']:.2f} s apart")
        lines.append(f"{c['config']} per step, per rank: all_sum {fmt_pair(c['all_sum_per_step_ms'])} ms, "
                     f"average_gradients {fmt_pair(c['average_gradients_per_step_ms'])} ms "
                     f"(communication + waiting for the other rank)")
    ar = out.get("allreduce")
    if ar:
        lines.append(f"gloo all-reduce, both ranks ready: {ar['numel']} float32 ({ar['numel'] * 4 / 2**20:.2f} MiB) "
                     f"median {ar['big_ms']:.2f} ms; 1 float64 median {ar['small_ms']:.3f} ms")
    if out.get("torchrun_noop_s") is not None:
        lines.append(f"torchrun --standalone --nproc_per_node=2 --no-python true: {out['torchrun_noop_s']:.2f} s")
    lines.append(f"loss curves: 1x1 {['%.6g' % v for v in a['train_loss']]}")
    for k, v in out["checks"]["loss_max_rel_diff"].items():
        lines.append(f"  max relative difference of the loss curve {k}: {v:.2e}")
    lines.append("")
    rbase = out["reconstruct"][0]
    lines.append("Reconstruction (invrim reconstruct): wall = whole command; compute = _compute (slower rank)")
    lines.append("")
    lines.append("| config | wall s | samples/s (wall) | vs 1x1 | compute s (per rank) | samples/s (compute) | vs 1x1 "
                 "| compute CPU ms/sample | our cores in compute (per rank) | start-up s | open outputs s | merge s "
                 "| CPU s | others' cores | x_hat equal to 1x1 |")
    lines.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in out["reconstruct"]:
        eq = out["checks"]["x_hat_equal"].get(r["config"], True)
        lines.append(f"| {r['config']} | {r['wall_s']:.1f} | **{r['samples_per_s']:.1f}** "
                     f"| {r['samples_per_s'] / rbase['samples_per_s']:.2f}x | {fmt_pair(r['compute_s'])} "
                     f"| **{fmt(r['compute_samples_per_s'])}** "
                     f"| {r['compute_samples_per_s'] / rbase['compute_samples_per_s']:.2f}x "
                     f"| {r['compute_cpu_ms_per_sample']:.0f} | {fmt_pair(r['compute_cores_per_rank'], 2)} "
                     f"| {r['startup']:.1f} "
                     f"| {fmt_pair(r['open_outputs'], 2)} | {r['merge']:.3f} | {r['cpu_s']:.1f} "
                     f"| {fmt(r['foreign_cores'], 2)} | {'reference' if r['config'] == '1x1' else eq} |")
    lines.append("")
    for c in out["reconstruct"]:
        lines.append(f"{c['config']} reconstruct, rank 0: launch->python {c['launch_to_python']:.2f} s, imports "
                     f"{c['imports']:.2f} s, process group {c['process_group_init']:.2f} s, load_run {c['load_run']:.2f} s, "
                     f"open outputs {c['open_outputs'][0]:.2f} s ({int(c['open_calls'][0])} files), compute "
                     f"{c['compute_s'][0]:.2f} s, waiting for the other rank {c['wait_for_other_rank'][0]:.2f} s, merge "
                     f"{c['merge']:.3f} s, other {c['other_in_main']:.2f} s (NaN scan, checks, rename), teardown "
                     f"{c['teardown']:.2f} s")
    missing = sorted({n for r in out["train"] + out["reconstruct"] for n in r.get("not_wrapped", [])})
    if missing:
        lines.append("NOT TIMED (the library no longer has these names; their columns read 0 or -): "
                     + ", ".join(missing))
    if out.get("discarded_attempts"):
        lines.append("runs thrown away (others too busy): " + "; ".join(
            f"{d['what']} ({d['foreign_cores']:.2f} cores)" for d in out["discarded_attempts"]))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke test: tiny model, few samples (~40 s)")
    parser.add_argument("--size", type=int, default=None, help="image side (default 64; quick 32)")
    parser.add_argument("--train-samples", type=int, default=None, help="training samples (default 64; quick 32)")
    parser.add_argument("--obs-samples", type=int, default=None, help="observations to reconstruct (default 256; "
                        "quick 64)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs, the first is warm-up (default 3; quick 2)")
    parser.add_argument("--batch-size", type=int, default=16, help="global batch for training and reconstruction")
    parser.add_argument("--backbone", default="hourglass")
    parser.add_argument("-b", "--backbone-option", action="append", default=None, metavar="KEY=VALUE",
                        help="backbone option (repeatable); default: invrim train's defaults (quick: a tiny one)")
    parser.add_argument("--T", type=int, default=6)
    parser.add_argument("--wait-quiet", type=float, default=0.0, metavar="SECONDS",
                        help="before each configuration wait until others use < --quiet-below cores, at most "
                             "SECONDS in all (default 0: no waiting)")
    parser.add_argument("--quiet-below", type=float, default=0.3, metavar="CORES",
                        help="with --wait-quiet: 'quiet' threshold; a configuration during which others used more "
                             "than twice this is run again while the waiting budget lasts (default 0.3)")
    parser.add_argument("--configs", default=DEFAULT_CONFIGS,
                        help=f"PROCESSESxTHREADS list (default {DEFAULT_CONFIGS}); a trailing p sets "
                             "OMP_WAIT_POLICY=PASSIVE, e.g. 1x2p")
    parser.add_argument("--background-load", type=int, default=0, metavar="N",
                        help="emulate other users: N single-threaded busy-loop processes run during all measurements "
                             "(default 0); they count as others' cores")
    parser.add_argument("--allreduce-reps", type=int, default=30)
    parser.add_argument("--json", metavar="FILE", help="write all results as JSON")
    parser.add_argument("--keep", metavar="DIR", help="work in DIR (kept) instead of a temporary folder")
    args = parser.parse_args()
    size = args.size or (32 if args.quick else 64)
    n_train = args.train_samples or (32 if args.quick else 64)
    n_obs = args.obs_samples or (64 if args.quick else 192)
    epochs = args.epochs or (2 if args.quick else 3)
    warmup = 1 if epochs >= 2 else 0
    bopts = args.backbone_option
    if bopts is None:
        bopts = ["nf=8", "hidden_units=8", "ch_mult=[2]"] if args.quick else []
    t_total = time.perf_counter()
    waiter = QuietWaiter(args.wait_quiet, args.quiet_below) if args.wait_quiet > 0 else None
    configs = parse_configs(args.configs)
    configs.sort(key=lambda c: c[0] != "1x1")          # 1x1 first: the reference run
    discarded: list[dict[str, Any]] = []

    out: dict[str, Any] = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "machine": machine(),
                           "loadavg_before": loadavg(), "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    out["setup"] = {"size": size, "train_samples": n_train, "obs_samples": n_obs, "epochs": epochs,
                    "warmup_epochs": warmup, "batch_size": args.batch_size, "backbone": args.backbone,
                    "backbone_options": bopts, "T": args.T}
    print(f"load average {out['loadavg_before']}; {out['machine']['cpu']}, {out['machine']['cores']} cores", flush=True)

    background: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory() as tmpname, _Killer(background):
        tmp = Path(args.keep) if args.keep else Path(tmpname)
        tmp.mkdir(parents=True, exist_ok=True)
        train_h5, obs_h5 = tmp / "train.h5", tmp / "obs.h5"
        s1 = simulate(train_h5, n_train, 0, size)
        s2 = simulate(obs_h5, n_obs, 1, size)
        out["simulate_s"] = [s1, s2]
        print(f"simulated {n_train} + {n_obs} samples ({s1:.1f} s, {s2:.1f} s)", flush=True)

        # ---- optional emulated load of other users (killed in the finally below)
        for _ in range(args.background_load):
            background.append(subprocess.Popen([sys.executable, "-c", "while True: pass"]))
        out["setup"]["background_load"] = args.background_load

        # ---- training
        bargs = [x for o in bopts for x in ("-b", o)]
        out["train"] = []
        for label, nproc, threads, passive in configs:
            run = tmp / f"run-{label}"
            argv = ["train", str(train_h5), "-o", str(run), "--epochs", str(epochs), "--batch-size",
                    str(args.batch_size), "--seed", "0", "--T", str(args.T), "--backbone", args.backbone, *bargs,
                    "--quiet"]

            def clean(run: Path = run) -> None:
                import shutil
                shutil.rmtree(run, ignore_errors=True)
            res = measure(f"train {label}",
                          lambda: launch(_cmd(nproc, argv), threads, tmp / f"timing-train-{label}", passive=passive),
                          waiter, clean, discarded)
            row = train_row(label, nproc, threads, res, run, n_train, warmup)
            row["omp_wait_policy"] = "PASSIVE" if passive else None
            out["train"].append(row)
            print(f"train {label}: {fmt(row['samples_per_s'], 2)} samples/s steady (epochs "
                  f"{', '.join(f'{s:.1f}' for s in row['epoch_seconds'])} s), wall {row['wall_s']:.1f} s, "
                  f"others used {fmt(row['foreign_cores'], 2)} cores", flush=True)

        a = out["train"][0]
        checks: dict[str, Any] = {"loss_max_rel_diff": {}, "x_hat_equal": {}}
        for r in out["train"][1:]:
            diffs = [abs(x - y) / abs(x) for x, y in zip(a["train_loss"], r["train_loss"])]
            checks["loss_max_rel_diff"][f"1x1 vs {r['config']}"] = max(diffs)
            checks.setdefault("steps_equal", {})[r["config"]] = r["steps"] == a["steps"]

        # ---- all-reduce micro-benchmark and the bare launcher
        if any(c[1] > 1 for c in configs):
            import statistics

            from invrim.runs import read_tensors
            weights = sorted((tmp / "run-1x1").glob("weights_epoch*.safetensors"))[-1]
            numel = sum(t.numel() for t in read_tensors(weights).values() if t.is_floating_point())
            timing = tmp / "timing-allreduce"
            launch([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(HERE),
                    "--child-allreduce", str(numel), str(args.allreduce_reps)], 1, timing)
            ar = json.loads((timing / "allreduce.json").read_text())
            out["allreduce"] = {"numel": numel, "big_ms": 1e3 * statistics.median(ar["big"]),
                                "small_ms": 1e3 * statistics.median(ar["small"]), "raw_s": ar}
            res = launch([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          "--no-python", "true"], 1, tmp / "timing-noop")
            out["torchrun_noop_s"] = res["wall"]
            print(f"all-reduce of {numel} float32: {out['allreduce']['big_ms']:.2f} ms; torchrun no-op "
                  f"{res['wall']:.2f} s", flush=True)

        # ---- reconstruction (reverse order, so that a slow phase of the machine is spread)
        import h5py
        import numpy as np
        out["reconstruct"] = []
        for label, nproc, threads, passive in reversed(configs):
            recon = tmp / f"recon-{label}.h5"
            argv = ["reconstruct", str(tmp / "run-1x1"), str(obs_h5), "-o", str(recon), "--batch-size",
                    str(args.batch_size), "--quiet"]

            def clean(recon: Path = recon) -> None:
                for p in recon.parent.glob(recon.name + "*"):
                    p.unlink()
            res = measure(f"reconstruct {label}",
                          lambda: launch(_cmd(nproc, argv), threads, tmp / f"timing-recon-{label}", passive=passive),
                          waiter, clean, discarded)
            row = recon_row(label, nproc, threads, res, n_obs)
            row["omp_wait_policy"] = "PASSIVE" if passive else None
            out["reconstruct"].append(row)
            print(f"reconstruct {label}: {row['samples_per_s']:.1f} samples/s (wall {row['wall_s']:.1f} s), compute "
                  f"{fmt(row['compute_samples_per_s'])} samples/s, others used {fmt(row['foreign_cores'], 2)} cores",
                  flush=True)
        out["reconstruct"].reverse()
        with h5py.File(tmp / "recon-1x1.h5", "r") as f:
            ref = f["x_hat"][:]
        for label, *_ in configs[1:]:
            with h5py.File(tmp / f"recon-{label}.h5", "r") as f:
                other = f["x_hat"][:]
            checks["x_hat_equal"][label] = bool(np.array_equal(ref, other))
            checks.setdefault("x_hat_max_abs_diff", {})[label] = float(np.abs(ref - other).max())
        checks["parts_left"] = sorted(p.name for p in tmp.glob("recon-*.h5.part*"))
        out["checks"] = checks

    out["loadavg_after"] = loadavg()
    out["waited_for_quiet_s"] = waiter.waited if waiter else 0.0
    out["discarded_attempts"] = discarded
    out["total_seconds"] = time.perf_counter() - t_total
    print()
    print(report(out))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _child(sys.argv[2:])
    elif len(sys.argv) > 1 and sys.argv[1] == "--child-allreduce":
        _child_allreduce(int(sys.argv[2]), int(sys.argv[3]))
    else:
        main()
