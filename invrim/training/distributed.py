"""Deprecated location of :mod:`invrim.distributed` (training and reconstruction share it); this
name is the same module object, kept for one release."""
import sys

from .. import distributed as _distributed

sys.modules[__name__] = _distributed
