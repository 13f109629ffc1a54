"""A U-Net backbone with a convolutional GRU at every resolution level."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional, Union

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
    get_activation,
    scale_initial_output,
)

__all__ = ["UNet", "Unet"]


class _EncoderLevel(nn.Module):
    def __init__(self, down: Optional[nn.Module], convs: list[nn.Module], gru: ConvGRU) -> None:
        super().__init__()
        self.down = down
        self.convs = nn.ModuleList(convs)
        self.gru = gru


class _DecoderLevel(nn.Module):
    def __init__(self, up: nn.Module, merge: nn.Module, convs: list[nn.Module]) -> None:
        super().__init__()
        self.up = up
        self.merge = merge
        self.convs = nn.ModuleList(convs)


class UNet(Backbone):
    """U-Net RIM backbone with skip connections and a conv-GRU at each resolution level.

    Encoder level ``i`` (channels ``nf * ch_mult[i]``): a stride-2 downsampling (except at the
    first level), ``num_layers`` convolutions and a :class:`~invrim.backbones.layers.ConvGRU`
    whose new state feeds the next level and, as a skip connection, the decoder. The decoder
    upsamples back to the exact encoder sizes, merges the skip (convolution over the
    concatenation) and applies ``num_layers - 1`` more convolutions; a final convolution maps
    to ``C`` channels. The hidden state is a tuple with one tensor per level.

    Parameters
    ----------
    channels : int
        Channels ``C`` of ``x``.
    dimensions : int
        Spatial axes of ``x`` (1 to 3).
    nf : int
        Base number of channels.
    ch_mult : sequence of int
        Channel multiplier of each level (its length is the number of levels).
    hidden_units : int or sequence of int, optional
        GRU channels of each level (one int for all levels); default: the level's channels.
    num_layers : int
        Convolutions per level.
    kernel_size : int
        Kernel of the convolutions (odd).
    gru_kernel_size : int, optional
        Kernel of the GRU convolutions (default ``kernel_size``).
    activation : str
        Activation name (see :data:`invrim.backbones.layers.ACTIVATIONS`).
    resample_with_conv : bool
        Strided / transposed convolutions (True) or pooling / interpolation + convolution.
    output_scale : float
        The output convolution starts with PyTorch's default initial weights and bias times this, as
        in :class:`~invrim.backbones.Hourglass`: 0.1 (the default) trained better than 1 (PyTorch's
        initialisation) at every evaluation point of 60 steps on four problems
        (``benchmarks/QUALITY.md``).
    """

    name = "unet"

    def __init__(
        self,
        channels: int,
        dimensions: int = 2,
        nf: int = 32,
        ch_mult: Sequence[int] = (1, 2, 2),
        hidden_units: Union[None, int, Sequence[int]] = None,
        num_layers: int = 2,
        kernel_size: int = 3,
        gru_kernel_size: Optional[int] = None,
        activation: str = "tanh",
        resample_with_conv: bool = True,
        output_scale: float = 0.1,
    ) -> None:
        super().__init__()
        check_positive(channels, "channels")
        if dimensions == 0:
            raise ValueError(
                "UNet needs spatial axes (dimensions 1, 2 or 3); use Hourglass(dimensions=0) or "
                "MLPGRU for parameter vectors"
            )
        check_dimensions(dimensions, allowed=(1, 2, 3), owner="UNet ")
        check_positive(nf, "nf")
        ch_mult = as_int_list(ch_mult, "ch_mult")
        if not ch_mult:
            raise ValueError("ch_mult must have at least one level")
        levels = len(ch_mult)
        widths = [nf * m for m in ch_mult]
        hidden_units = widths if hidden_units is None else as_int_list(hidden_units, "hidden_units", levels)
        check_positive(num_layers, "num_layers")
        check_kernel_size(kernel_size, "kernel_size")
        gru_kernel_size = kernel_size if gru_kernel_size is None else gru_kernel_size
        check_kernel_size(gru_kernel_size, "gru_kernel_size")
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
        self.gru_kernel_size = gru_kernel_size
        self.activation = activation.lower()
        self.resample_with_conv = resample_with_conv
        self.output_scale = check_output_scale(output_scale)

        d, k = dimensions, kernel_size
        self.input_layer = conv_nd(d, 2 * channels, widths[0], k)
        encoder = []
        c = widths[0]
        for i, (w, hu) in enumerate(zip(widths, hidden_units)):
            down = None if i == 0 else Downsample(d, c, w, k, resample_with_conv)
            convs = [conv_nd(d, w, w, k) for _ in range(num_layers)]
            encoder.append(_EncoderLevel(down, convs, ConvGRU(w, hu, d, gru_kernel_size)))
            c = hu
        self.encoder = nn.ModuleList(encoder)
        decoder = []
        for i in reversed(range(levels - 1)):
            w = widths[i]
            up = Upsample(d, c, w, k, resample_with_conv)
            merge = conv_nd(d, w + hidden_units[i], w, k)
            convs = [conv_nd(d, w, w, k) for _ in range(num_layers - 1)]
            decoder.append(_DecoderLevel(up, merge, convs))
            c = w
        self.decoder = nn.ModuleList(decoder)
        self.output_layer = conv_nd(d, c, channels, k)
        scale_initial_output(self.output_layer, self.output_scale)

    def forward(self, x: Tensor, score: Tensor, h: tuple[Tensor, ...]) -> tuple[Tensor, tuple[Tensor, ...]]:
        act = self.act
        y = torch.cat([x, score], dim=1)
        y = act(self.input_layer(y))
        new_h = []
        for level, h_i in zip(self.encoder, h):
            if level.down is not None:
                y = act(level.down(y))
            for conv in level.convs:
                y = act(conv(y))
            y = level.gru(y, h_i)
            new_h.append(y)
        for level, skip in zip(self.decoder, reversed(new_h[:-1])):
            y = act(level.up(y, skip.shape[2:]))
            y = act(level.merge(torch.cat([y, skip], dim=1)))
            for conv in level.convs:
                y = act(conv(y))
        return self.output_layer(y), tuple(new_h)

    def init_hidden(self, x: Tensor) -> tuple[Tensor, ...]:
        """Zero hidden states, one ``(B, hidden_units[i], *spatial_i)`` tensor per level."""
        self.check_input(x)
        spatial = list(x.shape[2:])
        hidden = []
        for i, hu in enumerate(self.hidden_units):
            if i > 0:
                spatial = [(n + 1) // 2 for n in spatial]
            hidden.append(torch.zeros(x.shape[0], hu, *spatial, device=x.device, dtype=x.dtype))
        return tuple(hidden)

    def config(self) -> dict[str, Any]:
        return {
            "channels": self.channels,
            "dimensions": self.dimensions,
            "nf": self.nf,
            "ch_mult": list(self.ch_mult),
            "hidden_units": list(self.hidden_units),
            "num_layers": self.num_layers,
            "kernel_size": self.kernel_size,
            "gru_kernel_size": self.gru_kernel_size,
            "activation": self.activation,
            "resample_with_conv": self.resample_with_conv,
            "output_scale": self.output_scale,
        }


#: The seed's spelling.
Unet = UNet
