"""The training loop behind :meth:`invrim.RIM.fit`: Adam on :meth:`RIM.loss_fn`, with the options
of :class:`~invrim.config.FitConfig`, saving into a :class:`~invrim.runs.RunFolder`."""
from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import time
import warnings
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch
from torch.optim.lr_scheduler import LambdaLR
from torch.utils.data import DataLoader, Dataset, IterableDataset, default_collate, random_split
from tqdm.auto import tqdm

from .. import compat
from .. import distributed as dd
from ..baselines import TIKHONOV, TUNING_SAMPLES, choose_tikhonov, has_tikhonov
from ..config import FitConfig, RIMConfig
from ..runs import MODEL_FILE, CheckpointError, RunFolder, join_optimizer_state, prefixed, split_optimizer_state, unprefixed
from .early_stopping import EarlyStopping
from .ema import EMA

log = logging.getLogger("invrim")


class TrainingHistory(list):
    """Per-epoch training losses (a list, as torch-rim returned), with more attached.

    Attributes
    ----------
    val_loss : list of float
        Validation loss per epoch (empty without a validation set).
    records : list of dict
        The per-epoch metrics, as written to the run folder's metrics log.
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

    def add(self, record: dict[str, Any]) -> None:
        self.append(record["train_loss"])
        if record.get("val_loss") is not None:
            self.val_loss.append(record["val_loss"])
        self.records.append(record)


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
    decay = {"cosine": 0.5 * (1 + math.cos(math.pi * progress)), "linear": 1.0 - progress}.get(schedule, 1.0)
    return factor * (minimum + (base - minimum) * decay)


def _options(epochs, learning_rate, config: Optional[FitConfig], options: dict[str, Any]) -> FitConfig:
    """The run's :class:`FitConfig`: ``config`` (or the defaults) with the given options over it."""
    options = compat.translate("fit", options, compat.RENAMED_FIT)
    if epochs is not None:
        options["epochs"] = epochs
    if learning_rate is not None:
        options["learning_rate"] = learning_rate
    known = set(FitConfig.__dataclass_fields__)
    if set(options) - known:
        raise compat.unexpected("fit", set(options) - known)
    return FitConfig(**{**(config or FitConfig()).to_dict(), **options})


