"""Parameter inference: recover the 4 parameters of a noisy damped sinusoid with a RIM.

    python examples/parameter_inference_1d.py            # 1.5 min on one CPU thread (at most ~3 on a busy one)
    python examples/parameter_inference_1d.py --fast     # a few seconds: smoke test

The signal is a ringdown (a plucked string, an NMR free-induction decay, a black-hole ringdown):

    y(t_i) = A · exp(−t_i / τ) · sin(2π f t_i + φ) + ε_i,     ε_i ~ N(0, σ²),  σ = 0.2,

sampled at 96 times in [0, 3) s. The parameters θ = (A, τ, f, φ) have uniform priors on boxes:
A ∈ [0.5, 2], τ ∈ [0.3, 2] s, f ∈ [1, 8] Hz, φ ∈ [−π/2, π/2] rad (with A > 0 this makes θ
identifiable and keeps φ away from its 2π wrap). The RIM iterates on an unconstrained vector
x ∈ R⁴ mapped to the box by a sigmoid link, θ = lo + (hi − lo)·sigmoid(x), so x = 0 is the prior
mean and the prior in model space is a standard logistic. The forward model is nonlinear, so the
``Problem``'s score ∇θ log p(y | θ) comes from autograd; the link's chain rule carries it to x.

The RIM (MLPGRU backbone, T = 20, trained on signals drawn afresh from the prior at every step) is
compared with nonlinear least squares (``scipy.optimize.least_squares``, trust-region reflective
with the box as bounds and the analytic Jacobian) started from the prior mean — the same starting
point as the RIM — and, as a stronger classical baseline, the best (lowest χ²) of 8 least-squares
fits started on a frequency grid f₀ ∈ {1, 2, …, 8} Hz (other parameters at the prior mean). "RIM →
LS" polishes the RIM's estimate with one least-squares fit.

Training runs 100 epochs of 4096 fresh simulations (batch 128, Adam 2e-3 with a cosine decay), with a
160 s time limit as a safety net; while the epochs fit comfortably in it the run is reproducible.
Measured on a shared 2-core machine with one thread (``OMP_NUM_THREADS=1 python
examples/parameter_inference_1d.py``: 100 epochs in 85 s, 91 s in all), RMSE in physical units on
200 test signals; "f off" is the share of signals with |f̂ − f| > 0.5 Hz (a wrong basin):

    estimator                              A    τ [s]   f [Hz]  φ [rad]   f off  ms/signal
    prior mean                         0.433    0.485    1.888    0.900   82.5%          —
    LS from the prior mean             0.314    0.503    1.411    0.343   20.0%       2.00
    LS, best of 8 starts (f grid)      0.096    0.144    0.039    0.104    0.0%      16.72
    RIM (one batched forward)          0.102    0.148    0.082    0.110    0.5%       0.08
    RIM -> LS polish                   0.096    0.144    0.039    0.104    0.0%       0.77

Least squares from the prior mean falls into a wrong frequency basin for one signal in five. The RIM,
started from the same point, reaches the multi-start least squares' accuracy on A, τ and φ (within
7 %) at 1/200 of its time per signal; its frequency RMSE is dominated by the rare signal it sends to
a wrong basin (1 of 200 here; with ``--seed 1`` and ``--seed 2``: f RMSE 0.103 and 0.201 Hz, again 1 of
200). Polishing the RIM's estimate with a single least-squares fit gives exactly the multi-start
result at 1/20 of its cost. Timings are wall-clock on a shared machine and vary by ±50 %.
"""
from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch
from scipy.optimize import least_squares

from invrim import RIM, Gaussian, MLPGRU, Problem
from invrim.physics.base import ForwardModel

NAMES = ("A", "τ", "f", "φ")
UNITS = ("", "s", "Hz", "rad")
LO = torch.tensor([0.5, 0.3, 1.0, -math.pi / 2])
HI = torch.tensor([2.0, 2.0, 8.0, math.pi / 2])
SIGMA = 0.2
N_TIMES, DURATION = 96, 3.0


