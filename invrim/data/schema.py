"""The invrim data-file schema: names, attributes, version and the rules a file must follow.

The full specification, for people who write these files without invrim, is
``docs/file-format.md``; this module is its single source of truth in code.
"""
from __future__ import annotations

import json
import keyword
from typing import Any, Iterable, Sequence, Union

#: ``invrim_format`` attribute of a data file.
FORMAT = "invrim-dataset"
#: The version this invrim writes, and the newest it reads.
FORMAT_VERSION = 1

SAMPLE = "sample"          # the leading dimension of every per-sample variable
TRUTH = "x"                # ground truth (absent in observation-only files)
OBSERVATION = "y"          # observation
ESTIMATE = "x_hat"         # reconstruction output
RESERVED = (TRUTH, OBSERVATION, ESTIMATE, "trajectory", "done")

#: File attributes. JSON-valued ones are stored as JSON strings.
ATTRS_REQUIRED = ("invrim_format", "invrim_format_version", "forward_model", "forward_model_config",
                  "likelihood", "likelihood_config")
JSON_ATTRS = ("forward_model_config", "likelihood_config", "generator_config", "parameters", "versions",
              "providers", "options", "resume")

DimSpec = Union[Sequence[str], Sequence[Sequence[str]]]


class DataError(ValueError):
    """A data file that does not follow the schema, or data that cannot be written to one.

    Its message is one line naming the file, the variable and what is wrong."""


def dim_options(spec: DimSpec) -> list[tuple[str, ...]]:
    """Accepted dims of a parameter: one tuple of names, or a list of alternative tuples."""
    spec = list(spec)
    if spec and not isinstance(spec[0], str):
        return [tuple(s) for s in spec]
    return [tuple(spec)]


def check_dim_names(names: Iterable[str], where: str) -> None:
    """Dimension names must be identifiers and never the name of a data variable."""
    for n in names:
        if n in RESERVED:
            raise DataError(f"{where} names an axis {n!r}, which is also an invrim variable name "
                            f"({', '.join(RESERVED)}); use e.g. 'height'/'width'")
        if not n.isidentifier() or keyword.iskeyword(n):
            raise DataError(f"{where} names an axis {n!r}: dimension names must be identifiers")


def encode_attrs(attrs: dict[str, Any]) -> dict[str, Any]:
    """File attributes as HDF5 can store them (JSON strings for the structured ones)."""
    out = {}
    for k, v in attrs.items():
        if v is None:
            continue
        if isinstance(v, str) and k in JSON_ATTRS:
            try:                 # already encoded (e.g. attributes copied from xarray.open_dataset)
                json.loads(v)
            except json.JSONDecodeError:
                v = json.dumps(v)
        elif k in JSON_ATTRS or isinstance(v, (dict, list, tuple)):
            v = json.dumps(v)
        elif isinstance(v, bool):
            v = int(v)
        out[k] = v
    return out


def decode_attrs(attrs: dict[str, Any]) -> dict[str, Any]:
    """The inverse of :func:`encode_attrs` (numpy scalars become Python numbers)."""
    out: dict[str, Any] = {}
    for k, v in attrs.items():
        if isinstance(v, bytes):
            v = v.decode("utf-8", "replace")
        if hasattr(v, "item") and getattr(v, "ndim", 1) == 0:
            v = v.item()
        if k in JSON_ATTRS and isinstance(v, str):
            try:
                v = json.loads(v)
            except json.JSONDecodeError:
                pass
        out[k] = v
    return out
