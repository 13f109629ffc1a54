"""The training loop behind :meth:`invrim.RIM.fit`."""
from __future__ import annotations

import json
import logging
import math
import os
import random
import time
from pathlib import Path
from typing import Any, Optional, Union

import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, random_split
from tqdm.auto import tqdm

from .. import __version__
from . import checkpoints as ck
from . import distributed as dd
from .early_stopping import EarlyStopping
from .ema import EMA
from .heap import release_heap

log = logging.getLogger("invrim")

SCHEDULES = ("constant", "cosine", "linear")


class TrainingHistory(list):
    """Per-epoch training losses (a list, as torch-rim returned), with more attached.

    Attributes
    ----------
    val_loss : list of float
        Validation loss per epoch (empty without a validation set).
    records : list of dict
        The per-epoch metrics, as written to ``metrics.jsonl``.
    stop_reason : str
        Why training ended: ``"completed"``, ``"early stopping"``, ``"time limit"`` or
        ``"non-finite loss …"``.
    best_epoch : int or None
        The epoch (1-based) with the lowest monitored loss.
    """

    def __init__(self) -> None:
        super().__init__()
        self.val_loss: list[float] = []
        self.records: list[dict[str, Any]] = []
        self.stop_reason = "completed"
        self.best_epoch: Optional[int] = None


def _unpack(batch: Any, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, tuple, dict]:
    def move(v: Any) -> Any:
        return v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v

    if isinstance(batch, dict):
        if "y" not in batch or "x" not in batch:
            raise ValueError(f"dataset items given as dicts need keys 'y' and 'x'; got {sorted(batch)}")
        rest = {k: move(v) for k, v in batch.items() if k not in ("y", "x")}
        return move(batch["y"]), move(batch["x"]), (), rest
    if isinstance(batch, (list, tuple)) and len(batch) >= 2:
        y, x, *args = batch
        return move(y), move(x), tuple(move(a) for a in args), {}
    raise ValueError("each dataset item must be a tuple (y, x, *args) or a dict with keys 'y' and 'x'")


def _learning_rate(base: float, step: int, total: Optional[int], warmup: int, schedule: str,
                   minimum: float, time_fraction: float = 0.0) -> float:
    """Warm-up, then the schedule's decay over the run; with a time limit the run's progress is
    the larger of the step fraction and the fraction of ``max_time`` used (``total=None``: a run
    of unknown length, whose progress is the time fraction alone)."""
    factor = min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0
    progress = min(1.0, max(step / total if total else 0.0, time_fraction))
    if schedule == "cosine":
        decay = 0.5 * (1 + math.cos(math.pi * progress))
    elif schedule == "linear":
        decay = 1.0 - progress
    else:
        decay = 1.0
    return factor * (minimum + (base - minimum) * decay)


