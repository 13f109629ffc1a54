"""The learned-optimiser claim, measured: a trained RIM against Adam, L-BFGS, gradient descent and CG.

    python benchmarks/optimisers.py                       # full run, ~25 min on one (shared) CPU thread
    python benchmarks/optimisers.py --quick               # smoke test, well under a minute
    python benchmarks/optimisers.py --json out.json --figure out.png
    python benchmarks/optimisers.py --problems deblur --deblur-noise 0.01   # one problem, other noise

A RIM is sold as a *learned optimiser*: in T <= 20 steps it should get as close to the truth as a
hand-designed optimiser does in many more iterations on the same objective (Modi et al. 2021 report
their CosmicRIM ~40x faster than Adam and L-BFGS). This script measures that on two nonlinear
problems (4 and 1024 unknowns) and a linear one. Both RIMs are trained inside the script on data simulated on the fly, with fixed
seeds and a fixed number of training steps (reproducible; no downloads; ``--quick`` trains far less).

**Nonlinear: ringdown parameter inference** (as ``examples/parameter_inference_1d.py``).
``y(t_i) = A exp(-t_i/tau) sin(2 pi f t_i + phi) + eps``, eps ~ N(0, 0.2^2), 96 samples in [0, 3) s;
uniform priors A in [0.5, 2], tau in [0.3, 2] s, f in [1, 8] Hz, phi in [-pi/2, pi/2]. Model space
x in R^4, theta = lo + (hi - lo) sigmoid(x), so x = 0 is the prior mean and the uniform prior box is a
standard logistic density in x. The RIM (MLPGRU(4, 64, 2 layers), T = 20, arcsinh score
preprocessing, trained 50 epochs x 4096 fresh simulations, batch 128) starts at x = 0 and sees only
the likelihood's score. The classical optimisers minimise, in the same model space and from the
same x = 0, the negative log posterior

    E(x) = ||y - F(theta(x))||^2 / (2 sigma^2) + sum_p [softplus(x_p) + softplus(-x_p)]

(the likelihood plus the uniform box expressed through the link: -log of the logistic density).
Error: per-sample RMS over the 4 parameters of (theta_hat - theta) / (hi - lo), in prior-box widths.
200 test signals.

**Nonlinear and high-dimensional: a pixelated lens convergence map** (needs the invrim-lensing
plugin). ``x`` is the 32x32 convergence map ``kappa`` over a 4.8 arcsec field (1024 unknowns):
a cored isothermal lens (Einstein radius 1.2 arcsec, core 0.2 arcsec) plus a Gaussian random field
with P(k) ∝ max(k, 1/32)^-3 and pixel std 0.1. The known source (three Gaussian blobs, peak about 1)
is sampled at ``theta - alpha(kappa)`` (``PixelatedConvergenceLensing``): linearising around the mean
lens misses about 70 % of a typical map's effect on the image. Noise sigma = 0.02. Model space x =
kappa - mean, so x = 0 is the prior mean. The RIM (Hourglass(nf=16, ch_mult=(2, 2),
hidden_units=32), T = 10, zero start, the likelihood's score by autograd, trained 1000 steps x 16 fresh
maps) learns the prior from the simulations; the optimisers minimise the likelihood plus the exact
Gaussian prior of the fluctuations, from x = 0. Error: per-sample RMSE of kappa against the truth;
reference: the MAP in the RIM's basin (L-BFGS polishing the RIM's estimate). 32 test maps.

**Linear: deblurring Gaussian random fields.** 32x32 periodic fields with the known power spectrum
P(k) ∝ max(k, 1/32)^-3 (k in cycles/px; the floor gives the mean a finite variance), pixel variance 1;
Gaussian PSF sigma = 1.5 px (15x15, ``Blur(psf, boundary="periodic")``), white noise sigma = 0.1
(``--deblur-noise``). The prior is Gaussian and stationary and the blur is diagonal in Fourier
space, so the MAP and the posterior mean are both the Wiener filter. The RIM (Hourglass(nf=8,
hidden_units=16), T = 10, zero initialisation, the likelihood's score, trained 400 steps x 16 fresh
fields) learns the prior from the simulations; the optimisers minimise the exact negative log
posterior, ``||y - A x||^2 / (2 sigma^2) + x^T C^-1 x / 2`` (C the known covariance, applied by FFT),
from x = 0, so they converge to the Wiener solution. Errors: per-sample pixel RMSE against the truth
and against the Wiener solution. 64 test fields.

**Optimisers**, all on the same objective and from the same start: Adam (``torch.optim.Adam``, a
grid of learning rates), gradient descent (``torch.optim.SGD`` without momentum, a grid of steps;
for the deblurring in units of 1/L, L the Hessian's largest eigenvalue), L-BFGS
(``torch.optim.LBFGS``, ``line_search_fn="strong_wolfe"``, history 100, lr 1, run one sample at a
time since its line search and memory couple everything it optimises; iterations and
function/gradient evaluations are both counted) and, for the linear problem, conjugate gradients on
the normal equations (one Hessian-vector product per iteration, per-sample step sizes). Adam, GD and
CG run on the whole test set at once; their updates are per sample (the summed objective is
separable), so that is the same as one run per sample. Each runs to the cap (2000 iterations) or
until no estimate moves any more (then its last values stand). The best learning rate of each grid
is reported, chosen on the test set itself (which favours the baselines).

**What is reported.** For sample i let e_i be the RIM's error after its T steps. An optimiser
*reaches* the RIM on sample i at the first iteration k with error_k,i <= e_i. Reported: the share of
samples reached within the cap, the median over samples of k (unreached samples count as
infinitely many iterations, so the median is "not reached" when fewer than half are reached) and its
ratio to T; and, on the aggregate, the first iteration at which the test set's median error falls to
the RIM's median error. For context, the share of samples on which the *exact* optimum beats the
RIM is given too (the Wiener solution; for the ringdown the MAP that L-BFGS finds when it polishes
the RIM's own estimate): an optimiser of the posterior can reach the RIM on little more than that
share, however fast it is. Wall-clock per sample (medians; one thread on a shared machine: noisy):
the RIM's forward pass over the whole test set divided by its size (and one sample at a time); for
the batched optimisers their batched time per iteration and sample times the iterations each
sample needs; for L-BFGS its measured time per sample.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F

from invrim import MLPGRU, RIM, Gaussian, Hourglass, Problem
from invrim.physics.base import ForwardModel
from invrim.physics.blur import Blur, gaussian_psf

CAP = 2000                      # iteration cap for the classical optimisers
QUICK_CAP = 150


# ===================================================================================== machine
def machine_info() -> dict[str, Any]:
    """CPU model and its avx/amx flags (``lscpu``), torch and Python versions, threads."""
    model, flags = platform.processor() or "unknown", []
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10,
                             env={**os.environ, "LC_ALL": "C"}).stdout
        for line in out.splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "Model name":
                model = value.strip()
            elif key.strip() == "Flags":
                flags = sorted(f for f in value.split() if f.startswith(("avx", "amx")))
    except (OSError, subprocess.SubprocessError):
        pass
    return {"cpu_model": model, "cpu_flags_avx_amx": flags, "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "python": platform.python_version(), "platform": platform.platform()}


# ===================================================================================== problems
class Task:
    """A test set and the common objective: what the RIM and the optimisers are compared on."""

    name: str
    title: str
    T: int
    y: torch.Tensor                      # observations of the test set
    lr_grids: dict[str, list[float]]

    def settings(self) -> dict[str, Any]:
        """The problem's constants and the optimisers' grids, for the JSON."""
        raise NotImplementedError

    def x0(self) -> torch.Tensor:
        """The common starting point (model space), one per test sample."""
        raise NotImplementedError

    def objective(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Negative log posterior per sample ``(B,)`` in model space."""
        raise NotImplementedError

    def errors(self, x: torch.Tensor, index: Optional[slice] = None) -> dict[str, np.ndarray]:
        """Per-sample errors of model-space estimates ``x`` of samples ``index`` (all by default)."""
        raise NotImplementedError

    def train_rim(self, quick: bool, seed: int, steps: Optional[int]) -> dict[str, Any]:
        raise NotImplementedError


