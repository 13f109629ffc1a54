"""The seed's hourglass backbone (encoder, GRU block at the bottom, decoder), bug-fixed."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional

import torch
from torch import Tensor, nn

from .base import Backbone
from .layers import (
    ConvGRU,
    Downsample,
    Upsample,
    as_int_list,
    check_dimensions,
    check_kernel_size,
    check_output_scale,
    check_positive,
    conv_nd,
    fast_tanh_,
    get_activation,
    pointwise_conv,
    scale_initial_output,
    use_channels_last,
)

__all__ = ["GRUBlock", "Hourglass"]


class GRUBlock(nn.Module):
    """Two stacked GRUs (Morningstar et al. 2019), as in the seed's ``GRUBlock``.

    The hidden state has ``hidden_units`` channels: the concatenation of both GRUs' states
    (``hidden_units // 2`` each). Unlike the seed, which returned the *old* state of the first
    GRU, both *new* states are returned.

    Parameters
    ----------
    channels : int
        Channels of the block's input and output.
    hidden_units : int
        Total hidden channels (even).
    dimensions : int
        Spatial axes (0 to 3).
    kernel_size : int
        Kernel of the GRU convolutions.
    conv_kernel_size : int
        Kernel of the convolutions between and after the GRUs.
    """

    def __init__(self, channels: int, hidden_units: int, dimensions: int, kernel_size: int = 3,
                 conv_kernel_size: int = 3) -> None:
        super().__init__()
        if hidden_units % 2:
            raise ValueError(f"hidden_units must be even (two GRUs of hidden_units // 2), got {hidden_units}")
        half = hidden_units // 2
        self.gru1 = ConvGRU(channels, half, dimensions, kernel_size)
        self.gru2 = ConvGRU(half, half, dimensions, kernel_size)
        self.hidden_layer = conv_nd(dimensions, half, half, conv_kernel_size, bias=False)
        self.reshape_layer = conv_nd(dimensions, half, channels, conv_kernel_size, bias=False)

    def forward(self, x: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        h1, h2 = h.chunk(2, dim=1)
        h1 = self.gru1(x, h1)
        h2 = self.gru2(fast_tanh_(self.hidden_layer(h1)), h2)
        return self.reshape_layer(h2), torch.cat([h1, h2], dim=1)


class _Level(nn.Module):
    """``num_layers`` activated convolutions at one resolution plus the resampling layer."""

    def __init__(self, convs: list[nn.Module], resample: nn.Module) -> None:
        super().__init__()
        self.convs = nn.ModuleList(convs)
        self.resample = resample


class Hourglass(Backbone):
    """Hourglass RIM backbone: conv encoder, recurrent GRU block at the bottom, conv decoder.

    Input convolution ``2C -> nf`` on ``[x, score]``; for every entry of ``ch_mult`` an encoder
    level of ``num_layers`` convolutions followed by a stride-2 downsampling that multiplies
    the channels; a :class:`GRUBlock` at the coarsest resolution; a mirrored decoder with
    upsampling back to the exact encoder sizes (any size works, odd ones included); a kernel-1
    output convolution to ``C`` channels. With ``dimensions=0`` the same graph is built from
    dense layers for parameter vectors ``(B, C)`` (no resampling; ``ch_mult`` still widens).

    Parameters
    ----------
    channels : int
        Channels ``C`` of ``x``.
    dimensions : int
        Spatial axes of ``x`` (0 to 3).
    nf : int
        Channels after the input convolution.
    ch_mult : sequence of int
        Channel multiplier of each resolution level.
    hidden_units : int
        Channels of the hidden state (even: two GRUs of ``hidden_units // 2``).
    num_layers : int
        Convolutions per level in the encoder and in the decoder.
    kernel_size : int
        Kernel of the convolutions (odd).
    conv_kernel_size : int, optional
        Kernel of the GRU block's non-recurrent convolutions (default ``kernel_size``).
    input_kernel_size : int, optional
        Kernel of the input convolution (default ``kernel_size``).
    activation : str
        Activation name (see :data:`invrim.backbones.layers.ACTIVATIONS`).
    resample_with_conv : bool
        Strided / transposed convolutions (True) or average pooling / nearest interpolation
        followed by a convolution (False).
    output_scale : float
        The output convolution starts with PyTorch's default initial weights and bias times this:
        0.1 (the default) keeps an untrained RIM's updates small, so training starts near the RIM's
        initial estimate (the Tikhonov start, the FBP) instead of undoing random updates; on the
        quality benchmark it trained better at every evaluation point of 60 steps on four problems
        and at all but one on a fifth, and tied after 4 minutes (``benchmarks/QUALITY.md``). 1 is
        torch-rim's initialisation; 0 stalls learning (no gradient reaches the other layers at first).
    """

    name = "hourglass"

    def __init__(
        self,
        channels: int,
        dimensions: int = 1,
        nf: int = 32,
        ch_mult: Sequence[int] = (2, 2),
        hidden_units: int = 32,
        num_layers: int = 2,
        kernel_size: int = 3,
        conv_kernel_size: Optional[int] = None,
        input_kernel_size: Optional[int] = None,
        activation: str = "tanh",
        resample_with_conv: bool = True,
        output_scale: float = 0.1,
    ) -> None:
        super().__init__()
        check_positive(channels, "channels")
        check_dimensions(dimensions, owner="Hourglass ")
        check_positive(nf, "nf")
        ch_mult = as_int_list(ch_mult, "ch_mult")
        check_positive(hidden_units, "hidden_units")
        if hidden_units % 2:
            raise ValueError(
                f"hidden_units must be even (two GRUs of hidden_units // 2), got {hidden_units}"
            )
        if isinstance(num_layers, bool) or not isinstance(num_layers, int) or num_layers < 0:
            raise ValueError(f"num_layers must be a non-negative integer, got {num_layers!r}")
        check_kernel_size(kernel_size, "kernel_size")
        conv_kernel_size = kernel_size if conv_kernel_size is None else conv_kernel_size
        input_kernel_size = kernel_size if input_kernel_size is None else input_kernel_size
        check_kernel_size(conv_kernel_size, "conv_kernel_size")
        check_kernel_size(input_kernel_size, "input_kernel_size")
        self.act = get_activation(activation, inplace=True)
        if not isinstance(resample_with_conv, bool):
            raise ValueError(f"resample_with_conv must be a bool, got {resample_with_conv!r}")

        self.channels = channels
        self.dimensions = dimensions
        self.nf = nf
        self.ch_mult = ch_mult
        self.hidden_units = hidden_units
        self.num_layers = num_layers
        self.kernel_size = kernel_size
        self.conv_kernel_size = conv_kernel_size
        self.input_kernel_size = input_kernel_size
        self.activation = activation.lower()
        self.resample_with_conv = resample_with_conv
        self.output_scale = check_output_scale(output_scale)
        # a flag, not the torch.memory_format itself: torch.save cannot pickle memory formats
        self._channels_last = use_channels_last(dimensions)

        d = dimensions
        self.input_layer = conv_nd(d, 2 * channels, nf, input_kernel_size)
        encoder = []
        c = nf
        for mult in ch_mult:
            convs = [conv_nd(d, c, c, kernel_size) for _ in range(num_layers)]
            encoder.append(_Level(convs, Downsample(d, c, c * mult, kernel_size, resample_with_conv)))
            c *= mult
        self.encoder = nn.ModuleList(encoder)
        self.gru_layer = GRUBlock(c, hidden_units, d, kernel_size, conv_kernel_size)
        decoder = []
        for mult in reversed(ch_mult):
            up = Upsample(d, c, c // mult, kernel_size, resample_with_conv)
            c //= mult
            decoder.append(_Level([conv_nd(d, c, c, kernel_size) for _ in range(num_layers)], up))
        self.decoder = nn.ModuleList(decoder)
        self.output_layer = conv_nd(d, c, channels, 1)
        scale_initial_output(self.output_layer, self.output_scale)
        if self._channels_last:          # weights in the activations' layout: no per-call reorders
            self.to(memory_format=torch.channels_last)

    def forward(self, x: Tensor, score: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        act = self.act
        y = torch.cat([x, score], dim=1)
        if self._channels_last:
            y = y.contiguous(memory_format=torch.channels_last)
        y = act(self.input_layer(y))
        sizes = []
        for level in self.encoder:
            for conv in level.convs:
                y = act(conv(y))
            sizes.append(y.shape[2:])
            y = level.resample(y)
        y, h = self.gru_layer(y, h)
        for level in self.decoder:
            y = level.resample(y, sizes.pop())
            for conv in level.convs:
                y = act(conv(y))
        if self._channels_last:
            return pointwise_conv(self.output_layer, y).contiguous(), h
        return self.output_layer(y), h

    def hidden_shape(self, x: Tensor) -> tuple[int, ...]:
        """Shape of the hidden state for a batch shaped like ``x``."""
        spatial = list(x.shape[2:])
        for _ in self.ch_mult:
            spatial = [(n + 1) // 2 for n in spatial]
        return (x.shape[0], self.hidden_units, *spatial)

    def init_hidden(self, x: Tensor) -> Tensor:
        """Zero hidden state (``(B, hidden_units, *coarsest spatial)``) on ``x``'s device/dtype."""
        self.check_input(x)
        h = torch.zeros(self.hidden_shape(x), device=x.device, dtype=x.dtype)
        if self._channels_last:
            h = h.contiguous(memory_format=torch.channels_last)
        return h

    def config(self) -> dict[str, Any]:
        return {
            "channels": self.channels,
            "dimensions": self.dimensions,
            "nf": self.nf,
            "ch_mult": list(self.ch_mult),
            "hidden_units": self.hidden_units,
            "num_layers": self.num_layers,
            "kernel_size": self.kernel_size,
            "conv_kernel_size": self.conv_kernel_size,
            "input_kernel_size": self.input_kernel_size,
            "activation": self.activation,
            "resample_with_conv": self.resample_with_conv,
            "output_scale": self.output_scale,
        }