def _state_tensors(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _check_options(epochs, learning_rate, batch_size, validation_split, warmup, clip,
                   checkpoints, models_to_keep, ema_decay, scheduler, max_time) -> None:
    def positive_int(name, v):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    positive_int("epochs", epochs)
    positive_int("batch_size", batch_size)
    positive_int("checkpoints", checkpoints)
    positive_int("models_to_keep", models_to_keep)
    if not learning_rate > 0:
        raise ValueError(f"learning_rate must be positive, got {learning_rate}")
    if not 0 <= validation_split < 1:
        raise ValueError(f"validation_split must lie in [0, 1), got {validation_split}")
    if warmup < 0 or clip < 0:
        raise ValueError("warmup and clip must be non-negative")
    if ema_decay and not 0 < ema_decay < 1:
        raise ValueError(f"ema_decay must be 0 (off) or lie in (0, 1), got {ema_decay}")
    if scheduler not in SCHEDULES:
        raise ValueError(f"unknown scheduler {scheduler!r}; use one of {SCHEDULES}")
    if not max_time > 0:
        raise ValueError(f"max_time must be positive (hours), got {max_time}")


def fit(
    rim,
    dataset: Dataset,
    epochs: int = 100,
    learning_rate: float = 1e-4,
    *,
    batch_size: int = 1,
    shuffle: bool = True,
    validation_dataset: Optional[Dataset] = None,
    validation_split: float = 0.0,
    patience: float = math.inf,
    tolerance: float = 0.0,
    max_time: float = math.inf,
    warmup: int = 0,
    scheduler: str = "constant",
    min_learning_rate: float = 0.0,
    clip: float = 0.0,
    weight_decay: float = 0.0,
    ema_decay: float = 0.0,
    checkpoints_directory: Union[str, os.PathLike, None] = None,
    checkpoints: int = 1,
    models_to_keep: int = 3,
    resume: bool = True,
    seed: Optional[int] = None,
    num_workers: int = 0,
    progress: bool = True,
    logdir: Union[str, os.PathLike, None] = None,
    logname: Optional[str] = None,
) -> TrainingHistory:
    """Train ``rim``'s backbone on ``dataset`` with Adam, minimising :meth:`RIM.loss_fn`.

    Parameters
    ----------
    dataset
        Items ``(y, x, *args)`` (``args`` go to the score function) or dicts with ``"y"``,
        ``"x"`` and the problem's per-sample parameters by name. A map-style ``Dataset``, or an
        ``IterableDataset`` (a stream, e.g. samples simulated on the fly): one epoch is one pass
        over it, in its own order (``shuffle`` and ``seed`` do not apply), on one process.
    epochs
        Total number of epochs; a resumed run continues up to this number.
    learning_rate, warmup, scheduler, min_learning_rate
        Adam's peak learning rate, reached linearly over ``warmup`` steps, then ``"constant"``,
        or decayed to ``min_learning_rate`` by ``"cosine"`` or ``"linear"`` over the run (over
        ``epochs``, or over ``max_time`` when the time limit comes first).
    batch_size, shuffle, num_workers
        DataLoader settings. Shuffling is seeded by ``seed`` and the epoch, so resumed runs
        see the same batches as uninterrupted ones.
    validation_dataset, validation_split
        A validation set, or the fraction of ``dataset`` held out for one. Early stopping and
        "best" checkpoints monitor the validation loss when there is one, else the training loss.
    patience, tolerance
        Stop after ``patience`` epochs without a relative improvement of ``tolerance``.
    max_time
        Time limit in hours (as in torch-rim); no epoch is started that would not fit.
    clip, weight_decay
        Gradient-norm clipping (0: off) and Adam's weight decay.
    ema_decay
        Keep an exponential moving average of the weights (0: off); it is what gets saved,
        validated and left in the model at the end.
    checkpoints_directory, checkpoints, models_to_keep, resume
        Where to save (every ``checkpoints`` epochs and at the end), how many best weight files
        to keep, and whether to continue a run found there (otherwise the folder must be new).
    seed
        Seeds the weights' shuffling order; ``None`` draws one (recorded for resumption).
    progress
        Show a progress bar (on rank 0 only under torchrun).
    logdir, logname
        torch-rim's way to name the folder: ``checkpoints_directory = logdir/logname``.

    Notes
    -----
    Under ``torchrun`` (or an initialised process group) every global batch of ``batch_size``
    samples is split across the ranks and the gradients are averaged over it, so the run follows
    the single-process one; rank 0 alone writes checkpoints and logs; validation covers all ranks.

    Returns
    -------
    TrainingHistory
        Training loss per epoch, with ``val_loss``, ``records``, ``stop_reason``, ``best_epoch``.
    """
    _check_options(epochs, learning_rate, batch_size, validation_split, warmup, clip,
                   checkpoints, models_to_keep, ema_decay, scheduler, max_time)
    if checkpoints_directory is None and logdir is not None:
        checkpoints_directory = Path(logdir) / (logname or time.strftime("rim_%y%m%d%H%M%S"))
    model = rim.model
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    dd.init_if_needed()
    rank, world = dd.rank(), dd.world_size()
    main = rank == 0
    progress = progress and main
    streamed = isinstance(dataset, IterableDataset)
    if not streamed and not (hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")):
        raise TypeError(f"dataset must be a map-style Dataset (with __len__ and __getitem__) or a "
                        f"torch.utils.data.IterableDataset, got {type(dataset).__name__}")
    _check_streams(dataset, validation_dataset, validation_split, scheduler, max_time, world)
    if seed is None:
        seed = random.SystemRandom().randrange(2**31)
    seed = dd.broadcast_object(seed)
    dd.broadcast_parameters(model)          # identical starting weights on every rank

    if validation_dataset is None and validation_split > 0 and not streamed:
        n_val = max(1, int(round(len(dataset) * validation_split)))
        if n_val >= len(dataset):
            raise ValueError(f"validation_split={validation_split} leaves no training samples")
        dataset, validation_dataset = random_split(
            dataset, [len(dataset) - n_val, n_val], generator=torch.Generator().manual_seed(seed))
    if not streamed and len(dataset) == 0:
        raise ValueError("the training dataset is empty")

    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate, weight_decay=weight_decay)
    ema = EMA(model, ema_decay) if ema_decay else None
    stopper = EarlyStopping(patience, tolerance)
    history = TrainingHistory()
    start_epoch, step = 0, 0

    folder = Path(checkpoints_directory) if checkpoints_directory is not None else None
    if folder is not None:
        options = dict(
            epochs=epochs, learning_rate=learning_rate, batch_size=batch_size, shuffle=shuffle,
            validation_split=validation_split, patience=patience, tolerance=tolerance,
            max_time=max_time, warmup=warmup, scheduler=scheduler,
            min_learning_rate=min_learning_rate, clip=clip, weight_decay=weight_decay,
            ema_decay=ema_decay, checkpoints=checkpoints, models_to_keep=models_to_keep,
            world_size=world)
        # rank 0 creates or repairs the folder first
        prepared = dd.on_main(lambda: _prepare_folder(folder, rim, resume, optimizer, ema, stopper, history,
                                                      seed, options), ck.CheckpointError)
        if not main:                              # the others only read the resume state
            prepared = _prepare_folder(folder, rim, resume, optimizer, ema, stopper, history, seed, options,
                                       write=False)
        start_epoch, step, seed = prepared

    loaders: dict = {}

    def loader(ds: Dataset, epoch: int, train: bool) -> tuple[DataLoader, Optional[list]]:
        """The epoch's batches: the seeded single-process order, split across ranks when
        distributed. One DataLoader per dataset, so worker processes persist across epochs."""
        key = (id(ds), train)
        if isinstance(ds, IterableDataset):       # a stream: its own order, one process
            if key not in loaders:
                loaders[key] = DataLoader(ds, batch_size=batch_size, num_workers=num_workers,
                                          persistent_workers=num_workers > 0)
            return loaders[key], None
        if key not in loaders:
            sampler = _EpochBatches(len(ds), batch_size, train and shuffle, seed, rank, world)
            loaders[key] = DataLoader(ds, batch_sampler=sampler, num_workers=num_workers,
                                      persistent_workers=num_workers > 0)
        dl = loaders[key]
        dl.batch_sampler.set_epoch(epoch)
        return dl, (dl.batch_sampler.steps if world > 1 else None)

    length = _length(dataset)
    total_steps = epochs * math.ceil(length / batch_size) if length is not None else None
    good_state = _state_tensors(model)
    began = time.monotonic()
    epoch_seconds = 0.0
    bar = tqdm(total=total_steps, initial=step, disable=not progress, desc="training", unit="step",
               dynamic_ncols=True)
    last_saved = start_epoch
    for epoch in range(start_epoch, epochs):
        bar.set_description(f"epoch {epoch + 1}/{epochs}")
        if dd.broadcast_object((time.monotonic() - began + epoch_seconds) > max_time * 3600):
            history.stop_reason = "time limit"
            break
        t0 = time.monotonic()
        model.train()
        total, count, nonfinite = 0.0, 0, None
        batches, steps = loader(dataset, epoch, train=True)
        for i, batch in enumerate(batches):
            y, x, args, kwargs = _unpack(batch, device)
            used = (time.monotonic() - began) / (max_time * 3600) if math.isfinite(max_time) else 0.0
            lr = _learning_rate(learning_rate, step, total_steps, warmup, scheduler, min_learning_rate, used)
            for group in optimizer.param_groups:
                group["lr"] = lr
            optimizer.zero_grad(set_to_none=True)
            loss = rim.loss_fn(y, x, *args, **kwargs)
            if steps is not None:
                # one all-reduce carries the gradients and the loss: the global batch's mean loss
                # reaches every rank, so all of them take the same decision below
                local, n = steps[i].local_count, steps[i].global_count
                if local:
                    loss.backward()
                loss_sum = float(loss.detach()) * local if local else 0.0
                value = dd.average_gradients(list(model.parameters()), local, n, extra=[loss_sum])[0] / n
            else:
                local, n = y.shape[0], y.shape[0]
                value = float(loss.detach())
                if math.isfinite(value):
                    loss.backward()
            if not math.isfinite(value):
                nonfinite = f"non-finite loss ({value}) at epoch {epoch + 1}, step {step + 1}"
                break
            if clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=clip)
            optimizer.step()
            if ema is not None:
                ema.update()
            step += 1
            bar.update(1)
            total += value * n
            count += n
        if nonfinite is not None:
            model.load_state_dict(good_state)
            history.stop_reason = nonfinite
            where = f"; the last good checkpoint is in {folder}" if folder is not None and last_saved else ""
            log.warning("training stopped: %s. The weights of the last completed epoch were restored%s.",
                        nonfinite, where)
            break
        if count == 0:
            bar.close()
            raise ValueError(f"the training dataset yielded no samples in epoch {epoch + 1}")
        train_loss = total / max(count, 1)
        val_loss = None
        if validation_dataset is not None:
            val_batches, val_steps = loader(validation_dataset, epoch, train=False)
            val_loss = evaluate(rim, val_batches, device, ema, steps=val_steps)
        monitored = val_loss if val_loss is not None else train_loss
        improved = stopper.improved(monitored)
        stop = stopper.step(monitored)
        if improved:
            history.best_epoch = epoch + 1
        epoch_seconds = time.monotonic() - t0
        record = {"epoch": epoch + 1, "step": step, "train_loss": train_loss, "val_loss": val_loss,
                  "learning_rate": lr, "seconds": round(epoch_seconds, 4)}
        history.append(train_loss)
        if val_loss is not None:
            history.val_loss.append(val_loss)
        history.records.append(record)
        good_state = _state_tensors(model)
        bar.set_postfix({k: f"{v:.3e}" for k, v in (("loss", train_loss), ("val", val_loss)) if v is not None})
        last_epoch = stop or epoch + 1 == epochs or \
            dd.broadcast_object((time.monotonic() - began + epoch_seconds) > max_time * 3600)
        if folder is not None and main and ((epoch + 1) % checkpoints == 0 or last_epoch):
            _save(folder, rim, optimizer, ema, stopper, history, record, monitored,
                  models_to_keep, seed, step)
            last_saved = epoch + 1
        if stop:
            history.stop_reason = "early stopping"
            break
    bar.close()
    if ema is not None and not history.stop_reason.startswith("non-finite"):
        model.load_state_dict(ema.shadow)
    model.eval()
    release_heap()                                # what the steps kept (see heap.keep_heap)
    dd.barrier()                                  # rank 0 has written its last checkpoint
    return history