def ringdown(theta: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """``A exp(−t/τ) sin(2π f t + φ)`` for ``theta (B, 4)`` at times ``t (N,)``: ``(B, N)``."""
    A, tau, f, phi = (theta[:, i:i + 1] for i in range(4))
    return A * torch.exp(-t / tau) * torch.sin(2 * math.pi * f * t + phi)


class Ringdown(ForwardModel):
    """Nonlinear forward model: physical parameters ``(B, 4)`` -> noiseless signal ``(B, n_times)``."""

    name = "ringdown"
    x_dims = ("parameter",)
    y_dims = ("time",)

    def __init__(self, n_times: int = N_TIMES, duration: float = DURATION):
        super().__init__()
        self.n_times, self.duration = int(n_times), float(duration)
        self.register_buffer("t", torch.arange(self.n_times) * (self.duration / self.n_times))

    def forward(self, x: torch.Tensor, **params) -> torch.Tensor:
        return ringdown(x, self.t.to(x.dtype))

    def config(self) -> dict:
        return {"n_times": self.n_times, "duration": self.duration}


# The link: model space R⁴ <-> the prior box (an elementwise map, so torch.func can differentiate it).
def to_physical(x: torch.Tensor) -> torch.Tensor:
    return LO.to(x) + (HI - LO).to(x) * torch.sigmoid(x)


def to_model(theta: torch.Tensor) -> torch.Tensor:
    u = ((theta - LO.to(theta)) / (HI - LO).to(theta)).clamp(1e-6, 1 - 1e-6)
    return torch.logit(u)


def sample_prior(n: int, generator: torch.Generator) -> torch.Tensor:
    return LO + (HI - LO) * torch.rand(n, 4, generator=generator)


class PriorSimulations(torch.utils.data.Dataset):
    """``(y, θ)`` pairs drawn afresh from the prior and the likelihood at every access: an
    endless supply of training data (``length`` only sets how many items make an epoch)."""

    def __init__(self, problem: Problem, length: int, seed: int = 0):
        self.problem, self.length = problem, length
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return self.length

    def __getitems__(self, indices):          # the DataLoader asks for a whole batch at once
        theta = sample_prior(len(indices), self.generator)
        y = self.problem.simulate(theta, generator=self.generator)
        return list(zip(y, theta))

    def __getitem__(self, index):
        return self.__getitems__([index])[0]


# ---- the classical baseline: nonlinear least squares in numpy/scipy ---------------------------------
def _residual_and_jacobian(t: np.ndarray, y: np.ndarray):
    two_pi_t = 2 * np.pi * t

    def residual(p):
        A, tau, f, phi = p
        return (A * np.exp(-t / tau) * np.sin(two_pi_t * f + phi) - y) / SIGMA

    def jacobian(p):
        A, tau, f, phi = p
        e = np.exp(-t / tau)
        s, c = np.sin(two_pi_t * f + phi), np.cos(two_pi_t * f + phi)
        return np.stack([e * s, A * e * s * t / tau ** 2, A * e * c * two_pi_t, A * e * c], axis=1) / SIGMA

    return residual, jacobian


def fit_least_squares(y: np.ndarray, t: np.ndarray, starts: list[np.ndarray]) -> np.ndarray:
    """The lowest-χ² result of trust-region-reflective fits from each start, within the prior box."""
    residual, jacobian = _residual_and_jacobian(t, y)
    lo, hi = LO.double().numpy(), HI.double().numpy()
    best = None
    for p0 in starts:
        r = least_squares(residual, np.clip(p0, lo + 1e-9, hi - 1e-9), jac=jacobian, bounds=(lo, hi),
                          method="trf", x_scale="jac")
        if best is None or r.cost < best.cost:
            best = r
    return best.x


def run_least_squares(y: torch.Tensor, t: torch.Tensor, starts_fn) -> tuple[np.ndarray, float]:
    """Fit every signal; returns the estimates ``(n, 4)`` and the wall time per signal in seconds."""
    y_np, t_np = y.double().numpy(), t.double().numpy()
    start = time.perf_counter()
    out = np.stack([fit_least_squares(y_np[i], t_np, starts_fn(i)) for i in range(len(y_np))])
    return out, (time.perf_counter() - start) / len(y_np)


def rmse(estimate: np.ndarray, truth: np.ndarray) -> np.ndarray:
    return np.sqrt(((estimate - truth) ** 2).mean(axis=0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="tiny run for smoke tests")
    parser.add_argument("--epochs", type=int, default=100, help="training epochs of 4096 signals (default 100)")
    parser.add_argument("--seconds", type=float, default=160,
                        help="training time limit: stops earlier on a slow or busy machine (default 160)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seeds the weights, the training simulations and the shuffling (the test set is fixed)")
    parser.add_argument("--figure", default="parameter_inference_1d.png", help="where to save the figure")
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    n_test = 24 if args.fast else 200
    # --fast: a fixed 10 epochs of 2 steps (the time limit only a safety net, so a busy machine cannot
    # end the run before its first epoch)
    budget, epochs = (120.0, 10) if args.fast else (args.seconds, args.epochs)

    problem = Problem(Ringdown(), Gaussian(sigma=SIGMA))
    t = problem.forward_model.t
    g = torch.Generator().manual_seed(12345)                 # the test set: its own generator
    theta_test = sample_prior(n_test, g)
    y_test = problem.simulate(theta_test, generator=g)

    net = MLPGRU(4, hidden_units=64, num_layers=2)
    rim = RIM((), net, problem=problem, T=20, link_function=to_physical, inverse_link_function=to_model,
              score_preprocessing_method="arcsinh", loss_weights="linear", standardize_score=True)
    train = PriorSimulations(problem, length=256 if args.fast else 4096, seed=args.seed)
    print(f"training a RIM (MLPGRU, T={rim.T}) on fresh prior simulations: {epochs} epochs, "
          f"at most {budget:.0f} s ...")
    start = time.monotonic()
    history = rim.fit(train, epochs=epochs, learning_rate=2e-3, batch_size=128, warmup=50,
                      scheduler="cosine", max_time=budget / 3600, clip=1.0, seed=args.seed, progress=False)
    n_seen = len(history) * len(train)
    print(f"trained {len(history)} epochs ({n_seen} simulated signals) in {time.monotonic() - start:.0f} s, "
          f"final loss {history[-1]:.3f} ({history.stop_reason})")

    # ---- estimates on the test set ----------------------------------------------------------------
    start = time.perf_counter()
    rim_est = rim.predict(y_test)
    rim_time = (time.perf_counter() - start) / n_test
    rim_est = rim_est.double().numpy()

    prior_mean = ((LO + HI) / 2).double().numpy()
    ls_est, ls_time = run_least_squares(y_test, t, lambda i: [prior_mean])
    grid = [np.array([prior_mean[0], prior_mean[1], f0, prior_mean[3]]) for f0 in np.arange(1.0, 8.5, 1.0)]
    ms_est, ms_time = run_least_squares(y_test, t, lambda i: grid)
    pol_est, pol_time = run_least_squares(y_test, t, lambda i: [rim_est[i]])
    pol_time += rim_time

    truth = theta_test.double().numpy()
    rows = [("prior mean", np.broadcast_to(prior_mean, truth.shape), None),
            ("LS from the prior mean", ls_est, ls_time),
            (f"LS, best of {len(grid)} starts (f grid)", ms_est, ms_time),
            ("RIM (one batched forward)", rim_est, rim_time),
            ("RIM -> LS polish", pol_est, pol_time)]
    heads = [f"{n} [{u}]" if u else n for n, u in zip(NAMES, UNITS)]
    print(f"\nRMSE on {n_test} test signals (physical units); 'f off' = share with |f_hat - f| > 0.5 Hz")
    print(f"  {'estimator':<34}" + "".join(f"{h:>9}" for h in heads) + f"{'f off':>8}{'ms/signal':>11}")
    for name, est, sec in rows:
        err = rmse(est, truth)
        off = 100 * np.mean(np.abs(est[:, 2] - truth[:, 2]) > 0.5)
        ms = "—" if sec is None else f"{1e3 * sec:.2f}"
        line = f"  {name:<34}" + "".join(f"{e:9.3f}" for e in err) + f"{off:7.1f}%{ms:>11}"
        print(line)

    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    # Three test signals in order, plus the one where single-start LS is furthest off in frequency.
    worst = int(np.argmax(np.abs(ls_est[:, 2] - truth[:, 2])))
    shown = [i for i in range(4) if i != worst][:3] + [worst]
    t_fine = torch.linspace(0, DURATION, 600)
    fig = plt.figure(figsize=(13, 6.9))
    grid_spec = fig.add_gridspec(2, 4, height_ratios=(1, 1.05), hspace=0.4, wspace=0.28, top=0.84)
    curve = lambda th: ringdown(torch.as_tensor(th, dtype=torch.float32)[None], t_fine)[0].numpy()
    for k, i in enumerate(shown):
        ax = fig.add_subplot(grid_spec[0, k])
        ax.plot(t.numpy(), y_test[i].numpy(), ".", color="0.6", ms=3.5, label="data (96 samples)")
        ax.plot(t_fine, curve(truth[i]), color="k", lw=2.6, alpha=0.35, label="truth")
        ax.plot(t_fine, curve(ls_est[i]), color="tab:orange", lw=1.2, ls="--", label="LS fit (prior-mean start)")
        ax.plot(t_fine, curve(rim_est[i]), color="tab:blue", lw=1.0, label="RIM fit")
        title = f"test signal {i}" + (" (LS's worst f)" if i == worst else "")
        ax.set_title(f"{title}\nf = {truth[i, 2]:.2f} Hz: LS {ls_est[i, 2]:.2f}, RIM {rim_est[i, 2]:.2f}",
                     fontsize=9)
        ax.set_xlim(0, DURATION)
        ax.set_xlabel("t [s]", fontsize=9)
        ax.tick_params(labelsize=8)
        if k == 0:
            ax.set_ylabel("y(t)", fontsize=9)
            handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=4, fontsize=9, frameon=False, bbox_to_anchor=(0.5, 0.95))
    for p in range(4):
        ax = fig.add_subplot(grid_spec[1, p])
        lo, hi = float(LO[p]), float(HI[p])
        pad = 0.04 * (hi - lo)
        ax.plot([lo, hi], [lo, hi], color="k", lw=0.8)
        ax.scatter(truth[:, p], ls_est[:, p], s=9, alpha=0.6, color="tab:orange", label="LS (prior-mean start)")
        ax.scatter(truth[:, p], rim_est[:, p], s=9, alpha=0.6, color="tab:blue", label="RIM")
        unit = f" [{UNITS[p]}]" if UNITS[p] else ""
        ax.set_title(f"{NAMES[p]}{unit}: RMSE LS {rmse(ls_est, truth)[p]:.3f}, RIM {rmse(rim_est, truth)[p]:.3f}",
                     fontsize=9)
        ax.set_xlabel(f"true {NAMES[p]}", fontsize=9)
        ax.set_xlim(lo - pad, hi + pad)
        ax.set_ylim(lo - pad, hi + pad)
        ax.set_aspect("equal")
        ax.tick_params(labelsize=8)
        if p == 0:
            ax.set_ylabel("estimate", fontsize=9)
            ax.legend(fontsize=7, loc="upper left", markerscale=1.5)
    fig.suptitle(f"Damped sinusoid y = A e^(−t/τ) sin(2πft + φ) + noise (σ = {SIGMA}): "
                 f"RIM vs least squares on {n_test} test signals", fontsize=11, y=0.985)
    fig.savefig(Path(args.figure), dpi=110, bbox_inches="tight")
    print(f"figure saved to {args.figure}")


if __name__ == "__main__":
    main()
