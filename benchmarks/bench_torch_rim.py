#!/usr/bin/env python
"""Benchmark invrim's RIM + Hourglass against the seed library torch-rim 0.2.9 (``import rim``).

Both libraries solve the same problem in the same process with the same backbone
hyper-parameters (channels=1, 2-D, 64x64, batch 8, fp32, nf=32, ch_mult=(2, 2),
hidden_units=32, num_layers=2, kernel_size=3) and the *same* analytic score function: 2-D
deblurring with a fixed 7x7 Gaussian PSF (sigma 1.5) and Gaussian noise,
``score(x, y) = A^T (y - A x) / sigma_n^2``, with ``A`` a depthwise 'same' ``F.conv2d``.

For every T it measures

1. the training-step time  ``zero_grad; loss_fn(y, x).backward(); Adam.step()``,
2. the inference time      ``predict(y)``,
3. the memory of one training step (forward + backward), each configuration in a fresh
   subprocess (``--child``): peak-RSS increase, peak live tensor bytes (from the profiler's
   allocator events: does not depend on glibc) and bytes of tensors saved for backward.

Timings are medians over repeats taken after warm-up, with the libraries interleaved
(A B C, C B A, ...) so that machine noise hits all of them alike; rounds during which other
processes used more than ``--max-foreign`` cores are discarded and redone.

Both RIMs get the same model settings: T, zero initialisation, identity score preprocessing, no
score standardisation, uniform loss weights, detached score (torch-rim's behaviour, and invrim's
defaults before RIMConfig; passed explicitly to invrim since its defaults changed).

The allocator (``--heap``). invrim no longer tunes glibc's heap by itself: an application opts
in. ``--heap kept`` (the default, as in the runs recorded in RESULTS.md) calls
``invrim.heap.keep_heap()`` once at the start, so both libraries (they share the process) run
with glibc's mmap/trim thresholds fixed; ``--heap default`` leaves glibc alone. With an invrim
older than ``invrim.heap`` (whose RIM kept the heap by itself at its first CPU training step)
``kept`` calls ``invrim.training.heap.keep_heap()`` and ``default`` sets ``INVRIM_KEEP_HEAP=0``.

Usage::

    python benchmarks/bench_torch_rim.py                 # full run, T in 5 10 20 40
    python benchmarks/bench_torch_rim.py --quick         # smoke test (< 60 s)
    python benchmarks/bench_torch_rim.py --json out.json --threads 2
    python benchmarks/bench_torch_rim.py --device cuda   # GPU (memory via the CUDA allocator)
    python benchmarks/bench_torch_rim.py --heap default  # glibc's default malloc settings
"""
from __future__ import annotations

import argparse
import gc
import inspect
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from typing import Any, Callable

import torch

from machine_load import ForeignLoad, cpu_name, wait_quiet  # benchmarks/machine_load.py (the script's folder is on sys.path)
import torch.nn.functional as F

# ----------------------------------------------------------------------------- set-up
HOURGLASS = dict(nf=32, ch_mult=(2, 2), hidden_units=32, num_layers=2, kernel_size=3)
C, N, B = 1, 64, 8                   # channels, image side, batch
PSF_SIZE, PSF_SIGMA = 7, 1.5
NOISE_SIGMA = 0.05
LR = 1e-4
SEED = 0

# invrim's model settings that reproduce torch-rim's (and invrim's own defaults before RIMConfig)
INVRIM_SETTINGS = dict(initialization_method="zeros", score_preprocessing_method="identity",
                       standardize_score=False, loss_weights="uniform", detach_score=True)

# configurations: (label, library, gradient checkpointing[, precision[, compile]])
CONFIGS = {
    "torch-rim": ("torch-rim", False),
    "invrim": ("invrim", False),
    "invrim-ckpt": ("invrim", True),
}
#: the low-precision configurations ``--precision`` adds to the timings (not to the memory runs)
PRECISION_CONFIGS = {"bf16": ("invrim-bf16", ("invrim", False, "bf16")),
                     "fp16": ("invrim-fp16", ("invrim", False, "fp16"))}


def gaussian_psf(size: int = PSF_SIZE, sigma: float = PSF_SIGMA) -> torch.Tensor:
    r = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-0.5 * (r / sigma) ** 2)
    psf = g[:, None] * g[None, :]
    return (psf / psf.sum()).float()