@torch.no_grad()
def evaluate(rim, batches, device: torch.device, ema: Optional[EMA] = None, steps: Optional[list] = None) -> float:
    """Mean :meth:`RIM.loss_fn` over ``batches`` (with the EMA weights when given); with the
    ``steps`` of a sharded loader, the mean over all ranks' samples."""
    was_training = rim.model.training
    rim.model.eval()
    total, count = 0.0, 0
    ctx = ema.average_parameters() if ema is not None else _null()
    with ctx:
        for i, batch in enumerate(batches):
            y, x, args, kwargs = _unpack(batch, device)
            n = y.shape[0] if steps is None else steps[i].local_count
            if n:
                total += float(rim.loss_fn(y, x, *args, **kwargs)) * n
                count += n
    rim.model.train(was_training)
    if steps is not None:
        total, count = dd.all_sum([total, count])
    return total / max(count, 1)


def _length(dataset) -> Optional[int]:
    """``len(dataset)``, or None for a stream that does not define one."""
    try:
        return len(dataset)
    except TypeError:
        return None


def _check_streams(dataset, validation_dataset, validation_split, scheduler, max_time, world) -> None:
    """What an ``IterableDataset`` cannot do in :func:`fit`, as one-line errors."""
    streams = [d for d in (dataset, validation_dataset) if isinstance(d, IterableDataset)]
    if not streams:
        return
    if world > 1:
        raise ValueError("fit cannot split an IterableDataset across torchrun's processes; "
                         "pass a map-style Dataset (with __len__ and __getitem__)")
    if isinstance(dataset, IterableDataset):
        if validation_split > 0:
            raise ValueError("validation_split needs a dataset with a length; with an IterableDataset "
                             "pass validation_dataset= instead")
        if scheduler != "constant" and _length(dataset) is None and not math.isfinite(max_time):
            raise ValueError(f"scheduler={scheduler!r} decays over the whole run, whose length an "
                             "IterableDataset without __len__ does not tell: define __len__, set "
                             "max_time, or use scheduler='constant'")


