"""The plugin's own tests: invrim's conformance kit does the heavy lifting, independent references
check what the kit cannot know (that the operator is the one it claims to be)."""
import warnings

import numpy as np
import pytest
import torch

from invrim.plugins import registry, testing
from invrim_vignette.physics import SubsampledFourier, Vignette


def test_conformance():
    model, x, params = Vignette.example()
    testing.check_forward_model(model, x, **params)


def test_registered_through_the_entry_point():
    component = registry().forward_models.info("vignette")
    assert component.distribution == "invrim-vignette" and component.status == "active"
    assert isinstance(registry().forward_models.build("vignette", strength=0.3), Vignette)
    fourier = registry().forward_models.build("vignette_fourier", fraction=0.5)
    assert isinstance(fourier, SubsampledFourier) and fourier.fraction == 0.5


def test_corners_are_darker_than_the_centre():
    gain = Vignette(1.0)(torch.ones(1, 1, 9, 9))          # the image of a flat field
    assert gain[0, 0, 4, 4] == 1 and gain[0, 0, 0, 0] < 0.3


# --- the complex-valued example: real x -> complex y -------------------------------------------
def test_fourier_conformance():
    model, x, params = SubsampledFourier.example()
    ran = testing.check_forward_model(model, x, **params)
    assert {"adjoint[float32]", "adjoint[float64]", "score-vs-autograd", "sample-parameters"} <= set(ran)


def test_fourier_matches_numpy_fft():
    """The independent reference: numpy's orthonormal FFT times the mask."""
    model, x, params = SubsampledFourier.example()
    x, mask = x.double(), params["mask"].double()
    y = model(x, mask=mask)
    assert y.dtype == torch.complex128 and y.shape == x.shape
    reference = np.fft.fft2(x.numpy(), norm="ortho") * mask.numpy()[:, None]
    np.testing.assert_allclose(y.numpy(), reference, rtol=0, atol=1e-12)


def test_fourier_adjoint_dot_product_float64():
    """Re⟨A x, y⟩ = ⟨x, Aᴴ y⟩ for real x and complex y: the adjoint between real spaces is real."""
    model, x, params = SubsampledFourier.example()
    g = torch.Generator().manual_seed(3)
    x = torch.randn(x.shape, generator=g, dtype=torch.float64)
    y = torch.randn(x.shape, generator=g, dtype=torch.complex128)
    mask = params["mask"].double()
    aty = model.adjoint(y, mask=mask)
    assert not aty.is_complex() and aty.shape == x.shape
    lhs = (model(x, mask=mask).conj() * y).real.sum()
    rhs = (x * aty).sum()
    assert abs(float(lhs - rhs)) <= 1e-12 * max(1.0, abs(float(lhs)))


def test_fourier_baseline_and_linear_algebra():
    from invrim.evaluation import baseline_name
    model, x, params = SubsampledFourier.example()
    x, mask = x.double(), params["mask"].double()
    assert baseline_name(model) == "zero-filled"
    # fully sampled: the baseline inverts exactly; the operator norm is 1 (F is unitary)
    torch.testing.assert_close(model.baseline(model(x)), x)
    torch.testing.assert_close(model.norm(x, mask=mask), torch.ones(2, dtype=torch.float64), rtol=1e-5, atol=0)
    # Tikhonov-CG, the generic baseline `invrim evaluate` adds for every linear model: it solves
    # the damped normal equations (A^H A + λ) x = A^H y (for real x, A^H A = Re F⁻¹ M F is a projection
    # only for a point-symmetric mask, so zero-filled is not the solution)
    y = model(x, mask=mask)
    solution = model.least_squares(y, damping=0.5, mask=mask, tol=1e-12)
    torch.testing.assert_close(model.normal(solution, mask=mask) + 0.5 * solution, model.adjoint(y, mask=mask))
    torch.testing.assert_close(model.least_squares(model(x), tol=1e-12), x)       # fully sampled, λ = 0


def test_composition_is_a_linear_model_with_an_exact_adjoint():
    model, x, params = SubsampledFourier.example()
    composed = model @ Vignette(0.7)                    # x -> M F(v ⊙ x)
    assert composed.y_is_complex and composed.x_dims == Vignette.x_dims
    testing.check_adjoint(composed, x, **params)


def test_plot_observation_draws_the_k_space():
    pytest.importorskip("matplotlib")                   # pip install "invrim[plot]"
    from matplotlib.figure import Figure                # no pyplot, no display needed
    model, x, params = SubsampledFourier.example()
    y = model(x, **params)
    ax = Figure().subplots()
    model.plot_observation(ax, y[0], mask=params["mask"][0])        # one sample: no sample axis
    assert ax.images, "plot_observation drew no image"
    data = np.asarray(ax.images[0].get_array())
    assert data.shape == tuple(x.shape[-2:]) and np.isfinite(data).all()
    assert ax.get_title().startswith("|y| (k-space, log")


def test_the_observation_panel_of_a_data_file(tmp_path):
    """Through invrim: simulate a small file and draw it (needs the plugin installed)."""
    if "vignette_fourier" not in registry().forward_models.names():
        pytest.skip("invrim-vignette is not installed (pip install -e .)")
    pytest.importorskip("matplotlib")
    from invrim.data import simulate
    from invrim.viz import plot_data_sample
    path = simulate(tmp_path / "fourier.h5", "vignette_fourier", "gaussian", samples=2, generator="ellipses",
                    generator_config={"shape": [16, 16]}, likelihood_config={"sigma": 0.01}, progress=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fig = plot_data_sample(path, index=1)
    assert not [w for w in caught if "plot_observation" in str(w.message)], [str(w.message) for w in caught]
    titles = [ax.get_title() for ax in fig.axes]
    assert any(t.startswith("|y| (k-space, log") for t in titles), titles
    assert any(t.startswith("Zero-filled (baseline)") for t in titles), titles
    import matplotlib.pyplot as plt
    plt.close(fig)
