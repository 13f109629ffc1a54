"""A DIRECT-style full-resolution conv-GRU RIM block."""
from __future__ import annotations

import operator
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
    check_output_scale,
    check_positive,
    conv_nd,
    get_activation,
    scale_initial_output,
)

__all__ = ["RIMCell"]


class _Block(nn.Module):
    """One set of the cell's weights: ``depth`` convolutions and GRUs and the output layer."""

    def __init__(self, dimensions: int, channels: int, hidden_channels: int, kernel_sizes: list[int],
                 dilations: list[int], gru_kernel_size: int) -> None:
        super().__init__()
        convs, grus = [], []
        c = 2 * channels
        for k, dil in zip(kernel_sizes[:-1], dilations[:-1]):
            convs.append(conv_nd(dimensions, c, hidden_channels, k, dilation=dil))
            grus.append(ConvGRU(hidden_channels, hidden_channels, dimensions, gru_kernel_size))
            c = hidden_channels
        self.convs = nn.ModuleList(convs)
        self.grus = nn.ModuleList(grus)
        self.output_layer = conv_nd(dimensions, c, channels, kernel_sizes[-1], dilation=dilations[-1])


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
    steps : int, optional
        ``None`` (default): one set of weights shared by every RIM step. A positive int: unshared
        weights per step, as DIRECT's ``no_parameter_sharing``: ``steps`` independently initialised
        copies of the convolutions, GRUs and output layer, and ``forward(x, score, h, step=t)``
        uses copy ``t`` (``0 <= t < steps``; the RIM passes ``step=`` itself and refuses a ``T``
        above ``steps``). ``steps`` times the parameters for the same compute and memory per step;
        DIRECT reports better MRI reconstructions without weight sharing. Use it when ``T`` is
        fixed and the data is plentiful; keep sharing to vary ``T`` after training or to keep
        the model small.
    learned_step_size : bool
        ``True`` adds a learned gradient step on the (preprocessed) score to the update,
        ``dx = net(x, score, h) + alpha_t * score``, with ``alpha_t`` one scalar per step when
        ``steps`` is set, else one shared; stored as the parameter ``step_size`` of shape
        ``(steps or 1,)`` and initialised to 0, so the untrained cell computes exactly what it
        computes without it. It gives the network a direct, well-scaled path for the physics'
        gradient (a learned gradient-descent step) besides the convolutional update.
    output_scale : float
        The output convolution (of every step's copy) starts with PyTorch's default initial weights
        and bias times this, as in :class:`~invrim.backbones.Hourglass`: 0.1 (the default) trained
        better than 1 (PyTorch's initialisation) at every evaluation point of 60 steps on three
        problems and was within 1 % of it on a fourth (``benchmarks/QUALITY.md``).
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
        steps: Optional[int] = None,
        learned_step_size: bool = False,
        output_scale: float = 0.1,
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
        if steps is not None:
            check_positive(steps, "steps")
        if not isinstance(learned_step_size, bool):
            raise ValueError(f"learned_step_size must be True or False, got {learned_step_size!r}")
        self.act = get_activation(activation, inplace=True)

        self.channels = channels
        self.dimensions = dimensions
        self.hidden_channels = hidden_channels
        self.depth = depth
        self.kernel_sizes = kernel_sizes
        self.dilations = dilations
        self.gru_kernel_size = gru_kernel_size
        self.activation = activation.lower()
        self.steps = steps
        self.learned_step_size = learned_step_size
        self.output_scale = check_output_scale(output_scale)

        layout = (dimensions, channels, hidden_channels, kernel_sizes, dilations, gru_kernel_size)
        if steps is None:
            # shared weights keep their historical names (convs.*, grus.*, output_layer.*)
            block = _Block(*layout)
            self.convs, self.grus, self.output_layer = block.convs, block.grus, block.output_layer
            blocks = [block]
        else:
            # one independently initialised copy per step: blocks.<t>.{convs,grus,output_layer}.*
            self.blocks = blocks = nn.ModuleList(_Block(*layout) for _ in range(steps))
        for b in blocks:
            scale_initial_output(b.output_layer, self.output_scale)
        if learned_step_size:
            self.step_size = nn.Parameter(torch.zeros(steps or 1))

    def _step_index(self, step: Any) -> int:
        if step is None:
            raise TypeError(f"RIMCell(steps={self.steps}) has weights per step: call it as "
                            f"model(x, score, h, step=t) with t in 0..{self.steps - 1}")
        try:
            t = operator.index(step)
        except TypeError:
            t = None
        if t is None or isinstance(step, bool) or t < 0:
            raise ValueError(f"step must be a non-negative integer, got {step!r}")
        if t >= self.steps:
            raise ValueError(f"step={t} is out of range: this RIMCell has weights for steps "
                             f"0..{self.steps - 1} (build it with steps={t + 1} or more)")
        return t

    def forward(self, x: Tensor, score: Tensor, h: tuple[Tensor, ...], step: Optional[int] = None
                ) -> tuple[Tensor, tuple[Tensor, ...]]:
        """``(dx, h)`` for estimate ``x`` and score ``score`` (both ``(B, C, *spatial)``).

        ``step`` (the RIM step ``t``, from 0) picks the weights when the cell was built with
        ``steps``, and is then required; with shared weights it is accepted and ignored.
        """
        if self.steps is None:
            t = 0
            convs, grus, output_layer = self.convs, self.grus, self.output_layer
        else:
            t = self._step_index(step)
            block = self.blocks[t]
            convs, grus, output_layer = block.convs, block.grus, block.output_layer
        act = self.act
        y = torch.cat([x, score], dim=1)
        new_h = []
        for conv, gru, h_i in zip(convs, grus, h):
            y = gru(act(conv(y)), h_i)
            new_h.append(y)
        dx = output_layer(y)
        if self.learned_step_size:
            dx = dx + self.step_size[t] * score
        return dx, tuple(new_h)

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
            "steps": self.steps,
            "learned_step_size": self.learned_step_size,
            "output_scale": self.output_scale,
        }
