"""The run folder: what training writes and reconstruction reads (the one owner of its format).

A folder written by :func:`invrim.training.fit` (``invrim train``) holds::

    model.json                      RIM + backbone configuration, invrim version
    training.json                   the training options and the seed the run started with
    data.json                       the data file the run was trained on (``invrim train`` only)
    baselines.json                  classical baselines tuned on the training data (Tikhonov-CG's λ)
    checkpoints.json                index of the weight files: the commit point of every save
    weights_epoch0007.safetensors   weights for inference (the EMA weights when EMA is on)
    state_epoch0007.safetensors     resume state: raw weights, EMA weights, optimizer tensors
    state_epoch0007.json            resume state: epoch, step, optimizer, scheduler, history …
    metrics.jsonl                   one JSON line per epoch
    calibration.json                the conformal calibration of ``invrim calibrate`` (optional)

Tensors are safetensors, everything else JSON; nothing is pickled. Every file is written to a
temporary name, flushed and renamed into place, and the index is replaced last, so a run killed
at any moment leaves the previous complete checkpoint usable. Nothing outside this module reads or
writes these files by name.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any, Iterator, Optional, Union

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from . import __version__

FORMAT = "invrim-checkpoint"
FORMAT_VERSION = 1
MODEL_FILE = "model.json"
INDEX_FILE = "checkpoints.json"
TRAINING_FILE = "training.json"
DATA_FILE = "data.json"
METRICS_FILE = "metrics.jsonl"
BASELINES_FILE = "baselines.json"
CALIBRATION_FILE = "calibration.json"
CALIBRATION_FORMAT = "invrim-calibration"
CALIBRATION_VERSION = 1
#: The files a run folder may hold before its first checkpoint (a run killed while starting).
_STARTING_FILES = {MODEL_FILE, TRAINING_FILE, DATA_FILE, METRICS_FILE, BASELINES_FILE}

PathLike = Union[str, "os.PathLike[str]"]
Weights = Union[str, int]


class CheckpointError(ValueError):
    """A folder that is not a (complete, compatible) invrim run folder."""


RunError = CheckpointError


# ---- atomic files -------------------------------------------------------------------------
@contextlib.contextmanager
def atomic_target(path: PathLike) -> Iterator[str]:
    """Yield a temporary file name beside ``path``; on success fsync it and rename it onto ``path``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.remove(tmp)
        if isinstance(e, (OSError, SafetensorError)):
            full = getattr(e, "errno", None) == errno.ENOSPC or "os error 28" in str(e)
            reason = "no space left on device" if full else (str(e).splitlines()[0] or type(e).__name__)
            raise OSError(errno.ENOSPC if full else getattr(e, "errno", None),
                          f"cannot write {path}: {reason}; what was saved before is kept, and the same "
                          "command resumes once there is room") from None
        raise


