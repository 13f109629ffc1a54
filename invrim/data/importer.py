"""``invrim import``: foreign files (fastMRI HDF5, any HDF5, NumPy, FITS, NIfTI) → an invrim data file.

A **mapping** says which array of which file becomes which variable of the problem, and what its
axes are called::

    forward_model = "mri_multicoil"
    forward_model_config = {coils = 4}
    likelihood = "gaussian"
    likelihood_config = {sigma = 0.01}
    file = "file_brain_001.h5"                      # the default file of every variable

    [variables.y]
    array = "kspace"
    dims = ["sample", "coil", "ky", "kx"]           # one name per axis of the array; "sample" = samples
    select = {sample = "2:10"}                      # optional: START:STOP[:STEP] per dim
    [variables.mask]
    array = "mask"
    dims = ["kx"]                                   # no "sample" dim: the same mask for every sample
    [variables.sens]
    file = "sens/{stem}.npz"                        # {stem}: the default file's stem
    array = "sens"
    dims = ["sample", "coil", "height", "width"]

(TOML, or the same as JSON; on the command line ``--var NAME=[FILE::]ARRAY[:DIM,DIM,…]``.)

The whole mapping is checked against the problem before anything is written (:func:`plan_import`:
names, dims, sizes, dtypes, sample counts, ``F(x)`` of the first sample when ``x`` is given), with
one-line :class:`~invrim.data.DataError` s naming the file, the array and the axis. The output is
invrim's ordinary self-describing file, streamed a few samples at a time through
:class:`~invrim.data.DatasetWriter` (:func:`import_data`), or, with ``link=True``, HDF5 virtual
datasets pointing at the source arrays (no copy) wherever that is possible.
"""
from __future__ import annotations

import contextlib
import json
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np

from .. import __version__
from ..plugins import registry
from ..plugins.provenance import provider_record
from .io import DatasetWriter, check_output, partial_path
from .readers import array_info, listed_arrays, open_reader
from .schema import OBSERVATION, SAMPLE, TRUTH, DataError, check_dim_names
from .validation import VariableInfo, check_variables, known_variables

PathLike = Union[str, "os.PathLike[str]"]

#: Bytes of all variables copied per step (a few samples: memory stays bounded).
COPY_BYTES = 32 * 1024 * 1024
#: The attribute of an imported file recording where each variable came from (JSON).
IMPORTED_ATTR = "imported"
CHANNEL = "channel"


# ---------------------------------------------------------------------------------------------
# the mapping
# ---------------------------------------------------------------------------------------------
@dataclass
class VariableSpec:
    """Where one variable comes from: ``file`` (default: the mapping's ``file``), ``array`` (may be
    omitted when the file holds one array), ``dims`` (one name per axis; default: the file's own
    names, for netCDF files), ``select`` (``{dim: slice}``), ``complex`` (the last axis, of size 2,
    holds real and imaginary parts) and ``reader`` (a registered reader; default by suffix)."""

    name: str
    file: Optional[str] = None
    array: Optional[str] = None
    dims: Optional[tuple[str, ...]] = None
    select: dict[str, slice] = field(default_factory=dict)
    complex: bool = False
    reader: Optional[str] = None


@dataclass
class ImportMapping:
    """A whole mapping (see the module docstring); relative file names are resolved from ``base``."""

    forward_model: str
    forward_model_config: dict[str, Any] = field(default_factory=dict)
    likelihood: str = "gaussian"
    likelihood_config: dict[str, Any] = field(default_factory=dict)
    variables: dict[str, VariableSpec] = field(default_factory=dict)
    file: Optional[str] = None
    select: dict[str, slice] = field(default_factory=dict)
    base: Path = field(default_factory=Path)
    label: str = "the mapping"

    def with_file(self, file: PathLike) -> "ImportMapping":
        """The same mapping with another default file (for one of many inputs)."""
        from dataclasses import replace
        return replace(self, file=str(file))


