"""The conformance kit: checks every plugin author runs in their own tests.

>>> from invrim.plugins import testing
>>> testing.check_forward_model(MyOperator(), x, mask=mask)      # all applicable checks
>>> testing.check_likelihood(MyLikelihood(), prediction, y)
>>> testing.check_backbone(MyBackbone)
>>> testing.check_generator(MyGenerator(), batch=2)

Each ``check_*`` raises ``AssertionError`` with a message naming what is wrong, and returns the
names of the checks it ran. ``invrim plugins check`` runs them on installed components through
their ``example()`` class methods.
"""
from __future__ import annotations

import json
from typing import Any, Callable, Optional, Sequence

import torch
from torch import Tensor

__all__ = ["check_adjoint", "check_score_matches_autograd", "check_batch_consistency", "check_dtypes",
           "check_device", "check_gradients_flow", "check_sample_parameters", "check_config_roundtrip", "check_auto_start",
           "check_forward_model",
           "check_likelihood", "check_backbone", "check_generator", "check_reader", "check_component", "TOLERANCES"]

#: relative tolerance of the dot-product test per real dtype
TOLERANCES = {torch.float32: 1e-4, torch.float64: 1e-10}


def _real_dtype(dtype: torch.dtype) -> torch.dtype:
    return {torch.complex64: torch.float32, torch.complex128: torch.float64}.get(dtype, dtype)


def _complex_of(dtype: torch.dtype) -> torch.dtype:
    return {torch.float32: torch.complex64, torch.float64: torch.complex128}.get(dtype, dtype)


def _cast(params: dict[str, Any], dtype: Optional[torch.dtype] = None, device: Any = None) -> dict[str, Any]:
    out = {}
    for k, v in params.items():
        if isinstance(v, Tensor):
            target = dtype
            if dtype is not None and v.is_complex():
                target = _complex_of(dtype)
            elif not v.is_floating_point() and not v.is_complex():
                target = None          # masks, indices keep their dtype
            v = v.to(device=device if device is not None else v.device, dtype=target or v.dtype)
        out[k] = v
    return out


def _inner(a: Tensor, b: Tensor) -> Tensor:
    """Real part of ⟨a, b⟩ = Σ conj(a) b, in float64."""
    if a.is_complex() or b.is_complex():
        return torch.sum(torch.conj(a.to(torch.complex128)) * b.to(torch.complex128)).real
    return torch.sum(a.double() * b.double())


def _randn_like(t: Tensor, generator: torch.Generator) -> Tensor:
    return torch.randn(t.shape, dtype=t.dtype, device=t.device, generator=generator) if t.device.type == "cpu" \
        else torch.randn(t.shape, dtype=t.dtype, generator=generator.manual_seed(0)).to(t.device)


def _name(model: Any) -> str:
    return getattr(model, "name", type(model).__name__)


def check_adjoint(model, x: Tensor, dtypes: Sequence[torch.dtype] = (torch.float32, torch.float64),
                  seed: int = 0, **params: Any) -> list[str]:
    """Dot-product test ``⟨A x, y⟩ = ⟨x, Aᴴ y⟩`` with random ``x``, ``y`` in each real dtype."""
    ran = []
    for dtype in dtypes:
        g = torch.Generator().manual_seed(seed)
        xd = _randn_like(x.to(dtype if not x.is_complex() else _complex_of(dtype)), g)
        p = _cast(params, dtype)
        model_d = model.to(dtype) if hasattr(model, "to") else model
        with torch.no_grad():
            ax = model_d(xd, **p)
            yd = _randn_like(ax, g)
            aty = model_d.adjoint(yd, **p)
        assert aty.shape == xd.shape, (f"{_name(model)}: adjoint returned shape {tuple(aty.shape)}, "
                                       f"expected x's shape {tuple(xd.shape)}")
        lhs, rhs = _inner(ax, yd), _inner(xd, aty)
        scale = max(float(lhs.abs()), float(rhs.abs()), float(ax.abs().sum() * yd.abs().max()), 1e-30)
        err = float((lhs - rhs).abs()) / scale
        assert err <= TOLERANCES[dtype], (f"{_name(model)}: adjoint mismatch in {dtype}: <Ax,y>={float(lhs):.6g} "
                                          f"vs <x,A^H y>={float(rhs):.6g} (relative error {err:.2e})")
        ran.append(f"adjoint[{str(dtype).replace('torch.', '')}]")
    return ran


