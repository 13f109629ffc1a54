"""invrim-lensing: strong gravitational lensing forward models for invrim.

``SIELensing`` (registry name ``lensing_sie``): a pixelated source lensed by a singular isothermal
ellipsoid plus external shear — linear in the source, with an exact adjoint.
``PixelatedConvergenceLensing`` (``lensing_kappa``): a known source lensed by a pixelated
convergence map ``kappa`` — nonlinear in ``kappa``.

The physics modules are imported lazily, so ``import invrim_lensing`` stays light.
"""
__version__ = "0.1.0"

__all__ = ["SIELensing", "PixelatedConvergenceLensing", "LENS_PARAMETERS"]


def __getattr__(name):
    if name in __all__:
        from . import physics
        return getattr(physics, name)
    raise AttributeError(f"module 'invrim_lensing' has no attribute {name!r}")
