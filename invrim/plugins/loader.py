"""Discover plugins through entry points, recording a status for each; never crash the host.

Environment variables:

``INVRIM_DISABLE_PLUGIN_AUTOLOAD=1``
    load only the built-in components;
``INVRIM_PLUGINS=a,b``
    allow-list: load only these plugins (entry-point or distribution names);
``INVRIM_DISABLE_PLUGINS=a,b``
    block-list: never load these;
``INVRIM_STRICT_PLUGINS=1``
    a plugin that fails to load raises :class:`~invrim.plugins.errors.PluginError`;
``INVRIM_TRACE_PLUGINS=1``
    log every step of discovery to stderr.
"""
from __future__ import annotations

import importlib.metadata as metadata
import logging
import os
import sys
from dataclasses import dataclass, field
from typing import Any, Optional

import pluggy

from .component import Component
from .errors import PluginError
from .spec import HOOKS, PROJECT, InvrimSpec

log = logging.getLogger("invrim.plugins")
GROUP = "invrim"
BUILTIN = "invrim"


@dataclass
class PluginRecord:
    """What happened to one plugin: ``builtin``, ``active``, ``disabled``, ``failed`` or ``missing-deps``."""

    name: str
    module: str
    distribution: Optional[str]
    version: Optional[str]
    status: str
    error: Optional[str] = None
    components: list[Component] = field(default_factory=list)

    def describe(self) -> dict[str, Any]:
        provides: dict[str, list[str]] = {}
        for c in self.components:
            provides.setdefault(c.kind, []).append(c.name)
        return {"name": self.name, "module": self.module, "distribution": self.distribution,
                "version": self.version, "status": self.status, "error": self.error, "provides": provides}


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no", "off")


def _names(name: str) -> set[str]:
    return {n.strip() for n in os.environ.get(name, "").split(",") if n.strip()}


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}".rstrip(": ")


def _collect(pm: pluggy.PluginManager, plugin: Any, record: PluginRecord, builtin: bool) -> None:
    """Call the plugin's own hook implementations and validate what they return."""
    components: list[Component] = []
    for hook_name, kind in HOOKS.items():
        hook = getattr(pm.hook, hook_name)
        for impl in hook.get_hookimpls():
            if impl.plugin is not plugin:
                continue
            result = impl.function()
            if result is None:
                continue
            if isinstance(result, Component):
                result = [result]
            if not isinstance(result, (list, tuple)):
                raise TypeError(f"hook {hook_name} returned {type(result).__name__}, expected a list of Component")
            for item in result:
                if isinstance(item, dict):
                    item = Component(**item)
                if not isinstance(item, Component):
                    raise TypeError(f"hook {hook_name} returned {type(item).__name__}, expected Component")
                components.append(item.with_provider(kind, record.name, record.distribution,
                                                     record.version, builtin))
    seen: set[tuple[str, str]] = set()
    for c in components:
        if (c.kind, c.name) in seen:
            raise ValueError(f"provides two {c.kind} named {c.name!r}")
        seen.add((c.kind, c.name))
    record.components = components


def _entry_points() -> list[tuple[metadata.EntryPoint, Optional[str], Optional[str]]]:
    found = []
    seen: set[tuple[Optional[str], str, str]] = set()
    for dist in metadata.distributions():
        try:
            eps = dist.entry_points
        except Exception:  # a broken METADATA must not stop discovery
            continue
        for ep in eps:
            if ep.group != GROUP:
                continue
            dname = dist.metadata["Name"] if dist.metadata else None
            key = (dname, ep.name, ep.value)
            if key in seen:  # the same distribution seen twice on sys.path
                continue
            seen.add(key)
            found.append((ep, dname, dist.version))
    return found


def load_plugins(strict: Optional[bool] = None) -> tuple[pluggy.PluginManager, list[PluginRecord]]:
    """Load the built-in components and every allowed plugin; return the manager and records."""
    strict = _flag("INVRIM_STRICT_PLUGINS") if strict is None else strict
    trace = _flag("INVRIM_TRACE_PLUGINS")
    if trace and not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("invrim plugins: %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.DEBUG)
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(InvrimSpec)

    from . import builtin
    from .. import __version__
    records = [PluginRecord(BUILTIN, builtin.__name__, "invrim", __version__, "builtin")]
    pm.register(builtin, name=BUILTIN)
    _collect(pm, builtin, records[0], builtin=True)

    if _flag("INVRIM_DISABLE_PLUGIN_AUTOLOAD"):
        log.debug("autoload disabled by INVRIM_DISABLE_PLUGIN_AUTOLOAD")
        return pm, records
    allow, block = _names("INVRIM_PLUGINS"), _names("INVRIM_DISABLE_PLUGINS")
    failures = []
    for ep, dist, version in _entry_points():
        record = PluginRecord(ep.name, ep.value, dist, version, "active")
        records.append(record)
        ids = {ep.name, dist or ""}
        if (allow and not ids & allow) or ids & block:
            record.status = "disabled"
            log.debug("%s: disabled by the environment", ep.name)
            continue
        if ep.name == BUILTIN or pm.has_plugin(ep.name):
            other = "invrim itself" if ep.name == BUILTIN else next(
                (r.distribution for r in records[:-1] if r.name == ep.name), "another plugin")
            record.status, record.error = "failed", (
                f"plugin name {ep.name!r} is already used by {other}; rename the entry point")
            failures.append(record)
            continue
        log.debug("%s: importing %s", ep.name, ep.value)
        try:
            module = ep.load()
        except ModuleNotFoundError as e:
            own = ep.value.split(":")[0].split(".")[0]
            missing = (e.name or "").split(".")[0]
            record.status = "missing-deps" if missing and missing != own else "failed"
            record.error = (f"needs {missing}: pip install {missing}" if record.status == "missing-deps"
                            else _one_line(e))
            failures.append(record)
            continue
        except Exception as e:  # noqa: BLE001 — any import error is the plugin's, not the host's
            record.status, record.error = "failed", f"import failed: {_one_line(e)}"
            failures.append(record)
            continue
        try:
            pm.register(module, name=ep.name)
            pm.check_pending()
            _collect(pm, module, record, builtin=False)
        except Exception as e:  # noqa: BLE001
            if pm.is_registered(module):
                pm.unregister(module)
            record.status, record.error = "failed", f"bad hooks: {_one_line(e)}"
            record.components = []
            failures.append(record)
            continue
        log.debug("%s: active, %d component(s)", ep.name, len(record.components))
    for record in failures:
        message = f"plugin {record.name!r} ({record.distribution or record.module}) {record.status}: {record.error}"
        if strict:
            raise PluginError(message + " [INVRIM_STRICT_PLUGINS is set]")
        log.warning(message)
    return pm, records
