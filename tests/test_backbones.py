"""Tests of the recurrent backbones (invrim.backbones)."""
from __future__ import annotations

import copy
import io
import json

import pytest
import torch

from invrim.backbones import (
    BUILTIN_BACKBONES,
    MLPGRU,
    Backbone,
    Hourglass,
    RIMCell,
    UNet,
    Unet,
    build_backbone,
)
from invrim.backbones.layers import ConvGRU, fast_tanh, fast_tanh_, get_activation, pointwise_conv

# Small architectures keep the whole module fast on 2 CPU cores.
SMALL = {
    Hourglass: dict(nf=8, ch_mult=(2, 2), hidden_units=8, num_layers=1),
    UNet: dict(nf=8, ch_mult=(1, 2), num_layers=1),
    RIMCell: dict(hidden_channels=8),
    MLPGRU: dict(hidden_units=16),
}

SPATIAL = {0: (), 1: (37,), 2: (37, 29), 3: (9, 11, 7)}

CASES = [
    (Hourglass, 0), (Hourglass, 1), (Hourglass, 2), (Hourglass, 3),
    (UNet, 1), (UNet, 2), (UNet, 3),
    (RIMCell, 0), (RIMCell, 1), (RIMCell, 2), (RIMCell, 3),
    (MLPGRU, 0),
]


def make(cls, channels: int, dimensions: int, **overrides) -> Backbone:
    kwargs = {**SMALL[cls], **overrides}
    if cls is MLPGRU:
        return cls(channels, **kwargs)
    return cls(channels, dimensions=dimensions, **kwargs)


def flat(h):
    return list(h) if isinstance(h, tuple) else [h]


def unroll(model: Backbone, x: torch.Tensor, score: torch.Tensor, steps: int = 3):
    h = model.init_hidden(x)
    outs = []
    for _ in range(steps):
        dx, h = model(x, score, h)
        x = x + dx
        outs.append(dx)
    return outs, h


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# --------------------------------------------------------------------------- shapes
@pytest.mark.parametrize("cls,dimensions", CASES, ids=lambda v: getattr(v, "__name__", str(v)))
@pytest.mark.parametrize("channels", [1, 2])
def test_shapes_odd_sizes(cls, dimensions, channels):
    model = make(cls, channels, dimensions)
    assert model.dimensions == dimensions and model.channels == channels
    x = torch.randn(3, channels, *SPATIAL[dimensions])
    score = torch.randn_like(x)
    h0 = model.init_hidden(x)
    outs, h = unroll(model, x, score, steps=3)
    for dx in outs:
        assert dx.shape == x.shape
        assert torch.isfinite(dx).all()
    assert [t.shape for t in flat(h)] == [t.shape for t in flat(h0)]
    assert all(t.abs().sum() == 0 for t in flat(h0))


@pytest.mark.parametrize("size", [(64, 64), (16, 17), (1, 1), (5, 3)])
def test_hourglass_hidden_shape_any_size(size):
    model = make(Hourglass, 1, 2)
    x = torch.randn(2, 1, *size)
    h = model.init_hidden(x)
    expected = list(size)
    for _ in range(2):
        expected = [(n + 1) // 2 for n in expected]
    assert h.shape == (2, 8, *expected)
    dx, h1 = model(x, x, h)
    assert dx.shape == x.shape and h1.shape == h.shape


@pytest.mark.parametrize("dimensions", [1, 2])
def test_resample_without_conv(dimensions):
    for cls in (Hourglass, UNet):
        model = make(cls, 2, dimensions, resample_with_conv=False)
        x = torch.randn(3, 2, *SPATIAL[dimensions])
        outs, _ = unroll(model, x, torch.randn_like(x), steps=2)
        assert outs[-1].shape == x.shape


def test_hourglass_dense_seed_readme_example():
    # The seed README: Hourglass(C, dimensions=len(dimensions)) with dimensions=() .
    model = Hourglass(3, dimensions=len(()))
    x = torch.randn(4, 3)
    dx, h = model(x, torch.randn_like(x), model.init_hidden(x))
    assert dx.shape == (4, 3) and h.shape == (4, 32)
    # ch_mult widens the dense layers too
    widths = [lvl.resample.conv.out_features for lvl in model.encoder]
    assert widths == [64, 128]


def test_initalize_hidden_states_seed_alias():
    model = make(Hourglass, 1, 2)
    h = model.initalize_hidden_states([37, 29], 3)
    assert h.shape == model.init_hidden(torch.zeros(3, 1, 37, 29)).shape
    assert model.hyperparameters == model.config()


def test_init_hidden_checks_input():
    model = make(Hourglass, 2, 2)
    with pytest.raises(ValueError, match="expects x of shape"):
        model.init_hidden(torch.zeros(3, 1, 8, 8))
    with pytest.raises(ValueError, match="expects x of shape"):
        model.init_hidden(torch.zeros(3, 2, 8))


# --------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("cls,dimensions", [(Hourglass, 0), (Hourglass, 2), (UNet, 2), (RIMCell, 1),
                                            (MLPGRU, 0)],
                         ids=lambda v: getattr(v, "__name__", str(v)))