class _EpochBatches(torch.utils.data.Sampler):
    """Batch sampler of :func:`fit`: epoch ``e`` visits ``randperm(n)`` seeded by ``seed * 1000003 + e``
    (what a seeded ``RandomSampler`` gives) in consecutive batches; under torchrun each rank gets
    its share of every batch (see :func:`invrim.training.distributed.shard_batches`)."""

    def __init__(self, n: int, batch_size: int, shuffle: bool, seed: int, rank: int, world: int):
        self.n, self.batch_size, self.shuffle, self.seed = n, batch_size, shuffle, seed
        self.rank, self.world = rank, world
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        order = dd.epoch_order(self.n, self.shuffle, self.seed * 1000003 + epoch)
        self.steps = dd.shard_batches(order, self.batch_size, self.rank, self.world)

    def __iter__(self):
        return iter([s.indices for s in self.steps])

    def __len__(self) -> int:
        return len(self.steps)


class _null:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


# ---- the checkpoint folder ----------------------------------------------------------------
def _model_document(rim) -> dict[str, Any]:
    return {"format": ck.FORMAT, "format_version": ck.FORMAT_VERSION, "invrim_version": __version__,
            **rim.config()}


def _prepare_folder(folder: Path, rim, resume: bool, optimizer, ema, stopper, history, seed, options,
                    write: bool = True):
    """Create the folder, or load the resume state found in it. Returns (epoch, step, seed).
    With ``write=False`` (ranks other than 0) it only reads."""
    document = _model_document(rim)
    if folder.exists() and not folder.is_dir():
        raise ck.CheckpointError(f"checkpoints_directory {folder} exists and is not a folder")
    index = ck.read_index(folder) if folder.is_dir() else None
    if index is not None and index.get("state"):
        if not resume:
            raise ck.CheckpointError(f"{folder} already holds a training run; pass resume=True to "
                                     "continue it or choose a new checkpoints_directory")
        saved = ck.read_model_config(folder)
        for key in ("dimensions", "backbone"):
            if json.loads(json.dumps(document[key])) != saved.get(key):
                raise ck.CheckpointError(f"{folder} holds a run of a different model ({key} differs); "
                                         "choose a new checkpoints_directory")
        state = ck.read_json(folder / index["state"])
        tensors = ck.read_tensors(folder / index["state"].replace(".json", ".safetensors"))
        rim.model.load_state_dict(ck.unprefixed(tensors, "model."))
        optimizer.load_state_dict(ck.join_optimizer_state(tensors, state["optimizer"]))
        if ema is not None:
            ema_state = ck.unprefixed(tensors, "ema.")
            if ema_state:
                ema.load_state_dict(ema_state)
                ema.num_updates = state.get("ema_updates", 0)
        stopper.load_state_dict(state["early_stopping"])
        for record in state["history"]:
            history.append(record["train_loss"])
            if record.get("val_loss") is not None:
                history.val_loss.append(record["val_loss"])
            history.records.append(record)
        history.best_epoch = state.get("best_epoch")
        epoch = state["epoch"]
        if write:
            _rewrite_metrics(folder, history.records)
            _remove_orphans(folder, index)
        log.info("resuming %s from epoch %d", folder, epoch)
        return epoch, state["step"], state["seed"]
    if write:
        folder.mkdir(parents=True, exist_ok=True)
        ck.write_json(folder / ck.MODEL_FILE, document)
        ck.write_json(folder / "training.json", {"invrim_version": __version__, "seed": seed, **options})
    return 0, 0, seed


