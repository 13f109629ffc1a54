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

Every sample also gets its data consistency, ``data_fit`` (:func:`data_fit`: the reduced χ² of
``F(x_hat)`` against ``y`` for Gaussian noise, the deviance per value for Poisson). With an
ensemble (more runs of the same problem) ``x_hat`` is the members' mean and ``x_spread`` their
per-pixel standard deviation. With ``uncertainty=True`` the conformal calibration stored in the
run folder (:func:`invrim.uncertainty.calibrate`, ``invrim calibrate``) turns the per-pixel
scale (:func:`estimate`) into ``x_uncertainty`` and flags samples whose ``data_fit`` lies outside
the calibration set's range (``ood``). The arithmetic that applies a calibration lives here
(:func:`half_width`, :func:`flag_out_of_distribution`), so that reconstruction needs nothing
above its layer; :mod:`invrim.uncertainty` makes the calibrations.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import platform
import queue
import threading
import warnings
from importlib import metadata
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np
import torch
from tqdm.auto import tqdm

from . import __version__
from . import distributed as dd
from .data import HDF5Dataset
from .data import reconstruction as fmt
from .data.io import output_problem, partial_path
from .data.reconstruction import DONE, OUTPUT_FORMAT, STEP, TRAJECTORY, TRAJECTORY_NMSE, read_reconstruction  # noqa: F401
from .data.reconstruction import DATA_FIT, DATA_FIT_ATTR, ENSEMBLE_ATTR, OOD, SPREAD, UNCERTAINTY, UNCERTAINTY_ATTR
from .data.schema import ESTIMATE, OBSERVATION, TRUTH, DataError
from .data.validation import read_attrs
from .likelihoods import Gaussian, Poisson
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


def load_members(runs: Sequence[PathLike], weights: Union[str, int] = "best",
                 device: Union[str, torch.device, None] = None, precision: Optional[str] = None,
                 compile: Optional[bool] = None) -> list:
    """The further members of an ensemble: ``[(rim, weight_file, data_record, run_path)]``."""
    members = []
    for run in runs:
        rim, path, record = load_run(run, weights, device)
        if precision is not None:
            rim.precision = precision
        if compile is not None:
            rim.settings.compile = bool(compile)
        members.append((rim, path, record, Path(run)))
    return members


def check_distinct(weights: Path, members: list) -> None:
    """A one-line error when an ensemble member has the same weights as the run or another member
    (the spread of identical weights is zero: no ensemble)."""
    seen = {file_digest(weights): "the main run"}
    for _, path, _, run in members:
        digest = file_digest(path)
        if digest in seen:
            raise DataError(f"ensemble member {run} has the same weights as {seen[digest]}: train the members "
                            "with different --seed")
        seen[digest] = str(run)


def member_record(members: list) -> list[dict[str, Any]]:
    """How a calibration or an output names its ensemble members: run, weight file, SHA-256."""
    return [{"run": str(run.resolve()), "weights": path.name, "sha256": file_digest(path)}
            for _, path, _, run in members]


# ---- the per-pixel scale and the data consistency -----------------------------------------
#: The per-pixel scales the conformal intervals can be normalised by.
SCALES = ("trajectory", "ensemble")


