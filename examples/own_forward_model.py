"""Your own arrays and your own forward model, end to end: file, training, reload, comparison.

    python examples/own_forward_model.py            # one to two minutes on a laptop CPU
    python examples/own_forward_model.py --fast     # a shorter run (the test suite's)

What a scientist with data of their own does with invrim, with no plugin:

1. the arrays you already have: ``x`` of shape ``(N, 1, 32, 32)`` (here smooth random images made
   with numpy, standing in for yours);
2. your own forward model written in Python, ``BoxDownsample`` (2x2 block averaging, 32x32 ->
   16x16, with its exact adjoint), registered nowhere;
3. observations ``y = F(x) + noise`` with ``Gaussian(sigma=0.02)``, written to an invrim data file
   with ``invrim.data.write_dataset`` (invrim warns that the physics is not registered: the
   command line cannot rebuild it, Python can);
4. the file read back with ``HDF5Dataset(path, problem=problem)``;
5. a RIM trained on it with ``rim.fit(dataset, run_dir=...)``;
6. the run reloaded with ``RIM.from_checkpoint(run_dir, problem=problem)``;
7. held-out PSNR of the RIM against the baselines a scientist would try first: the adjoint,
   nearest-neighbour upsampling, bicubic interpolation, and Tikhonov-regularised least squares
   solved by conjugate gradients with the forward model and its adjoint (λ picked on the
   training set).

The numbers are the same on every run (one thread, fixed seeds).

(invrim ships the same operator as the registered ``super_resolution`` forward model; here it
stands for any operator of yours.) See docs/data.md, "Your own arrays and your own forward model".
"""
from __future__ import annotations

import argparse
import json
import shutil
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import xarray as xr

from invrim import RIM, Gaussian, Hourglass, Problem
from invrim.data import HDF5Dataset, write_dataset
from invrim.metrics import psnr
from invrim.physics.base import LinearForwardModel


# --------------------------------------------------------------------------------------------
# 1. Your forward model: any torch code, with its exact adjoint.
# --------------------------------------------------------------------------------------------
class BoxDownsample(LinearForwardModel):
    """``y = A x``: each ``factor x factor`` block of ``x`` averaged to one pixel.

    Adjoint: each pixel of ``y`` spread over its block, divided by the block size. Pseudo-inverse
    (used to start the RIM): nearest-neighbour upsampling, so ``A(pinv(y)) = y``.
    """

    name = "box_downsample"                       # the name written into the data file
    x_dims = ("channel", "height", "width")       # the axes of x (after 'sample')
    y_dims = ("channel", "y_height", "y_width")   # the axes of y
    param_dims: dict = {}                         # no per-sample parameters

    def __init__(self, factor: int = 2):
        super().__init__()
        self.factor = int(factor)

    def config(self) -> dict:                     # JSON that rebuilds it: BoxDownsample(**config())
        return {"factor": self.factor}

    def forward(self, x: torch.Tensor, **params) -> torch.Tensor:
        return F.avg_pool2d(x, self.factor)

    def _repeat(self, y: torch.Tensor) -> torch.Tensor:
        return y.repeat_interleave(self.factor, dim=-2).repeat_interleave(self.factor, dim=-1)

    def adjoint(self, y: torch.Tensor, **params) -> torch.Tensor:
        return self._repeat(y) / self.factor ** 2

    def pseudo_inverse(self, y: torch.Tensor, **params) -> torch.Tensor:
        return self._repeat(y)


# --------------------------------------------------------------------------------------------
# 2. Your arrays (stand-ins): smooth random images in [0, 1], plain numpy.
# --------------------------------------------------------------------------------------------
def smooth_images(n: int, size: int, rng: np.random.Generator, length: float = 2.5) -> np.ndarray:
    """``(n, 1, size, size)`` float32 images: white noise low-passed in Fourier space (a Gaussian
    filter of correlation length ``length`` pixels), each rescaled to [0, 1]."""
    k = np.fft.fftfreq(size)
    k2 = k[:, None] ** 2 + k[None, :] ** 2
    spectrum = np.exp(-2 * (np.pi * length) ** 2 * k2)
    noise = rng.standard_normal((n, 1, size, size))
    x = np.fft.ifft2(np.fft.fft2(noise) * spectrum).real
    lo, hi = x.min(axis=(2, 3), keepdims=True), x.max(axis=(2, 3), keepdims=True)
    return ((x - lo) / (hi - lo)).astype(np.float32)


