"""Hook specifications and the table of component kinds.

A plugin is a distribution with an entry point in the group ``invrim`` whose value is a light
hooks module (importing it must not import torch models, heavy libraries or data)::

    [project.entry-points.invrim]
    mri = "invrim_mri.hooks"

The hooks return :class:`~invrim.plugins.Component` descriptors whose factories are lazy
``"package.module:Attribute"`` strings, so listing plugins imports nothing heavy.

:data:`KINDS` is the one table of component kinds: the loader, the registry, ``invrim plugins``
and the conformance kit enumerate kinds from it. Adding a kind is one row here and one hookspec
below.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple, Optional, Sequence

import pluggy

if TYPE_CHECKING:                     # only for the annotations: spec.py is imported by component.py
    from .component import Component

PROJECT = "invrim"
hookspec = pluggy.HookspecMarker(PROJECT)
#: Decorate a plugin's hook functions with this.
hookimpl = pluggy.HookimplMarker(PROJECT)


class Kind(NamedTuple):
    """One kind of component.

    Attributes
    ----------
    name
        The kind, ``Component.kind``, and the :class:`~invrim.plugins.Registry` attribute
        (``registry().forward_models``).
    hook
        The hookspec that registers components of this kind.
    label
        What one component is called in messages (``"forward model"``).
    """

    name: str
    hook: str
    label: str

    @property
    def plural(self) -> str:
        """What several are called (``"forward models"``)."""
        return self.label + "s"


#: kind name -> :class:`Kind`, in listing order.
KINDS: dict[str, Kind] = {k.name: k for k in (
    Kind("forward_models", "invrim_forward_models", "forward model"),
    Kind("backbones", "invrim_backbones", "backbone"),
    Kind("likelihoods", "invrim_likelihoods", "likelihood"),
    Kind("generators", "invrim_generators", "generator"),
    Kind("readers", "invrim_readers", "reader"),
)}

#: hook name -> kind name (derived from :data:`KINDS`; kept for older imports).
HOOKS: dict[str, str] = {k.hook: k.name for k in KINDS.values()}


def label(kind: str) -> str:
    """The singular label of ``kind`` (the kind's own name when it is not in :data:`KINDS`)."""
    found = KINDS.get(kind)
    return found.label if found else kind.replace("_", " ")


#: What a registration hook may return: descriptors (or dicts of their fields), or ``None``.
Registration = Optional[Sequence["Component"]]


class InvrimSpec:
    """The registration hooks, one per row of :data:`KINDS`.

    Each is called once per plugin, with no arguments, and returns a list of
    :class:`~invrim.plugins.Component` descriptors (``None`` or ``[]`` for none). A hook must
    not build components or import heavy modules: the registry imports a factory only when
    the component is built.
    """

    @hookspec
    def invrim_forward_models(self) -> Registration:
        """Forward models ``F`` (subclasses of :class:`invrim.physics.ForwardModel`)."""

    @hookspec
    def invrim_backbones(self) -> Registration:
        """Backbones (subclasses of :class:`invrim.backbones.Backbone`)."""

    @hookspec
    def invrim_likelihoods(self) -> Registration:
        """Likelihoods (subclasses of :class:`invrim.likelihoods.Likelihood`)."""

    @hookspec
    def invrim_generators(self) -> Registration:
        """Ground-truth generators for simulation (random fields, phantoms, sources)."""

    @hookspec
    def invrim_readers(self) -> Registration:
        """Readers of foreign files for ``invrim import`` (classes with ``suffixes``, ``arrays()``,
        ``read(name, index)``, ``hdf5_source(name)``, ``close()`` and ``example(folder)``; see
        :mod:`invrim.data.readers`). Not physics: they only turn a file's arrays into numpy."""