def trajectory_scale(xs: Sequence[torch.Tensor]) -> torch.Tensor:
    """The per-pixel scale of one RIM: the root mean square, over the second half of its trajectory,
    of ``x_t − x_T`` (how much each pixel still moves while the RIM settles; zero for ``T = 1``).
    ``xs``: the estimates ``[x_1 … x_T]`` in physical space, each ``(B, *x_dims)``."""
    last = xs[-1]
    steps = list(xs[max(0, len(xs) // 2 - 1):-1])
    if not steps:
        return torch.zeros_like(last)
    return torch.stack([(x - last) ** 2 for x in steps]).mean(dim=0).sqrt()


def estimate(rims: Sequence, y: torch.Tensor, params: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Reconstruct a batch with one RIM or an ensemble: ``{"x_hat", "steps", "scale", "spread"}``.

    ``x_hat`` ``(B, *x_dims)`` is the (members' mean) final estimate, ``steps`` the (mean)
    trajectory ``[x_1 … x_T]``, ``spread`` the members' per-pixel standard deviation (None for
    one RIM) and ``scale`` the per-pixel scale of the conformal intervals: ``spread`` for an
    ensemble, :func:`trajectory_scale` for one RIM. Physical space (after the link function).
    """
    with torch.inference_mode():
        runs = [[rim.link_function(x) for x in rim(y, **params)] for rim in rims]
        if len(runs) == 1:
            steps = runs[0]
            return {"x_hat": steps[-1], "steps": steps, "scale": trajectory_scale(steps), "spread": None}
        lengths = {len(r) for r in runs}
        if len(lengths) > 1:
            raise ValueError(f"the ensemble's members run different numbers of steps ({sorted(lengths)}): "
                             "train them with the same T")
        finals = torch.stack([r[-1] for r in runs])                  # (K, B, *x_dims)
        steps = [torch.stack([r[t] for r in runs]).mean(dim=0) for t in range(len(runs[0]))]
        spread = finals.std(dim=0)
        return {"x_hat": steps[-1], "steps": steps, "scale": spread, "spread": spread}


#: The features of the learned scale (each enters as its logarithm, so the scale is a product of
#: powers of them): the base scale (trajectory or ensemble), the gradient magnitude of ``x_hat``,
#: the sample's mean base scale, and the sample's ``data_fit``.
SCALE_FEATURES = ("base", "gradient", "sample_base", "data_fit")


def gradient_magnitude(x: torch.Tensor, x_dims: Sequence[str]) -> torch.Tensor:
    """``|∇x|`` per pixel ``(B, *x_dims)`` by central differences along every axis of ``x_dims``
    that is not ``channel`` and has at least 3 entries (zeros when there is none)."""
    axes = [1 + i for i, (d, n) in enumerate(zip(x_dims, x.shape[1:])) if d != "channel" and n >= 3]
    if not axes:
        return torch.zeros_like(x)
    grads = torch.gradient(x, dim=axes)
    return torch.sqrt(sum(g ** 2 for g in grads))


def scale_features(base: torch.Tensor, x_hat: torch.Tensor, fit: torch.Tensor, x_dims: Sequence[str],
                   eps: dict[str, float]) -> torch.Tensor:
    """The logarithms of :data:`SCALE_FEATURES` per pixel, ``(B, *x_dims, 4)`` float64; ``eps``
    keeps each logarithm finite (``{"base", "gradient", "data_fit"}``)."""
    base, x_hat = base.double(), x_hat.double()
    shape = (-1,) + (1,) * (base.dim() - 1)
    sample = base.flatten(1).mean(dim=1).reshape(shape).expand_as(base)
    fit = fit.double().to(base.device).clamp_min(0).reshape(shape).expand_as(base)
    return torch.stack([torch.log(base + eps["base"]),
                        torch.log(gradient_magnitude(x_hat, x_dims) + eps["gradient"]),
                        torch.log(sample + eps["base"]), torch.log(fit + eps["data_fit"])], dim=-1)


def pixel_scale(calibration: dict[str, Any], result: dict[str, Any], fit: torch.Tensor,
                x_dims: Sequence[str]) -> torch.Tensor:
    """The per-pixel scale a calibration uses: the base scale of :func:`estimate` itself, or, for a
    learned scale (``calibration["scale"]["weights"]``), ``exp(w₀ + Σ wᵢ log fᵢ)`` over
    :data:`SCALE_FEATURES`."""
    rule = calibration["scale"]
    if not rule.get("weights"):
        return result["scale"]
    w = torch.tensor(rule["weights"], dtype=torch.float64, device=result["x_hat"].device)
    f = scale_features(result["scale"], result["x_hat"], fit, x_dims, rule["eps"])
    return torch.exp(w[0] + f @ w[1:]).to(result["x_hat"].dtype)


def data_fit_name(likelihood) -> str:
    """What :func:`data_fit` measures for ``likelihood``."""
    if isinstance(likelihood, Gaussian):
        return "reduced chi-square"
    if isinstance(likelihood, Poisson):
        return "Poisson deviance per value"
    return "2 x energy per value"


def data_fit(problem, x: torch.Tensor, y: torch.Tensor, **params: Any) -> torch.Tensor:
    """The goodness of fit of ``F(x)`` to ``y`` per sample ``(B,)`` float64, about 1 for a good fit.

    Gaussian noise: the reduced χ², ``Σ |y − F(x)|² / σ²`` over the number of real values
    (twice the entries for complex ``y``). Poisson: the deviance ``2 Σ [y log(y/λ) − (y − λ)]`` per
    value (``λ`` the rate). Any other likelihood: twice its energy per value.
    """
    with torch.inference_mode():
        prediction = problem.forward_model(x, **params)
        lik = problem.likelihood
        values = y[0].numel() * (2 if y.is_complex() else 1)
        if isinstance(lik, Poisson):
            lam = lik.rate(prediction, params.get("gain"), params.get("background")).double()
            yd = y.double()
            ylog = torch.where(yd > 0, yd * torch.log(yd.clamp_min(1e-300) / lam), torch.zeros_like(yd))
            dev = 2 * (ylog - (yd - lam))
            return dev.reshape(dev.shape[0], -1).sum(dim=1) / values
        return 2 * lik.energy(prediction, y, **params).double() / values


def quantile(calibration: dict[str, Any], coverage: Optional[float] = None, per: str = "pixel") -> float:
    """The conformal quantile of a calibration record (:func:`invrim.uncertainty.calibrate`): for
    per-pixel intervals (``per="pixel"``) or whole-image bands (``per="image"``), at the record's
    coverage or at another of its ``levels``."""
    if per not in ("pixel", "image"):
        raise ValueError(f"per must be 'pixel' or 'image', got {per!r}")
    if coverage is None:
        return float(calibration[per]["quantile"])
    for key, level in calibration["levels"].items():
        if abs(float(key) - coverage) < 1e-9:
            return float(level[per])
    raise ValueError(f"the calibration has no level {coverage}; it has {', '.join(calibration['levels'])}")


def half_width(calibration: dict[str, Any], scale: torch.Tensor, coverage: Optional[float] = None,
               per: str = "pixel") -> torch.Tensor:
    """The calibrated per-pixel half-width ``q · (scale + floor)`` (see :func:`quantile`)."""
    return quantile(calibration, coverage, per) * (scale + calibration["scale"]["floor"])


def flag_out_of_distribution(calibration: dict[str, Any], fit: torch.Tensor) -> torch.Tensor:
    """1 where ``data_fit`` lies outside the calibration's ``[low, high]`` range (uint8 ``(B,)``)."""
    rule = calibration["data_fit"]
    low = -math.inf if rule["low"] is None else rule["low"]
    high = math.inf if rule["high"] is None else rule["high"]
    return ((fit < low) | (fit > high)).to(torch.uint8)


def check_calibration(calibration: dict[str, Any], run: Path, weights: Path, members: list) -> None:
    """A one-line error unless ``calibration`` was made with these weights and ensemble members."""
    if calibration.get("weights", {}).get("sha256") != file_digest(weights):
        raise DataError(f"the calibration in {run} was made with other weights than {weights.name}: run "
                        f"'invrim calibrate {run} CAL.h5' again (the same --weights)")
    saved = [m["sha256"] for m in calibration.get("ensemble") or []]
    given = [m["sha256"] for m in member_record(members)]
    if saved != given:
        raise DataError(f"the calibration in {run} was made with {len(saved)} further ensemble member(s) but "
                        f"{len(given)} are used here, or other ones: reconstruct with the calibration's "
                        "--ensemble, or calibrate again")


def check_match(rim, record: dict, dataset, run: Path, obs: Path) -> None:
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


def _settings(obs: Path, created: Optional[str], weights: Path, trajectory: bool,
              extra: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """What makes two reconstructions the same job (recorded as ``resume`` in the output);
    ``extra``: the optional settings (``precision`` other than fp32, the ``uncertainty``
    calibration's digest, the ``ensemble`` members' digests), recorded only when set."""
    return {"input": _fingerprint(obs), "input_created": created, "checkpoint_sha256": file_digest(weights),
            "trajectory": bool(trajectory), **{k: v for k, v in (extra or {}).items() if v}}


def _extra_settings(precision: str, calibration: Optional[dict[str, Any]], members: list) -> dict[str, Any]:
    digest = None
    if calibration is not None:
        digest = hashlib.sha256(json.dumps(calibration, sort_keys=True).encode()).hexdigest()
    return {"precision": precision if precision != "fp32" else None, "uncertainty": digest,
            "ensemble": [m["sha256"] for m in member_record(members)] or None}


def _already_done(out: Path, obs: Path, weights: Path, trajectory: bool, extra: dict[str, Any]) -> bool:
    """True when ``out`` is a complete reconstruction of the same job (same input file, weights and
    options; ``extra``: :func:`_extra_settings`, precision, ``--uncertainty`` and ensemble), so that
    rerunning the command that made it is a no-op, as job schedulers expect."""
    try:
        attrs = fmt.read_reconstruction(out)
        saved = attrs.get("resume") or {}
        saved = json.loads(saved) if isinstance(saved, str) else saved
        wanted = _settings(obs, read_attrs(obs).get("created"), weights, trajectory, extra)
    except (DataError, OSError, ValueError):
        return False
    keys = {*wanted, *(k for k in fmt.OPTIONAL_SETTINGS if k in saved)}
    return all(saved.get(k) == wanted.get(k) for k in keys)


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
                precision: Optional[str] = None, uncertainty: bool = False,
                ensemble: Optional[Sequence[PathLike]] = None, compile: Optional[bool] = None) -> Path:
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
    compile
        Run the backbone through ``torch.compile`` for this job (default: the run's own setting);
        compiled at the first batch, eager where that fails, the same values within float
        rounding (``docs/speed.md``: with bf16 on a CPU with AMX, inference about 0.6x eager).
    uncertainty
        Apply the conformal calibration stored in ``run`` (``invrim calibrate``): write
        ``x_uncertainty`` (the half-width of per-pixel intervals at the calibrated coverage) and
        ``ood`` (1 where the sample's ``data_fit`` lies outside the calibration set's range). A
        calibration made with an ensemble uses its members (``ensemble`` may be omitted). A run
        without calibration is a one-line error saying how to make one.
    ensemble
        Further run folders of the same problem (e.g. trained with other seeds): ``x_hat`` is the
        mean of all members, ``x_spread`` their per-pixel standard deviation.

    Notes
    -----
    Every output also holds ``data_fit`` ``(sample,)``, see :func:`data_fit`.

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
                            check_values=check_values, precision=precision, uncertainty=uncertainty,
                            ensemble=ensemble, compile=compile)


def _reconstruct(run: PathLike, observations: PathLike, output: PathLike, *, batch_size: int = 16,
                 trajectory: bool = False, weights: Union[str, int] = "best", overwrite: bool = False,
                 device: Union[str, torch.device, None] = None, progress: bool = True,
                 check_values: bool = True, precision: Optional[str] = None, uncertainty: bool = False,
                 ensemble: Optional[Sequence[PathLike]] = None, compile: Optional[bool] = None) -> Path:
    rank, world = dd.rank(), dd.world_size()
    device = dd.local_device(device)
    run, obs, out = Path(run), Path(observations), Path(output)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    calibration = RunFolder(run).calibration() if uncertainty else None
    if calibration is not None and ensemble is None:
        ensemble = [m["run"] for m in calibration.get("ensemble") or []]
    selected = weights
    rim, weights, record = load_run(run, weights, device)
    if precision is not None:
        rim.precision = precision              # this job's, not saved: the run keeps its own
    if compile is not None:
        rim.settings.compile = bool(compile)   # this job's too; the values do not change
    members = load_members(ensemble or [], selected, device, rim.precision, rim.settings.compile)
    check_distinct(weights, members)
    if calibration is not None:
        check_calibration(calibration, run, weights, members)
    extra = _extra_settings(rim.precision, calibration, members)
    if not overwrite and out.is_file() and dd.broadcast_object(
            _already_done(out, obs, weights, trajectory, extra) if rank == 0 else None):
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
        check_match(rim, record, dataset, run, obs)
        rim.problem = dataset.problem          # the observation file's own physics gives the score
        for member, _, member_data, member_run in members:
            check_match(member, member_data, dataset, member_run, obs)
            member.problem = dataset.problem
        n = len(dataset)
        # another precision, calibration or ensemble is another job (plain fp32 files stay as they were)
        settings = _settings(obs, dataset.info.attrs.get("created"), weights, trajectory, extra)
        job = dict(rim=rim, dataset=dataset, run=run, weights=weights, trajectory=trajectory, version=__version__,
                   members=members, calibration=calibration)
        if world == 1:
            if partial.exists() and overwrite:
                partial.unlink()
            size = _open(partial, out, 0, n, batch_size, settings, job)
            _compute(partial, 0, n, size, job, progress)
        else:
            _distributed(out, partial, n, batch_size, settings, job, overwrite, progress, rank, world)
    finally:
        dataset.close()
    for r in (rim, *(m[0] for m in members)):
        if r.compile_seconds:
            log.info("compile: the first call of each graph took %s", ", ".join(
                f"{k} {v:.1f} s" for k, v in r.compile_seconds.items()))

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
    rims = [rim, *(m[0] for m in job["members"])]
    calibration = job["calibration"]
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
            result = estimate(rims, y, params)
            xs = result["steps"]
            fit = data_fit(dataset.problem, result["x_hat"], y, **params)
            arrays = {ESTIMATE: result["x_hat"].cpu().numpy(), DATA_FIT: fit.cpu().numpy()}
            if result["spread"] is not None:
                arrays[SPREAD] = result["spread"].cpu().numpy()
            if calibration is not None:
                scale = pixel_scale(calibration, result, fit, dataset.problem.forward_model.x_dims)
                arrays[UNCERTAINTY] = half_width(calibration, scale).cpu().numpy()
                arrays[OOD] = flag_out_of_distribution(calibration, fit).cpu().numpy()
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
    variables[DATA_FIT] = ((), np.float64)
    if job["members"]:
        variables[SPREAD] = (x_dims, x0.dtype)
    calibration = job["calibration"]
    if calibration is not None:
        variables[UNCERTAINTY] = (x_dims, x0.dtype)
        variables[OOD] = ((), np.uint8)
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
        DATA_FIT_ATTR: {"statistic": data_fit_name(dataset.problem.likelihood)},
    }
    if job["members"]:
        file_attrs[ENSEMBLE_ATTR] = member_record(job["members"])
    if calibration is not None:
        file_attrs[UNCERTAINTY_ATTR] = _uncertainty_attrs(calibration, run)
    fmt.create(partial, out, n, variables, sizes, file_attrs)
    return batch_size


def _uncertainty_attrs(calibration: dict[str, Any], run: Path) -> dict[str, Any]:
    """What a reconstruction file says about its intervals (the ``uncertainty`` attribute)."""
    keep = ("coverage", "guarantee", "scale", "pixel", "image", "levels", "data_fit", "file", "created")
    return {"calibration": str(run.resolve()), **{k: calibration[k] for k in keep if k in calibration},
            "variable": UNCERTAINTY,
            "interval": f"[x_hat - {UNCERTAINTY}, x_hat + {UNCERTAINTY}]",
            "image_factor": calibration["image"]["quantile"] / calibration["pixel"]["quantile"]
            if calibration["pixel"]["quantile"] > 0 else None}
