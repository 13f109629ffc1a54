"""Discover plugins through entry points, recording a status for each; never crash the host.

One :class:`pluggy.PluginManager` (project ``invrim``) holds invrim's own hooks module
(``invrim.plugins.builtin``, plugin name ``invrim``) and every plugin that loaded. Each plugin's
hooks are called on their own, through ``pm.subset_hook_caller``, so that what a plugin returns,
or raises, is recorded against that plugin alone.

Environment variables (a name is an entry-point name, a distribution name or
``distribution:name``; a name that two distributions share names both):

``INVRIM_DISABLE_PLUGIN_AUTOLOAD=1``
    load only the built-in components;
``INVRIM_PLUGINS=a,b``
    allow-list: load only these plugins (the built-in ones always load);
``INVRIM_DISABLE_PLUGINS=a,b``
    block-list: never load these (``invrim`` blocks the built-in components);
``INVRIM_STRICT_PLUGINS=1``
    a plugin that fails to load raises :class:`~invrim.plugins.errors.PluginError`;
``INVRIM_TRACE_PLUGINS=1``
    log every step of discovery, and every hook call, to stderr.
"""
from __future__ import annotations

import importlib
import importlib.metadata as metadata
import logging
import os
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import pluggy

from .component import Component, install_hint, names_plugin, normalize, one_line
from .errors import PluginError
from .spec import KINDS, PROJECT, InvrimSpec

log = logging.getLogger("invrim.plugins")
GROUP = "invrim"
#: The plugin name of invrim's own hooks module.
BUILTIN = "invrim"
BUILTIN_MODULE = "invrim.plugins.builtin"


@dataclass
class PluginRecord:
    """What happened to one plugin: ``builtin``, ``active``, ``partial`` (some of its hooks
    raised: ``hook_errors``; the components of the others are usable), ``disabled``, ``failed``
    or ``missing-deps``.

    ``name`` is the entry-point name; ``qualified_name`` is ``distribution:name`` when another
    distribution declares the same entry-point name (both are kept, each with a ``warning``),
    else ``name``. ``error`` says in one line why a plugin ``failed`` or is ``missing-deps``.
    """

    name: str
    module: str
    distribution: Optional[str]
    version: Optional[str]
    status: str
    error: Optional[str] = None
    components: list[Component] = field(default_factory=list)
    warning: Optional[str] = None
    qualified_name: str = ""
    hook_errors: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.qualified_name = self.qualified_name or self.name

    def matches(self, name: str) -> bool:
        """Whether ``name`` (entry-point name, distribution or ``distribution:name``) names this plugin."""
        return names_plugin(name, self.name, self.qualified_name, self.distribution)

    def describe(self) -> dict[str, Any]:
        provides: dict[str, list[str]] = {}
        for c in self.components:
            provides.setdefault(c.kind, []).append(c.name)
        return {"name": self.name, "module": self.module, "distribution": self.distribution,
                "version": self.version, "status": self.status, "error": self.error, "provides": provides,
                "qualified_name": self.qualified_name, "warning": self.warning,
                "hook_errors": dict(self.hook_errors)}

    @property
    def broken(self) -> bool:
        """True when loading went wrong (``failed``, ``missing-deps`` or ``partial``)."""
        return self.status in ("failed", "missing-deps", "partial")

    def could_provide(self, kind: str) -> bool:
        """Whether components of ``kind`` may be missing because this plugin (or its hook for
        that kind) failed."""
        return self.status in ("failed", "missing-deps") or KINDS[kind].hook in self.hook_errors


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no", "off")


def _names(name: str) -> set[str]:
    return {n.strip() for n in os.environ.get(name, "").split(",") if n.strip()}


def _contain(e: BaseException) -> None:
    """Plugin code may raise anything (``SystemExit`` from a stray ``sys.exit()`` included): it is
    that plugin's failure. Only a real interrupt goes on."""
    if isinstance(e, KeyboardInterrupt):
        raise e