def check_score_matches_autograd(problem, x: Tensor, y: Tensor, rtol: float = 1e-6, **params: Any) -> list[str]:
    """``problem.score`` equals ``-∇ energy`` by autograd (float64)."""
    x64, y64 = x.detach().to(_dtype64(x)), y.detach().to(_dtype64(y))
    p = _cast(params, torch.float64)
    problem.forward_model.to(torch.float64)
    fast = problem.score(x64, y64, **p)
    xr = x64.clone().requires_grad_(True)
    problem.energy(xr, y64, **p).sum().backward()
    reference = -xr.grad
    assert fast.shape == x64.shape, f"score has shape {tuple(fast.shape)}, expected {tuple(x64.shape)}"
    err = float((fast - reference).abs().max()) / max(float(reference.abs().max()), 1e-30)
    assert err <= rtol, (f"{_name(problem.forward_model)} + {_name(problem.likelihood)}: score differs from "
                         f"-grad(energy) by relative {err:.2e}")
    return ["score-vs-autograd"]


def _dtype64(t: Tensor) -> torch.dtype:
    return torch.complex128 if t.is_complex() else torch.float64


def _slice(params: dict[str, Any], i: int, batch: int) -> dict[str, Any]:
    return {k: (v[i:i + 1] if isinstance(v, Tensor) and v.dim() > 0 and v.shape[0] == batch else v)
            for k, v in params.items()}


def check_batch_consistency(model, x: Tensor, **params: Any) -> list[str]:
    """Sample ``i`` of a batched call equals a call on sample ``i`` alone (per-sample params sliced)."""
    B = x.shape[0]
    assert B >= 2, "check_batch_consistency needs a batch of at least 2 samples"
    with torch.no_grad():
        full = model(x, **params)
        assert full.shape[0] == B, f"{_name(model)}: output batch {full.shape[0]} != input batch {B}"
        for i in range(B):
            single = model(x[i:i + 1], **_slice(params, i, B))
            torch.testing.assert_close(single[0], full[i], rtol=1e-5, atol=1e-6,
                                       msg=lambda m: f"{_name(model)}: sample {i} differs alone and in a batch: {m}")
            if getattr(model, "linear", False) and hasattr(model, "adjoint"):
                torch.testing.assert_close(model.adjoint(full[i:i + 1], **_slice(params, i, B))[0],
                                           model.adjoint(full, **params)[i], rtol=1e-5, atol=1e-6)
    return ["batch"]


def check_dtypes(model, x: Tensor, **params: Any) -> list[str]:
    """float32 in → float32 (or complex64) out, float64 → float64 (or complex128)."""
    for dtype in (torch.float32, torch.float64):
        xd = x.to(dtype if not x.is_complex() else _complex_of(dtype))
        with torch.no_grad():
            out = model.to(dtype)(xd, **_cast(params, dtype))
        assert _real_dtype(out.dtype) == dtype, f"{_name(model)}: {dtype} input gave {out.dtype} output"
    return ["dtypes"]


def check_device(model, x: Tensor, device: Any = "cpu", **params: Any) -> list[str]:
    """The output lives on the input's device."""
    device = torch.device(device)
    with torch.no_grad():
        out = model.to(device)(x.to(device), **_cast(params, device=device))
    assert out.device.type == device.type, f"{_name(model)}: input on {device} gave output on {out.device}"
    model.to("cpu")
    return [f"device[{device.type}]"]


def check_gradients_flow(model, x: Tensor, **params: Any) -> list[str]:
    """``∂ sum|F(x)|² / ∂x`` exists, is finite and not identically zero."""
    xr = x.detach().clone().requires_grad_(True)
    out = model(xr, **params)
    loss = (out.abs() ** 2).sum() if out.is_complex() else (out ** 2).sum()
    loss.backward()
    assert xr.grad is not None, f"{_name(model)}: no gradient reaches x"
    assert torch.isfinite(xr.grad).all(), f"{_name(model)}: gradient with respect to x is not finite"
    assert xr.grad.abs().sum() > 0, f"{_name(model)}: gradient with respect to x is identically zero"
    return ["gradients"]


def _rebuilt_from_config(obj: Any, name: str) -> tuple[dict, Any]:
    """``obj.config()`` and ``type(obj)(**config)`` after a trip through JSON."""
    cfg = obj.config()
    try:
        text = json.dumps(cfg)
    except TypeError as e:
        raise AssertionError(f"{name}: config() is not JSON-serialisable: {e}") from None
    return cfg, type(obj)(**json.loads(text))


