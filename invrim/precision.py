"""Mixed precision for the backbone: which precisions a device runs well, and the autocast context.

The RIM runs only its backbone (the network) in low precision; the physics, the score, the
preprocessing and the loss stay in the weights' precision (fp32), because a low-precision score
is a wrong gradient. Weights and checkpoints stay fp32.

``bf16`` on a CPU is fast only with bf16 matrix hardware (``avx512_bf16`` on AMD Zen 4 and recent
Xeons, or Intel AMX ``amx_bf16``); elsewhere oneDNN emulates it, many times slower than fp32, and
:func:`check_precision` warns. ``fp16`` is meant for CUDA (with a gradient scaler in training); on
a CPU it needs ``avx512_fp16`` / ``amx_fp16``.
"""
from __future__ import annotations

import functools
import warnings
from contextlib import nullcontext
from typing import Any, ContextManager, Union

import torch

from .config import PRECISIONS

#: The dtype the backbone is autocast to for each of :data:`invrim.config.PRECISIONS` (None: none).
DTYPES: dict[str, Any] = dict(zip(PRECISIONS, (None, torch.bfloat16, torch.float16)))
#: CPU flags (``/proc/cpuinfo``) that give each precision matrix hardware.
CPU_FLAGS = {"bf16": ("avx512_bf16", "amx_bf16"), "fp16": ("avx512_fp16", "amx_fp16")}


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset:
    """The CPU's feature flags from ``/proc/cpuinfo`` (empty where that file does not exist)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def support(device: Union[str, torch.device] = "cpu") -> dict[str, tuple[bool, str]]:
    """``{precision: (runs well, why)}`` for ``device`` (what ``invrim info`` prints)."""
    device = torch.device(device)
    out = {"fp32": (True, "full precision")}
    if device.type == "cuda":
        bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        out["bf16"] = (bool(bf16), "CUDA bf16" if bf16 else "this GPU has no fast bf16")
        out["fp16"] = (torch.cuda.is_available(), "CUDA fp16 (with a gradient scaler in training)")
        return out
    flags = cpu_flags()
    for precision, needed in CPU_FLAGS.items():
        found = [f for f in needed if f in flags]
        out[precision] = (bool(found), f"CPU has {', '.join(found)}" if found else
                          f"CPU lacks {' and '.join(needed)}: emulated, many times slower than fp32")
    return out


def check_precision(precision: str, device: Union[str, torch.device] = "cpu") -> None:
    """A one-line ``ValueError`` for an unknown precision; a warning when ``device`` does not run
    it well (``bf16`` on a CPU without bf16 matrix hardware, ``fp16`` on a CPU)."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; use one of {PRECISIONS}")
    if precision == "fp32":
        return
    ok, why = support(device)[precision]
    if not ok:
        warnings.warn(f"precision={precision!r} on {torch.device(device).type}: {why}; use 'fp32' here",
                      UserWarning, stacklevel=3)


def autocast(precision: str, device: Union[str, torch.device]) -> ContextManager:
    """The autocast context of ``precision`` on ``device`` (a no-op for ``fp32``)."""
    dtype = DTYPES[precision]
    if dtype is None:
        return nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)