def fit(rim, dataset: Dataset, epochs: Optional[int] = None, learning_rate: Optional[float] = None, *,
        validation_dataset: Optional[Dataset] = None, run_dir: Union[str, os.PathLike, None] = None,
        resume: bool = True, progress: bool = True, config: Optional[FitConfig] = None,
        checkpoints_directory: Union[str, os.PathLike, None] = None, logdir: Union[str, os.PathLike, None] = None,
        logname: Optional[str] = None, precision: Optional[str] = None, compile: Optional[bool] = None,
        **options: Any) -> TrainingHistory:
    """Train ``rim``'s backbone on ``dataset`` with Adam, minimising :meth:`RIM.loss_fn`.

    Parameters
    ----------
    dataset
        Items ``(y, x, *args)`` (``args`` go to the score function) or dicts with ``"y"``,
        ``"x"`` and the problem's per-sample parameters by name. A map-style ``Dataset``, or an
        ``IterableDataset`` (a stream, e.g. samples simulated on the fly): one epoch is one pass
        over it, in its own order (``shuffle`` and ``seed`` do not apply), on one process.
    epochs, learning_rate, **options
        The fields of :class:`~invrim.config.FitConfig` (its defaults apply to what is not
        given): ``batch_size``, ``shuffle``, ``validation_split``, ``patience``, ``tolerance``,
        ``max_time`` (hours; checked between epochs, the first of which always runs), ``warmup`` (steps), ``scheduler`` (``"constant"``, ``"cosine"``,
        ``"linear"``, over ``epochs`` or ``max_time``, whichever comes first),
        ``min_learning_rate``, ``clip``, ``weight_decay``, ``ema_decay``, ``save_every``,
        ``models_to_keep``, ``seed``, ``num_workers``. Shuffling is seeded by ``seed`` and the
        epoch, so a resumed run sees the same batches as an uninterrupted one.
    validation_dataset
        A validation set (or ``validation_split``). Early stopping and the "best" weights
        monitor the validation loss when there is one, else the training loss.
    run_dir, resume
        The run folder to save into (every ``save_every`` epochs and at the end), and whether to
        continue a run found there (otherwise the folder must be new). torch-rim's
        ``checkpoints_directory=`` and ``logdir=``/``logname=`` name it too.
    progress
        Show a progress bar (on rank 0 only under torchrun).
    config
        A :class:`~invrim.config.FitConfig` to start from instead of the defaults.
    precision
        Set the RIM's ``precision`` (``"fp32"``, ``"bf16"``, ``"fp16"``) before training; it is
        saved with the model. ``fp16`` on CUDA trains with a gradient scaler.
    compile
        Set the RIM's ``compile`` (``torch.compile`` of the backbone, ``docs/speed.md``) before
        training; saved with the model.

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
    cfg = _options(epochs, learning_rate, config, options)
    if precision is not None:
        rim.precision = precision
    if compile is not None:
        rim.settings.compile = bool(compile)
    run_dir = run_dir if run_dir is not None else checkpoints_directory
    if run_dir is None and logdir is not None:
        run_dir = Path(logdir) / (logname or time.strftime("rim_%y%m%d%H%M%S"))
    model = rim.model
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    dd.init_if_needed()
    rank, world = dd.rank(), dd.world_size()
    progress = progress and rank == 0
    streamed = isinstance(dataset, IterableDataset)
    if not streamed and not (hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")):
        raise TypeError(f"dataset must be a map-style Dataset (with __len__ and __getitem__) or a "
                        f"torch.utils.data.IterableDataset, got {type(dataset).__name__}")
    _check_streams(dataset, validation_dataset, cfg.validation_split, cfg.scheduler, cfg.max_time, world)
    seed = dd.broadcast_object(cfg.seed if cfg.seed is not None else random.SystemRandom().randrange(2**31))
    dd.broadcast_parameters(model)          # identical starting weights on every rank

    if validation_dataset is None and cfg.validation_split > 0 and not streamed:
        n_val = max(1, int(round(len(dataset) * cfg.validation_split)))
        if n_val >= len(dataset):
            raise ValueError(f"validation_split={cfg.validation_split} leaves no training samples")
        dataset, validation_dataset = random_split(
            dataset, [len(dataset) - n_val, n_val], generator=torch.Generator().manual_seed(seed))
    if not streamed and len(dataset) == 0:
        raise ValueError("the training dataset is empty")

    length = _length(dataset)
    total_steps = cfg.epochs * math.ceil(length / cfg.batch_size) if length is not None else None
    clock = {"began": time.monotonic(), "used": 0.0}     # the fraction of max_time used, for the schedule
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    # fp16 gradients underflow without loss scaling (CUDA's recipe; its state starts afresh on resume)
    scaler = torch.amp.GradScaler("cuda") if rim.precision == "fp16" and device.type == "cuda" else None

    def backward(loss: torch.Tensor) -> None:
        (scaler.scale(loss) if scaler is not None else loss).backward()
    scheduler = LambdaLR(optimizer, lambda step: _learning_rate(
        1.0, step, total_steps, cfg.warmup, cfg.scheduler, cfg.min_learning_rate / cfg.learning_rate, clock["used"]))
    ema = EMA(model, cfg.ema_decay) if cfg.ema_decay else None
    stopper = EarlyStopping(cfg.patience, cfg.tolerance)
    history = TrainingHistory()
    parts = dict(rim=rim, optimizer=optimizer, scheduler=scheduler, ema=ema, stopper=stopper, history=history)
    if rim.chooses_tikhonov_start:                       # before the settings are saved
        _choose_initialization(rim, dataset, device, run_dir if resume else None)
    folder = RunFolder(run_dir) if run_dir is not None else None
    start_epoch, step = 0, 0
    if folder is not None:                    # rank 0 creates or repairs the folder first, the others read
        training = {**cfg.to_dict(), "seed": seed, "world_size": world}
        start = dd.on_main(lambda: _prepare(folder, resume, parts, training), CheckpointError)
        if rank != 0:
            start = _prepare(folder, resume, parts, training, write=False)
        start_epoch, step, seed = start
        if rank == 0 and (start_epoch, step) == (0, 0) and not folder.baselines():
            _tune_baselines(folder, rim, dataset, device)

    batches = _Batches(cfg, seed, rank, world)
    good_state = _copy(model.state_dict())
    epoch_seconds, last_saved = 0.0, start_epoch
    # under a time limit the number of steps is known only after an epoch: no made-up total before
    bar = tqdm(total=None if math.isfinite(cfg.max_time) else total_steps, initial=step, disable=not progress,
               desc="training", unit="step", dynamic_ncols=True)

    def out_of_time() -> bool:
        return dd.broadcast_object(time.monotonic() - clock["began"] + epoch_seconds > cfg.max_time * 3600)

    for epoch in range(start_epoch, cfg.epochs):
        bar.set_description(f"epoch {epoch + 1}/{cfg.epochs}")
        if epoch > start_epoch and out_of_time():      # the first epoch always runs: a result, not nothing
            history.stop_reason = "time limit"
            break
        t0 = time.monotonic()
        model.train()
        total, count, nonfinite = 0.0, 0, None
        loader, steps = batches(dataset, epoch, train=True)
        for i, batch in enumerate(loader):
            y, x, args, kwargs = _unpack(batch, device)
            lr = optimizer.param_groups[0]["lr"]
            optimizer.zero_grad(set_to_none=True)
            loss = rim.loss_fn(y, x, *args, **kwargs)
            if steps is not None:
                # one all-reduce carries the gradients and the loss: the global batch's mean loss
                # reaches every rank, so all of them take the same decision below
                local, n = steps[i].local_count, steps[i].global_count
                if local:
                    backward(loss)
                loss_sum = float(loss.detach()) * local if local else 0.0
                value = dd.average_gradients(list(model.parameters()), local, n, extra=[loss_sum])[0] / n
            else:
                n, value = y.shape[0], float(loss.detach())
                if math.isfinite(value):
                    backward(loss)
            if not math.isfinite(value):
                nonfinite = f"non-finite loss ({value}) at epoch {epoch + 1}, step {step + 1}"
                break
            if scaler is not None:
                scaler.unscale_(optimizer)
            if cfg.clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=cfg.clip)
            if scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            if ema is not None:
                ema.update()
            if math.isfinite(cfg.max_time):
                clock["used"] = (time.monotonic() - clock["began"]) / (cfg.max_time * 3600)
            scheduler.step()
            step += 1
            bar.update(1)
            total += value * n
            count += n
        if nonfinite is not None:
            model.load_state_dict(good_state)
            history.stop_reason = nonfinite
            where = f"; the last good checkpoint is in {folder.path}" if folder is not None and last_saved else ""
            log.warning("training stopped: %s. The weights of the last completed epoch were restored%s.",
                        nonfinite, where)
            break
        if count == 0:
            bar.close()
            raise ValueError(f"the training dataset yielded no samples in epoch {epoch + 1}")
        train_loss, val_loss = total / count, None
        if validation_dataset is not None:
            val_loader, val_steps = batches(validation_dataset, epoch, train=False)
            val_loss = validation_loss(rim, val_loader, device, ema, steps=val_steps)
        monitored = val_loss if val_loss is not None else train_loss
        if stopper.improved(monitored):
            history.best_epoch = epoch + 1
        stop = stopper.step(monitored)
        epoch_seconds = time.monotonic() - t0
        record = {"epoch": epoch + 1, "step": step, "train_loss": train_loss, "val_loss": val_loss,
                  "learning_rate": lr, "seconds": round(epoch_seconds, 4)}
        history.add(record)
        good_state = _copy(model.state_dict())
        bar.set_postfix({k: f"{v:.3e}" for k, v in (("loss", train_loss), ("val", val_loss)) if v is not None})
        if math.isfinite(cfg.max_time) and total_steps is not None:     # a bar sized to what the time allows
            left = cfg.max_time * 3600 - (time.monotonic() - clock["began"])
            bar.total = min(total_steps, step + max(0, int(left // max(epoch_seconds, 1e-9))) * len(loader))
            bar.refresh()
        last_epoch = stop or epoch + 1 == cfg.epochs or out_of_time()
        if folder is not None and rank == 0 and ((epoch + 1) % cfg.save_every == 0 or last_epoch):
            _save(folder, parts, record, monitored, seed, cfg.models_to_keep)
            last_saved = epoch + 1
        if stop:
            history.stop_reason = "early stopping"
            break
    bar.close()
    if ema is not None and not history.stop_reason.startswith("non-finite"):
        model.load_state_dict(ema.shadow)
    model.eval()
    dd.barrier()                                  # rank 0 has written its last checkpoint
    return history


@torch.no_grad()
def validation_loss(rim, batches, device: torch.device, ema: Optional[EMA] = None, steps: Optional[list] = None) -> float:
    """Mean :meth:`RIM.loss_fn` over ``batches`` (with the EMA weights when given); with the
    ``steps`` of a sharded loader, the mean over all ranks' samples."""
    was_training = rim.model.training
    rim.model.eval()
    total, count = 0.0, 0
    with ema.average_parameters() if ema is not None else contextlib.nullcontext():
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