def parse_slice(text: Any, where: str) -> slice:
    """``"2:10"``, ``"::2"``, ``"5"`` (one index kept as an axis of 1), or ``[start, stop, step]``."""
    if isinstance(text, slice):
        return text
    if isinstance(text, (list, tuple)):
        parts = [None if v is None else v for v in text]
    elif isinstance(text, int) and not isinstance(text, bool):
        parts = [text, text + 1 if text != -1 else None]
    elif isinstance(text, str):
        bits = text.split(":")
        if len(bits) == 1:
            bits = [bits[0], str(int(bits[0]) + 1) if bits[0].strip().lstrip("-").isdigit() else ""]
        try:
            parts = [int(b) if b.strip() else None for b in bits]
        except ValueError:
            raise DataError(f"{where}: select {text!r} is not START:STOP[:STEP] with integers") from None
    else:
        raise DataError(f"{where}: select {text!r} is not START:STOP[:STEP]")
    if not 1 <= len(parts) <= 3 or any(p is not None and (isinstance(p, bool) or not isinstance(p, int)) for p in parts):
        raise DataError(f"{where}: select {text!r} is not START:STOP[:STEP] with integers")
    s = slice(*parts)
    if s.step is not None and s.step < 1:
        raise DataError(f"{where}: select {text!r}: the step must be a positive integer")
    return s


def parse_select(text: str) -> tuple[str, slice]:
    """``"sample=0:100"`` → ``("sample", slice(0, 100))`` (``--select``)."""
    dim, sep, value = text.partition("=")
    if not sep or not dim.strip().isidentifier():
        raise DataError(f"--select expects DIM=START:STOP[:STEP] (e.g. --select sample=0:100), got {text!r}")
    return dim.strip(), parse_slice(value.strip(), f"--select {text}")


def parse_var(text: str) -> VariableSpec:
    """``--var 'NAME=[FILE::]ARRAY[:DIM,DIM,…]'`` → a :class:`VariableSpec`."""
    name, sep, rest = text.partition("=")
    name = name.strip()
    if not sep or not name.isidentifier():
        raise DataError(f"--var expects NAME=[FILE::]ARRAY[:DIM,DIM,...] (e.g. --var y=scan.h5::kspace:"
                        f"sample,coil,ky,kx), got {text!r}")
    file = None
    if "::" in rest:
        file, rest = rest.split("::", 1)
    array, _, dims = rest.partition(":")
    names = tuple(d.strip() for d in dims.split(",") if d.strip()) if dims.strip() else None
    return VariableSpec(name, file=file or None, array=array.strip() or None, dims=names)


def _spec_from(name: str, entry: Any, where: str) -> VariableSpec:
    if isinstance(entry, str):
        spec = parse_var(f"{name}={entry}")
        return spec
    if not isinstance(entry, Mapping):
        raise DataError(f"{where}: variables.{name} must be a table (file, array, dims, select), got {entry!r}")
    unknown = sorted(set(entry) - {"file", "array", "dims", "select", "complex", "reader"})
    if unknown:
        raise DataError(f"{where}: variables.{name} has unknown key(s) {', '.join(unknown)}; "
                        "accepted: file, array, dims, select, complex, reader")
    dims = entry.get("dims")
    if isinstance(dims, str):
        dims = [d.strip() for d in dims.split(",") if d.strip()]
    if dims is not None and (not isinstance(dims, (list, tuple)) or not all(isinstance(d, str) for d in dims)):
        raise DataError(f"{where}: variables.{name}.dims must be a list of axis names, got {dims!r}")
    select = entry.get("select") or {}
    if not isinstance(select, Mapping):
        raise DataError(f"{where}: variables.{name}.select must be a table {{dim = \"START:STOP\"}}")
    return VariableSpec(name, file=entry.get("file"), array=None if entry.get("array") is None else str(entry["array"]),
                        dims=None if dims is None else tuple(dims),
                        select={d: parse_slice(v, f"{where}: variables.{name}.select.{d}") for d, v in select.items()},
                        complex=bool(entry.get("complex", False)), reader=entry.get("reader"))


def mapping_from_dict(data: Mapping[str, Any], base: PathLike = ".", label: str = "the mapping") -> ImportMapping:
    """An :class:`ImportMapping` from parsed TOML/JSON (see the module docstring)."""
    allowed = {"forward_model", "forward_model_config", "likelihood", "likelihood_config", "variables", "file",
               "select"}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise DataError(f"{label}: unknown key(s) {', '.join(unknown)}; accepted: {', '.join(sorted(allowed))}")
    if not isinstance(data.get("forward_model"), str):
        raise DataError(f"{label}: forward_model (a registered name, see 'invrim plugins list') is required")
    for key in ("forward_model_config", "likelihood_config"):
        if not isinstance(data.get(key, {}), Mapping):
            raise DataError(f"{label}: {key} must be a table of options")
    variables = data.get("variables") or {}
    if not isinstance(variables, Mapping):
        raise DataError(f"{label}: variables must be a table of tables ([variables.y] ...)")
    select = data.get("select") or {}
    return ImportMapping(
        forward_model=data["forward_model"], forward_model_config=dict(data.get("forward_model_config") or {}),
        likelihood=str(data.get("likelihood", "gaussian")), likelihood_config=dict(data.get("likelihood_config") or {}),
        variables={n: _spec_from(n, e, label) for n, e in variables.items()}, file=data.get("file"),
        select={d: parse_slice(v, f"{label}: select.{d}") for d, v in select.items()}, base=Path(base), label=label)