def check_config_roundtrip(model, x: Optional[Tensor] = None, **params: Any) -> list[str]:
    """``type(model)(**config())`` survives JSON and rebuilds an equivalent model."""
    cfg, rebuilt = _rebuilt_from_config(model, _name(model))
    if x is not None:
        rebuilt = rebuilt.to(x.real.dtype) if hasattr(rebuilt, "to") else rebuilt
        if isinstance(model, torch.nn.Module) and isinstance(rebuilt, torch.nn.Module):
            rebuilt.load_state_dict(model.state_dict())
        with torch.no_grad():
            torch.testing.assert_close(rebuilt(x, **params), model(x, **params),
                                       msg=lambda m: f"{_name(model)}: rebuilt from config() differs: {m}")
    return ["config"]


def check_auto_start(model) -> list[str]:
    """``auto_start`` (where ``initialization_method="auto"`` starts the RIM) is one invrim knows."""
    from ..physics.base import auto_start
    try:
        auto_start(model)
    except ValueError as e:
        raise AssertionError(f"{_name(model)}: {e}") from None
    return ["auto_start"]


def check_forward_model(model, x: Tensor, likelihood=None, devices: Sequence[str] = (), **params: Any) -> list[str]:
    """Every applicable forward-model check: adjoint (linear models), batch, dtypes, device,
    gradients, config round trip, ``auto_start``, and the score against autograd with ``likelihood``
    (a unit Gaussian when omitted)."""
    from ..likelihoods import Gaussian
    from ..problem import Problem
    ran = []
    if getattr(model, "linear", False):
        ran += check_adjoint(model, x, **params)
    model.to(x.real.dtype)
    ran += check_batch_consistency(model, x, **params)
    ran += check_dtypes(model, x, **params)
    model.to(x.real.dtype)
    for device in ("cpu", *devices):
        ran += check_device(model, x, device=device, **params)
    model.to(x.real.dtype)
    ran += check_gradients_flow(model, x, **params)
    ran += check_config_roundtrip(model, x, **params)
    ran += check_auto_start(model)
    problem = Problem(model, likelihood if likelihood is not None else Gaussian(1.0))
    with torch.no_grad():
        y = model(x, **params)
    g = torch.Generator().manual_seed(1)
    y = y + 0.1 * _randn_like(y, g)
    ran += check_score_matches_autograd(problem, x + 0.1 * _randn_like(x, g), y, **params)
    model.to(x.real.dtype)
    ran += check_sample_parameters(model, x)
    return ran


def check_sample_parameters(component, inputs: Tensor) -> list[str]:
    """``component.sample_parameters(inputs, generator)`` (a forward model given ``x``, a likelihood
    given ``F(x)``) returns per-sample tensors with leading axis ``B``, reproducible with a seeded
    generator, each declared in ``param_dims`` with its rank, and accepted by the forward model.
    Nothing to check (and no name returned) when it draws no parameters."""
    from ..data.schema import dim_options
    draw = getattr(component, "sample_parameters", None)
    if draw is None:
        return []
    a = draw(inputs, torch.Generator().manual_seed(5))
    b = draw(inputs, torch.Generator().manual_seed(5))
    if not a:
        return []
    name = _name(component)
    declared = getattr(component, "param_dims", {}) or {}
    B = inputs.shape[0]
    for key, value in a.items():
        assert isinstance(value, Tensor), f"{name}: sample_parameters()[{key!r}] is not a tensor"
        assert value.shape[:1] == (B,), (f"{name}: sample_parameters()[{key!r}] has shape {tuple(value.shape)}; "
                                         f"expected a leading batch axis of {B}")
        assert torch.equal(value, b[key]), f"{name}: sample_parameters()[{key!r}] is not reproducible with a seed"
        if value.is_floating_point() or value.is_complex():
            assert torch.isfinite(value).all(), f"{name}: sample_parameters()[{key!r}] is not finite"
        assert key in declared, (f"{name}: sample_parameters() returns {key!r} but param_dims does not name its "
                                 "axes (the data files need them)")
        ranks = [len(o) for o in dim_options(declared[key])]
        assert value.dim() - 1 in ranks, (f"{name}: {key!r} has {value.dim() - 1} non-batch axes but param_dims "
                                          f"declares {declared[key]!r}")
    if hasattr(component, "adjoint") or callable(getattr(component, "forward", None)):
        if isinstance(component, torch.nn.Module):
            with torch.no_grad():
                out = component(inputs, **a)
            assert out.shape[0] == B, f"{name}: forward with its sampled parameters changed the batch size"
    return ["sample-parameters"]


