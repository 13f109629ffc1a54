"""Forward models: base classes and the generic built-ins."""
from .base import ComposedLinearForwardModel, ForwardModel, LinearForwardModel
from .linear_algebra import conjugate_gradient, power_iteration
from .blur import Blur, gaussian_psf
from .compressed_sensing import CompressedSensing
from .identity import Identity
from .inpainting import Inpainting
from .super_resolution import SuperResolution

__all__ = ["ForwardModel", "LinearForwardModel", "ComposedLinearForwardModel", "conjugate_gradient",
           "power_iteration", "Blur", "gaussian_psf", "CompressedSensing", "Identity",
           "Inpainting", "SuperResolution"]