def load_mapping(path: PathLike) -> ImportMapping:
    """Read a mapping from a ``.toml`` or ``.json`` file (relative file names: from its folder)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such mapping file")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import tomllib
            data = tomllib.loads(text)
    except Exception as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataError(f"{path}: not valid {'JSON' if path.suffix.lower() == '.json' else 'TOML'}: {first}") from None
    return mapping_from_dict(data, base=path.parent, label=str(path))


# ---------------------------------------------------------------------------------------------
# the plan: every variable resolved against its file and the problem
# ---------------------------------------------------------------------------------------------
@dataclass
class PlannedVariable:
    """One variable of the output: where it comes from and how it is stored."""

    name: str
    file: Path
    array: str
    reader: str
    source_shape: tuple[int, ...]
    source_dtype: np.dtype
    source_dims: tuple[str, ...]              # one name per source axis ("sample" included when present)
    select: dict[str, slice]                  # per source dim (normalised)
    dims: tuple[str, ...]                     # stored dims, "sample" first
    shape: tuple[int, ...]                    # stored shape, samples first
    dtype: np.dtype                           # stored dtype (bool for masks stored as uint8)
    broadcast: bool = False                   # no sample axis in the source: repeated per sample
    inserted: tuple[str, ...] = ()            # dims added with size 1
    to_channels: bool = False                 # complex source -> (re, im) channel axis
    to_complex: bool = False                  # real (..., 2) source -> complex
    link: bool = False
    why_copy: str = ""
    hdf5: Optional[tuple[Path, str]] = None
    reader_choice: Optional[str] = None       # the reader the mapping named (None: by suffix)

    @property
    def label(self) -> str:
        return f"{self.file}: array {self.array!r}"

    def source_index(self, lo: int, hi: int) -> tuple:
        """The source slices of stored samples ``lo:hi``."""
        index = []
        for d, size in zip(self.source_dims, self.source_shape):
            s = self.select.get(d, slice(None))
            r = range(*s.indices(size))
            if d == SAMPLE:
                sub = r[lo:hi]
                index.append(slice(sub.start, sub.start + (len(sub) - 1) * sub.step + 1, sub.step) if len(sub)
                             else slice(0, 0))
            else:
                index.append(slice(r.start, r.start + (len(r) - 1) * r.step + 1, r.step) if len(r) else slice(0, 0))
        return tuple(index)

    def convert(self, block: np.ndarray, samples: int) -> np.ndarray:
        """A block read with :meth:`source_index` in the stored layout and dtype."""
        dims = list(self.source_dims)
        a = block
        if self.to_complex:
            a = a[..., 0] + 1j * a[..., 1]
            a = a.astype(np.complex128 if block.dtype == np.float64 else np.complex64)
            dims = dims[:-1]
        if self.to_channels:
            a = np.stack([a.real, a.imag], axis=-1)
            dims.append(CHANNEL)
        if self.broadcast:
            a = np.broadcast_to(a[None], (samples, *a.shape))
            dims.insert(0, SAMPLE)
        for d in self.inserted:
            a = a[..., None]
            dims.append(d)
        a = np.transpose(a, [dims.index(d) for d in self.dims])
        a = np.ascontiguousarray(a, dtype=np.uint8 if self.dtype == np.bool_ else self.dtype)
        return a if a.flags.writeable else a.copy()

    def describe(self) -> str:
        how = "link (virtual dataset)" if self.link else f"copy{' (' + self.why_copy + ')' if self.why_copy else ''}"
        extra = []
        if self.broadcast:
            extra.append("the same for every sample")
        if self.inserted:
            extra.append(f"adds {', '.join(self.inserted)} of size 1")
        if self.to_channels:
            extra.append("complex -> (re, im) channel axis")
        if self.to_complex:
            extra.append("last axis (re, im) -> complex")
        sel = ", ".join(f"{d}={_fmt_slice(s)}" for d, s in self.select.items())
        shape = ", ".join(f"{d}={s}" for d, s in zip(self.dims, self.shape))
        return (f"{self.name:<6} <- {self.file}::{self.array} {tuple(self.source_shape)} {self.source_dtype}"
                f"{' [' + sel + ']' if sel else ''} as ({', '.join(self.source_dims)}) -> ({shape}) {np.dtype(self.dtype)}"
                f"; {how}{'; ' + '; '.join(extra) if extra else ''}")


def _fmt_slice(s: slice) -> str:
    return ":".join("" if v is None else str(v) for v in (s.start, s.stop) + ((s.step,) if s.step else ()))


@dataclass
class ImportPlan:
    """The checked plan of an import (what ``--dry-run`` prints)."""

    mapping: ImportMapping
    problem: Any
    samples: int
    variables: dict[str, PlannedVariable]
    sizes: dict[str, int]
    link: bool = False

    def describe(self) -> str:
        fm = self.problem.forward_model
        lines = [f"forward model {self.mapping.forward_model!r} {json.dumps(fm.config() if hasattr(fm, 'config') else {})}, "
                 f"likelihood {self.mapping.likelihood!r}; {self.samples} samples"]
        lines += ["  " + v.describe() for v in self.variables.values()]
        return "\n".join(lines)


def _build(kind: str, name: str, config: dict, label: str):
    from ..plugins.errors import PluginError
    components = registry().kinds()[f"{kind}s"]
    try:
        return components.build(name, **config)
    except (LookupError, PluginError, ValueError, TypeError, ImportError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataError(f"{label}: {first}") from None


def _resolve(mapping: ImportMapping, spec: VariableSpec) -> Path:
    file = spec.file or mapping.file
    if not file:
        raise DataError(f"{mapping.label}: variable {spec.name!r} names no file (give file = ... for it, a default "
                        f"file, or --var {spec.name}=FILE::ARRAY)")
    if "{stem}" in file or "{name}" in file:
        if not mapping.file:
            raise DataError(f"{mapping.label}: variable {spec.name!r}: {file!r} uses {{stem}} but there is no default file")
        default = Path(mapping.file)
        stem = default.name
        for suffix in (".nii.gz", ".fits.gz"):
            if stem.lower().endswith(suffix):
                stem = stem[:-len(suffix)]
                break
        else:
            stem = default.stem
        file = file.replace("{stem}", stem).replace("{name}", default.name)
    path = Path(file)
    return path if path.is_absolute() else mapping.base / path


def _choose_dims(name: str, given: Sequence[str], options: Optional[list[tuple[str, ...]]], label: str,
                 whose: str, axes: Sequence[str] = ()) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The physics' dims for ``given`` (non-sample) dims and the dims to add with size 1."""
    if options is None:
        return tuple(given), ()
    given_set = set(given)
    for option in options:
        if set(option) == given_set:
            return tuple(option), ()
    for option in sorted(options, key=len):
        if given_set <= set(option):
            return tuple(option), tuple(d for d in option if d not in given_set)
    expected = " or ".join("(" + ", ".join((SAMPLE, *o)) + ")" for o in options)
    extra = [d for d in given if not any(d in o for o in options)]
    if extra:
        raise DataError(f"{label}: axis {axes.index(extra[0]) if axes else list(given).index(extra[0])} named "
                        f"{extra[0]!r} is not an axis of variable "
                        f"{name!r}: {whose} expects {expected} (axes in any order; 'sample' may be absent to use "
                        "the same values for every sample)")
    raise DataError(f"{label}: dims ({', '.join(given)}) do not fit variable {name!r}: {whose} expects {expected}")


