"""The backbone contract: the recurrent network ``g_θ`` inside a RIM."""
from __future__ import annotations

from typing import Any, Union

import torch
from torch import Tensor, nn

#: A backbone's hidden state: one tensor, or a tuple of tensors (one per recurrent level).
Hidden = Union[Tensor, tuple[Tensor, ...]]


class Backbone(nn.Module):
    """Base class of the recurrent networks that drive a RIM.

    A backbone maps the current estimate ``x`` (``(B, C, *spatial)``), the preprocessed
    score (same shape) and its hidden state ``h`` to an update ``dx`` (same shape as ``x``)
    and the new hidden state: ``forward(x, score, h) -> (dx, h)``.

    Subclasses set ``name`` (the registry name), ``channels`` and ``dimensions`` (number of
    spatial axes, 0 to 3), implement :meth:`init_hidden`, and return from :meth:`config` the
    JSON-serialisable keyword arguments that rebuild an identical network with
    ``type(self)(**self.config())``.
    """

    name: str = "backbone"
    channels: int
    dimensions: int
    #: ``None``: one set of weights shared by every RIM step. A number: the backbone keeps weights
    #: for that many steps and takes ``forward(x, score, h, step=t)`` (``t`` from 0); the RIM
    #: then refuses a ``T`` above it.
    steps = None

    def forward(self, x: Tensor, score: Tensor, h: Hidden) -> tuple[Tensor, Hidden]:  # pragma: no cover
        raise NotImplementedError

    def init_hidden(self, x: Tensor) -> Hidden:  # pragma: no cover
        """Zero hidden state for a batch shaped like ``x`` (on ``x``'s device and dtype)."""
        raise NotImplementedError

    def config(self) -> dict[str, Any]:  # pragma: no cover
        raise NotImplementedError

    def check_input(self, x: Tensor) -> None:
        """Raise a clear ``ValueError`` when ``x`` does not fit this backbone."""
        expected = 2 + self.dimensions
        if x.dim() != expected or x.shape[1] != self.channels:
            spatial = ", ".join(f"n{i}" for i in range(self.dimensions))
            shape = f"(batch, {self.channels}{', ' if spatial else ''}{spatial})"
            raise ValueError(
                f"{type(self).__name__} expects x of shape {shape}, got {tuple(x.shape)}"
            )

    # The seed (torch-rim) spelled this ``initalize_hidden_states(dimensions, batch_size)``.
    def initalize_hidden_states(self, dimensions, batch_size: int) -> Hidden:
        x = torch.zeros(batch_size, self.channels, *dimensions,
                        device=_first_param(self).device, dtype=_first_param(self).dtype)
        return self.init_hidden(x)

    @property
    def hyperparameters(self) -> dict[str, Any]:
        """The seed's name for :meth:`config`."""
        return self.config()


def _first_param(module: nn.Module) -> Tensor:
    for p in module.parameters():
        return p
    return torch.zeros(())
