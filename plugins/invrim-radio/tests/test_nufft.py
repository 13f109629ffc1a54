"""The NUFFT against an independent direct sum in float64, and its exact adjoint."""
from __future__ import annotations


import numpy as np
import pytest
import torch

from invrim_radio.nufft import dft_type1, dft_type2, nufft_type1, nufft_type2


def _problem(B=2, H=24, W=17, V=300, seed=0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(B, H, W, dtype=torch.complex128, generator=g)
    fu = torch.rand(B, V, dtype=torch.float64, generator=g) - 0.5
    fv = torch.rand(B, V, dtype=torch.float64, generator=g) - 0.5
    c = torch.randn(B, V, dtype=torch.complex128, generator=g)
    return z, fu, fv, c


def _brute_force(z, fu, fv):
    """Σ_{h,w} z exp(−2πi (fu (w − W//2) + fv (h − H//2))) with numpy, pixel by pixel."""
    z, fu, fv = z.numpy(), fu.numpy(), fv.numpy()
    B, H, W = z.shape
    hh, ww = np.meshgrid(np.arange(H) - H // 2, np.arange(W) - W // 2, indexing="ij")
    out = np.zeros(fu.shape, dtype=complex)
    for b in range(B):
        phase = -2j * np.pi * (fu[b][:, None] * ww.ravel()[None] + fv[b][:, None] * hh.ravel()[None])
        out[b] = np.exp(phase) @ z[b].ravel()
    return torch.from_numpy(out)


def _rel(a, b):
    return float((a - b).abs().pow(2).sum().sqrt() / b.abs().pow(2).sum().sqrt())


def test_direct_sum_matches_numpy_brute_force():
    z, fu, fv, _ = _problem()
    assert _rel(dft_type2(z, fu, fv), _brute_force(z, fu, fv)) < 1e-12


@pytest.mark.parametrize("shape", [(24, 17), (16, 16), (9, 32)])
def test_finufft_matches_direct_sum_in_float64(shape):
    z, fu, fv, c = _problem(H=shape[0], W=shape[1])
    reference = _brute_force(z, fu, fv)
    assert _rel(nufft_type2(z, fu, fv), reference) <= 1e-6        # measured ~1e-10 with eps = 1e-10
    assert _rel(nufft_type1(c, fu, fv, shape), dft_type1(c, fu, fv, shape)) <= 1e-6


def test_finufft_float32_accuracy_and_dtype():
    z, fu, fv, _ = _problem()
    out = nufft_type2(z.to(torch.complex64), fu.float(), fv.float())
    assert out.dtype == torch.complex64
    assert _rel(out.to(torch.complex128), _brute_force(z, fu, fv)) <= 1e-4


@pytest.mark.parametrize("backend", ["finufft", "dft"])
def test_type1_is_the_adjoint_of_type2(backend):
    z, fu, fv, c = _problem()
    lhs = torch.vdot(nufft_type2(z, fu, fv, backend).flatten(), c.flatten())
    rhs = torch.vdot(z.flatten(), nufft_type1(c, fu, fv, z.shape[1:], backend).flatten())
    assert abs(complex(lhs - rhs)) / abs(complex(lhs)) < 1e-12


def test_finufft_gradients_match_the_direct_sum_autograd():
    z, fu, fv, c = _problem(V=80)
    grads = []
    for backend in ("finufft", "dft"):
        zr, cr = z.clone().requires_grad_(True), c.clone().requires_grad_(True)
        loss = (nufft_type2(zr, fu, fv, backend).abs() ** 2).sum() + \
            (nufft_type1(cr, fu, fv, z.shape[1:], backend).real ** 3).sum()
        loss.backward()
        grads.append((zr.grad, cr.grad))
    assert _rel(grads[0][0], grads[1][0]) < 1e-8 and _rel(grads[0][1], grads[1][1]) < 1e-8


def test_points_outside_the_principal_range_wrap_periodically():
    z, fu, fv, _ = _problem(V=20)
    assert _rel(nufft_type2(z, fu + 1.0, fv - 2.0), _brute_force(z, fu, fv)) < 1e-8


def test_unknown_backend_is_refused():
    z, fu, fv, _ = _problem(V=3)
    with pytest.raises(ValueError, match="unknown NUFFT backend"):
        nufft_type2(z, fu, fv, backend="kbnufft")
