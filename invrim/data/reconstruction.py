"""The reconstruction output format (``invrim reconstruct``'s files): its one owner.

A reconstruction file is a netCDF-4/HDF5 file with the attribute ``invrim_format =
"invrim-reconstruction"`` and the variables

* ``x_hat`` ``(sample, *x_dims)`` — the final estimates;
* ``trajectory`` ``(sample, step, *x_dims)`` — every step, when asked for;
* ``trajectory_nmse`` ``(sample, step)`` — the NMSE of every step, when the input had ``x``;
* ``data_fit`` ``(sample,)`` — the likelihood's goodness of fit of ``F(x_hat)`` to ``y`` (the
  reduced χ² for Gaussian noise, the deviance per value for Poisson; attribute ``data_fit``);
* ``x_spread`` ``(sample, *x_dims)`` — the per-pixel standard deviation over an ensemble's
  members (``x_hat`` is then their mean), when reconstructed with an ensemble;
* ``x_uncertainty`` ``(sample, *x_dims)`` — the calibrated half-width of the per-pixel interval
  ``[x_hat − x_uncertainty, x_hat + x_uncertainty]``, and ``ood`` ``(sample,)`` — 1 for a sample
  whose ``data_fit`` lies outside the calibration set's range (attribute ``uncertainty``), when
  reconstructed with ``--uncertainty``;
* ``done`` ``(sample,)`` — 1 for every sample written (the resume bookkeeping);

and attributes naming the input, the run, the weights' SHA-256, the physics, the versions and the
``resume`` settings. Crash safety: the file is written as ``OUT.partial`` with every variable
allocated before any result is written, so later writes never change the HDF5 structure; results
are written and flushed before their ``done`` flags are set and flushed; complete files get their
final name by :func:`os.replace`.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
from pathlib import Path
from typing import Any, Mapping, Optional, Union

import h5py
import numpy as np
import torch

from .io import DatasetWriter
from .schema import ESTIMATE, SAMPLE, DataError, decode_attrs
from .validation import h5_file, is_lock_error, locked_message, open_h5

log = logging.getLogger("invrim")

OUTPUT_FORMAT = "invrim-reconstruction"
TRAJECTORY = "trajectory"
TRAJECTORY_NMSE = "trajectory_nmse"
DONE = "done"
STEP = "step"
DATA_FIT = "data_fit"
SPREAD = "x_spread"
UNCERTAINTY = "x_uncertainty"
OOD = "ood"
#: File attributes: the calibration applied (JSON) and what ``data_fit`` measures (JSON).
UNCERTAINTY_ATTR = "uncertainty"
DATA_FIT_ATTR = "data_fit"
ENSEMBLE_ATTR = "ensemble"
_JSON_ATTRS = (UNCERTAINTY_ATTR, DATA_FIT_ATTR, ENSEMBLE_ATTR)
#: The per-sample variables a reconstruction may hold, in the order they are merged.
RESULTS = (ESTIMATE, TRAJECTORY, TRAJECTORY_NMSE, DATA_FIT, SPREAD, UNCERTAINTY, OOD)
#: ``resume`` settings present only when a job uses them; a job without one never resumes a file with it.
OPTIONAL_SETTINGS = ("precision", "uncertainty", "ensemble")
_ZERO_FILL_BYTES = 64 * 1024 * 1024

PathLike = Union[str, "os.PathLike[str]"]


@contextlib.contextmanager
def exclusive(final: Path):
    """Hold ``FINAL.lock`` for the whole job, so that a second command writing the same output
    stops at once with one line instead of racing the first one's unfinished file."""
    path = final.with_name(final.name + ".lock")
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise DataError(f"cannot write {final}: {e.strerror or e}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DataError(f"another process is writing {final} (it holds {path.name}): wait for it to "
                            "finish, or choose another output") from None
        try:
            yield
        finally:
            path.unlink(missing_ok=True)          # while still holding it: a waiter sees the old inode
    finally:
        os.close(fd)