def to_file(path: Path, x: np.ndarray, y: np.ndarray, problem: Problem) -> None:
    """Write ``x`` and ``y`` as an invrim data file; the attributes say which physics made ``y``."""
    fm = problem.forward_model
    ds = xr.Dataset(
        {"x": (("sample", *fm.x_dims), x), "y": (("sample", *fm.y_dims), y)},
        attrs=problem.config(),   # forward_model, forward_model_config, likelihood, likelihood_config
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        write_dataset(ds, path, overwrite=True)
    for w in caught:
        print(f"  invrim warned: {w.message}")


# --------------------------------------------------------------------------------------------
# 3. The baselines.
# --------------------------------------------------------------------------------------------
def tikhonov(problem: Problem, y: torch.Tensor, sigma: float, lam: float, iterations: int = 30) -> torch.Tensor:
    """``argmin_x ‖A x − y‖²/σ² + λ‖x‖²`` by conjugate gradients on the normal equations
    ``(AᵀA/σ² + λ I) x = Aᵀy/σ²``, one system per sample, using only ``A`` and its adjoint."""
    # the library's Tikhonov solve: (AᵀA + λσ² I) x = Aᵀy is the same system multiplied by σ²
    return problem.forward_model.least_squares(y, damping=lam * sigma ** 2, iterations=iterations, tol=1e-6)


def mean_psnr(estimate: torch.Tensor, truth: torch.Tensor) -> float:
    return float(psnr(estimate, truth, data_range=1.0).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="a shorter run (the test suite's)")
    parser.add_argument("--workdir", default="own_forward_model", help="folder for the data files and the run")
    parser.add_argument("--figure", default="own_forward_model.png", help="where to save the figure")
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: these small convolutions gain little from more, and "
                             "on a busy machine two threads on two cores ran several times slower than one)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)       # an application's choice for its own process
    torch.manual_seed(0)
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    run_dir = work / "run"
    if run_dir.exists():                          # this script's own run from a previous call
        shutil.rmtree(run_dir)
    sigma, size = 0.02, 32
    n_train, n_test = (384, 64) if args.fast else (1024, 128)
    epochs = 12 if args.fast else 16

    # Your arrays and your forward model.
    rng = np.random.default_rng(0)
    x_train, x_test = smooth_images(n_train, size, rng), smooth_images(n_test, size, rng)
    problem = Problem(BoxDownsample(2), Gaussian(sigma=sigma))

    # Simulate y = F(x) + noise and write the files.
    g = torch.Generator().manual_seed(0)
    y_train = problem.simulate(torch.from_numpy(x_train), generator=g).numpy()
    y_test = problem.simulate(torch.from_numpy(x_test), generator=g).numpy()
    print(f"writing {n_train} training and {n_test} test samples to {work}/ ...")
    to_file(work / "train.h5", x_train, y_train, problem)
    to_file(work / "test.h5", x_test, y_test, problem)

    # Read them back: the forward model is not registered, so pass the problem.
    train = HDF5Dataset(work / "train.h5", problem=problem)
    test = HDF5Dataset(work / "test.h5", problem=problem)

    # Train a RIM. It starts from the pseudo-inverse (nearest-neighbour upsampling, which already
    # fits y exactly) and learns what y cannot say: the detail inside each 2x2 block. A few steps
    # (T=3) and a one-level Hourglass learn that fastest here; T=6 or 10 learn it far slower.
    net = Hourglass(1, dimensions=2, nf=16, ch_mult=(2,), hidden_units=32, num_layers=1)
    rim = RIM((size, size), net, problem=problem, T=3)
    print(f"training a RIM for {epochs} epochs ...")
    start = time.monotonic()
    history = rim.fit(train, epochs=epochs, learning_rate=3e-3, batch_size=16, warmup=20,
                      scheduler="cosine", seed=0, run_dir=run_dir, progress=not args.fast)
    seconds = time.monotonic() - start
    print(f"trained {len(history)} epochs in {seconds:.0f} s, final loss {history[-1]:.2e}")

    # Reload it as someone would later: the problem again, since the registry cannot build it.
    rim = RIM.from_checkpoint(run_dir, problem=problem)

    # Compare on the held-out samples.
    held_out = next(iter(torch.utils.data.DataLoader(test, batch_size=len(test))))
    yt, xt = held_out["y"], held_out["x"]
    y_fit, x_fit = torch.from_numpy(y_train[:256]), torch.from_numpy(x_train[:256])
    lams = [10.0 ** k for k in range(-1, 5)]
    lam = max(lams, key=lambda l: mean_psnr(tikhonov(problem, y_fit, sigma, l), x_fit))
    A = problem.forward_model
    estimates = {
        "adjoint Aᵀy": A.adjoint(yt),
        "nearest upsampling": A.pseudo_inverse(yt),
        "bicubic interpolation": F.interpolate(yt, scale_factor=2, mode="bicubic", align_corners=False),
        f"Tikhonov CG (λ={lam:g})": tikhonov(problem, yt, sigma, lam),
        "RIM": rim.predict(yt),
    }
    table = {name: mean_psnr(est, xt) for name, est in estimates.items()}
    print(f"\n{'held-out PSNR (dB), ' + str(n_test) + ' samples':<36}")
    for name, value in table.items():
        print(f"  {name:<34}{value:6.2f}")
    tik = table[f"Tikhonov CG (λ={lam:g})"]
    best_baseline = max(v for k, v in table.items() if k != "RIM")
    print(f"\nRIM gain: {table['RIM'] - tik:+.2f} dB over Tikhonov, "
          f"{table['RIM'] - best_baseline:+.2f} dB over the best baseline")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "psnr": {"adjoint": table["adjoint Aᵀy"], "nearest": table["nearest upsampling"],
                     "bicubic": table["bicubic interpolation"], "tikhonov": tik, "rim": table["RIM"]},
            "tikhonov_lambda": lam, "epochs": len(history), "train_seconds": seconds,
            "n_train": n_train, "n_test": n_test}, indent=2))

    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    panels = [("observation y", yt[0, 0]), ("Tikhonov", estimates[f"Tikhonov CG (λ={lam:g})"][0, 0]),
              ("RIM", estimates["RIM"][0, 0]), ("truth", xt[0, 0])]
    fig, axes = plt.subplots(1, 4, figsize=(10, 2.8))
    for ax, (title, img) in zip(axes, panels):
        ax.imshow(img.numpy(), cmap="magma", vmin=0, vmax=1)
        ax.set_title(title)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(Path(args.figure), dpi=120)
    print(f"figure saved to {args.figure}")


if __name__ == "__main__":
    main()