def _plan_variable(mapping: ImportMapping, name: str, spec: VariableSpec, problem, link: bool) -> PlannedVariable:
    """One variable resolved against its file and the physics (see :func:`plan_import`)."""
    from .validation import expected_dims
    fm = problem.forward_model
    whose = f"forward model {mapping.forward_model!r}"
    path = _resolve(mapping, spec)
    with contextlib.closing(open_reader(path, spec.reader)) as reader:
        arrays = listed_arrays(reader)
        array = spec.array
        if array is None:
            if len(arrays) != 1:
                raise DataError(f"{path}: variable {name!r} names no array and the file holds "
                                f"{len(arrays)} ({', '.join(arrays) or 'none'}): give {name}=FILE::ARRAY")
            array = next(iter(arrays))
        info = array_info(reader, path, array)
        dims = spec.dims if spec.dims is not None else info.dims
        where = f"{path}: array {array!r}"
        if dims is None:
            example = ",".join(["sample"] + [f"d{i}" for i in range(1, len(info.shape))])
            raise DataError(f"{where} (variable {name!r}) has shape {tuple(info.shape)} but no axis names: give "
                            f"dims, one per axis, e.g. {name}=FILE::{array}:{example}")
        dims = tuple(dims)
        if len(dims) != len(info.shape):
            raise DataError(f"{where} has {len(info.shape)} axes (shape {tuple(info.shape)}) but dims names "
                            f"{len(dims)}: ({', '.join(dims)}); give one name per axis")
        if len(set(dims)) != len(dims):
            raise DataError(f"{where}: dims ({', '.join(dims)}) name one axis twice")
        check_dim_names([d for d in dims if d != SAMPLE], where)
        select = {}
        for d, s in {**mapping.select, **spec.select}.items():
            if d in dims:
                select[d] = s
            elif d in spec.select:
                raise DataError(f"{where}: select names dim {d!r}, which is not one of its dims ({', '.join(dims)})")
        sizes = {}
        for axis, (d, n) in enumerate(zip(dims, info.shape)):
            r = range(*select.get(d, slice(None)).indices(n))
            if len(r) == 0:
                raise DataError(f"{where}: axis {axis} ({d!r}, size {n}) selects no element with "
                                f"{_fmt_slice(select[d])}")
            sizes[d] = len(r)
        source_dtype = np.dtype(info.dtype)
        hdf5 = reader.hdf5_source(array) if link else None
    rest = [d for d in dims if d != SAMPLE]
    to_complex = bool(spec.complex)
    to_channels = False
    dtype = source_dtype
    if to_complex:
        if dims[-1] == SAMPLE or info.shape[-1] != 2 or source_dtype.kind not in "fiu":
            raise DataError(f"{where}: complex = true needs a real last axis of size 2 (real, imaginary), "
                            f"got shape {tuple(info.shape)} {source_dtype}")
        rest = rest[:-1]
        dtype = np.dtype(np.complex128 if source_dtype == np.float64 else np.complex64)
    if name == TRUTH and dtype.kind == "c":
        if not getattr(fm, "x_complex_channels", False):
            raise DataError(f"{where} (variable 'x') is complex but {whose} takes real x")
        if CHANNEL in rest:
            raise DataError(f"{where} (variable 'x') is complex and has a {CHANNEL!r} axis already: {whose} "
                            f"stores complex images as a (real, imaginary) {CHANNEL!r} axis of size 2")
        to_channels = True
        rest = rest + [CHANNEL]
        dtype = np.dtype(np.float64 if dtype == np.complex128 else np.float32)
    if name in (TRUTH, OBSERVATION) and dtype.kind in "iub":
        dtype = np.dtype(np.float32)            # integer images (FITS BITPIX=16 ...) as float32
    if name == OBSERVATION and dtype.kind == "f" and fm.y_is_complex:
        raise DataError(f"{where} (variable 'y') is real {dtype} but {whose} makes complex observations: "
                        "give a complex array, or set complex = true (--complex y) if its last axis of "
                        "size 2 holds the real and imaginary parts")
    target, inserted = _choose_dims(name, rest, expected_dims(problem, name), where, whose, list(dims))
    broadcast = SAMPLE not in dims
    stored_sizes = {d: sizes[d] for d in rest if d in sizes}
    if to_channels:
        stored_sizes[CHANNEL] = 2
    stored_sizes.update({d: 1 for d in inserted})
    why = ""
    if link:
        if hdf5 is None:
            why = "not an HDF5 dataset"
        elif to_complex or to_channels or dtype != source_dtype:
            why = f"{source_dtype} -> {dtype}"
        elif not broadcast and dims[0] != SAMPLE:
            why = f"its sample axis is axis {dims.index(SAMPLE)}, not the first"
        elif dtype == np.bool_:
            why = "booleans are stored as uint8"
    linked = link and not why
    # linked: the source's order of the non-sample dims (readers rearrange by name)
    stored = tuple(d for d in dims if d != SAMPLE) + inserted if linked else target
    return PlannedVariable(
        name=name, file=path, array=array, reader=getattr(reader, "name", type(reader).__name__),
        source_shape=tuple(info.shape), source_dtype=source_dtype, source_dims=dims,
        select={d: slice(*s.indices(n)) for d, n, s in
                ((d, n, select[d]) for d, n in zip(dims, info.shape) if d in select)},
        dims=(SAMPLE, *stored), shape=(sizes.get(SAMPLE, 0), *(stored_sizes[d] for d in stored)),
        dtype=dtype, broadcast=broadcast, inserted=inserted, to_channels=to_channels, to_complex=to_complex,
        link=linked, why_copy=why, hdf5=hdf5 if linked else None, reader_choice=spec.reader)