# ---- nonlinear: the ringdown ----------------------------------------------------------------
LO = torch.tensor([0.5, 0.3, 1.0, -math.pi / 2])
HI = torch.tensor([2.0, 2.0, 8.0, math.pi / 2])
RD_SIGMA, RD_TIMES, RD_DURATION = 0.2, 96, 3.0


class Ringdown(ForwardModel):
    """``theta (B, 4) -> A exp(-t/tau) sin(2 pi f t + phi)`` at ``n_times`` times: ``(B, n_times)``."""

    name = "ringdown"
    x_dims = ("parameter",)
    y_dims = ("time",)

    def __init__(self, n_times: int = RD_TIMES, duration: float = RD_DURATION):
        super().__init__()
        self.n_times, self.duration = int(n_times), float(duration)
        self.register_buffer("t", torch.arange(self.n_times) * (self.duration / self.n_times))

    def forward(self, x: torch.Tensor, **params) -> torch.Tensor:
        t = self.t.to(x.dtype)
        A, tau, f, phi = (x[:, i:i + 1] for i in range(4))
        return A * torch.exp(-t / tau) * torch.sin(2 * math.pi * f * t + phi)

    def config(self) -> dict:
        return {"n_times": self.n_times, "duration": self.duration}


def to_physical(x: torch.Tensor) -> torch.Tensor:
    return LO.to(x) + (HI - LO).to(x) * torch.sigmoid(x)


def to_model(theta: torch.Tensor) -> torch.Tensor:
    u = ((theta - LO.to(theta)) / (HI - LO).to(theta)).clamp(1e-6, 1 - 1e-6)
    return torch.logit(u)


class _Simulations(torch.utils.data.Dataset):
    """``(y, x)`` pairs drawn afresh at every access (``length`` only sets the size of an epoch)."""

    def __init__(self, draw: Callable[[int, torch.Generator], tuple[torch.Tensor, torch.Tensor]],
                 length: int, seed: int):
        self.draw, self.length = draw, length
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return self.length

    def __getitems__(self, indices):
        y, x = self.draw(len(indices), self.generator)
        return list(zip(y, x))

    def __getitem__(self, index):
        return self.__getitems__([index])[0]


def _train(rim: RIM, draw, steps: int, batch: int, learning_rate: float, seed: int, backbone: str,
           settings: str, what: str) -> dict[str, Any]:
    """Train ``rim`` for ``steps`` steps of ``batch`` fresh ``what`` from ``draw`` (warm-up 20,
    cosine decay, clip 1.0); the record of the training for the JSON."""
    start = time.perf_counter()
    history = rim.fit(_Simulations(draw, steps * batch, seed), epochs=1, learning_rate=learning_rate,
                      batch_size=batch, warmup=20, scheduler="cosine", clip=1.0, seed=seed, progress=False)
    return {"backbone": backbone, "T": rim.T, "settings": settings,
            "training": f"{steps} steps of {batch} fresh {what}, Adam {learning_rate:g}, 20 warm-up steps, "
                        "cosine decay, clip 1.0",
            "steps": steps, "seconds": time.perf_counter() - start, "final_loss": float(history[-1])}


def _map_in_rim_basin(task: Task, rim_x: torch.Tensor, cap: int) -> tuple[str, dict[str, np.ndarray]]:
    """The MAP in the RIM's basin: L-BFGS started from the RIM's estimate, run to convergence."""
    run = run_lbfgs(task, cap, start=rim_x)
    return ("MAP (L-BFGS polishing the RIM's estimate)", {k: v[-1] for k, v in run["errors"].items()})


