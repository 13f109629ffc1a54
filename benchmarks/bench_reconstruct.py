"""Throughput of `invrim reconstruct` (HDF5 → model → HDF5) against `rim.predict` on in-memory arrays.

    python benchmarks/bench_reconstruct.py            # ~3 minutes
    python benchmarks/bench_reconstruct.py --quick    # ~30 s smoke run

The same trained RIM, the same observations and the same batch size: (a) every batch already in
memory as tensors, `rim.predict(y, **params)` in a loop; (b) `invrim.reconstruct.reconstruct`, which
validates the input, reads it in batches on a reader thread, writes x_hat on a writer thread with its
crash-safety protocol (zero-filled preallocation, flush, done flags, flush). The ratio (b)/(a) of
samples per second is the figure of merit (target >= 0.9).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from machine_load import ForeignLoad, wait_quiet  # benchmarks/ is on sys.path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small smoke run")
    parser.add_argument("--samples", type=int, default=None)
    parser.add_argument("--size", type=int, default=64, help="image side (default 64)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=None, help="timed rounds of each (median reported)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--json", metavar="FILE", help="write the results as JSON")
    parser.add_argument("--max-foreign", type=float, default=0.25,
                        help="discard a round in which other processes used more cores than this (default 0.25)")
    parser.add_argument("--max-discard", type=int, default=6, help="discard at most this many rounds")
    parser.add_argument("--max-wait", type=float, default=600, help="seconds to wait for a quiet machine per round")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    samples = args.samples or (64 if args.quick else 512)
    repeats = args.repeats or (1 if args.quick else 5)

    from invrim.data import HDF5Dataset, simulate
    from invrim.reconstruct import load_run, reconstruct
    from invrim.training.from_file import train_on_file

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        common = dict(forward_model_config={"psf_sigma": [1.0, 2.0]}, likelihood_config={"sigma_range": [0.01, 0.1]},
                      generator_config={"shape": [args.size, args.size]}, generator="ellipses", progress=False)
        train = simulate(tmp / "train.h5", "blur", "gaussian", 32, seed=0, **common)
        obs = simulate(tmp / "obs.h5", "blur", "gaussian", samples, seed=1, **common)
        run = tmp / "run"
        train_on_file(train, run, epochs=1, batch_size=16, progress=False, seed=0)   # default backbone and T
        rim, _, _ = load_run(run)
        data = HDF5Dataset(obs, dtype=torch.float32).read(0, samples)
        y = data.pop("y")
        data.pop("x")
        batches = [(y[i:i + args.batch_size], {k: v[i:i + args.batch_size] for k, v in data.items()})
                   for i in range(0, samples, args.batch_size)]
        rim.predict(*batches[0][:1], **batches[0][1])         # warm-up

        memory, files, steady, foreign, discarded = [], [], [], [], 0
        r = 0
        while len(memory) < repeats:
            wait_quiet(args.max_foreign, args.max_wait)
            with ForeignLoad() as fl:
                t0 = time.perf_counter()
                for yb, params in batches:
                    rim.predict(yb, **params)
                t_mem = time.perf_counter() - t0
                out = tmp / f"recon{r}.h5"
                t0 = time.perf_counter()
                reconstruct(run, obs, out, batch_size=args.batch_size, progress=False)
                t_file = time.perf_counter() - t0
                # the same without the one-off NaN/Inf scan: the streaming loop and its set-up
                out2 = tmp / f"recon{r}b.h5"
                t0 = time.perf_counter()
                reconstruct(run, obs, out2, batch_size=args.batch_size, progress=False, check_values=False)
                t_steady = time.perf_counter() - t0
            out.unlink()
            out2.unlink()
            r += 1
            if fl.value is not None and fl.value > args.max_foreign and discarded < args.max_discard:
                discarded += 1
                print(f"  round discarded: other processes used {fl.value:.2f} cores", flush=True)
                continue
            memory.append(t_mem)
            files.append(t_file)
            steady.append(t_steady)
            foreign.append(fl.value)

    mem_rate = samples / statistics.median(memory)
    file_rate = samples / statistics.median(files)
    steady_rate = samples / statistics.median(steady)
    result = {
        "samples": samples, "size": args.size, "batch_size": args.batch_size, "threads": args.threads,
        "T": rim.T, "load_average": os.getloadavg(),
        "predict_in_memory_samples_per_s": mem_rate,
        "reconstruct_samples_per_s": file_rate,
        "reconstruct_no_scan_samples_per_s": steady_rate,
        "ratio": file_rate / mem_rate, "ratio_no_scan": steady_rate / mem_rate,
        "round_ratios": [m / f for m, f in zip(memory, files)],
        "foreign_cores_per_round": foreign, "discarded_rounds": discarded,
        "rounds_s": {"memory": memory, "reconstruct": files, "reconstruct_no_scan": steady},
    }
    print(f"{samples} samples of 1x{args.size}x{args.size}, batch {args.batch_size}, T={rim.T}, "
          f"{args.threads} torch threads, load average {os.getloadavg()[0]:.2f}")
    print(f"  predict, arrays in memory        {mem_rate:8.1f} samples/s")
    print(f"  invrim reconstruct (file->file)  {file_rate:8.1f} samples/s   ratio {file_rate / mem_rate:.3f}")
    print(f"  ... without the NaN/Inf scan     {steady_rate:8.1f} samples/s   ratio {steady_rate / mem_rate:.3f}")
    print(f"  per-round ratios {', '.join(f'{v:.3f}' for v in result['round_ratios'])}; other processes used "
          f"{', '.join('?' if v is None else f'{v:.2f}' for v in foreign)} cores; {discarded} rounds discarded")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
