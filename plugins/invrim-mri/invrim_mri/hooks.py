"""What invrim-mri provides. Light on purpose: no torch, no physics import here."""
from invrim.plugins import Component, hookimpl


@hookimpl
def invrim_forward_models():
    return [
        Component(
            name="mri_singlecoil",
            factory="invrim_mri.physics:SingleCoilMRI",
            summary="Cartesian single-coil MRI: y = mask * FFT(x), x real (B, 2, H, W), y complex (B, H, W)",
        ),
        Component(
            name="mri_multicoil",
            factory="invrim_mri.physics:MultiCoilMRI",
            summary="Cartesian multi-coil MRI: y_c = mask * FFT(sens_c x), y complex (B, coils, H, W)",
        ),
    ]


@hookimpl
def invrim_generators():
    return [
        Component(
            name="mri_phantom",
            factory="invrim_mri.phantoms:PhantomGenerator",
            summary="complex MRI phantoms (random ellipses or Shepp-Logan) with smooth phase, as (B, 2, H, W)",
        ),
    ]