def _collect_kind(pm: pluggy.PluginManager, others: list, kind, record: PluginRecord,
                  builtin: bool) -> list[Component]:
    """Call ``plugin``'s own implementation of one registration hook and validate what it returns."""
    components: list[Component] = []
    for result in pm.subset_hook_caller(kind.hook, remove_plugins=others)():
        if isinstance(result, Component):
            result = [result]
        if not isinstance(result, (list, tuple)):
            raise TypeError(f"hook {kind.hook} returned {type(result).__name__}, expected a list of Component")
        for item in result:
            if isinstance(item, dict):
                item = Component(**item)
            if not isinstance(item, Component):
                raise TypeError(f"hook {kind.hook} returned {type(item).__name__}, expected Component")
            components.append(item.with_provider(kind.name, record.name, record.distribution, record.version,
                                                 builtin, record.qualified_name))
    names = [c.name for c in components]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"hook {kind.hook} provides two {kind.plural} named {twice[0]!r}")
    return components


def _collect(pm: pluggy.PluginManager, plugin: Any, record: PluginRecord, builtin: bool) -> list[Component]:
    """Every kind's components of ``plugin``; a hook that raises (or returns something invalid)
    is recorded in ``record.hook_errors`` and loses only its own kind's components."""
    others = [p for p in pm.get_plugins() if p is not plugin]
    components: list[Component] = []
    for kind in KINDS.values():
        try:
            components += _collect_kind(pm, others, kind, record, builtin)
        except BaseException as e:  # noqa: BLE001 — the hook's failure, not the host's
            _contain(e)
            record.hook_errors[kind.hook] = one_line(e)
            log.debug("%s: hook %s failed: %s", record.qualified_name, kind.hook, one_line(e))
    return components


def _load_one(pm: pluggy.PluginManager, record: PluginRecord, importer: Callable[[], Any],
              builtin: bool) -> Optional[BaseException]:
    """Import one hooks module, register it and collect its components; return what went wrong."""
    log.debug("%s: importing %s", record.qualified_name, record.module)
    try:
        module = importer()
    except ModuleNotFoundError as e:
        own = record.module.split(":")[0].split(".")[0]
        missing = (e.name or "").split(".")[0]
        record.status = "missing-deps" if missing and missing != own else "failed"
        record.error = (f"needs {missing}: {install_hint([missing])}" if record.status == "missing-deps"
                        else one_line(e))
        return e
    except BaseException as e:  # noqa: BLE001 — any import error is the plugin's, not the host's
        _contain(e)
        record.status, record.error = "failed", f"import failed: {one_line(e)}"
        return e
    try:
        hash(module)                  # the per-plugin hook calls keep plugins in sets
        if pm.is_registered(module):
            raise ValueError(f"its hooks module {record.module} is already plugin {pm.get_name(module)!r}")
        pm.register(module, name=record.qualified_name)
        pm.check_pending()
        record.components = _collect(pm, module, record, builtin)
    except BaseException as e:  # noqa: BLE001
        _contain(e)
        if pm.get_name(module) == record.qualified_name:
            pm.unregister(module)
        record.status, record.error, record.components = "failed", f"bad hooks: {one_line(e)}", []
        return e
    if record.hook_errors:
        errors = "; ".join(f"{hook}: {error}" for hook, error in record.hook_errors.items())
        if record.components:
            record.status = "partial"
            record.error = f"hook failed ({errors}); its other components are usable"
        else:
            record.status, record.error = "failed", f"bad hooks: {errors}"
            pm.unregister(module)
        return PluginError(record.error)
    log.debug("%s: %s, %d component(s)", record.qualified_name, record.status, len(record.components))
    return None


