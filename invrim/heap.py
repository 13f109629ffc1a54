"""Keep glibc's heap between CPU training steps: an opt-in for applications, never done by the library.

A training step keeps every activation of the unrolled RIM for the backward pass (1.6 GiB at
T=40 for a batch of eight 64x64 images), then frees it all. With its default, *dynamic* settings
glibc malloc serves some of these tensors straight from ``mmap`` (the threshold only rises when
a freed mapping is bigger than the current one) and shrinks the heap whenever more than twice
that threshold is free at its top -- which the backward pass, freeing in reverse order, makes
happen over and over. The next step then page-faults the same memory back in, zero-filled by
the kernel: up to 250,000 faults and 0.3-0.5 s of system time per T=40 step on the development
machine, depending on the order in which earlier allocations happened to land (so from one run
to the next). See "Page faults between training steps" in ``benchmarks/RESULTS.md``.

:func:`keep_heap` fixes the two thresholds (``mallopt``): tensors under 32 MiB come from the
heap, and the heap is only shrunk when more than 2 GiB are free at its top. These settings are
process-wide, so **invrim never calls it by itself**: the application does, for its own process
(``invrim train`` and ``invrim reconstruct`` do), or wraps its training in :func:`kept_heap`.

Nothing happens on other C libraries or platforms, when ``INVRIM_KEEP_HEAP=0``, or when you have
set any of glibc's own variables ``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``,
``MALLOC_TOP_PAD_``, ``MALLOC_MMAP_MAX_`` or a ``glibc.malloc`` threshold in ``GLIBC_TUNABLES``
(your settings win).

What "restore" means. glibc has no getter for these settings and no way to turn the dynamic
adjustment back on: *any* ``mallopt`` of ``M_MMAP_THRESHOLD``, ``M_TRIM_THRESHOLD``, ``M_TOP_PAD``
or ``M_MMAP_MAX`` switches it off for the rest of the process (``mp_.no_dyn_threshold`` in
``malloc/malloc.c``). :func:`restore_heap` (and the end of :func:`kept_heap`) therefore sets both
thresholds back to glibc's *starting* values, 128 KiB each, where the dynamic scheme begins, but
they then stay there: a freed mapping no longer raises them. In practice that is glibc's
behaviour for large blocks before its first adjustment (blocks of 128 KiB and more are mapped and
unmapped, the heap is trimmed above 128 KiB free), i.e. the memory of a training step is handed
back to the system after every step again.
"""
from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import sys
import threading
from collections.abc import Iterator
from typing import Optional

__all__ = ["is_kept", "keep_heap", "kept_heap", "release_heap", "restore_heap"]

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20          # glibc's upper limit for M_MMAP_THRESHOLD on 64-bit
TRIM_THRESHOLD = (1 << 31) - 1     # mallopt takes an int
DEFAULT_MMAP_THRESHOLD = 128 << 10  # glibc's starting values (DEFAULT_MMAP_THRESHOLD_MIN,
DEFAULT_TRIM_THRESHOLD = 128 << 10  # DEFAULT_TRIM_THRESHOLD in malloc/malloc.c)
_USER_VARIABLES = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_",
                   "MALLOC_MMAP_MAX_")
_USER_TUNABLES = ("glibc.malloc.mmap_threshold", "glibc.malloc.trim_threshold",
                  "glibc.malloc.top_pad", "glibc.malloc.mmap_max")

_lock = threading.Lock()
_kept = False                      # whether this module's thresholds are in effect now


@functools.lru_cache(maxsize=None)
def _glibc() -> Optional[ctypes.CDLL]:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)          # the process's own symbols: its C library, no search
        libc.gnu_get_libc_version  # noqa: B018 -- glibc only (musl has no such symbol)
        libc.mallopt  # noqa: B018
        return libc
    except (OSError, AttributeError):
        return None


def _mallopt(param: int, value: int) -> bool:
    """The one place that calls glibc's ``mallopt`` (tests watch it)."""
    libc = _glibc()
    return libc is not None and bool(libc.mallopt(param, value))


def _opted_out() -> bool:
    if os.environ.get("INVRIM_KEEP_HEAP", "1") == "0":
        return True
    if any(v in os.environ for v in _USER_VARIABLES):
        return True
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    return any(t in tunables for t in _USER_TUNABLES)


def is_kept() -> bool:
    """Whether :func:`keep_heap`'s thresholds are in effect in this process now."""
    return _kept


def keep_heap() -> bool:
    """Fix glibc's mmap / trim thresholds for this process; ``True`` if they are (now) fixed.

    For applications (scripts, the ``invrim`` command), not libraries: the setting is process-wide
    and stays until :func:`restore_heap`. Idempotent and cheap after the first call. Returns
    ``False`` (and changes nothing) off glibc, when ``INVRIM_KEEP_HEAP=0`` or when one of glibc's
    own ``MALLOC_*_`` threshold variables (or ``GLIBC_TUNABLES`` malloc thresholds) is set.
    """
    global _kept
    with _lock:
        if _kept:
            return True
        if _opted_out() or _glibc() is None:
            return False
        _kept = _mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) and _mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
        return _kept


def restore_heap() -> bool:
    """Undo :func:`keep_heap`: thresholds back to glibc's starting values, free memory released.

    Does nothing (returns ``False``) unless :func:`keep_heap` is in effect. glibc cannot switch its
    dynamic thresholds back on, so "restored" means fixed at 128 KiB each, glibc's starting values
    (see the module's documentation). Returns ``True`` when the thresholds were reset.
    """
    global _kept
    with _lock:
        if not _kept:
            return False
        ok = _mallopt(_M_MMAP_THRESHOLD, DEFAULT_MMAP_THRESHOLD) and _mallopt(
            _M_TRIM_THRESHOLD, DEFAULT_TRIM_THRESHOLD)
        _kept = False
    release_heap()
    return ok


@contextlib.contextmanager
def kept_heap() -> Iterator[bool]:
    """``with kept_heap(): ...`` keeps the heap inside the block and restores glibc's values after it.

    Yields whether the heap is kept (see :func:`keep_heap`). If it was already kept when the block
    began (by :func:`keep_heap` or an enclosing ``kept_heap``), it is left kept at the end; otherwise
    the end calls :func:`restore_heap`, which also gives the freed memory back to the system. The
    setting is process-wide: other threads allocate under it too while the block runs.
    """
    was_kept = is_kept()
    kept = keep_heap()
    try:
        yield kept
    finally:
        if kept and not was_kept:
            restore_heap()


def release_heap() -> bool:
    """Give free heap memory back to the OS now (``malloc_trim``), e.g. after training.

    Changes no setting. Returns ``True`` if memory was released; ``False`` off glibc or when there
    was none.
    """
    libc = _glibc()
    return bool(libc.malloc_trim(0)) if libc is not None else False
