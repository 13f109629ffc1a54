"""invrim-mri: Cartesian MRI physics for invrim.

Kept light on purpose (invrim imports ``invrim_mri.hooks``, hence this package, to list plugins):
nothing heavy is imported here. Use the submodules::

    from invrim_mri.physics import SingleCoilMRI, MultiCoilMRI
    from invrim_mri import masks, coils, phantoms
    from invrim_mri.fft import fft2c, ifft2c, to_complex, to_channels
"""
__version__ = "0.1.0"