class Deblur:
    """The forward model ``A`` (depthwise 'same' blur), its adjoint and the analytic score."""

    def __init__(self, device: torch.device):
        psf = gaussian_psf().to(device)
        # F.conv2d is a correlation: flip for a true convolution (the Gaussian is symmetric).
        self.w = torch.flip(psf, dims=(0, 1)).expand(C, 1, PSF_SIZE, PSF_SIZE).contiguous()
        # The adjoint of a 'same' correlation with an odd kernel is the 'same' correlation with
        # the flipped kernel. (F.conv_transpose2d computes the same thing but its depthwise CPU
        # kernel is ~8x slower; both libraries would pay for it alike.)
        self.w_adj = torch.flip(self.w, dims=(2, 3)).contiguous()
        self.pad = PSF_SIZE // 2

    def A(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.w, padding=self.pad, groups=C)

    def AT(self, r: torch.Tensor) -> torch.Tensor:
        return F.conv2d(r, self.w_adj, padding=self.pad, groups=C)


_PHYSICS: dict[str, Deblur] = {}


def score_fn(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``grad_x log p(y | x) = A^T (y - A x) / sigma^2`` -- the same callable for both libraries."""
    op = _PHYSICS[str(x.device)]
    return op.AT(y - op.A(x)) / NOISE_SIGMA ** 2


def make_data(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed-seed ground truth (sums of Gaussian blobs in [0, 1]) and blurred noisy observation."""
    op = Deblur(device)
    _PHYSICS.setdefault(str(op.w.device), op)     # keyed like x.device ("cuda:0", not "cuda")
    g = torch.Generator().manual_seed(SEED)
    grid = torch.arange(N, dtype=torch.float32)
    yy, xx = torch.meshgrid(grid, grid, indexing="ij")
    x = torch.zeros(B, C, N, N)
    for b in range(B):
        for _ in range(6):
            cy, cx = (torch.rand(2, generator=g) * N).tolist()
            s = 2.0 + 6.0 * torch.rand(1, generator=g).item()
            amp = 0.3 + 0.7 * torch.rand(1, generator=g).item()
            x[b, 0] += amp * torch.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))
    x = (x / x.amax(dim=(1, 2, 3), keepdim=True)).to(device)
    noise = torch.randn(B, C, N, N, generator=g).to(device)
    y = _PHYSICS[str(x.device)].A(x) + NOISE_SIGMA * noise
    return y, x


def make_model(lib: str, device: torch.device) -> torch.nn.Module:
    torch.manual_seed(SEED)
    if lib == "torch-rim":
        from rim.architectures.hourglass import Hourglass
        return Hourglass(C, dimensions=2, **HOURGLASS).to(device)
    from invrim.backbones.hourglass import Hourglass
    return Hourglass(C, dimensions=2, **HOURGLASS).to(device)


def make_rim(lib: str, model: torch.nn.Module, T: int, gradient_checkpointing: bool, device: torch.device,
             precision: str = "fp32", compile: bool = False):
    if lib == "torch-rim":
        from rim import RIM
        return RIM((N, N), model, score_fn=score_fn, T=T, device=device)
    from invrim.rim import RIM
    # ``checkpointing`` is the name before RIMConfig (it now warns): the older tree gets it
    name = ("gradient_checkpointing" if "gradient_checkpointing" in inspect.signature(RIM.__init__).parameters
            else "checkpointing")
    extra = {"precision": precision} if precision != "fp32" else {}
    if compile:
        extra["compile"] = True
    return RIM((N, N), model, score_fn=score_fn, T=T, **INVRIM_SETTINGS, **{name: gradient_checkpointing}, **extra)


def set_heap(mode: str) -> dict[str, Any]:
    """Apply ``--heap`` (``kept``: glibc's thresholds fixed now, for the whole process;
    ``default``: glibc left alone) and say what was done."""
    import invrim
    # Only a module of the invrim actually imported: with PYTHONPATH pointing at an older tree,
    # setuptools' editable finder would serve ``invrim.heap`` from the installed (newer) tree.
    if os.path.exists(os.path.join(os.path.dirname(invrim.__file__), "heap.py")):
        from invrim import heap as heap_mod
        where = "invrim.heap"
    else:                                     # invrim before invrim.heap: the RIM kept it itself
        from invrim.training import heap as heap_mod
        where = "invrim.training.heap"
    out: dict[str, Any] = {"setting": mode, "module": where, "file": heap_mod.__file__}
    if mode == "kept":
        out["kept"] = bool(heap_mod.keep_heap())
        out["how"] = f"{where}.keep_heap() at start"
    else:
        if where != "invrim.heap":
            os.environ["INVRIM_KEEP_HEAP"] = "0"  # the older RIM would keep it at its first step
            out["how"] = "glibc defaults (INVRIM_KEEP_HEAP=0 for the older RIM)"
        else:
            out["how"] = "glibc defaults (keep_heap not called)"
        out["kept"] = False
    return out


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_step(rim, opt, y, x) -> None:
    opt.zero_grad(set_to_none=True)
    loss = rim.loss_fn(y, x)
    loss.backward()
    opt.step()


