"""torch-rim (the seed library, ``import rim`` / ``import torch_rim``) and older invrim names in one place.

The engine (:mod:`invrim.rim`) and the training loop read only invrim's own names; what a torch-rim
script or an older invrim script passes is translated here, with a warning for the deprecated
invrim names and a pointer to ``docs/migrating.md`` for what no longer exists.
"""
from __future__ import annotations

import inspect
import warnings
from typing import Any, Callable

from torch import Tensor

MIGRATION = "see docs/migrating.md (torch-rim → invrim)"

#: RIM settings that reproduce torch-rim's model where invrim's defaults differ (``RIM(..., **TORCH_RIM_SETTINGS)``).
TORCH_RIM_SETTINGS: dict[str, Any] = {"T": 10, "initialization_method": "zeros", "standardize_score": False,
                                      "loss_weights": "uniform"}
#: ``fit`` options of torch-rim's README where invrim's defaults differ.
TORCH_RIM_FIT_SETTINGS: dict[str, Any] = {"learning_rate": 1e-4, "batch_size": 1, "clip": 0.0, "epochs": 100,
                                          "shuffle": False}

#: Older invrim names kept for one release: old → new.
RENAMED_RIM = {"checkpointing": "gradient_checkpointing", "checkpoint": "weights"}
RENAMED_FIT = {"checkpoints": "save_every"}
#: torch-rim arguments that invrim does not have, with what to do instead.
REMOVED = {
    "verbose": "progress bars are on by default; pass progress=False to hide them",
    "n_iterations_in_epoch": "an epoch is one pass over the dataset; use epochs= (or an IterableDataset)",
    "model_checkpoint": "the run folder keeps the best and last weights (save_every=, models_to_keep=)",
    "optimizer": "invrim trains with Adam; pass learning_rate=, weight_decay=, clip=",
    "dimensions_first": "tensors are (batch, channel, *dimensions) throughout",
}


def translate(owner: str, options: dict[str, Any], renamed: dict[str, str]) -> dict[str, Any]:
    """``options`` with deprecated names replaced (a DeprecationWarning each) and a one-line
    TypeError for removed torch-rim arguments and for unknown ones."""
    out = {}
    for key, value in options.items():
        if key in REMOVED:
            raise TypeError(f"{owner} has no argument {key!r} (a torch-rim argument): {REMOVED[key]}; {MIGRATION}")
        if key in renamed:
            new = renamed[key]
            warnings.warn(f"{owner}: {key!r} is deprecated, use {new!r}", DeprecationWarning, stacklevel=3)
            if new in options:
                raise TypeError(f"{owner} got both {key!r} and its new name {new!r}")
            out[new] = value
        else:
            out[key] = value
    return out


#: Model settings that a script may pass to ``fit``, where they do not belong.
MODEL_SETTINGS = {"checkpointing", "gradient_checkpointing", "T", "score_preprocessing_method",
                  "initialization_method", "standardize_score", "loss_weights", "detach_score"}


def unexpected(owner: str, names) -> TypeError:
    names = sorted(names)
    model = [n for n in names if n in MODEL_SETTINGS]
    if owner == "fit" and model:
        return TypeError(f"fit got {model[0]!r}, a setting of the model: pass it to RIM(...) "
                         f"(e.g. RIM(..., {model[0].replace('checkpointing', 'gradient_checkpointing')}=...))")
    return TypeError(f"{owner} got unexpected argument(s): {', '.join(names)}; {MIGRATION}")


def check_callable(fn: Callable, label: str) -> None:
    """A one-line TypeError unless ``fn`` can be called as ``fn(x, y, *args)``."""
    if not callable(fn):
        raise TypeError(f"{label} must be callable, got {type(fn).__name__}")
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):  # builtins and vmapped functions without a signature: trust them
        return
    params = list(sig.parameters.values())
    if any(p.kind == p.VAR_POSITIONAL for p in params):
        return
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(positional) < 2:
        raise TypeError(f"{label} must have the signature {label}(x, y, *args); got {label}{sig}")


def call_user(fn: Callable, label: str, first: Tensor, *args: Any, **kwargs: Any) -> Any:
    """``fn(first, *args, **kwargs)`` with torch-rim's two pitfalls explained in one line: extra
    arguments that do not fit the signature, and ``torch.func.vmap`` over a function argument.
    ``first`` is ``x`` (then ``args[0]`` is ``y``) or, for ``approximate_inverse_fn``, ``y``."""
    try:
        return fn(first, *args, **kwargs)
    except TypeError as e:
        try:
            inspect.signature(fn).bind(first, *args, **kwargs)
        except TypeError as bind_error:
            takes_y = label != "approximate_inverse_fn"
            form = f"{label}(x, y, *args)" if takes_y else f"{label}(y, *args)"
            raise TypeError(f"{label} could not be called as {form} with {len(args) - takes_y} extra "
                            f"argument(s): {bind_error}") from e
        except ValueError:
            pass
        raise
    except ValueError as e:
        if "vmap" in str(e) and any(callable(a) and not isinstance(a, Tensor) for a in args):
            position = next(i for i, a in enumerate(args) if callable(a) and not isinstance(a, Tensor))
            dims = ", ".join(["0"] * (position + 1) + ["None"] + ["0"] * (len(args) - position - 1))
            raise TypeError(f"{label} is vmapped over a function argument (argument {position + 2}), which "
                            f"vmap cannot batch: decorate it with vmap(..., in_dims=({dims})) so the "
                            f"function is passed through unbatched; {MIGRATION}") from None
        raise


def call_approximate_inverse(fn: Callable, y: Tensor, args: tuple, kwargs: dict) -> Tensor:
    """torch-rim called ``approximate_inverse_fn(y, *args)``; invrim also accepts ``fn(y)``."""
    try:
        inspect.signature(fn).bind(y, *args, **kwargs)
    except TypeError:
        return call_user(fn, "approximate_inverse_fn", y)
    except ValueError:
        pass
    return call_user(fn, "approximate_inverse_fn", y, *args, **kwargs)
