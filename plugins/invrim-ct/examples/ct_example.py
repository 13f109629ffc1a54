"""Sparse-view parallel-beam CT with a Recurrent Inference Machine, compared with FBP.

Simulates random-ellipse phantoms inside the reconstruction circle, their sinograms at a few
angles with Gaussian noise, trains a small RIM (started from the filtered back-projection, score
standardised) and prints the PSNR of FBP and of the RIM on held-out phantoms; saves a figure.

    OMP_NUM_THREADS=1 python plugins/invrim-ct/examples/ct_example.py            # a few minutes
    OMP_NUM_THREADS=1 python plugins/invrim-ct/examples/ct_example.py --fast     # < 30 s, smoke run
"""
from __future__ import annotations

import argparse
import math
import time

import torch

import invrim
from invrim import Problem, metrics
from invrim.likelihoods import Gaussian
from invrim_ct.physics import ParallelBeamCT


def ellipse_phantoms(n: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` random phantoms ``(n, 1, size, size)`` in [0, 1], zero outside the circle of radius
    ``size // 2``: a body ellipse plus 3-8 inner ellipses of random (±) intensity."""
    c = size // 2
    yy, xx = torch.meshgrid(torch.arange(size, dtype=torch.float64) - c,
                            torch.arange(size, dtype=torch.float64) - c, indexing="ij")
    yy, xx = yy / c, xx / c                        # the reconstruction circle is the unit disk

    def u(lo, hi):
        return lo + (hi - lo) * float(torch.rand((), generator=generator, dtype=torch.float64))

    def ellipse(cy, cx, a, b, phi):
        ca, sa = math.cos(phi), math.sin(phi)
        p, q = (xx - cx) * ca + (yy - cy) * sa, -(xx - cx) * sa + (yy - cy) * ca
        return ((p / a) ** 2 + (q / b) ** 2 <= 1).double()

    out = torch.zeros(n, 1, size, size, dtype=torch.float64)
    for i in range(n):
        a, b = u(0.6, 0.9), u(0.5, 0.9)
        img = u(0.3, 0.6) * ellipse(u(-0.05, 0.05), u(-0.05, 0.05), a, b, u(0, math.pi))
        for _ in range(int(torch.randint(3, 9, (), generator=generator))):
            r, t = u(0, 0.55), u(0, 2 * math.pi)
            img = img + u(-0.3, 0.5) * ellipse(r * math.sin(t), r * math.cos(t), u(0.04, 0.3), u(0.04, 0.3),
                                               u(0, math.pi))
        out[i, 0] = img.clamp(0, 1)
    return (out * ((yy ** 2 + xx ** 2) <= 1)).float()


def psnr(estimate: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Per-sample PSNR (dB) with a data range of 1 (the phantoms lie in [0, 1])."""
    return metrics.psnr(estimate, truth, data_range=1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fast", action="store_true", help="tiny smoke run (< 30 s)")
    parser.add_argument("--figure", default="ct_example.png", help="where to save the figure")
    parser.add_argument("--minutes", type=float, default=None, help="training time limit (default 4, fast 0.15)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--start", choices=("fbp", "tikhonov"), default="fbp",
                        help="the RIM's start: the FBP (default, as recorded in RESULTS.md) or ten CG iterations "
                             "of Tikhonov least squares, damping chosen by fit on the first 32 training phantoms")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)

    if args.fast:
        N, n_angles, n_train, n_test, T, nf, hidden, batch, minutes = 32, 16, 32, 8, 3, 8, 8, 8, 0.15
    else:
        N, n_angles, n_train, n_test, T, nf, hidden, batch, minutes = 64, 30, 800, 32, 6, 16, 32, 8, 4.0
    minutes = args.minutes if args.minutes is not None else minutes
    sigma = 0.5 * N / 64                               # ~2 % of the largest sinogram values

    g = torch.Generator().manual_seed(args.seed)
    op = ParallelBeamCT(N, n_angles=n_angles, filter="ramp")
    problem = Problem(op, Gaussian(sigma))
    x_train, x_test = ellipse_phantoms(n_train, N, g), ellipse_phantoms(n_test, N, g)
    y_train, y_test = problem.simulate(x_train, g), problem.simulate(x_test, g)
    print(f"parallel-beam CT: {N}x{N} phantoms, {n_angles} angles in [0, 180), noise sigma={sigma:g} "
          f"(max |y| = {float(y_test.abs().max()):.1f}); {n_train} training / {n_test} test phantoms")

    backbone = invrim.Hourglass(1, dimensions=2, nf=nf, ch_mult=(2,), hidden_units=hidden, num_layers=1)
    method = "approximate_inverse" if args.start == "fbp" else "tikhonov"
    rim = invrim.RIM((N, N), backbone, problem=problem, T=T, initialization_method=method,
                     standardize_score=True, loss_weights="linear")   # as recorded in RESULTS.md
    dataset = [{"y": y_train[i], "x": x_train[i]} for i in range(n_train)]
    start = time.time()
    history = rim.fit(dataset, epochs=10_000, learning_rate=1e-3, batch_size=batch, max_time=minutes / 60,
                      progress=False, seed=args.seed, clip=1.0)
    train_s = time.time() - start
    steps = len(history) * -(-n_train // batch)
    print(f"trained {len(history)} epochs ({steps} steps, {train_s / steps:.3f} s each) in {train_s:.0f} s "
          f"(stop: {history.stop_reason}); "
          f"loss {history[0]:.4g} -> {history[-1]:.4g}")

    with torch.no_grad():
        fbp = op.pseudo_inverse(y_test)
        fbp_hann = ParallelBeamCT(N, n_angles=n_angles, filter="hann").pseudo_inverse(y_test)
        bp = op.adjoint(y_test)
        bp = bp * (x_test * bp).flatten(1).sum(1).view(-1, 1, 1, 1) / (bp * bp).flatten(1).sum(1).view(-1, 1, 1, 1)
        rim_x = torch.cat([rim.predict(y_test[i:i + 8]) for i in range(0, n_test, 8)])
    rows = [("back-projection (adjoint, best scale)", psnr(bp, x_test)),
            ("FBP (ramp), baseline", psnr(fbp, x_test)),
            ("FBP clipped to [0, 1]", psnr(fbp.clamp(0, 1), x_test)),
            ("FBP (Hann window), clipped to [0, 1]", psnr(fbp_hann.clamp(0, 1), x_test)),
            (f"RIM (T={T}, {'FBP' if args.start == 'fbp' else 'Tikhonov'} start)", psnr(rim_x, x_test))]
    print(f"\n{'method':40s} {'PSNR mean (dB)':>15s} {'std':>6s}")
    for label, p in rows:
        print(f"{label:40s} {float(p.mean()):15.2f} {float(p.std()):6.2f}")
    gain = float((rows[-1][1] - rows[1][1]).mean())
    wins = int((rows[-1][1] > rows[1][1]).sum())
    print(f"\nRIM - FBP: {gain:+.2f} dB on average; RIM better on {wins}/{n_test} test phantoms")

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    k = min(3, n_test)
    fig, axes = plt.subplots(k, 4, figsize=(10, 2.6 * k), squeeze=False)
    for i in range(k):
        panels = [(y_test[i, 0], "sinogram y"), (x_test[i, 0], "truth"),
                  (fbp[i, 0], f"FBP {float(rows[1][1][i]):.1f} dB"), (rim_x[i, 0], f"RIM {float(rows[-1][1][i]):.1f} dB")]
        for j, (img, title) in enumerate(panels):
            ax = axes[i, j]
            ax.imshow(img.numpy(), cmap="gray", aspect="auto" if j == 0 else "equal",
                      **({} if j == 0 else {"vmin": 0, "vmax": 1}))
            ax.set_title(title, fontsize=9)
            ax.axis("off")
    fig.suptitle(f"parallel-beam CT, {n_angles} views, sigma={sigma:g}")
    fig.tight_layout()
    fig.savefig(args.figure, dpi=90)
    print(f"figure saved to {args.figure}")


if __name__ == "__main__":
    main()
