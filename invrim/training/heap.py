"""Keep glibc's heap between CPU training steps instead of handing it back to the OS each time.

A training step keeps every activation of the unrolled RIM for the backward pass (1.6 GiB at
T=40 for a batch of eight 64x64 images), then frees it all. With its default, *dynamic* settings
glibc malloc serves some of these tensors straight from ``mmap`` (the threshold only rises when
a freed mapping is bigger than the current one) and shrinks the heap whenever more than twice
that threshold is free at its top -- which the backward pass, freeing in reverse order, makes
happen over and over. The next step then page-faults the same memory back in, zero-filled by
the kernel: up to 250,000 faults and 0.3-0.5 s of system time per T=40 step on the development
machine, depending on the order in which earlier allocations happened to land (so from one run
to the next).

:func:`keep_heap` fixes the two thresholds (``mallopt``): tensors under 32 MiB come from the
heap, and the heap is only shrunk when more than 2 GiB are free at its top. The RIM calls it before
the first CPU forward pass that records a graph; :func:`invrim.training.fit` calls
:func:`release_heap` when it returns. Nothing happens on other C libraries or platforms, when
any ``MALLOC_*_`` threshold variable is set (your settings win), or when ``INVRIM_KEEP_HEAP=0``.
"""
from __future__ import annotations

import ctypes
import functools
import os
import sys
from typing import Optional

__all__ = ["keep_heap", "release_heap"]

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20          # glibc's upper limit for M_MMAP_THRESHOLD on 64-bit
TRIM_THRESHOLD = (1 << 31) - 1     # mallopt takes an int
_USER_VARIABLES = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_",
                   "MALLOC_MMAP_MAX_")

_state: dict[str, Optional[bool]] = {"kept": None}


@functools.lru_cache(maxsize=None)
def _glibc() -> Optional[ctypes.CDLL]:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)          # the process's own symbols: its C library, no search
        libc.gnu_get_libc_version  # noqa: B018 -- glibc only (musl has no such symbol)
        return libc
    except (OSError, AttributeError):
        return None


def keep_heap() -> bool:
    """Fix glibc's mmap / trim thresholds once per process; ``True`` if they are (now) fixed.

    Idempotent and cheap after the first call. Returns ``False`` (and changes nothing) off
    glibc, when ``INVRIM_KEEP_HEAP=0`` or when a ``MALLOC_*_`` threshold variable is set.
    """
    if _state["kept"] is not None:
        return _state["kept"]
    kept = False
    if os.environ.get("INVRIM_KEEP_HEAP", "1") != "0" and not any(v in os.environ for v in _USER_VARIABLES):
        libc = _glibc()
        if libc is not None:
            kept = bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
                libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    _state["kept"] = kept
    return kept


def release_heap() -> bool:
    """Give free heap memory back to the OS now (``malloc_trim``), e.g. after training.

    Returns ``True`` if memory was released; ``False`` off glibc or when there was none.
    """
    libc = _glibc()
    return bool(libc.malloc_trim(0)) if libc is not None else False
