"""Shared building blocks of the backbones: conv factories, activations and a fused ConvGRU.

Everything here works for 0 to 3 spatial axes; ``dimensions=0`` means dense layers acting
on ``(B, C)`` tensors (``nn.Linear`` in place of convolutions).
"""
from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import cpu_kernels

__all__ = [
    "ACTIVATIONS",
    "ConvGRU",
    "Downsample",
    "Upsample",
    "as_int_list",
    "check_dimensions",
    "check_kernel_size",
    "check_positive",
    "conv_nd",
    "conv_transpose_nd",
    "fast_tanh",
    "fast_tanh_",
    "get_activation",
    "pointwise_conv",
    "use_channels_last",
]

_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
_CONV_T = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}
_CONV_FN = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_CONV_T_FN = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}
_AVG_POOL = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}
# (functions are looked up at call time rather than stored on modules: builtins do not pickle)


# --------------------------------------------------------------------------- validation
def check_dimensions(dimensions: int, allowed: Sequence[int] = (0, 1, 2, 3), owner: str = "") -> int:
    """Validate the number of spatial axes."""
    if isinstance(dimensions, bool) or not isinstance(dimensions, int) or dimensions not in allowed:
        allowed_s = ", ".join(str(a) for a in allowed)
        raise ValueError(f"{owner}dimensions must be one of {allowed_s}, got {dimensions!r}")
    return dimensions


def check_positive(value: int, argument: str) -> int:
    """Validate a strictly positive integer argument (sizes, counts)."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{argument} must be a positive integer, got {value!r}")
    return value


def check_kernel_size(value: int, argument: str = "kernel_size") -> int:
    """Validate an odd, positive kernel size (odd sizes keep 'same' padding symmetric)."""
    check_positive(value, argument)
    if value % 2 == 0:
        raise ValueError(f"{argument} must be odd, got {value}")
    return value


def check_output_scale(value: float) -> float:
    """Validate a backbone's ``output_scale`` (a non-negative, finite number) and return it as float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < float("inf"):
        raise ValueError(f"output_scale must be a non-negative number, got {value!r}")
    return float(value)


def scale_initial_output(layer: nn.Module, scale: float) -> None:
    """Multiply a freshly initialised output layer's weight and bias by ``scale``.

    Applied after PyTorch's default initialisation, so the random draws (and everything drawn after
    them) are those of an unscaled network; a small scale keeps an untrained RIM near its start.
    """
    with torch.no_grad():
        layer.weight.mul_(scale)
        if layer.bias is not None:
            layer.bias.mul_(scale)


def as_int_list(value: int | Sequence[int], argument: str, length: Optional[int] = None) -> list[int]:
    """Turn an int or a sequence (tuple or JSON list) into a list of positive ints."""
    if isinstance(value, int) and not isinstance(value, bool):
        if length is None:
            raise ValueError(f"{argument} must be a sequence of positive integers, got {value!r}")
        values = [value] * length
    else:
        try:
            values = list(value)
        except TypeError:
            raise ValueError(f"{argument} must be an int or a sequence of ints, got {value!r}") from None
    if length is not None and len(values) != length:
        raise ValueError(f"{argument} must have {length} entries, got {len(values)}")
    for v in values:
        check_positive(v, argument)
    return [int(v) for v in values]


# --------------------------------------------------------------------------- activations
# The CPU paths of fast_tanh / fast_tanh_ / pointwise_conv are custom autograd kernels in
# cpu_kernels.py, behind its switch (INVRIM_FAST_KERNELS=0 or cpu_kernels.set_enabled(False)).
def fast_tanh(x: Tensor) -> Tensor:
    """Hyperbolic tangent, computed through ``sigmoid`` on CPU (same values, much faster).

    Plain ``torch.tanh`` on other devices or with :mod:`~invrim.backbones.cpu_kernels` switched off.
    """
    if x.device.type != "cpu" or not cpu_kernels.enabled() or torch.compiler.is_compiling():
        return torch.tanh(x)
    return cpu_kernels.tanh(x)


def fast_tanh_(x: Tensor) -> Tensor:
    """In-place :func:`fast_tanh`; ``x`` must be a fresh intermediate (e.g. a conv output)."""
    if x.device.type != "cpu" or not cpu_kernels.enabled() or torch.compiler.is_compiling():
        return x.tanh_()
    return cpu_kernels.tanh_(x)


def _relu(x: Tensor) -> Tensor:
    return F.relu(x)


def _relu_(x: Tensor) -> Tensor:
    return x.relu_()


def _elu(x: Tensor) -> Tensor:
    return F.elu(x)


def _elu_(x: Tensor) -> Tensor:
    return F.elu(x, inplace=True)


def _silu(x: Tensor) -> Tensor:
    return F.silu(x)


def _gelu(x: Tensor) -> Tensor:
    return F.gelu(x)


def _sigmoid(x: Tensor) -> Tensor:
    return torch.sigmoid(x)


