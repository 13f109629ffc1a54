"""Deprecated: the heap setting moved to :mod:`invrim.heap` (it is not training-specific).

``invrim.training.heap.keep_heap`` and ``release_heap`` are the same functions as
``invrim.heap.keep_heap`` and ``invrim.heap.release_heap``. The RIM and ``fit`` no longer call
them: an application opts in (see :mod:`invrim.heap`).
"""
from __future__ import annotations

import warnings

from ..heap import keep_heap, kept_heap, release_heap, restore_heap

__all__ = ["keep_heap", "kept_heap", "release_heap", "restore_heap"]

warnings.warn("invrim.training.heap is deprecated: use invrim.heap (keep_heap, kept_heap, "
              "restore_heap, release_heap)", DeprecationWarning, stacklevel=2)
