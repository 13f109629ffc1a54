"""Which tanh is faster on this CPU: PyTorch's ``tanh`` or invrim's sigmoid form ``2 sigmoid(2x) - 1``?

``invrim.backbones.cpu_kernels`` computes the backbones' tanh through ``sigmoid`` where PyTorch's CPU
``tanh`` kernel is the slower of the two. Which one is depends on the kernels PyTorch dispatches to
(its CPU capability: DEFAULT, AVX2, AVX512) and on the dtype. This script measures both, forward
in place (what a GRU gate does) and forward + backward, on the shapes of the default Hourglass at
64x64, one thread, and prints the ratio. Results and the decision: RESULTS.md, "Fast tanh on
each CPU".

    OMP_NUM_THREADS=1 python benchmarks/bench_tanh.py [--rounds 30] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import time

import torch


def machine() -> dict:
    info = {"torch": torch.__version__, "capability": torch.backends.cpu.get_cpu_capability()}
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "Model name":
                info["cpu"] = value.strip()
            if key.strip() == "Flags":
                flags = value.split()
                info["flags"] = [f for f in flags if f.startswith(("avx", "amx", "fma"))]
    except (OSError, subprocess.CalledProcessError):
        pass
    return info


def sigmoid_tanh_(x):
    return x.mul_(2.0).sigmoid_().mul_(2.0).sub_(1.0)


def timed(fn, rounds: int) -> float:
    for _ in range(3):
        fn()
    samples = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def measure(shape, dtype, rounds: int) -> dict:
    g = torch.Generator().manual_seed(0)
    base = torch.randn(shape, generator=g).to(dtype).contiguous(memory_format=torch.channels_last)
    work = base.clone()

    def forward(op):
        def run():
            work.copy_(base)
            op(work)
        return run

    def backward(op):
        def run():
            x = base.clone().requires_grad_(True)
            y = op(x * 1.0)                       # a fresh intermediate, as after a convolution
            y.backward(torch.ones_like(y))
        return run

    copy = timed(lambda: work.copy_(base), rounds)
    torch_fwd = timed(forward(torch.Tensor.tanh_), rounds) - copy
    sig_fwd = timed(forward(sigmoid_tanh_), rounds) - copy
    from invrim.backbones import cpu_kernels
    torch_bwd = timed(backward(torch.tanh), rounds)
    sig_bwd = timed(backward(cpu_kernels.tanh), rounds)
    return {"shape": list(shape), "dtype": str(dtype).replace("torch.", ""),
            "forward_us": {"torch": torch_fwd * 1e6, "sigmoid": sig_fwd * 1e6},
            "forward_backward_us": {"torch": torch_bwd * 1e6, "sigmoid": sig_bwd * 1e6},
            "sigmoid_over_torch": {"forward": sig_fwd / torch_fwd, "forward_backward": sig_bwd / torch_bwd}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--json", default=None)
    args = p.parse_args()
    torch.set_num_threads(1)
    info = machine()
    print(f"{info.get('cpu', '?')}; torch {info['torch']}, CPU capability {info['capability']}; "
          f"flags {' '.join(info.get('flags', []))}")
    rows = []
    for dtype in (torch.float32, torch.bfloat16):
        for shape in ((8, 32, 64, 64), (8, 64, 32, 32)):
            r = measure(shape, dtype, args.rounds)
            rows.append(r)
            print(f"{r['dtype']:9s} {str(tuple(shape)):18s} forward: torch {r['forward_us']['torch']:8.0f} us, "
                  f"sigmoid {r['forward_us']['sigmoid']:8.0f} us ({r['sigmoid_over_torch']['forward']:.2f}x); "
                  f"forward+backward: torch {r['forward_backward_us']['torch']:8.0f} us, sigmoid "
                  f"{r['forward_backward_us']['sigmoid']:8.0f} us ({r['sigmoid_over_torch']['forward_backward']:.2f}x)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": info, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
