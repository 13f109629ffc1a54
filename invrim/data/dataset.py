"""A lazy torch ``Dataset`` over an invrim data file."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np
import torch
from einops import rearrange
from torch.utils.data import Dataset

from .schema import OBSERVATION, SAMPLE, TRUTH, DataError, dim_options
from .validation import FileInfo, check_structure, scan_values


def validate(path: Union[str, os.PathLike], problem: Any = None, require_truth: bool = False,
             check_values: bool = True, check_physics: bool = True) -> FileInfo:
    """Check that ``path`` is a readable invrim data file and return what it holds.

    Checks: readable HDF5 (not truncated), format and version, the physics attributes (the forward
    model and likelihood must be installed: the message names the plugin that made the file),
    variables ``y`` (and ``x`` when ``require_truth``) and the per-sample parameters the file lists,
    their dims against the forward model's ``x_dims`` / ``y_dims`` / ``param_dims`` (any order),
    dtypes (``x`` real floating; ``y`` complex exactly when the forward model says so), equal sample
    counts, ``F(x)`` of the first sample matching ``y``'s shape, and (``check_values``) no NaN/Inf.

    Raises
    ------
    DataError
        One line naming the file, the variable and what is wrong.
    """
    info = check_structure(path, problem=problem, require_truth=require_truth, check_values=False)
    if check_physics and info.has_truth:
        _check_physics(info)
    if check_values:
        scan_values(info.path, [n for n in (OBSERVATION, TRUTH, *info.parameters) if n in info.variables])
    return info


def _check_physics(info: FileInfo) -> None:
    """Apply the forward model to the first sample: ``F(x)`` must have ``y``'s shape."""
    item = HDF5Dataset(info.path, info=info)[0]
    x = item.pop(TRUTH)[None]
    y = item.pop(OBSERVATION)[None]
    params = {k: v[None] for k, v in item.items()}
    fm = info.problem.forward_model
    try:
        with torch.no_grad():
            pred = fm(x, **params)
    except Exception as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataError(f"{info.path}: forward model {fm.name!r} cannot be applied to x of shape "
                        f"{tuple(x.shape[1:])}: {first}") from None
    if tuple(pred.shape) != tuple(y.shape):
        raise DataError(f"{info.path}: forward model {fm.name!r} maps x {tuple(x.shape[1:])} to "
                        f"{tuple(pred.shape[1:])} but y has shape {tuple(y.shape[1:])}")


def _pattern_names(dims: Sequence[str]) -> list[str]:
    # einops axis names must be identifiers; the schema already demands that of dimension names
    return [d if d.isidentifier() else f"axis{i}" for i, d in enumerate(dims)]