def plan_import(mapping: ImportMapping, link: bool = False) -> ImportPlan:
    """Resolve and check ``mapping`` against its problem without writing anything.

    Raises a one-line :class:`DataError` naming the file, the array and the axis for: an unknown
    variable name, a missing file or array, dims that do not name every axis, an axis the physics
    does not know, one dim of two sizes, different sample counts, a wrong dtype, ``y`` missing,
    and ``F(x)`` of the first sample not having ``y``'s shape.
    """
    from ..problem import Problem

    label = mapping.label
    fm = _build("forward_model", mapping.forward_model, mapping.forward_model_config, label)
    lik = _build("likelihood", mapping.likelihood, mapping.likelihood_config, label)
    problem = Problem(fm, lik)
    whose = f"forward model {mapping.forward_model!r}"
    known = known_variables(problem)
    for name in mapping.variables:
        if name not in known:
            import difflib
            close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
            raise DataError(f"{label}: unknown variable {name!r}: {whose} with likelihood {mapping.likelihood!r} "
                            f"takes {', '.join(known)}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    if OBSERVATION not in mapping.variables:
        raise DataError(f"{label}: no variable 'y' (the observation) is mapped: add [variables.y] or --var y=...")

    planned = {name: _plan_variable(mapping, name, spec, problem, link) for name, spec in mapping.variables.items()}

    unused = [d for d in mapping.select if not any(d in v.source_dims for v in planned.values())]
    if unused:
        raise DataError(f"{label}: select names dim {unused[0]!r}, which no variable has (their dims: "
                        f"{', '.join(sorted({d for v in planned.values() for d in v.source_dims}))})")
    # one size per dim, one sample count
    owner: dict[str, PlannedVariable] = {}
    sizes: dict[str, int] = {}
    for v in planned.values():
        for d, s in zip(v.dims[1:], v.shape[1:]):
            if d in sizes and sizes[d] != s:
                o = owner[d]
                raise DataError(f"{v.label}: axis {d!r} has size {s} (variable {v.name!r}) but {sizes[d]} in "
                                f"{o.label} (variable {o.name!r}); one dim has one size")
            sizes[d] = s
            owner.setdefault(d, v)
    counted = [v for v in planned.values() if not v.broadcast]
    if not counted:
        raise DataError(f"{label}: no variable has a 'sample' dim: name the axis that counts samples 'sample' "
                        f"(e.g. in y's dims)")
    first = counted[0]
    for v in counted[1:]:
        if v.shape[0] != first.shape[0]:
            raise DataError(f"{v.label} has {v.shape[0]} samples (axis {v.source_dims.index(SAMPLE)}, 'sample') but "
                            f"{first.label} has {first.shape[0]} (axis {first.source_dims.index(SAMPLE)}): every "
                            "variable needs the same number of samples (or none, to repeat it for every sample)")
    samples = first.shape[0]
    for v in planned.values():
        if v.broadcast:
            v.shape = (samples, *v.shape[1:])
    parameters = [n for n in planned if n not in (TRUTH, OBSERVATION)]
    infos = {n: VariableInfo(v.dims, v.shape, np.dtype(v.dtype)) for n, v in planned.items()}
    check_variables(label, infos, problem, parameters,
                    what=lambda n: f"array {planned[n].array!r} of {planned[n].file} (variable {n!r})")
    plan = ImportPlan(mapping, problem, samples, planned, sizes, link)
    _check_physics(plan)
    return plan


def read_samples(plan: ImportPlan, lo: int, hi: int) -> dict[str, np.ndarray]:
    """Samples ``lo:hi`` of every planned variable, in the stored layout."""
    out = {}
    for name, v in plan.variables.items():
        with contextlib.closing(open_reader(v.file, v.reader_choice)) as r:
            out[name] = v.convert(r.read(v.array, v.source_index(lo, hi)), hi - lo)
    return out


def _check_physics(plan: ImportPlan) -> None:
    """``F(x)`` of the first sample must have ``y``'s shape (in the physics' order of the axes)."""
    import torch
    from einops import rearrange

    from .validation import expected_dims
    first = read_samples(plan, 0, 1)
    tensors = {}
    for name, v in plan.variables.items():
        t = torch.from_numpy(np.ascontiguousarray(first[name]))
        options = expected_dims(plan.problem, name)
        if options:
            target = next((o for o in options if sorted(o) == sorted(v.dims[1:])), None)
            if target is not None and tuple(target) != tuple(v.dims[1:]):
                t = rearrange(t, f"{' '.join(v.dims)} -> {SAMPLE} {' '.join(target)}")
        if v.dtype == np.bool_:
            t = t.bool()
        tensors[name] = t
    y = tensors.pop(OBSERVATION)
    fm = plan.problem.forward_model
    yv = plan.variables[OBSERVATION]
    if TRUTH not in tensors:        # observation-only: the adjoint (or pseudo-inverse) must accept y and the parameters
        back = getattr(fm, "adjoint", None) or getattr(fm, "pseudo_inverse", None)
        if back is None:
            return
        try:
            with torch.no_grad():
                back(y, **tensors)
        except Exception as e:
            first_line = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise DataError(f"{yv.label} (variable 'y'): forward model {plan.mapping.forward_model!r} cannot be used "
                            f"with y of shape {tuple(y.shape[1:])} and the mapped parameters "
                            f"({', '.join(tensors) or 'none'}): {first_line}") from None
        return
    x = tensors.pop(TRUTH)
    xv = plan.variables[TRUTH]
    try:
        with torch.no_grad():
            pred = fm(x.to(torch.float64 if x.dtype == torch.float64 else torch.float32), **tensors)
    except Exception as e:
        first_line = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataError(f"{xv.label} (variable 'x'): forward model {plan.mapping.forward_model!r} cannot be applied "
                        f"to x of shape {tuple(x.shape[1:])}: {first_line}") from None
    if tuple(pred.shape) != tuple(y.shape):
        raise DataError(f"{xv.label} (variable 'x'): forward model {plan.mapping.forward_model!r} maps x "
                        f"{tuple(x.shape[1:])} to {tuple(pred.shape[1:])} but y from {yv.label} has shape "
                        f"{tuple(y.shape[1:])}")


# ---------------------------------------------------------------------------------------------
# writing
# ---------------------------------------------------------------------------------------------
def _attrs(plan: ImportPlan, output: Path) -> dict[str, Any]:
    import torch
    m = plan.mapping
    fm, lik = plan.problem.forward_model, plan.problem.likelihood
    providers = {"forward_model": provider_record("forward_model", m.forward_model),
                 "likelihood": provider_record("likelihood", m.likelihood)}
    providers = {k: v for k, v in providers.items() if v}
    versions = {"invrim": __version__, "torch": torch.__version__, "python": platform.python_version()}
    for p in providers.values():
        if p.get("distribution"):
            versions[p["distribution"]] = p.get("version")
    imported = {n: {"file": str(v.file.resolve()), "array": v.array, "reader": v.reader, "dims": list(v.source_dims),
                    "select": {d: _fmt_slice(s) for d, s in v.select.items()},
                    "stored": "link" if v.link else "copy",
                    **({"link": os.path.relpath(v.file.resolve(), output.resolve().parent)} if v.link else {})}
                for n, v in plan.variables.items()}
    return {"forward_model": m.forward_model, "forward_model_config": fm.config() if hasattr(fm, "config") else {},
            "likelihood": m.likelihood, "likelihood_config": lik.config() if hasattr(lik, "config") else {},
            "parameters": [n for n in plan.variables if n not in (TRUTH, OBSERVATION)],
            "providers": providers, "versions": versions, IMPORTED_ATTR: json.dumps(imported)}


def import_data(mapping: Union[ImportMapping, ImportPlan], output: PathLike, *, link: bool = False,
                overwrite: bool = False, dry_run: bool = False, progress: bool = True,
                check_values: bool = True) -> Union[Path, ImportPlan]:
    """Import the arrays ``mapping`` names into the invrim data file ``output``.

    Parameters
    ----------
    mapping
        An :class:`ImportMapping` (:func:`load_mapping`, :func:`mapping_from_dict`) or a plan
        from :func:`plan_import` (which then decides ``link``).
    output
        The file to write; it appears under its name only once complete (``.partial`` before).
    link
        Point HDF5 virtual datasets at the source arrays instead of copying them, wherever the
        source is an HDF5 dataset whose sample axis is first and needs no dtype conversion
        (other variables are copied; :meth:`ImportPlan.describe` says which and why). Sources are
        recorded relative to the output's folder: move the output together with its sources.
    dry_run
        Check everything and return the plan; write nothing.
    check_values
        While copying, refuse NaN or Inf (naming the file, array and sample).

    Returns
    -------
    The finished file's path, or with ``dry_run`` the :class:`ImportPlan`.
    """
    output = Path(output)
    if not dry_run:
        check_output(output, overwrite)                # before planning: say it at once
    plan = mapping if isinstance(mapping, ImportPlan) else plan_import(mapping, link=link)
    if dry_run:
        return plan
    check_output(output, overwrite, inputs=[v.file for v in plan.variables.values()])
    attrs = _attrs(plan, output)
    copied = {n: v for n, v in plan.variables.items() if not v.link}
    linked = {n: v for n, v in plan.variables.items() if v.link}
    partial = partial_path(output)
    writer = DatasetWriter(output, plan.samples, {n: (v.dims[1:], v.dtype) for n, v in copied.items()},
                           plan.sizes, attrs, overwrite=overwrite)
    try:
        _copy(plan, copied, writer, progress, check_values)
        writer.close(rename=False)
        if linked:
            _link(partial, output, plan, linked)
    except BaseException:
        writer.abort()
        raise
    os.replace(partial, output)
    return output


def _copy(plan: ImportPlan, copied: dict[str, PlannedVariable], writer: DatasetWriter, progress: bool,
          check_values: bool) -> None:
    if not copied:
        return
    from tqdm.auto import tqdm
    per_sample = sum(int(np.prod(v.shape[1:], dtype=np.int64)) * np.dtype(v.dtype).itemsize for v in copied.values())
    step = max(1, min(plan.samples, COPY_BYTES // max(per_sample, 1)))
    readers = {}
    try:
        for v in copied.values():
            readers[v.name] = open_reader(v.file, v.reader_choice)
        with tqdm(total=plan.samples, disable=not progress, desc="import", unit="sample", dynamic_ncols=True) as bar:
            for lo in range(0, plan.samples, step):
                hi = min(lo + step, plan.samples)
                for name, v in copied.items():
                    block = v.convert(readers[name].read(v.array, v.source_index(0, 1) if v.broadcast
                                                         else v.source_index(lo, hi)), hi - lo)
                    if check_values and block.dtype.kind in "fc":
                        ok = np.isfinite(block).reshape(block.shape[0], -1).all(axis=1)
                        if not ok.all():
                            raise DataError(f"{v.label} (variable {name!r}) holds NaN or Inf values (first in "
                                            f"sample {lo + int(np.argmin(ok))})")
                    writer.write(lo, **{name: block})
                bar.update(hi - lo)
    finally:
        for r in readers.values():
            r.close()


def _link(partial: Path, output: Path, plan: ImportPlan, linked: dict[str, PlannedVariable]) -> None:
    """Add the linked variables to ``partial`` as virtual datasets with the file's dimension scales."""
    import h5py
    folder = output.resolve().parent
    with h5py.File(partial, "a") as f:
        for name, v in linked.items():
            source, dataset = v.hdf5
            try:
                ref = os.path.relpath(Path(source).resolve(), folder)
            except ValueError:              # another drive: only an absolute path reaches it
                ref = str(Path(source).resolve())
            layout = h5py.VirtualLayout(shape=v.shape, dtype=v.source_dtype)
            vsource = h5py.VirtualSource(ref, dataset, shape=v.source_shape, dtype=v.source_dtype)
            index = v.source_index(0, v.shape[0]) if not v.broadcast else v.source_index(0, 1)
            selected = vsource[index] if any(s != slice(0, n, 1) for s, n in zip(index, v.source_shape)) else vsource
            place = (slice(None),) * (len(v.dims) - len(v.inserted)) + (0,) * len(v.inserted)
            if v.broadcast:
                for s in range(v.shape[0]):
                    layout[(s,) + place[1:]] = selected
            else:
                layout[place] = selected
            fill = np.nan if v.source_dtype.kind == "f" else None
            ds = f.create_virtual_dataset(name, layout, fillvalue=fill)
            for i, d in enumerate(v.dims):
                ds.dims[i].attach_scale(f[d])
