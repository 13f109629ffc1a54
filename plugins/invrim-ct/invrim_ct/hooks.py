"""Hooks: what this plugin provides. Keep this module light: no torch import here."""
from invrim.plugins import Component, hookimpl


@hookimpl
def invrim_forward_models():
    return [
        Component(
            name="ct_parallel",
            factory="invrim_ct.physics:ParallelBeamCT",   # imported only when used
            summary="parallel-beam CT: Radon transform (skimage circle geometry), exact sparse adjoint, FBP",
            requires=("scipy",),
        )
    ]
