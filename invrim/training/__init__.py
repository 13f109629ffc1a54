"""Training: the fit loop, checkpoints, EMA and early stopping."""
from .early_stopping import EarlyStopping
from .ema import EMA
from .fit import TrainingHistory, evaluate, fit

__all__ = ["fit", "evaluate", "TrainingHistory", "EarlyStopping", "EMA"]
