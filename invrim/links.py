"""Named link functions: model space (where the RIM iterates) → physical space."""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor


def _softplus_inverse(y: Tensor) -> Tensor:
    # log(exp(y) - 1), stable for large y
    return y + torch.log(-torch.expm1(-y))


#: name -> (link, inverse link)
LINKS: dict[str, tuple[Callable[[Tensor], Tensor], Callable[[Tensor], Tensor]]] = {
    "identity": (lambda x: x, lambda x: x),
    "exp": (torch.exp, torch.log),
    "softplus": (F.softplus, _softplus_inverse),
    "sigmoid": (torch.sigmoid, torch.logit),
    "tanh": (torch.tanh, torch.atanh),
}


def resolve_link(link, inverse) -> tuple[Callable, Callable, str]:
    """Return ``(link, inverse_link, name)``; ``name`` is ``"custom"`` for user callables."""
    if link is None and inverse is None:
        link = "identity"
    if isinstance(link, str):
        if link not in LINKS:
            raise ValueError(f"unknown link_function {link!r}; available: {', '.join(LINKS)} "
                             "(or pass a callable with its inverse_link_function)")
        if inverse is not None:
            raise ValueError("a named link_function brings its own inverse: drop inverse_link_function")
        f, g = LINKS[link]
        return f, g, link
    if link is None or inverse is None:
        raise ValueError("link_function and inverse_link_function must be given together")
    if not (callable(link) and callable(inverse)):
        raise TypeError("link_function and inverse_link_function must be callables or a link name")
    return link, inverse, "custom"
