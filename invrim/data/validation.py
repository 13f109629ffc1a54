"""Validation of invrim data files: one clear line naming the file, the variable and the fault."""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np

from ..plugins import registry
from ..plugins.errors import UnknownComponentError
from ..plugins.provenance import check_provider, version_mismatch
from ..problem import Problem
from .schema import (ATTRS_REQUIRED, FORMAT, FORMAT_VERSION, OBSERVATION, SAMPLE, TRUTH, DataError,
                     decode_attrs, dim_options)

#: Bytes read at a time when scanning values for NaN/Inf.
SCAN_BYTES = 32 * 1024 * 1024


@dataclass
class VariableInfo:
    dims: tuple[str, ...]
    shape: tuple[int, ...]
    dtype: np.dtype


@dataclass
class FileInfo:
    """What :func:`validate` learnt about a file."""

    path: Path
    attrs: dict[str, Any]
    samples: int
    variables: dict[str, VariableInfo]
    parameters: list[str]
    problem: Any = None
    has_truth: bool = False


def _fmt(dims) -> str:
    return "(" + ", ".join(dims) + ")"


def is_lock_error(error: BaseException) -> bool:
    """True for HDF5's refusal to open a file another process holds open for writing."""
    text = str(error)
    return "unable to lock file" in text or "errno = 11" in text or getattr(error, "errno", None) == 11


def locked_message(path: Union[str, os.PathLike]) -> str:
    return (f"{path} is being written by another process (its HDF5 file lock is held): wait for that "
            "process to finish, or choose another output")


def h5_file(path: Union[str, os.PathLike], mode: str = "r"):
    """``h5py.File(path, mode)`` with a one-line DataError when another process holds its lock."""
    import h5py
    try:
        return h5py.File(path, mode)
    except OSError as e:
        if is_lock_error(e):
            raise DataError(locked_message(path)) from None
        raise


def open_h5(path: Union[str, os.PathLike]):
    """Open a file read-only with h5netcdf, turning every failure into a one-line DataError."""
    import h5netcdf
    import h5py

    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path} is a folder, not a data file")
    if not path.is_file():
        hint = ""
        partial = path.with_name(path.name + ".partial")
        if partial.exists():
            hint = f" (only {partial.name}, an incomplete file left by an interrupted write, exists)"
        raise DataError(f"{path}: no such file{hint}")
    if path.name.endswith(".partial"):
        raise DataError(f"{path} is an incomplete file left by an interrupted write; run the command again")
    try:
        if not h5py.is_hdf5(path):
            raise DataError(f"{path} is not an HDF5/netCDF-4 file (another format, or empty)")
        return h5netcdf.File(path, "r", phony_dims="access")
    except DataError:
        raise
    except Exception as e:  # h5py raises OSError/RuntimeError/KeyError with multi-line texts
        if is_lock_error(e):
            raise DataError(locked_message(path)) from None
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataError(f"{path} could not be read as HDF5 (truncated or corrupt?): {first}") from None


def read_attrs(path: Union[str, os.PathLike]) -> dict[str, Any]:
    """The decoded file attributes, after checking the format and version."""
    with open_h5(path) as f:
        return _checked_attrs(Path(path), decode_attrs(dict(f.attrs)))


def _checked_attrs(path: Path, attrs: dict[str, Any]) -> dict[str, Any]:
    if attrs.get("invrim_format") != FORMAT:
        raise DataError(f"{path} is not an invrim data file (its 'invrim_format' attribute is not "
                        f"{FORMAT!r}); see docs/file-format.md")
    version = attrs.get("invrim_format_version")
    if not isinstance(version, int):
        raise DataError(f"{path} has no valid 'invrim_format_version' attribute")
    if version > FORMAT_VERSION:
        from .. import __version__
        raise DataError(f"{path} uses invrim data-format version {version}; invrim {__version__} reads "
                        f"versions up to {FORMAT_VERSION}: upgrade invrim")
    missing = [k for k in ATTRS_REQUIRED if k not in attrs]
    if missing:
        raise DataError(f"{path} lacks the attribute(s) {', '.join(missing)} that say which physics made it")
    for k in ("forward_model_config", "likelihood_config"):
        if not isinstance(attrs[k], dict):
            raise DataError(f"{path}: attribute {k!r} is not a JSON object")
    return attrs


def warn_if_unregistered(attrs: dict[str, Any], path: Union[str, os.PathLike]) -> None:
    """Warn, when a file is written, that its physics is not in the registry: the file is valid,
    but ``invrim train`` and the other commands will not be able to rebuild its problem."""
    reg = registry()
    for kind, label in (("forward_model", "forward model"), ("likelihood", "likelihood")):
        name = attrs.get(kind)
        if not isinstance(name, str):
            continue
        try:
            reg.kinds()[f"{kind}s"].info(name)
        except UnknownComponentError:
            warnings.warn(f"{path}: {label} {name!r} is not registered (no installed plugin provides it), so "
                          f"'invrim train/reconstruct/evaluate/show' cannot rebuild it from the file; from Python "
                          f"pass it yourself (HDF5Dataset(path, problem=...)), or register it in a plugin "
                          f"(docs/plugins.md)", UserWarning, stacklevel=3)