class Runner:
    """One configuration at one T: its RIM, optimiser and the two timed closures."""

    def __init__(self, key: str, T: int, device: torch.device, y, x):
        lib, ckpt, *precision = CONFIGS[key]
        self.key, self.lib = key, lib
        self.model = make_model(lib, device)
        self.rim = make_rim(lib, self.model, T, ckpt, device, *precision)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=LR)
        self.y, self.x = y, x
        # a compiled RIM predicts as a reconstruction job does: with weights that do not change
        # (its frozen graph); the one trained here would fall back to the unfrozen graph
        compiled = len(precision) > 1 and precision[1]
        self.infer_rim = make_rim(lib, make_model(lib, device), T, ckpt, device, *precision) if compiled else self.rim

    def train(self) -> None:
        train_step(self.rim, self.opt, self.y, self.x)

    def predict(self) -> None:
        self.infer_rim.predict(self.y)

    def predict_no_grad(self) -> None:
        with torch.no_grad():
            self.rim.predict(self.y)


def timeit(fn: Callable[[], None], device: torch.device) -> float:
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


# ----------------------------------------------------------------------------- machine noise
class Noise:
    """Policy for rounds disturbed by other processes (see ``--max-foreign``)."""

    def __init__(self, threshold: float, max_wait_s: float):
        self.threshold = threshold
        self.deadline = time.perf_counter() + max_wait_s
        self.discarded = 0

    @property
    def active(self) -> bool:
        return self.threshold > 0 and time.perf_counter() < self.deadline


def interleaved(fns: dict[str, Callable[[], None]], device: torch.device, warmup: int,
                repeats: int, min_repeats: int, budget_s: float,
                noise: Noise) -> tuple[dict[str, list[float]], list[float]]:
    """Time every closure ``repeats`` times, alternating A B C / C B A; stop early (but not
    before ``min_repeats``) once ``budget_s`` seconds have been spent on the timed rounds.

    Each round's foreign CPU load is measured; while the noise policy is active a round during
    which other processes used more than ``noise.threshold`` cores is discarded and redone
    after the machine is quiet again. Returns the times and the kept rounds' foreign loads.
    """
    keys = list(fns)
    for _ in range(warmup):
        for k in keys:
            fns[k]()
    sync(device)
    times: dict[str, list[float]] = {k: [] for k in keys}
    loads: list[float] = []
    start = time.perf_counter()
    r = attempts = 0
    while r < repeats and attempts < 3 * repeats:
        attempts += 1
        if noise.active:
            wait_quiet(noise.threshold, max(0.0, noise.deadline - time.perf_counter()))
        order = keys if r % 2 == 0 else keys[::-1]
        with ForeignLoad() as fl:
            got = {k: timeit(fns[k], device) for k in order}
        if noise.active and fl.value is not None and fl.value > noise.threshold:
            noise.discarded += 1
            print(f"    round discarded: other processes used {fl.value:.1f} cores", flush=True)
            continue
        for k in keys:
            times[k].append(got[k])
        loads.append(fl.value if fl.value is not None else float("nan"))
        r += 1
        if r >= min_repeats and time.perf_counter() - start > budget_s:
            break
    if r == 0:
        raise RuntimeError("no round completed")
    return times, loads


# ----------------------------------------------------------------------------- memory (child)
def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for ln in f:
            if ln.startswith(field + ":"):
                return int(ln.split()[1])
    raise KeyError(field)


def current_rss() -> int:
    return _status_kib("VmRSS") * 1024


def peak_rss() -> int:
    """High-water mark of this process's RSS (VmHWM, per address space)."""
    return _status_kib("VmHWM") * 1024


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False when not permitted."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def max_rss() -> int:
    # NB: ru_maxrss survives fork + exec on Linux (it is kept in the signal struct), so in a
    # child started from a big parent it starts at the parent's peak; VmHWM does not.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux


