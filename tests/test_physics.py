"""Built-in physics against independent references (scipy, scikit-image, numpy, torch.distributions)."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage
import scipy.signal
import torch
from skimage.measure import block_reduce

from invrim import Gaussian, Problem
from invrim.likelihoods import Poisson
from invrim.physics import Blur, CompressedSensing, Identity, Inpainting, SuperResolution, gaussian_psf
from invrim.plugins import testing

rng = np.random.default_rng(0)


@pytest.mark.parametrize("shape,kernel", [((2, 3, 31), (5,)), ((2, 2, 13, 10), (5, 3)), ((2, 1, 7, 9, 8), (3, 5, 3))])
def test_blur_same_matches_scipy_convolve(shape, kernel):
    x = torch.from_numpy(rng.normal(size=shape))
    k = torch.from_numpy(rng.random(kernel))
    y = Blur(k)(x).numpy()
    for b in range(shape[0]):
        for c in range(shape[1]):
            ref = scipy.signal.convolve(x[b, c].numpy(), k.numpy(), mode="same")
            np.testing.assert_allclose(y[b, c], ref, atol=1e-12)


@pytest.mark.parametrize("shape,kernel", [((2, 1, 31), (5,)), ((2, 2, 13, 10), (5, 3)), ((1, 1, 7, 9, 8), (3, 5, 3))])
def test_blur_periodic_matches_scipy_wrap(shape, kernel):
    x = torch.from_numpy(rng.normal(size=shape))
    k = torch.from_numpy(rng.random(kernel))
    y = Blur(k, boundary="periodic")(x).numpy()
    for b in range(shape[0]):
        for c in range(shape[1]):
            ref = scipy.ndimage.convolve(x[b, c].numpy(), k.numpy(), mode="wrap")
            np.testing.assert_allclose(y[b, c], ref, atol=1e-12)


def test_blur_per_sample_psf():
    x = torch.from_numpy(rng.normal(size=(3, 2, 12, 11)))
    k = torch.from_numpy(rng.random((3, 5, 5)))
    y = Blur(dimensions=2)(x, psf=k)
    for b in range(3):
        ref = scipy.signal.convolve(x[b, 1].numpy(), k[b].numpy(), mode="same")
        np.testing.assert_allclose(y[b, 1].numpy(), ref, atol=1e-12)
    for boundary in ("same", "periodic"):
        testing.check_forward_model(Blur(dimensions=2, boundary=boundary), x.float(), psf=k.float())


def test_gaussian_psf_is_normalised_and_symmetric():
    psf = gaussian_psf(7, 1.5, dimensions=2, dtype=torch.float64)
    assert abs(float(psf.sum()) - 1) < 1e-12 and torch.allclose(psf, psf.T) and torch.allclose(psf, psf.flip(0))


def test_inpainting_and_its_pseudo_inverse():
    x = torch.randn(2, 3, 8, 9)
    mask = torch.rand(2, 8, 9) > 0.5
    op = Inpainting()
    y = op(x, mask=mask)
    np.testing.assert_array_equal(y.numpy(), (x * mask[:, None]).numpy())
    torch.testing.assert_close(op(op.pseudo_inverse(y, mask=mask), mask=mask), y)
    fixed = Inpainting(mask[0])
    torch.testing.assert_close(fixed(x), x * mask[0])
    testing.check_forward_model(op, x, mask=mask)
    testing.check_forward_model(fixed, x)


def test_super_resolution_matches_block_reduce():
    x = torch.from_numpy(rng.normal(size=(2, 1, 12, 9)))
    op = SuperResolution(3, dimensions=2)
    ref = block_reduce(x.numpy(), (1, 1, 3, 3), np.mean)
    np.testing.assert_allclose(op(x).numpy(), ref, atol=1e-12)
    torch.testing.assert_close(op(op.pseudo_inverse(op(x))), op(x))
    for d, shape in ((1, (2, 1, 12)), (3, (2, 1, 4, 6, 8))):
        x = torch.from_numpy(rng.normal(size=shape))
        np.testing.assert_allclose(SuperResolution(2, d)(x).numpy(),
                                   block_reduce(x.numpy(), (1, 1) + (2,) * d, np.mean), atol=1e-12)
        testing.check_forward_model(SuperResolution(2, d), x.float())


def test_compressed_sensing_matches_numpy():
    op = CompressedSensing(30, 12, seed=4)
    A = op.matrix.double().numpy()
    assert abs(A.std() * np.sqrt(12) - 1) < 0.2          # N(0, 1/m) entries
    x = torch.from_numpy(rng.normal(size=(5, 30)))
    np.testing.assert_allclose(op.double()(x).numpy(), x.numpy() @ A.T, atol=1e-10)
    x1 = x[:, None]                                         # 1-D signals (B, C, n) too
    np.testing.assert_allclose(op(x1).numpy()[:, 0], x.numpy() @ A.T, atol=1e-10)
    y = op(x)
    np.testing.assert_allclose(op(op.pseudo_inverse(y)).numpy(), y.numpy(), atol=1e-5)
    assert torch.equal(CompressedSensing(30, 12, seed=4).matrix, CompressedSensing(**op.config()).matrix)
    testing.check_forward_model(CompressedSensing(30, 12), x.float())


def test_poisson_matches_torch_distributions():
    lik = Poisson(gain=10.0, background=2.0)
    prediction = torch.rand(4, 1, 5, 6, dtype=torch.float64) + 0.05
    y = lik.sample(prediction, torch.Generator().manual_seed(0))
    assert torch.equal(y, y.round()) and (y >= 0).all()
    rate = 10 * prediction + 2
    reference = -torch.distributions.Poisson(rate).log_prob(y).flatten(1).sum(1)
    constant = torch.lgamma(y + 1).flatten(1).sum(1)          # energy drops log(y!)
    torch.testing.assert_close(lik.energy(prediction, y) + constant, reference)
    testing.check_likelihood(lik, prediction, y)
    big = lik.sample(torch.full((1, 1, 200, 200), 3.0, dtype=torch.float64), torch.Generator().manual_seed(1))
    assert abs(float(big.mean()) - 32) < 0.5 and abs(float(big.var()) - 32) < 2   # mean = var = λ
    problem = Problem(Blur(gaussian_psf(3, 1.0)), lik)
    testing.check_score_matches_autograd(problem, prediction, y)


def test_gaussian_sigma_forms():
    lik = Gaussian(0.5)
    p, y = torch.zeros(2, 1, 3, 3), torch.ones(2, 1, 3, 3)
    torch.testing.assert_close(lik.energy(p, y), torch.full((2,), 0.5 * 9 / 0.25))
    torch.testing.assert_close(lik.energy(p, y, sigma=torch.tensor([1.0, 2.0])), torch.tensor([4.5, 9 / 8]))
    per_pixel = torch.full((2, 1, 3, 3), 1.0)
    torch.testing.assert_close(lik.energy(p, y, sigma=per_pixel), torch.full((2,), 4.5))
    noise = lik.sample(torch.zeros(1, 1, 300, 300), torch.Generator().manual_seed(0)) 
    assert abs(float(noise.std()) - 0.5) < 0.01


@pytest.mark.parametrize("build,message", [
    (lambda: Gaussian(-1.0), "sigma must be positive"),
    (lambda: Gaussian(1.0).energy(torch.zeros(2, 3), torch.zeros(2, 3), sigma=torch.tensor([1.0, -1.0])),
     "sigma must be positive everywhere"),
    (lambda: Poisson(gain=0), "gain must be positive"),
    (lambda: Poisson(background=-1), "background must be non-negative"),
    (lambda: Blur(torch.ones(4, 4)), "psf sizes must be odd"),
    (lambda: Blur(torch.ones(3, 3), boundary="reflect"), "boundary must be one of"),
    (lambda: Blur(torch.ones(9, 9))(torch.zeros(1, 1, 5, 5)), "larger than the signal"),
    (lambda: Blur(dimensions=2)(torch.zeros(2, 1, 5, 5), psf=torch.ones(3, 3, 3)), "per-sample psf must have shape"),
    (lambda: Inpainting(torch.ones(4, 4))(torch.zeros(1, 1, 5, 5)), "does not fit x"),
    (lambda: Inpainting()(torch.zeros(2, 1, 5, 5), mask=torch.ones(2, 4, 5)), "does not fit x"),
    (lambda: Inpainting()(torch.zeros(2, 1, 5, 5)), "built without a mask"),
    (lambda: SuperResolution(0), "factor must be an integer >= 1"),
    (lambda: SuperResolution(2)(torch.zeros(1, 1, 5, 6)), "not multiples of the factor 2"),
    (lambda: CompressedSensing(10, 0), "m must be a positive integer"),
    (lambda: CompressedSensing(10, 4)(torch.zeros(2, 9)), r"expects x of shape \(B, 10\)"),
])
def test_bad_configuration_gets_a_clear_error(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_identity():
    testing.check_forward_model(Identity(), torch.randn(3, 2, 4, 5))


def test_gaussian_residual_score_for_complex_data():
    """Complex k-space or visibilities: the analytic residual score equals -grad of the energy."""
    g = torch.Generator().manual_seed(0)
    prediction = torch.randn(2, 3, 4, dtype=torch.complex64, generator=g)
    y = prediction + 0.1 * torch.randn(2, 3, 4, dtype=torch.complex64, generator=g)
    assert "residual-score-vs-autograd" in testing.check_likelihood(Gaussian(0.3), prediction, y)


def test_complex_gaussian_noise_matches_its_energy():
    noise = Gaussian(0.5).sample(torch.zeros(1, 200, 200, dtype=torch.complex64), torch.Generator().manual_seed(0))
    assert abs(float(noise.real.std()) - 0.5) < 0.01 and abs(float(noise.imag.std()) - 0.5) < 0.01


# ---- per-sample simulation parameters ------------------------------------------------------
def test_sample_parameters_of_the_core_physics_pass_the_kit():
    from invrim.likelihoods.gaussian import Gaussian
    from invrim.physics.blur import Blur
    from invrim.physics.inpainting import Inpainting
    from invrim.plugins import testing

    x = torch.rand(3, 1, 20, 17, dtype=torch.float64)
    assert testing.check_sample_parameters(Blur(psf_sigma=[0.8, 2.0]), x) == ["sample-parameters"]
    assert testing.check_sample_parameters(Inpainting(fraction=0.3), x) == ["sample-parameters"]
    assert testing.check_sample_parameters(Gaussian(sigma_range=[0.01, 0.2]), x) == ["sample-parameters"]
    assert testing.check_sample_parameters(Blur(psf_sigma=1.5), x) == []        # a fixed PSF draws nothing
    # the sampled parameters drive the physics: every PSF is a normalised Gaussian of its own width
    psf = Blur(psf_sigma=[0.8, 2.0]).sample_parameters(x, torch.Generator().manual_seed(0))["psf"]
    assert psf.shape == (3, 13, 13) and torch.allclose(psf.sum(dim=(1, 2)), torch.ones(3, dtype=psf.dtype))
    assert len({round(float(p.max()), 6) for p in psf}) == 3
    sigma = Gaussian(sigma_range=[0.01, 0.2]).sample_parameters(x, torch.Generator().manual_seed(0))["sigma"]
    assert ((sigma >= 0.01) & (sigma <= 0.2)).all()
    for bad in ({"psf_sigma": [2.0, 1.0]}, {"psf_sigma": -1}, {"psf_sigma": 1.0, "psf_size": 4},
                {"psf_size": 5}):
        with pytest.raises(ValueError):
            Blur(**bad)
    with pytest.raises(ValueError, match="fraction"):
        Inpainting(fraction=1.5)
    with pytest.raises(ValueError, match="sigma_range"):
        Gaussian(sigma_range=[0.2, 0.1])


def test_the_sample_parameters_check_can_fail():
    from invrim.physics.blur import Blur
    from invrim.plugins import testing

    class Unseeded(Blur):
        def sample_parameters(self, x, generator=None):
            return {"psf": torch.rand(x.shape[0], 3, 3, dtype=x.dtype)}

    x = torch.rand(2, 1, 9, 9, dtype=torch.float64)
    undeclared = Blur(psf_sigma=[0.5, 1.0])
    undeclared.param_dims = {}
    with pytest.raises(AssertionError, match="param_dims"):
        testing.check_sample_parameters(undeclared, x)
    with pytest.raises(AssertionError, match="reproducible"):
        testing.check_sample_parameters(Unseeded(psf_sigma=[0.5, 1.0]), x)


# ---- linear algebra on the operators: CG, power iteration, composition, Tikhonov ----------------
def _dense(model, shape, **params):
    """The matrix of a linear model for one sample of x shape ``shape`` (columns: A e_i)."""
    n = int(np.prod(shape))
    eye = torch.eye(n, dtype=torch.float64).view(n, *shape)
    batched = {k: v.expand(n, *v.shape[1:]) for k, v in params.items()}
    return model(eye, **batched).reshape(n, -1).T.numpy()


@pytest.mark.parametrize("name", ["blur", "inpainting", "super_resolution", "composed"])
def test_least_squares_matches_a_dense_solve(name):
    g = torch.Generator().manual_seed(3)
    shape = (1, 8, 8)
    params = {}
    if name == "blur":
        model = Blur(psf_sigma=1.0, psf_size=5)
    elif name == "inpainting":
        model = Inpainting(fraction=0.4)
        params = {"mask": (torch.rand(1, *shape, generator=g) > 0.4).double()}
    elif name == "super_resolution":
        model = SuperResolution(factor=2)
    else:
        model = SuperResolution(factor=2) @ Blur(psf_sigma=1.0, psf_size=5)
    x = torch.randn(1, *shape, generator=g, dtype=torch.float64)
    y = model(x, **params) + 0.05 * torch.randn(model(x, **params).shape, generator=g, dtype=torch.float64)
    A = _dense(model, shape, **params)
    for lam, mean in ((0.03, 0.0), (0.3, 0.5)):
        got = model.least_squares(y, damping=lam, prior_mean=mean, iterations=500, tol=1e-12, **params)
        ref = np.linalg.solve(A.T @ A + lam * np.eye(A.shape[1]), A.T @ y.flatten().numpy() + lam * mean)
        np.testing.assert_allclose(got.flatten().numpy(), ref, atol=1e-8)
    # λ = 0 from a zero start: the minimum-norm least-squares solution (numpy's lstsq)
    got = model.least_squares(y, damping=0.0, iterations=500, tol=1e-13, **params)
    ref = np.linalg.lstsq(A, y.flatten().numpy(), rcond=1e-10)[0]
    np.testing.assert_allclose(got.flatten().numpy(), ref, atol=1e-6)
    norm = model.norm(x, iterations=1000, tol=1e-12, **params)
    assert float(norm[0]) == pytest.approx(np.linalg.norm(A, 2), rel=1e-6)


def test_least_squares_is_per_sample_and_checks_damping():
    model = Blur(psf_sigma=1.0, psf_size=5)
    x = torch.randn(3, 1, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    y = model(x)
    lam = torch.tensor([0.01, 0.1, 1.0], dtype=torch.float64)
    together = model.least_squares(y, damping=lam, iterations=300, tol=1e-12)
    for i in range(3):
        alone = model.least_squares(y[i:i + 1], damping=float(lam[i]), iterations=300, tol=1e-12)
        torch.testing.assert_close(together[i:i + 1], alone, rtol=0, atol=1e-7)   # to the solver's accuracy
    with pytest.raises(ValueError, match="damping must be finite and non-negative"):
        model.least_squares(y, damping=-1.0)


def test_composition_is_an_exact_linear_model():
    outer, inner = SuperResolution(factor=2), Blur(psf_sigma=1.2)
    composed = outer @ inner
    assert composed.name == "super_resolution@blur" and composed.linear
    x = torch.randn(2, 1, 16, 16, dtype=torch.float64)
    torch.testing.assert_close(composed(x), outer(inner(x)))
    assert testing.check_adjoint(composed, x)                  # the dot-product test, float64
    assert testing.check_batch_consistency(composed, x)
    with pytest.raises(TypeError):
        outer @ "blur"


def test_choose_tikhonov_finds_the_best_damping_of_its_grid():
    from invrim.baselines import choose_tikhonov, tikhonov
    g = torch.Generator().manual_seed(0)
    model = Blur(psf_sigma=1.5, boundary="periodic")
    x = torch.rand(16, 1, 16, 16, generator=g, dtype=torch.float64)
    y = model(x) + 0.05 * torch.randn(x.shape, generator=g, dtype=torch.float64)
    choice = choose_tikhonov(model, [(y, x, {})], source="test")
    assert choice["prior_mean"] == pytest.approx(float(x.mean()))
    errors = [row["mse"] for row in choice["grid"]]
    assert choice["damping"] == choice["grid"][int(np.argmin(errors))]["damping"]
    assert 0 < np.argmin(errors) < len(errors) - 1             # an interior optimum: the grid is wide enough
    best = float(((tikhonov(model, y, choice) - x) ** 2).mean())
    assert best == pytest.approx(min(errors), rel=1e-6)
    assert best < float(((model.adjoint(y) - x) ** 2).mean()) and best < float(((y - x) ** 2).mean())
    with pytest.raises(ValueError, match="not linear"):
        from invrim.physics import ForwardModel
        choose_tikhonov(ForwardModel(), [(y, x, {})])
