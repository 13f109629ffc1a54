"""Recurrent backbones ``g_θ`` for RIMs and their registry.

>>> from invrim.backbones import build_backbone
>>> net = build_backbone("hourglass", channels=1, dimensions=2)
"""
from __future__ import annotations

import difflib
from typing import Any

from .base import Backbone, Hidden
from .hourglass import GRUBlock, Hourglass
from .layers import ConvGRU
from .mlp import MLPGRU
from .rim_cell import RIMCell
from .unet import UNet, Unet

__all__ = [
    "BUILTIN_BACKBONES",
    "Backbone",
    "ConvGRU",
    "GRUBlock",
    "Hidden",
    "Hourglass",
    "MLPGRU",
    "RIMCell",
    "UNet",
    "Unet",
    "build_backbone",
]

#: Registry name -> backbone class (the names are the classes' ``name`` attributes).
BUILTIN_BACKBONES: dict[str, type[Backbone]] = {
    cls.name: cls for cls in (Hourglass, UNet, RIMCell, MLPGRU)
}


def build_backbone(name: str, **config: Any) -> Backbone:
    """Instantiate the registered backbone ``name`` with keyword arguments ``config``.

    Raises
    ------
    ValueError
        For an unknown name (the message lists the available ones and close matches).
    """
    key = name.lower() if isinstance(name, str) else name
    if key not in BUILTIN_BACKBONES:
        available = ", ".join(sorted(BUILTIN_BACKBONES))
        close = difflib.get_close_matches(str(key), list(BUILTIN_BACKBONES), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ValueError(f"unknown backbone {name!r}; available: {available}{hint}")
    return BUILTIN_BACKBONES[key](**config)