def child(spec: dict[str, Any]) -> dict[str, Any]:
    """Measure one configuration's training-step memory in this (fresh) process."""
    device = torch.device(spec["device"])
    torch.set_num_threads(spec["threads"])
    key, T = spec["config"], spec["T"]
    lib, ckpt = CONFIGS[key]
    y, x = make_data(device)
    model = make_model(lib, device)
    rim = make_rim(lib, model, T, ckpt, device)
    warm = make_rim(lib, model, 1, ckpt, device)      # same backbone, T=1
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    # Warm-up: two full training steps at T=1 create the Adam state, oneDNN primitives and
    # the thread pool, so that the baseline below contains everything except the T-dependent
    # activations. Their own peak is far below that of any measured step (T >= 2).
    for _ in range(2):
        train_step(warm, opt, y, x)
    opt.zero_grad(set_to_none=True)
    gc.collect()
    out: dict[str, Any] = {"config": key, "T": T, "params": n_params(model)}

    # (1) peak RSS increase of one training step (CPU) / CUDA allocator peak (GPU)
    if device.type == "cuda":
        sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        train_step(rim, opt, y, x)
        sync(device)
        out["peak_bytes"] = torch.cuda.max_memory_allocated(device) - base
        out["peak_kind"] = "cuda_max_memory_allocated"
    else:
        out["hwm_reset"] = reset_peak_rss()
        base = current_rss()
        out["rss_before"] = base
        out["hwm_before"] = peak_rss()
        out["ru_maxrss_before"] = max_rss()
        train_step(rim, opt, y, x)
        out["hwm_after"] = peak_rss()
        out["ru_maxrss_after"] = max_rss()
        out["rss_after"] = current_rss()
        out["peak_bytes"] = out["hwm_after"] - base
        out["peak_kind"] = "VmHWM - VmRSS before"
    opt.zero_grad(set_to_none=True)
    gc.collect()

    # (2) allocator-independent: peak of live tensor bytes during one step, from the
    # profiler's allocation/free events (includes checkpoint recomputation inside backward),
    # and (3) unique storage bytes saved for backward, parameters excluded (read from the
    # autograd graph after the forward pass: torch-rim's torch.func.vjp refuses
    # saved_tensors_hooks). With checkpointing the graph only holds placeholders (reading
    # them would trigger the recomputation), so (3) is not reported for it.
    param_ptrs = {p.untyped_storage().data_ptr() for p in model.parameters()}
    holder: dict[str, Any] = {}

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss = rim.loss_fn(y, x)
        if not ckpt:
            holder["saved"] = graph_saved_bytes(loss, param_ptrs)
        loss.backward()
        opt.step()

    if device.type == "cpu":
        from torch.profiler import ProfilerActivity, profile
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            step()
        events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
                        if e.name() == "[memory]" and e.device_type() == torch.autograd.DeviceType.CPU)
        live = peak = 0
        for _, nb in events:
            live += nb
            peak = max(peak, live)
        out["tensor_peak_bytes"] = peak
    else:
        step()
    out["saved_bytes"] = holder.get("saved")
    return out


def graph_saved_bytes(loss: torch.Tensor, exclude: set[int]) -> int:
    """Sum of the unique storages that the autograd graph of ``loss`` keeps for backward."""
    storages: dict[int, int] = {}
    seen: dict[int, Any] = {}                 # keeps the wrappers alive: ids stay unique
    stack = [loss.grad_fn]
    while stack:
        fn = stack.pop()
        if fn is None or id(fn) in seen:
            continue
        seen[id(fn)] = fn
        values = []
        for name in dir(fn):
            if name.startswith("_saved_"):
                try:
                    values.append(getattr(fn, name))
                except Exception:
                    pass
        if hasattr(fn, "saved_tensors"):          # custom autograd.Function nodes
            try:
                values.append(fn.saved_tensors)
            except Exception:
                pass
        for v in values:
            for t in (v if isinstance(v, (tuple, list)) else (v,)):
                if isinstance(t, torch.Tensor):
                    st = t.untyped_storage()
                    if st.data_ptr() not in exclude:
                        storages[st.data_ptr()] = max(storages.get(st.data_ptr(), 0), st.nbytes())
        stack.extend(nxt for nxt, _ in fn.next_functions)
    return sum(storages.values())