class RingdownTask(Task):
    name = "ringdown"
    title = "nonlinear: ringdown, 4 parameters (MLPGRU RIM, T = 20)"
    T = 20

    def __init__(self, quick: bool):
        self.problem = Problem(Ringdown(), Gaussian(sigma=RD_SIGMA))
        g = torch.Generator().manual_seed(12345)
        n = 32 if quick else 200
        self.theta = self.sample_prior(n, g)
        self.y = self.problem.simulate(self.theta, generator=g)
        self.lr_grids = {"adam": [0.03, 0.1, 0.3, 1.0] if not quick else [0.1, 0.3],
                         "gd": [3e-5, 1e-4, 3e-4, 1e-3] if not quick else [1e-4, 3e-4]}

    @staticmethod
    def sample_prior(n: int, g: torch.Generator) -> torch.Tensor:
        return LO + (HI - LO) * torch.rand(n, 4, generator=g)

    def settings(self):
        return {"noise_sigma": RD_SIGMA, "n_times": RD_TIMES, "duration_s": RD_DURATION,
                "prior_low": LO.tolist(), "prior_high": HI.tolist(), "start": "x = 0 (the prior mean)",
                "objective": "Gaussian NLL of sigmoid-linked parameters + logistic prior in model space",
                "error": "per-sample RMS over the 4 parameters of (estimate - truth) / (high - low)",
                "lr_grids": self.lr_grids}

    def x0(self) -> torch.Tensor:
        return torch.zeros(len(self.y), 4)

    def objective(self, x, y):
        prior = (F.softplus(x) + F.softplus(-x)).sum(dim=1)
        return self.problem.energy(to_physical(x), y) + prior

    def errors(self, x, index=None):
        truth = self.theta if index is None else self.theta[index]
        err = (to_physical(x.detach()) - truth) / (HI - LO)
        return {"truth": err.pow(2).mean(dim=1).sqrt().double().numpy()}

    def train_rim(self, quick, seed, steps=None):
        torch.manual_seed(seed)
        net = MLPGRU(4, hidden_units=64, num_layers=2)
        self.rim = RIM((), net, problem=self.problem, T=self.T, link_function=to_physical,
                       inverse_link_function=to_model, score_preprocessing_method="arcsinh",
                       loss_weights="linear", initialization_method="zeros",
                       standardize_score=True)   # the settings OPTIMISERS.md was measured with
        batch, per_epoch = 128, 4096
        epochs = 1 if quick else 50
        if steps is not None:
            epochs = max(1, round(steps * batch / per_epoch))

        def draw(b, gen):
            theta = self.sample_prior(b, gen)
            return self.problem.simulate(theta, generator=gen), theta
        start = time.perf_counter()
        history = self.rim.fit(_Simulations(draw, per_epoch, seed), epochs=epochs, learning_rate=2e-3,
                               batch_size=batch, warmup=50, scheduler="cosine", clip=1.0, seed=seed,
                               progress=False)
        return {"backbone": "MLPGRU(4, hidden_units=64, num_layers=2)", "T": self.T,
                "settings": "link: sigmoid onto the prior box; score preprocessing arcsinh; "
                            "standardize_score; loss_weights linear; initialization zeros",
                "training": f"{epochs} epochs x {per_epoch} fresh simulations, batch {batch}, Adam 2e-3, "
                            "50 warm-up steps, cosine decay, clip 1.0",
                "steps": epochs * (per_epoch // batch), "seconds": time.perf_counter() - start,
                "final_loss": float(history[-1])}

    def reference(self, rim_x: torch.Tensor, cap: int) -> tuple[str, dict[str, np.ndarray]]:
        return _map_in_rim_basin(self, rim_x, cap)


# ---- linear: deblurring Gaussian random fields -----------------------------------------------
GRF_N, GRF_SIGMA, GRF_PSF_SIGMA, GRF_POWER = 32, 0.1, 1.5, 3.0


class DeblurTask(Task):
    name = "deblur"
    title = "linear: deblurring 32x32 Gaussian random fields (Hourglass RIM, T = 10)"
    T = 10

    def __init__(self, quick: bool, sigma: float = GRF_SIGMA):
        N = GRF_N
        self.sigma = sigma
        self.title = (f"linear: deblurring 32x32 Gaussian random fields, noise sigma = {sigma:g} "
                      f"(Hourglass RIM, T = {self.T})")
        f = torch.fft.fftfreq(N, dtype=torch.float64)
        k = torch.sqrt(f[:, None] ** 2 + f[None, :] ** 2).clamp_min(1.0 / N)
        P = k ** -GRF_POWER
        self.P = P / P.mean()                     # eigenvalues of the covariance: pixel variance 1
        psf = gaussian_psf(15, GRF_PSF_SIGMA)
        self.problem = Problem(Blur(psf, boundary="periodic"), Gaussian(sigma=sigma))
        delta = torch.zeros(1, 1, N, N, dtype=torch.float64)
        delta[..., 0, 0] = 1
        self.H = torch.fft.fft2(self.problem.forward_model(delta)[0, 0])     # the blur's eigenvalues
        self.hessian_eigenvalues = self.H.abs() ** 2 / sigma ** 2 + 1 / self.P
        self.L = float(self.hessian_eigenvalues.max())
        self.mu = float(self.hessian_eigenvalues.min())
        self.inv_P = (1 / self.P).float()
        g = torch.Generator().manual_seed(4321)
        n = 8 if quick else 64
        self.x_true = self.fields(n, g)
        self.y = self.problem.simulate(self.x_true, generator=g)
        self.x_wiener = self.wiener(self.y)
        self.lr_grids = {"adam": [0.03, 0.1, 0.3, 1.0] if not quick else [0.1, 0.3],
                         "gd": [c / self.L for c in ((0.5, 1.0, 1.9) if not quick else (1.0, 1.9))]}

    def fields(self, n: int, g: torch.Generator) -> torch.Tensor:
        white = torch.randn(n, 1, GRF_N, GRF_N, generator=g, dtype=torch.float64)
        return torch.fft.ifft2(torch.fft.fft2(white) * self.P.sqrt()).real.float()

    def wiener(self, y: torch.Tensor) -> torch.Tensor:
        """The exact posterior mean (= MAP): ``H* P / (|H|^2 P + sigma^2)`` in Fourier space."""
        gain = self.H.conj() * self.P / (self.H.abs() ** 2 * self.P + self.sigma ** 2)
        return torch.fft.ifft2(torch.fft.fft2(y.double()) * gain).real.float()

    def settings(self):
        return {"size": GRF_N, "noise_sigma": self.sigma, "psf": f"Gaussian sigma {GRF_PSF_SIGMA} px, 15x15, periodic",
                "power_spectrum": f"P(k) ∝ max(k, 1/{GRF_N})^-{GRF_POWER:g}, pixel variance 1",
                "start": "x = 0", "objective": "Gaussian NLL + Gaussian prior with the known spectrum",
                "error": "per-sample pixel RMSE (against the truth; against the Wiener solution)",
                "hessian_L": self.L, "hessian_mu": self.mu, "condition_number": self.L / self.mu,
                "lr_grids": self.lr_grids}

    def x0(self):
        return torch.zeros_like(self.x_true)

    def prior_energy(self, x):
        X = torch.fft.fft2(x)
        return 0.5 * (X.real ** 2 + X.imag ** 2).mul(self.inv_P).flatten(1).sum(1) / GRF_N ** 2

    def objective(self, x, y):
        return self.problem.energy(x, y) + self.prior_energy(x)

    def hessian(self, v):
        """``(A^T A / sigma^2 + C^-1) v``: the objective's Hessian (constant) times ``v``."""
        fm = self.problem.forward_model
        return fm.adjoint(fm(v)) / self.sigma ** 2 + torch.fft.ifft2(torch.fft.fft2(v) * self.inv_P).real

    def rhs(self):
        return self.problem.forward_model.adjoint(self.y) / self.sigma ** 2

    def errors(self, x, index=None):
        x = x.detach()
        truth = self.x_true if index is None else self.x_true[index]
        wiener = self.x_wiener if index is None else self.x_wiener[index]
        rmse = lambda a, b: (a - b).pow(2).flatten(1).mean(1).sqrt().double().numpy()
        return {"truth": rmse(x, truth), "wiener": rmse(x, wiener)}

    def train_rim(self, quick, seed, steps=None):
        torch.manual_seed(seed)
        net = Hourglass(1, dimensions=2, nf=8, ch_mult=(2, 2), hidden_units=16)
        self.rim = RIM((GRF_N, GRF_N), net, problem=self.problem, T=self.T, initialization_method="zeros",
                       loss_weights="linear", standardize_score=True)   # as measured in OPTIMISERS.md
        batch = 16
        steps = steps if steps is not None else (20 if quick else 400)

        def draw(b, gen):
            x = self.fields(b, gen)
            return self.problem.simulate(x, generator=gen), x
        return _train(self.rim, draw, steps, batch, 3e-3, seed,
                      backbone="Hourglass(1, dimensions=2, nf=8, ch_mult=(2, 2), hidden_units=16)",
                      settings="identity link; score preprocessing identity; standardize_score; "
                               "loss_weights linear; initialization zeros", what="fields")

    def reference(self, rim_x, cap):
        return ("Wiener filter (the exact optimum)", self.errors(self.x_wiener))


# ---- nonlinear, high-dimensional: a pixelated lens convergence map --------------------------
KAPPA_N, KAPPA_FOV, KAPPA_SIGMA, KAPPA_STD, KAPPA_POWER = 32, 4.8, 0.02, 0.1, 3.0


class KappaTask(Task):
    """Strong lensing of a known source by a pixelated convergence map: 1024 unknowns, nonlinear
    (the source is sampled at ``theta - alpha(kappa)``), the setting of CosmicRIM-like claims."""

    name = "kappa"
    T = 10

    def __init__(self, quick: bool, sigma: float = KAPPA_SIGMA):
        from invrim_lensing.geometry import gaussian_source, pixel_grid
        from invrim_lensing.physics import PixelatedConvergenceLensing
        N = KAPPA_N
        self.title = (f"nonlinear: a {N}x{N} lens convergence map, known source, noise sigma = {sigma:g} "
                      f"(Hourglass RIM, T = {self.T})")
        lens = PixelatedConvergenceLensing(pixels=N, fov=KAPPA_FOV, source_pixels=32, source_fov=2.4)
        px, py = pixel_grid(N, KAPPA_FOV, torch.float32)
        self.kappa_mean = (1.2 / (2 * torch.sqrt(px ** 2 + py ** 2 + 0.2 ** 2)))[None, None]   # cored SIS
        source = (gaussian_source(32, 2.4, 0.1, 0.05, 0.2, torch.float32)
                  + 0.6 * gaussian_source(32, 2.4, -0.3, 0.2, 0.12, torch.float32)
                  + 0.5 * gaussian_source(32, 2.4, 0.25, -0.3, 0.15, torch.float32))
        self.sigma = sigma
        self.problem = Problem(_KnownSource(lens, source), Gaussian(sigma=sigma))
        f = torch.fft.fftfreq(N, dtype=torch.float64)
        k = torch.sqrt(f[:, None] ** 2 + f[None, :] ** 2).clamp_min(1.0 / N)
        P = k ** -KAPPA_POWER
        self.P = P / P.mean() * KAPPA_STD ** 2            # the fluctuations' covariance eigenvalues
        self.inv_P = (1 / self.P).float()
        g = torch.Generator().manual_seed(2468)
        n = 8 if quick else 32
        self.x_true = self.fields(n, g)                   # model space: kappa - kappa_mean
        self.y = self.problem.simulate(self.link(self.x_true), generator=g)
        self.lr_grids = {"adam": [0.003, 0.01, 0.03, 0.1] if not quick else [0.01, 0.03],
                         # the likelihood's curvature grows as 1/sigma^2: gradient descent's stable
                         # step shrinks as sigma^2
                         "gd": [lr * (sigma / KAPPA_SIGMA) ** 2
                                for lr in ([1e-5, 3e-5, 1e-4, 3e-4] if not quick else [3e-5, 1e-4])]}

    def link(self, x):
        return self.kappa_mean.to(x) + x

    def inverse_link(self, kappa):
        return kappa - self.kappa_mean.to(kappa)

    def fields(self, n: int, g: torch.Generator) -> torch.Tensor:
        white = torch.randn(n, 1, KAPPA_N, KAPPA_N, generator=g, dtype=torch.float64)
        return torch.fft.ifft2(torch.fft.fft2(white) * self.P.sqrt()).real.float()

    def settings(self):
        return {"size": KAPPA_N, "fov_arcsec": KAPPA_FOV, "noise_sigma": self.sigma,
                "kappa": f"cored SIS (Einstein radius 1.2 arcsec, core 0.2) + Gaussian random field, "
                         f"P(k) ∝ max(k, 1/{KAPPA_N})^-{KAPPA_POWER:g}, pixel std {KAPPA_STD}",
                "source": "three Gaussian blobs on a 32x32, 2.4 arcsec grid, peak about 1, known",
                "start": "x = 0 (kappa = the prior mean)",
                "objective": "Gaussian NLL + Gaussian prior with the known spectrum",
                "error": "per-sample RMSE of kappa against the truth", "lr_grids": self.lr_grids}

    def x0(self):
        return torch.zeros_like(self.x_true)

    def objective(self, x, y):
        X = torch.fft.fft2(x)
        prior = 0.5 * (X.real ** 2 + X.imag ** 2).mul(self.inv_P).flatten(1).sum(1) / KAPPA_N ** 2
        return self.problem.energy(self.link(x), y) + prior

    def errors(self, x, index=None):
        truth = self.x_true if index is None else self.x_true[index]
        return {"truth": (x.detach() - truth).pow(2).flatten(1).mean(1).sqrt().double().numpy()}

    def train_rim(self, quick, seed, steps=None):
        torch.manual_seed(seed)
        net = Hourglass(1, dimensions=2, nf=16, ch_mult=(2, 2), hidden_units=32)
        self.rim = RIM((KAPPA_N, KAPPA_N), net, problem=self.problem, T=self.T, link_function=self.link,
                       inverse_link_function=self.inverse_link, initialization_method="zeros",
                       loss_weights="linear", standardize_score=True)
        batch = 16
        steps = steps if steps is not None else (15 if quick else 1000)

        def draw(b, gen):
            kappa = self.link(self.fields(b, gen))
            return self.problem.simulate(kappa, generator=gen), kappa
        return _train(self.rim, draw, steps, batch, 2e-3, seed,
                      backbone="Hourglass(1, dimensions=2, nf=16, ch_mult=(2, 2), hidden_units=32)",
                      settings="link: kappa = prior mean + x; score preprocessing identity (autograd score); "
                               "standardize_score; loss_weights linear; initialization zeros (the prior mean)",
                      what="maps")

    def reference(self, rim_x, cap):
        return _map_in_rim_basin(self, rim_x, cap)


class _KnownSource(ForwardModel):
    """A lens whose source is fixed (the RIM and the optimisers see only ``kappa``)."""

    name = "lensing_kappa_known_source"

    def __init__(self, lens, source):
        super().__init__()
        self.lens = lens
        self.register_buffer("source", source)

    def forward(self, x, **params):
        return self.lens(x, source=self.source)


# ===================================================================================== optimisers
def _stack(records: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {k: np.stack([r[k] for r in records]) for k in records[0]}


def _converged(x: torch.Tensor, snapshot: torch.Tensor, tolerance: float = 1e-6) -> bool:
    """True when no sample's estimate moved by more than ``tolerance`` (relative) since the snapshot."""
    moved = (x - snapshot).flatten(1).norm(dim=1) / snapshot.flatten(1).norm(dim=1).clamp_min(1e-12)
    return bool(torch.isfinite(moved).all() and (moved <= tolerance).all())


def _finish(records: list[dict[str, np.ndarray]], iterations: int, seconds: float, n: int) -> dict[str, Any]:
    """Errors ``(K + 1, n)``, padded with the last values after an early stop (converged)."""
    ran = len(records) - 1
    records = records + [records[-1]] * (iterations + 1 - len(records))
    return {"errors": _stack(records), "seconds_per_iteration_per_sample": seconds / max(ran, 1) / n,
            "evaluations": np.arange(iterations + 1, dtype=float)[:, None].repeat(n, 1), "iterations_run": ran}


def run_first_order(task: Task, method: str, lr: float, iterations: int) -> dict[str, Any]:
    """Adam or plain gradient descent on the summed objective of the whole test set (the updates are
    per sample). Errors after each iteration 0..K, shape ``(K + 1, n)``; seconds per iteration. Stops
    early (and keeps the last values) once no estimate moves any more."""
    x = task.x0().clone().requires_grad_(True)
    opt = torch.optim.Adam([x], lr=lr) if method == "adam" else torch.optim.SGD([x], lr=lr)
    records = [task.errors(x)]
    seconds, snapshot = 0.0, x.detach().clone()
    for k in range(1, iterations + 1):
        start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        task.objective(x, task.y).sum().backward()
        opt.step()
        seconds += time.perf_counter() - start
        records.append(task.errors(x))
        if k % 20 == 0:
            if _converged(x.detach(), snapshot):
                break
            snapshot = x.detach().clone()
    return _finish(records, iterations, seconds, len(task.y))


def run_cg(task: DeblurTask, iterations: int) -> dict[str, Any]:
    """Conjugate gradients on ``(A^T A / sigma^2 + C^-1) x = A^T y / sigma^2`` from x = 0, with per-sample
    step sizes (mathematically independent CG runs, computed as one batch)."""
    x = task.x0().clone()
    dot = lambda a, b: (a * b).flatten(1).sum(1).view(-1, 1, 1, 1)
    records = [task.errors(x)]
    start = time.perf_counter()
    r = task.rhs() - task.hessian(x)
    p, rs = r.clone(), dot(r, r)
    seconds, snapshot = time.perf_counter() - start, x.clone()
    for k in range(1, iterations + 1):
        start = time.perf_counter()
        Ap = task.hessian(p)
        pAp = dot(p, Ap)
        alpha = torch.where(pAp > 0, rs / pAp.clamp_min(1e-30), torch.zeros_like(pAp))
        x = x + alpha * p
        r = r - alpha * Ap
        rs_new = dot(r, r)
        beta = torch.where(rs > 0, rs_new / rs.clamp_min(1e-30), torch.zeros_like(rs))
        p, rs = r + beta * p, rs_new
        seconds += time.perf_counter() - start
        records.append(task.errors(x))
        if k % 20 == 0:
            if _converged(x, snapshot):
                break
            snapshot = x.clone()
    return _finish(records, iterations, seconds, len(task.y))


def run_lbfgs(task: Task, iterations: int, start: Optional[torch.Tensor] = None,
              history_size: int = 100) -> dict[str, Any]:
    """L-BFGS with a strong-Wolfe line search, one sample at a time, from ``start`` (the common x0 by
    default). Per sample: errors after each iteration, cumulative function/gradient evaluations
    and cumulative seconds, each ``(K + 1, n)``; a sample that has converged (no progress left in
    float32) keeps its last values."""
    x_start = task.x0() if start is None else start
    n = len(task.y)
    errors, evals, seconds, ran = [], [], [], []
    for i in range(n):
        xi = x_start[i:i + 1].clone().requires_grad_(True)
        yi = task.y[i:i + 1]
        # max_iter=1 per step() call so the iterate can be recorded after every iteration; the
        # optimiser's state (memory, step) carries over between calls, so the path is the same as one
        # call with max_iter=K. Each call but the first re-evaluates the closure at the point the line
        # search just evaluated: those repeats are not counted. max_eval leaves the line search its
        # usual 25 evaluations.
        opt = torch.optim.LBFGS([xi], lr=1, max_iter=1, max_eval=26, history_size=history_size,
                                tolerance_grad=0.0, tolerance_change=0.0, line_search_fn="strong_wolfe")
        calls = 0

        def closure():
            nonlocal calls
            calls += 1
            opt.zero_grad(set_to_none=True)
            loss = task.objective(xi, yi).sum()
            loss.backward()
            return loss

        rec, ev, sec = [task.errors(xi, slice(i, i + 1))], [0], [0.0]
        losses = []
        clock = 0.0
        for k in range(1, iterations + 1):
            before = xi.detach().clone()
            t0 = time.perf_counter()
            loss = float(opt.step(closure).detach())
            clock += time.perf_counter() - t0
            losses.append(loss)
            rec.append(task.errors(xi, slice(i, i + 1)))
            ev.append(calls - (k - 1))
            sec.append(clock)
            stalled = torch.equal(before, xi.detach()) or not math.isfinite(loss)
            if len(losses) > 20:
                stalled = stalled or (losses[-21] - losses[-1]) <= 1e-6 * abs(losses[-1])
            if stalled:
                break
        ran.append(len(rec) - 1)
        pad = iterations + 1 - len(rec)
        rec += [rec[-1]] * pad
        ev += [ev[-1]] * pad
        sec += [sec[-1]] * pad
        errors.append(_stack(rec))
        evals.append(ev)
        seconds.append(sec)
    return {"errors": {k: np.concatenate([e[k] for e in errors], axis=1) for k in errors[0]},
            "evaluations": np.array(evals, dtype=float).T, "seconds": np.array(seconds).T,
            "iterations_run_median": float(np.median(ran))}


# ===================================================================================== analysis
def first_reach(curves: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per sample, the first iteration k with ``curves[k] <= target`` (inf when never)."""
    hit = curves <= target[None, :]
    k = hit.argmax(axis=0).astype(float)
    k[~hit.any(axis=0)] = np.inf
    return k


def _finite(v: float) -> Optional[float]:
    return None if v is None or not np.isfinite(v) else float(v)


def summarise(run: dict[str, Any], rim_final: dict[str, np.ndarray], T: int, kind: str) -> dict[str, Any]:
    """How many iterations the run needs to reach the RIM's per-sample error of kind ``kind``."""
    curves, target = run["errors"][kind], rim_final[kind]
    reach = first_reach(curves, target)
    n = len(target)
    idx = np.where(np.isfinite(reach), reach, 0).astype(int)
    evals = np.where(np.isfinite(reach), run["evaluations"][idx, np.arange(n)], np.inf)
    if "seconds" in run:
        secs = np.where(np.isfinite(reach), run["seconds"][idx, np.arange(n)], np.inf)
    else:
        secs = reach * run["seconds_per_iteration_per_sample"]
    median_curve = np.median(curves, axis=1)
    agg = first_reach(median_curve[:, None], np.array([np.median(target)]))[0]
    med = float(np.median(reach))
    return {"share_reached": float(np.isfinite(reach).mean()),
            "median_iterations": _finite(med),
            "quartile_iterations": [_finite(np.percentile(reach, q, method="nearest")) for q in (25, 75)],
            "ratio_to_T": _finite(med / T),
            "median_evaluations": _finite(float(np.median(evals))),
            "median_error_curve_reaches_at": _finite(agg),
            "median_seconds_per_sample": _finite(float(np.median(secs))),
            "final_median_error": _finite(float(np.median(curves[-1]))),
            "mean_log_median_error": _finite(float(np.mean(np.log(np.maximum(median_curve, 1e-300))))),
            "final_share_below_rim": float((curves[-1] <= target).mean())}


def _key(summary: dict[str, Any]) -> tuple:
    inf = float("inf")
    med = summary["median_iterations"]
    agg = summary["median_error_curve_reaches_at"]
    return (inf if med is None else med, -summary["share_reached"], inf if agg is None else agg,
            inf if summary["mean_log_median_error"] is None else summary["mean_log_median_error"])


def log_points(K: int, n: int = 120) -> list[int]:
    """About ``n`` iteration indices 0..K, log-spaced (for the curves saved in the JSON)."""
    return sorted({0, *np.unique(np.round(np.logspace(0, math.log10(max(K, 1)), n)).astype(int)).tolist()})


def benchmark(task: Task, args, log) -> dict[str, Any]:
    cap = args.cap if args.cap is not None else (QUICK_CAP if args.quick else CAP)
    log(f"\n== {task.title}")
    log("training the RIM ...")
    training = task.train_rim(args.quick, args.seed, {"ringdown": args.ringdown_steps, "kappa": args.kappa_steps,
                                                      "deblur": args.deblur_steps}[task.name])
    log(f"  {training['steps']} steps in {training['seconds']:.0f} s, final loss {training['final_loss']:.4g}")
    rim = task.rim.eval()
    with torch.no_grad():
        trajectory = [task.x0()] + rim(task.y)
        rim_errors = _stack([task.errors(x) for x in trajectory])            # (T + 1, n)
        batched, single = [], []
        for _ in range(3 if args.quick else 7):
            t0 = time.perf_counter()
            rim(task.y)
            batched.append((time.perf_counter() - t0) / len(task.y))
        for i in range(min(len(task.y), 8 if args.quick else 32)):
            t0 = time.perf_counter()
            rim(task.y[i:i + 1])
            single.append(time.perf_counter() - t0)
    T = task.T
    rim_final = {k: v[-1] for k, v in rim_errors.items()}
    kinds = list(rim_final)
    ref_name, ref_errors = task.reference(trajectory[-1], cap)
    result: dict[str, Any] = {
        "title": task.title, "n_test": len(task.y), "cap": cap, "T": T, "rim_training": training,
        "settings": task.settings(),
        "rim": {"median_error_per_step": {k: np.median(v, axis=1).tolist() for k, v in rim_errors.items()},
                "final_median_error": {k: float(np.median(v)) for k, v in rim_final.items()},
                "final_rms_error": {k: float(np.sqrt(np.mean(v ** 2))) for k, v in rim_final.items()},
                "seconds_per_sample_batched": float(np.median(batched)),
                "seconds_per_sample_one_at_a_time": float(np.median(single)),
                "score_evaluations": T},
        "reference": {"name": ref_name,
                      "median_error": {k: float(np.median(v)) for k, v in ref_errors.items()},
                      "share_better_than_rim": {k: float((ref_errors[k] <= rim_final[k]).mean())
                                                for k in ref_errors}},
        "optimisers": {}}
    log(f"  RIM after T={T}: median error " + ", ".join(f"{k} {v:.4g}" for k, v in
                                                    result["rim"]["final_median_error"].items()))
    ref = result["reference"]
    log(f"  {ref_name}: median error " + ", ".join(f"{k} {v:.4g}" for k, v in ref["median_error"].items())
        + "; better than the RIM on " + ", ".join(f"{100 * v:.0f}% ({k})" for k, v in
                                                  result["reference"]["share_better_than_rim"].items()))
    points = log_points(cap)
    curves_for_plot: dict[str, Any] = {}

    methods: list[tuple[str, list[Optional[float]]]] = [("adam", task.lr_grids["adam"]), ("lbfgs", [None]),
                                                         ("gd", task.lr_grids["gd"])]
    if isinstance(task, DeblurTask):
        methods.append(("cg", [None]))
    for method, grid in methods:
        entry: dict[str, Any] = {"runs": []}
        best, best_run = None, None
        for lr in grid:
            t0 = time.perf_counter()
            if method in ("adam", "gd"):
                run = run_first_order(task, method, lr, cap)
            elif method == "lbfgs":
                run = run_lbfgs(task, cap)
            else:
                run = run_cg(task, cap)
            summary = {k: summarise(run, rim_final, T, k) for k in kinds}
            summary["lr"] = lr
            if method == "lbfgs":
                summary["iterations_run_median"] = run["iterations_run_median"]
            else:
                summary["iterations_run"] = run["iterations_run"]
            entry["runs"].append(summary)
            s = summary["truth"]
            log(f"  {method:<5} lr={'-' if lr is None else f'{lr:.3g}':<8} reached {100 * s['share_reached']:5.1f}%  "
                f"median iters {s['median_iterations']}  median-curve reach {s['median_error_curve_reaches_at']}  "
                f"final median err {_err(s['final_median_error'])}  ({time.perf_counter() - t0:.0f} s)")
            if best is None or _key(summary["truth"]) < _key(best["truth"]):
                best, best_run = summary, run
        entry["best"] = best
        entry["curve_points"] = points
        entry["median_error_curve"] = {k: np.median(v, axis=1)[points].tolist() for k, v in best_run["errors"].items()}
        if method == "lbfgs":
            entry["median_evaluations_curve"] = np.median(best_run["evaluations"], axis=1)[points].tolist()
        result["optimisers"][method] = entry
        curves_for_plot[method] = best_run
    return result


# ===================================================================================== reporting
NAMES = {"adam": "Adam", "lbfgs": "L-BFGS", "gd": "gradient descent", "cg": "conjugate gradients"}


def _clean(obj: Any) -> Any:
    """``obj`` for JSON: non-finite numbers (a diverged run) become null."""
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _num(v: Optional[float], spec: str, suffix: str = "") -> str:
    return "—" if v is None else format(v, spec) + suffix


def _err(v: Optional[float]) -> str:
    return "diverged" if v is None else f"{v:.4g}"


def _fmt_iters(v: Optional[float], cap: int) -> str:
    return f"> {cap} (not reached)" if v is None else f"{v:g}"


def markdown(results: dict[str, Any]) -> str:
    lines = []
    for name, res in results["problems"].items():
        T, cap = res["T"], res["cap"]
        kinds = list(res["rim"]["final_median_error"])
        lines.append(f"### {res['title']}\n")
        tr = res["rim_training"]
        lines.append(f"RIM: {tr['backbone']}, T = {T}; {tr['settings']}. Training: {tr['training']} "
                     f"({tr['steps']} steps, {tr['seconds']:.0f} s, final loss {tr['final_loss']:.4g}). "
                     f"{res['n_test']} test samples; iteration cap {cap}.\n")
        for kind in kinds:
            label = {"truth": "error against the truth", "wiener": "distance to the Wiener solution"}[kind]
            rim_err = res["rim"]["final_median_error"][kind]
            ref = res["reference"]
            lines.append(f"**Target: the RIM's {label} after T = {T} steps** (median {rim_err:.4g}; "
                         f"{ref['name']}: median {ref['median_error'][kind]:.4g}, better than the RIM on "
                         f"{100 * ref['share_better_than_rim'][kind]:.0f}% of samples).\n")
            lines.append("| method | best lr | reached within cap | median iterations (per sample) | ratio to T | "
                         "quartiles | median f/g evaluations | median-error curve reaches at | "
                         "ms per sample to reach | final median error | final error <= RIM's |")
            lines.append("|---|---|---|---|---|---|---|---|---|---|---|")
            rim = res["rim"]
            lines.append(f"| RIM (T = {T}) | — | — | {T} | 1 | — | {T} | {T} | "
                         f"{1e3 * rim['seconds_per_sample_batched']:.3f} (batched), "
                         f"{1e3 * rim['seconds_per_sample_one_at_a_time']:.2f} (one at a time) | {rim_err:.4g} | — |")
            for method, entry in res["optimisers"].items():
                s = entry["best"][kind]
                lr = entry["best"]["lr"]
                q = s["quartile_iterations"]
                ms = "—" if s["median_seconds_per_sample"] is None else f"{1e3 * s['median_seconds_per_sample']:.2f}"
                lines.append(
                    f"| {NAMES[method]} | {'—' if lr is None else f'{lr:.3g}'} | {100 * s['share_reached']:.1f}% | "
                    f"{_fmt_iters(s['median_iterations'], cap)} | "
                    f"{_num(s['ratio_to_T'], '.1f', 'x')} | "
                    f"{'/'.join('∞' if v is None else f'{v:.0f}' for v in q)} | "
                    f"{_num(s['median_evaluations'], 'g')} | "
                    f"{_fmt_iters(s['median_error_curve_reaches_at'], cap)} | {ms} | {_err(s['final_median_error'])} | "
                    f"{100 * s['final_share_below_rim']:.1f}% |")
            lines.append("")
        lines.append("All learning rates tried (target: error against the truth):\n")
        lines.append("| method | lr | reached | median iterations | median-error curve reaches at | "
                     "final median error |")
        lines.append("|---|---|---|---|---|---|")
        for method, entry in res["optimisers"].items():
            for run in entry["runs"]:
                s = run["truth"]
                lines.append(f"| {NAMES[method]} | {_num(run['lr'], '.3g')} | "
                             f"{100 * s['share_reached']:.1f}% | {_fmt_iters(s['median_iterations'], cap)} | "
                             f"{_fmt_iters(s['median_error_curve_reaches_at'], cap)} | "
                             f"{_err(s['final_median_error'])} |")
        lines.append("")
    return "\n".join(lines)


def _iterations(median: Optional[float]) -> float:
    """A median iteration count, with "not reached" (None) as infinitely many (0 stays 0)."""
    return float("inf") if median is None else median


def verdict(results: dict[str, Any]) -> str:
    """The target on each nonlinear problem: Adam and L-BFGS need >= 10x T iterations."""
    parts = []
    for name in ("ringdown", "kappa"):
        res = results["problems"].get(name)
        if res is None:
            continue
        T, out = res["T"], []
        for method in ("adam", "lbfgs"):
            s = res["optimisers"][method]["best"]["truth"]
            med = s["median_iterations"]
            if med is None:
                out.append(f"{NAMES[method]} does not reach the RIM's per-sample error on half of the samples "
                           f"within {res['cap']} iterations (reached on {100 * s['share_reached']:.0f}%)")
            else:
                evals = "" if method != "lbfgs" else f" ({s['median_evaluations']:g} f/g evaluations)"
                out.append(f"{NAMES[method]} needs a median {med:g} iterations{evals} = {med / T:.1f}x T "
                           f"(reached on {100 * s['share_reached']:.0f}% of samples; the test set's median error "
                           f"gets there after {_fmt_iters(s['median_error_curve_reaches_at'], res['cap'])})")
        met = all(_iterations(res["optimisers"][m]["best"]["truth"]["median_iterations"]) >= 10 * T
                  for m in ("adam", "lbfgs"))
        parts.append(f"Target (nonlinear problem {name}: Adam and L-BFGS need >= 10x T = {10 * T} iterations to "
                     f"reach the RIM's error after T = {T} steps): {'MET' if met else 'MISSED'}. "
                     + "; ".join(out) + ".")
    return "\n".join(parts)


def figure(results: dict[str, Any], path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    panels = [(name, kind) for name, res in results["problems"].items() for kind in res["rim"]["final_median_error"]]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.4), squeeze=False)
    colors = {"adam": "tab:orange", "lbfgs": "tab:green", "gd": "tab:purple", "cg": "tab:brown"}
    for ax, (name, kind) in zip(axes[0], panels):
        res = results["problems"][name]
        T = res["T"]
        rim_curve = res["rim"]["median_error_per_step"][kind]
        for method, entry in res["optimisers"].items():
            pts = np.array(entry["curve_points"][1:], dtype=float)
            curve = np.array(entry["median_error_curve"][kind][1:], dtype=float)
            lr = entry["best"]["lr"]
            label = NAMES[method] + ("" if lr is None else f" (lr {lr:.2g})")
            ax.plot(pts, curve, color=colors[method], lw=1.6, label=label)
            if method == "lbfgs":
                ev = np.array(entry["median_evaluations_curve"][1:], dtype=float)
                ax.plot(ev, curve, color=colors[method], lw=1.0, ls=":", label="L-BFGS vs f/g evaluations")
        ax.plot(np.arange(1, T + 1), rim_curve[1:], "o-", color="tab:blue", ms=4, lw=1.8, label=f"RIM (T = {T})")
        ax.axhline(rim_curve[-1], color="tab:blue", ls="--", lw=0.9)
        if kind == "truth":
            ax.axhline(res["reference"]["median_error"]["truth"], color="k", ls=":", lw=0.9,
                       label="Wiener filter" if name == "deblur" else "MAP (L-BFGS from the RIM's estimate)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("iteration (RIM: step)")
        what = {"truth": "error vs truth", "wiener": "distance to the Wiener solution"}[kind]
        unit = {"ringdown": " [box widths]", "kappa": " [kappa RMSE]"}.get(name, " [pixel RMSE]")
        ax.set_ylabel(f"median {what}{unit}")
        ax.set_title({"ringdown": "ringdown (nonlinear)", "kappa": "lens convergence map (nonlinear)",
                      "deblur": "GRF deblurring (linear)"}[name]
                     + ("" if kind == "truth" else ": vs Wiener"), fontsize=10)
        ax.grid(True, which="both", alpha=0.25)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        description="The learned-optimiser claim, measured: iterations Adam, L-BFGS, gradient descent and CG "
                    "need to reach the error a trained invrim RIM reaches in T steps, on two nonlinear problems "
                    "(ringdown parameters, a lens convergence map) and a linear one (Gaussian-random-field "
                    "deblurring). The RIMs are trained inside the "
                    "script on simulations (fixed seeds and step counts).",
        epilog="Full run: about 25 minutes (the lens problem 15 of them) on one thread of a shared 2-core "
               "machine. The module docstring "
               "(the head of this file) explains the setup; "
               "benchmarks/OPTIMISERS.md has recorded results.")
    parser.add_argument("--quick", action="store_true",
                        help=f"smoke test: tiny training, few test samples, iteration cap {QUICK_CAP} "
                             "(well under a minute)")
    parser.add_argument("--json", metavar="PATH", help="write all results (and the machine) as JSON here")
    parser.add_argument("--figure", metavar="PATH", help="save the error-vs-iteration figure (matplotlib) here")
    parser.add_argument("--problems", nargs="+", choices=["ringdown", "kappa", "deblur"],
                        default=["ringdown", "kappa", "deblur"],
                        help="which problems to run (default: all three; kappa needs the invrim-lensing plugin)")
    parser.add_argument("--kappa-steps", type=int, default=None,
                        help="lens-convergence RIM training steps of batch 16 (default 1000; quick: 15)")
    parser.add_argument("--cap", type=int, default=None,
                        help=f"iteration cap for the classical optimisers (default {CAP}; quick: {QUICK_CAP})")
    parser.add_argument("--seed", type=int, default=0, help="seed of the RIMs' weights and training simulations "
                        "(default 0; the test sets are fixed)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--ringdown-steps", type=int, default=None,
                        help="ringdown RIM training steps of batch 128 (default 1600 = 50 epochs of 4096; quick: 32)")
    parser.add_argument("--kappa-noise", type=float, default=KAPPA_SIGMA,
                        help=f"noise standard deviation of the lens-convergence problem's image (default {KAPPA_SIGMA}; "
                        "lower noise makes the posterior stiffer, so the classical optimisers need more iterations)")
    parser.add_argument("--deblur-noise", type=float, default=GRF_SIGMA,
                        help=f"standard deviation of the deblurring problem's white noise; the fields have pixel std 1 "
                        f"(default {GRF_SIGMA})")
    parser.add_argument("--deblur-steps", type=int, default=None,
                        help="deblurring RIM training steps of batch 16 (default 400; quick: 20)")
    parser.add_argument("--from-json", metavar="PATH",
                        help="run nothing: print the tables and verdict of a saved --json file (and draw --figure)")
    args = parser.parse_args(argv)
    if not args.kappa_noise > 0:
        parser.error(f"--kappa-noise must be positive, got {args.kappa_noise}")
    if args.from_json:
        results = json.loads(Path(args.from_json).read_text())
        print(markdown(results))
        print(verdict(results))
        if args.figure:
            figure(results, args.figure)
            print(f"figure saved to {args.figure}")
        return 0
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    log = lambda s: print(s, flush=True)
    machine = machine_info()
    log(f"machine: {machine['cpu_model']}; flags {' '.join(machine['cpu_flags_avx_amx']) or '-'}; "
        f"torch {machine['torch']}, {args.threads} thread(s)")
    results: dict[str, Any] = {"machine": machine, "quick": args.quick, "seed": args.seed, "problems": {}}
    for name in args.problems:
        task = (RingdownTask(args.quick) if name == "ringdown"
                else KappaTask(args.quick, args.kappa_noise) if name == "kappa"
                else DeblurTask(args.quick, args.deblur_noise))
        if isinstance(task, DeblurTask):
            log(f"deblurring: Hessian eigenvalues in [{task.mu:.4g}, {task.L:.4g}], condition number "
                f"{task.L / task.mu:.3g}")
            results["deblur_hessian"] = {"L": task.L, "mu": task.mu, "condition_number": task.L / task.mu}
        results["problems"][name] = benchmark(task, args, log)
    results["seconds_total"] = time.perf_counter() - started
    text = markdown(results)
    v = verdict(results)
    log("\n" + text)
    if v:
        log(v + "\n")
    results["verdict"] = v
    log(f"total {results['seconds_total']:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(_clean(results), indent=1, allow_nan=False) + "\n")
        log(f"results written to {args.json}")
    if args.figure:
        figure(results, args.figure)
        log(f"figure saved to {args.figure}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