def problem_from_attrs(attrs: dict[str, Any], path: Union[str, os.PathLike] = "<file>"):
    """Rebuild the file's :class:`~invrim.Problem` through the plugin registry."""
    reg = registry()
    providers = attrs.get("providers") or {}
    built = []
    for kind, label in (("forward_model", "forward model"), ("likelihood", "likelihood")):
        name = attrs[kind]
        components = reg.forward_models if kind == "forward_model" else reg.likelihoods
        try:
            components.info(name)
        except UnknownComponentError as e:
            made_by = providers.get(kind) or {}
            if made_by.get("distribution") not in (None, "invrim"):
                raise DataError(check_provider(kind, name, made_by, str(path))) from None
            raise DataError(f"{path}: {label} {name!r} is not registered (no installed plugin provides it): from "
                            f"Python pass it yourself (HDF5Dataset(path, problem=...), train_on_file(path, run, "
                            f"problem=...)), or register it in a plugin (docs/plugins.md); {e}") from None
        mismatch = version_mismatch(kind, name, providers.get(kind), str(path))
        if mismatch:
            warnings.warn(mismatch, UserWarning, stacklevel=3)
        try:
            built.append(components.build(name, **attrs[f"{kind}_config"]))
        except ImportError as e:
            raise DataError(f"{path}: {label} {name!r} needs a missing package: {e}") from None
        except (ValueError, TypeError) as e:
            raise DataError(f"{path}: cannot rebuild {label} {name!r} from {kind}_config: {e}") from None
    return Problem(*built)


def _expected_param_dims(problem, name: str):
    for owner in (problem.forward_model, problem.likelihood):
        spec = getattr(owner, "param_dims", {}) or {}
        if name in spec:
            return dim_options(spec[name])
    return None


def _check_dims(path, name, dims, options, whose, what=None) -> None:
    what = what or f"variable {name!r}"
    if any(d.startswith("phony_dim") for d in dims):
        raise DataError(f"{path}: {what} has unnamed dimensions {_fmt(dims)}; write files with "
                        "invrim.data or xarray (named dimensions)")
    if not dims or dims[0] != SAMPLE:
        raise DataError(f"{path}: {what} has dims {_fmt(dims)}; per-sample variables start with "
                        f"'{SAMPLE}'")
    if options is None:
        return
    rest = sorted(dims[1:])
    if not any(sorted(o) == rest for o in options):
        expected = " or ".join(_fmt((SAMPLE, *o)) for o in options)
        raise DataError(f"{path}: {what} has dims {_fmt(dims)} but {whose} expects {expected} "
                        "(the non-sample dims in any order)")


def expected_dims(problem, name: str) -> Optional[list[tuple[str, ...]]]:
    """The accepted non-sample dims of variable ``name`` under ``problem`` (alternatives), or None
    when the physics does not say (then any dims are accepted)."""
    fm = problem.forward_model
    if name == OBSERVATION:
        return [tuple(fm.y_dims)] if fm.y_dims else None
    if name == TRUTH:
        return [tuple(fm.x_dims)] if fm.x_dims else None
    return _expected_param_dims(problem, name)


def known_variables(problem) -> list[str]:
    """The variables a data file for ``problem`` may hold: ``x``, ``y`` and the parameters named in
    the forward model's and the likelihood's ``param_dims``."""
    names = [TRUTH, OBSERVATION]
    for owner in (problem.forward_model, problem.likelihood):
        names += [n for n in (getattr(owner, "param_dims", {}) or {}) if n not in names]
    return names