def run_child(key: str, T: int, args) -> dict[str, Any]:
    spec = {"config": key, "T": T, "device": args.device, "threads": args.threads}
    env = dict(os.environ)
    # A fixed mmap threshold disables glibc's dynamic threshold, so large tensors are
    # mmap'd and unmapped when freed: RSS then follows the live memory instead of whatever
    # the heap happened to keep from earlier steps. Same for every configuration.
    env.setdefault("MALLOC_MMAP_THRESHOLD_", str(128 * 1024))
    env.setdefault("OMP_NUM_THREADS", str(args.threads))
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", json.dumps(spec)],
                          capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"child {spec} failed:\n{proc.stderr[-4000:]}")
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


# ----------------------------------------------------------------------------- reporting
def fmt_s(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v * 1e3:.0f} ms" if v < 1 else f"{v:.2f} s"


def fmt_mb(v: float | None) -> str:
    return "-" if v is None else f"{v / 2 ** 20:.0f} MiB"


def ratio(a: float | None, b: float | None) -> str:
    return "-" if a is None or b in (None, 0) else f"{a / b:.2f}x"


def lscpu() -> dict[str, str]:
    """``lscpu``'s fields (model name, family/model/stepping, flags, caches, hypervisor)."""
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=20,
                              env={**os.environ, "LC_ALL": "C"}).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    out = {}
    for ln in text.splitlines():
        if ":" in ln:
            k, v = ln.split(":", 1)
            out[k.strip()] = v.strip()
    return out


SIMD_PREFIXES = ("sse", "ssse", "avx", "amx", "fma", "f16c")