def check_likelihood(likelihood, prediction: Tensor, y: Tensor, **params: Any) -> list[str]:
    """Energy is one finite value per sample; the analytic residual score (if any) equals
    ``-∇ energy``; ``sample`` has the prediction's shape and is reproducible with a generator."""
    energy = likelihood.energy(prediction, y, **params)
    assert energy.shape == (prediction.shape[0],), (f"{_name(likelihood)}: energy has shape {tuple(energy.shape)}, "
                                                    f"expected (batch,) = ({prediction.shape[0]},)")
    assert torch.isfinite(energy).all(), f"{_name(likelihood)}: energy is not finite"
    ran = ["energy-shape"]
    if likelihood.residual_score is not None:
        p64 = prediction.detach().to(_dtype64(prediction)).requires_grad_(True)
        y64 = y.to(_dtype64(y))
        likelihood.energy(p64, y64, **_cast(params, torch.float64)).sum().backward()
        score = likelihood.residual_score(p64.detach(), y64, **_cast(params, torch.float64))
        reference = -p64.grad    # for complex data torch's gradient is 2 ∂E/∂conj(p): the steepest ascent
        err = float((score - reference).abs().max()) / max(float(reference.abs().max()), 1e-30)
        assert err <= 1e-6, f"{_name(likelihood)}: residual_score differs from -grad(energy) by relative {err:.2e}"
        ran.append("residual-score-vs-autograd")
    a = likelihood.sample(prediction, torch.Generator().manual_seed(3), **params)
    b = likelihood.sample(prediction, torch.Generator().manual_seed(3), **params)
    assert a.shape == prediction.shape, f"{_name(likelihood)}: sample has shape {tuple(a.shape)}"
    assert torch.isfinite(a).all(), f"{_name(likelihood)}: sample is not finite"
    assert torch.equal(a, b), f"{_name(likelihood)}: sample is not reproducible with a seeded generator"
    ran.append("sample")
    if hasattr(likelihood, "config"):
        cfg = json.loads(json.dumps(likelihood.config()))
        rebuilt = type(likelihood)(**cfg)
        torch.testing.assert_close(rebuilt.energy(prediction, y, **params), energy)
        ran.append("config")
    ran += check_sample_parameters(likelihood, prediction)
    return ran


def check_backbone(backbone: Callable[..., Any], dimensions: Sequence[int] = (0, 1, 2, 3), channels: int = 2,
                   sizes: dict[int, tuple[int, ...]] | None = None, **config: Any) -> list[str]:
    """Build ``backbone(channels=…, dimensions=d, **config)`` for each supported ``d`` (those whose
    construction raises ``ValueError`` are skipped) and check shapes for odd sizes, two recurrent
    steps, gradients to every parameter, float64, and the config round trip."""
    sizes = sizes or {0: (), 1: (13,), 2: (11, 9), 3: (7, 5, 6)}
    ran = []
    for d in dimensions:
        try:
            net = backbone(channels=channels, dimensions=d, **config)
        except ValueError:
            continue
        label = f"{getattr(net, 'name', type(net).__name__)}[{d}-D]"
        x = torch.randn(3, channels, *sizes[d])
        h = net.init_hidden(x)
        per_step = getattr(net, "steps", None) is not None      # weights of its own per step
        call = (lambda n, a, s, hh, t: n(a, s, hh, step=t)) if per_step else (lambda n, a, s, hh, t: n(a, s, hh))
        dx, h = call(net, x, torch.randn_like(x), h, 0)
        assert dx.shape == x.shape, f"{label}: dx has shape {tuple(dx.shape)}, expected {tuple(x.shape)}"
        total = x + dx
        for t in range(1, max(2, net.steps if per_step else 2)):
            dx2, h = call(net, total, torch.randn_like(x), h, t)
            total = total + dx2
        (total ** 2).sum().backward()
        silent = [n for n, p in net.named_parameters() if p.requires_grad and (p.grad is None or not torch.isfinite(p.grad).all())]
        assert not silent, f"{label}: no finite gradient for {', '.join(silent[:5])}"
        check_config_roundtrip(net)
        rebuilt = type(net)(**json.loads(json.dumps(net.config())))
        rebuilt.load_state_dict(net.state_dict())
        with torch.no_grad():
            torch.testing.assert_close(call(rebuilt, x, x, rebuilt.init_hidden(x), 0)[0],
                                       call(net, x, x, net.init_hidden(x), 0)[0])
        net64 = net.double()
        x64 = x.double()
        out64, h64 = call(net64, x64, x64, net64.init_hidden(x64), 0)
        assert out64.dtype == torch.float64, f"{label}: float64 input gave {out64.dtype}"
        ran.append(label)
    assert ran, f"{getattr(backbone, '__name__', backbone)}: no dimensions in {tuple(dimensions)} could be built"
    return ran


