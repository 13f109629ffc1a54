"""A dense backbone for signals without spatial axes (parameter vectors ``(B, C)``)."""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from .base import Backbone
from .layers import ConvGRU, check_positive, get_activation

__all__ = ["MLPGRU"]


class MLPGRU(Backbone):
    """MLP encoder of ``[x, score]`` -> GRU -> MLP decoder -> ``dx``, for ``(B, C)`` inputs.

    Parameters
    ----------
    channels : int
        Size ``C`` of the parameter vector.
    hidden_units : int
        Width of the MLP layers and of the GRU state.
    num_layers : int
        Dense layers in the encoder and in the decoder (the decoder's last one maps to ``C``).
    activation : str
        Activation name (see :data:`invrim.backbones.layers.ACTIVATIONS`).
    dimensions : int
        Must be 0 (accepted so generic code can pass it).
    """

    name = "mlp_gru"

    def __init__(self, channels: int, hidden_units: int = 64, num_layers: int = 2,
                 activation: str = "tanh", dimensions: int = 0) -> None:
        super().__init__()
        check_positive(channels, "channels")
        check_positive(hidden_units, "hidden_units")
        check_positive(num_layers, "num_layers")
        if dimensions != 0 or isinstance(dimensions, bool):
            raise ValueError(
                f"MLPGRU only supports dimensions=0 (inputs (batch, channels)), got {dimensions!r}"
            )
        self.act = get_activation(activation, inplace=True)
        self.channels = channels
        self.dimensions = 0
        self.hidden_units = hidden_units
        self.num_layers = num_layers
        self.activation = activation.lower()

        hu = hidden_units
        self.encoder = nn.ModuleList(
            [nn.Linear(2 * channels, hu)] + [nn.Linear(hu, hu) for _ in range(num_layers - 1)]
        )
        self.gru = ConvGRU(hu, hu, dimensions=0)
        self.decoder = nn.ModuleList([nn.Linear(hu, hu) for _ in range(num_layers - 1)])
        self.output_layer = nn.Linear(hu, channels)

    def forward(self, x: Tensor, score: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        act = self.act
        y = torch.cat([x, score], dim=1)
        for layer in self.encoder:
            y = act(layer(y))
        h = self.gru(y, h)
        y = h
        for layer in self.decoder:
            y = act(layer(y))
        return self.output_layer(y), h

    def init_hidden(self, x: Tensor) -> Tensor:
        """Zero hidden state ``(B, hidden_units)`` on ``x``'s device and dtype."""
        self.check_input(x)
        return torch.zeros(x.shape[0], self.hidden_units, device=x.device, dtype=x.dtype)

    def config(self) -> dict[str, Any]:
        return {
            "channels": self.channels,
            "hidden_units": self.hidden_units,
            "num_layers": self.num_layers,
            "activation": self.activation,
            "dimensions": 0,
        }
