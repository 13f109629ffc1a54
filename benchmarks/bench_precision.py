"""bf16 against fp32 for invrim's RIM on this CPU: training step and inference, side by side.

    python benchmarks/bench_precision.py [--rounds 5] [--size 64] [--batch 8] [--T 10] [--shapes]

Prints the CPU model and its bf16 flags, then median seconds per training step (Adam on
``RIM.loss_fn``) and per ``predict`` for each precision, alternating the precisions round by round
so that a noisy machine affects both alike, and the bf16 / fp32 ratios. One thread.

It also counts the FLOPs of a training step and of ``predict`` (``torch.utils.flop_counter``:
matrix products and convolutions) and compares the achieved FLOP/s with the same-precision matmul
peak measured here (the best of five 2048x2048 matrix products, one thread): the fraction of the machine's limit.

``--shapes`` also times single 3x3 convolutions of the Hourglass's shapes (channels and image sizes
of its levels) forward and backward separately in bf16 against fp32: a bf16 CPU backward that is
slower than fp32 (a known regression in some PyTorch builds) shows there.
"""
from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch
from machine_load import cpu_name  # benchmarks/machine_load.py (the script's folder is on sys.path)

from invrim import RIM, Gaussian, Problem
from invrim.backbones import Hourglass
from invrim.physics import Blur
from invrim.precision import cpu_flags, support

#: The vector and matrix flags worth recording (all of /proc/cpuinfo's would drown the line).
SIMD_PREFIXES = ("sse", "ssse", "avx", "amx", "fma", "f16c")


def matmul_peak(dtype: torch.dtype, n: int = 2048, rounds: int = 5) -> float:
    """FLOP/s of an ``n x n`` matrix product in ``dtype`` (the best of ``rounds``: a peak)."""
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    a @ b
    ts = []
    for _ in range(rounds):
        t = time.perf_counter()
        a @ b
        ts.append(time.perf_counter() - t)
    return 2 * n ** 3 / min(ts)


