"""Hook specifications: how a plugin declares the components it provides.

A plugin is a distribution with an entry point in the group ``invrim`` whose value is a light
hooks module (importing it must not import torch models, heavy libraries or data)::

    [project.entry-points.invrim]
    mri = "invrim_mri.hooks"

The hooks return :class:`~invrim.plugins.Component` descriptors whose factories are lazy
``"package.module:Attribute"`` strings, so listing plugins imports nothing heavy.
"""
from __future__ import annotations

import pluggy

PROJECT = "invrim"
hookspec = pluggy.HookspecMarker(PROJECT)
#: Decorate a plugin's hook functions with this.
hookimpl = pluggy.HookimplMarker(PROJECT)

#: hook name -> component kind (the registry attribute)
HOOKS = {
    "invrim_forward_models": "forward_models",
    "invrim_backbones": "backbones",
    "invrim_likelihoods": "likelihoods",
    "invrim_generators": "generators",
}


class InvrimSpec:
    """The four registration hooks; each returns a list of ``Component`` descriptors."""

    @hookspec
    def invrim_forward_models(self):
        """Forward models ``F`` (subclasses of :class:`invrim.physics.ForwardModel`)."""

    @hookspec
    def invrim_backbones(self):
        """Backbones (subclasses of :class:`invrim.backbones.Backbone`)."""

    @hookspec
    def invrim_likelihoods(self):
        """Likelihoods (subclasses of :class:`invrim.likelihoods.Likelihood`)."""

    @hookspec
    def invrim_generators(self):
        """Ground-truth generators for simulation (random fields, phantoms, sources)."""
