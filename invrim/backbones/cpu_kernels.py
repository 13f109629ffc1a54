"""CPU-specific autograd kernels of the backbones, behind one switch.

Two custom ``torch.autograd.Function`` s replace plain torch ops on CPU tensors:

* ``_FastTanh`` / ``_FastTanhInplace``: ``tanh(x) = 2 sigmoid(2x) - 1``. PyTorch's CPU ``tanh``
  kernel is several times slower than its ``sigmoid``; the backward is ``tanh_backward`` of the
  saved output, as for ``torch.tanh``.
* ``_ChannelMatmul``: a kernel-1 convolution of channels-last input as a matrix product over the
  channels (a matrix-vector product for one output channel, the RIM update of a single-channel
  image), with a backward that avoids rank-1 GEMMs. oneDNN's 1x1 convolution with few output
  channels is several times slower, backward included.

Both are ``setup_context``-style Functions (the style ``torch.func`` needs), each with a
classic-style *eager twin* used outside ``torch.func`` transforms: ``Function.apply`` of the
former binds ``forward``'s signature with ``inspect`` on every call (about 30 us, 0.4 ms per RIM
step of the default hourglass). Telling the two cases apart uses a private PyTorch function,
``torch._C._are_functorch_transforms_active``; where it is missing, the original is always used.

Why they exist (the benchmark that justifies them): ``benchmarks/bench_torch_rim.py``, whose
results, in ``benchmarks/RESULTS.md``, section "Where the training time goes", record the gains:
the profile table (element-wise ops 5.2 ms per RIM step against 14.2 in torch-rim, whose ``tanh``
alone takes 9.0; the output 1x1 conv 0.5 ms "as a matmul" against 1.4) and the bullets "Fast tanh"
and "Output layer and ``autograd.Function`` overhead (landed, commit 8f9c4d9)" (0.86 -> 0.5 ms
per RIM step at T=40 for the output layer; a tiny 8x8 training step 2.1 -> 1.9 ms per RIM step with
the eager twins). To measure them again, run the benchmark with and without
``INVRIM_FAST_KERNELS=0``.

The switch. With the kernels off, :func:`invrim.backbones.layers.fast_tanh`, ``fast_tanh_`` and
``pointwise_conv`` run ``torch.tanh``, ``Tensor.tanh_`` and ``F.conv1d/2d/3d``: the same values
within float rounding, and no private PyTorch API is touched. The kernels are on unless the
environment variable ``INVRIM_FAST_KERNELS`` is ``0`` when this module is first imported; an
application may also call :func:`set_enabled` (or use :func:`fast_kernels` around a block). The
library itself never changes the switch. It is read when a layer runs forward (a recorded graph
keeps the backward of the path it took); it is one setting for the whole process, so set it
before starting threads that run models.
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Optional

import torch
from torch import Tensor

__all__ = ["enabled", "fast_kernels", "set_enabled"]

_enabled = os.environ.get("INVRIM_FAST_KERNELS", "1") != "0"


def enabled() -> bool:
    """Whether the CPU kernels are used (``INVRIM_FAST_KERNELS`` / :func:`set_enabled`)."""
    return _enabled


def set_enabled(flag: bool) -> bool:
    """Turn the CPU kernels on or off for the process (an application's call); returns the old value."""
    global _enabled
    previous, _enabled = _enabled, bool(flag)
    return previous


@contextlib.contextmanager
def fast_kernels(flag: bool) -> Iterator[None]:
    """``with fast_kernels(False): ...`` runs the block with the kernels switched, then switches back."""
    previous = set_enabled(flag)
    try:
        yield
    finally:
        set_enabled(previous)


# --------------------------------------------------------------------------- eager twins
_functorch_active = getattr(torch._C, "_are_functorch_transforms_active", None)


def _with_eager_twin(cls: type) -> type:
    """Give a ``setup_context``-style ``Function`` a classic-style twin ``cls.eager``."""

    def forward(ctx, *args):
        out = cls.forward(*args)
        cls.setup_context(ctx, args, out)
        return out

    cls.eager = type(cls.__name__ + "Eager", (torch.autograd.Function,), {
        "forward": staticmethod(forward),
        "backward": staticmethod(cls.backward),
        "jvp": staticmethod(cls.jvp),
        "__doc__": f"Classic-style twin of :class:`{cls.__name__}` (see ``_with_eager_twin``).",
    })
    return cls


def _apply(cls: type, *args: Optional[Tensor]) -> Tensor:
    """``cls.apply(*args)``, through the twin when no torch.func transform is active."""
    if _functorch_active is not None and not _functorch_active():
        return cls.eager.apply(*args)
    return cls.apply(*args)


# --------------------------------------------------------------------------- tanh
@_with_eager_twin
class _FastTanh(torch.autograd.Function):
    """tanh(x) = 2 sigmoid(2x) - 1; the CPU ``tanh`` kernel is ~5x slower than ``sigmoid``."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x: Tensor) -> Tensor:  # type: ignore[override]
        return torch.mul(x, 2.0).sigmoid_().mul_(2.0).sub_(1.0)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:  # type: ignore[override]
        ctx.save_for_backward(output)
        ctx.save_for_forward(output)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        (y,) = ctx.saved_tensors
        return torch.ops.aten.tanh_backward(grad, y)

    @staticmethod
    def jvp(ctx, tangent: Tensor) -> Tensor:  # type: ignore[override]
        (y,) = ctx.saved_tensors
        return torch.ops.aten.tanh_backward(tangent, y)


@_with_eager_twin
class _FastTanhInplace(_FastTanh):
    """In-place variant of :class:`_FastTanh` (for freshly computed pre-activations); same backward."""

    @staticmethod
    def forward(x: Tensor) -> Tensor:  # type: ignore[override]
        return x.mul_(2.0).sigmoid_().mul_(2.0).sub_(1.0)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:  # type: ignore[override]
        ctx.mark_dirty(inputs[0])
        ctx.save_for_backward(output)
        ctx.save_for_forward(output)

    @staticmethod
    def jvp(ctx, tangent: Tensor) -> Tensor:  # type: ignore[override]
        (y,) = ctx.saved_tensors
        return tangent.mul_(1.0 - y * y)  # in-place functions update their tangent in place


def tanh(x: Tensor) -> Tensor:
    """``tanh`` of a CPU tensor through ``sigmoid`` (the kernel behind ``layers.fast_tanh``)."""
    if x.requires_grad and torch.is_grad_enabled():
        return _apply(_FastTanh, x)
    return torch.mul(x, 2.0).sigmoid_().mul_(2.0).sub_(1.0)


def tanh_(x: Tensor) -> Tensor:
    """In-place :func:`tanh`; ``x`` must be a fresh intermediate (e.g. a conv output)."""
    if x.requires_grad and torch.is_grad_enabled():
        return _apply(_FastTanhInplace, x)
    return x.mul_(2.0).sigmoid_().mul_(2.0).sub_(1.0)


# --------------------------------------------------------------------------- 1x1 convolution
@_with_eager_twin
class _ChannelMatmul(torch.autograd.Function):
    """``out[b, :, *s] = W @ x[b, :, *s] + bias`` on channels-last ``x``, through 2-D views.

    Unlike ``F.linear`` on the moved axes, the backward treats one output channel (the usual
    case: a RIM update of a single-channel image) as a broadcast product and a matrix-vector
    product instead of rank-1 GEMMs, about 3x faster there.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(x: Tensor, weight: Tensor, bias: Optional[Tensor]) -> Tensor:  # type: ignore[override]
        x2d = x.movedim(1, -1).reshape(-1, x.shape[1])
        if weight.shape[0] == 1:                    # matrix-vector product
            out = (x2d @ weight[0] if bias is None else torch.addmv(bias, x2d, weight[0])).unsqueeze(-1)
        else:
            out = x2d @ weight.t() if bias is None else torch.addmm(bias, x2d, weight.t())
        return out.view(*x.shape[:1], *x.shape[2:], weight.shape[0]).movedim(-1, 1)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:  # type: ignore[override]
        x, weight, bias = inputs
        ctx.save_for_backward(x, weight)
        ctx.save_for_forward(x, weight)
        ctx.has_bias = bias is not None

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        x, weight = ctx.saved_tensors
        c_out, c_in = weight.shape
        g2d = grad.movedim(1, -1).reshape(-1, c_out)
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            gx = g2d * weight if c_out == 1 else g2d @ weight          # (N, C_in)
            grad_x = gx.view(*x.shape[:1], *x.shape[2:], c_in).movedim(-1, 1)
        if ctx.needs_input_grad[1]:
            x2d = x.movedim(1, -1).reshape(-1, c_in)
            grad_w = (x2d.t() @ g2d[:, 0]).unsqueeze(0) if c_out == 1 else g2d.t() @ x2d
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = g2d.sum(0)
        return grad_x, grad_w, grad_b

    @staticmethod
    def jvp(ctx, x_t: Optional[Tensor], w_t: Optional[Tensor], b_t: Optional[Tensor]) -> Tensor:  # type: ignore[override]
        x, weight = ctx.saved_tensors
        out = torch.zeros((), dtype=x.dtype, device=x.device)
        if x_t is not None:
            out = out + _ChannelMatmul.forward(x_t, weight, None)
        if w_t is not None:
            out = out + _ChannelMatmul.forward(x, w_t, None)
        if b_t is not None:
            out = out + b_t.view(1, -1, *([1] * (x.dim() - 2)))
        return out.expand(x.shape[0], weight.shape[0], *x.shape[2:])


def channel_matmul(x: Tensor, weight: Tensor, bias: Optional[Tensor]) -> Tensor:
    """A kernel-1 convolution with ``weight`` of shape ``(C_out, C_in)`` as a matrix product."""
    return _apply(_ChannelMatmul, x, weight, bias)
