"""Component descriptors: what a plugin provides, without importing it."""
from __future__ import annotations

import importlib
import importlib.util
import re
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Optional, Union

from .errors import MissingDependencyError

_NAME = re.compile(r"^[a-z][a-z0-9_\-]*$")


@dataclass(frozen=True)
class Component:
    """A registered component.

    Parameters
    ----------
    name
        Registry name: lower case letters, digits, ``_`` and ``-``.
    factory
        The class or callable that builds it from keyword arguments, or a lazy
        ``"package.module:Attribute"`` string imported only when the component is built.
    summary
        One line shown by ``invrim plugins list``.
    requires
        Import names the factory needs (e.g. ``("caustics",)``); when one is missing the
        component stays listed with status ``missing-deps`` and building it says what to install.

    Notes
    -----
    The registry fills ``kind``, ``plugin``, ``distribution`` and ``version``.
    """

    name: str
    factory: Union[str, Callable[..., Any]]
    summary: str = ""
    requires: tuple[str, ...] = ()
    kind: str = ""
    plugin: str = ""
    distribution: Optional[str] = None
    version: Optional[str] = None
    builtin: bool = False
    missing: tuple[str, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise ValueError(f"invalid component name {self.name!r}: use lower-case letters, digits, '_' or '-'")
        if isinstance(self.factory, str):
            if ":" not in self.factory:
                raise ValueError(f"component {self.name!r}: a lazy factory must read 'package.module:Attribute', "
                                 f"got {self.factory!r}")
        elif not callable(self.factory):
            raise ValueError(f"component {self.name!r}: factory must be callable or a 'module:Attribute' string")
        if isinstance(self.requires, str):
            object.__setattr__(self, "requires", (self.requires,))
        object.__setattr__(self, "requires", tuple(self.requires))

    @property
    def qualified_name(self) -> str:
        return f"{self.plugin}:{self.name}" if self.plugin else self.name

    @property
    def status(self) -> str:
        return "missing-deps" if self.missing else ("builtin" if self.builtin else "active")

    def with_provider(self, kind: str, plugin: str, distribution: Optional[str], version: Optional[str],
                      builtin: bool) -> "Component":
        missing = tuple(r for r in self.requires if not _importable(r))
        return replace(self, kind=kind, plugin=plugin, distribution=distribution, version=version,
                       builtin=builtin, missing=missing)

    def load(self) -> Callable[..., Any]:
        """Import and return the factory (raises :class:`MissingDependencyError` when needed)."""
        what = f"{self.kind.rstrip('s').replace('_', ' ')} '{self.name}'" if self.kind else f"'{self.name}'"
        source = f" from {self.distribution or self.plugin}" if (self.distribution or self.plugin) else ""
        if self.missing:
            raise MissingDependencyError(
                f"{what}{source} needs {', '.join(self.missing)}: pip install {' '.join(self.missing)}")
        if not isinstance(self.factory, str):
            return self.factory
        module_name, _, attribute = self.factory.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            raise MissingDependencyError(f"{what}{source} could not import {e.name}: pip install {e.name}") from e
        target: Any = module
        for part in attribute.split("."):
            try:
                target = getattr(target, part)
            except AttributeError:
                raise ImportError(f"{what}{source}: {module_name} has no attribute {attribute!r}") from None
        return target

    def build(self, **config: Any) -> Any:
        return self.load()(**config)

    def describe(self) -> dict[str, Any]:
        """A JSON-serialisable description (for ``invrim plugins list --json``)."""
        return {"name": self.name, "kind": self.kind, "plugin": self.plugin,
                "distribution": self.distribution, "version": self.version, "status": self.status,
                "summary": self.summary, "requires": list(self.requires), "missing": list(self.missing),
                "factory": self.factory if isinstance(self.factory, str) else
                f"{getattr(self.factory, '__module__', '?')}:{getattr(self.factory, '__qualname__', '?')}"}


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False
