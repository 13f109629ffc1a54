"""Train a RIM on an invrim data file: the problem is rebuilt from the file's attributes."""
from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Any, Optional, Union

import torch

from .. import distributed as dd
from ..config import RIMConfig
from ..data import DataError, HDF5Dataset
from ..plugins import registry
from ..rim import RIM
from ..runs import DATA_FILE, CheckpointError, RunFolder  # noqa: F401 (DATA_FILE: the old import place)
from .fit import fit

#: Deprecated: the defaults are :class:`invrim.config.RIMConfig`'s, shared with ``RIM(...)``.
RIM_DEFAULTS: dict[str, Any] = {}


def _backbone_config(factory: Any, channels: int, dimensions: int, given: dict[str, Any]) -> dict[str, Any]:
    try:
        accepted = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        accepted = {}
    config = dict(given)
    if "channels" in accepted:
        config.setdefault("channels", channels)
    if "dimensions" in accepted:
        config.setdefault("dimensions", dimensions)
    return config


def _describe(dataset) -> dict[str, Any]:
    info = dataset.info
    return {
        "path": str(Path(info.path).resolve()),
        "samples": info.samples,
        "forward_model": info.attrs["forward_model"],
        "forward_model_config": info.attrs["forward_model_config"],
        "likelihood": info.attrs["likelihood"],
        "likelihood_config": info.attrs["likelihood_config"],
        "parameters": info.parameters,
        "shapes": {name: list(dataset[0][name].shape) for name in dataset.variables},
        "dims": {name: list(dataset.target_dims(name)) for name in dataset.variables},
        "providers": info.attrs.get("providers"),
    }


def _check_backbone_unchanged(folder: RunFolder, backbone: str, given: dict[str, Any]) -> None:
    """Resuming with other backbone options would silently train the saved model: refuse."""
    saved = folder.model_config()["backbone"]
    if backbone != saved["name"]:
        raise CheckpointError(f"{folder.path} was trained with backbone {saved['name']!r}, not {backbone!r}: "
                              "resume without --backbone or start a new run")
    changed = {k: v for k, v in given.items() if saved["config"].get(k) != v}
    if changed:
        key = sorted(changed)[0]
        raise CheckpointError(f"{folder.path} was trained with backbone option {key}="
                              f"{saved['config'].get(key)!r}, not {changed[key]!r}: resume without changing "
                              "the backbone options or start a new run")


def train_on_file(path: Union[str, os.PathLike], run_dir: Union[str, os.PathLike, None] = None, *,
                  backbone: str = "hourglass", backbone_config: Optional[dict[str, Any]] = None,
                  rim_options: Optional[dict[str, Any]] = None, validation_file: Union[str, os.PathLike, None] = None,
                  resume: bool = False, device: Union[str, torch.device, None] = None, progress: bool = True,
                  check_values: bool = True, problem: Any = None,
                  run_directory: Union[str, os.PathLike, None] = None, **fit_options: Any):
    """Train a RIM on the data file ``path`` and save it in the run folder ``run_dir``.

    The forward model and likelihood are rebuilt from the file's attributes through the plugin
    registry; per-sample parameters stored in the file reach them by name. The backbone gets
    ``channels`` and ``dimensions`` from the file's ``x``. The run folder holds the checkpoint
    files of :func:`~invrim.training.fit` plus ``data.json`` (which file, physics and shapes it
    was trained on), so :meth:`RIM.from_checkpoint(run_dir) <invrim.RIM.from_checkpoint>`
    rebuilds the whole model.

    Parameters
    ----------
    backbone, backbone_config
        A registered backbone and its options (default ``hourglass``).
    rim_options
        :class:`~invrim.config.RIMConfig` settings (``T``, ``initialization_method`` …) over its
        defaults, the same as ``RIM(...)``'s; they may also be given among the keyword options.
    validation_file
        A validation data file (same physics and shapes); or ``validation_split=``.
    problem
        The :class:`~invrim.Problem` of the file, for physics that no plugin registers (by
        default it is rebuilt from the file's attributes through the registry).
    resume
        Continue the run found in ``run_dir`` (its model and settings are reused; changed
        backbone options are refused).
    fit_options
        :class:`~invrim.config.FitConfig` options for :func:`~invrim.training.fit` (``epochs``,
        ``learning_rate``, ``batch_size``, ``max_time``, ``patience``, ``seed`` …).

    Returns
    -------
    (rim, history)
    """
    rim_options = dict(rim_options or {})
    for key in [k for k in fit_options if k in RIMConfig.__dataclass_fields__]:
        rim_options[key] = fit_options.pop(key)           # RIM settings given among the options
    if run_dir is None:
        if run_directory is None:
            raise TypeError("train_on_file needs the run folder: train_on_file(path, run_dir)")
        run_dir = run_directory                   # the older keyword
    dd.init_if_needed()
    device = dd.local_device(device)
    folder = RunFolder(run_dir)
    # under torchrun rank 0 checks the folder, the others follow its verdict
    has_run = dd.broadcast_object(dd.on_main(lambda: folder.check_can_start(resume), CheckpointError))
    if has_run:
        _check_backbone_unchanged(folder, backbone, backbone_config or {})

    dataset = HDF5Dataset(path, problem=problem, require_truth=True, check_values=check_values, dtype=torch.float32)
    problem = dataset.problem
    described = _describe(dataset)
    validation = None
    if validation_file is not None:
        validation = HDF5Dataset(validation_file, problem=problem, require_truth=True, check_values=check_values,
                                 dtype=torch.float32)
        vdesc = _describe(validation)
        if vdesc["forward_model"] != described["forward_model"] or vdesc["shapes"] != described["shapes"]:
            raise DataError(f"{validation_file} does not match {path}: forward model "
                            f"{vdesc['forward_model']!r} with shapes {vdesc['shapes']} vs "
                            f"{described['forward_model']!r} with {described['shapes']}")
        described["validation"] = {"path": vdesc["path"], "samples": vdesc["samples"]}
        fit_options["validation_split"] = 0.0

    if has_run:
        recorded = folder.data_record()
        for key in ("forward_model", "forward_model_config", "likelihood", "shapes"):
            if recorded and recorded.get(key) != described[key]:
                raise DataError(f"{path} differs from the data {folder.path} was trained on ({key}); resume with "
                                "the same file or start a new run")
        rim = RIM.from_checkpoint(folder, weights="last", problem=problem, device=device, **rim_options)
    else:
        x_shape = described["shapes"]["x"]
        channels, spatial = int(x_shape[0]), tuple(int(s) for s in x_shape[1:])
        components = registry().backbones
        config = _backbone_config(components.load(backbone), channels, len(spatial), backbone_config or {})
        if fit_options.get("seed") is not None:            # the seed fixes the initial weights too,
            with torch.random.fork_rng(devices=[]):         # leaving the caller's global RNG alone
                torch.manual_seed(fit_options["seed"])
                model = components.build(backbone, **config)
        else:
            model = components.build(backbone, **config)
        rim = RIM(spatial, model, problem=problem, device=device, **rim_options)
        if dd.is_main():
            folder.write_data_record(described)
    history = fit(rim, dataset, validation_dataset=validation, run_dir=folder.path, resume=True,
                  progress=progress, **fit_options)
    return rim, history
