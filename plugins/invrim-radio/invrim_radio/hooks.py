"""What invrim-radio provides. Light on purpose: no torch, no physics import here."""
from invrim.plugins import Component, hookimpl


@hookimpl
def invrim_forward_models():
    return [
        Component(
            name="radio_interferometry",
            factory="invrim_radio.physics:RadioInterferometry",
            summary="radio interferometer: sky x (B, 1, H, W) -> complex visibilities (B, V) at per-sample (u, v) "
                    "by a NUFFT; Earth-rotation coverage; Hogbom CLEAN baseline",
            # finufft is a dependency of the distribution, imported only when a transform runs;
            # backend="dft" (pure torch) needs nothing beyond torch
        ),
    ]


@hookimpl
def invrim_generators():
    return [
        Component(
            name="radio_sky",
            factory="invrim_radio.sky:RadioSky",
            summary="random radio skies: point sources, elliptical Gaussians and exponential disks (Jy/pixel)",
        ),
    ]
