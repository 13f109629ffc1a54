"""Train a RIM on an invrim data file: the problem is rebuilt from the file's attributes."""
from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Any, Optional, Union

import torch

from . import checkpoints as ck

DATA_FILE = "data.json"

#: Defaults of file-based training (``invrim train``); they differ from :class:`~invrim.RIM`'s
#: torch-rim-compatible defaults because these are what worked across invrim's examples.
RIM_DEFAULTS: dict[str, Any] = {"T": 6, "standardize_score": True, "loss_weights": "linear"}


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


def train_on_file(path: Union[str, os.PathLike], run_directory: Union[str, os.PathLike], *,
                  backbone: str = "hourglass", backbone_config: Optional[dict[str, Any]] = None,
                  rim_options: Optional[dict[str, Any]] = None, epochs: int = 10, learning_rate: float = 1e-3,
                  batch_size: int = 16, validation_file: Union[str, os.PathLike, None] = None,
                  validation_split: float = 0.0, resume: bool = False, device: Union[str, torch.device, None] = None,
                  progress: bool = True, check_values: bool = True, **fit_options: Any):
    """Train a RIM on the data file ``path`` and save it in ``run_directory``.

    The forward model and likelihood are rebuilt from the file's attributes through the plugin
    registry; per-sample parameters stored in the file reach them by name. The backbone gets
    ``channels`` and ``dimensions`` from the file's ``x``. The run folder holds the checkpoint
    files of :func:`~invrim.training.fit` plus ``data.json`` (which file, physics and shapes it
    was trained on), so ``RIM(checkpoints_directory=run_directory)`` rebuilds the whole model.

    Parameters
    ----------
    backbone, backbone_config
        A registered backbone and its options (default ``hourglass``).
    rim_options
        :class:`~invrim.RIM` settings (``T``, ``initialization_method`` …) over
        :data:`RIM_DEFAULTS`; the initialisation defaults to ``approximate_inverse`` when the
        forward model has a pseudo-inverse or adjoint.
    validation_file, validation_split
        A validation data file (same physics and shapes), or the fraction of ``path`` to hold out.
    resume
        Continue the run found in ``run_directory`` (its model and settings are reused).
    fit_options
        Passed to :func:`~invrim.training.fit` (``max_time``, ``patience``, ``seed``, ``ema_decay`` …).

    Returns
    -------
    (rim, history)
    """
    from ..data import DataError, HDF5Dataset
    from ..rim import RIM
    from . import distributed as dd
    from .fit import fit

    dd.init_if_needed()
    device = dd.local_device(device)
    folder = Path(run_directory)

    def check_folder() -> bool:
        if folder.exists() and not folder.is_dir():
            raise ck.CheckpointError(f"{folder} exists and is not a folder")
        has_run = folder.is_dir() and bool(ck.read_index(folder).get("state"))
        if has_run and not resume:
            raise ck.CheckpointError(f"{folder} already holds a training run; resume it (--resume) or choose a "
                                     "new folder")
        if folder.is_dir() and not has_run and any(p for p in folder.iterdir() if not p.name.startswith(".")) \
                and not (folder / ck.MODEL_FILE).exists():
            raise ck.CheckpointError(f"{folder} is not empty and holds no invrim run; choose a new folder")
        return has_run

    outcome: Any = None
    if dd.is_main():                  # under torchrun rank 0 checks, the others follow its verdict
        try:
            outcome = check_folder()
        except ck.CheckpointError as e:
            outcome = e
    outcome = dd.broadcast_object(outcome if not isinstance(outcome, Exception) else str(outcome))
    if isinstance(outcome, str):
        raise ck.CheckpointError(outcome)
    has_run = bool(outcome)

    dataset = HDF5Dataset(path, require_truth=True, check_values=check_values, dtype=torch.float32)
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

    if has_run:
        recorded = ck.read_json(folder / DATA_FILE) if (folder / DATA_FILE).is_file() else {}
        for key in ("forward_model", "forward_model_config", "likelihood", "shapes"):
            if recorded and recorded.get(key) != described[key]:
                raise DataError(f"{path} differs from the data {folder} was trained on ({key}); resume with "
                                "the same file or start a new run")
        rim = RIM(checkpoints_directory=folder, problem=problem, checkpoint="last", device=device)
    else:
        from ..plugins import registry
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
        options = {**RIM_DEFAULTS, **(rim_options or {})}
        if "initialization_method" not in options:
            fm = problem.forward_model
            options["initialization_method"] = "approximate_inverse" if (
                getattr(fm, "linear", False) or hasattr(fm, "pseudo_inverse")) else "zeros"
        rim = RIM(spatial, model, problem=problem, device=device, **options)
        if dd.is_main():
            folder.mkdir(parents=True, exist_ok=True)
            ck.write_json(folder / DATA_FILE, described)
    history = fit(rim, dataset, epochs=epochs, learning_rate=learning_rate, batch_size=batch_size,
                  validation_dataset=validation, validation_split=validation_split if validation is None else 0.0,
                  checkpoints_directory=folder, resume=True, progress=progress, **fit_options)
    return rim, history
