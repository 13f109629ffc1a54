"""Component descriptors: what a plugin provides, without importing it."""
from __future__ import annotations

import difflib
import importlib
import importlib.util
import inspect
import re
from dataclasses import dataclass, field, replace
from typing import Any, Callable, NamedTuple, Optional, Union

from .errors import ComponentBuildError, MissingDependencyError
from .spec import label

_NAME = re.compile(r"^[a-z][a-z0-9_\-]*$")
_IMPORT_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")

#: Import names whose PyPI distribution is called otherwise (used when a requirement names only
#: its import name, and in the hint for a plugin whose hooks module cannot import a package).
KNOWN_DISTRIBUTIONS = {"skimage": "scikit-image", "sklearn": "scikit-learn", "PIL": "Pillow",
                       "cv2": "opencv-python", "yaml": "PyYAML", "nibabel": "nibabel",
                       "torchkbnufft": "torchkbnufft", "finufft": "finufft"}


class Requirement(NamedTuple):
    """An optional package a component needs: the name it is imported by and the distribution
    that ``pip install`` takes (``Requirement("skimage", "scikit-image")``)."""

    import_name: str
    distribution: str

    @classmethod
    def parse(cls, spec: Any) -> "Requirement":
        """A requirement from ``"scipy"`` (both names alike, or the known distribution of an
        import name), ``("skimage", "scikit-image")`` or a :class:`Requirement`."""
        if isinstance(spec, str) and spec.strip():
            name = spec.strip()
            if not _IMPORT_NAME.match(name):
                raise ValueError(f"{name!r} is not an import name; name both the import name and the "
                                 f"distribution, e.g. requires=[('skimage', 'scikit-image')]")
            return cls(name, KNOWN_DISTRIBUTIONS.get(name, name))
        if (isinstance(spec, (tuple, list)) and len(spec) == 2
                and all(isinstance(v, str) and v.strip() for v in spec)):
            return cls(spec[0].strip(), spec[1].strip())
        raise ValueError(f"a requirement is an import name or (import name, distribution), got {spec!r}")


