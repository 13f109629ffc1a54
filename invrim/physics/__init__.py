"""Forward models: base classes and the generic built-ins."""
from .base import ForwardModel, LinearForwardModel
from .blur import Blur
from .identity import Identity

__all__ = ["ForwardModel", "LinearForwardModel", "Blur", "Identity"]
