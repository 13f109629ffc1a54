"""compile=True: the backbone through torch.compile gives the eager values, and never stale ones."""
from __future__ import annotations

import gc
import warnings

import pytest
import torch

import invrim.compilation
from invrim import RIM, Gaussian, Problem, RIMCell
from invrim.backbones import Hourglass
from invrim.physics import Blur


#: torch.compile's CPU backend builds C++: without a compiler the RIM runs eagerly (tested below with a stub)
needs_compiler = pytest.mark.skipif(invrim.compilation.cpu_compiler() is None,
                                    reason="torch.compile on CPU needs a C++ compiler")


def _setup(seed=0):
    g = torch.Generator().manual_seed(seed)
    problem = Problem(Blur(psf_sigma=1.0, boundary="periodic"), Gaussian(0.05))
    x = torch.rand(4, 1, 16, 16, generator=g)
    return problem, x, problem.simulate(x, generator=g)


def _backbone(seed, small=False):
    torch.manual_seed(seed)
    if small:                                         # compiles in about a second
        return Hourglass(channels=1, dimensions=2, nf=4, ch_mult=(2,), hidden_units=4, num_layers=0)
    return Hourglass(channels=1, dimensions=2, nf=8, hidden_units=8)


@needs_compiler
def test_compiled_rim_matches_eager_and_follows_the_weights():
    problem, x, y = _setup()
    model = _backbone(0)
    eager = RIM((16, 16), model, problem=problem, T=3)
    compiled = RIM((16, 16), model, problem=problem, T=3, compile=True)     # the same weights
    assert compiled.settings.compile and compiled.config()["rim"]["compile"] is True
    first = compiled.predict(y)
    torch.testing.assert_close(first, eager.predict(y), rtol=1e-4, atol=1e-5)
    assert set(compiled.compile_seconds) == {"frozen"} and compiled.compile_seconds["frozen"] > 0

    # training: the compiled graph gives the eager loss and gradients
    loss = compiled.loss_fn(y, x)
    loss.backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    eager_loss = eager.loss_fn(y, x)
    eager_loss.backward()
    torch.testing.assert_close(loss, eager_loss, rtol=1e-4, atol=1e-6)
    for g, p in zip(grads, model.parameters()):
        torch.testing.assert_close(g, p.grad, rtol=1e-3, atol=1e-6)

    # an optimiser step changes the weights: the frozen graph (weights folded in) must not be used
    torch.optim.SGD(model.parameters(), lr=1.0).step()
    after = compiled.predict(y)
    assert (after - first).abs().max() > 1e-3                       # the new weights are seen
    torch.testing.assert_close(after, eager.predict(y), rtol=1e-4, atol=1e-5)
    assert "inference" in compiled.compile_seconds


@needs_compiler
def test_every_model_of_the_same_architecture_is_compiled_with_its_own_weights(monkeypatch):
    from torch._dynamo import config as dynamo_config
    from torch._dynamo.utils import counters
    monkeypatch.setattr(dynamo_config, "recompile_limit", 1)   # torch's limit per code object (8), made small
    problem, _, y = _setup()
    graphs = counters["stats"]["unique_graphs"]
    rims = [RIM((16, 16), _backbone(seed, small=True), problem=problem, T=1, compile=True) for seed in range(2)]
    outs = [rim.predict(y) for rim in rims]
    assert counters["stats"]["unique_graphs"] - graphs == 2          # the second is compiled, not eager
    torch.testing.assert_close(outs[1], RIM((16, 16), rims[1].model, problem=problem, T=1).predict(y),
                               rtol=1e-4, atol=1e-5)
    assert (outs[0] - outs[1]).abs().max() > 1e-3
    del rims, outs
    gc.collect()                                     # a new model may reuse the old parameters' ids
    fresh = _backbone(11, small=True)
    torch.testing.assert_close(RIM((16, 16), fresh, problem=problem, T=1, compile=True).predict(y),
                               RIM((16, 16), fresh, problem=problem, T=1).predict(y), rtol=1e-4, atol=1e-5)


