"""invrim's conformance kit, the entry point, bad configurations, and a RIM smoke test."""
import json

import pytest
import torch

import invrim.plugins
from invrim import RIM, Hourglass, Problem
from invrim.likelihoods import Gaussian
from invrim.plugins import testing
from invrim_lensing.data import random_lenses
from invrim_lensing.geometry import gaussian_source
from invrim_lensing.physics import PixelatedConvergenceLensing, SIELensing


# ---- conformance kit --------------------------------------------------------------------------
def test_sie_conformance_example():
    op, x, params = SIELensing.example()
    ran = testing.check_forward_model(op, x, **params)
    assert "adjoint[float64]" in ran and "score-vs-autograd" in ran


def test_sie_conformance_other_settings():
    """No PSF, two channels, a shared (7,) lens, a per-sample psf keyword, strong ellipticity."""
    g = torch.Generator().manual_seed(3)
    op = SIELensing(source_pixels=10, source_fov=1.6, image_pixels=14, image_fov=3.0)
    x = torch.rand(3, 2, 10, 10, generator=g)
    testing.check_forward_model(op, x, lens=random_lenses(3, g, q=(0.3, 1.0), shear=0.1))
    testing.check_forward_model(op, x, lens=torch.tensor([1.0, 0.5, 1.0, 0.0, 0.1, 0.05, 0.0]))
    psf = torch.rand(3, 3, 3, generator=g)
    testing.check_forward_model(op, x, lens=random_lenses(3, g), psf=psf)


def test_sie_analytic_score_is_used_and_matches_autograd():
    op, x, params = SIELensing.example()
    problem = Problem(op, Gaussian(0.1))
    assert problem.analytic_score
    y = problem.simulate(x, torch.Generator().manual_seed(0), **params)
    torch.testing.assert_close(problem.score(x, y, **params), problem.autograd_score(x, y, **params),
                               rtol=1e-4, atol=1e-3)


def test_kappa_conformance_example():
    op, kappa, params = PixelatedConvergenceLensing.example()
    assert not op.linear
    ran = testing.check_forward_model(op, kappa, **params)
    assert not any(r.startswith("adjoint") for r in ran)
    assert {"batch", "dtypes", "gradients", "config", "score-vs-autograd"} <= set(ran)


def test_kappa_score_is_autograd_and_finite():
    op, kappa, params = PixelatedConvergenceLensing.example()
    problem = Problem(op, Gaussian(0.05))
    assert not problem.analytic_score
    y = problem.simulate(kappa, torch.Generator().manual_seed(0), **params)
    score = problem.score(kappa * 0.8, y, **params)
    assert score.shape == kappa.shape and torch.isfinite(score).all() and score.abs().sum() > 0


def test_config_is_json_and_rebuilds():
    for op in (SIELensing(lens=[1.0, 0.8, 0.2, 0.0, 0.0, 0.01, 0.0], psf_sigma=1.2, psf_size=5),
               PixelatedConvergenceLensing(pixels=20, fov=3.0, psf_sigma=0.5)):
        cfg = json.loads(json.dumps(op.config()))
        assert type(op)(**cfg).config() == op.config()


# ---- the entry point -----------------------------------------------------------------------------
def test_registered_through_the_entry_point():
    invrim.plugins.refresh()
    reg = invrim.plugins.registry()
    for name, cls in (("lensing_sie", SIELensing), ("lensing_kappa", PixelatedConvergenceLensing)):
        info = reg.forward_models.info(name)
        assert info.distribution == "invrim-lensing" and info.status == "active", info
        assert isinstance(reg.forward_models.build(name), cls)
    problem = Problem.from_config("lensing_sie", "gaussian", {"source_pixels": 16}, {"sigma": 0.1})
    assert problem.forward_model.source_pixels == 16


def test_hooks_module_is_light():
    import subprocess
    import sys
    code = ("import sys, invrim_lensing.hooks as h; "
            "assert 'invrim_lensing.physics' not in sys.modules; "
            "assert 'invrim_lensing.geometry' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


# ---- bad configurations ----------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, word", [
    ({"source_pixels": 1}, "source_pixels"),
    ({"source_pixels": 3.5}, "source_pixels"),
    ({"image_pixels": 0}, "image_pixels"),
    ({"source_fov": 0}, "source_fov"),
    ({"image_fov": -2.0}, "image_fov"),
    ({"image_fov": "wide"}, "image_fov"),
    ({"lens": [1.0, 0.5]}, "lens"),
    ({"lens": [1.0, 1.5, 0, 0, 0, 0, 0]}, "q"),
    ({"lens": [1.0, 0.0, 0, 0, 0, 0, 0]}, "q"),
    ({"lens": [-1.0, 0.5, 0, 0, 0, 0, 0]}, "theta_E"),
    ({"psf_sigma": -1.0}, "psf_sigma"),
    ({"psf_sigma": 1.0, "psf_size": 4}, "psf_size"),
    ({"psf_sigma": 1.0, "psf_size": 99}, "psf_size"),
    ({"psf_size": 5}, "psf_size"),
])
def test_sie_bad_configuration(kwargs, word):
    with pytest.raises(ValueError, match=word) as info:
        SIELensing(**kwargs)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("kwargs, word", [
    ({"pixels": 1}, "pixels"), ({"fov": 0.0}, "fov"), ({"source_pixels": 0}, "source_pixels"),
    ({"source_fov": float("nan")}, "source_fov"), ({"psf_sigma": float("inf")}, "psf_sigma"),
])
def test_kappa_bad_configuration(kwargs, word):
    with pytest.raises(ValueError, match=word):
        PixelatedConvergenceLensing(**kwargs)


