"""Plugins: entry-point discovery, the component registry and the conformance kit.

>>> from invrim.plugins import registry
>>> registry().backbones.names()
['hourglass', 'mlp_gru', 'rim_cell', 'unet']
"""
from .component import Component
from .errors import (AmbiguousComponentError, ComponentBuildError, MissingDependencyError, PluginError,
                     UnknownComponentError)
from .loader import PluginRecord, load_plugins
from .registry import ComponentRegistry, Registry, refresh, registry
from .spec import KINDS, Kind, hookimpl, hookspec

__all__ = ["Component", "hookimpl", "hookspec", "registry", "refresh", "Registry", "ComponentRegistry",
           "PluginRecord", "load_plugins", "PluginError", "UnknownComponentError",
           "AmbiguousComponentError", "MissingDependencyError", "ComponentBuildError", "KINDS", "Kind"]
