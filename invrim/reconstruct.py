"""Batch reconstruction: stream an observation file through a trained RIM into a new file.

Crash safety (SIGKILL included): the output is written as ``OUT.partial``, whose variables are
allocated in full (zero-filled) before any result is written, so later writes never change the
HDF5 structure. Each batch's results are written and flushed, then its ``done`` flags are set and
flushed. A rerun of the same command opens the partial file, checks that it belongs to the same
input, checkpoint and options, and computes only the batches not yet done, with the same batch
boundaries, so the final file equals an uninterrupted run's. When every sample is done the file
is renamed to ``OUT``: a file under the final name is always complete.

Reading, computing and writing overlap: a reader thread prefetches batches and a writer thread
writes them while the model runs.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import queue
import threading
import warnings
from importlib import metadata
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch
from tqdm.auto import tqdm

from . import __version__
from . import distributed as dd
from .data import HDF5Dataset
from .data import reconstruction as fmt
from .data.io import output_problem, partial_path
from .data.reconstruction import DONE, OUTPUT_FORMAT, STEP, TRAJECTORY, TRAJECTORY_NMSE, read_reconstruction  # noqa: F401
from .data.schema import ESTIMATE, OBSERVATION, TRUTH, DataError
from .data.validation import read_attrs
from .metrics import magnitude
from .rim import RIM
from .runs import RunFolder, file_digest

log = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]


def _fingerprint(path: Path) -> dict[str, Any]:
    st = path.stat()
    return {"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def load_run(run: PathLike, weights: Union[str, int] = "best", device: Union[str, torch.device, None] = None):
    """The trained RIM of a run folder, its weight file and the data record (or ``{}``)."""
    folder = RunFolder(run)
    folder.model_config()                          # clear errors for a non-run folder
    path = folder.weights_path(weights)
    rim = RIM.from_checkpoint(folder, weights=weights, device=device)
    rim.eval()
    return rim, path, folder.data_record()


def _check_match(rim, record: dict, dataset, run: Path, obs: Path) -> None:
    attrs = dataset.info.attrs
    if rim.problem is None:
        raise DataError(f"{run} was trained with a custom score/energy function, not a registered problem: "
                        "reconstruct from Python with rim.predict")
    trained = record.get("forward_model", rim.problem.forward_model.name)
    if attrs["forward_model"] != trained:
        raise DataError(f"{obs} was made with forward model {attrs['forward_model']!r} but {run} was trained "
                        f"for {trained!r}")
    shapes = record.get("shapes", {})
    y_shape = [dataset.info.variables[OBSERVATION].shape[1 + dataset.info.variables[OBSERVATION].dims[1:].index(d)]
               for d in dataset.target_dims(OBSERVATION)]
    if shapes.get("y") and list(shapes["y"]) != y_shape:
        raise DataError(f"{obs} has observations y of shape {tuple(y_shape)} but {run} was trained on "
                        f"{tuple(shapes['y'])}")
    if shapes.get("x") and TRUTH in dataset.info.variables:
        v = dataset.info.variables[TRUTH]
        x_shape = [v.shape[1 + v.dims[1:].index(d)] for d in dataset.target_dims(TRUTH)]
        if list(shapes["x"]) != x_shape:
            raise DataError(f"{obs} has ground truth x of shape {tuple(x_shape)} but {run} reconstructs "
                            f"{tuple(shapes['x'])}")


def _settings(obs: Path, created: Optional[str], weights: Path, trajectory: bool) -> dict[str, Any]:
    """What makes two reconstructions the same job (recorded as ``resume`` in the output)."""
    return {"input": _fingerprint(obs), "input_created": created, "checkpoint_sha256": file_digest(weights),
            "trajectory": bool(trajectory)}


def _already_done(out: Path, obs: Path, weights: Path, trajectory: bool, precision: str = "fp32") -> bool:
    """True when ``out`` is a complete reconstruction of the same job (same input file, weights and
    options), so that rerunning the command that made it is a no-op, as job schedulers expect."""
    try:
        attrs = fmt.read_reconstruction(out)
        saved = attrs.get("resume") or {}
        saved = json.loads(saved) if isinstance(saved, str) else saved
        wanted = _settings(obs, read_attrs(obs).get("created"), weights, trajectory)
    except (DataError, OSError, ValueError):
        return False
    return all(saved.get(k) == v for k, v in wanted.items()) and saved.get("precision", "fp32") == precision


def _nmse_steps(xs: list[torch.Tensor], truth: torch.Tensor, complex_channels: bool = False) -> torch.Tensor:
    """NMSE of every step against the truth (of the magnitude for complex-channel images, as
    :mod:`invrim.metrics` and ``invrim evaluate`` compute it)."""
    if complex_channels:
        xs = [magnitude(x) for x in xs]
        truth = magnitude(truth)
    t = truth.reshape(truth.shape[0], -1).double()
    norm = (t ** 2).sum(dim=1)
    out = [((x.reshape(x.shape[0], -1).double() - t) ** 2).sum(dim=1) / norm for x in xs]
    return torch.stack(out, dim=1)


class _Worker(threading.Thread):
    """A daemon thread running ``fn`` and keeping its exception for the main thread."""

    def __init__(self, fn, name: str):
        super().__init__(name=name, daemon=True)
        self.fn, self.error = fn, None

    def run(self) -> None:
        try:
            self.fn()
        except BaseException as e:     # re-raised in the main thread
            self.error = e


def _put(q: queue.Queue, item, stop: threading.Event) -> bool:
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def reconstruct(run: PathLike, observations: PathLike, output: PathLike, *, batch_size: int = 16,
                trajectory: bool = False, weights: Union[str, int] = "best", overwrite: bool = False,
                device: Union[str, torch.device, None] = None, progress: bool = True,
                check_values: bool = True, checkpoint: Union[str, int, None] = None,
                precision: Optional[str] = None) -> Path:
    """Reconstruct every observation of ``observations`` with the RIM trained in ``run``.

    Parameters
    ----------
    run
        A run folder (``invrim train`` or ``rim.fit(run_dir=…)`` with a registered problem).
    observations
        An invrim data file with ``y`` and its per-sample parameters (``x`` optional). Its own
        forward model and likelihood (rebuilt from its attributes) give the score.
    output
        The reconstruction file: ``x_hat`` ``(sample, *x_dims)``, with ``trajectory=True`` also
        ``trajectory`` ``(sample, step, *x_dims)``, and when the input has ``x`` the per-step
        ``trajectory_nmse`` ``(sample, step)``; provenance attributes (input file, checkpoint digest,
        versions, options).
    batch_size
        Samples per batch. A resumed run keeps the batch size it started with.
    weights
        Which weights of the run: ``"best"``, ``"last"`` or an epoch number (``checkpoint=`` is
        the older name).
    overwrite
        Replace a complete ``output`` (and discard an unfinished one). Without it, rerunning a
        finished job (same input, weights and options) returns at once; another job is refused.
    precision
        The backbone's precision for this job (``"fp32"``, ``"bf16"``, ``"fp16"``); default: the
        one saved with the run.

    Notes
    -----
    Under ``torchrun`` each rank reconstructs a contiguous block of the batches into its own part
    file (``OUT.part<rank>of<world>``, crash-safe and resumable like the single-process output);
    rank 0 then merges the parts into ``OUT``. The batches are the single-process ones, so the
    result is the same.

    Returns
    -------
    The path of the complete file. Rerunning after a crash or kill resumes the unfinished work.
    """
    if checkpoint is not None:                    # the older name of weights=
        warnings.warn("reconstruct(checkpoint=...) is deprecated, use weights=", DeprecationWarning, stacklevel=2)
        weights = checkpoint
    dd.init_if_needed()
    with contextlib.ExitStack() as hold:       # rank 0 holds OUT.lock for the whole job
        dd.on_main(lambda: hold.enter_context(fmt.exclusive(Path(output))), DataError)
        return _reconstruct(run, observations, output, batch_size=batch_size, trajectory=trajectory,
                            weights=weights, overwrite=overwrite, device=device, progress=progress,
                            check_values=check_values, precision=precision)


def _reconstruct(run: PathLike, observations: PathLike, output: PathLike, *, batch_size: int = 16,
                 trajectory: bool = False, weights: Union[str, int] = "best", overwrite: bool = False,
                 device: Union[str, torch.device, None] = None, progress: bool = True,
                 check_values: bool = True, precision: Optional[str] = None) -> Path:
    rank, world = dd.rank(), dd.world_size()
    device = dd.local_device(device)
    run, obs, out = Path(run), Path(observations), Path(output)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    rim, weights, record = load_run(run, weights, device)
    if precision is not None:
        rim.precision = precision              # this job's, not saved: the run keeps its own
    if not overwrite and out.is_file() and dd.broadcast_object(
            _already_done(out, obs, weights, trajectory, rim.precision) if rank == 0 else None):
        log.info("%s is complete already (the same input, weights and options): nothing to do", out)
        return out                            # a rerun after a kill past the final rename
    problem = output_problem(out, overwrite, inputs=[obs]) if rank == 0 else None
    problem = dd.broadcast_object(problem)
    if problem:
        raise DataError(problem)
    partial = partial_path(out)

    dtype = next(rim.model.parameters()).dtype
    # rank 0 alone reads every value for NaN / Inf (a failure stops every rank); the others check
    # only the structure
    dataset = dd.on_main(lambda: HDF5Dataset(obs, dtype=dtype, check_values=check_values), DataError)
    if dataset is None:
        dataset = HDF5Dataset(obs, dtype=dtype, check_values=False)
    try:
        _check_match(rim, record, dataset, run, obs)
        rim.problem = dataset.problem          # the observation file's own physics gives the score
        n = len(dataset)
        settings = _settings(obs, dataset.info.attrs.get("created"), weights, trajectory)
        if rim.precision != "fp32":           # another precision is another job (fp32 files stay as they were)
            settings["precision"] = rim.precision
        job = dict(rim=rim, dataset=dataset, run=run, weights=weights, trajectory=trajectory, version=__version__)
        if world == 1:
            if partial.exists() and overwrite:
                partial.unlink()
            size = _open(partial, out, 0, n, batch_size, settings, job)
            _compute(partial, 0, n, size, job, progress)
        else:
            _distributed(out, partial, n, batch_size, settings, job, overwrite, progress, rank, world)
    finally:
        dataset.close()

    if rank == 0:
        fmt.finish(partial, out)
        for stale in out.parent.glob(f"{out.name}.part*of*"):
            stale.unlink(missing_ok=True)
    dd.barrier()
    return out


def _distributed(out: Path, partial: Path, n: int, batch_size: int, settings: dict, job: dict, overwrite: bool,
                 progress: bool, rank: int, world: int) -> None:
    """Each rank: its block of batches into its part file; then rank 0 merges the parts."""
    batches = -(-n // batch_size)
    lo = rank * batches // world * batch_size
    hi = min((rank + 1) * batches // world * batch_size, n)
    part = out.with_name(f"{out.name}.part{rank}of{world}")
    failed: Optional[BaseException] = None
    try:
        if overwrite:
            part.unlink(missing_ok=True)
            if rank == 0:
                partial.unlink(missing_ok=True)
        if hi > lo:
            size = _open(part, out, lo, hi, batch_size, settings, job)
            _compute(part, lo, hi, size, job, progress and rank == 0)
    except BaseException as e:
        failed = e
    if dd.all_sum([float(failed is not None)])[0]:      # every rank learns that one failed
        if failed is not None:
            raise failed
        raise DataError(f"another rank failed while reconstructing {job['dataset'].path}; rerun to resume")

    def merge() -> None:
        _open(partial, out, 0, n, batch_size, settings, job)
        fmt.merge(partial, [out.with_name(f"{out.name}.part{r}of{world}") for r in range(world)])

    dd.on_main(merge, DataError)


def _open(path: Path, out: Path, start: int, stop: int, batch_size: int, settings: dict, job: dict) -> int:
    """Resume the unfinished file ``path`` for samples ``start:stop`` or create it; its batch size."""
    settings = {**settings, "samples": [start, stop]}
    resumed = fmt.resume_state(path, settings) if path.exists() else None
    if resumed is not None:
        if resumed != batch_size:
            log.info("resuming %s with its original batch size %d", path, resumed)
        return resumed
    return _create_output(path, out, start, stop, settings, batch_size, job)


def _compute(path: Path, start: int, stop: int, batch_size: int, job: dict, progress: bool) -> None:
    """Reconstruct samples ``start:stop`` into ``path`` (row ``i`` = sample ``start + i``), skipping
    the batches already done; reading, computing and writing overlap."""
    rim, dataset, trajectory = job["rim"], job["dataset"], job["trajectory"]
    complex_channels = bool(getattr(dataset.problem.forward_model, "x_complex_channels", False))
    device = next(rim.model.parameters()).device
    done = fmt.done_flags(path)
    n = stop - start
    batches = [(lo, min(lo + batch_size, n)) for lo in range(0, n, batch_size)
               if not done[lo:min(lo + batch_size, n)].all()]

    stop_event = threading.Event()
    inbox: queue.Queue = queue.Queue(maxsize=2)
    outbox: queue.Queue = queue.Queue(maxsize=2)

    def read() -> None:
        for lo, hi in batches:
            if not _put(inbox, (lo, hi, dataset.read(start + lo, start + hi)), stop_event):
                return
        _put(inbox, None, stop_event)

    def write() -> None:
        rows = fmt.RowWriter(path)
        try:
            while True:
                item = outbox.get()
                if item is None:
                    return
                rows.write(*item)
        finally:
            rows.close()

    reader, writer = _Worker(read, "invrim-read"), _Worker(write, "invrim-write")
    reader.start()
    writer.start()
    bar = tqdm(total=n, initial=int(done.sum()), disable=not progress, desc="reconstruct", unit="sample",
               dynamic_ncols=True)
    try:
        while True:
            try:
                item = inbox.get(timeout=0.1)
            except queue.Empty:
                for worker in (reader, writer):
                    if worker.error is not None:
                        raise worker.error
                continue
            if item is None:
                break
            lo, hi, batch = item
            y = batch.pop(OBSERVATION).to(device)
            truth = batch.pop(TRUTH, None)
            params = {k: v.to(device) for k, v in batch.items()}
            with torch.inference_mode():
                xs = [rim.link_function(x) for x in rim(y, **params)]
            arrays = {ESTIMATE: xs[-1].cpu().numpy()}
            if trajectory:
                arrays[TRAJECTORY] = torch.stack(xs, dim=1).cpu().numpy()
            if truth is not None:
                arrays[TRAJECTORY_NMSE] = _nmse_steps(xs, truth.to(device), complex_channels).cpu().numpy()
            while True:
                if writer.error is not None:
                    raise writer.error
                try:
                    outbox.put((lo, hi, arrays), timeout=0.1)
                    break
                except queue.Full:
                    continue
            bar.update(hi - lo)
        outbox.put(None)
        writer.join()
        if writer.error is not None:
            raise writer.error
    except BaseException as e:
        stop_event.set()
        if writer.is_alive():
            try:
                outbox.put_nowait(None)
            except queue.Full:
                pass
            writer.join(timeout=30)
        if isinstance(e, OSError):
            raise OSError(f"reconstruction of {dataset.path} stopped: {e}; the finished samples are kept in "
                          f"{path} and the same command resumes") from None
        raise
    finally:
        bar.close()


def _create_output(partial: Path, out: Path, start: int, stop: int, settings: dict, batch_size: int,
                   job: dict) -> int:
    """Create ``partial`` for samples ``start:stop`` (see :func:`invrim.data.reconstruction.create`)."""
    dataset, rim, run, weights = job["dataset"], job["rim"], job["run"], job["weights"]
    trajectory, version = job["trajectory"], job["version"]
    has_truth = TRUTH in dataset.variables
    n = stop - start
    first = dataset[start]
    y = first[OBSERVATION][None].to(next(rim.model.parameters()).device)
    params = {k: v[None].to(y.device) for k, v in first.items() if k not in (OBSERVATION, TRUTH)}
    with torch.inference_mode():
        x0 = rim.link_function(rim(y, **params)[-1])
    fm = dataset.problem.forward_model
    x_dims = tuple(fm.x_dims) or tuple(f"x_dim{i}" for i in range(x0.dim() - 1))
    if has_truth and tuple(first[TRUTH].shape) != tuple(x0.shape[1:]):
        raise DataError(f"{dataset.path}: the model reconstructs x of shape {tuple(x0.shape[1:])} but the file's "
                        f"x has shape {tuple(first[TRUTH].shape)}")
    sizes = {d: int(s) for d, s in zip(x_dims, x0.shape[1:])}
    sizes[STEP] = rim.T
    variables: dict[str, tuple] = {ESTIMATE: (x_dims, x0.dtype)}
    if trajectory:
        variables[TRAJECTORY] = ((STEP, *x_dims), x0.dtype)
    if has_truth:
        variables[TRAJECTORY_NMSE] = ((STEP,), np.float64)
    attrs = dataset.info.attrs
    providers = attrs.get("providers") or {}
    versions = {"invrim": version, "torch": torch.__version__, "python": platform.python_version()}
    for provider in providers.values():          # the plugins doing the work now (maybe newer
        dist = (provider or {}).get("distribution")   # than the ones that made the input file)
        if dist and dist not in versions:
            try:
                versions[dist] = metadata.version(dist)
            except metadata.PackageNotFoundError:
                versions[dist] = None
    file_attrs = {
        "invrim_format": OUTPUT_FORMAT,
        "forward_model": attrs["forward_model"], "forward_model_config": attrs["forward_model_config"],
        "likelihood": attrs["likelihood"], "likelihood_config": attrs["likelihood_config"],
        "input_file": str(dataset.path.resolve()), "input_created": attrs.get("created"),
        "run": str(run.resolve()), "checkpoint_file": weights.name,
        "checkpoint_sha256": settings["checkpoint_sha256"],
        "options": {"batch_size": batch_size, "trajectory": trajectory, "T": rim.T},
        "providers": providers, "versions": versions,
        "resume": {**settings, "batch_size": batch_size},
    }
    fmt.create(partial, out, n, variables, sizes, file_attrs)
    return batch_size
