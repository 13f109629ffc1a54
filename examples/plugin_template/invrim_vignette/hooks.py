"""Hooks: what this plugin provides. Keep this module light: no torch import here."""
from invrim.plugins import Component, hookimpl


@hookimpl
def invrim_forward_models():
    return [
        Component(
            name="vignette",
            factory="invrim_vignette.physics:Vignette",   # imported only when used
            summary="optical vignetting: y = v(r) x with a radial gain falling off to the corners",
        ),
        Component(
            name="vignette_fourier",
            factory="invrim_vignette.physics:SubsampledFourier",
            summary="subsampled 2-D Fourier transform: real x -> complex y = M FFT2(x)",
            # optional packages the factory needs, each an import name or (import name,
            # distribution): requires=[("skimage", "scikit-image")]; this one needs none
            requires=(),
        ),
    ]