def check_variables(path: Union[str, os.PathLike], variables: dict[str, VariableInfo], problem: Any,
                    parameters: Sequence[str] = (), require_truth: bool = False,
                    what: Optional[Callable[[str], str]] = None) -> int:
    """Check the variables of a data file, present or planned, against ``problem``'s declared
    variables: ``y`` (and ``x`` when ``require_truth``) and every listed parameter present, dims
    (first ``sample``, the rest the physics' in any order), dtypes, equal sample counts.

    ``what(name)`` names a variable in messages (default ``"variable 'y'"``; the importer names
    the source file and array). Returns the number of samples; raises a one-line DataError.
    """
    what = what or (lambda n: f"variable {n!r}")
    fm = problem.forward_model
    needed = [OBSERVATION] + ([TRUTH] if require_truth else []) + list(parameters)
    for name in needed:
        if name not in variables:
            label = {TRUTH: " (ground truth, needed for training and evaluation)",
                     OBSERVATION: " (the observation)"}.get(name, " (a per-sample parameter listed in 'parameters')")
            raise DataError(f"{path}: missing variable {name!r}{label}")
    present = [n for n in (OBSERVATION, TRUTH, *parameters) if n in variables]

    counts = {n: variables[n].shape[0] if variables[n].shape else 0 for n in present}
    whose = f"forward model {fm.name!r}"
    for n in present:
        v = variables[n]
        _check_dims(path, n, v.dims, expected_dims(problem, n), whose, what(n))
        if n == OBSERVATION:
            if bool(fm.y_is_complex) != (v.dtype.kind == "c"):
                raise DataError(f"{path}: {what(n)} has dtype {v.dtype} but forward model {fm.name!r} makes "
                                f"{'complex' if fm.y_is_complex else 'real'} observations")
            if v.dtype.kind not in "fc":
                raise DataError(f"{path}: {what(n)} has dtype {v.dtype}; expected floating point")
        elif n == TRUTH:
            if v.dtype.kind != "f":
                raise DataError(f"{path}: {what(n)} has dtype {v.dtype}; expected real floating point")
        elif v.dtype.kind not in "fciub":
            raise DataError(f"{path}: parameter {what(n)} has dtype {v.dtype}; expected numbers")
    if len(set(counts.values())) > 1:
        listing = ", ".join(f"{n}: {c}" for n, c in counts.items())
        raise DataError(f"{path}: variables have different numbers of samples ({listing})")
    samples = counts[OBSERVATION]
    if samples == 0:
        raise DataError(f"{path}: the file holds no samples")
    return samples


def check_structure(path: Union[str, os.PathLike], problem: Any = None, require_truth: bool = False,
                    check_values: bool = True) -> FileInfo:
    """The checks of :func:`invrim.data.validate` (see there) but ``F(x)`` of the first sample
    matching ``y``'s shape, which reads a sample through the physics; a one-line DataError."""
    path = Path(path)
    with open_h5(path) as f:
        attrs = _checked_attrs(path, decode_attrs(dict(f.attrs)))
        variables = {}
        for name, var in f.variables.items():
            # the stored array's own shape (h5netcdf reports the dimensions' sizes, which hides a
            # variable shorter than its 'sample' dimension in a file written with bare h5py)
            variables[name] = VariableInfo(tuple(var.dimensions), tuple(var._h5ds.shape), np.dtype(var.dtype))
        linked = any(var._h5ds.is_virtual for var in f.variables.values())
    broken = missing_links(path) if linked else []
    if broken:
        name, source = broken[0]
        raise DataError(f"{path}: variable {name!r} links to {source}, which is not there (a file made by "
                        "'invrim import --link' keeps its arrays in their source files: move the folder with "
                        "them, or import again without --link)")
    if problem is None:
        problem = problem_from_attrs(attrs, path)
    parameters = attrs.get("parameters") or []
    if not isinstance(parameters, list) or not all(isinstance(p, str) for p in parameters):
        raise DataError(f"{path}: attribute 'parameters' must be a JSON list of variable names")

    samples = check_variables(path, variables, problem, parameters, require_truth)
    present = [n for n in (OBSERVATION, TRUTH, *parameters) if n in variables]

    info = FileInfo(path=path, attrs=attrs, samples=samples, variables=variables, parameters=list(parameters),
                    problem=problem, has_truth=TRUTH in variables)
    if check_values:
        scan_values(path, present)
    return info


def missing_links(path: Union[str, os.PathLike]) -> list[tuple[str, str]]:
    """``[(variable, source file)]`` for the virtual datasets of ``path`` (``invrim import --link``)
    whose source file is not found: HDF5 would silently read their fill value."""
    import h5py

    path = Path(path)
    out = []
    with h5py.File(path, "r") as f:
        for name, ds in f.items():
            if not isinstance(ds, h5py.Dataset) or not ds.is_virtual:
                continue
            for source in {vs.file_name for vs in ds.virtual_sources()}:
                p = Path(source)
                if source != "." and not (p if p.is_absolute() else path.parent / p).is_file():
                    out.append((name, source))
                    break
    return out


def scan_values(path: Union[str, os.PathLike], names) -> None:
    """Raise a DataError naming the variable and first sample that holds NaN or Inf."""
    import h5py

    with h5py.File(path, "r") as f:
        for name in names:
            ds = f[name]
            if ds.dtype.kind not in "fc":
                continue
            per_sample = max(1, int(np.prod(ds.shape[1:], dtype=np.int64)) * ds.dtype.itemsize)
            step = max(1, SCAN_BYTES // per_sample)
            for start in range(0, ds.shape[0], step):
                block = ds[start:start + step]
                ok = np.isfinite(block).reshape(block.shape[0], -1).all(axis=1)
                if not ok.all():
                    bad = start + int(np.argmin(ok))
                    raise DataError(f"{path}: variable {name!r} holds NaN or Inf values (first in sample {bad})")