def _sigmoid_(x: Tensor) -> Tensor:
    return x.sigmoid_()


def _leaky_relu(x: Tensor) -> Tensor:
    return F.leaky_relu(x, 0.01)


def _leaky_relu_(x: Tensor) -> Tensor:
    return F.leaky_relu(x, 0.01, inplace=True)


#: Activation name -> function (module-level functions, so models stay picklable).
ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "tanh": fast_tanh,
    "relu": _relu,
    "elu": _elu,
    "silu": _silu,
    "swish": _silu,
    "gelu": _gelu,
    "sigmoid": _sigmoid,
    "leaky_relu": _leaky_relu,
}

# In-place variants, safe on fresh intermediates whose producer does not need its output for
# the backward pass (convolutions, linear layers). Activations without one fall back.
_INPLACE: dict[str, Callable[[Tensor], Tensor]] = {
    "tanh": fast_tanh_,
    "relu": _relu_,
    "elu": _elu_,
    "sigmoid": _sigmoid_,
    "leaky_relu": _leaky_relu_,
}


def get_activation(name: str, inplace: bool = False) -> Callable[[Tensor], Tensor]:
    """Look an activation up by (case-insensitive) name; ``ValueError`` when unknown.

    With ``inplace=True`` the returned function may overwrite its argument (use it only on
    fresh convolution / linear outputs).
    """
    if not isinstance(name, str) or name.lower() not in ACTIVATIONS:
        close = difflib.get_close_matches(str(name).lower(), ACTIVATIONS, n=3)
        hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
        raise ValueError(
            f"activation {name!r} is not supported{hint}; available: {', '.join(ACTIVATIONS)}"
        )
    key = name.lower()
    if inplace and key in _INPLACE:
        return _INPLACE[key]
    return ACTIVATIONS[key]


# --------------------------------------------------------------------------- conv factories
def use_channels_last(dimensions: int) -> bool:
    """Whether the hourglass runs channels-last: for 2-D only (oneDNN's fast path on CPU).

    Measured on a 2-core CPU: channels-last 2-D convolutions skip oneDNN's layout reorders
    (hourglass training about 15% faster, inference faster still), whereas ``channels_last_3d``
    was an order of magnitude *slower* for 3-D convolutions, and the full-resolution GRUs of
    UNet / RIMCell lose more on channel-sliced elementwise ops than they gain, so those stay
    in the default layout. The 2-D hourglass stores its conv weights channels-last too (about 3 %
    faster training steps: no weight reorder per call); checkpoints are written contiguous.
    """
    return dimensions == 2


def conv_nd(
    dimensions: int,
    in_channels: int,
    out_channels: int,
    kernel_size: int = 3,
    stride: int = 1,
    dilation: int = 1,
    bias: bool = True,
) -> nn.Module:
    """A 'same'-padded convolution (``nn.Linear`` for ``dimensions=0``).

    With ``stride=2`` the padding is ``k // 2``, so the output has ``ceil(n / 2)`` samples.
    """
    if dimensions == 0:
        return nn.Linear(in_channels, out_channels, bias=bias)
    padding = dilation * (kernel_size - 1) // 2
    return _CONV[dimensions](
        in_channels, out_channels, kernel_size, stride=stride, padding=padding,
        dilation=dilation, bias=bias,
    )


def conv_transpose_nd(
    dimensions: int, in_channels: int, out_channels: int, kernel_size: int = 3, bias: bool = True
) -> nn.Module:
    """A stride-2 transposed convolution (output size chosen at call time, see :class:`Upsample`)."""
    return _CONV_T[dimensions](
        in_channels, out_channels, kernel_size, stride=2, padding=kernel_size // 2, bias=bias
    )


def pointwise_conv(conv: nn.Module, x: Tensor) -> Tensor:
    """Apply a kernel-1 convolution ``conv`` to channels-last ``x``.

    On CPU, a matrix product over channels that works on views (no copy) and is several times
    faster than oneDNN's 1x1 convolution with few output channels, backward included; the plain
    convolution on other devices or with :mod:`~invrim.backbones.cpu_kernels` switched off.
    """
    weight = conv.weight
    if (x.device.type != "cpu" or not cpu_kernels.enabled() or torch.is_autocast_enabled("cpu")
            or torch.compiler.is_compiling()):
        return _CONV_FN[weight.dim() - 2](x, weight, conv.bias)   # the fast kernel is fp32 only
    return cpu_kernels.channel_matmul(x, weight.flatten(1), conv.bias)


