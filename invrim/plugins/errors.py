"""Errors of the plugin system. All are ``ValueError`` subclasses with one-line messages."""
from __future__ import annotations


class PluginError(ValueError):
    """A plugin could not be loaded (raised only in strict mode)."""


class UnknownComponentError(ValueError):
    """No component of that kind has that name."""


class AmbiguousComponentError(ValueError):
    """Two third-party plugins provide the same name and none is built in."""


class MissingDependencyError(ImportError):
    """A component is listed but a package it requires is not installed."""