def _remove_orphans(folder: Path, index: dict[str, Any]) -> None:
    """Delete what a killed run wrote after its last committed checkpoint."""
    kept = {c["file"] for c in index["checkpoints"]}
    kept |= {index["state"], index["state"].replace(".json", ".safetensors")}
    for path in [*folder.glob("weights_epoch*.safetensors"), *folder.glob("state_epoch*"),
                 *folder.glob(".*.tmp")]:
        if path.name not in kept:
            path.unlink(missing_ok=True)


def _rewrite_metrics(folder: Path, records: list[dict[str, Any]]) -> None:
    data = "".join(json.dumps(r) + "\n" for r in records).encode()
    ck._atomic_write(folder / "metrics.jsonl", lambda f: f.write(data))


def _save(folder: Path, rim, optimizer, ema, stopper, history, record, monitored, models_to_keep,
          seed, step) -> None:
    epoch = record["epoch"]
    weights_name = f"weights_epoch{epoch:04d}.safetensors"
    state_name = f"state_epoch{epoch:04d}.json"
    inference = ema.shadow if ema is not None else rim.model.state_dict()
    ck.write_tensors(folder / weights_name, inference, metadata={"epoch": str(epoch)})
    opt_tensors, opt_doc = ck.split_optimizer_state(optimizer.state_dict())
    tensors = {**ck.prefixed(rim.model.state_dict(), "model."), **opt_tensors}
    if ema is not None:
        tensors.update(ck.prefixed(ema.shadow, "ema."))
    ck.write_tensors(folder / state_name.replace(".json", ".safetensors"), tensors)
    ck.write_json(folder / state_name, {
        "epoch": epoch, "step": step, "seed": seed, "optimizer": opt_doc,
        "early_stopping": stopper.state_dict(), "history": history.records,
        "best_epoch": history.best_epoch, "ema_updates": ema.num_updates if ema is not None else 0,
    })
    index = ck.read_index(folder)
    entries = [c for c in index["checkpoints"] if c["epoch"] != epoch]
    entries.append({"file": weights_name, "epoch": epoch, "step": step, "loss": monitored,
                    "monitor": "val_loss" if record["val_loss"] is not None else "train_loss"})
    ranked = sorted(entries, key=lambda c: (c["loss"] if math.isfinite(c["loss"]) else math.inf, -c["epoch"]))
    keep = ranked[:models_to_keep]
    if all(c["epoch"] != epoch for c in keep):
        keep.append(entries[-1])           # the latest weights are always kept
    keep.sort(key=lambda c: c["epoch"])
    previous_state = index.get("state")
    index = {"format_version": ck.FORMAT_VERSION, "checkpoints": keep, "best": ranked[0]["file"],
             "last": weights_name, "state": state_name}
    ck.write_json(folder / ck.INDEX_FILE, index)          # the commit point
    with open(folder / "metrics.jsonl", "a") as f:
        f.write(json.dumps(record) + "\n")
    kept = {c["file"] for c in keep}
    for path in folder.glob("weights_epoch*.safetensors"):
        if path.name not in kept:
            path.unlink(missing_ok=True)
    if previous_state and previous_state != state_name:
        (folder / previous_state).unlink(missing_ok=True)
        (folder / previous_state.replace(".json", ".safetensors")).unlink(missing_ok=True)
