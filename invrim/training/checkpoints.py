"""Checkpoint folders: safetensors for tensors, JSON for everything else; nothing is pickled.

A folder written by :func:`invrim.training.fit` holds::

    model.json                      RIM + backbone configuration, invrim version
    checkpoints.json                index of the weight files (the commit point of every save)
    weights_epoch0007.safetensors   weights for inference (the EMA weights when EMA is on)
    state_epoch0007.safetensors     resume state: raw weights, EMA weights, optimizer tensors
    state_epoch0007.json            resume state: epoch, step, optimizer settings, history …
    metrics.jsonl                   one JSON line per epoch

Every file is written to a temporary name, flushed and renamed into place; the index is
replaced last, so a run killed at any moment leaves the previous complete checkpoint usable.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator, Optional, Union

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

FORMAT = "invrim-checkpoint"
FORMAT_VERSION = 1
MODEL_FILE = "model.json"
INDEX_FILE = "checkpoints.json"


class CheckpointError(ValueError):
    """A folder that is not a (complete, compatible) invrim checkpoint folder."""


@contextlib.contextmanager
def _atomic_target(path: Path) -> Iterator[str]:
    """Yield a temporary file name beside ``path``; on success fsync it and rename it onto ``path``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _atomic_write(path: Path, write) -> None:
    with _atomic_target(path) as tmp, open(tmp, "wb") as f:
        write(f)


def write_json(path: Union[str, Path], obj: Any) -> None:
    """Write ``obj`` as JSON atomically."""
    data = json.dumps(obj, indent=2, sort_keys=False, allow_nan=True).encode()
    _atomic_write(Path(path), lambda f: f.write(data))


def write_tensors(path: Union[str, Path], tensors: dict[str, torch.Tensor],
                  metadata: Optional[dict[str, str]] = None) -> None:
    """Write a dict of tensors as safetensors atomically."""
    clean = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    with _atomic_target(Path(path)) as tmp:
        save_file(clean, tmp, metadata=metadata)


def read_json(path: Union[str, Path]) -> Any:
    try:
        with open(path) as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path} is not valid JSON ({e.msg} at line {e.lineno})") from None


def read_tensors(path: Union[str, Path], device: Union[str, torch.device] = "cpu") -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path), device=str(device))
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{path} is not a readable safetensors file ({e})") from None


# ---- optimizer state <-> (tensors, JSON) ---------------------------------------------------
def split_optimizer_state(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split ``optimizer.state_dict()`` into safetensors-able tensors and a JSON document."""
    tensors: dict[str, torch.Tensor] = {}
    per_param: dict[str, dict[str, Any]] = {}
    for idx, entries in state["state"].items():
        plain = {}
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.{idx}.{key}"] = value
            else:
                plain[key] = value
        per_param[str(idx)] = plain
    return tensors, {"state": per_param, "param_groups": state["param_groups"]}


def join_optimizer_state(tensors: dict[str, torch.Tensor], doc: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {int(k): dict(v) for k, v in doc["state"].items()}
    for name, value in tensors.items():
        if not name.startswith("optimizer."):
            continue
        _, idx, key = name.split(".", 2)
        state.setdefault(int(idx), {})[key] = value
    return {"state": state, "param_groups": doc["param_groups"]}


def prefixed(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {f"{prefix}{k}": v for k, v in tensors.items()}


def unprefixed(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    n = len(prefix)
    return {k[n:]: v for k, v in tensors.items() if k.startswith(prefix)}


# ---- reading a folder --------------------------------------------------------------------
def read_model_config(directory: Union[str, Path]) -> dict[str, Any]:
    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(f"checkpoint folder {directory} does not exist")
    path = directory / MODEL_FILE
    if not path.is_file():
        raise CheckpointError(f"{directory} is not an invrim checkpoint folder (no {MODEL_FILE})")
    cfg = read_json(path)
    if not isinstance(cfg, dict) or cfg.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an invrim model file")
    if cfg.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"{path} has checkpoint format version {cfg['format_version']}; this "
                              f"invrim reads up to version {FORMAT_VERSION}: upgrade invrim")
    return cfg


def read_index(directory: Union[str, Path]) -> dict[str, Any]:
    path = Path(directory) / INDEX_FILE
    if not path.is_file():
        return {"format_version": FORMAT_VERSION, "checkpoints": [], "last": None, "best": None, "state": None}
    return read_json(path)


def select_weights(directory: Union[str, Path], which: Union[str, int] = "best") -> Path:
    """The weight file for ``which``: ``"best"``, ``"last"`` or an epoch number."""
    directory = Path(directory)
    index = read_index(directory)
    if not index["checkpoints"]:
        raise CheckpointError(f"{directory} holds no trained weights yet ({INDEX_FILE} is missing or empty)")
    if which in ("best", "last"):
        name = index[which]
    elif isinstance(which, int) and not isinstance(which, bool):
        matches = [c["file"] for c in index["checkpoints"] if c["epoch"] == which]
        if not matches:
            kept = ", ".join(str(c["epoch"]) for c in index["checkpoints"])
            raise CheckpointError(f"{directory} has no checkpoint of epoch {which}; kept epochs: {kept}")
        name = matches[0]
    else:
        raise ValueError(f"checkpoint must be 'best', 'last' or an epoch number, got {which!r}")
    path = directory / name
    if not path.is_file():
        raise CheckpointError(f"{path} is listed in {INDEX_FILE} but missing")
    return path


def build_backbone(name: str, config: dict[str, Any]) -> nn.Module:
    """Rebuild a saved backbone through the plugin registry (built-in or third-party)."""
    from ..plugins import registry
    return registry().backbones.build(name, **config)


def load_model(directory: Union[str, Path], model: Optional[nn.Module] = None,
               which: Union[str, int] = "best") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the backbone saved in ``directory`` (or fill ``model``) with its trained weights."""
    cfg = read_model_config(directory)
    backbone = cfg["backbone"]
    if model is None:
        model = build_backbone(backbone["name"], backbone["config"])
    elif hasattr(model, "config"):
        given = json.loads(json.dumps(model.config()))
        if given != backbone["config"]:
            diff = sorted(k for k in set(given) | set(backbone["config"])
                          if given.get(k) != backbone["config"].get(k))
            raise CheckpointError(f"the model passed differs from the one saved in {directory} in: "
                                  f"{', '.join(diff)}; omit model= to rebuild the saved one")
    path = select_weights(directory, which)
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    weights = read_tensors(path, device=device)
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"the weights in {path} do not fit the backbone: {str(e).splitlines()[0]}") from None
    return model, cfg