def test_gradients_reach_every_parameter(cls, dimensions):
    model = make(cls, 2, dimensions)
    x = torch.randn(3, 2, *SPATIAL[dimensions])
    outs, _ = unroll(model, x, torch.randn_like(x), steps=2)
    loss = sum((dx ** 2).mean() for dx in outs)
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert p.grad.abs().sum() > 0, name


# --------------------------------------------------------------------------- output scale
@pytest.mark.parametrize("cls,overrides", [(Hourglass, {}), (UNet, {}), (RIMCell, {}), (RIMCell, {"steps": 3})],
                         ids=["Hourglass", "UNet", "RIMCell", "RIMCell-unshared"])
def test_output_scale_scales_only_the_initial_output_layer(cls, overrides):
    """``output_scale=s`` draws the same random weights as ``output_scale=1`` and multiplies the
    output convolution's (each step's copy's) weight and bias by s; every other parameter is equal."""
    nets = {}
    for scale in (1.0, 0.25):
        torch.manual_seed(3)
        nets[scale] = make(cls, 2, 2, output_scale=scale, **overrides)
    reference, scaled = (dict(nets[s].named_parameters()) for s in (1.0, 0.25))
    outputs = [name for name in reference if "output_layer" in name]
    assert len(outputs) == 2 * (overrides.get("steps") or 1), outputs
    for name, p in reference.items():
        expected = 0.25 * p if "output_layer" in name else p
        torch.testing.assert_close(scaled[name], expected, rtol=0, atol=0, msg=name)
    assert nets[0.25].config()["output_scale"] == 0.25
    with pytest.raises(ValueError, match="output_scale must be a non-negative number, got nan"):
        make(cls, 2, 2, output_scale=float("nan"), **overrides)


# --------------------------------------------------------------------------- config
@pytest.mark.parametrize("cls,dimensions,overrides", [
    (Hourglass, 2, dict(hidden_units=48)),
    (Hourglass, 2, dict(output_scale=1.0)),
    (Hourglass, 0, dict(hidden_units=48, ch_mult=[3, 1])),
    (Hourglass, 1, dict(hidden_units=12, conv_kernel_size=5, input_kernel_size=1,
                        activation="relu", resample_with_conv=False)),
    (UNet, 2, dict(hidden_units=48)),
    (UNet, 1, dict(hidden_units=[4, 6], gru_kernel_size=1, activation="elu")),
    (RIMCell, 2, dict(hidden_channels=12, depth=3, kernel_sizes=[3, 3, 5, 1],
                      dilations=[1, 2, 3, 1], gru_kernel_size=3)),
    (MLPGRU, 0, dict(hidden_units=48, num_layers=3, activation="silu")),
], ids=lambda v: getattr(v, "__name__", None))
def test_config_round_trip(cls, dimensions, overrides):
    model = make(cls, 2, dimensions, **overrides)
    cfg = json.loads(json.dumps(model.config()))
    for key, value in overrides.items():
        if cls is UNet and key == "hidden_units" and isinstance(value, int):
            value = [value] * len(cfg["ch_mult"])  # stored per level
        if key != "activation":
            assert cfg[key] == (list(value) if isinstance(value, tuple) else value), key
    rebuilt = type(model)(**cfg)
    rebuilt.load_state_dict(model.state_dict(), strict=True)
    assert rebuilt.config() == model.config()
    assert sum(p.numel() for p in rebuilt.parameters()) == sum(p.numel() for p in model.parameters())
    via_registry = build_backbone(type(model).name, **cfg)
    via_registry.load_state_dict(model.state_dict(), strict=True)
    x = torch.randn(3, 2, *SPATIAL[dimensions])
    score = torch.randn_like(x)
    with torch.no_grad():
        a, ha = unroll(model, x, score, steps=2)
        b, hb = unroll(rebuilt, x, score, steps=2)
    assert torch.equal(a[-1], b[-1])
    assert all(torch.equal(u, v) for u, v in zip(flat(ha), flat(hb)))


