"""A DIRECT-style full-resolution conv-GRU RIM block."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional

import torch
from torch import Tensor, nn

from .base import Backbone
from .layers import (
    ConvGRU,
    as_int_list,
    check_dimensions,
    check_kernel_size,
    check_positive,
    conv_nd,
    get_activation,
)

__all__ = ["RIMCell"]


class RIMCell(Backbone):
    """Full-resolution recurrent block in the style of DIRECT's ``RIMBlock`` / ``ConvRNNStack``.

    ``depth`` stages of ``conv -> activation -> ConvGRU`` (no downsampling), followed by a
    final convolution to ``C`` channels. With the defaults (``depth=2``)::

        [x, score] -> conv k5 -> ReLU -> GRU -> conv k3 (dilation 2) -> ReLU -> GRU -> conv k3 -> dx

    The hidden state is a tuple with the state of each GRU.

    Parameters
    ----------
    channels : int
        Channels ``C`` of ``x``.
    dimensions : int
        Spatial axes (0 to 3; 0 gives dense layers).
    hidden_channels : int
        Channels of the convolutions and GRU states.
    depth : int
        Number of ``conv -> GRU`` stages.
    kernel_sizes : sequence of int, optional
        ``depth + 1`` odd kernel sizes (the last for the output conv); default ``(5, 3, ..., 3)``.
    dilations : sequence of int, optional
        ``depth + 1`` dilations; default ``(1, 2, ..., 2, 1)``.
    gru_kernel_size : int
        Kernel of the GRU convolutions (DIRECT uses 1).
    activation : str
        Activation after each stage's convolution.
    """

    name = "rim_cell"

    def __init__(
        self,
        channels: int,
        dimensions: int = 2,
        hidden_channels: int = 64,
        depth: int = 2,
        kernel_sizes: Optional[Sequence[int]] = None,
        dilations: Optional[Sequence[int]] = None,
        gru_kernel_size: int = 1,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        check_positive(channels, "channels")
        check_dimensions(dimensions, owner="RIMCell ")
        check_positive(hidden_channels, "hidden_channels")
        check_positive(depth, "depth")
        if kernel_sizes is None:
            kernel_sizes = [5] + [3] * depth
        if dilations is None:
            dilations = [1] + [2] * (depth - 1) + [1]
        kernel_sizes = as_int_list(kernel_sizes, "kernel_sizes", depth + 1)
        dilations = as_int_list(dilations, "dilations", depth + 1)
        for k in kernel_sizes:
            check_kernel_size(k, "kernel_sizes")
        check_kernel_size(gru_kernel_size, "gru_kernel_size")
        self.act = get_activation(activation, inplace=True)

        self.channels = channels
        self.dimensions = dimensions
        self.hidden_channels = hidden_channels
        self.depth = depth
        self.kernel_sizes = kernel_sizes
        self.dilations = dilations
        self.gru_kernel_size = gru_kernel_size
        self.activation = activation.lower()

        d = dimensions
        convs, grus = [], []
        c = 2 * channels
        for k, dil in zip(kernel_sizes[:-1], dilations[:-1]):
            convs.append(conv_nd(d, c, hidden_channels, k, dilation=dil))
            grus.append(ConvGRU(hidden_channels, hidden_channels, d, gru_kernel_size))
            c = hidden_channels
        self.convs = nn.ModuleList(convs)
        self.grus = nn.ModuleList(grus)
        self.output_layer = conv_nd(d, c, channels, kernel_sizes[-1], dilation=dilations[-1])

    def forward(self, x: Tensor, score: Tensor, h: tuple[Tensor, ...]) -> tuple[Tensor, tuple[Tensor, ...]]:
        act = self.act
        y = torch.cat([x, score], dim=1)
        new_h = []
        for conv, gru, h_i in zip(self.convs, self.grus, h):
            y = gru(act(conv(y)), h_i)
            new_h.append(y)
        return self.output_layer(y), tuple(new_h)

    def init_hidden(self, x: Tensor) -> tuple[Tensor, ...]:
        """Zero hidden states, ``depth`` tensors of shape ``(B, hidden_channels, *spatial)``."""
        self.check_input(x)
        shape = (x.shape[0], self.hidden_channels, *x.shape[2:])
        return tuple(torch.zeros(shape, device=x.device, dtype=x.dtype) for _ in range(self.depth))

    def config(self) -> dict[str, Any]:
        return {
            "channels": self.channels,
            "dimensions": self.dimensions,
            "hidden_channels": self.hidden_channels,
            "depth": self.depth,
            "kernel_sizes": list(self.kernel_sizes),
            "dilations": list(self.dilations),
            "gru_kernel_size": self.gru_kernel_size,
            "activation": self.activation,
        }
