"""The registry: every component of every loaded plugin, by kind and name."""
from __future__ import annotations

import difflib
import functools
import importlib
import threading
from typing import TYPE_CHECKING, Any, Iterator, Optional, Sequence

import pluggy

from .component import Component
from .errors import AmbiguousComponentError, PluginError, UnknownComponentError
from .loader import PluginRecord, load_plugins
from .spec import KINDS


class ComponentRegistry:
    """The components of one kind (``registry().backbones``, ``.forward_models`` …).

    Names resolve as follows: ``"plugin:name"`` picks one provider (``plugin`` may be the
    entry-point name, the distribution or ``distribution:entry-point``); a bare name picks the
    built-in component when there is one (a built-in name always wins), else the only plugin
    providing it; two plugins providing it is an error naming both, raised only when the name
    is used.
    """

    def __init__(self, kind: str, components: list[Component], failed: Sequence[PluginRecord] = ()):
        self.kind = kind
        self.label = KINDS[kind].label
        self._all = components
        #: plugins that failed to load (or whose hook for this kind failed): a missing name may be theirs
        self.failed = list(failed)
        self._by_name: dict[str, list[Component]] = {}
        for c in components:
            self._by_name.setdefault(c.name, []).append(c)

    def names(self) -> list[str]:
        """Every available name (qualified ``plugin:name`` where a bare name is ambiguous)."""
        out = []
        for name, providers in sorted(self._by_name.items()):
            if len(providers) == 1 or any(p.builtin for p in providers):
                out.append(name)
            else:
                out.extend(sorted(p.qualified_name for p in providers))
        return out

    def __contains__(self, name: str) -> bool:
        try:
            self.info(name)
            return True
        except (UnknownComponentError, AmbiguousComponentError):
            return False

    def __iter__(self) -> Iterator[Component]:
        return iter(self._all)

    def __len__(self) -> int:
        return len(self._all)

    def info(self, name: str) -> Component:
        """The descriptor of ``name`` (bare or ``plugin:name``) without importing it."""
        if not isinstance(name, str) or not name:
            raise UnknownComponentError(f"{self.label} name must be a non-empty string, got {name!r}")
        plugin, _, bare = name.rpartition(":")
        providers = self._by_name.get(bare, [])
        if plugin:
            chosen = [p for p in providers if p.provided_by(plugin)]
            if not chosen:
                broken = [r for r in self.failed if r.matches(plugin)]
                if broken:
                    raise UnknownComponentError(f"{self.label} {bare!r} is provided by plugin {plugin!r}, which "
                                                f"failed to load: {self._failure(broken[0])}")
                hint = (f"; it is provided by {', '.join(p.qualified_name for p in providers)}" if providers
                        else self._suggest(bare))
                raise UnknownComponentError(f"no {self.label} {bare!r} in plugin {plugin!r}{hint}")
        elif not providers:
            raise UnknownComponentError(f"unknown {self.label} {bare!r}{self._suggest(bare)}{self._failed_hint()}")
        else:
            chosen = providers
        builtins = [p for p in chosen if p.builtin]
        if builtins:
            return builtins[0]
        if len(chosen) > 1:
            chosen = sorted(chosen, key=lambda p: p.qualified_name)
            who = " and ".join(f"{p.plugin} ({p.distribution or 'unknown distribution'})" for p in chosen)
            choices = " or ".join(f"'{p.qualified_name}'" for p in chosen)
            raise AmbiguousComponentError(f"{self.label} {name!r} is provided by {who}; choose one with {choices}")
        return chosen[0]

    def _failure(self, record: PluginRecord) -> str:
        """``"RuntimeError: boom (invrim-foo 1.0)"``: why ``record`` could not provide this kind."""
        error = record.hook_errors.get(KINDS[self.kind].hook) or record.error or record.status
        dist = " ".join(v for v in (record.distribution, record.version) if v)
        return f"{error}" + (f" ({dist})" if dist else "")

    def _failed_hint(self) -> str:
        if not self.failed:
            return ""
        who = "; ".join(f"{r.qualified_name!r}: {self._failure(r)}" for r in self.failed)
        which = "plugin" if len(self.failed) == 1 else "plugins"
        return f"; it may be provided by a {which} that failed to load ({who})"

    def _suggest(self, name: str) -> str:
        available = sorted(self._by_name)
        close = difflib.get_close_matches(name, available, n=3, cutoff=0.5)
        text = f"; available: {', '.join(available) if available else '(none)'}"
        return text + (f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else "")

    def load(self, name: str) -> Any:
        """The component's class or factory (imported now)."""
        return self.info(name).load()

    def build(self, name: str, **config: Any) -> Any:
        """Build the component ``name`` with keyword arguments ``config``.

        Raises :class:`~invrim.plugins.errors.ComponentBuildError` (one line naming the component
        and its plugin) when the factory rejects an option or raises.
        """
        return self.info(name).build(**config)