def _copy(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in state.items()}


def _length(dataset) -> Optional[int]:
    """``len(dataset)``, or None for a stream that does not define one."""
    try:
        return len(dataset)
    except TypeError:
        return None


def _check_streams(dataset, validation_dataset, validation_split, scheduler, max_time, world) -> None:
    """What an ``IterableDataset`` cannot do in :func:`fit`, as one-line errors."""
    if not any(isinstance(d, IterableDataset) for d in (dataset, validation_dataset)):
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


class _Batches:
    """The epoch's batches of a dataset: the seeded single-process order, split across ranks when
    distributed; one DataLoader per dataset, so worker processes persist across epochs."""

    def __init__(self, cfg: FitConfig, seed: int, rank: int, world: int):
        self.cfg, self.seed, self.rank, self.world = cfg, seed, rank, world
        self.loaders: dict = {}

    def __call__(self, ds: Dataset, epoch: int, train: bool) -> tuple[DataLoader, Optional[list]]:
        key, cfg = (id(ds), train), self.cfg
        if isinstance(ds, IterableDataset):       # a stream: its own order, one process
            if key not in self.loaders:
                self.loaders[key] = DataLoader(ds, batch_size=cfg.batch_size, num_workers=cfg.num_workers,
                                               persistent_workers=cfg.num_workers > 0)
            return self.loaders[key], None
        if key not in self.loaders:
            sampler = _EpochBatches(len(ds), cfg.batch_size, train and cfg.shuffle, self.seed, self.rank, self.world)
            self.loaders[key] = DataLoader(ds, batch_sampler=sampler, num_workers=cfg.num_workers,
                                           persistent_workers=cfg.num_workers > 0)
        loader = self.loaders[key]
        loader.batch_sampler.set_epoch(epoch)
        return loader, (loader.batch_sampler.steps if self.world > 1 else None)