def _entry_points() -> list[tuple[metadata.EntryPoint, Optional[str], Optional[str]]]:
    """``(entry point, distribution, version)`` in the group, by name and distribution; a
    distribution found twice on ``sys.path`` counts once (the first, as for imports)."""
    found = []
    seen: set[tuple[str, str]] = set()
    for dist in metadata.distributions():
        try:                          # a broken METADATA must not stop discovery
            eps = [ep for ep in dist.entry_points if ep.group == GROUP]
            dname = dist.metadata["Name"] if eps and dist.metadata else None
            version = dist.version if eps else None
        except Exception:  # noqa: BLE001
            continue
        for ep in eps:
            key = (normalize(dname) if dname else f"?{ep.value}", ep.name)
            if key not in seen:
                seen.add(key)
                found.append((ep, dname, version))
    return sorted(found, key=lambda item: (item[0].name, normalize(item[1] or "")))


def _trace(pm: pluggy.PluginManager) -> None:
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("invrim plugins: %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.DEBUG)
    pm.trace.root.setwriter(lambda text: log.debug(text.rstrip()))
    pm.enable_tracing()


def _mark_shared_names(records: list[PluginRecord]) -> None:
    """Two distributions declaring one entry-point name: keep both, each addressed as ``dist:name``."""
    by_name: dict[str, list[PluginRecord]] = defaultdict(list)
    for record in records:
        by_name[record.name].append(record)
    for name, group in by_name.items():
        if len(group) < 2:
            continue
        for record in group:
            if record.status != "builtin":
                record.qualified_name = f"{record.distribution or record.module}:{name}"
        for record in group:
            others = ", ".join(r.distribution or r.module for r in group if r is not record)
            record.warning = (f"entry-point name {name!r} is also declared by {others}; "
                              f"address this plugin as {record.qualified_name!r}")


def load_plugins(strict: Optional[bool] = None) -> tuple[pluggy.PluginManager, list[PluginRecord]]:
    """Load invrim's own hooks and every allowed plugin on one plugin manager.

    Returns the manager (every loaded plugin registered under its qualified name, disabled ones
    blocked) and one :class:`PluginRecord` per plugin, built-in first.
    """
    strict = _flag("INVRIM_STRICT_PLUGINS") if strict is None else strict
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(InvrimSpec)
    if _flag("INVRIM_TRACE_PLUGINS"):
        _trace(pm)

    from .. import __version__
    records = [PluginRecord(BUILTIN, BUILTIN_MODULE, "invrim", __version__, "builtin")]
    importers: list[Callable[[], Any]] = [lambda: importlib.import_module(BUILTIN_MODULE)]
    if _flag("INVRIM_DISABLE_PLUGIN_AUTOLOAD"):
        log.debug("autoload disabled by INVRIM_DISABLE_PLUGIN_AUTOLOAD")
    else:
        for ep, dist, version in _entry_points():
            records.append(PluginRecord(ep.name, ep.value, dist, version, "active"))
            importers.append(ep.load)
        _mark_shared_names(records)
    allow, block = _names("INVRIM_PLUGINS"), _names("INVRIM_DISABLE_PLUGINS")
    failures: list[tuple[PluginRecord, BaseException]] = []
    for record, importer in zip(records, importers):
        builtin = record.status == "builtin"
        if record.warning:
            log.warning("plugin %r (%s): %s", record.name, record.distribution or record.module, record.warning)
        if (any(map(record.matches, block))
                or (allow and not builtin and not any(map(record.matches, allow)))):
            record.status = "disabled"
            pm.set_blocked(record.qualified_name)
            log.debug("%s: disabled by the environment", record.qualified_name)
            continue
        error = _load_one(pm, record, importer, builtin)
        if error is not None:
            failures.append((record, error))
    for record, error in failures:
        message = (f"plugin {record.qualified_name!r} ({record.distribution or record.module}) "
                   f"{record.status}: {record.error}")
        if strict:
            raise PluginError(message + " [INVRIM_STRICT_PLUGINS is set]") from error
        log.warning(message)
    return pm, records
