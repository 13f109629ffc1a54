"""Likelihoods: base class and built-ins."""
from .base import Likelihood
from .gaussian import Gaussian

__all__ = ["Likelihood", "Gaussian"]