class HDF5Dataset(Dataset):
    """Samples of an invrim data file as dicts of tensors: ``{"y", "x", <parameters>}``.

    The file is validated once (see :func:`invrim.data.validate`) and then read lazily: each
    process (every DataLoader worker) opens it on first use, reads only the samples asked for
    (contiguous runs of a batch as one slice), and never holds the whole file in memory, so
    files larger than memory work. Axes are returned in the order the forward model declares
    (``x_dims``, ``y_dims``, ``param_dims``) whatever order the file stores them in.

    Parameters
    ----------
    path
        The data file.
    variables
        Names to return; default ``y``, ``x`` (when present) and the per-sample parameters the
        file lists (the keyword arguments of its forward model and likelihood).
    problem
        The :class:`~invrim.Problem` to check the file against; default: rebuilt from the file.
    dtype
        Convert real floating variables to this dtype (complex ones to the matching complex
        dtype); default: as stored.
    require_truth
        Fail unless the file has ground truth ``x`` (training needs it).
    check_values
        Scan the file for NaN/Inf once at opening (one pass over the data).
    """

    def __init__(self, path: Union[str, os.PathLike], variables: Optional[Sequence[str]] = None,
                 problem: Any = None, dtype: Optional[torch.dtype] = None, require_truth: bool = False,
                 check_values: bool = False, info: Any = None):
        if info is None:
            info = validate(path, problem=problem, require_truth=require_truth, check_values=check_values)
        self.info = info
        self.path = Path(info.path)
        self.problem = info.problem
        self.dtype = dtype
        if variables is None:
            variables = [OBSERVATION] + ([TRUTH] if info.has_truth else []) + list(info.parameters)
        for name in variables:
            if name not in info.variables:
                raise DataError(f"{self.path}: missing variable {name!r}")
        self.variables = list(variables)
        self._patterns = {name: self._pattern(name) for name in self.variables}
        self._bool: set = set()
        self._file = None
        self._handles: dict = {}
        self._pid = None

    # -- axes ----------------------------------------------------------------------------------
    def target_dims(self, name: str) -> tuple[str, ...]:
        """The dims (without ``sample``) of ``name`` in the order the physics expects them."""
        stored = self.info.variables[name].dims[1:]
        fm = self.problem.forward_model if self.problem is not None else None
        if fm is not None and name == OBSERVATION and fm.y_dims:
            return tuple(fm.y_dims)
        if fm is not None and name == TRUTH and fm.x_dims:
            return tuple(fm.x_dims)
        if self.problem is not None:
            for owner in (fm, self.problem.likelihood):
                spec = getattr(owner, "param_dims", {}) or {}
                if name in spec:
                    for option in dim_options(spec[name]):
                        if sorted(option) == sorted(stored):
                            return tuple(option)
        return tuple(stored)

    def _pattern(self, name: str) -> Optional[str]:
        stored = self.info.variables[name].dims
        target = (SAMPLE, *self.target_dims(name))
        if tuple(stored) == target:
            return None
        names = dict(zip(stored, _pattern_names(stored)))
        return f"{' '.join(names[d] for d in stored)} -> {' '.join(names[d] for d in target)}"

    # -- file handle, one per process ------------------------------------------------------------
    def _h5(self) -> dict:
        """This process's h5py dataset handles (kept: looking one up costs more than a small read)."""
        if self._file is None or self._pid != os.getpid():
            import h5py
            self._file = h5py.File(self.path, "r")
            self._pid = os.getpid()
            self._handles = {n: self._file[n] for n in self.variables}
            self._bool = {n for n, h in self._handles.items() if h.attrs.get("invrim_dtype") in ("bool", b"bool")}
        return self._handles

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_file"] = None
        state["_pid"] = None
        state["_handles"] = {}
        return state

    def close(self) -> None:
        if self._file is not None and self._pid == os.getpid():
            self._file.close()
        self._file = None
        self._handles = {}

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    # -- reading ---------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.info.samples

    def _convert(self, name: str, array: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(np.ascontiguousarray(array))
        pattern = self._patterns[name]
        if pattern is not None:
            t = rearrange(t, pattern).contiguous()
        if name in self._bool:
            return t.bool()
        if self.dtype is not None:
            if t.is_complex():
                t = t.to(torch.complex128 if self.dtype == torch.float64 else torch.complex64)
            elif t.is_floating_point():
                t = t.to(self.dtype)
        return t

    def read(self, start: int, stop: int) -> dict[str, torch.Tensor]:
        """Samples ``start:stop`` as batched tensors (one contiguous read per variable)."""
        if not 0 <= start <= stop <= len(self):
            raise IndexError(f"samples {start}:{stop} are outside 0:{len(self)} of {self.path}")
        handles = self._h5()
        return {name: self._convert(name, handles[name][start:stop]) for name in self.variables}

    def read_checked(self, start: int, stop: int) -> dict[str, torch.Tensor]:
        """:meth:`read`, with a one-line DataError naming the variable and sample when a value is
        NaN or Inf (for readers that opened the file without scanning it: figures, evaluation)."""
        batch = self.read(start, stop)
        for name, value in batch.items():
            if (value.is_floating_point() or value.is_complex()) and not torch.isfinite(value).all():
                bad = start + int((~torch.isfinite(value)).flatten(1).any(dim=1).nonzero()[0])
                raise DataError(f"{self.path}: variable {name!r} holds NaN or Inf values (in sample {bad})")
        return batch

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        index = int(index)
        if index < 0:
            index += len(self)
        batch = self.read(index, index + 1)
        return {k: v[0] for k, v in batch.items()}

    def __getitems__(self, indices: Sequence[int]) -> list[dict[str, torch.Tensor]]:
        """A batch: consecutive indices are read as one slice (used by DataLoader)."""
        indices = [int(i) + len(self) if int(i) < 0 else int(i) for i in indices]
        order = sorted(range(len(indices)), key=indices.__getitem__)
        items: list[Optional[dict[str, torch.Tensor]]] = [None] * len(indices)
        run: list[int] = []

        def flush() -> None:
            if not run:
                return
            lo, hi = indices[run[0]], indices[run[-1]] + 1
            block = self.read(lo, hi)
            for pos in run:
                i = indices[pos] - lo
                items[pos] = {k: v[i] for k, v in block.items()}
            run.clear()

        for pos in order:
            if run and indices[pos] > indices[run[-1]] + 1:
                flush()
            run.append(pos)
        flush()
        return items  # type: ignore[return-value]