def machine_info() -> dict[str, Any]:
    cpu = cpu_name()
    ls = lscpu()
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    try:
        import importlib.metadata as md
        trim_v = md.version("torch-rim")
    except Exception:
        trim_v = "?"
    git = {}
    try:
        import invrim
        root = os.path.dirname(os.path.dirname(os.path.abspath(invrim.__file__)))
        run = lambda *a: subprocess.run(["git", "-C", root, *a], capture_output=True, text=True,
                                        timeout=20).stdout.strip()
        git = {"commit": run("rev-parse", "--short", "HEAD"),
               "modified": run("status", "--porcelain", "--", "invrim").splitlines(),
               "path": os.path.dirname(os.path.abspath(invrim.__file__))}
    except Exception:
        pass
    flags = ls.get("Flags", "").split()
    return {"cpu": ls.get("Model name") or cpu, "cores": os.cpu_count(), "torch": torch.__version__,
            "torch_rim": trim_v, "python": platform.python_version(), "loadavg": load,
            "invrim_git": git,
            "cpu_id": {k: ls.get(k) for k in ("Vendor ID", "CPU family", "Model", "Stepping",
                                              "Hypervisor vendor", "L1d cache", "L2 cache", "L3 cache")},
            "cpu_flags": flags, "cpu_simd_flags": [f for f in flags if f.startswith(SIMD_PREFIXES)]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke test: T in 5 10, one repeat")
    ap.add_argument("--T", type=int, nargs="+", default=None, help="steps to benchmark (default 5 10 20 40)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=None, help="warm-up rounds per T (default 1)")
    ap.add_argument("--repeats", type=int, default=None, help="timed rounds per T (default 11)")
    ap.add_argument("--min-repeats", type=int, default=None, help="rounds always done (default 5)")
    ap.add_argument("--budget", type=float, default=None,
                    help="seconds per T and measure after which rounds stop once min-repeats are done (default 240)")
    ap.add_argument("--max-foreign", type=float, default=None,
                    help="discard and redo timed rounds during which other processes used more than "
                         "this many cores (0: keep every round; default 0.25, --quick: 0)")
    ap.add_argument("--max-wait", type=float, default=1800.0,
                    help="total seconds to spend waiting for a quiet machine (default 1800)")
    ap.add_argument("--no-memory", action="store_true", help="skip the memory subprocesses")
    ap.add_argument("--no-ckpt-time", action="store_true", help="do not time invrim with checkpointing")
    ap.add_argument("--heap", choices=("kept", "default"), default="kept",
                    help="glibc's heap: 'kept' calls invrim.heap.keep_heap() once at start (as in the "
                         "recorded runs), 'default' leaves glibc alone (default: kept)")
    ap.add_argument("--precision", choices=tuple(PRECISION_CONFIGS), nargs="+", default=[],
                    help="also time invrim with the backbone in this precision (RIM(precision=...))")
    ap.add_argument("--compile", action="store_true",
                    help="also time invrim with compile=True, in fp32 and in each --precision")
    ap.add_argument("--json", default=None, help="write the results there")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.child is not None:
        print("RESULT " + json.dumps(child(json.loads(args.child))), flush=True)
        return

    quick = args.quick
    Ts = args.T or ([5, 10] if quick else [5, 10, 20, 40])
    warmup = args.warmup if args.warmup is not None else 1
    repeats = args.repeats if args.repeats is not None else (1 if quick else 11)
    min_repeats = min(repeats, args.min_repeats if args.min_repeats is not None else (1 if quick else 5))
    budget = args.budget if args.budget is not None else (0.0 if quick else 240.0)
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    heap = set_heap(args.heap)

    info = machine_info()
    print(f"# invrim vs torch-rim {info['torch_rim']}  ({device}, {args.threads} threads)")
    print(f"machine: {info['cpu']}, {info['cores']} cores, torch {info['torch']}, "
          f"python {info['python']}, loadavg at start {info['loadavg']}")
    cid = info["cpu_id"]
    print(f"cpu: {info['cpu']} ({cid['Vendor ID']}, family {cid['CPU family']} model {cid['Model']} "
          f"stepping {cid['Stepping']}, hypervisor {cid['Hypervisor vendor']}, L2 {cid['L2 cache']}, "
          f"L3 {cid['L3 cache']})")
    print(f"cpu flags (vector; all in the JSON): {' '.join(info['cpu_simd_flags'])}")
    print(f"heap: {heap['setting']} ({heap['how']}; thresholds fixed: {heap['kept']})")
    if info["invrim_git"]:
        g = info["invrim_git"]
        print(f"invrim: git {g['commit']} at {g['path']}" + (f", uncommitted changes: {', '.join(g['modified'])}"
                                                             if g["modified"] else ""))
    print(f"problem: deblur, {B}x{C}x{N}x{N} fp32, PSF {PSF_SIZE}x{PSF_SIZE} sigma {PSF_SIGMA}, "
          f"noise {NOISE_SIGMA}; Hourglass {HOURGLASS}")
    y, x = make_data(device)
    pc = {lib: n_params(make_model(lib, device)) for lib in ("torch-rim", "invrim")}
    print(f"parameters: torch-rim {pc['torch-rim']:,}  invrim {pc['invrim']:,}")
    print(f"T={Ts}, warm-up {warmup}, repeats {min_repeats}..{repeats} (budget {budget:.0f} s per T)\n",
          flush=True)

    low = [PRECISION_CONFIGS[p][0] for p in args.precision]
    for p in args.precision:
        CONFIGS[PRECISION_CONFIGS[p][0]] = PRECISION_CONFIGS[p][1]
    if args.compile:
        for p in ["fp32", *args.precision]:
            CONFIGS[f"invrim-{p}-compiled"] = ("invrim", False, p, True)
            low.append(f"invrim-{p}-compiled")
    train_keys = ["torch-rim", "invrim"] + ([] if args.no_ckpt_time else ["invrim-ckpt"]) + low
    results: dict[str, Any] = {"machine": info, "heap": heap, "device": str(device), "threads": args.threads,
                               "params": pc, "T": Ts, "train": {}, "predict": {}, "memory": {},
                               "foreign_load": {},
                               "settings": {"batch": B, "size": N, "hourglass": HOURGLASS,
                                            "invrim_rim": INVRIM_SETTINGS,
                                            "warmup": warmup, "repeats": repeats,
                                            "min_repeats": min_repeats, "budget_s": budget}}
    noise = Noise(args.max_foreign if args.max_foreign is not None else (0.0 if quick else 0.25),
                  args.max_wait)
    t_start = time.perf_counter()
    for T in Ts:
        load0 = os.getloadavg()
        runners = {k: Runner(k, T, device, y, x) for k in train_keys}
        tt, tl = interleaved({k: r.train for k, r in runners.items()}, device, warmup, repeats,
                             min_repeats, budget, noise)
        pf = {"torch-rim": runners["torch-rim"].predict,
              "torch-rim (no_grad)": runners["torch-rim"].predict_no_grad,
              "invrim": runners["invrim"].predict, **{k: runners[k].predict for k in low}}
        pt, pl = interleaved(pf, device, warmup, repeats, min_repeats, budget / 2, noise)
        load1 = os.getloadavg()
        results["train"][T] = {k: {"median": statistics.median(v), "min": min(v), "times": v}
                               for k, v in tt.items()}
        results["predict"][T] = {k: {"median": statistics.median(v), "min": min(v), "times": v}
                                 for k, v in pt.items()}
        results["foreign_load"][T] = {"train": tl, "predict": pl, "loadavg": [load0, load1]}
        med = {k: statistics.median(v) for k, v in tt.items()}
        pmed = {k: statistics.median(v) for k, v in pt.items()}
        print(f"T={T:>3}  train: " + "  ".join(f"{k} {fmt_s(v)}" for k, v in med.items())
              + "  | predict: " + "  ".join(f"{k} {fmt_s(v)}" for k, v in pmed.items())
              + f"  | others: {statistics.median(tl):.2f}/{statistics.median(pl):.2f} cores"
              + f"  [{time.perf_counter() - t_start:.0f} s]",
              flush=True)
        del runners
        gc.collect()

    if not args.no_memory:
        mem_Ts = Ts[-1:] if quick else Ts          # --quick: only the largest T
        for T in mem_Ts:
            results["memory"][T] = {}
            for key in ("torch-rim", "invrim", "invrim-ckpt"):
                r = run_child(key, T, args)
                results["memory"][T][key] = r
            m = results["memory"][T]
            print(f"T={T:>3}  memory (peak, tensor peak): " + "  ".join(
                f"{k} {fmt_mb(v['peak_bytes'])}/{fmt_mb(v.get('tensor_peak_bytes'))}" for k, v in m.items())
                + f"  [{time.perf_counter() - t_start:.0f} s]", flush=True)
    results["loadavg_end"] = os.getloadavg()
    import invrim
    root = os.path.dirname(os.path.abspath(invrim.__file__))
    results["invrim_modules_elsewhere"] = sorted(     # should be empty (see set_heap)
        n for n, m in list(sys.modules.items()) if (n == "invrim" or n.startswith("invrim."))
        and getattr(m, "__file__", None) and not os.path.abspath(m.__file__).startswith(root))
    results["discarded_rounds"] = noise.discarded
    results["wall_s"] = time.perf_counter() - t_start

    results["quick"] = quick
    print()
    print(report(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2, default=str)
        print(f"\nwrote {args.json}")


def report(res: dict[str, Any]) -> str:
    """Markdown tables of times, memory and ratios invrim / torch-rim."""
    lines = []
    Ts = res["T"]
    has_ckpt = all("invrim-ckpt" in res["train"][T] for T in Ts)
    lines.append("Times (median over the kept rounds; ratio = invrim / torch-rim; other procs = median "
                 "CPU cores used by other processes during the train / predict rounds):\n")
    hdr = "| T | train torch-rim | train invrim | ratio | "
    if has_ckpt:
        hdr += "train invrim ckpt | ratio | "
    hdr += ("predict torch-rim | predict invrim | ratio | predict torch-rim no_grad | ratio vs no_grad | "
            "other procs (cores) |")
    lines.append(hdr)
    lines.append("|" + "---|" * (hdr.count("|") - 1))
    for T in Ts:
        tr, pr = res["train"][T], res["predict"][T]
        a, b = tr["torch-rim"]["median"], tr["invrim"]["median"]
        row = f"| {T} | {fmt_s(a)} | {fmt_s(b)} | {ratio(b, a)} | "
        if has_ckpt:
            c = tr["invrim-ckpt"]["median"]
            row += f"{fmt_s(c)} | {ratio(c, a)} | "
        pa, pb, pn = (pr["torch-rim"]["median"], pr["invrim"]["median"],
                      pr["torch-rim (no_grad)"]["median"])
        fl = res.get("foreign_load", {}).get(T)
        fls = "-" if not fl else f"{statistics.median(fl['train']):.2f} / {statistics.median(fl['predict']):.2f}"
        row += f"{fmt_s(pa)} | {fmt_s(pb)} | {ratio(pb, pa)} | {fmt_s(pn)} | {ratio(pb, pn)} | {fls} |"
        lines.append(row)
    low = [k for k in next(iter(res["train"].values())) if k.startswith("invrim-") and k != "invrim-ckpt"]
    if low:
        lines.append("\nLow precision and compile (invrim's backbone under autocast / torch.compile; ratios "
                     "against torch-rim's fp32 and invrim's fp32; a compiled predict uses weights that do not "
                     "change, as a reconstruction does):\n")
        lines.append("| T | config | train | / torch-rim | / invrim fp32 | predict | / torch-rim | / invrim fp32 |")
        lines.append("|---|---|---|---|---|---|---|---|")
        for T in Ts:
            tr, pr = res["train"][T], res["predict"][T]
            for k in low:
                t, p = tr[k]["median"], pr[k]["median"]
                lines.append(f"| {T} | {k} | {fmt_s(t)} | {ratio(t, tr['torch-rim']['median'])} | "
                             f"{ratio(t, tr['invrim']['median'])} | {fmt_s(p)} | "
                             f"{ratio(p, pr['torch-rim']['median'])} | {ratio(p, pr['invrim']['median'])} |")
    if res["memory"]:
        kind = next(iter(next(iter(res["memory"].values())).values()))["peak_kind"]
        lines.append(f"\nMemory of one training step (peak = {kind}; tensor peak = peak live tensor "
                     "bytes from the profiler's allocator events; saved = unique storages saved for "
                     "backward, parameters excluded):\n")
        hdr = ("| T | peak torch-rim | peak invrim | ratio | peak invrim ckpt | ratio | "
               "tensor peak torch-rim | invrim | ratio | invrim ckpt | ratio | "
               "saved torch-rim | saved invrim | ratio |")
        lines.append(hdr)
        lines.append("|" + "---|" * (hdr.count("|") - 1))
        for T, m in res["memory"].items():
            a, b, c = (m[k]["peak_bytes"] for k in ("torch-rim", "invrim", "invrim-ckpt"))
            ta, tb, tc = (m[k].get("tensor_peak_bytes") for k in ("torch-rim", "invrim", "invrim-ckpt"))
            sa, sb = m["torch-rim"]["saved_bytes"], m["invrim"]["saved_bytes"]
            lines.append(f"| {T} | {fmt_mb(a)} | {fmt_mb(b)} | {ratio(b, a)} | {fmt_mb(c)} | {ratio(c, a)} | "
                         f"{fmt_mb(ta)} | {fmt_mb(tb)} | {ratio(tb, ta)} | {fmt_mb(tc)} | {ratio(tc, ta)} | "
                         f"{fmt_mb(sa)} | {fmt_mb(sb)} | {ratio(sb, sa)} |")
    # targets
    lines.append("\nTargets:" + (" (--quick: one round per T, a smoke test, not a verdict)"
                                  if res.get("quick") else ""))
    tr_r = {T: res["train"][T]["invrim"]["median"] / res["train"][T]["torch-rim"]["median"] for T in Ts}
    pr_r = {T: res["predict"][T]["invrim"]["median"] / res["predict"][T]["torch-rim"]["median"] for T in Ts}
    ok = all(v <= 0.8 for v in tr_r.values())
    lines.append(f"- training step <= 0.8x torch-rim: {'MET' if ok else 'NOT MET'} "
                 f"(worst {max(tr_r.values()):.2f}x)")
    ok = all(v <= 0.7 for v in pr_r.values())
    lines.append(f"- inference <= 0.7x torch-rim: {'MET' if ok else 'NOT MET'} "
                 f"(worst {max(pr_r.values()):.2f}x)")
    for k in low:
        t_r = max(res["train"][T][k]["median"] / res["train"][T]["torch-rim"]["median"] for T in Ts)
        p_r = max(res["predict"][T][k]["median"] / res["predict"][T]["torch-rim"]["median"] for T in Ts)
        if k == "invrim-fp32-compiled":
            continue
        lines.append(f"- {k}: training step <= 0.5x torch-rim's fp32: {'MET' if t_r <= 0.5 else 'NOT MET'} "
                     f"(worst {t_r:.2f}x); inference <= 0.35x: {'MET' if p_r <= 0.35 else 'NOT MET'} "
                     f"(worst {p_r:.2f}x)")
    if res["memory"]:
        Tm = max(res["memory"])
        m = res["memory"][Tm]
        r = m["invrim-ckpt"]["peak_bytes"] / m["torch-rim"]["peak_bytes"]
        lines.append(f"- checkpointing peak memory at T={Tm} <= 0.4x torch-rim: "
                     f"{'MET' if r <= 0.4 else 'NOT MET'} ({r:.2f}x"
                     + (f"; tensor peak {m['invrim-ckpt']['tensor_peak_bytes'] / m['torch-rim']['tensor_peak_bytes']:.2f}x"
                        if m["torch-rim"].get("tensor_peak_bytes") else "") + ")")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
