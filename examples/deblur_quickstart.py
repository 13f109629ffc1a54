"""Quick start: train a RIM to deblur noisy images, then compare it with the Wiener filter.

    python examples/deblur_quickstart.py            # about two minutes on 2 CPU cores
    python examples/deblur_quickstart.py --fast     # the test suite's size, well under a minute

Simulates 32x32 images of random flat ellipses (``invrim.data.generators.RandomEllipses``),
blurs them with a Gaussian PSF of width 1.5 px (periodic boundary) and adds Gaussian noise of
standard deviation 0.02; trains a RIM (Hourglass backbone) for a fixed number of epochs, so that
the result does not depend on how fast or busy the machine is; then prints the test-set PSNR of
the observation, of the Wiener filter (the best linear deconvolution for the training set's power
spectrum and the true noise level) and of the RIM, and saves a figure if matplotlib is installed.
The numbers are the same on every run (one thread, fixed seeds); see the Quick start of README.md.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from invrim import RIM, Gaussian, Hourglass, Problem, metrics
from invrim.data.generators import RandomEllipses
from invrim.physics.blur import Blur

SIZE, PSF_SIGMA, NOISE_SIGMA = 32, 1.5, 0.02
#: (training images, epochs, test images): a fixed amount of training, not a time budget
SIZES = {"full": (1024, 10, 128), "fast": (512, 10, 64)}
# (--fast was 256 images x 20 epochs, the same 320 steps: +0.45 dB over Wiener on an AVX2 CPU, too close
# to its test's 0.4 dB margin; 512 x 10 gives +1.57 dB there)
BATCH_SIZE, LEARNING_RATE, T = 16, 3e-3, 4


def psnr(estimate: torch.Tensor, truth: torch.Tensor) -> float:
    """Mean PSNR (dB) over the batch; the images lie in [0, 1]."""
    return float(metrics.psnr(estimate, truth, data_range=1.0).mean())


def transfer_function(psf: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """The ``rfft2`` of the PSF centred on the origin: what ``Blur(boundary="periodic")`` multiplies by."""
    full = torch.zeros(shape, dtype=torch.float64)
    full[:psf.shape[0], :psf.shape[1]] = psf
    full = torch.roll(full, shifts=(-(psf.shape[0] // 2), -(psf.shape[1] // 2)), dims=(0, 1))
    return torch.fft.rfft2(full)


class WienerFilter:
    """The Wiener filter for a periodic blur: ``x̂ = μ + F⁻¹[H* S / (|H|² S + N) · F(y − μ)]``.

    ``μ`` and the power spectrum ``S`` of ``x − μ`` are those of the training images, ``N`` is the
    white noise's power (``σ²`` per pixel). It is the best linear, shift-invariant estimator of
    ``x`` from ``y`` for signals with that mean and spectrum (the exact LMMSE deconvolution).
    (A library baseline for blur is planned; until then the example carries its own.)
    """

    def __init__(self, psf: torch.Tensor, noise_sigma: float, x_train: torch.Tensor):
        shape = tuple(x_train.shape[-2:])
        x = x_train.to(torch.float64)
        self.mean = float(x.mean())
        power = (torch.fft.rfft2(x - self.mean).abs() ** 2).mean(dim=tuple(range(x.dim() - 2)))
        noise = noise_sigma ** 2 * shape[0] * shape[1]          # E|rfft2(n)|² of white noise
        H = transfer_function(psf.to(torch.float64), shape)
        self.gain = H.conj() * power / (H.abs() ** 2 * power + noise)

    def __call__(self, y: torch.Tensor) -> torch.Tensor:
        # a normalised PSF leaves a constant image unchanged, so the mean of y is μ too
        residual = torch.fft.rfft2(y.to(torch.float64) - self.mean)
        return (self.mean + torch.fft.irfft2(residual * self.gain, s=y.shape[-2:])).to(y.dtype)


def positive_int(text: str) -> int:
    """argparse type: a positive integer, or a one-line usage error."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="the test suite's size (half the images and steps)")
    parser.add_argument("--figure", default="deblur_quickstart.png", help="where to save the figure")
    parser.add_argument("--train-images", type=positive_int, help="training images (default 1024; --fast 512)")
    parser.add_argument("--epochs", type=positive_int, help="training epochs (default 10)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: these small convolutions gain little from more, and "
                             "on a busy machine two threads on two cores ran 3-10x slower than one)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)       # an application's choice for its own process
    n_train, epochs, n_test = SIZES["fast" if args.fast else "full"]
    n_train, epochs = args.train_images or n_train, args.epochs or epochs
    torch.manual_seed(0)
    # the test set has its own seed, so it is the same whatever the training set's size
    g_train, g_test = torch.Generator().manual_seed(0), torch.Generator().manual_seed(1)

    images = RandomEllipses(shape=[SIZE, SIZE])
    blur = Blur(psf_sigma=PSF_SIGMA, boundary="periodic")
    problem = Problem(blur, Gaussian(sigma=NOISE_SIGMA))
    x_train, x_test = images(n_train, generator=g_train), images(n_test, generator=g_test)
    y_train, y_test = problem.simulate(x_train, generator=g_train), problem.simulate(x_test, generator=g_test)

    net = Hourglass(1, dimensions=2, nf=16, ch_mult=(2, 2), hidden_units=32)
    rim = RIM((SIZE, SIZE), net, problem=problem, T=T, standardize_score=True,
              initialization_method="approximate_inverse", loss_weights="linear")
    steps = epochs * -(-n_train // BATCH_SIZE)
    print(f"training a RIM on {n_train} blurred images: {epochs} epochs, {steps} steps ...")
    start = time.monotonic()
    history = rim.fit(torch.utils.data.TensorDataset(y_train, x_train), epochs=epochs, learning_rate=LEARNING_RATE,
                      batch_size=BATCH_SIZE, warmup=20, scheduler="cosine", clip=1.0, seed=0,
                      progress=not args.fast)
    print(f"trained in {time.monotonic() - start:.0f} s, final loss {history[-1]:.2e}")

    wiener = WienerFilter(blur.psf, NOISE_SIGMA, x_train)
    x_wiener, x_rim = wiener(y_test), rim.predict(y_test)
    rows = [("observation y", psnr(y_test, x_test)), ("Wiener filter", psnr(x_wiener, x_test)),
            ("RIM", psnr(x_rim, x_test))]
    print(f"\ntest-set PSNR (dB), {n_test} images")
    for name, value in rows:
        print(f"  {name:<16}{value:6.2f}")
    print(f"RIM gain: {rows[2][1] - rows[0][1]:+.2f} dB over the observation, "
          f"{rows[2][1] - rows[1][1]:+.2f} dB over the Wiener filter")
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, axes = plt.subplots(1, 4, figsize=(10, 2.8))
    panels = [("observation", y_test[0, 0]), ("Wiener", x_wiener[0, 0]), ("RIM", x_rim[0, 0]),
              ("truth", x_test[0, 0])]
    for ax, (title, img) in zip(axes, panels):
        ax.imshow(img.numpy(), cmap="magma", vmin=0, vmax=1)
        ax.set_title(title)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(Path(args.figure), dpi=120)
    print(f"figure saved to {args.figure}")


if __name__ == "__main__":
    main()
