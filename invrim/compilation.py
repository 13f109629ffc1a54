"""``compile=True``: the backbone through ``torch.compile``, with a clean fallback to eager.

Only the backbone (the network, about 90 % of a step) is compiled: the physics, the score and the
loss stay eager, since a plugin's forward model (a NUFFT, a ray tracer) is often outside what
``torch.compile`` can trace. Two graphs are kept:

* **training** (gradients on): ``torch.compile`` of the backbone's ``forward``; inductor generates
  kernels for the element-wise work of the GRU gates and activations, the convolutions stay oneDNN's
  / cuDNN's (measured on CPU: no faster than eager, ``docs/speed.md``).
* **inference** (``torch.no_grad``, e.g. :meth:`RIM.predict`): compiled with inductor's
  ``freezing``, which folds the weights into the graph as constants, pre-packs them for oneDNN and
  fuses each convolution with its activation. Frozen weights must not change, so the frozen graph is
  used only while the weights are those it was compiled with (the parameters' version counters,
  which every in-place update such as an optimiser step or ``load_state_dict`` bumps); once they
  change — a RIM validated during training — inference uses an unfrozen graph from then on.

Compilation happens at the first call of each graph and takes seconds to a minute;
:attr:`CompiledBackbone.seconds` records it. Where compiling fails (no C++ compiler, a backbone
``torch.compile`` cannot trace) the RIM warns once, in one line, and runs eager: the same values.
Measured gains and losses: ``docs/speed.md`` (section "Compilation").
"""
from __future__ import annotations

import time
import types
import warnings
from typing import Any, Callable, Optional

import torch
from torch import nn

__all__ = ["CompiledBackbone", "cpu_compiler"]


def cpu_compiler() -> Optional[str]:
    """The C++ compiler torch.compile would build CPU kernels with (``$CXX``, else the first of
    ``g++``, ``c++``, ``clang++`` on the PATH), or None: then ``compile=True`` runs eagerly on CPU."""
    import os
    import shutil
    names = [os.environ["CXX"]] if os.environ.get("CXX") else []
    for name in (*names, "g++", "c++", "clang++"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _weights_version(model: nn.Module) -> tuple:
    """What identifies the current weights: each parameter's and buffer's identity, storage and
    version (in-place updates bump the version; ``p.data = …`` changes the storage)."""
    return tuple((id(t), t.data_ptr(), t._version) for t in (*model.parameters(), *model.buffers()))


def _own_code(method: Callable) -> Callable:
    """``method`` with a code object of its own. torch.compile keeps its graphs on the code object,
    shared by every instance of a class, and falls back to eager once 8 of them exist (its
    ``recompile_limit``): without a copy, the ninth RIM of a process (an ensemble, a folder of
    files) would silently run eagerly. The copy's graphs go when the backbone does."""
    fn = getattr(method, "__func__", None)
    if fn is None or not isinstance(fn, types.FunctionType):
        return method
    copy = types.FunctionType(fn.__code__.replace(), fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__)
    copy.__kwdefaults__, copy.__qualname__ = fn.__kwdefaults__, fn.__qualname__
    return types.MethodType(copy, method.__self__)


def _frozen(graph: Callable) -> Callable:
    """``graph`` compiled (at its first call, and at any recompilation) with inductor's freezing.

    ``torch.compile(..., options={"freezing": True})`` is not enough: inductor reads ``freezing``
    from its global config outside the per-compile options (measured: no speed-up with the option,
    0.6x with the config), so the config is patched around each call and restored after it.
    """
    from torch._inductor import config as inductor_config

    def call(*args: Any, **kwargs: Any) -> Any:
        with inductor_config.patch(freezing=True):
            return graph(*args, **kwargs)
    return call


class CompiledBackbone:
    """Calls ``model`` through compiled graphs (training, frozen inference, inference), or eagerly
    after a compilation failed. ``seconds`` maps each graph to the time its first call took."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.seconds: dict[str, float] = {}
        self.failed: Optional[str] = None
        self._graphs: dict[str, Callable] = {}
        self._frozen_version: Optional[tuple] = None
        self._frozen_stale = False

    def _graph(self, kind: str) -> Callable:
        if kind not in self._graphs:
            graph = torch.compile(_own_code(self.model.forward), dynamic=False)
            if kind == "frozen":
                graph = _frozen(graph)
            self._graphs[kind] = graph
        return self._graphs[kind]

    def _kind(self) -> str:
        if torch.is_grad_enabled():
            return "training"
        version = _weights_version(self.model)
        if not self._frozen_stale:
            if self._frozen_version is None:
                self._frozen_version = version
            if version == self._frozen_version:
                return "frozen"
            self._frozen_stale = True               # trained since: never freeze this model again
            self._graphs.pop("frozen", None)
        return "inference"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.failed is not None:
            return self.model(*args, **kwargs)
        kind = self._kind()
        first = kind not in self.seconds
        start = time.perf_counter()
        try:
            out = self._graph(kind)(*args, **kwargs)
        except Exception as e:                       # compile errors arrive at the first call
            if not first:
                raise
            out = self.model(*args, **kwargs)        # a mistake in the input raises here, as eager would
            reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            self.failed = f"{type(e).__name__}: {reason}"
            warnings.warn(f"compile=True: torch.compile failed ({self.failed}); running the backbone "
                          "eagerly (same values, no speed-up)", UserWarning, stacklevel=3)
            return out
        if first:
            self.seconds[kind] = time.perf_counter() - start
        return out