def conv_table(batch: int, rounds: int) -> None:
    """bf16 / fp32 time of one 3x3 convolution, forward and backward separately, per shape."""
    print("\n| channels in → out | size | fwd fp32 [ms] | fwd bf16 / fp32 | bwd fp32 [ms] | bwd bf16 / fp32 |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for cin, cout, size in ((2, 32, 64), (32, 32, 64), (32, 64, 32), (64, 64, 32), (64, 64, 16), (96, 64, 16)):
        conv = torch.nn.Conv2d(cin, cout, 3, padding=1)
        x = torch.randn(batch, cin, size, size)
        out = {}
        for precision in ("fp32", "bf16"):
            fwd, bwd = [], []
            for r in range(rounds + 1):
                xx = x.clone().requires_grad_()
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                    t = time.perf_counter()
                    y = conv(xx)
                    t_f = time.perf_counter() - t
                g = torch.ones_like(y)
                t = time.perf_counter()
                y.backward(g)
                t_b = time.perf_counter() - t
                if r:
                    fwd.append(t_f)
                    bwd.append(t_b)
            out[precision] = (statistics.median(fwd), statistics.median(bwd))
        (f32, b32), (f16, b16) = out["fp32"], out["bf16"]
        print(f"| {cin} → {cout} | {size} | {f32 * 1e3:.2f} | {f16 / f32:.2f} | {b32 * 1e3:.2f} | {b16 / b32:.2f} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--T", type=int, default=10)
    p.add_argument("--shapes", action="store_true", help="also time single convolutions per shape")
    p.add_argument("--compile", action="store_true",
                   help="also time compile=True in each precision (predict with weights that do not change)")
    args = p.parse_args()
    torch.set_num_threads(1)
    flags = sorted(f for f in cpu_flags() if f.startswith(SIMD_PREFIXES))
    print(f"CPU: {cpu_name()}; flags: {' '.join(flags)}; torch {torch.__version__}")
    print(f"precision support: {support('cpu')}")
    problem = Problem(Blur(psf_sigma=1.5, boundary="periodic"), Gaussian(0.05))
    g = torch.Generator().manual_seed(0)
    x = torch.rand(args.batch, 1, args.size, args.size, generator=g)
    y = problem.simulate(x, generator=g)
    setups, predictors = {}, {}
    configs = [("fp32", False), ("bf16", False)] + ([("fp32", True), ("bf16", True)] if args.compile else [])
    for precision, compiled in configs:
        name = precision + ("+compile" if compiled else "")

        def build():
            torch.manual_seed(0)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return RIM((args.size, args.size), Hourglass(channels=1, dimensions=2), problem=problem, T=args.T,
                           precision=precision, compile=compiled)
        rim = build()
        setups[name] = (rim, torch.optim.Adam(rim.parameters()))
        predictors[name] = build() if compiled else rim     # a compiled predict with fixed weights (frozen)
    times = {p: {"train": [], "predict": []} for p in setups}
    for r in range(args.rounds + 1):                       # round 0 warms up
        for precision, (rim, opt) in setups.items():
            t = time.perf_counter()
            opt.zero_grad()
            rim.loss_fn(y, x).backward()
            opt.step()
            t_train = time.perf_counter() - t
            t = time.perf_counter()
            predictors[precision].predict(y)
            t_predict = time.perf_counter() - t
            if r:
                times[precision]["train"].append(t_train)
                times[precision]["predict"].append(t_predict)
    med = {p: {k: statistics.median(v) for k, v in d.items()} for p, d in times.items()}
    flops = {}
    from torch.utils.flop_counter import FlopCounterMode
    for precision, (rim, opt) in setups.items():
        with FlopCounterMode(display=False) as counter:
            opt.zero_grad()
            setups[precision.split("+")[0]][0].loss_fn(y, x).backward()
        train_flops = counter.get_total_flops()
        with FlopCounterMode(display=False) as counter:
            setups[precision.split("+")[0]][0].predict(y)       # FLOPs do not depend on compilation
        flops[precision] = {"train": train_flops, "predict": counter.get_total_flops()}
    peak = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)}
    print(f"B={args.batch}, {args.size}x{args.size}, T={args.T}, default Hourglass, median of {args.rounds} rounds")
    names = list(setups)
    print("| | " + " | ".join(f"{n} [s]" for n in names) + " | " + " | ".join(f"{n} / fp32" for n in names[1:])
          + " |\n|---" * 1 + "|---:" * (2 * len(names) - 1) + "|")
    for k, label in (("train", "training step"), ("predict", "inference")):
        print(f"| {label} | " + " | ".join(f"{med[n][k]:.3f}" for n in names) + " | "
              + " | ".join(f"{med[n][k] / med['fp32'][k]:.2f}" for n in names[1:]) + " |")
    print(f"\nmatmul peak (2048x2048, best of 5, one thread): fp32 {peak['fp32'] / 1e9:.1f} GFLOP/s, "
          f"bf16 {peak['bf16'] / 1e9:.1f} GFLOP/s")
    print("| | precision | GFLOP | achieved GFLOP/s | fraction of the matmul peak |\n| --- | --- | ---: | ---: | ---: |")
    supported = {name: ok for name, (ok, _) in support("cpu").items()}
    for k, label in (("train", "training step"), ("predict", "inference")):
        for precision in names:
            f = flops[precision][k]
            rate = f / med[precision][k]
            base = precision.split("+")[0]
            # an emulated precision has no matmul peak to speak of (its matmul and its convolutions
            # take different emulation paths): a fraction of it would read as a meaningless 1000 %
            fraction = f"{rate / peak[base]:.0%}" if supported[base] else f"— ({base} is emulated on this CPU)"
            print(f"| {label} | {precision} | {f / 1e9:.2f} | {rate / 1e9:.1f} | {fraction} |")
    if args.shapes:
        conv_table(args.batch, args.rounds)


if __name__ == "__main__":
    main()
