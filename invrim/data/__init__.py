"""Self-describing named-axis data files (netCDF-4/HDF5) and simulation.

The file format is specified in ``docs/file-format.md``. Public API:

* :func:`simulate` — ground truth + forward model + noise → data file (streaming);
* :class:`HDF5Dataset` — a lazy torch ``Dataset`` over a file (any number of DataLoader workers);
* :func:`validate`, :func:`read_attrs`, :func:`problem_from_file` — checks and provenance;
* :class:`DatasetWriter`, :func:`write_dataset`, :func:`open_dataset` — writing and reading;
* :class:`DataError` — the one-line error raised for any file that breaks the schema.
"""
from __future__ import annotations

from importlib import import_module
from typing import Any

from .schema import FORMAT, FORMAT_VERSION, DataError

_EXPORTS = {
    "simulate": "simulation", "block_generator": "simulation",
    "HDF5Dataset": "dataset",
    "validate": "dataset", "read_attrs": "validation", "FileInfo": "validation",
    "problem_from_attrs": "validation",
    "DatasetWriter": "io", "write_dataset": "io", "open_dataset": "io",
}

__all__ = ["FORMAT", "FORMAT_VERSION", "DataError", "problem_from_file", *_EXPORTS]


def problem_from_file(path) -> Any:
    """The :class:`~invrim.Problem` (forward model + likelihood) that made the data file ``path``."""
    from .validation import problem_from_attrs, read_attrs
    return problem_from_attrs(read_attrs(path), path)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'invrim.data' has no attribute {name!r}")
