"""Early stopping on a monitored loss."""
from __future__ import annotations

import math
from typing import Any


class EarlyStopping:
    """Stop when the monitored value has not improved for ``patience`` consecutive epochs.

    An improvement is a value below ``best * (1 - tolerance)``; it resets the counter (the
    seed library never reset it, so any ``patience`` non-improving epochs in total stopped a run).
    """

    def __init__(self, patience: float = math.inf, tolerance: float = 0.0):
        if patience <= 0:
            raise ValueError(f"patience must be positive, got {patience}")
        if not 0 <= tolerance < 1:
            raise ValueError(f"tolerance must lie in [0, 1), got {tolerance}")
        self.patience = patience
        self.tolerance = tolerance
        self.best = math.inf
        self.bad_epochs = 0

    def improved(self, value: float) -> bool:
        return value < self.best * (1 - self.tolerance) if math.isfinite(self.best) else value < self.best

    def step(self, value: float) -> bool:
        """Record an epoch's value; return True when training should stop."""
        if self.improved(value):
            self.best = value
            self.bad_epochs = 0
        else:
            self.bad_epochs += 1
        return self.bad_epochs >= self.patience

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = float(state["best"])
        self.bad_epochs = int(state["bad_epochs"])
