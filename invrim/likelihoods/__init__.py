"""Likelihoods: base class and built-ins."""
from .base import Likelihood
from .gaussian import Gaussian
from .poisson import Poisson

__all__ = ["Likelihood", "Gaussian", "Poisson"]
