"""Error bars for a RIM: calibrate, reconstruct with intervals, check the coverage and the flags.

    python examples/uncertainty.py            # about 3 minutes on 2 idle CPU cores
    python examples/uncertainty.py --fast     # the test suite's size, well under a minute

Deblurring of 32x32 ellipses (the quick start's problem: Gaussian PSF σ = 1.5 px, Gaussian noise
σ = 0.02) with the quick start's training recipe. The sequence
is the one of docs/uncertainty.md, from Python: simulate a training file, a held-out calibration
file and a test file; train a RIM (a fixed number of epochs); calibrate it for 90 % per-pixel
coverage; reconstruct the test file with ``uncertainty=True``; then print the coverage actually
reached on the test file, the width of the intervals and how it ranks with the true error, the
fraction of samples flagged as out of distribution, and the same flag on a copy of the test file
whose observations carry more noise than the file says. Saves the calibration figure
(``--figure``) and, beside it, one sample with its uncertainty map.
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import h5py
import numpy as np
import torch

from invrim.data import simulate
from invrim.evaluation import evaluate
from invrim.reconstruct import reconstruct
from invrim.training.from_file import train_on_file
from invrim.uncertainty import calibrate, describe

PHYSICS = dict(forward_model="blur", likelihood="gaussian", generator="ellipses",
               forward_model_config={"psf_sigma": 1.5}, likelihood_config={"sigma": 0.02},
               generator_config={"shape": [32, 32]}, progress=False)
EXTRA_NOISE = 0.04
#: (training samples, epochs, calibration samples, test samples): a fixed amount of training
SIZES = {"full": (1024, 10, 400, 300), "fast": (128, 3, 100, 60)}
#: the quick start's recipe (examples/deblur_quickstart.py): at the full size it beats the Wiener
#: filter; --fast is a smoke run of the sequence (a smaller network, far less training)
BACKBONES = {"full": {"nf": 16, "ch_mult": [2, 2], "hidden_units": 32}, "fast": {"nf": 8, "ch_mult": [2], "hidden_units": 16}}
RIM_OPTIONS, LEARNING_RATE = {"T": 4}, 3e-3


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--fast", action="store_true", help="the test suite's size")
    p.add_argument("--figure", default="uncertainty_calibration.png", help="calibration figure to write")
    args = p.parse_args(argv)
    torch.manual_seed(0)
    size = "fast" if args.fast else "full"
    n_train, epochs, n_cal, n_test = SIZES[size]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        train = simulate(root / "train.h5", samples=n_train, seed=0, **PHYSICS)
        cal = simulate(root / "cal.h5", samples=n_cal, seed=1, **PHYSICS)        # held out: another seed
        test = simulate(root / "test.h5", samples=n_test, seed=2, **PHYSICS)
        run = root / "run"
        train_on_file(train, run, epochs=epochs, batch_size=16, backbone_config=BACKBONES[size], rim_options=RIM_OPTIONS,
                      learning_rate=LEARNING_RATE, progress=False, seed=0)

        record = calibrate(run, cal, coverage=0.9, progress=False)
        print(describe(record))
        out = reconstruct(run, test, root / "out.h5", uncertainty=True, progress=False)
        result = evaluate(out)
        u, fit = result["uncertainty"], result["data_fit"]
        rim, base = (result["summary"][m]["psnr"]["mean"] for m in ("rim", "tikhonov"))
        print(f"\ntest file, {result['samples']} samples: RIM {rim:.2f} dB, Tikhonov-CG {base:.2f} dB")
        print(f"pixels inside x_hat +- x_uncertainty: {u['pixel_coverage']:.1%} (nominal 90 %), whole images "
              f"inside the image band: {u['image_coverage']:.1%}")
        print(f"mean half-width {u['mean_half_width']:.4f}; rank correlation with the true error: pixels "
              f"{u['rank_correlation']:.2f}, samples {u['sample_rank_correlation']:.2f}")
        print(f"flagged as out of distribution: {fit['flagged']} of {result['samples']} "
              f"(at most {fit['false_alarm']:.0%} expected)")

        noisy = root / "noisy.h5"                 # the instrument was noisier than the file says
        shutil.copyfile(test, noisy)
        with h5py.File(noisy, "r+") as f:
            f["y"][...] = f["y"][:] + np.random.default_rng(0).normal(0, EXTRA_NOISE, f["y"].shape).astype(np.float32)
        out_noisy = reconstruct(run, noisy, root / "out_noisy.h5", uncertainty=True, progress=False)
        with h5py.File(out_noisy, "r") as f:
            real = (0.02 ** 2 + EXTRA_NOISE ** 2) ** 0.5
            print(f"observations with extra noise (σ 0.02 declared, {real:.3f} real): {f['ood'][:].mean():.0%} flagged")

        try:
            import matplotlib
            matplotlib.use("Agg")
        except ImportError:
            print("(matplotlib is not installed: no figures)")
            return
        from invrim.viz import plot_calibration, plot_reconstruction
        plot_calibration(result, output=args.figure)
        sample = Path(args.figure).with_name(Path(args.figure).stem + "_sample.png")
        plot_reconstruction(out, index=0, output=sample)
        print(f"\nwrote {args.figure} and {sample}")


if __name__ == "__main__":
    main()