def create(partial: Path, final: Path, samples: int, variables: Mapping[str, tuple], sizes: Mapping[str, int],
           attrs: Mapping[str, Any]) -> None:
    """Create the unfinished file ``partial`` (for the output ``final``) with every variable
    allocated (zero-filled) and ``done`` all zero; ``variables`` maps result names to
    ``(dims, dtype)`` without the ``sample`` axis (``done`` is added)."""
    variables = {**variables, DONE: ((), np.uint8)}
    writer = DatasetWriter(final, samples, variables, sizes, dict(attrs), overwrite=True, partial=partial)
    try:
        for name, (dims, dtype) in writer.variables.items():
            per_sample = max(1, int(np.prod([sizes[d] for d in dims], dtype=np.int64)) * dtype.itemsize)
            step = max(1, _ZERO_FILL_BYTES // per_sample)
            for lo in range(0, samples, step):
                hi = min(lo + step, samples)
                writer.write(lo, **{name: np.zeros((hi - lo, *[sizes[d] for d in dims]), dtype)})
        writer.close(rename=False)
    except BaseException:
        writer.abort()
        raise
    with h5_file(partial, "r+") as f:
        f.attrs["initialized"] = 1
        f.flush()


def resume_state(partial: Path, settings: Mapping[str, Any]) -> Optional[int]:
    """The batch size of the resumable unfinished file ``partial`` made with the same
    ``settings``, or None when it was not fully created (it is then deleted). A one-line
    :class:`DataError` when it holds a reconstruction with other settings."""
    try:
        with h5py.File(partial, "r") as f:
            attrs = decode_attrs(dict(f.attrs))
            if not attrs.get("initialized") or DONE not in f:
                raise OSError("not initialized")
    except Exception as e:
        if is_lock_error(e):              # another process is writing it: never discard its work
            raise DataError(locked_message(partial)) from None
        log.info("discarding %s: it was not fully created", partial)
        partial.unlink()
        return None
    saved = attrs.get("resume") or {}
    if isinstance(saved, str):
        saved = json.loads(saved)
    keys = [*settings, *(k for k in OPTIONAL_SETTINGS if k in saved and k not in settings)]
    for key in keys:
        if saved.get(key) != settings.get(key):
            raise DataError(f"{partial} holds an unfinished reconstruction with a different {key.replace('_', ' ')}; "
                            "pass --overwrite (overwrite=True) to discard it and start again")
    return int(saved["batch_size"])


def done_flags(path: Path) -> np.ndarray:
    """Which samples of an (unfinished) reconstruction file are written."""
    with h5_file(path, "r") as f:
        return f[DONE][:].astype(bool)


class RowWriter:
    """Writes results into an unfinished file: the rows, flushed, then their ``done`` flags."""

    def __init__(self, path: Path):
        self.file = h5_file(path, "r+")

    def write(self, lo: int, hi: int, arrays: Mapping[str, np.ndarray]) -> None:
        for name, a in arrays.items():
            self.file[name][lo:hi] = a
        self.file.flush()
        self.file[DONE][lo:hi] = 1
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def merge(target: Path, parts: list[Path]) -> None:
    """Copy the finished rank parts into ``target`` (only what is not done there yet)."""
    writer = RowWriter(target)
    try:
        done = writer.file[DONE][:].astype(bool)
        for part in parts:
            if not part.exists():
                continue
            with h5py.File(part, "r") as p:
                lo, hi = (int(v) for v in json.loads(p.attrs["resume"])["samples"])
                if not p[DONE][:].all():
                    raise DataError(f"{part} is not finished; rerun to resume")
                if not done[lo:hi].all():
                    writer.write(lo, hi, {name: p[name][:] for name in RESULTS if name in p})
    finally:
        writer.close()


def finish(partial: Path, final: Path) -> None:
    """Give a complete unfinished file its final name (a one-line error if samples are missing)."""
    if not done_flags(partial).all():
        raise DataError(f"{partial}: some samples are not done after the run; rerun to finish")
    os.replace(partial, final)


def read_reconstruction(path: PathLike) -> dict[str, Any]:
    """The decoded attributes of a complete reconstruction file (raises a one-line DataError)."""
    with open_h5(path) as f:
        attrs = decode_attrs(dict(f.attrs))
        names = set(f.variables)
    if attrs.get("invrim_format") != OUTPUT_FORMAT:
        raise DataError(f"{path} is not an invrim reconstruction file (made by 'invrim reconstruct')")
    if ESTIMATE not in names:
        raise DataError(f"{path}: missing variable {ESTIMATE!r}")
    for key in _JSON_ATTRS:
        if isinstance(attrs.get(key), str):
            try:
                attrs[key] = json.loads(attrs[key])
            except json.JSONDecodeError:
                raise DataError(f"{path}: attribute {key!r} is not valid JSON") from None
    return attrs


def estimate_layout(path: PathLike) -> tuple[tuple[str, ...], tuple[int, ...], np.dtype, set]:
    """``x_hat``'s dims and shape without the sample axis, its dtype, and the variables present;
    a one-line DataError unless its first axis is ``sample``."""
    with open_h5(path) as f:
        var = f.variables[ESTIMATE]
        dims, shape, dtype = tuple(var.dimensions), tuple(var.shape), var.dtype
        names = set(f.variables)
    if not dims or dims[0] != SAMPLE:
        raise DataError(f"{path}: variable {ESTIMATE!r} has dims {dims}; expected ('sample', …)")
    return dims[1:], tuple(int(s) for s in shape), np.dtype(dtype), names


def read_rows(path: PathLike, lo: int, hi: int, names=(ESTIMATE,)) -> dict[str, Optional[torch.Tensor]]:
    """Samples ``lo:hi`` of the named result variables as tensors (None for one not stored)."""
    with h5py.File(path, "r") as f:
        return {name: torch.from_numpy(np.ascontiguousarray(f[name][lo:hi])) if name in f else None
                for name in names}