def test_config_contains_every_constructor_argument():
    import inspect

    for cls in BUILTIN_BACKBONES.values():
        model = make(cls, 1, 2 if cls not in (MLPGRU,) else 0)
        params = set(inspect.signature(cls.__init__).parameters) - {"self"}
        assert set(model.config()) == params, cls.__name__


def test_pickle_deepcopy_and_torch_save():
    for cls, dimensions in [(Hourglass, 2), (Hourglass, 1), (UNet, 2), (RIMCell, 2), (MLPGRU, 0)]:
        model = make(cls, 1, dimensions)
        x = torch.randn(2, 1, *SPATIAL[dimensions])
        buffer = io.BytesIO()
        torch.save(model, buffer)
        buffer.seek(0)
        for other in (copy.deepcopy(model), torch.load(buffer, weights_only=False)):
            with torch.no_grad():
                assert torch.equal(unroll(model, x, x, 2)[0][-1], unroll(other, x, x, 2)[0][-1])


@pytest.mark.parametrize("activation", ["tanh", "relu", "elu", "silu", "gelu", "sigmoid",
                                        "leaky_relu"])
def test_every_activation_trains(activation):
    model = make(RIMCell, 1, 1, activation=activation)
    x = torch.randn(2, 1, 9)
    outs, _ = unroll(model, x, torch.randn_like(x), steps=2)
    sum(dx.square().sum() for dx in outs).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_torch_func_grad_through_backbone():
    model = make(Hourglass, 1, 2)
    x = torch.randn(2, 1, 12, 10)
    h = model.init_hidden(x)
    params = dict(model.named_parameters())

    def loss(p):
        dx, _ = torch.func.functional_call(model, p, (x, x, h))
        return dx.square().sum()

    grads = torch.func.grad(loss)(params)
    loss(params).backward()
    for name, p in model.named_parameters():
        assert torch.allclose(grads[name], p.grad, atol=1e-5, rtol=1e-4), name


# --------------------------------------------------------------------------- the seed's GRU bug
def test_hourglass_gru_block_updates_both_states():
    model = make(Hourglass, 1, 2, hidden_units=8)
    x = torch.randn(3, 1, 16, 16)
    score = torch.randn_like(x)
    h0 = model.init_hidden(x)
    with torch.no_grad():
        _, h1 = model(x, score, h0)
    first, second = h1.chunk(2, dim=1)
    assert first.abs().sum() > 0, "first GRU's new state was dropped (seed bug)"
    assert second.abs().sum() > 0
    # the second step's output depends on the first GRU's state alone
    perturbed = h1.clone()
    perturbed[:, :4] += 0.5
    with torch.no_grad():
        dx_a, _ = model(x, score, h1)
        dx_b, hb = model(x, score, perturbed)
    assert not torch.allclose(dx_a, dx_b)


def test_gru_block_returns_new_first_state():
    block = make(Hourglass, 1, 0, hidden_units=8).gru_layer
    x = torch.randn(5, 32)
    h = torch.randn(5, 8)
    _, h_new = block(x, h)
    h1_expected = block.gru1(x, h[:, :4])
    assert torch.allclose(h_new[:, :4], h1_expected)


# --------------------------------------------------------------------------- dtype / device
@pytest.mark.parametrize("cls,dimensions", [(Hourglass, 2), (UNet, 1), (RIMCell, 2), (MLPGRU, 0),
                                            (Hourglass, 0)],
                         ids=lambda v: getattr(v, "__name__", str(v)))
def test_float64(cls, dimensions):
    model = make(cls, 1, dimensions).double()
    x = torch.randn(3, 1, *SPATIAL[dimensions], dtype=torch.float64)
    h0 = model.init_hidden(x)
    assert all(t.dtype == torch.float64 and t.device == x.device for t in flat(h0))
    dx, h = model(x, torch.randn_like(x), h0)
    assert dx.dtype == torch.float64
    assert all(t.dtype == torch.float64 for t in flat(h))