class _EpochBatches(torch.utils.data.Sampler):
    """Batch sampler of :func:`fit`: epoch ``e`` visits ``randperm(n)`` seeded by ``seed * 1000003 + e``
    (what a seeded ``RandomSampler`` gives) in consecutive batches; under torchrun each rank gets
    its share of every batch (see :func:`invrim.distributed.shard_batches`)."""

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


def _first_samples(dataset, device: torch.device) -> tuple:
    """The first :data:`~invrim.baselines.TUNING_SAMPLES` items as one batch ``(y, x, args, kwargs)``
    (what the Tikhonov start and the Tikhonov baseline are chosen on)."""
    n = min(TUNING_SAMPLES, len(dataset))
    return _unpack(default_collate([dataset[i] for i in range(n)]), device)


def _choose_initialization(rim, dataset, device: torch.device, resumed: Optional[Path] = None) -> None:
    """The Tikhonov start's damping and prior mean, chosen on the first training samples (every
    rank reads the same ones, so all agree; the random number generators are left as they were, for
    a dataset that draws in ``__getitem__``). A resumed run keeps the choice saved with it. With
    ``initialization_method="auto"`` a dataset the choice cannot be made on leaves the RIM on its
    approximate-inverse start (logged); with ``"tikhonov"`` it is a one-line error."""
    saved = _saved_start(resumed)
    if saved is not None:
        rim.settings = RIMConfig(**{**rim.settings.to_dict(), **saved})
        return
    required = rim.settings.initialization_method == "tikhonov"

    def cannot(reason: str) -> None:
        if required:
            raise ValueError(f"initialization_method='tikhonov' {reason}")
        log.info("the RIM keeps its %s start: the Tikhonov start's damping could not be chosen (%s)",
                    rim.start_method, reason)
    if isinstance(dataset, IterableDataset):
        return cannot("with a streamed dataset: choose the damping first with "
                      "rim.choose_initialization([(y, x, params)]) or set initialization_damping=")
    with _rng_untouched():
        y, x, args, kwargs = _first_samples(dataset, device)
    if args:
        return cannot("needs the per-sample parameters by name (dataset items as dicts)")
    try:
        rim.choose_initialization([(y, x, kwargs)])
    except (ValueError, RuntimeError) as e:
        if required:
            raise
        cannot(str(e))


def _saved_start(folder: Optional[Path]) -> Optional[dict]:
    """The Tikhonov start's choice saved in the run folder being resumed, if any."""
    if folder is None or not (Path(folder) / MODEL_FILE).is_file():
        return None
    try:
        saved = RunFolder(folder).model_config().get("rim", {})
    except CheckpointError:
        return None
    if saved.get("initialization_damping") is None:
        return None
    return {k: saved[k] for k in ("initialization_damping", "initialization_prior_mean") if k in saved}


