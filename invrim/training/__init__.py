"""Training: the fit loop, checkpoints, EMA and early stopping."""
from .early_stopping import EarlyStopping
from .ema import EMA
from .fit import TrainingHistory, evaluate, fit, validation_loss

__all__ = ["fit", "validation_loss", "evaluate", "TrainingHistory", "EarlyStopping", "EMA"]