def check_generator(generator, **call_kwargs: Any) -> list[str]:
    """A ground-truth generator follows the interface of :mod:`invrim.data.generators`.

    Calls ``generator(batch=…, generator=torch.Generator().manual_seed(…), dtype=…, **call_kwargs)``
    (any ``batch``, ``generator``, ``seed`` or ``dtype`` in ``call_kwargs`` is replaced: the kit
    draws its own) and checks that the output is a finite CPU tensor with leading axis ``batch``
    (for batches 1 and 3) and the same sample shape for both; that ``len(dims)`` equals the
    number of non-batch axes (skipped when the generator has no ``dims``); that two identically
    seeded generators give bit-identical output and the global torch RNG is left untouched; that
    different seeds give different output (skipped for ``deterministic = True``); that float32
    and float64 are honoured; and that ``config()`` survives JSON and rebuilds a generator with
    the same config and the same output for the same seed. Returns ``["generate"]``.
    """
    name = _name(generator)
    kwargs = {k: v for k, v in call_kwargs.items() if k not in ("batch", "generator", "seed", "dtype")}

    def draw(batch: int, seed: int, dtype: torch.dtype = torch.float32, gen: Any = generator) -> Tensor:
        return gen(batch=batch, generator=torch.Generator().manual_seed(seed), dtype=dtype, **kwargs)

    sample_shape = None
    for batch in (1, 3):
        out = draw(batch, 0)
        assert isinstance(out, Tensor), f"{name}: returned {type(out).__name__}, not a Tensor"
        assert out.dim() >= 1 and out.shape[0] == batch, (f"{name}: batch={batch} gave shape {tuple(out.shape)}, "
                                                          f"expected leading axis {batch}")
        assert out.device.type == "cpu", f"{name}: output is on {out.device}, expected the CPU"
        assert torch.isfinite(out).all(), f"{name}: output is not finite"
        assert sample_shape in (None, out.shape[1:]), (f"{name}: a sample has shape {tuple(sample_shape)} with "
                                                       f"batch=1 but {tuple(out.shape[1:])} with batch={batch}")
        sample_shape = out.shape[1:]
    dims = getattr(generator, "dims", None)
    if dims is not None:                       # generators without dims are tolerated
        assert len(dims) == out.dim() - 1, (f"{name}: dims {tuple(dims)} name {len(dims)} axes, but the output "
                                            f"has {out.dim() - 1} non-batch axes {tuple(out.shape[1:])}")
    state = torch.get_rng_state()
    first, second = draw(3, 0), draw(3, 0)
    assert torch.equal(torch.get_rng_state(), state), f"{name}: uses the global torch RNG instead of `generator`"
    assert torch.equal(first, second), f"{name}: not reproducible: two identically seeded generators differ"
    if not getattr(generator, "deterministic", False):
        assert not torch.equal(first, draw(3, 1)), (f"{name}: seeds 0 and 1 give identical output (declare "
                                                    f"`deterministic = True` if that is intended)")
    for dtype in (torch.float32, torch.float64):
        out = draw(2, 0, dtype)
        assert out.dtype == dtype, f"{name}: dtype={dtype} gave {out.dtype} output"
    cfg, rebuilt = _rebuilt_from_config(generator, name)
    assert json.dumps(rebuilt.config(), sort_keys=True) == json.dumps(cfg, sort_keys=True), \
        f"{name}: rebuilt from config() has a different config: {rebuilt.config()} != {cfg}"
    assert torch.equal(draw(3, 0, gen=rebuilt), first), f"{name}: rebuilt from config() gives different output"
    return ["generate"]


