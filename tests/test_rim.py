"""The RIM engine: API of the seed, sign convention, score paths, preprocessing, loss, memory option."""
from __future__ import annotations

import math

import pytest
import torch
from torch.func import vmap

from invrim import RIM, Gaussian, Hourglass, MLPGRU, Problem, UNet
from invrim.backbones.base import Backbone
from invrim.physics import Blur, Identity
from invrim.physics.blur import gaussian_psf
from invrim.rim import trajectory_weights


def small_hourglass(channels=1, dimensions=2, **kw):
    return Hourglass(channels, dimensions=dimensions, nf=8, ch_mult=(2,), hidden_units=8, num_layers=1, **kw)


def blur_problem(sigma=0.1):
    return Problem(Blur(gaussian_psf(5, 1.0)), Gaussian(sigma=sigma))


# ---- the seed's README example ------------------------------------------------------------------
class VectorDataset(torch.utils.data.Dataset):
    """A linear inverse problem y = A x + noise with per-sample A and Σ, as in torch-rim's README."""

    def __init__(self, n, C=4, M=6, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, C, generator=g)
        self.A = torch.randn(n, M, C, generator=g) / math.sqrt(C)
        self.Sigma = torch.diag_embed(torch.full((n, M), 0.05 ** 2))
        self.y = torch.einsum("nmc,nc->nm", self.A, self.x) + 0.05 * torch.randn(n, M, generator=g)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.y[i], self.x[i], self.A[i], self.Sigma[i]


def test_seed_readme_example_runs(tmp_path):
    @vmap
    def score_fn(x, y, A, Sigma):  # must respect the signature (x, y, *args)
        return (y - A @ x) @ Sigma.inverse() @ A

    @vmap
    def energy_fn(x, y, A, Sigma):
        return (y - A @ x) @ Sigma.inverse() @ (y - A @ x)

    dimensions = ()
    C = 4
    dataset = VectorDataset(64, C=C)
    net = Hourglass(C, dimensions=len(dimensions))
    rim = RIM(dimensions, net, score_fn=score_fn)
    rim_e = RIM(dimensions, Hourglass(C, dimensions=0), energy_fn=energy_fn)
    y, x, A, Sigma = dataset[:8]
    # energy = (y-Ax)ᵀΣ⁻¹(y-Ax) is twice the negative log-likelihood: its score is twice score_fn's
    x0 = torch.randn_like(x)
    torch.testing.assert_close(rim_e.model_score(x0, y, A, Sigma), 2 * rim.model_score(x0, y, A, Sigma))

    checkpoints_directory = tmp_path / "run"
    rim.fit(dataset, epochs=2, learning_rate=1e-4, checkpoints_directory=checkpoints_directory,
            progress=False)
    x_hat = rim.predict(y, A, Sigma)
    assert x_hat.shape == x.shape and torch.isfinite(x_hat).all()
    reloaded = RIM(dimensions, checkpoints_directory=checkpoints_directory, score_fn=score_fn)
    torch.testing.assert_close(reloaded.predict(y, A, Sigma), x_hat, rtol=0, atol=0)


def test_unet_is_importable_and_runs():
    from invrim import Unet
    assert Unet is UNet
    rim = RIM((12, 10), UNet(1, dimensions=2, nf=8, ch_mult=(1, 2)), problem=blur_problem(), T=2)
    out = rim(torch.rand(2, 1, 12, 10))
    assert len(out) == 2 and out[-1].shape == (2, 1, 12, 10)


# ---- sign convention and score paths --------------------------------------------------------------
def test_score_is_minus_gradient_of_energy():
    problem = blur_problem()
    x, y = torch.rand(3, 1, 12, 12, dtype=torch.float64), torch.rand(3, 1, 12, 12, dtype=torch.float64)
    xr = x.clone().requires_grad_()
    problem.energy(xr, y).sum().backward()
    assert problem.analytic_score
    torch.testing.assert_close(problem.score(x, y), -xr.grad)
    torch.testing.assert_close(problem.autograd_score(x, y), -xr.grad)