class Downsample(nn.Module):
    """Halve every spatial axis (``n -> ceil(n / 2)``) and map ``in_channels -> out_channels``.

    ``with_conv=True``: one stride-2 convolution. Otherwise: 2x average pooling followed by a
    stride-1 convolution. ``dimensions=0``: a plain linear layer (no resampling).
    """

    def __init__(self, dimensions: int, in_channels: int, out_channels: int, kernel_size: int = 3,
                 with_conv: bool = True) -> None:
        super().__init__()
        self.dimensions = dimensions
        self.with_conv = with_conv or dimensions == 0
        stride = 2 if (with_conv and dimensions > 0) else 1
        self.conv = conv_nd(dimensions, in_channels, out_channels, kernel_size, stride=stride)

    def forward(self, x: Tensor) -> Tensor:
        if not self.with_conv:
            x = _AVG_POOL[self.dimensions](x, 2, 2, 0, True)  # kernel, stride, padding, ceil_mode
        return self.conv(x)


class Upsample(nn.Module):
    """Double every spatial axis back to an exact target size, ``in_channels -> out_channels``.

    ``with_conv=True``: one stride-2 transposed convolution whose ``output_padding`` is chosen
    from the target size (so odd encoder sizes are restored). Otherwise: nearest-neighbour
    interpolation followed by a convolution. ``dimensions=0``: a plain linear layer.
    """

    def __init__(self, dimensions: int, in_channels: int, out_channels: int, kernel_size: int = 3,
                 with_conv: bool = True) -> None:
        super().__init__()
        self.dimensions = dimensions
        self.with_conv = with_conv or dimensions == 0
        if dimensions == 0:
            self.conv = nn.Linear(in_channels, out_channels)
        elif with_conv:
            self.conv = conv_transpose_nd(dimensions, in_channels, out_channels, kernel_size)
            self._pad = kernel_size // 2
        else:
            self.conv = conv_nd(dimensions, in_channels, out_channels, kernel_size)

    def forward(self, x: Tensor, size: Sequence[int] = ()) -> Tensor:
        if self.dimensions == 0:
            return self.conv(x)
        if not self.with_conv:
            return self.conv(F.interpolate(x, size=tuple(size), mode="nearest"))
        # output = 2 (n - 1) - 2 p + k + output_padding = 2n - 1 + output_padding for k = 2p + 1
        out_pad = [int(s) - 2 * n + 1 for s, n in zip(size, x.shape[2:])]
        conv = self.conv
        return _CONV_T_FN[self.dimensions](x, conv.weight, conv.bias, 2, self._pad, out_pad)


# --------------------------------------------------------------------------- GRU
class ConvGRU(nn.Module):
    """Convolutional GRU cell with fused gate convolutions.

    One convolution maps the input to the three pre-activations (update ``z``, reset ``r``,
    candidate), one maps ``h`` to the ``z, r`` contributions and one computes ``U_h (r * h)``;
    the gate biases live in the input convolution only::

        z, r = sigmoid(W_zr x + U_zr h + b_zr)
        h~   = tanh(W_h x + U_h (r * h) + b_h)
        h'   = (1 - z) * h + z * h~

    Parameters
    ----------
    in_channels, hidden_channels : int
        Channels of the input and of the hidden state.
    dimensions : int
        Spatial axes (0 uses ``nn.Linear``).
    kernel_size : int
        Kernel of the input convolution.
    hidden_kernel_size : int, optional
        Kernel of the hidden-state convolutions (default: ``kernel_size``).
    dilation : int
        Dilation of all convolutions.
    """

    def __init__(self, in_channels: int, hidden_channels: int, dimensions: int = 2,
                 kernel_size: int = 3, hidden_kernel_size: Optional[int] = None,
                 dilation: int = 1) -> None:
        super().__init__()
        check_dimensions(dimensions, owner="ConvGRU ")
        check_positive(in_channels, "in_channels")
        check_positive(hidden_channels, "hidden_channels")
        check_kernel_size(kernel_size)
        hk = kernel_size if hidden_kernel_size is None else hidden_kernel_size
        check_kernel_size(hk, "hidden_kernel_size")
        self.in_channels = in_channels
        self.hidden_channels = hidden_channels
        self.dimensions = dimensions
        self.w = conv_nd(dimensions, in_channels, 3 * hidden_channels, kernel_size, dilation=dilation)
        self.u_zr = conv_nd(dimensions, hidden_channels, 2 * hidden_channels, hk, dilation=dilation,
                            bias=False)
        self.u_h = conv_nd(dimensions, hidden_channels, hidden_channels, hk, dilation=dilation,
                           bias=False)
        self._split = [2 * hidden_channels, hidden_channels]

    def forward(self, x: Tensor, h: Tensor) -> Tensor:
        """Return the new hidden state (which is also the cell's output)."""
        gx_zr, gx_h = self.w(x).split(self._split, dim=1)
        zr = torch.add(gx_zr, self.u_zr(h)).sigmoid_()
        z, r = zr.chunk(2, dim=1)
        candidate = fast_tanh_(torch.add(gx_h, self.u_h(r * h)))
        if candidate.dtype != h.dtype:            # under autocast: the state stays in its own precision
            candidate, z = candidate.to(h.dtype), z.to(h.dtype)
        return torch.lerp(h, candidate, z)
