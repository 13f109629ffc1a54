"""Writing and reading invrim data files (netCDF-4/HDF5 through h5netcdf).

* :class:`DatasetWriter` streams samples into a new file, so files larger than memory can be made;
  the file gets its final name only once complete.
* :func:`write_dataset` writes an in-memory ``xarray.Dataset``; :func:`open_dataset` opens a file
  as one (lazily) after validating it.
"""
from __future__ import annotations

import datetime as _dt
import os
import shutil
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np

from .. import __version__
from .dataset import validate
from .validation import is_lock_error, locked_message, warn_if_unregistered
from .schema import FORMAT, FORMAT_VERSION, SAMPLE, DataError, check_dim_names, decode_attrs, encode_attrs

PathLike = Union[str, "os.PathLike[str]"]

#: Target bytes per chunk for small samples (one sample per chunk otherwise).
CHUNK_BYTES = 256 * 1024
PARTIAL_SUFFIX = ".partial"
#: Room kept free beyond a new file's data (HDF5 metadata, chunk indices).
SPACE_MARGIN = 1 << 20


def _megabytes(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def partial_path(path: PathLike) -> Path:
    path = Path(path)
    return path.with_name(path.name + PARTIAL_SUFFIX)


def numpy_dtype(dtype: Any) -> np.dtype:
    """A numpy dtype for a torch or numpy dtype (bool is stored as uint8)."""
    if hasattr(dtype, "is_floating_point"):        # a torch dtype
        import torch
        dtype = torch.empty((), dtype=dtype).numpy().dtype
    dtype = np.dtype(dtype)
    return np.dtype(np.uint8) if dtype == np.bool_ else dtype


def to_numpy(array: Any) -> np.ndarray:
    if hasattr(array, "detach"):
        array = array.detach().cpu()
        if array.is_conj():
            array = array.resolve_conj()
        array = array.numpy()
    array = np.asarray(array)
    return array.astype(np.uint8) if array.dtype == np.bool_ else array


def output_problem(path: PathLike, overwrite: bool, inputs: Sequence[PathLike] = ()) -> Optional[str]:
    """What stops ``path`` from being written as a new output file (one line), or None."""
    path = Path(path)
    if path.is_dir():
        return f"{path} is a folder; give an output file name"
    if path.exists() and not overwrite:
        return f"{path} already exists; pass --overwrite (overwrite=True) to replace it"
    for source in inputs:
        if source is not None and path.exists() and Path(source).exists() and path.resolve() == Path(source).resolve():
            return f"the output {path} is the input file itself"
    if not path.parent.is_dir():
        return f"cannot write {path}: folder {path.parent} does not exist"
    return None


def check_output(path: PathLike, overwrite: bool, inputs: Sequence[PathLike] = ()) -> None:
    """Raise a :class:`DataError` when ``path`` cannot be written (see :func:`output_problem`)."""
    problem = output_problem(path, overwrite, inputs)
    if problem:
        raise DataError(problem)


def base_attrs() -> dict[str, Any]:
    """The attributes every file invrim writes carries."""
    return {"invrim_format": FORMAT, "invrim_format_version": FORMAT_VERSION, "invrim_version": __version__,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}


def chunk_samples(sample_bytes: int, samples: int) -> int:
    return int(max(1, min(samples, CHUNK_BYTES // max(sample_bytes, 1))))


class DatasetWriter:
    """Stream samples into a new invrim data file.

    Parameters
    ----------
    path
        The final file name. Data go to ``path + ".partial"``, renamed to ``path`` by
        :meth:`close`; a failed or interrupted write never leaves a file under the final name.
    samples
        Number of samples (the size of the ``sample`` dimension).
    variables
        ``{name: (dims, dtype)}`` for per-sample variables (``dims`` without ``sample``, with
        their sizes given in ``sizes``), e.g. ``{"y": (("channel", "height", "width"), "float32")}``.
    sizes
        The size of every dimension used (besides ``sample``).
    attrs
        File attributes (JSON-encoded where structured); :func:`base_attrs` are added.
    overwrite
        Replace an existing file at ``path`` (only when the new one is complete).
    partial
        Where to write until :meth:`close` (default ``path + ".partial"``).
    """

    def __init__(self, path: PathLike, samples: int, variables: Mapping[str, tuple[Sequence[str], Any]],
                 sizes: Mapping[str, int], attrs: Optional[Mapping[str, Any]] = None, overwrite: bool = False,
                 variable_attrs: Optional[Mapping[str, Mapping[str, Any]]] = None,
                 partial: Optional[PathLike] = None):
        import h5netcdf

        self.path = Path(path)
        check_output(self.path, overwrite)
        if not isinstance(samples, int) or samples < 1:
            raise DataError(f"cannot write {self.path}: the number of samples must be >= 1, got {samples!r}")
        self.samples = samples
        self.partial = Path(partial) if partial is not None else partial_path(self.path)
        self.variables = {name: (tuple(dims), numpy_dtype(dtype)) for name, (dims, dtype) in variables.items()}
        var_attrs = {name: dict((variable_attrs or {}).get(name, {})) for name in self.variables}
        for name, (_, dtype) in variables.items():
            if str(dtype).split(".")[-1] in ("bool", "bool_"):       # stored as uint8, read back as bool
                var_attrs[name]["invrim_dtype"] = "bool"
        for name, (dims, _) in self.variables.items():
            check_dim_names(dims, f"variable {name!r} of {self.path}")
            missing = [d for d in dims if d not in sizes]
            if missing:
                raise DataError(f"cannot write {self.path}: no size given for dimension(s) {missing} of {name!r}")
        if not os.access(self.partial.parent, os.W_OK):
            raise DataError(f"cannot write {self.path}: folder {self.partial.parent} is not writable")
        self._check_space(sizes)
        try:
            self._file = h5netcdf.File(self.partial, "w")
        except OSError as e:
            if is_lock_error(e):
                raise DataError(locked_message(self.partial)) from None
            reason = e.strerror or (str(e).splitlines()[0] if str(e) else type(e).__name__)
            raise DataError(f"cannot write {self.path}: {reason}") from None
        try:
            self._file.dimensions = {SAMPLE: samples, **{d: int(s) for d, s in sizes.items()}}
            self._vars = {}
            for name, (dims, dtype) in self.variables.items():
                shape = [int(sizes[d]) for d in dims]
                per_sample = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
                chunks = (chunk_samples(per_sample, samples), *shape)
                var = self._file.create_variable(name, (SAMPLE, *dims), dtype, chunks=chunks)
                for k, v in encode_attrs(var_attrs[name]).items():
                    var.attrs[k] = v
                self._vars[name] = var
            for k, v in encode_attrs({**base_attrs(), **dict(attrs or {})}).items():
                self._file.attrs[k] = v
        except BaseException:
            self.abort()
            raise

    def _check_space(self, sizes: Mapping[str, int]) -> None:
        """A one-line DataError, before anything is written, when the device cannot hold the file:
        HDF5 fails badly on a full disk (torn files, errors from its destructors)."""
        needed = sum(self.samples * int(np.prod([sizes[d] for d in dims], dtype=np.int64)) * dtype.itemsize
                     for dims, dtype in self.variables.values())
        needed += SPACE_MARGIN + needed // 100
        usage = shutil.disk_usage(self.partial.parent)
        if usage.total == 0:                          # /proc, /sys: no place for files
            raise DataError(f"cannot write {self.path}: {self.partial.parent} holds no files (a virtual file system)")
        free = usage.free
        if free < needed:
            raise DataError(f"cannot write {self.path}: no space left on device (it needs about "
                            f"{_megabytes(needed)}, {_megabytes(free)} are free in {self.partial.parent})")

    def write(self, start: int, **arrays: Any) -> None:
        """Write ``arrays`` (leading axis = samples) at sample ``start`` onward."""
        for name, array in arrays.items():
            if name not in self._vars:
                raise DataError(f"{self.path}: no variable {name!r} was declared")
            a = to_numpy(array)
            dims, dtype = self.variables[name]
            expected = tuple(self._vars[name].shape[1:])
            if a.shape[1:] != expected:
                raise DataError(f"{self.path}: variable {name!r} expects samples of shape {expected} "
                                f"({', '.join(dims)}), got {a.shape[1:]}")
            if start < 0 or start + a.shape[0] > self.samples:
                raise DataError(f"{self.path}: samples {start}..{start + a.shape[0] - 1} are outside 0..{self.samples - 1}")
            self._vars[name][start:start + a.shape[0]] = a.astype(dtype, copy=False)

    def write_static(self, name: str, dims: Sequence[str], values: Any, attrs: Optional[Mapping[str, Any]] = None
                     ) -> None:
        """Write a variable without the ``sample`` dimension (a coordinate, a shared map)."""
        values = np.asarray(values)
        if values.dtype.kind in "UO":
            import h5py
            values = values.astype(str).astype(object)
            dtype: Any = h5py.string_dtype()
        else:
            values = to_numpy(values)
            dtype = values.dtype
        var = self._file.create_variable(name, tuple(dims), dtype)
        var[...] = values
        for k, v in encode_attrs(dict(attrs or {})).items():
            var.attrs[k] = v

    def set_attrs(self, **attrs: Any) -> None:
        for k, v in encode_attrs(attrs).items():
            self._file.attrs[k] = v

    def close(self, rename: bool = True) -> Path:
        """Finish the file and give it its final name (``rename=False``: leave it as ``.partial``)."""
        self._file.close()
        if not rename:
            return self.partial
        os.replace(self.partial, self.path)
        return self.path

    def abort(self) -> None:
        """Close and delete the partial file."""
        try:
            self._file.close()
        except Exception:
            pass
        self.partial.unlink(missing_ok=True)

    def __enter__(self) -> "DatasetWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None:
            self.close()
        else:
            self.abort()
        return False


def write_dataset(dataset, path: PathLike, overwrite: bool = False) -> Path:
    """Write an ``xarray.Dataset`` (every per-sample variable with leading dim ``sample``) as an
    invrim data file, complete or not at all. The dataset's attributes must name the physics
    (``forward_model``, ``forward_model_config``, ``likelihood``, ``likelihood_config``)."""
    sizes = {d: int(s) for d, s in dataset.sizes.items() if d != SAMPLE}
    if SAMPLE not in dataset.sizes:
        raise DataError(f"cannot write {path}: the dataset has no '{SAMPLE}' dimension")
    variables, static = {}, {}
    for name, var in dataset.variables.items():
        if var.dims[:1] == (SAMPLE,):
            variables[str(name)] = (tuple(var.dims[1:]), var.dtype)
        elif SAMPLE in var.dims:
            raise DataError(f"cannot write {path}: variable {name!r} has dims {var.dims}; "
                            f"per-sample variables start with '{SAMPLE}'")
        else:                                   # coordinates and other non-sample variables
            static[str(name)] = var
    missing = [k for k in ("forward_model", "likelihood") if k not in dataset.attrs]
    if missing:
        raise DataError(f"cannot write {path}: the dataset's attributes lack {', '.join(missing)}")
    attrs = {k: v for k, v in dataset.attrs.items() if k not in base_attrs()}   # provenance of this write
    warn_if_unregistered(attrs, path)
    with DatasetWriter(path, int(dataset.sizes[SAMPLE]), variables, sizes, attrs,
                       overwrite=overwrite,
                       variable_attrs={n: dict(dataset[n].attrs) for n in variables}) as writer:
        for name in variables:
            writer.write(0, **{name: dataset[name].values})
        for name, var in static.items():
            writer.write_static(name, tuple(var.dims), var.values, dict(var.attrs))
    return Path(path)


def open_dataset(path: PathLike, problem: Any = None, check_values: bool = False):
    """Validate an invrim data file and open it lazily as an ``xarray.Dataset`` (JSON attributes
    decoded). See :func:`invrim.data.validate` for the checks."""
    import xarray as xr

    validate(path, problem=problem, check_values=check_values)
    ds = xr.open_dataset(path, engine="h5netcdf")
    ds.attrs = decode_attrs(dict(ds.attrs))
    return ds
