"""invrim — Recurrent Inference Machines for inverse problems.

>>> from invrim import RIM, Hourglass, UNet

The top-level names are imported on first use, so ``import invrim.plugins`` (what a plugin's hooks
module does) does not import torch.
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "RIM": "invrim.rim",
    "Problem": "invrim.problem",
    "Backbone": "invrim.backbones",
    "Hourglass": "invrim.backbones",
    "UNet": "invrim.backbones",
    "Unet": "invrim.backbones",
    "RIMCell": "invrim.backbones",
    "MLPGRU": "invrim.backbones",
    "ForwardModel": "invrim.physics",
    "LinearForwardModel": "invrim.physics",
    "Likelihood": "invrim.likelihoods",
    "Gaussian": "invrim.likelihoods",
    "Poisson": "invrim.likelihoods",
}

__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'invrim' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
