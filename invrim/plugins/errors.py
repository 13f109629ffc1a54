"""Errors of the plugin system, with one-line messages (``ValueError`` subclasses, except
:class:`MissingDependencyError`, an ``ImportError``)."""
from __future__ import annotations


class PluginError(ValueError):
    """A plugin could not be loaded (raised only in strict mode), or the registry was used
    while the plugins were loading."""


class UnknownComponentError(ValueError):
    """No component of that kind has that name."""


class AmbiguousComponentError(ValueError):
    """Two third-party plugins provide the same name and none is built in."""


class MissingDependencyError(ImportError):
    """A component is listed but a package it requires is not installed."""


class ComponentBuildError(ValueError):
    """A component's factory raised (or rejected its options) when the component was built.

    The message names the component, its plugin and distribution; the factory's own exception is
    the ``__cause__``.
    """