def test_a_failed_compilation_warns_once_and_runs_eagerly(monkeypatch):
    def broken(fn, **kwargs):
        def call(*args, **kw):
            raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found\nmore lines")
        return call
    monkeypatch.setattr(invrim.compilation.torch, "compile", broken)
    problem, x, y = _setup()
    model = _backbone(0)
    rim = RIM((16, 16), model, problem=problem, T=2, compile=True)
    with pytest.warns(UserWarning, match=r"torch.compile failed \(RuntimeError: InvalidCxxCompiler: No working C\+\+ "
                                         r"compiler found\); running the backbone eagerly") as record:
        out = rim.predict(y)
        rim.predict(y)
    assert len([w for w in record if "torch.compile failed" in str(w.message)]) == 1
    torch.testing.assert_close(out, RIM((16, 16), model, problem=problem, T=2).predict(y))
    assert rim.compile_seconds == {}


def test_a_mistake_in_the_input_is_not_taken_for_a_compile_failure(monkeypatch):
    problem, _, y = _setup()
    calls = []
    monkeypatch.setattr(invrim.compilation.torch, "compile", lambda fn, **kw: calls.append(1) or fn)
    rim = RIM((16, 16), _backbone(0), problem=problem, T=2, compile=True)
    h = rim.model.init_hidden(torch.zeros(4, 1, 16, 16))
    with warnings.catch_warnings():
        warnings.simplefilter("error")                              # no "compile failed" warning
        with pytest.raises(RuntimeError):
            rim._backbone()(torch.zeros(4, 1, 16, 16), torch.zeros(4, 3, 16, 16), h)   # wrong channels
    assert calls and rim._backbone().failed is None


def test_a_backbone_with_weights_per_step_is_not_compiled():
    problem, _, y = _setup()
    with pytest.warns(UserWarning, match="not applied to a backbone with weights per step"):
        rim = RIM((16, 16), RIMCell(channels=1, dimensions=2, hidden_channels=4, steps=2), problem=problem, T=2,
                  compile=True)
    rim.predict(y)
    assert rim.compile_seconds == {}


def test_cli_compile_is_saved_by_train_and_chosen_per_reconstruction(tmp_path, monkeypatch):
    import json

    import h5py

    from invrim.cli import main
    compiled = []

    def fake_compile(fn, **kwargs):                  # counts compilations; runs the function as it is
        compiled.append(fn)
        return fn
    monkeypatch.setattr(invrim.compilation.torch, "compile", fake_compile)
    data, run = tmp_path / "d.h5", tmp_path / "run"
    assert main(["simulate", "--forward-model", "blur", "-f", "psf_sigma=1", "--generator", "ellipses", "-g",
                 "shape=[16,16]", "--samples", "8", "-o", str(data), "--quiet"]) == 0
    assert main(["train", str(data), "-o", str(run), "-b", "nf=4", "-b", "hidden_units=4", "--T", "2",
                 "--epochs", "1", "--compile", "--quiet"]) == 0
    assert json.loads((run / "model.json").read_text())["rim"]["compile"] is True and compiled
    compiled.clear()
    assert main(["reconstruct", str(run), str(data), "-o", str(tmp_path / "a.h5"), "--no-compile", "--quiet"]) == 0
    assert not compiled
    assert main(["reconstruct", str(run), str(data), "-o", str(tmp_path / "b.h5"), "--quiet"]) == 0
    assert len(compiled) == 1                        # the run's own setting: the frozen inference graph
    with h5py.File(tmp_path / "a.h5") as fa, h5py.File(tmp_path / "b.h5") as fb:
        torch.testing.assert_close(torch.from_numpy(fb["x_hat"][:]), torch.from_numpy(fa["x_hat"][:]))


def test_invrim_info_says_whether_compile_can_compile_here(capsys, monkeypatch):
    from invrim.cli import main
    assert main(["info"]) == 0
    line = [x for x in capsys.readouterr().out.splitlines() if x.startswith("compile on cpu:")]
    assert line and (("yes (C++ compiler" in line[0]) == (invrim.compilation.cpu_compiler() is not None))
    monkeypatch.setenv("PATH", "")
    monkeypatch.delenv("CXX", raising=False)
    assert main(["info"]) == 0
    assert "compile on cpu: no C++ compiler found" in capsys.readouterr().out


def test_weights_replaced_through_data_are_not_taken_for_the_frozen_ones():
    from invrim.compilation import _weights_version
    model = _backbone(0, small=True)
    before = _weights_version(model)
    weight = next(model.parameters())
    weight.data = weight.data.clone() + 1.0            # no version bump, another storage
    assert _weights_version(model) != before