@contextlib.contextmanager
def _rng_untouched():
    """Leave torch's, numpy's and Python's global random number generators as they were."""
    py, np_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        try:
            yield
        finally:
            random.setstate(py)
            np.random.set_state(np_state)


# ---- the run folder -----------------------------------------------------------------------------
def _tune_baselines(folder: RunFolder, rim, dataset, device: torch.device) -> None:
    """A new run of a linear problem on an :class:`~invrim.data.HDF5Dataset` (or a split of one):
    choose the Tikhonov-CG baseline's damping on the first training samples and store it
    (``invrim evaluate`` reports that baseline beside the RIM; for other runs it chooses the
    damping on the evaluated file, and says so). It never stops training: a failure is a warning."""
    from ..data import HDF5Dataset
    problem = rim.problem
    if problem is None or not has_tikhonov(problem.forward_model):
        return
    # only file-backed data, whose reads have no side effects: a Python dataset may draw random
    # numbers or count its calls in __getitem__, and reading it here would change the training run
    source = dataset.dataset if isinstance(dataset, torch.utils.data.Subset) else dataset
    if not isinstance(source, HDF5Dataset):
        return
    y, x, args, kwargs = _first_samples(dataset, device)
    n = y.shape[0]
    if args:
        return
    where = source.path
    try:
        choice = choose_tikhonov(problem.forward_model, [(y, x, kwargs)],
                                 source=f"{where or type(dataset).__name__} (the first {n} training samples)")
    except (ValueError, RuntimeError) as e:
        warnings.warn(f"the Tikhonov-CG baseline could not be tuned on the training data ({e}); "
                      "invrim evaluate will choose its damping on the evaluated file instead", stacklevel=3)
        return
    folder.write_baselines({TIKHONOV: choice})
def _prepare(folder: RunFolder, resume: bool, parts: dict, training: dict, write: bool = True):
    """Create the run folder, or load the resume state found in it; returns (epoch, step, seed).
    With ``write=False`` (ranks other than 0) it only reads."""
    rim, optimizer, scheduler, ema = parts["rim"], parts["optimizer"], parts["scheduler"], parts["ema"]
    if not folder.check_can_start(resume):
        if write:
            folder.create(rim.config(), training)
        return 0, 0, training["seed"]
    folder.check_same_model(rim.config())
    state, tensors = folder.load_state()
    rim.model.load_state_dict(unprefixed(tensors, "model."))
    optimizer.load_state_dict(join_optimizer_state(tensors, state["optimizer"]))
    if state.get("scheduler"):
        scheduler.load_state_dict(state["scheduler"])
    else:                                         # a run saved before the scheduler was
        scheduler.last_epoch = state["step"]
    if ema is not None and unprefixed(tensors, "ema."):
        ema.load_state_dict(unprefixed(tensors, "ema."))
        ema.num_updates = state.get("ema_updates", 0)
    parts["stopper"].load_state_dict(state["early_stopping"])
    history = parts["history"]
    for record in state["history"]:
        history.add(record)
    history.best_epoch = state.get("best_epoch")
    if write:
        folder.repair(history.records)
    log.info("resuming %s from epoch %d", folder.path, state["epoch"])
    return state["epoch"], state["step"], state["seed"]


def _save(folder: RunFolder, parts: dict, record: dict, monitored: float, seed: int, models_to_keep: int) -> None:
    rim, optimizer, ema, history = parts["rim"], parts["optimizer"], parts["ema"], parts["history"]
    opt_tensors, opt_doc = split_optimizer_state(optimizer.state_dict())
    tensors = {**prefixed(rim.model.state_dict(), "model."), **opt_tensors}
    if ema is not None:
        tensors.update(prefixed(ema.shadow, "ema."))
    state = {"seed": seed, "optimizer": opt_doc, "scheduler": parts["scheduler"].state_dict(),
             "early_stopping": parts["stopper"].state_dict(), "history": history.records,
             "best_epoch": history.best_epoch, "ema_updates": ema.num_updates if ema is not None else 0}
    weights = ema.shadow if ema is not None else rim.model.state_dict()
    folder.save(record, monitored, weights, tensors, state, models_to_keep)


def evaluate(*args: Any, **kwargs: Any) -> float:
    """Deprecated name of :func:`validation_loss` (``invrim.evaluation.evaluate`` is the metrics of
    a reconstruction file)."""
    import warnings
    warnings.warn("invrim.training.evaluate is deprecated: use invrim.training.validation_loss",
                  DeprecationWarning, stacklevel=2)
    return validation_loss(*args, **kwargs)
