"""Forward models: base classes and the generic built-ins."""
from .base import ForwardModel, LinearForwardModel
from .blur import Blur, gaussian_psf
from .compressed_sensing import CompressedSensing
from .identity import Identity
from .inpainting import Inpainting
from .super_resolution import SuperResolution

__all__ = ["ForwardModel", "LinearForwardModel", "Blur", "gaussian_psf", "CompressedSensing", "Identity",
           "Inpainting", "SuperResolution"]
