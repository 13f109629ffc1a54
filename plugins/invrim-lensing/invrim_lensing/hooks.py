"""Hooks: what this plugin provides. Light on purpose: no torch, no physics import here."""
from invrim.plugins import Component, hookimpl


@hookimpl
def invrim_forward_models():
    return [
        Component(
            name="lensing_sie",
            factory="invrim_lensing.physics:SIELensing",
            summary="strong lensing of a pixelated source by an SIE + external shear (linear in the source)",
        ),
        Component(
            name="lensing_kappa",
            factory="invrim_lensing.physics:PixelatedConvergenceLensing",
            summary="strong lensing of a known source by a pixelated convergence map kappa (nonlinear)",
        ),
    ]


@hookimpl
def invrim_generators():
    return [
        Component(
            name="hubble_sources",
            factory="invrim_lensing.data:HubbleSources",
            summary="galaxy sources cropped from scikit-image's bundled Hubble Deep Field",
            requires=[("skimage", "scikit-image"), "scipy"],
        ),
    ]