def atomic_write(path: PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (a reader sees the old file or the new one)."""
    with atomic_target(path) as tmp, open(tmp, "wb") as f:
        f.write(data)


def write_json(path: PathLike, obj: Any) -> None:
    """Write ``obj`` as JSON atomically."""
    atomic_write(path, json.dumps(obj, indent=2, allow_nan=True).encode())


def write_tensors(path: PathLike, tensors: dict[str, torch.Tensor],
                  metadata: Optional[dict[str, str]] = None) -> None:
    """Write a dict of tensors as safetensors atomically."""
    clean = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    with atomic_target(path) as tmp:
        save_file(clean, tmp, metadata=metadata)


def read_json(path: PathLike) -> Any:
    try:
        with open(path) as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path} is not valid JSON ({e.msg} at line {e.lineno})") from None


def read_tensors(path: PathLike, device: Union[str, torch.device] = "cpu") -> dict[str, torch.Tensor]:
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
    """The inverse of :func:`split_optimizer_state`."""
    state: dict[int, dict[str, Any]] = {int(k): dict(v) for k, v in doc["state"].items()}
    for name, value in tensors.items():
        if name.startswith("optimizer."):
            _, idx, key = name.split(".", 2)
            state.setdefault(int(idx), {})[key] = value
    return {"state": state, "param_groups": doc["param_groups"]}


def prefixed(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {f"{prefix}{k}": v for k, v in tensors.items()}


def unprefixed(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    n = len(prefix)
    return {k[n:]: v for k, v in tensors.items() if k.startswith(prefix)}


def _plain(obj: Any) -> Any:
    """``obj`` as it reads back from JSON (tuples become lists …), for comparisons."""
    return json.loads(json.dumps(obj))


#: The components a run records the providers of, with where ``model.json`` keeps their names.
_RECORDED = {"backbone": ("backbone", "name"), "forward_model": ("problem", "forward_model"),
             "likelihood": ("problem", "likelihood")}


def _component_names(model_config: dict[str, Any]) -> dict[str, str]:
    """``{kind: name}`` of the registry components a saved model uses."""
    out = {}
    for kind, (section, key) in _RECORDED.items():
        value = (model_config.get(section) or {}).get(key)
        if isinstance(value, str):
            out[kind] = value
    return out


def build_backbone(name: str, config: dict[str, Any]) -> nn.Module:
    """Rebuild a saved backbone through the plugin registry (built-in or third-party)."""
    from .plugins import registry
    return registry().backbones.build(name, **config)


# ---- the folder ---------------------------------------------------------------------------
def _defaults_of(cls: type, names: set) -> dict[str, Any]:
    """The constructor defaults of ``cls`` for ``names`` (those without one are left out)."""
    import inspect
    try:
        params = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return {}
    return {n: _plain(params[n].default) for n in names
            if n in params and params[n].default is not inspect.Parameter.empty}


class RunFolder:
    """A run folder (see the module docstring): create, resume, save, commit and read it.

    >>> run = RunFolder("runs/deblur")                          # doctest: +SKIP
    >>> run.weights_path("best"), run.metrics()[-1]["train_loss"]   # doctest: +SKIP
    """

    def __init__(self, path: PathLike):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    def __fspath__(self) -> str:
        return str(self.path)

    # -- what is there ---------------------------------------------------------------------
    def index(self) -> dict[str, Any]:
        """The checkpoint index (an empty one before the first save)."""
        path = self.path / INDEX_FILE
        if not path.is_file():
            return {"format_version": FORMAT_VERSION, "checkpoints": [], "last": None, "best": None, "state": None}
        return read_json(path)

    def has_state(self) -> bool:
        """True when the folder holds a committed, resumable training state."""
        return self.path.is_dir() and bool(self.index().get("state"))

    def check_can_start(self, resume: bool) -> bool:
        """Whether a run found here is resumed (True) or a new one starts (False); a one-line
        :class:`CheckpointError` when neither is possible. A folder holding only the files a run
        writes before its first checkpoint (one killed while starting) counts as empty."""
        if self.path.exists() and not self.path.is_dir():
            raise CheckpointError(f"{self.path} exists and is not a folder")
        if self.has_state():
            if not resume:
                raise CheckpointError(f"{self.path} already holds a training run; resume it (--resume, "
                                      "resume=True) or choose a new folder")
            return True
        if self.path.is_dir():
            foreign = [p.name for p in self.path.iterdir()
                       if not p.name.startswith(".") and p.name not in _STARTING_FILES]
            if foreign:
                raise CheckpointError(f"{self.path} is not empty and holds no invrim run (it has "
                                      f"{sorted(foreign)[0]!r}); choose a new folder")
        return False

    def model_config(self) -> dict[str, Any]:
        """``model.json``: the RIM and backbone configuration (one-line errors for a non-run folder)."""
        if self.path.is_file():
            raise CheckpointError(f"{self.path} is a file, not a run folder (the folder 'invrim train -o RUN' made)")
        if not self.path.is_dir():
            raise CheckpointError(f"run folder {self.path} does not exist")
        path = self.path / MODEL_FILE
        if not path.is_file():
            raise CheckpointError(f"{self.path} is not an invrim run folder (no {MODEL_FILE})")
        cfg = read_json(path)
        if not isinstance(cfg, dict) or cfg.get("format") != FORMAT:
            raise CheckpointError(f"{path} is not an invrim model file")
        if cfg.get("format_version", 0) > FORMAT_VERSION:
            raise CheckpointError(f"{path} has checkpoint format version {cfg['format_version']}; this "
                                  f"invrim reads up to version {FORMAT_VERSION}: upgrade invrim")
        return cfg

    def weights_path(self, weights: Weights = "best") -> Path:
        """The weight file for ``weights``: ``"best"``, ``"last"`` or an epoch number."""
        index = self.index()
        if not index["checkpoints"]:
            raise CheckpointError(f"{self.path} holds no trained weights yet ({INDEX_FILE} is missing or empty)")
        if weights in ("best", "last"):
            name = index[weights]
        elif isinstance(weights, int) and not isinstance(weights, bool):
            matches = [c["file"] for c in index["checkpoints"] if c["epoch"] == weights]
            if not matches:
                kept = ", ".join(str(c["epoch"]) for c in index["checkpoints"])
                raise CheckpointError(f"{self.path} has no checkpoint of epoch {weights}; kept epochs: {kept}")
            name = matches[0]
        else:
            raise ValueError(f"weights must be 'best', 'last' or an epoch number, got {weights!r}")
        path = self.path / name
        if not path.is_file():
            raise CheckpointError(f"{path} is listed in {INDEX_FILE} but missing")
        return path

    def load_backbone(self, model: Optional[nn.Module] = None, weights: Weights = "best"
                      ) -> tuple[nn.Module, dict[str, Any]]:
        """Rebuild the saved backbone (or fill ``model``) with the chosen weights; returns it with
        :meth:`model_config`."""
        cfg = self.model_config()
        saved = cfg["backbone"]
        if model is None:
            self.check_providers(("backbone",), cfg)
            model = build_backbone(saved["name"], saved["config"])
        elif hasattr(model, "config"):
            given = _plain(model.config())
            # options added since the run was saved count at their constructor defaults
            stored = {**_defaults_of(type(model), set(given) - set(saved["config"])), **saved["config"]}
            if given != stored:
                diff = sorted(k for k in set(given) | set(stored) if given.get(k) != stored.get(k))
                raise CheckpointError(f"the model passed differs from the one saved in {self.path} in: "
                                      f"{', '.join(diff)}; omit model= to rebuild the saved one")
        path = self.weights_path(weights)
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        try:
            model.load_state_dict(read_tensors(path, device=device), strict=True)
        except RuntimeError as e:
            raise CheckpointError(f"the weights in {path} do not fit the backbone: {str(e).splitlines()[0]}") from None
        return model, cfg

    def data_record(self) -> dict[str, Any]:
        """``data.json``: what the run was trained on (``{}`` for runs trained from Python)."""
        path = self.path / DATA_FILE
        return read_json(path) if path.is_file() else {}

    def baselines(self) -> dict[str, Any]:
        """``baselines.json``: ``{method: settings}`` of the classical baselines chosen on the
        training data (see :mod:`invrim.baselines`); ``{}`` when the run has none."""
        path = self.path / BASELINES_FILE
        return read_json(path) if path.is_file() else {}

    def write_baselines(self, record: dict[str, Any]) -> None:
        """Write ``baselines.json``."""
        self.path.mkdir(parents=True, exist_ok=True)
        write_json(self.path / BASELINES_FILE, record)

    def has_calibration(self) -> bool:
        """Whether ``invrim calibrate`` has stored a calibration in this run folder."""
        return (self.path / CALIBRATION_FILE).is_file()

    def calibration(self) -> dict[str, Any]:
        """``calibration.json``: the conformal calibration of :func:`invrim.uncertainty.calibrate`;
        a one-line :class:`CheckpointError` saying how to make one when there is none."""
        self.model_config()                       # clear errors for a non-run folder
        path = self.path / CALIBRATION_FILE
        if not path.is_file():
            raise CheckpointError(f"{self.path} has no calibration: run 'invrim calibrate {self.path} CAL.h5' "
                                  "(CAL.h5: simulated pairs x, y not used for training, e.g. from 'invrim "
                                  "simulate') before asking for uncertainty")
        record = read_json(path)
        if not isinstance(record, dict) or record.get("format") != CALIBRATION_FORMAT:
            raise CheckpointError(f"{path} is not an invrim calibration file")
        if record.get("format_version", 0) > CALIBRATION_VERSION:
            raise CheckpointError(f"{path} has calibration format version {record['format_version']}; this "
                                  f"invrim reads up to version {CALIBRATION_VERSION}: upgrade invrim")
        return record

    def write_calibration(self, record: dict[str, Any]) -> dict[str, Any]:
        """Write ``calibration.json`` (replacing an older one); returns the record as written,
        with its format fields."""
        self.model_config()
        record = {"format": CALIBRATION_FORMAT, "format_version": CALIBRATION_VERSION,
                  "invrim_version": __version__, **record}
        write_json(self.path / CALIBRATION_FILE, record)
        return record

    def metrics(self) -> list[dict[str, Any]]:
        """The per-epoch records of ``metrics.jsonl`` (a torn last line is skipped)."""
        path = self.path / METRICS_FILE
        if not self.path.is_dir():
            raise CheckpointError(f"{self.path} is not a folder")
        if not path.is_file():
            raise CheckpointError(f"{self.path} has no {METRICS_FILE}: not a run folder made by 'invrim train', "
                                  "or no epoch has finished yet")
        lines = [line for line in path.read_text().splitlines() if line.strip()]
        records = []
        for i, line in enumerate(lines):
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                if i == len(lines) - 1:            # a run killed while appending
                    continue
                raise CheckpointError(f"{path}: line {i + 1} is not valid JSON") from None
        records = [r for r in records if isinstance(r, dict) and "epoch" in r]
        if not records:
            raise CheckpointError(f"{path} holds no epochs yet")
        return records

    def best_epoch(self) -> tuple[Optional[int], str]:
        """The epoch of the ``"best"`` weights and the loss they were chosen by (``val_loss`` or
        ``train_loss``); from the metrics when the index is unreadable."""
        try:
            index = self.index()
            best = next(c for c in index["checkpoints"] if c["file"] == index["best"])
            return int(best["epoch"]), best.get("monitor", "train_loss")
        except (CheckpointError, OSError, StopIteration, KeyError, TypeError):
            pass
        records = self.metrics()
        monitor = "val_loss" if any(r.get("val_loss") is not None for r in records) else "train_loss"
        values = [(r[monitor], r["epoch"]) for r in records
                  if isinstance(r.get(monitor), (int, float)) and math.isfinite(r[monitor])]
        return (min(values)[1] if values else None), monitor

    # -- writing ---------------------------------------------------------------------------
    def write_data_record(self, record: dict[str, Any]) -> None:
        """Write ``data.json`` (what a run trained on a data file was trained on)."""
        self.path.mkdir(parents=True, exist_ok=True)
        write_json(self.path / DATA_FILE, record)

    def create(self, model_config: dict[str, Any], training: dict[str, Any]) -> None:
        """Start a new run: ``model.json`` (``model_config`` is :meth:`invrim.RIM.config`) and
        ``training.json``."""
        self.path.mkdir(parents=True, exist_ok=True)
        write_json(self.path / TRAINING_FILE, {"invrim_version": __version__, **training})
        write_json(self.path / MODEL_FILE, self.model_document(model_config))

    @staticmethod
    def model_document(model_config: dict[str, Any]) -> dict[str, Any]:
        """``model.json``: the model's settings with the provider (distribution, version) of every
        registry component it uses, so that a missing plugin is named when the run is loaded."""
        from .plugins.provenance import provider_record
        providers = {kind: provider_record(kind, name) for kind, name in _component_names(model_config).items()}
        return {"format": FORMAT, "format_version": FORMAT_VERSION, "invrim_version": __version__, **model_config,
                "providers": {k: v for k, v in providers.items() if v}}

    def check_providers(self, kinds=tuple(_RECORDED), cfg: Optional[dict[str, Any]] = None) -> None:
        """Before anything is built: a one-line :class:`CheckpointError` naming the distribution
        to install when a component of ``kinds`` the run needs is missing here, and a warning
        naming both versions when its provider is installed at another version."""
        from .plugins.provenance import check_provider, version_mismatch
        cfg = self.model_config() if cfg is None else cfg
        providers = cfg.get("providers") or {}
        for kind, name in _component_names(cfg).items():
            if kind not in kinds:
                continue
            problem = check_provider(kind, name, providers.get(kind), f"run {self.path}")
            if problem:
                raise CheckpointError(problem)
            mismatch = version_mismatch(kind, name, providers.get(kind), f"run {self.path}")
            if mismatch:
                warnings.warn(mismatch, UserWarning, stacklevel=3)

    def check_same_model(self, model_config: dict[str, Any]) -> None:
        """A one-line error unless the saved model has the same dimensions and backbone."""
        saved = self.model_config()
        for key in ("dimensions", "backbone"):
            if _plain(model_config.get(key)) != saved.get(key):
                raise CheckpointError(f"{self.path} holds a run of a different model ({key} differs: saved "
                                      f"{saved.get(key)!r}); resume with the same settings or choose a new folder")

    def load_state(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """The committed resume state: its JSON document and its tensors."""
        name = self.index()["state"]
        return read_json(self.path / name), read_tensors(self.path / name.replace(".json", ".safetensors"))

    def save(self, record: dict[str, Any], monitored: float, weights: dict[str, torch.Tensor],
             state_tensors: dict[str, torch.Tensor], state: dict[str, Any], models_to_keep: int) -> None:
        """Save epoch ``record["epoch"]``: its inference ``weights``, the resume state, then the
        index (the commit point) and the metrics line; prune weight files beyond the
        ``models_to_keep`` best (the latest is always kept) and the previous state."""
        epoch, step = record["epoch"], record["step"]
        weights_name = f"weights_epoch{epoch:04d}.safetensors"
        state_name = f"state_epoch{epoch:04d}.json"
        write_tensors(self.path / weights_name, weights, metadata={"epoch": str(epoch)})
        write_tensors(self.path / state_name.replace(".json", ".safetensors"), state_tensors)
        write_json(self.path / state_name, {"epoch": epoch, "step": step, **state})
        index = self.index()
        entries = [c for c in index["checkpoints"] if c["epoch"] != epoch]
        entries.append({"file": weights_name, "epoch": epoch, "step": step, "loss": monitored,
                        "monitor": "val_loss" if record.get("val_loss") is not None else "train_loss"})
        ranked = sorted(entries, key=lambda c: (c["loss"] if math.isfinite(c["loss"]) else math.inf, -c["epoch"]))
        keep = ranked[:models_to_keep]
        if all(c["epoch"] != epoch for c in keep):
            keep.append(entries[-1])
        keep.sort(key=lambda c: c["epoch"])
        previous = index.get("state")
        write_json(self.path / INDEX_FILE, {"format_version": FORMAT_VERSION, "checkpoints": keep,
                                            "best": ranked[0]["file"], "last": weights_name, "state": state_name})
        with open(self.path / METRICS_FILE, "a") as f:
            f.write(json.dumps(record) + "\n")
        kept = {c["file"] for c in keep}
        for path in self.path.glob("weights_epoch*.safetensors"):
            if path.name not in kept:
                path.unlink(missing_ok=True)
        if previous and previous != state_name:
            (self.path / previous).unlink(missing_ok=True)
            (self.path / previous.replace(".json", ".safetensors")).unlink(missing_ok=True)

    def repair(self, records: list[dict[str, Any]]) -> None:
        """Before resuming: the metrics as of the committed state, and nothing that a killed run
        wrote after its last commit."""
        atomic_write(self.path / METRICS_FILE, "".join(json.dumps(r) + "\n" for r in records).encode())
        index = self.index()
        kept = {c["file"] for c in index["checkpoints"]}
        kept |= {index["state"], index["state"].replace(".json", ".safetensors")}
        for path in [*self.path.glob("weights_epoch*.safetensors"), *self.path.glob("state_epoch*"),
                     *self.path.glob(".*.tmp")]:
            if path.name not in kept:
                path.unlink(missing_ok=True)


def file_digest(path: PathLike) -> str:
    """SHA-256 of a file (a weight file's identity in provenance and resume checks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
