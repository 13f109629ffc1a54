"""Quality against training budget: invrim's RIM beside torch-rim 0.2.9 and the classical baseline.

For each problem both libraries train on the same stream of batches (same seed, same batch size,
same Adam learning rate, same T and the same Hourglass hyper-parameters); the test error is
measured at fixed step counts on a fixed test set, with the training wall-clock time (evaluation
excluded) recorded at each point. Errors are reported relative to the classical baseline a domain
scientist would use on that problem (MSE ratio < 1: the RIM beats it) and as PSNR.

Problems (``--problems``):

``grf``     2-D Gaussian random fields (P(k) ∝ k^-3, 32x32, periodic), Gaussian blur σ=1.5 px,
            white noise σ=0.1: the Wiener filter is the exact posterior mean, so its MSE is the limit.
``seed``    torch-rim's usage pattern: the user's own ``score_fn`` (conv2d blur of 32x32 random
            ellipses, σ=0.05), zero initialisation, ``arcsinh`` score preprocessing, T=6.
``sr``      2x super-resolution (block averaging) of 32x32 random ellipses, σ=0.02; baselines the
            pseudo-inverse (pixel replication) and Tikhonov-CG.
``mri``     4-coil, 4x random Cartesian MRI of 32x32 complex phantoms (the invrim-mri plugin);
            baselines zero-filled SENSE and Tikhonov CG-SENSE.
``ct``      sparse-view parallel-beam CT, 32x32, 16 views (the invrim-ct plugin); baseline FBP.

Variants (``--variants``): ``torch-rim`` (the seed library, its own loss, GRU and initialisation of
the backbone), ``invrim`` (invrim's defaults, starting where ``RIM.fit`` would: the Tikhonov start on a
linear problem whose ``auto_start`` asks for it) and named invrim settings (see ``VARIANTS``).

    python benchmarks/quality.py --quick                       # smoke run, a minute
    python benchmarks/quality.py --problems grf --steps 600 --seeds 0 1 2 --json grf.json
    python benchmarks/quality.py --report a.json b.json --figure quality.png   # tables + figure

Each (problem, variant, seed) runs in its own subprocess with one thread, ``--jobs`` at a time
(2 on the 2-core machine), so the runs do not share caches or allocator state.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine_load import machine  # noqa: E402

HERE = Path(__file__).resolve().parent

#: invrim settings compared on the benchmark: RIM options, backbone options, training options.
VARIANTS: dict[str, dict[str, Any]] = {
    "invrim": {},
    # the settings the seed used, inside invrim (what compat.TORCH_RIM_SETTINGS restores)
    "invrim-seed-settings": {"rim": {"standardize_score": False, "loss_weights": "uniform"}},
    "no-standardize": {"rim": {"standardize_score": False}},
    "standardize": {"rim": {"standardize_score": True}},
    "uniform-weights": {"rim": {"loss_weights": "uniform"}},
    "lr3e-3": {"fit": {"learning_rate": 3e-3}},
    "lr3e-4": {"fit": {"learning_rate": 3e-4}},
    "no-clip": {"fit": {"clip": 0.0}},
    "zero-out": {"zero_output": True},
    # the output convolution's initial weights at PyTorch's default scale (invrim's before 2026-12-04,
    # and torch-rim's), against Hourglass's default output_scale=0.1
    "output-scale-1": {"backbone": {"output_scale": 1.0}},
    "zero-out-no-std": {"zero_output": True, "rim": {"standardize_score": False}},
    "zero-out-lr3e-3": {"zero_output": True, "fit": {"learning_rate": 3e-3}},
    "nf16": {"backbone": {"nf": 16}},
    "bf16": {"rim": {"precision": "bf16"}},           # the backbone under bf16 autocast (#19)
    "batch4": {"fit": {"batch_size": 4}},
    "batch8": {"fit": {"batch_size": 8}},
    "nf16-batch4": {"backbone": {"nf": 16}, "fit": {"batch_size": 4}},
    "rimcell32": {"backbone_class": "RIMCell", "backbone": {"hidden_channels": 32}},
    "rimcell32-batch4": {"backbone_class": "RIMCell", "backbone": {"hidden_channels": 32}, "fit": {"batch_size": 4}},
    "torch-rim-batch4": {"fit": {"batch_size": 4}},
    "rimcell32-output-scale-0.1": {"backbone_class": "RIMCell", "backbone": {"hidden_channels": 32, "output_scale": 0.1}},
    "rimcell32-output-scale-1": {"backbone_class": "RIMCell", "backbone": {"hidden_channels": 32, "output_scale": 1.0}},
    "unet16-output-scale-0.1": {"backbone_class": "UNet", "backbone": {"nf": 16, "output_scale": 0.1}},
    "unet16-output-scale-1": {"backbone_class": "UNet", "backbone": {"nf": 16, "output_scale": 1.0}},
    "rimcell32-unshared": {"backbone_class": "RIMCell", "backbone": {"hidden_channels": 32, "steps": "T"}},
    "rimcell32-step-size": {"backbone_class": "RIMCell", "backbone": {"hidden_channels": 32, "learned_step_size": True}},
    "sum-loss": {"loss_scale": "sum"},
    "seed-gru-sum": {"init": "seed_gru", "loss_scale": "sum"},
    "gru-zero-bias-sum": {"init": "gru_zero_bias", "loss_scale": "sum"},
    # Adam's second-moment memory: 0.999 remembers the untrained network's large first gradients for
    # ~1000 steps, which shrinks every later step (#17's early gap on the seed pattern)
    "beta2-0.99": {"fit": {"betas": (0.9, 0.99)}},
    "beta2-0.9": {"fit": {"betas": (0.9, 0.9)}},
    "clip-always": {"fit": {"clip": 1e-3}},
    # every gradient scaled to unit norm before Adam (what clipping at 1 does to torch-rim's summed loss)
    "normalise": {"fit": {"normalise": True}},
    "sum-loss-batch4": {"loss_scale": "sum", "fit": {"batch_size": 4}},
    "no-clip-batch4": {"fit": {"batch_size": 4, "clip": 0.0}},
    "gru-zero-bias-batch4": {"init": "gru_zero_bias", "fit": {"batch_size": 4}},
    "seed-gru-batch4": {"init": "seed_gru", "fit": {"batch_size": 4}},
    "seed-all-batch4": {"init": "seed_gru", "rim": {"standardize_score": False, "loss_weights": "uniform"},
                        "fit": {"batch_size": 4}},
    "seed-settings-batch4": {"rim": {"standardize_score": False, "loss_weights": "uniform"}, "fit": {"batch_size": 4}},
    "uniform-batch4": {"rim": {"loss_weights": "uniform"}, "fit": {"batch_size": 4}},
    "no-std-batch4": {"rim": {"standardize_score": False}, "fit": {"batch_size": 4}},
    "zero-out-nf16": {"zero_output": True, "backbone": {"nf": 16}},
    # the late-training spikes (#17): a cosine decay of the learning rate over the run's budget
    # (max_seconds when given, else steps), or the test error of an exponential moving average
    "cosine": {"fit": {"scheduler": "cosine"}},
    # start from a few CG iterations of Tikhonov (CG-SENSE for MRI), damping chosen on 32 training samples
    "tikhonov-start": {"rim": {"initialization_method": "tikhonov"}},
    "ema999": {"fit": {"ema_decay": 0.999}},
    "ema99": {"fit": {"ema_decay": 0.99}},
}


# ----------------------------------------------------------------------------- the problems
def _problem(name: str, quick: bool):
    """A dict: train(batch, generator) -> (x, y, params); test (x, y, params); score_fn(x, y, **p);
    approximate_inverse(y, **p) or None; invrim Problem or None; channels; shape; baselines
    {name: estimate}; metric(estimate, truth) -> per-sample MSE; rim settings forced for the problem."""
    import torch
    import torch.nn.functional as F

    n_test = 32 if quick else 128
    g = torch.Generator().manual_seed(1234)
    if name == "grf":
        from invrim import Gaussian, Problem
        from invrim.physics.blur import Blur, gaussian_psf
        N, sigma, power, psf_sigma = 32, 0.1, 3.0, 1.5
        k = torch.sqrt(torch.fft.fftfreq(N, dtype=torch.float64)[:, None] ** 2
                       + torch.fft.rfftfreq(N, dtype=torch.float64)[None, :] ** 2)
        amp = torch.where(k > 0, k.clamp_min(1e-12) ** (-power / 2), torch.zeros_like(k))
        amp = amp / math.sqrt(float((amp ** 2).sum() * 2) / N ** 2)       # pixel variance ≈ 1

        def fields(n, gen):
            white = torch.randn(n, 1, N, N, generator=gen, dtype=torch.float64)
            return torch.fft.irfft2(torch.fft.rfft2(white) * amp, s=(N, N)).float()

        psf = gaussian_psf(15, psf_sigma)
        problem = Problem(Blur(psf, boundary="periodic"), Gaussian(sigma))
        full = torch.zeros(N, N, dtype=torch.float64)
        full[:15, :15] = psf.double()
        H = torch.fft.rfft2(torch.roll(full, (-7, -7), (0, 1)))
        S = amp ** 2 * N * N                                     # E|rfft2(x)|² per mode
        wiener = H.conj() * S / (H.abs() ** 2 * S + sigma ** 2 * N * N)

        def simulate(x, gen):
            return problem.forward_model(x) + sigma * torch.randn(x.shape, generator=gen)

        x_test = fields(n_test, g)
        y_test = simulate(x_test, g)
        baselines = {"Wiener (exact posterior mean)":
                     torch.fft.irfft2(torch.fft.rfft2(y_test.double()) * wiener, s=(N, N)).float(),
                     "pseudo-inverse (adjoint)": problem.approximate_inverse(y_test)}

        def train(b, gen):
            x = fields(b, gen)
            return x, simulate(x, gen), {}
        return dict(train=train, test=(x_test, y_test, {}), problem=problem, channels=1, shape=(N, N),
                    baselines=baselines, reference="Wiener (exact posterior mean)", rim={})

    if name in ("seed", "sr"):
        from invrim.data.generators import RandomEllipses
        N = 32
        gen_x = RandomEllipses(shape=[N, N])
        if name == "seed":
            from invrim.physics.blur import gaussian_psf
            sigma = 0.05
            psf = gaussian_psf(7, 1.5).view(1, 1, 7, 7)

            def A(x):
                return F.conv2d(x, psf, padding=3)

            def score_fn(x, y):                  # what a torch-rim user writes
                return F.conv_transpose2d(y - A(x), psf, padding=3) / sigma ** 2

            def simulate(x, gen):
                return A(x) + sigma * torch.randn(x.shape, generator=gen)
            x_test = gen_x(n_test, generator=g)
            y_test = simulate(x_test, g)
            baselines = {"observation": y_test,
                         "Tikhonov-CG (λ tuned)": _tikhonov(A, lambda r: F.conv_transpose2d(r, psf, padding=3),
                                                            y_test, x_test, sigma)}

            def train(b, gen):
                x = gen_x(b, generator=gen)
                return x, simulate(x, gen), {}
            return dict(train=train, test=(x_test, y_test, {}), problem=None, score_fn=score_fn,
                        channels=1, shape=(N, N), baselines=baselines, reference="Tikhonov-CG (λ tuned)",
                        rim={"score_preprocessing_method": "arcsinh", "initialization_method": "zeros", "T": 6})
        from invrim import Gaussian, Problem
        from invrim.physics.super_resolution import SuperResolution
        sigma = 0.02
        problem = Problem(SuperResolution(2), Gaussian(sigma))
        op = problem.forward_model

        def simulate(x, gen):
            y = op(x)
            return y + sigma * torch.randn(y.shape, generator=gen)
        x_test = gen_x(n_test, generator=g)
        y_test = simulate(x_test, g)
        baselines = {"pseudo-inverse (replication)": problem.approximate_inverse(y_test),
                     "bicubic": F.interpolate(y_test, scale_factor=2, mode="bicubic", align_corners=False),
                     "Tikhonov-CG (λ tuned)": _tikhonov(op, op.adjoint, y_test, x_test, sigma)}

        def train(b, gen):
            x = gen_x(b, generator=gen)
            return x, simulate(x, gen), {}
        return dict(train=train, test=(x_test, y_test, {}), problem=problem, channels=1, shape=(N, N),
                    baselines=baselines, reference="bicubic", rim={})

    if name == "mri":
        from invrim import Gaussian, Problem
        from invrim_mri.coils import gaussian_coil_maps
        from invrim_mri.masks import random_mask
        from invrim_mri.phantoms import random_ellipses
        from invrim_mri.physics import MultiCoilMRI
        N, coils, sigma = 32, 4, 0.01
        op = MultiCoilMRI()
        problem = Problem(op, Gaussian(sigma))

        def sample(n, gen):
            x = random_ellipses(n, N, generator=gen)
            p = {"mask": random_mask(n, N, 4.0, 0.08, generator=gen),
                 "sens": gaussian_coil_maps(coils, N, N, batch=n, generator=gen)}
            y = op(x, **p)
            y = (y + sigma * torch.randn(y.shape, dtype=y.dtype, generator=gen)) * p["mask"][:, None, None, :]
            return x, y, p
        x_test, y_test, p_test = sample(n_test, g)
        A = lambda v: op(v, **p_test)
        At = lambda r: op.adjoint(r, **p_test)
        baselines = {"zero-filled SENSE": problem.approximate_inverse(y_test, **p_test),
                     "CG-SENSE Tikhonov (λ tuned)": _tikhonov(A, At, y_test, x_test, sigma, magnitude=True)}
        return dict(train=sample, test=(x_test, y_test, p_test), problem=problem, channels=2, shape=(N, N),
                    baselines=baselines, reference="CG-SENSE Tikhonov (λ tuned)", rim={}, magnitude=True)

    if name == "ct":
        from invrim import Gaussian, Problem
        from invrim.data.generators import RandomEllipses
        from invrim_ct.physics import ParallelBeamCT
        N, sigma = 32, 0.2
        op = ParallelBeamCT(N, n_angles=16)
        problem = Problem(op, Gaussian(sigma))
        gen_x = RandomEllipses(shape=[N, N])
        yy, xx = torch.meshgrid(torch.arange(N) - (N - 1) / 2, torch.arange(N) - (N - 1) / 2, indexing="ij")
        circle = ((yy ** 2 + xx ** 2) <= (N / 2) ** 2).float()

        def sample(n, gen):
            x = gen_x(n, generator=gen) * circle
            y = op(x)
            return x, y + sigma * torch.randn(y.shape, generator=gen), {}
        x_test, y_test, _ = sample(n_test, g)
        baselines = {"FBP (ramp)": problem.approximate_inverse(y_test),
                     "Tikhonov-CG (λ tuned)": _tikhonov(op, op.adjoint, y_test, x_test, sigma)}
        return dict(train=sample, test=(x_test, y_test, {}), problem=problem, channels=1, shape=(N, N),
                    baselines=baselines, reference="FBP (ramp)", rim={})
    raise SystemExit(f"unknown problem {name!r}")


def _tikhonov(A: Callable, At: Callable, y, x_true, sigma: float, iterations: int = 100, magnitude: bool = False):
    """argmin |y − A x|²/σ² + λ|x|² by conjugate gradients, λ picked on the test truth itself from a
    log grid (an oracle choice: the baseline at its very best)."""
    from invrim.physics import conjugate_gradient

    b = At(y)
    best, best_err = None, math.inf
    for lam in [10.0 ** e for e in range(-2, 5)]:
        x = conjugate_gradient(lambda v: At(A(v)) + lam * sigma ** 2 * v, b, iterations=iterations, tol=1e-7)
        err = float(_mse(x, x_true, magnitude).mean())
        if err < best_err:
            best, best_err = x, err
    return best


def _mse(estimate, truth, magnitude: bool = False):
    """Per-sample MSE; of the magnitude image for complex images held as two channels."""
    if magnitude:
        estimate = estimate.pow(2).sum(1, keepdim=True).sqrt()
        truth = truth.pow(2).sum(1, keepdim=True).sqrt()
    return (estimate - truth).pow(2).flatten(1).mean(1)


# ----------------------------------------------------------------------------- one run
def _build(problem: dict, variant: str, T: int, seed: int):
    """The RIM of one library / variant for the problem, with torch's seed fixed before the backbone."""
    import torch

    rim_options = {"T": T, **problem["rim"]}
    torch.manual_seed(seed)
    C, shape = problem["channels"], problem["shape"]
    score_fn = problem.get("score_fn")
    if score_fn is None:
        prob = problem["problem"]
        score_fn = prob.score
    pinv = problem["problem"].approximate_inverse if problem.get("problem") is not None else None
    if variant.startswith("torch-rim"):
        from rim import RIM as TorchRIM, Hourglass as TorchHourglass
        init = rim_options.get("initialization_method")
        if init is None:     # torch-rim's approximate_inverse_fn(y) gets no per-sample parameters (masks)
            init = "approximate_inverse" if pinv is not None and not problem["test"][2] else "zeros"
        net = TorchHourglass(C, dimensions=len(shape))
        rim = TorchRIM(shape, net, score_fn=score_fn, T=T, initialization_method=init,
                       approximate_inverse_fn=pinv if init == "approximate_inverse" else None,
                       score_preprocessing_method=rim_options.get("score_preprocessing_method", "identity"),
                       device="cpu")
        return rim, VARIANTS.get(variant, {}).get("fit", {})
    import invrim.backbones
    from invrim import RIM
    from invrim.backbones.layers import ConvGRU
    spec = VARIANTS[variant]
    options_T = {**rim_options, **spec.get("rim", {})}["T"]
    backbone = getattr(invrim.backbones, spec.get("backbone_class", "Hourglass"))
    net = backbone(C, dimensions=len(shape), **{k: options_T if v == "T" else v
                                                for k, v in spec.get("backbone", {}).items()})
    if spec.get("init") == "gru_zero_bias":          # torch-rim's GRU gates start with zero biases
        for m in net.modules():
            if isinstance(m, ConvGRU):
                torch.nn.init.zeros_(m.w.bias)
    if spec.get("init") == "seed_gru":               # torch-rim's GRU block: the first GRU's state never kept
        block = net.gru_layer

        def seed_forward(x, h, block=block):
            h1, h2 = h.chunk(2, dim=1)
            new1 = block.gru1(x, torch.zeros_like(h1))
            h2 = block.gru2(torch.tanh(block.hidden_layer(new1)), h2)
            return block.reshape_layer(h2), torch.cat([h1, h2], dim=1)
        block.forward = seed_forward
    if spec.get("zero_output"):
        torch.nn.init.zeros_(net.output_layer.weight)
        torch.nn.init.zeros_(net.output_layer.bias)
    options = {**rim_options, **spec.get("rim", {})}
    if problem.get("problem") is not None and problem.get("score_fn") is None:
        rim = RIM(shape, net, problem=problem["problem"], **options)
    else:
        rim = RIM(shape, net, score_fn=score_fn, **options)
    return rim, {**spec.get("fit", {}), **({"loss_scale": spec["loss_scale"]} if "loss_scale" in spec else {})}