class Registry:
    """All loaded components, with the per-plugin records of how loading went.

    One attribute per row of :data:`~invrim.plugins.spec.KINDS` (``.forward_models``,
    ``.backbones``, ``.likelihoods``, ``.generators``), each a :class:`ComponentRegistry`;
    ``plugin_manager`` is the :class:`pluggy.PluginManager` the plugins are registered on.
    """

    def __init__(self, records: list[PluginRecord], plugin_manager: Optional[pluggy.PluginManager] = None):
        self.plugins = records
        self.plugin_manager = plugin_manager
        by_kind: dict[str, list[Component]] = {kind: [] for kind in KINDS}
        for record in records:
            for component in record.components:
                by_kind[component.kind].append(component)
        self._kinds = {kind: ComponentRegistry(kind, components, [r for r in records if r.could_provide(kind)])
                       for kind, components in by_kind.items()}
        for kind, components in self._kinds.items():
            setattr(self, kind, components)

    if TYPE_CHECKING:                     # the kinds are attributes set from KINDS
        def __getattr__(self, kind: str) -> ComponentRegistry: ...

    def kinds(self) -> dict[str, ComponentRegistry]:
        """Kind name -> its :class:`ComponentRegistry`, in the order of ``KINDS``."""
        return dict(self._kinds)

    def plugin(self, name: str) -> Optional[PluginRecord]:
        """The record of the plugin ``name`` (entry-point name, distribution or
        ``distribution:name``; the first, when a shared name names several)."""
        exact = next((p for p in self.plugins if p.qualified_name == name), None)
        return exact or next((p for p in self.plugins if p.matches(name)), None)

    def components_of(self, plugin: str) -> list[Component]:
        """Every component of the plugins that ``plugin`` names (as for :meth:`plugin`, all of them)."""
        return [c for kind in self._kinds.values() for c in kind if c.provided_by(plugin)]

    def provider_versions(self, *components: Component) -> dict[str, str]:
        """``{distribution: version}`` of the plugins providing ``components`` (for provenance)."""
        return {c.distribution or c.plugin: c.version or "unknown" for c in components}


_lock = threading.Lock()
_loading = threading.local()


@functools.lru_cache(maxsize=1)
def _load() -> Registry:
    _loading.active = True
    try:
        pm, records = load_plugins()
        return Registry(records, pm)
    finally:
        _loading.active = False


def registry() -> Registry:
    """The (cached) registry of built-in and plugin components; :func:`refresh` reloads it.

    Raises :class:`~invrim.plugins.errors.PluginError` when called while the plugins are
    loading (from a hooks module or a hook): that plugin is then recorded as ``failed``.
    """
    if getattr(_loading, "active", False):
        raise PluginError("invrim.plugins.registry() was called while plugins were loading; a hooks module "
                          "must only declare components (use the registry when a component is built)")
    with _lock:                           # one discovery at a time; later calls hit the cache
        return _load()


def refresh() -> None:
    """Forget the cached registry, so the next :func:`registry` call discovers plugins again."""
    importlib.invalidate_caches()
    with _lock:
        _load.cache_clear()
