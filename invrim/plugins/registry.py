"""The registry: every component of every loaded plugin, by kind and name."""
from __future__ import annotations

import difflib
import importlib
import threading
from typing import Any, Optional

from .component import Component
from .errors import AmbiguousComponentError, UnknownComponentError
from .loader import PluginRecord, load_plugins
from .spec import HOOKS

_LABELS = {"forward_models": "forward model", "backbones": "backbone", "likelihoods": "likelihood",
           "generators": "generator"}


class ComponentRegistry:
    """The components of one kind (``registry().backbones``, ``.forward_models`` …).

    Names resolve as follows: ``"plugin:name"`` picks one provider; a bare name picks the
    built-in component when there is one (a built-in name always wins), else the only plugin
    providing it; two plugins providing it is an error naming both, raised only when the name
    is used.
    """

    def __init__(self, kind: str, components: list[Component]):
        self.kind = kind
        self.label = _LABELS[kind]
        self._all = components
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

    def __iter__(self):
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
            chosen = [p for p in providers if p.plugin == plugin or p.distribution == plugin]
            if not chosen:
                hint = (f"; it is provided by {', '.join(p.qualified_name for p in providers)}" if providers
                        else self._suggest(bare))
                raise UnknownComponentError(f"no {self.label} {bare!r} in plugin {plugin!r}{hint}")
            return chosen[0]
        if not providers:
            raise UnknownComponentError(f"unknown {self.label} {bare!r}{self._suggest(bare)}")
        builtins = [p for p in providers if p.builtin]
        if builtins:
            return builtins[0]
        if len(providers) > 1:
            who = " and ".join(f"{p.plugin} ({p.distribution or 'unknown distribution'})" for p in providers)
            choices = " or ".join(f"'{p.qualified_name}'" for p in providers)
            raise AmbiguousComponentError(f"{self.label} {bare!r} is provided by {who}; choose one with {choices}")
        return providers[0]

    def _suggest(self, name: str) -> str:
        available = sorted(self._by_name)
        close = difflib.get_close_matches(name, available, n=3, cutoff=0.5)
        text = f"; available: {', '.join(available) if available else '(none)'}"
        return text + (f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else "")

    def load(self, name: str) -> Any:
        """The component's class or factory (imported now)."""
        return self.info(name).load()

    def build(self, name: str, **config: Any) -> Any:
        """Build the component ``name`` with keyword arguments ``config``."""
        component = self.info(name)
        factory = component.load()
        try:
            return factory(**config)
        except TypeError as e:
            raise ValueError(f"cannot build {self.label} {name!r} with {sorted(config)}: {e}") from e


class Registry:
    """All loaded components, with the per-plugin records of how loading went."""

    def __init__(self, records: list[PluginRecord]):
        self.plugins = records
        by_kind: dict[str, list[Component]] = {kind: [] for kind in HOOKS.values()}
        for record in records:
            for component in record.components:
                by_kind[component.kind].append(component)
        self.forward_models = ComponentRegistry("forward_models", by_kind["forward_models"])
        self.backbones = ComponentRegistry("backbones", by_kind["backbones"])
        self.likelihoods = ComponentRegistry("likelihoods", by_kind["likelihoods"])
        self.generators = ComponentRegistry("generators", by_kind["generators"])

    def kinds(self) -> dict[str, ComponentRegistry]:
        return {"forward_models": self.forward_models, "backbones": self.backbones,
                "likelihoods": self.likelihoods, "generators": self.generators}

    def plugin(self, name: str) -> Optional[PluginRecord]:
        return next((p for p in self.plugins if p.name == name or p.distribution == name), None)

    def provider_versions(self, *components: Component) -> dict[str, str]:
        """``{distribution: version}`` of the plugins providing ``components`` (for provenance)."""
        return {c.distribution or c.plugin: c.version or "unknown" for c in components}


_lock = threading.Lock()
_cached: Optional[Registry] = None


def registry() -> Registry:
    """The (cached) registry of built-in and plugin components; :func:`refresh` reloads it."""
    global _cached
    with _lock:
        if _cached is None:
            _, records = load_plugins()
            _cached = Registry(records)
        return _cached


def refresh() -> None:
    """Forget the cached registry, so the next :func:`registry` call discovers plugins again."""
    global _cached
    importlib.invalidate_caches()
    with _lock:
        _cached = None
