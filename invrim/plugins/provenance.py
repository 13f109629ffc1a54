"""Provenance: which distribution provided a component, recorded in the files that use it and
checked when they are read back (data files, run folders, reconstructions)."""
from __future__ import annotations

import importlib.metadata as metadata
from typing import Any, Optional

from .errors import UnknownComponentError
from .registry import registry
from .spec import KINDS


def _kind(kind: str) -> str:
    """``"backbone"`` or ``"backbones"`` -> the registry's kind name (``"backbones"``)."""
    plural = kind if kind in KINDS else f"{kind}s"
    if plural not in KINDS:
        raise ValueError(f"unknown component kind {kind!r}; kinds: {', '.join(KINDS)}")
    return plural


def provider_record(kind: str, name: str) -> Optional[dict[str, Any]]:
    """``{"name", "plugin", "distribution", "version"}`` of the installed component ``name`` of
    ``kind`` (``"backbone"``, ``"forward_model"`` …), or ``None`` when it is not registered."""
    from .. import __version__
    try:
        info = registry().kinds()[_kind(kind)].info(name)
    except (UnknownComponentError, ValueError):
        return None
    dist = info.distribution or ("invrim" if info.builtin else None)
    version = info.version or (__version__ if info.builtin else None)
    return {"name": name if info.builtin else info.qualified_name, "plugin": info.plugin,
            "distribution": dist, "version": version}


def installed_version(distribution: str) -> Optional[str]:
    """The installed version of ``distribution``, or ``None`` when it is not installed."""
    try:
        return metadata.version(distribution)
    except (metadata.PackageNotFoundError, ValueError):
        return None


def check_provider(kind: str, name: str, record: Optional[dict[str, Any]], where: str) -> Optional[str]:
    """Why the component ``name`` recorded (with its provider ``record``) in ``where`` cannot be
    used here, in one line naming what to install; ``None`` when it can.

    A component whose recorded distribution is installed at another version can be used: call
    :func:`version_mismatch` for the warning.
    """
    label = KINDS[_kind(kind)].label
    components = registry().kinds()[_kind(kind)]
    try:
        components.info(name)
        return None
    except UnknownComponentError as e:
        reason = str(e)
    dist = (record or {}).get("distribution")
    if not dist or dist == "invrim":
        return f"{where}: {reason}"
    wanted = (record or {}).get("version")
    have = installed_version(dist)
    made = f"{dist} {wanted}" if wanted else dist
    if have is None:
        return f"{where} needs {label} {name!r} from {made}, which is not installed: pip install {dist}"
    return (f"{where} needs {label} {name!r} from {made}; {dist} {have} is installed but does not provide it "
            f"({reason})")


def version_mismatch(kind: str, name: str, record: Optional[dict[str, Any]], where: str) -> Optional[str]:
    """A one-line warning when the distribution that provided ``name`` in ``where`` is installed
    at another version than the recorded one (``None`` when they agree or nothing is recorded)."""
    dist, wanted = (record or {}).get("distribution"), (record or {}).get("version")
    if not dist or not wanted:
        return None
    have = installed_version(dist)
    if dist == "invrim" or have is None or have == wanted:
        return None
    label = KINDS[_kind(kind)].label
    return (f"{where}: {label} {name!r} was provided by {dist} {wanted} when it was written, "
            f"but {dist} {have} is installed; results may differ")
