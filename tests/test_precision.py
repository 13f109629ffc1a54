"""Mixed precision: the backbone under autocast, the physics, score and loss in fp32."""
from __future__ import annotations

import json
import warnings

import pytest
import torch

import invrim.precision
from invrim import RIM, Gaussian, Problem
from invrim.backbones import Hourglass
from invrim.data.generators import GaussianRandomField
from invrim.physics import Blur


def _data(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    problem = Problem(Blur(psf_sigma=1.0, boundary="periodic"), Gaussian(0.05))
    x = torch.rand(n, 1, 16, 16, generator=g)
    return problem, x, problem.simulate(x, generator=g)


def _rim(problem, precision, seed=0):
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")          # a CPU without bf16 hardware warns: slow, not wrong
        return RIM((16, 16), Hourglass(channels=1, dimensions=2, nf=8, hidden_units=8), problem=problem, T=3,
                   precision=precision)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_both_precisions_learn(precision):
    """120 steps take the RIM's error well below that of its own start (the pseudo-inverse), in
    either precision (the untrained RIM stays near its start, so this is learning, not undoing a
    random initialisation)."""
    problem = Problem(Blur(psf_sigma=1.0, boundary="periodic"), Gaussian(0.05))
    x = GaussianRandomField(shape=[16, 16], power=4.0)(64, generator=torch.Generator().manual_seed(0))  # smooth: learnable
    y = problem.simulate(x, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")          # a CPU without bf16 hardware warns: slow, not wrong
        rim = RIM((16, 16), Hourglass(channels=1, dimensions=2, nf=8, hidden_units=8), problem=problem, T=3,
                  precision=precision, initialization_method="approximate_inverse")
    start = float(((problem.forward_model.pseudo_inverse(y) - x) ** 2).mean())
    rim.fit(list(zip(y, x)), epochs=30, batch_size=16, progress=False, seed=0)
    with torch.no_grad():
        end = float(((rim.predict(y) - x) ** 2).mean())
    assert rim.precision == precision and next(rim.parameters()).dtype == torch.float32   # weights stay fp32
    assert end < 0.8 * start, (start, end)


def test_the_score_and_the_state_stay_fp32_under_autocast():
    problem, x, y = _data(8)
    rim = _rim(problem, "bf16")
    seen = []
    score = problem.score

    def recording(*args, **kwargs):
        out = score(*args, **kwargs)
        seen.append((out.dtype, torch.is_autocast_enabled("cpu")))
        return out
    problem.score = recording
    outputs = []
    rim.model.register_forward_hook(lambda module, args, out: outputs.append(out))
    xs = rim(y)
    assert seen and all(s == (torch.float32, False) for s in seen)       # computed outside autocast
    assert any(o[0].dtype == torch.bfloat16 for o in outputs)             # the backbone ran in bf16
    assert all(x_t.dtype == torch.float32 for x_t in xs)                  # the estimates are fp32
    assert rim.loss_fn(y, x).dtype == torch.float32


def test_a_bf16_run_reloads_in_fp32_and_predicts_alike(tmp_path):
    problem, x, y = _data(32)
    rim = _rim(problem, "bf16")
    rim.fit(list(zip(y, x)), epochs=2, batch_size=16, progress=False, seed=0, run_dir=tmp_path / "run")
    saved = json.loads((tmp_path / "run" / "model.json").read_text())
    assert saved["rim"]["precision"] == "bf16"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again = RIM.from_checkpoint(tmp_path / "run", problem=problem)
        full = RIM.from_checkpoint(tmp_path / "run", problem=problem, precision="fp32")
    assert again.precision == "bf16" and full.precision == "fp32"
    low, high = again.predict(y), full.predict(y)
    torch.testing.assert_close(low, rim.predict(y))
    # bf16 keeps 8 bits of mantissa in the network; over T=3 steps the estimate moves by < 2 %
    assert float((low - high).norm() / high.norm()) < 0.02


def test_a_cpu_without_bf16_hardware_gets_a_warning(monkeypatch):
    monkeypatch.setattr(invrim.precision, "cpu_flags", lambda: frozenset({"avx2", "fma"}))
    problem, _, _ = _data(2)
    with pytest.warns(UserWarning, match=r"precision='bf16' on cpu: CPU lacks avx512_bf16 and amx_bf16"):
        RIM((16, 16), Hourglass(channels=1, dimensions=2, nf=4, hidden_units=4), problem=problem, precision="bf16")
    monkeypatch.setattr(invrim.precision, "cpu_flags", lambda: frozenset({"avx512_bf16"}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        RIM((16, 16), Hourglass(channels=1, dimensions=2, nf=4, hidden_units=4), problem=problem, precision="bf16")
    assert invrim.precision.support("cpu")["bf16"] == (True, "CPU has avx512_bf16")
    with pytest.raises(ValueError, match="unknown precision 'fp8'"):
        RIM((16, 16), Hourglass(channels=1, dimensions=2, nf=4, hidden_units=4), problem=problem, precision="fp8")


def test_cli_precision_is_saved_by_train_and_chosen_per_reconstruction(tmp_path, capsys):
    from invrim.cli import main
    data, run = tmp_path / "d.h5", tmp_path / "run"
    assert main(["simulate", "--forward-model", "blur", "-f", "psf_sigma=1", "--generator", "ellipses", "-g",
                 "shape=[16,16]", "--samples", "8", "-o", str(data), "--quiet"]) == 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["train", str(data), "-o", str(run), "-b", "nf=4", "-b", "hidden_units=4", "--T", "2",
                     "--epochs", "1", "--precision", "bf16", "--quiet"]) == 0
        assert json.loads((run / "model.json").read_text())["rim"]["precision"] == "bf16"
        assert main(["reconstruct", str(run), str(data), "-o", str(tmp_path / "a.h5"), "--quiet"]) == 0
        assert main(["reconstruct", str(run), str(data), "-o", str(tmp_path / "b.h5"), "--precision", "fp32",
                     "--quiet"]) == 0
        capsys.readouterr()
        assert main(["reconstruct", str(run), str(data), "-o", str(tmp_path / "a.h5"), "--quiet"]) == 0
        assert "complete already" in capsys.readouterr().out           # the same job: a no-op
        code = main(["reconstruct", str(run), str(data), "-o", str(tmp_path / "a.h5"), "--precision", "fp32",
                     "--quiet"])
    assert code == 2 and "a.h5" in capsys.readouterr().err           # another job: refused, not mixed
    import h5py
    with h5py.File(tmp_path / "a.h5") as fa, h5py.File(tmp_path / "b.h5") as fb:
        a, b = torch.from_numpy(fa["x_hat"][:]), torch.from_numpy(fb["x_hat"][:])
    assert not torch.equal(a, b) and float((a - b).norm() / b.norm()) < 0.02


def test_invrim_info_says_which_precisions_run_well(capsys, monkeypatch):
    from invrim.cli import main
    monkeypatch.setattr(invrim.precision, "cpu_flags", lambda: frozenset({"amx_bf16", "amx_tile"}))
    assert main(["info"]) == 0
    line = next(v for v in capsys.readouterr().out.splitlines() if v.startswith("precision on cpu"))
    assert "bf16 yes (CPU has amx_bf16)" in line and "fp16 slow" in line