def install_hint(requirements: Any) -> str:
    """``"pip install scikit-image scipy"`` for requirements (or import names)."""
    dists = [Requirement.parse(r).distribution for r in requirements]
    return "pip install " + " ".join(dict.fromkeys(dists))


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
        Optional packages the factory needs, each an import name (``"scipy"``) or an
        ``(import name, distribution)`` pair (``("skimage", "scikit-image")``); when one cannot be
        imported the component stays listed with status ``missing-deps``, and building it says
        ``pip install <distribution>``.

    Notes
    -----
    The registry fills ``kind``, ``plugin`` (the entry-point name), ``distribution``, ``version``
    and ``plugin_qualified_name`` (``distribution:plugin`` when two distributions declare one
    entry-point name, else the plugin's name).
    """

    name: str
    factory: Union[str, Callable[..., Any]]
    summary: str = ""
    requires: tuple[Requirement, ...] = ()
    kind: str = ""
    plugin: str = ""
    distribution: Optional[str] = None
    version: Optional[str] = None
    builtin: bool = False
    missing: tuple[Requirement, ...] = field(default=(), compare=False)
    plugin_qualified_name: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise ValueError(f"invalid component name {self.name!r}: use lower-case letters, digits, '_' or '-'")
        if isinstance(self.factory, str):
            if ":" not in self.factory:
                raise ValueError(f"component {self.name!r}: a lazy factory must read 'package.module:Attribute', "
                                 f"got {self.factory!r}")
        elif not callable(self.factory):
            raise ValueError(f"component {self.name!r}: factory must be callable or a 'module:Attribute' string")
        requires = self.requires
        if isinstance(requires, (str, Requirement)):
            requires = (requires,)
        try:
            parsed = tuple(Requirement.parse(r) for r in requires)
        except (TypeError, ValueError) as e:
            raise ValueError(f"component {self.name!r}: requires: {e}") from None
        object.__setattr__(self, "requires", parsed)

    @property
    def qualified_name(self) -> str:
        """``plugin:name``, which picks this provider (``distribution:plugin:name`` when the
        plugin's entry-point name is shared by two distributions)."""
        plugin = self.plugin_qualified_name or self.plugin
        return f"{plugin}:{self.name}" if plugin else self.name

    def provided_by(self, plugin: str) -> bool:
        """Whether ``plugin`` (an entry-point name, a distribution or ``distribution:name``)
        names this component's plugin."""
        return names_plugin(plugin, self.plugin, self.plugin_qualified_name, self.distribution)

    @property
    def status(self) -> str:
        return "missing-deps" if self.missing else ("builtin" if self.builtin else "active")

    def with_provider(self, kind: str, plugin: str, distribution: Optional[str], version: Optional[str],
                      builtin: bool, plugin_qualified_name: Optional[str] = None) -> "Component":
        missing = tuple(r for r in self.requires if not _importable(r.import_name))
        return replace(self, kind=kind, plugin=plugin, distribution=distribution, version=version,
                       builtin=builtin, missing=missing, plugin_qualified_name=plugin_qualified_name or plugin)

    def _what(self) -> tuple[str, str]:
        """(``"backbone 'unet'"``, ``" from plugin 'p' (dist 1.0)"``) for messages."""
        what = f"{label(self.kind)} '{self.name}'" if self.kind else f"'{self.name}'"
        if self.builtin:
            return what, " from invrim"
        plugin = self.plugin_qualified_name or self.plugin
        dist = " ".join(v for v in (self.distribution, self.version) if v)
        source = f" from plugin '{plugin}'" if plugin else ""
        return what, source + (f" ({dist})" if dist and source else (f" from {dist}" if dist else ""))

    def load(self) -> Callable[..., Any]:
        """Import and return the factory.

        Raises :class:`MissingDependencyError` naming what to install, or
        :class:`ComponentBuildError` when the factory's module fails to import (whatever it
        raises, ``SystemExit`` included; only ``KeyboardInterrupt`` passes through).
        """
        what, source = self._what()
        if self.missing:
            raise MissingDependencyError(
                f"{what}{source} needs {', '.join(r.import_name for r in self.missing)}: "
                f"{install_hint(self.missing)}")
        if not isinstance(self.factory, str):
            return self.factory
        module_name, _, attribute = self.factory.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            top = (e.name or module_name).split(".")[0]
            raise MissingDependencyError(f"{what}{source} could not import {e.name}: {install_hint([top])}") from e
        except BaseException as e:  # noqa: BLE001 — the plugin's module, not the host, failed
            if isinstance(e, KeyboardInterrupt):
                raise
            raise ComponentBuildError(f"cannot import {what}{source}: {module_name}: {one_line(e)}") from e
        target: Any = module
        for part in attribute.split("."):
            try:
                target = getattr(target, part)
            except AttributeError:
                raise ImportError(f"{what}{source}: {module_name} has no attribute {attribute!r}") from None
        return target

    def build(self, **config: Any) -> Any:
        """Import the factory and call it with the keyword options ``config``.

        Raises
        ------
        ComponentBuildError
            One line naming the component, its plugin and distribution when the factory rejects
            an option (``unknown option 'x'``) or raises anything else (``SystemExit`` included;
            only ``KeyboardInterrupt`` passes through). The factory's exception is the cause.
        MissingDependencyError
            The factory imports a package that is not installed.
        """
        factory = self.load()
        try:
            return factory(**config)
        except MissingDependencyError:
            raise
        except ModuleNotFoundError as e:
            what, source = self._what()
            top = (e.name or "?").split(".")[0]
            raise MissingDependencyError(f"{what}{source} could not import {e.name}: {install_hint([top])}") from e
        except BaseException as e:  # noqa: BLE001 — report the factory's failure in one line
            if isinstance(e, KeyboardInterrupt):
                raise
            what, source = self._what()
            problem = _option_problem(factory, config) if isinstance(e, TypeError) else None
            raise ComponentBuildError(f"cannot build {what}{source}: {problem or one_line(e)}") from e

    def describe(self) -> dict[str, Any]:
        """A JSON-serialisable description (for ``invrim plugins list --json``)."""
        return {"name": self.name, "kind": self.kind, "plugin": self.plugin,
                "distribution": self.distribution, "version": self.version, "status": self.status,
                "summary": self.summary, "requires": [list(r) for r in self.requires],
                "missing": [list(r) for r in self.missing],
                "factory": self.factory if isinstance(self.factory, str) else
                f"{getattr(self.factory, '__module__', '?')}:{getattr(self.factory, '__qualname__', '?')}",
                "qualified_name": self.qualified_name}


def one_line(e: BaseException) -> str:
    """``"Type: first line of the message"`` (``SystemExit`` says which exit code was asked for)."""
    if isinstance(e, SystemExit):
        return f"SystemExit: sys.exit({e.code!r}) was called"
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}".rstrip(": ")


def normalize(distribution: str) -> str:
    """A distribution name in PEP 503 normal form (``Invrim_MRI`` -> ``invrim-mri``)."""
    return re.sub(r"[-_.]+", "-", distribution).lower()


def names_plugin(query: str, plugin: str, qualified: str, distribution: Optional[str]) -> bool:
    """Whether ``query`` names the plugin: its entry-point name, its qualified name, its
    distribution (normalised) or ``distribution:entry-point name``."""
    if query in (plugin, qualified):
        return True
    if not distribution:
        return False
    dist, sep, name = query.rpartition(":")
    if sep:
        return name == plugin and normalize(dist) == normalize(distribution)
    return normalize(query) == normalize(distribution)


def _option_problem(factory: Callable[..., Any], config: dict[str, Any]) -> Optional[str]:
    """What is wrong with the keyword options, or ``None`` when they fit the factory's signature
    (the ``TypeError`` then came from inside the factory)."""
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        return None
    try:
        signature.bind(**config)
        return None
    except TypeError as e:
        reason = str(e)
    params = signature.parameters.values()
    named = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    parts = []
    if not any(p.kind is p.VAR_KEYWORD for p in params):
        for key in (k for k in config if k not in named):
            close = difflib.get_close_matches(key, named, n=1, cutoff=0.6)
            parts.append(f"unknown option {key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    required = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
                and p.default is p.empty and p.name not in config]
    if required:
        parts.append(f"missing option{'s' if len(required) > 1 else ''} {', '.join(map(repr, required))}")
    return f"{'; '.join(parts) or reason}; its options: {', '.join(named) or '(none)'}"


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False
