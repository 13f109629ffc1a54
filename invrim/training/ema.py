"""Exponential moving average of a module's weights."""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import nn


class EMA:
    """Shadow copy ``θ̄ ← d θ̄ + (1 − d) θ`` of a module's floating-point state.

    The decay warms up as ``min(decay, (1 + n) / (10 + n))`` after ``n`` updates, so early
    averages are not dominated by the random initialisation.
    """

    def __init__(self, module: nn.Module, decay: float):
        if not 0 < decay < 1:
            raise ValueError(f"ema_decay must lie in (0, 1), got {decay}")
        self.module = module
        self.decay = float(decay)
        self.num_updates = 0
        self.shadow = {k: v.detach().clone() for k, v in module.state_dict().items()}

    @torch.no_grad()
    def update(self) -> None:
        self.num_updates += 1
        d = min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))
        for k, v in self.module.state_dict().items():
            if v.is_floating_point():
                self.shadow[k].lerp_(v.detach(), 1 - d)
            else:
                self.shadow[k].copy_(v)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return dict(self.shadow)

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for k in self.shadow:
            self.shadow[k].copy_(state[k])

    @contextlib.contextmanager
    def average_parameters(self) -> Iterator[None]:
        """Temporarily swap the averaged weights into the module."""
        saved = {k: v.detach().clone() for k, v in self.module.state_dict().items()}
        self.module.load_state_dict(self.shadow)
        try:
            yield
        finally:
            self.module.load_state_dict(saved)