def test_init_hidden_follows_input_dtype_without_model_cast():
    model = make(RIMCell, 1, 1)
    h = model.init_hidden(torch.zeros(2, 1, 10, dtype=torch.float64))
    assert all(t.dtype == torch.float64 for t in h)


# --------------------------------------------------------------------------- errors
@pytest.mark.parametrize("cls", [Hourglass, UNet, RIMCell])
def test_bad_dimensions(cls):
    with pytest.raises(ValueError, match="dimensions"):
        cls(1, dimensions=4)


def test_unet_rejects_dimensions_zero():
    with pytest.raises(ValueError, match="dimensions"):
        UNet(1, dimensions=0)


def test_mlp_rejects_spatial_dimensions():
    with pytest.raises(ValueError, match="dimensions"):
        MLPGRU(1, dimensions=2)


@pytest.mark.parametrize("cls,kwargs,argument", [
    (Hourglass, dict(kernel_size=4), "kernel_size"),
    (Hourglass, dict(conv_kernel_size=2), "conv_kernel_size"),
    (Hourglass, dict(hidden_units=7), "hidden_units"),
    (Hourglass, dict(nf=0), "nf"),
    (Hourglass, dict(ch_mult=(2, 0)), "ch_mult"),
    (Hourglass, dict(num_layers=-1), "num_layers"),
    (UNet, dict(kernel_size=2), "kernel_size"),
    (UNet, dict(hidden_units=[4]), "hidden_units"),
    (RIMCell, dict(kernel_sizes=[5, 4, 3]), "kernel_sizes"),
    (RIMCell, dict(dilations=[1, 2]), "dilations"),
    (RIMCell, dict(hidden_channels=-3), "hidden_channels"),
    (MLPGRU, dict(hidden_units=0), "hidden_units"),
])
def test_bad_arguments(cls, kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        cls(1, **kwargs)


@pytest.mark.parametrize("cls", [Hourglass, UNet, RIMCell, MLPGRU])
def test_unknown_activation(cls):
    with pytest.raises(ValueError, match="activation"):
        cls(1, activation="tanhh")


def test_build_backbone_and_registry():
    assert BUILTIN_BACKBONES == {"hourglass": Hourglass, "unet": UNet, "rim_cell": RIMCell,
                                 "mlp_gru": MLPGRU}
    assert all(name == cls.name for name, cls in BUILTIN_BACKBONES.items())
    assert Unet is UNet
    net = build_backbone("Hourglass", channels=1, dimensions=1, nf=4, hidden_units=4)
    assert isinstance(net, Hourglass)
    with pytest.raises(ValueError) as info:
        build_backbone("hourglas", channels=1)
    message = str(info.value)
    assert message.startswith("unknown backbone 'hourglas'")
    assert "hourglass" in message and "unet" in message and "rim_cell" in message
    assert "mlp_gru" in message


# --------------------------------------------------------------------------- layers
@pytest.fixture
def fast_kernels_on():
    """The CPU kernels on (whatever ``INVRIM_FAST_KERNELS`` says) for the tests of the kernels."""
    from invrim.backbones import cpu_kernels
    with cpu_kernels.fast_kernels(True):
        yield


@pytest.mark.usefixtures("fast_kernels_on")
def test_fast_tanh_matches_tanh():
    x = torch.linspace(-20, 20, 2001, dtype=torch.float64)
    assert torch.allclose(fast_tanh(x), torch.tanh(x), atol=1e-12)
    xf = x.float()
    assert torch.allclose(fast_tanh(xf), torch.tanh(xf), atol=1e-6)
    # in place + autograd
    a = torch.randn(50, dtype=torch.float64, requires_grad=True)
    y = fast_tanh_(a * 1.0)
    (g,) = torch.autograd.grad(y.sum(), a)
    assert torch.allclose(g, 1 - torch.tanh(a.detach()) ** 2)
    t = torch.randn(8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(fast_tanh, (t,))
    assert torch.autograd.gradgradcheck(fast_tanh, (t,))
    assert torch.autograd.gradgradcheck(lambda v: fast_tanh_(v * 1.0), (t,))


@pytest.mark.usefixtures("fast_kernels_on")
@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated")  # inside torch.func
def test_fast_tanh_forward_mode_and_both_autograd_paths():
    t = torch.randn(8, dtype=torch.float64, requires_grad=True)
    expected = 1 - torch.tanh(t.detach()) ** 2
    # plain autograd uses the classic-style twin (no per-call signature binding) ...
    assert type(fast_tanh(t).grad_fn).__name__ == "_FastTanhEagerBackward"
    assert torch.autograd.gradcheck(fast_tanh, (t,), check_forward_ad=True)
    assert torch.autograd.gradcheck(lambda v: fast_tanh_(v * 1.0), (t,), check_forward_ad=True)
    # ... torch.func transforms the setup_context-style original
    for fn in (fast_tanh, lambda v: fast_tanh_(v * 1.0)):
        assert torch.allclose(torch.func.grad(lambda v: fn(v).sum())(t.detach()), expected)
        _, tangent = torch.func.jvp(fn, (t.detach(),), (torch.ones_like(t),))
        assert torch.allclose(tangent, expected)
        assert torch.allclose(torch.func.vmap(fn)(t.detach()[None].repeat(3, 1)), torch.tanh(t.detach()))


class _Conv:
    """What :func:`pointwise_conv` reads from a kernel-1 convolution module."""

    def __init__(self, weight, bias=None):
        self.weight, self.bias = weight, bias


@pytest.mark.usefixtures("fast_kernels_on")
@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated")  # inside torch.func
@pytest.mark.parametrize("out_channels", [1, 3])
@pytest.mark.parametrize("bias", [True, False])
def test_pointwise_conv_matches_1x1_convolution(out_channels, bias):
    cl = torch.channels_last
    x = torch.randn(2, 5, 7, 6, dtype=torch.float64).contiguous(memory_format=cl).requires_grad_()
    w = torch.randn(out_channels, 5, 1, 1, dtype=torch.float64).contiguous(memory_format=cl)
    args = (x, w.requires_grad_()) + ((torch.randn(out_channels, dtype=torch.float64,
                                                   requires_grad=True),) if bias else ())

    def ours(v, weight, b=None):
        return pointwise_conv(_Conv(weight, b), v)

    def reference(v, weight, b=None):
        return torch.nn.functional.conv2d(v, weight, b)

    assert torch.allclose(ours(*args), reference(*args), atol=1e-12)
    g = torch.randn(2, out_channels, 7, 6, dtype=torch.float64)
    grads = torch.autograd.grad(ours(*args), args, g)
    for got, expected in zip(grads, torch.autograd.grad(reference(*args), args, g)):
        assert torch.allclose(got, expected, atol=1e-12)
    assert grads[0].is_contiguous(memory_format=cl)
    assert torch.autograd.gradcheck(ours, args, check_forward_ad=True)
    assert torch.autograd.gradgradcheck(ours, args)
    # under torch.func the setup_context-style Function is used
    plain = [a.detach() for a in args]
    argnums = tuple(range(len(args)))
    got = torch.func.grad(lambda *a: ours(*a).square().sum(), argnums=argnums)(*plain)
    expected = torch.func.grad(lambda *a: reference(*a).square().sum(), argnums=argnums)(*plain)
    for a, b in zip(got, expected):
        assert torch.allclose(a, b, atol=1e-10)


def _graph_functions(tensors) -> set[str]:
    """Names of every autograd node behind ``tensors``."""
    names, seen, stack = set(), set(), [t.grad_fn for t in tensors if t.grad_fn is not None]
    while stack:
        fn = stack.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        names.add(type(fn).__name__)
        stack.extend(nxt for nxt, _ in fn.next_functions)
    return names


@pytest.mark.parametrize("cls,dimensions", CASES, ids=lambda v: getattr(v, "__name__", str(v)))
@pytest.mark.parametrize("channels", [1, 2])
def test_cpu_kernels_switch_gives_the_same_values_and_gradients(cls, dimensions, channels):
    """The CPU kernels (cpu_kernels.py) on and off: same forward and backward, plain ops when off."""
    from invrim.backbones import cpu_kernels
    initial = cpu_kernels.enabled()
    model = make(cls, channels, dimensions).double()
    x = torch.randn(2, channels, *SPATIAL[dimensions], dtype=torch.float64)
    score = torch.randn_like(x)
    results = {}
    for on in (True, False):
        with cpu_kernels.fast_kernels(on):
            assert cpu_kernels.enabled() is on
            inputs = [x.clone().requires_grad_(), score.clone().requires_grad_()]
            outs, h = unroll(model, *inputs)
            loss = sum((i + 1) * o.square().sum() for i, o in enumerate(outs)) + sum(
                t.sum() for t in flat(h))
            functions = _graph_functions([loss])
            grads = torch.autograd.grad(loss, inputs + list(model.parameters()), allow_unused=True)
            results[on] = (outs, flat(h), grads, functions)
    custom = {"_FastTanhEagerBackward", "_FastTanhInplaceEagerBackward", "_ChannelMatmulEagerBackward",
              "_FastTanhBackward", "_FastTanhInplaceBackward", "_ChannelMatmulBackward"}
    assert results[True][3] & custom                       # the kernels ran ...
    assert not results[False][3] & custom                  # ... and with the switch off, none did
    assert "TanhBackward0" in results[False][3]
    for got, expected in zip(results[True][0] + results[True][1], results[False][0] + results[False][1]):
        assert torch.allclose(got, expected, atol=1e-12, rtol=1e-10)
    for got, expected in zip(results[True][2], results[False][2]):
        assert (got is None) == (expected is None)
        if got is not None:
            assert torch.allclose(got, expected, atol=1e-10, rtol=1e-8)
    assert cpu_kernels.enabled() is initial                # the blocks switched back


def test_cpu_kernels_switch_in_float32_and_from_the_environment():
    import os
    import subprocess
    import sys

    from invrim.backbones import cpu_kernels
    model = make(Hourglass, 1, 2)
    x, score = torch.randn(2, 1, 16, 12), torch.randn(2, 1, 16, 12)
    values = []
    for on in (True, False):
        initial = cpu_kernels.set_enabled(on)
        try:
            outs, _ = unroll(model, x, score)
            model.zero_grad()
            sum(o.square().sum() for o in outs).backward()
            values.append((outs[-1].detach(), [p.grad.clone() for p in model.parameters()]))
        finally:
            cpu_kernels.set_enabled(initial)
    assert torch.allclose(values[0][0], values[1][0], atol=1e-5)
    for got, expected in zip(values[0][1], values[1][1]):
        assert torch.allclose(got, expected, atol=1e-4, rtol=1e-3)
    code = "from invrim.backbones import cpu_kernels; print(cpu_kernels.enabled())"
    for env, expected in (("0", "False"), ("1", "True")):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                             env={**os.environ, "INVRIM_FAST_KERNELS": env})
        assert out.stdout.strip() == expected, out.stderr


def test_activation_lookup():
    for name in ["tanh", "relu", "elu", "silu", "swish", "gelu", "sigmoid", "leaky_relu", "TANH"]:
        fn = get_activation(name)
        assert fn(torch.zeros(2)).shape == (2,)
    with pytest.raises(ValueError, match="available"):
        get_activation("softplusplus")


@pytest.mark.parametrize("dimensions", [0, 1, 2, 3])
def test_conv_gru_matches_reference_equations(dimensions):
    gru = ConvGRU(3, 4, dimensions, kernel_size=3).double()
    spatial = SPATIAL[dimensions][:dimensions] if dimensions < 3 else (5, 4, 3)
    x = torch.randn(2, 3, *spatial, dtype=torch.float64)
    h = torch.randn(2, 4, *spatial, dtype=torch.float64)
    gx = gru.w(x)
    z = torch.sigmoid(gx[:, :4] + gru.u_zr(h)[:, :4])
    r = torch.sigmoid(gx[:, 4:8] + gru.u_zr(h)[:, 4:])
    cand = torch.tanh(gx[:, 8:] + gru.u_h(r * h))
    expected = (1 - z) * h + z * cand
    assert torch.allclose(gru(x, h), expected, atol=1e-12)
    # exactly three convolutions (fused gates), biases once
    convs = [m for m in gru.modules() if m is not gru]
    assert len(convs) == 3
    assert gru.u_zr.bias is None and gru.u_h.bias is None


# --------------------------------------------------------------------------- RIMCell: steps, step size
def _tiny_cell(**overrides) -> RIMCell:
    return RIMCell(1, dimensions=2, hidden_channels=4, **overrides)


def _tiny_rim(cell: RIMCell, T: int = 3, **settings):
    from invrim import RIM
    return RIM((8, 8), cell, score_fn=lambda x, y: y - x, T=T, **settings)


@pytest.mark.parametrize("steps", [None, 1, 3])
@pytest.mark.parametrize("learned_step_size", [False, True])
def test_rim_cell_steps_shapes(steps, learned_step_size):
    cell = _tiny_cell(steps=steps, learned_step_size=learned_step_size)
    assert cell.steps == steps and cell.learned_step_size is learned_step_size
    x = torch.randn(2, 1, 8, 8)
    h0 = cell.init_hidden(x)
    h = h0
    for t in range(steps or 3):
        dx, h = cell(x, torch.randn_like(x), h, step=t)
        assert dx.shape == x.shape and torch.isfinite(dx).all()
    assert [t.shape for t in h] == [t.shape for t in h0] == [(2, 4, 8, 8)] * 2
    if learned_step_size:
        assert cell.step_size.shape == (steps or 1,) and not cell.step_size.any()
    else:
        assert not hasattr(cell, "step_size")
    n_shared = sum(p.numel() for p in _tiny_cell().parameters())
    n = sum(p.numel() for p in cell.parameters())
    assert n == n_shared * (steps or 1) + (steps or 1) * learned_step_size


def test_rim_cell_shared_weights_keep_their_names():
    keys = list(_tiny_cell().state_dict())
    assert keys[0] == "convs.0.weight" and "output_layer.bias" in keys
    assert not any(k.startswith("blocks.") for k in keys)
    per_step = list(_tiny_cell(steps=2).state_dict())
    assert "blocks.1.output_layer.weight" in per_step and "convs.0.weight" not in per_step


@pytest.mark.parametrize("steps", [None, 3])
def test_rim_cell_steps_config_round_trip(steps):
    cell = _tiny_cell(steps=steps, learned_step_size=True)
    with torch.no_grad():
        cell.step_size.uniform_(0.1, 1.0)                       # non-zero, so it is compared too
    config = json.loads(json.dumps(cell.config()))
    assert config["steps"] == steps and config["learned_step_size"] is True
    rebuilt = RIMCell(**config)
    assert rebuilt.config() == cell.config()
    buffer = io.BytesIO()
    torch.save(cell.state_dict(), buffer)
    buffer.seek(0)
    rebuilt.load_state_dict(torch.load(buffer), strict=True)
    x, score = torch.randn(2, 1, 8, 8), torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        for t in range(steps or 1):
            expected = cell(x, score, cell.init_hidden(x), step=t)[0]
            assert torch.equal(rebuilt(x, score, rebuilt.init_hidden(x), step=t)[0], expected)


def test_rim_cell_steps_use_different_weights_and_all_train():
    cell = _tiny_cell(steps=3)
    x, score = torch.randn(2, 1, 8, 8), torch.randn(2, 1, 8, 8)
    h = cell.init_hidden(x)
    with torch.no_grad():
        dx0, _ = cell(x, score, h, step=0)
        dx1, _ = cell(x, score, h, step=1)
    assert not torch.allclose(dx0, dx1)

    rim = _tiny_rim(cell, T=3)
    y, x_true = torch.randn(2, 1, 8, 8), torch.randn(2, 1, 8, 8)
    rim.loss_fn(y, x_true).backward()
    for t, block in enumerate(cell.blocks):
        # (per block, not per parameter: at step 0 h = 0, so the GRUs' hidden convs get no gradient)
        norms = [p.grad.norm() for p in block.parameters()]
        assert all(torch.isfinite(n) for n in norms), f"step {t}"
        assert sum(norms) > 0, f"no gradient reached the weights of step {t}"
        assert block.output_layer.weight.grad.norm() > 0


def test_rim_cell_steps_fewer_than_T_is_refused():
    with pytest.raises(ValueError, match="steps"):
        _tiny_rim(_tiny_cell(steps=3), T=4)
    _tiny_rim(_tiny_cell(steps=3), T=2)                          # fewer steps than copies is fine


def test_rim_cell_step_argument_errors():
    cell = _tiny_cell(steps=2)
    x = torch.randn(1, 1, 8, 8)
    h = cell.init_hidden(x)
    with pytest.raises(TypeError, match="step="):
        cell(x, x, h)
    with pytest.raises(ValueError, match="out of range"):
        cell(x, x, h, step=2)
    for bad in (-1, 1.0, True, "0"):
        with pytest.raises(ValueError, match="step"):
            cell(x, x, h, step=bad)
    shared = _tiny_cell()
    assert torch.equal(shared(x, x, h, step=7)[0], shared(x, x, h)[0])  # shared: step is ignored


@pytest.mark.parametrize("kwargs,argument", [
    (dict(steps=0), "steps"), (dict(steps=-2), "steps"), (dict(steps=2.0), "steps"),
    (dict(steps=True), "steps"), (dict(steps="3"), "steps"),
    (dict(learned_step_size=1), "learned_step_size"), (dict(learned_step_size="yes"), "learned_step_size"),
])
def test_rim_cell_bad_steps_options(kwargs, argument):
    with pytest.raises(ValueError, match=argument) as info:
        RIMCell(1, **kwargs)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("steps", [None, 2])
def test_rim_cell_learned_step_size_starts_as_a_no_op_and_learns(steps):
    plain = _tiny_cell(steps=steps)
    cell = _tiny_cell(steps=steps, learned_step_size=True)
    missing, unexpected = cell.load_state_dict(plain.state_dict(), strict=False)
    assert missing == ["step_size"] and not unexpected
    x, score = torch.randn(2, 1, 8, 8), torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        for t in range(steps or 1):
            expected = plain(x, score, plain.init_hidden(x), step=t)[0]
            assert torch.equal(cell(x, score, cell.init_hidden(x), step=t)[0], expected)

    rim = _tiny_rim(cell, T=steps or 2)
    optimizer = torch.optim.SGD(cell.parameters(), lr=0.1)
    rim.loss_fn(torch.randn(2, 1, 8, 8), torch.randn(2, 1, 8, 8)).backward()
    optimizer.step()
    assert (cell.step_size != 0).all()
    weights = {k: v for k, v in cell.state_dict().items() if k != "step_size"}
    plain.load_state_dict(weights)                               # the trained net without the step
    with torch.no_grad():                                        # dx = net(x, score, h) + alpha_t score
        for t in range(steps or 1):
            expected = plain(x, score, plain.init_hidden(x), step=t)[0] + cell.step_size[t] * score
            got = cell(x, score, cell.init_hidden(x), step=t)[0]
            assert torch.allclose(got, expected, atol=1e-6)


def test_rim_cell_steps_with_gradient_checkpointing():
    torch.manual_seed(0)
    cell = _tiny_cell(steps=3, learned_step_size=True)
    reference = copy.deepcopy(cell)
    y, x_true = torch.randn(2, 1, 8, 8), torch.randn(2, 1, 8, 8)
    losses = []
    for model, recompute in ((cell, True), (reference, False)):
        loss = _tiny_rim(model, T=3, gradient_checkpointing=recompute).loss_fn(y, x_true)
        loss.backward()
        losses.append(loss.detach())
    assert torch.allclose(losses[0], losses[1])
    for p, q in zip(cell.parameters(), reference.parameters()):
        assert torch.allclose(p.grad, q.grad, atol=1e-6)
    assert all(block.output_layer.weight.grad.norm() > 0 for block in cell.blocks)


def test_conformance_kit_runs_a_backbone_with_weights_per_step():
    from invrim.plugins.testing import check_backbone
    ran = check_backbone(RIMCell, channels=1, dimensions=(2,), hidden_channels=4, steps=3, learned_step_size=True)
    assert ran == ["rim_cell[2-D]"]


def test_a_run_saved_before_an_option_existed_loads_with_model_given(tmp_path):
    """A run folder whose saved backbone config lacks options added later (at their defaults) still
    accepts model=... of the same network; a real difference is still refused."""
    import json
    from invrim import RIM
    from invrim.runs import CheckpointError, RunFolder
    torch.manual_seed(0)
    cell = RIMCell(1, dimensions=2, hidden_channels=4)
    rim = RIM((8, 8), cell, score_fn=lambda x, y: y - x, T=2)
    y = torch.randn(4, 1, 8, 8)
    rim.fit(torch.utils.data.TensorDataset(y, y), epochs=1, batch_size=4, run_dir=tmp_path / "run", progress=False)
    model_json = tmp_path / "run" / "model.json"
    saved = json.loads(model_json.read_text())
    for key in ("steps", "learned_step_size"):
        saved["backbone"]["config"].pop(key)
    model_json.write_text(json.dumps(saved))
    model, _ = RunFolder(tmp_path / "run").load_backbone(RIMCell(1, dimensions=2, hidden_channels=4))
    assert model.steps is None
    with pytest.raises(CheckpointError, match="steps"):
        RunFolder(tmp_path / "run").load_backbone(RIMCell(1, dimensions=2, hidden_channels=4, steps=2))