def test_bad_call_arguments():
    op = SIELensing(source_pixels=8, image_pixels=10)
    x = torch.rand(2, 1, 8, 8)
    with pytest.raises(ValueError, match="lens"):
        op(x)                                                       # no lens anywhere
    with pytest.raises(ValueError, match="lens"):
        op(x, lens=torch.ones(2, 5))
    with pytest.raises(ValueError, match="q"):
        op(x, lens=torch.tensor([[1.0, 2.0, 0, 0, 0, 0, 0]] * 2))
    with pytest.raises(ValueError, match="source"):
        op(torch.rand(2, 1, 9, 9), lens=random_lenses(2))
    with pytest.raises(ValueError, match="psf"):
        op(x, lens=random_lenses(2), psf=torch.ones(2, 4, 4))
    kop = PixelatedConvergenceLensing(pixels=10, source_pixels=8)
    with pytest.raises(ValueError, match="source"):
        kop(torch.rand(2, 1, 10, 10))
    with pytest.raises(ValueError, match="kappa"):
        kop(torch.rand(2, 1, 9, 9), source=torch.rand(2, 1, 8, 8))


# ---- the RIM runs on both ---------------------------------------------------------------------------
def _rim_smoke(op, x, params, init):
    torch.manual_seed(0)
    problem = Problem(op, Gaussian(0.05))
    y = problem.simulate(x, torch.Generator().manual_seed(0), **params)
    data = [{"y": y[i], "x": x[i], **{k: v[i] for k, v in params.items()}} for i in range(x.shape[0])]
    rim = RIM(x.shape[2:], Hourglass(1, dimensions=2, nf=4, ch_mult=(2,), hidden_units=4, num_layers=1),
              problem=problem, T=2, initialization_method=init, standardize_score=True)
    history = rim.fit(data, epochs=1, learning_rate=1e-3, batch_size=2, progress=False)
    assert len(history) == 1 and torch.isfinite(torch.tensor(history[0]))
    out = rim.predict(y, **params)
    assert out.shape == x.shape and torch.isfinite(out).all()


def test_rim_on_sie_with_pseudo_inverse_initialisation():
    op, x, params = SIELensing.example()
    _rim_smoke(op, x, params, "approximate_inverse")


def test_rim_on_kappa():
    op, kappa, params = PixelatedConvergenceLensing.example()
    _rim_smoke(op, kappa, params, "zeros")


# ---- implementation details that must not change results ------------------------------------------
def test_ray_cache_follows_the_lens_tensor():
    """Forward/adjoint reuse the ray tracing for the same lens tensor, but a different tensor or an
    in-place change of the same one is traced again."""
    op = SIELensing(source_pixels=10, image_pixels=12, image_fov=3.0)
    y = torch.rand(2, 1, 12, 12)
    lens = random_lenses(2, torch.Generator().manual_seed(0))
    a = op.adjoint(y, lens=lens)
    other = lens.clone()
    other[:, 0] += 0.2
    b = op.adjoint(y, lens=other)
    lens[:, 0] += 0.2                      # in place: must not reuse the stale tracing
    c = op.adjoint(y, lens=lens)
    assert not torch.allclose(a, b)
    torch.testing.assert_close(b, c)
    torch.testing.assert_close(op.adjoint(y.double(), lens=lens), c.double(), rtol=1e-5, atol=1e-6)


def test_psf_adjoint_equals_blur_adjoint():
    from invrim.physics import Blur
    op = SIELensing(source_pixels=10, image_pixels=16, image_fov=3.0, psf_sigma=1.3)
    y = torch.rand(2, 1, 16, 16, dtype=torch.float64)
    psf = torch.rand(2, 5, 3, dtype=torch.float64)
    torch.testing.assert_close(op.to(torch.float64)._apply_psf(y, None, adjoint=True),
                               Blur(dimensions=2).adjoint(y, psf=op.psf))
    torch.testing.assert_close(op._apply_psf(y, psf, adjoint=True), Blur(dimensions=2).adjoint(y, psf=psf))


def test_example_runs_in_fast_mode(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path
    script = Path(__file__).resolve().parents[1] / "examples" / "lensing_example.py"
    figure = tmp_path / "fig.png"
    out = subprocess.run([sys.executable, str(script), "--fast", "--figure", str(figure)], check=True,
                         capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
                         timeout=120)
    assert "RIM (T=3, pseudo-inverse start)" in out.stdout and figure.exists()