def run_one(problem_name: str, variant: str, seed: int, steps: int, evals: int, batch: int, T: int,
            quick: bool, max_seconds: float) -> dict[str, Any]:
    """Train one RIM and return its curve: [(step, train_seconds, test MSE per sample mean)]."""
    import torch
    from invrim.config import FitConfig
    from invrim.training.ema import EMA

    torch.set_num_threads(1)
    problem = _problem(problem_name, quick)
    rim, fit = _build(problem, variant, T, seed)
    if getattr(rim, "chooses_tikhonov_start", False):     # as RIM.fit does ("auto" on a linear problem)
        xs, ys, ps = problem["train"](32, torch.Generator().manual_seed(99))     # not the training stream
        rim.choose_initialization([(ys, xs, ps)])
    defaults = FitConfig()
    lr = fit.get("learning_rate", defaults.learning_rate)
    clip = fit.get("clip", defaults.clip)
    batch = fit.get("batch_size", batch)
    opt = torch.optim.Adam(rim.parameters(), lr=lr, betas=fit.get("betas", (0.9, 0.999)))
    x_test, y_test, p_test = problem["test"]
    magnitude = problem.get("magnitude", False)
    data_gen = torch.Generator().manual_seed(10_000 + seed)

    def test_mse() -> float:
        with torch.no_grad():
            out = torch.cat([rim.predict(y_test[i:i + 64], **{k: v[i:i + 64] for k, v in p_test.items()})
                             for i in range(0, y_test.shape[0], 64)])
        return float(_mse(out, x_test, magnitude).mean())

    ema = EMA(rim.model, fit["ema_decay"]) if fit.get("ema_decay") else None
    cosine = fit.get("scheduler") == "cosine"

    def evaluate() -> float:
        if ema is None:
            return test_mse()
        with ema.average_parameters():
            return test_mse()

    points = sorted({max(1, round(steps * (i / evals) ** 2)) for i in range(1, evals + 1)} | {steps})
    curve = [(0, 0.0, test_mse())]
    trained = 0.0
    for step in range(1, steps + 1):
        x, y, p = problem["train"](batch, data_gen)
        start = time.perf_counter()
        if cosine:                                     # over the budget: seconds when bounded, else steps
            done = trained / max_seconds if math.isfinite(max_seconds) else (step - 1) / steps
            for group in opt.param_groups:
                group["lr"] = 0.5 * lr * (1 + math.cos(math.pi * min(done, 1.0)))
        opt.zero_grad(set_to_none=True)
        loss = rim.loss_fn(y, x, **p)
        if fit.get("loss_scale") == "sum":             # torch-rim's scale: summed over pixels and steps
            loss = loss * (x[0].numel() * T)
        loss.backward()
        if fit.get("normalise"):
            norm = torch.nn.utils.get_total_norm([q.grad for q in rim.parameters() if q.grad is not None])
            for q in rim.parameters():
                if q.grad is not None:
                    q.grad.div_(norm + 1e-12)
        elif clip:
            torch.nn.utils.clip_grad_norm_(rim.parameters(), clip)
        opt.step()
        if ema is not None:
            ema.update()
        trained += time.perf_counter() - start
        if step in points or trained > max_seconds:
            curve.append((step, trained, evaluate()))
        if trained > max_seconds:
            break
    baselines = {k: float(_mse(v, x_test, magnitude).mean()) for k, v in problem["baselines"].items()}
    return {"problem": problem_name, "variant": variant, "seed": seed, "batch": batch, "T": T, "lr": lr,
            "curve": curve, "baselines": baselines, "reference": problem["reference"],
            "parameters": sum(p.numel() for p in rim.parameters())}


