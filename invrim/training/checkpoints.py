"""Deprecated: the run-folder format lives in :mod:`invrim.runs` (:class:`~invrim.runs.RunFolder`).

These names are kept for one release."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Union

from torch import nn

from ..runs import (FORMAT, FORMAT_VERSION, INDEX_FILE, MODEL_FILE, CheckpointError, RunFolder,  # noqa: F401
                    build_backbone, join_optimizer_state, prefixed, read_json, read_tensors,
                    split_optimizer_state, unprefixed, write_json, write_tensors)


def read_model_config(directory: Union[str, Path]) -> dict[str, Any]:
    return RunFolder(directory).model_config()


def read_index(directory: Union[str, Path]) -> dict[str, Any]:
    return RunFolder(directory).index()


def select_weights(directory: Union[str, Path], which: Union[str, int] = "best") -> Path:
    return RunFolder(directory).weights_path(which)


def load_model(directory: Union[str, Path], model: Optional[nn.Module] = None,
               which: Union[str, int] = "best") -> tuple[nn.Module, dict[str, Any]]:
    return RunFolder(directory).load_backbone(model, which)
