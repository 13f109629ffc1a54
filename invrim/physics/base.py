"""Forward-model base classes: ``y = F(x)``, batched on the first axis."""
from __future__ import annotations

from typing import Any, Optional

import torch
from torch import Tensor, nn

#: Conventional names of the spatial axes for 1-, 2- and 3-D signals. Never name an axis ``x`` or
#: ``y``: those are the variable names in invrim's data files.
SPATIAL_DIMS = {1: ("length",), 2: ("height", "width"), 3: ("depth", "height", "width")}


class ForwardModel(nn.Module):
    """A (possibly nonlinear) forward model ``F``: ``forward(x, **params) -> y``.

    ``x`` and ``y`` are batched on their first axis. Per-sample parameters (masks, PSFs, coil
    maps, noise levels) are keyword arguments named like the dataset variables that hold them.

    Class attributes describe the data: ``x_dims`` / ``y_dims`` name the non-batch axes of
    ``x`` and ``y`` (e.g. ``("channel", "height", "width")``), ``y_is_complex`` says whether
    ``y`` is complex, ``param_dims`` names the non-batch axes of each per-sample parameter (e.g.
    ``{"psf": ("psf_height", "psf_width")}``). These names become the dimension names of the
    data files. :meth:`config` returns the JSON-serialisable keyword arguments that rebuild the
    model (``type(self)(**self.config())``).
    """

    name: str = "forward_model"
    x_dims: tuple[str, ...] = ()
    y_dims: tuple[str, ...] = ()
    y_is_complex: bool = False
    linear: bool = False
    param_dims: dict[str, tuple[str, ...]] = {}
    #: True when ``x`` holds a complex image as two real channels (real, imaginary): metrics and
    #: figures then use its magnitude.
    x_complex_channels: bool = False

    def forward(self, x: Tensor, **params: Any) -> Tensor:  # pragma: no cover
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        return {}

    def sample_parameters(self, x: Tensor, generator: Optional[torch.Generator] = None) -> dict[str, Tensor]:
        """Random per-sample parameters (masks, PSFs, lens parameters …) for simulating
        observations of the batch ``x``, drawn with ``generator``: a dict of tensors with leading
        axis ``B`` named like the keyword arguments of :meth:`forward` (and listed in
        ``param_dims``). The default draws none."""
        return {}

    @classmethod
    def example(cls) -> tuple["ForwardModel", Tensor, dict[str, Any]]:
        """A small instance, an input batch ``x`` and per-sample ``params`` for the conformance
        kit (``invrim plugins check``). Override it in your forward model."""
        raise NotImplementedError(f"{cls.__name__} offers no example()")


class LinearForwardModel(ForwardModel):
    """A linear forward model ``y = A x`` with its exact adjoint ``A^H y``.

    Subclasses implement :meth:`forward` and :meth:`adjoint`; they may implement
    :meth:`pseudo_inverse` (used by the ``approximate_inverse`` initialisation), which defaults
    to the adjoint.
    """

    linear = True

    def adjoint(self, y: Tensor, **params: Any) -> Tensor:  # pragma: no cover
        raise NotImplementedError

    def pseudo_inverse(self, y: Tensor, **params: Any) -> Tensor:
        return self.adjoint(y, **params)