# ----------------------------------------------------------------------------- reporting
def _median(values):
    values = sorted(values)
    n = len(values)
    return values[n // 2] if n % 2 else 0.5 * (values[n // 2 - 1] + values[n // 2])


def _psnr_gain(mse: float, reference: float) -> float:
    return 10 * math.log10(reference / mse)


def report(results: list[dict[str, Any]]) -> str:
    """Markdown tables: per problem, the median over seeds of the test MSE relative to the reference
    baseline at each evaluation step, and the final dB over each baseline."""
    lines = []
    for problem in dict.fromkeys(r["problem"] for r in results):
        rs = [r for r in results if r["problem"] == problem]
        ref = rs[0]["reference"]
        base = rs[0]["baselines"]
        variants = list(dict.fromkeys(r["variant"] for r in rs))
        steps = sorted({pt[0] for r in rs for pt in r["curve"]})
        lines += [f"### {problem}", "",
                  "Baselines (test MSE): " + ", ".join(f"{k} {v:.4g}" for k, v in base.items())
                  + f". Reference: **{ref}**.", "",
                  "Test MSE / reference MSE, median over seeds (seconds of training in brackets):", "",
                  "| step | " + " | ".join(variants) + " |", "|---:|" + "---:|" * len(variants)]
        for s in steps:
            cells = []
            for v in variants:
                pts = [pt for r in rs if r["variant"] == v for pt in r["curve"] if pt[0] == s]
                if pts:
                    cells.append(f"{_median([p[2] for p in pts]) / base[ref]:.3f} ({_median([p[1] for p in pts]):.0f} s)")
                else:
                    cells.append("")
            lines.append(f"| {s} | " + " | ".join(cells) + " |")
        lines += ["", "Final: median test MSE and PSNR gain over each baseline (dB, median over seeds):", "",
                  "| variant | seeds | steps | s | MSE / ref | " + " | ".join(f"dB vs {k}" for k in base) + " |",
                  "|---|---:|---:|---:|---:|" + "---:|" * len(base)]
        for v in variants:
            finals = [r["curve"][-1] for r in rs if r["variant"] == v]
            mse = _median([f[2] for f in finals])
            lines.append(f"| {v} | {len(finals)} | {_median([f[0] for f in finals]):.0f} | "
                         f"{_median([f[1] for f in finals]):.0f} | {mse / base[ref]:.3f} | "
                         + " | ".join(f"{_psnr_gain(mse, b):+.2f}" for b in base.values()) + " |")
        lines.append("")
    return "\n".join(lines)


def figure(results: list[dict[str, Any]], path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    problems = list(dict.fromkeys(r["problem"] for r in results))
    fig, axes = plt.subplots(2, len(problems), figsize=(4 * len(problems), 6.5), squeeze=False)
    for j, problem in enumerate(problems):
        rs = [r for r in results if r["problem"] == problem]
        ref = rs[0]["baselines"][rs[0]["reference"]]
        for v in dict.fromkeys(r["variant"] for r in rs):
            for r in (r for r in rs if r["variant"] == v):
                steps = [p[0] for p in r["curve"][1:]]
                secs = [p[1] for p in r["curve"][1:]]
                err = [p[2] / ref for p in r["curve"][1:]]
                label = v if r["seed"] == min(q["seed"] for q in rs if q["variant"] == v) else None
                color = {"torch-rim": "tab:red", "invrim": "tab:blue"}.get(v)
                axes[0, j].plot(steps, err, alpha=0.7, label=label, color=color)
                axes[1, j].plot(secs, err, alpha=0.7, label=label, color=color)
        for i, xlabel in enumerate(("optimizer steps", "training seconds (1 thread)")):
            ax = axes[i, j]
            ax.axhline(1.0, color="k", lw=0.8, ls="--")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_xlabel(xlabel)
            ax.set_ylabel("test MSE / reference baseline's" if j == 0 else "")
            ax.set_title(f"{problem} (reference: {rs[0]['reference']})" if i == 0 else "", fontsize=9)
        axes[0, j].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", nargs="+", default=["grf", "seed", "sr", "mri", "ct"])
    parser.add_argument("--variants", nargs="+", default=["torch-rim", "invrim"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=300, help="optimizer steps per run (default 300)")
    parser.add_argument("--max-seconds", type=float, default=math.inf, help="stop a run after this much training")
    parser.add_argument("--evals", type=int, default=8, help="evaluation points (quadratically spaced)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--T", type=int, default=6)
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time, one thread each")
    parser.add_argument("--quick", action="store_true", help="smoke run: 20 steps, one seed, small test set")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--report", nargs="+", metavar="JSON", help="only print tables of saved results")
    parser.add_argument("--figure", help="save the curves (matplotlib) here")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.one:                                          # the worker: one run, JSON on stdout
        problem, variant, seed = args.one.split(",")
        print(json.dumps(run_one(problem, variant, int(seed), args.steps, args.evals, args.batch, args.T,
                                 args.quick, args.max_seconds)))
        return
    if args.report:
        results = [r for path in args.report for r in json.loads(Path(path).read_text())["results"]]
    else:
        if args.quick:
            args.steps, args.seeds, args.evals = 20, args.seeds[:1], 3
        info = machine()
        print(f"# {info.get('cpu')} ({info.get('flags')}); torch {info['torch']}, torch-rim {info['torch-rim']}")
        jobs = [(p, v, s) for p in args.problems for s in args.seeds for v in args.variants]

        def launch(job):
            cmd = [sys.executable, __file__, "--one", ",".join(map(str, job)), "--steps", str(args.steps),
                   "--evals", str(args.evals), "--batch", str(args.batch), "--T", str(args.T),
                   "--max-seconds", str(args.max_seconds)] + (["--quick"] if args.quick else [])
            env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
            done = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if done.returncode:
                raise SystemExit(f"run {job} failed:\n{done.stderr[-3000:]}")
            result = json.loads(done.stdout.strip().splitlines()[-1])
            last = result["curve"][-1]
            print(f"  {job[0]:5s} {job[1]:22s} seed {job[2]}: step {last[0]}, {last[1]:.0f} s, "
                  f"MSE/ref {last[2] / result['baselines'][result['reference']]:.3f}", flush=True)
            return result
        with ThreadPoolExecutor(args.jobs) as pool:
            results = list(pool.map(launch, jobs))
        if args.json:
            Path(args.json).write_text(json.dumps({"machine": info, "arguments": vars(args),
                                                   "results": results}, indent=1))
    print(report(results))
    if args.figure:
        figure(results, args.figure)


if __name__ == "__main__":
    main()
