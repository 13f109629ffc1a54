"""invrim — Recurrent Inference Machines for inverse problems.

>>> from invrim import RIM, Hourglass, UNet
"""
__version__ = "0.1.0"

from .backbones import MLPGRU, Backbone, Hourglass, RIMCell, UNet, Unet  # noqa: E402
from .likelihoods import Gaussian, Likelihood  # noqa: E402
from .physics import ForwardModel, LinearForwardModel  # noqa: E402
from .problem import Problem  # noqa: E402
from .rim import RIM  # noqa: E402

__all__ = ["RIM", "Problem", "Backbone", "Hourglass", "UNet", "Unet", "RIMCell", "MLPGRU",
           "ForwardModel", "LinearForwardModel", "Likelihood", "Gaussian", "__version__"]