def test_score_fn_energy_fn_and_problem_agree():
    problem = blur_problem(sigma=0.5)
    x = torch.rand(2, 1, 10, 10)
    y = problem.simulate(torch.rand(2, 1, 10, 10), generator=torch.Generator().manual_seed(0))
    by_problem = RIM((10, 10), small_hourglass(), problem=problem)
    by_energy = RIM((10, 10), small_hourglass(), energy_fn=lambda x, y: problem.energy(x, y))
    by_score = RIM((10, 10), small_hourglass(), score_fn=lambda x, y: problem.score(x, y))
    s = by_problem.model_score(x, y)
    torch.testing.assert_close(by_energy.model_score(x, y), s, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(by_score.model_score(x, y), s)


@pytest.mark.parametrize("source", ["score_fn", "energy_fn", "problem"])
def test_link_function_applies_the_chain_rule(source):
    problem = blur_problem(sigma=0.5)
    kw = {"score_fn": dict(score_fn=lambda x, y: problem.score(x, y)),
          "energy_fn": dict(energy_fn=lambda x, y: problem.energy(x, y)),
          "problem": dict(problem=problem)}[source]
    rim = RIM((8, 8), small_hourglass(), link_function="exp", **kw)
    x_model = torch.randn(2, 1, 8, 8, dtype=torch.float64)
    y = torch.rand(2, 1, 8, 8, dtype=torch.float64)
    expected = torch.exp(x_model) * problem.score(torch.exp(x_model), y)   # d link/dx * score
    torch.testing.assert_close(rim.model_score(x_model, y), expected)


def test_custom_link_needs_both_functions_and_predict_is_physical():
    with pytest.raises(ValueError, match="together"):
        RIM((8, 8), small_hourglass(), problem=blur_problem(), link_function=torch.exp)
    rim = RIM((8, 8), small_hourglass(), problem=blur_problem(), link_function=torch.exp,
              inverse_link_function=torch.log, T=2)
    y = torch.rand(2, 1, 8, 8)
    assert (rim.predict(y) > 0).all()
    torch.testing.assert_close(rim.predict(y), torch.exp(rim(y)[-1].detach()))


# ---- initialisation -----------------------------------------------------------------------------
def test_approximate_inverse_initialisation_uses_the_pseudo_inverse():
    problem = Problem(Identity(), Gaussian(0.1))
    y = torch.rand(2, 1, 8, 8)
    rim = RIM((8, 8), small_hourglass(), problem=problem, initialization_method="approximate_inverse")
    x0, _ = rim.initialization(y)
    torch.testing.assert_close(x0, y)
    seen = {}

    def approx(y_, scale):
        seen["scale"] = scale
        return y_ * scale
    rim = RIM((8, 8), small_hourglass(), score_fn=lambda x, y, s: y - x,
              initialization_method="approximate_inverse", approximate_inverse_fn=approx)
    x0, _ = rim.initialization(y, 2.0)
    torch.testing.assert_close(x0, 2 * y)
    assert seen["scale"] == 2.0
    # torch-rim's one-argument form still works
    rim = RIM((8, 8), small_hourglass(), score_fn=lambda x, y, s: y - x,
              initialization_method="approximate_inverse", approximate_inverse_fn=lambda y_: 3 * y_)
    torch.testing.assert_close(rim.initialization(y, 2.0)[0], 3 * y)


class RecordingBackbone(Backbone):
    """A backbone that records the shapes it is called with."""
    name = "recording"

    def __init__(self, channels=1, dimensions=1):
        super().__init__()
        self.channels, self.dimensions = channels, dimensions
        self.lin = torch.nn.Conv1d(2 * channels, channels, 1)
        self.calls = []

    def init_hidden(self, x):
        return torch.zeros(x.shape[0], 3, *x.shape[2:], dtype=x.dtype, device=x.device)

    def forward(self, x, score, h):
        self.calls.append((tuple(x.shape), tuple(score.shape), tuple(h.shape)))
        return self.lin(torch.cat([x, score], 1)), h + 1

    def config(self):
        return {"channels": self.channels, "dimensions": self.dimensions}


def test_model_initialisation_passes_arguments_in_order():
    """Seed defect: 'model' initialisation called model(x, score, observation, h)."""
    net = RecordingBackbone()
    A = torch.randn(5, 16)            # y has 5 entries while x has 16: any mix-up breaks shapes
    rim = RIM((16,), net, score_fn=lambda x, y: ((y - x[:, 0] @ A.T) @ A)[:, None],
              initialization_method="model", T=3)
    y = torch.randn(2, 5)
    out = rim(y)
    assert len(out) == 3
    assert net.calls[0] == ((2, 1, 16), (2, 1, 16), (2, 3, 16))   # the initialisation step
    assert all(c == net.calls[0] for c in net.calls)


# ---- score preprocessing --------------------------------------------------------------------------
def preprocess(rim, scores):
    state = rim._init_state(scores[0])
    out = []
    for t, s in enumerate(scores):
        p, state = rim._preprocess(s, state, t)
        out.append(p)
    return out


def test_rmsprop_updates_its_second_moment():
    """Seed defect: RMSProp never updated its variance, so it divided the score by epsilon."""
    rim = RIM((4,), RecordingBackbone(dimensions=1), score_fn=lambda x, y: y - x,
              score_preprocessing_method="rmsprop")
    s = torch.tensor([[[3.0, -0.5, 2.0, 1e-3]]])
    out = preprocess(rim, [s, s, s])
    for o in out:   # with a constant score the bias-corrected RMS is |s|: output = sign(s)
        torch.testing.assert_close(o, torch.sign(s), rtol=1e-3, atol=1e-3)


def test_adam_and_arcsinh_preprocessing():
    rim = RIM((4,), RecordingBackbone(dimensions=1), score_fn=lambda x, y: y - x,
              score_preprocessing_method="ADAM", standardize_score=False)
    s = torch.tensor([[[3.0, -0.5, 2.0, 1e-3]]])
    for o in preprocess(rim, [s, s]):
        torch.testing.assert_close(o, torch.sign(s), rtol=1e-3, atol=1e-3)
    rim = RIM((4,), RecordingBackbone(dimensions=1), score_fn=lambda x, y: y - x,
              score_preprocessing_method="arcsinh", standardize_score=False)
    torch.testing.assert_close(preprocess(rim, [s])[0], torch.arcsinh(s))


def test_standardize_score_is_per_sample():
    rim = RIM((8,), RecordingBackbone(dimensions=1), score_fn=lambda x, y: y - x, standardize_score=True)
    s = torch.randn(3, 1, 8) * torch.tensor([1.0, 100.0, 1e-3]).view(3, 1, 1)
    out = preprocess(rim, [s])[0]
    torch.testing.assert_close(out.flatten(1).std(1, unbiased=False), torch.ones(3))
    torch.testing.assert_close(out, s / s.flatten(1).std(1, unbiased=False).view(3, 1, 1))


# ---- loss ---------------------------------------------------------------------------------------
def test_trajectory_weights():
    for kind in ("uniform", "linear", "quadratic", "log", "last"):
        w = trajectory_weights(kind, 7)
        assert w.shape == (7,) and abs(float(w.sum()) - 1) < 1e-12 and (w >= 0).all()
    torch.testing.assert_close(trajectory_weights("linear", 3), torch.tensor([1, 2, 3.0], dtype=torch.float64) / 6)
    torch.testing.assert_close(trajectory_weights([0, 1, 3], 3), torch.tensor([0, 0.25, 0.75], dtype=torch.float64))
    assert trajectory_weights("last", 4).tolist() == [0, 0, 0, 1]
    with pytest.raises(ValueError, match="T=3"):
        trajectory_weights([1, 2], 3)
    with pytest.raises(ValueError, match="unknown loss_weights"):
        trajectory_weights("cubic", 3)


class ConstantStep(Backbone):
    """dx = c everywhere: the trajectory error is known in closed form."""
    name = "constant"

    def __init__(self, channels=1, dimensions=2):
        super().__init__()
        self.channels, self.dimensions = channels, dimensions
        self.c = torch.nn.Parameter(torch.tensor(0.5))

    def init_hidden(self, x):
        return x.new_zeros(1)

    def forward(self, x, score, h):
        return torch.ones_like(x) * self.c, h

    def config(self):
        return {"channels": self.channels, "dimensions": self.dimensions}


@pytest.mark.parametrize("size,T", [(8, 3), (64, 3), (8, 12)])
def test_loss_scale_does_not_depend_on_image_size_or_T(size, T):
    """Seed defect: the loss was a sum, so its scale grew with the image size and T."""
    rim = RIM((size, size), ConstantStep(), score_fn=lambda x, y: y - x, T=T, loss_weights="last")
    x_true = torch.full((4, 1, size, size), T * 0.5 + 1.0)   # every pixel off by exactly 1 at t = T
    loss = rim.loss_fn(torch.zeros(4, 1, size, size), x_true)
    torch.testing.assert_close(loss, torch.tensor(1.0))
    rim = RIM((size, size), ConstantStep(), score_fn=lambda x, y: y - x, T=T, loss_weights="uniform")
    x_true = torch.zeros(4, 1, size, size)                    # error (0.5 t)² at step t
    expected = sum((0.5 * t) ** 2 for t in range(1, T + 1)) / T
    torch.testing.assert_close(rim.loss_fn(x_true, x_true), torch.tensor(expected))


# ---- autograd options ---------------------------------------------------------------------------
def grads(rim, y, x):
    rim.model.zero_grad()
    rim.loss_fn(y, x).backward()
    return [p.grad.clone() for p in rim.model.parameters()]


@pytest.mark.parametrize("preprocessing", ["identity", "adam"])
@pytest.mark.parametrize("detach", [True, False])
def test_checkpointing_gives_the_same_gradients(preprocessing, detach):
    torch.manual_seed(0)
    net = small_hourglass()
    kw = dict(problem=blur_problem(), T=4, score_preprocessing_method=preprocessing, detach_score=detach)
    plain = RIM((12, 12), net, **kw)
    ckpt = RIM((12, 12), net, checkpointing=True, **kw)
    y, x = torch.rand(2, 1, 12, 12), torch.rand(2, 1, 12, 12)
    for a, b in zip(grads(plain, y, x), grads(ckpt, y, x)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(ckpt.predict(y), plain.predict(y))


def test_second_order_keeps_the_score_in_the_graph():
    torch.manual_seed(0)
    net = small_hourglass()
    y, x = torch.rand(2, 1, 12, 12), torch.rand(2, 1, 12, 12)
    first = grads(RIM((12, 12), net, problem=blur_problem(), T=3, initialization_method="zeros"), y, x)
    second = grads(RIM((12, 12), net, problem=blur_problem(), T=3, initialization_method="zeros",
                       detach_score=False), y, x)
    assert any(not torch.allclose(a, b) for a, b in zip(first, second))
    # energy_fn path too: the score built by torch.func is differentiable with respect to x
    problem = blur_problem()
    rim = RIM((12, 12), net, energy_fn=lambda x_, y_: problem.energy(x_, y_), T=3, detach_score=False)
    for a, b in zip(second, grads(rim, y, x)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_follows_input_dtype_and_works_without_spatial_axes():
    net = small_hourglass().double()
    rim = RIM((10, 9), net, problem=blur_problem(), T=2)
    out = rim.predict(torch.rand(2, 1, 10, 9, dtype=torch.float64))
    assert out.dtype == torch.float64 and out.shape == (2, 1, 10, 9)
    rim = RIM((), MLPGRU(3, hidden_units=16), score_fn=lambda x, y: y - x, T=3)
    assert rim.predict(torch.randn(5, 3)).shape == (5, 3)


@pytest.mark.parametrize("dims", [(17,), (11, 9), (5, 7, 6)])
def test_one_two_and_three_dimensional_odd_sizes(dims):
    net = Hourglass(1, dimensions=len(dims), nf=4, ch_mult=(2, 2), hidden_units=4, num_layers=1)
    rim = RIM(dims, net, score_fn=lambda x, y: y - x, T=2)
    y = torch.rand(2, 1, *dims)
    loss = rim.loss_fn(y, y)
    loss.backward()
    assert rim.predict(y).shape == (2, 1, *dims)


# ---- clear errors -------------------------------------------------------------------------------
def test_bad_arguments_raise_clear_errors(tmp_path):
    net = small_hourglass()
    with pytest.raises(ValueError, match="exactly one of score_fn, energy_fn or problem"):
        RIM((8, 8), net)
    with pytest.raises(ValueError, match="got score_fn, energy_fn"):
        RIM((8, 8), net, score_fn=lambda x, y: y, energy_fn=lambda x, y: y)
    with pytest.raises(TypeError, match=r"score_fn\(x, y, \*args\)"):
        RIM((8, 8), net, score_fn=lambda x: x)
    with pytest.raises(ValueError, match="unknown score_preprocessing_method 'adamw'"):
        RIM((8, 8), net, score_fn=lambda x, y: y, score_preprocessing_method="adamw")
    with pytest.raises(ValueError, match="unknown initialization_method 'ones'"):
        RIM((8, 8), net, score_fn=lambda x, y: y, initialization_method="ones")
    with pytest.raises(ValueError, match="needs approximate_inverse_fn"):
        RIM((8, 8), net, score_fn=lambda x, y: y, initialization_method="approximate_inverse")
    with pytest.raises(ValueError, match="T must be a positive integer"):
        RIM((8, 8), net, score_fn=lambda x, y: y, T=0)
    with pytest.raises(TypeError, match="unexpected argument"):
        RIM((8, 8), net, score_fn=lambda x, y: y, steps=3)
    with pytest.raises(ValueError, match="unknown link_function 'log'"):
        RIM((8, 8), net, score_fn=lambda x, y: y, link_function="log")
    with pytest.raises(ValueError, match="not an invrim run folder"):
        RIM((8, 8), checkpoints_directory=tmp_path, score_fn=lambda x, y: y)
    with pytest.raises(ValueError, match="does not exist"):
        RIM((8, 8), checkpoints_directory=tmp_path / "nope", score_fn=lambda x, y: y)
    with pytest.raises(ValueError, match="needs a backbone"):
        RIM((8, 8), score_fn=lambda x, y: y)
    rim = RIM((8, 8), net, score_fn=lambda x, y, A: y - x)
    with pytest.raises(TypeError, match="could not be called as score_fn"):
        rim(torch.rand(2, 1, 8, 8))
    rim = RIM((8, 8), net, score_fn=lambda x, y: y[:, :, :4])
    with pytest.raises(ValueError, match="score has shape"):
        rim(torch.rand(2, 1, 8, 8))
    rim = RIM((8, 8), net, score_fn=lambda x, y: y - x)
    with pytest.raises(ValueError, match="x_true has shape"):
        rim.loss_fn(torch.rand(2, 1, 8, 8), torch.rand(2, 1, 4, 4))


def test_unavailable_or_malformed_device_is_one_clear_line():
    from invrim import Hourglass
    for device, message in (("gpu9", "invalid device"), ("cuda", "CUDA is not available")):
        if device == "cuda" and torch.cuda.is_available():
            continue
        with pytest.raises(ValueError, match=message):
            RIM((8, 8), Hourglass(1, dimensions=2, nf=4, hidden_units=8), score_fn=lambda x, y: y - x,
                device=device)


def test_the_tikhonov_start_is_the_tikhonov_cg_solution_and_fit_chooses_its_damping():
    from invrim import Gaussian, Problem
    from invrim.backbones import Hourglass
    from invrim.baselines import choose_tikhonov
    from invrim.physics import Blur
    g = torch.Generator().manual_seed(0)
    problem = Problem(Blur(psf_sigma=1.5, boundary="periodic"), Gaussian(0.05))
    x = torch.rand(48, 1, 16, 16, generator=g)
    y = problem.simulate(x, generator=g)
    torch.manual_seed(0)
    rim = RIM((16, 16), Hourglass(channels=1, dimensions=2, nf=8, hidden_units=8), problem=problem, T=3,
              initialization_method="tikhonov", initialization_iterations=5)
    with pytest.raises(ValueError, match="has no damping yet"):
        rim.predict(y)
    history = rim.fit(list(zip(y, x)), epochs=3, batch_size=16, progress=False, seed=0)
    expected = choose_tikhonov(problem.forward_model, [(y[:32], x[:32], {})], iterations=5, tol=0.0)
    assert rim.settings.initialization_damping == pytest.approx(expected["damping"])
    assert rim.config()["rim"]["initialization_damping"] == pytest.approx(expected["damping"])   # saved
    x0, _ = rim.initialization(y)
    start = problem.forward_model.least_squares(y, damping=expected["damping"], prior_mean=expected["prior_mean"],
                                                iterations=5, tol=0.0)
    torch.testing.assert_close(x0, start)
    start_mse = float(((start - x) ** 2).mean())
    assert start_mse < float(((problem.forward_model.adjoint(y) - x) ** 2).mean())   # a better start than Aᵀy
    assert history[-1] < history[0]
    with pytest.raises(ValueError, match="needs a problem with a linear forward model"):
        RIM((16, 16), Hourglass(channels=1, dimensions=2, nf=8, hidden_units=8), score_fn=lambda x, y: y - x,
            initialization_method="tikhonov")
