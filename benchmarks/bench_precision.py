"""bf16 against fp32 for invrim's RIM on this CPU: training step and inference, side by side.

    python benchmarks/bench_precision.py [--rounds 5] [--size 64] [--batch 8] [--T 10]

Prints the CPU model and its bf16 flags, then median seconds per training step (Adam on
``RIM.loss_fn``) and per ``predict`` for each precision, alternating the precisions round by round
so that a noisy machine affects both alike, and the bf16 / fp32 ratios. One thread.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import time
import warnings

import torch

from invrim import RIM, Gaussian, Problem
from invrim.backbones import Hourglass
from invrim.physics import Blur
from invrim.precision import support


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--T", type=int, default=10)
    args = p.parse_args()
    torch.set_num_threads(1)
    print(f"CPU: {cpu_model()}; {support('cpu')}; torch {torch.__version__}")
    problem = Problem(Blur(psf_sigma=1.5, boundary="periodic"), Gaussian(0.05))
    g = torch.Generator().manual_seed(0)
    x = torch.rand(args.batch, 1, args.size, args.size, generator=g)
    y = problem.simulate(x, generator=g)
    setups = {}
    for precision in ("fp32", "bf16"):
        torch.manual_seed(0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rim = RIM((args.size, args.size), Hourglass(channels=1, dimensions=2), problem=problem, T=args.T,
                      precision=precision)
        setups[precision] = (rim, torch.optim.Adam(rim.parameters()))
    times = {p: {"train": [], "predict": []} for p in setups}
    for r in range(args.rounds + 1):                       # round 0 warms up
        for precision, (rim, opt) in setups.items():
            t = time.perf_counter()
            opt.zero_grad()
            rim.loss_fn(y, x).backward()
            opt.step()
            t_train = time.perf_counter() - t
            t = time.perf_counter()
            rim.predict(y)
            t_predict = time.perf_counter() - t
            if r:
                times[precision]["train"].append(t_train)
                times[precision]["predict"].append(t_predict)
    med = {p: {k: statistics.median(v) for k, v in d.items()} for p, d in times.items()}
    print(f"B={args.batch}, {args.size}x{args.size}, T={args.T}, default Hourglass, median of {args.rounds} rounds")
    print("| | fp32 [s] | bf16 [s] | bf16 / fp32 |\n| --- | ---: | ---: | ---: |")
    for k, label in (("train", "training step"), ("predict", "inference")):
        print(f"| {label} | {med['fp32'][k]:.3f} | {med['bf16'][k]:.3f} | {med['bf16'][k] / med['fp32'][k]:.2f} |")


if __name__ == "__main__":
    main()