def check_reader(reader_cls, folder=None) -> list[str]:
    """A reader of foreign files follows the interface of :mod:`invrim.data.readers`.

    Writes ``reader_cls.example(folder)`` (a temporary folder when omitted) and checks that the
    class declares ``suffixes`` matching the example's name; that ``arrays()`` lists every array
    of the example with its shape and dtype (``dims`` None or one name per axis); that
    ``read(name, ())`` returns it exactly, in native byte order; that slices (a step included)
    read the same values as slicing the whole array; that ``hdf5_source`` is None or names an
    existing file and dataset holding the same values; and that ``close()`` may be called twice.
    Returns ``["read"]``.
    """
    import tempfile
    from pathlib import Path

    import numpy as np

    name = getattr(reader_cls, "name", getattr(reader_cls, "__name__", "reader"))
    suffixes = tuple(getattr(reader_cls, "suffixes", ()) or ())
    assert suffixes and all(isinstance(s, str) and not s.startswith(".") for s in suffixes), \
        f"{name}: suffixes must be a non-empty tuple of strings without the dot, got {suffixes!r}"
    with tempfile.TemporaryDirectory() as tmp:
        path, expected = reader_cls.example(Path(folder or tmp))
        path = Path(path)
        assert any(path.name.lower().endswith("." + s.lower()) for s in suffixes), \
            f"{name}: example file {path.name} does not end in one of its suffixes {suffixes}"
        reader = reader_cls(path)
        try:
            listed = reader.arrays()
            for key, want in expected.items():
                want = np.asarray(want)
                assert key in listed, f"{name}: arrays() of {path.name} lacks {key!r} (lists {sorted(listed)})"
                info = listed[key]
                shape, dtype, dims = tuple(info[0]), np.dtype(info[1]), info[2]
                assert shape == want.shape, f"{name}: arrays()[{key!r}] has shape {shape}, the file {want.shape}"
                assert dtype == want.dtype.newbyteorder("="), \
                    f"{name}: arrays()[{key!r}] has dtype {dtype}, the file {want.dtype}"
                assert dims is None or len(dims) == len(shape), f"{name}: arrays()[{key!r}] names {dims} for {shape}"
                whole = reader.read(key, ())
                assert isinstance(whole, np.ndarray) and whole.dtype.isnative, \
                    f"{name}: read({key!r}) must return a numpy array in native byte order"
                np.testing.assert_array_equal(whole, want, err_msg=f"{name}: read({key!r}) differs from the file")
                if want.ndim:
                    index = (slice(1, None, 2),) + tuple(slice(0, max(1, s - 1)) for s in want.shape[1:])
                    np.testing.assert_array_equal(reader.read(key, index), want[index],
                                                  err_msg=f"{name}: read({key!r}, {index}) differs from slicing")
                source = reader.hdf5_source(key)
                if source is not None:
                    import h5py
                    with h5py.File(source[0], "r") as f:
                        np.testing.assert_array_equal(f[source[1]][()], want,
                                                      err_msg=f"{name}: hdf5_source({key!r}) holds other values")
        finally:
            reader.close()
        reader.close()
    return ["read"]


def check_component(component) -> list[str]:
    """Run the kit on a registered component through its factory's ``example()`` class method.

    Forward models: ``example() -> (model, x, params)`` (:func:`check_forward_model`); likelihoods:
    ``example() -> (likelihood, prediction, y, params)`` (:func:`check_likelihood`); generators:
    ``example() -> (generator, call_kwargs)`` (:func:`check_generator`); readers:
    ``example(folder) -> (path, arrays)`` (:func:`check_reader`); backbones are built
    directly (:func:`check_backbone`). Raises ``LookupError`` when the component offers no example.
    """
    factory = component.load()
    if component.kind == "backbones":
        return check_backbone(factory)
    example = getattr(factory, "example", None)
    if example is None:
        raise LookupError(f"{component.qualified_name} has no example() to check")
    if component.kind == "forward_models":
        model, x, params = example()
        return check_forward_model(model, x, **params)
    if component.kind == "likelihoods":
        likelihood, prediction, y, params = example()
        return check_likelihood(likelihood, prediction, y, **params)
    if component.kind == "generators":
        generator, kwargs = example()
        return check_generator(generator, **kwargs)
    if component.kind == "readers":
        return check_reader(factory)
    raise LookupError(f"no checks for kind {component.kind!r}")
