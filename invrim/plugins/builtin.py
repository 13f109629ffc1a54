"""invrim's own components, registered through the same hooks as any plugin."""
from __future__ import annotations

from .component import Component
from .spec import hookimpl


@hookimpl
def invrim_forward_models():
    return [
        Component("identity", "invrim.physics.identity:Identity", "denoising: y = x"),
        Component("blur", "invrim.physics.blur:Blur",
                  "convolution with a point-spread function (1-3-D, one PSF or one per sample)"),
        Component("inpainting", "invrim.physics.inpainting:Inpainting",
                  "observe the pixels where a mask is set (one mask or one per sample)"),
        Component("super_resolution", "invrim.physics.super_resolution:SuperResolution",
                  "block averaging by an integer factor (1-3-D)"),
        Component("compressed_sensing", "invrim.physics.compressed_sensing:CompressedSensing",
                  "random Gaussian matrix on 1-D signals or parameter vectors"),
    ]


@hookimpl
def invrim_backbones():
    return [
        Component("hourglass", "invrim.backbones.hourglass:Hourglass",
                  "encoder / conv-GRU / decoder (torch-rim's network), 0-3-D, any size"),
        Component("unet", "invrim.backbones.unet:UNet", "U-Net with a conv-GRU at every resolution level"),
        Component("rim_cell", "invrim.backbones.rim_cell:RIMCell",
                  "DIRECT-style full-resolution conv-GRU RIM cell"),
        Component("mlp_gru", "invrim.backbones.mlp:MLPGRU", "MLP + GRU for parameter vectors (no spatial axes)"),
    ]


@hookimpl
def invrim_likelihoods():
    return [
        Component("gaussian", "invrim.likelihoods.gaussian:Gaussian",
                  "Gaussian noise: scalar, per-sample or per-pixel sigma"),
        Component("poisson", "invrim.likelihoods.poisson:Poisson",
                  "photon counts with a detector gain and a background"),
    ]


@hookimpl
def invrim_generators():
    return [
        Component("random_field", "invrim.data.generators:GaussianRandomField",
                  "Gaussian random fields with a power-law spectrum (1-3-D)"),
        Component("ellipses", "invrim.data.generators:RandomEllipses",
                  "random overlapping ellipses in [0, 1] (2-D phantoms)"),
        Component("image_crops", "invrim.data.generators:ImageCrops",
                  "random crops of scikit-image's bundled photographs", requires=[("skimage", "scikit-image")]),
    ]


@hookimpl
def invrim_readers():
    return [
        Component("hdf5", "invrim.data.readers:HDF5Reader",
                  "HDF5 of any layout (fastMRI, netCDF-4, MATLAB v7.3), nested groups; --link capable"),
        Component("numpy", "invrim.data.readers:NumpyReader", ".npy (memory-mapped) and .npz, no pickles"),
        Component("fits", "invrim.data.readers:FITSReader", "FITS images and cubes (HDU by index or EXTNAME)",
                  requires=[("astropy", "astropy")]),
        Component("nifti", "invrim.data.readers:NiftiReader", "NIfTI-1/2 volumes (.nii, .nii.gz), lazy slices",
                  requires=[("nibabel", "nibabel")]),
    ]
