"""Forward-model base classes: ``y = F(x)``, batched on the first axis."""
from __future__ import annotations

from typing import Any, Optional

import torch
from torch import Tensor, nn

from .linear_algebra import conjugate_gradient, power_iteration

#: The values of :attr:`ForwardModel.auto_start`.
AUTO_STARTS = ("tikhonov", "pseudo_inverse")


def auto_start(model: Any) -> str:
    """``model.auto_start`` (``"tikhonov"`` when it has none), checked: a one-line ``ValueError``
    for a value invrim does not know."""
    start = getattr(model, "auto_start", "tikhonov")
    if start not in AUTO_STARTS:
        raise ValueError(f"{type(model).__name__}.auto_start must be 'tikhonov' or 'pseudo_inverse', "
                         f"got {start!r}")
    return start

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
    #: What this domain's classical baseline is called in ``invrim evaluate`` and ``invrim show``
    #: (``"FBP"``, ``"zero-filled SENSE"`` …): the method :meth:`baseline` computes. ``None``
    #: lets invrim name it (``"pseudo-inverse"`` or ``"adjoint"`` for a linear model).
    baseline_name: Optional[str] = None
    #: Where a RIM with ``initialization_method="auto"`` starts on this model once :meth:`RIM.fit`
    #: has seen training data: ``"tikhonov"`` (linear models: CG iterations of Tikhonov least
    #: squares, damping chosen on the training samples) or ``"pseudo_inverse"`` (the model's
    #: :meth:`pseudo_inverse`, e.g. FBP for CT, where that start trains better). Nonlinear models
    #: start from the pseudo-inverse whatever this says.
    auto_start: str = "tikhonov"

    # Optional, for figures: ``plot_observation(self, ax, y, **params)`` draws one observation
    # ``y`` (no sample axis) with its per-sample parameters on a matplotlib ``ax``, for the
    # observation panel of ``invrim show`` (k-space, visibilities, sinograms …). Without it,
    # invrim draws an image when ``y`` has image axes and values against index otherwise.

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

    def baseline(self, y: Tensor, **params: Any) -> Tensor:
        """The domain's classical reconstruction of ``y`` (named :attr:`baseline_name`), which
        ``invrim evaluate`` compares the RIM with. The default is the pseudo-inverse, where the
        model has one; override it (and set ``baseline_name``) to offer your field's standard."""
        pinv = getattr(self, "pseudo_inverse", None)
        if pinv is None:
            raise NotImplementedError(f"forward model {self.name!r} offers no baseline")
        return pinv(y, **params)

    @classmethod
    def example(cls) -> tuple["ForwardModel", Tensor, dict[str, Any]]:
        """A small instance, an input batch ``x`` and per-sample ``params`` for the conformance
        kit (``invrim plugins check``). Override it in your forward model."""
        raise NotImplementedError(f"{cls.__name__} offers no example()")


class LinearForwardModel(ForwardModel):
    """A linear forward model ``y = A x`` with its exact adjoint ``A^H y``.

    Subclasses implement :meth:`forward` and :meth:`adjoint`; they may implement
    :meth:`pseudo_inverse` (used by the ``approximate_inverse`` initialisation and as the default
    baseline), which defaults to the adjoint. For a real ``x`` and a complex ``y`` the adjoint
    returns the real ``Re(A^H y)``, the adjoint of ``A`` seen as a map between real spaces.

    Every linear model also offers :meth:`normal` (``A^H A x``), :meth:`least_squares` (the
    Tikhonov-regularised normal equations by conjugate gradients), :meth:`norm` (``‖A‖₂`` by power
    iteration) and composition: ``A @ B`` is the linear model ``x ↦ A(B(x))``.
    """

    linear = True

    def adjoint(self, y: Tensor, **params: Any) -> Tensor:  # pragma: no cover
        raise NotImplementedError

    def pseudo_inverse(self, y: Tensor, **params: Any) -> Tensor:
        return self.adjoint(y, **params)

    def normal(self, x: Tensor, **params: Any) -> Tensor:
        """``A^H A x``."""
        return self.adjoint(self.forward(x, **params), **params)

    def least_squares(self, y: Tensor, damping: Any = 0.0, prior_mean: Any = None, iterations: int = 100,
                      tol: float = 1e-6, x0: Optional[Tensor] = None, **params: Any) -> Tensor:
        """Solve ``(A^H A + λ I) x = A^H y + λ x̄`` by conjugate gradients, per sample: Tikhonov
        regularisation towards ``prior_mean`` ``x̄`` (a number or a tensor broadcasting to ``x``;
        default 0) with ``damping`` ``λ ≥ 0`` (a number or one per sample). ``λ = 0`` gives the
        least-squares solution nearest the start ``x0`` (default zeros): the minimum-norm one."""
        damping = torch.as_tensor(damping)
        if bool((damping < 0).any()) or not bool(torch.isfinite(damping).all()):
            raise ValueError(f"damping must be finite and non-negative, got {damping.tolist()}")
        b = self.adjoint(y, **params)
        lam = damping.to(device=b.device, dtype=b.real.dtype)
        lam = lam.view(-1, *([1] * (b.dim() - 1))) if lam.dim() == 1 else lam
        if prior_mean is not None:
            b = b + lam * torch.as_tensor(prior_mean, dtype=b.dtype, device=b.device)
        if x0 is None and prior_mean is not None:
            x0 = torch.zeros_like(b) + torch.as_tensor(prior_mean, dtype=b.dtype, device=b.device)
        return conjugate_gradient(lambda v: self.normal(v, **params) + lam * v, b, x0=x0,
                                  iterations=iterations, tol=tol)

    def norm(self, x: Tensor, iterations: int = 100, tol: float = 1e-6,
             generator: Optional[torch.Generator] = None, **params: Any) -> Tensor:
        """The operator norm ``‖A‖₂`` (largest singular value) per sample ``(B,)``, by power
        iteration on ``A^H A`` from a random start shaped like ``x`` (only its shape, dtype and
        device are used)."""
        return power_iteration(lambda v: self.normal(v, **params), x, iterations, tol, generator).clamp_min(0).sqrt()

    def __matmul__(self, other: "LinearForwardModel") -> "ComposedLinearForwardModel":
        if not isinstance(other, LinearForwardModel):
            return NotImplemented
        return ComposedLinearForwardModel(self, other)


class ComposedLinearForwardModel(LinearForwardModel):
    """``outer @ inner``: ``x ↦ outer(inner(x))``, adjoint ``inner^H(outer^H(y))``.

    Both are called with every per-sample parameter (each takes the keywords it knows and
    ignores the others). ``x`` is described by ``inner``, ``y`` by ``outer``. A composed model is
    for Python use: it has no registry name, so files made with it cannot name their physics.
    """

    def __init__(self, outer: LinearForwardModel, inner: LinearForwardModel):
        super().__init__()
        self.outer, self.inner = outer, inner
        self.name = f"{outer.name}@{inner.name}"
        self.x_dims, self.y_dims = tuple(inner.x_dims), tuple(outer.y_dims)
        self.y_is_complex = bool(outer.y_is_complex)
        self.x_complex_channels = bool(inner.x_complex_channels)
        self.param_dims = {**dict(inner.param_dims), **dict(outer.param_dims)}

    def forward(self, x: Tensor, **params: Any) -> Tensor:
        return self.outer(self.inner(x, **params), **params)

    def adjoint(self, y: Tensor, **params: Any) -> Tensor:
        return self.inner.adjoint(self.outer.adjoint(y, **params), **params)

    def sample_parameters(self, x: Tensor, generator: Optional[torch.Generator] = None) -> dict[str, Tensor]:
        params = self.inner.sample_parameters(x, generator)
        with torch.no_grad():
            middle = self.inner(x, **params)
        return {**params, **self.outer.sample_parameters(middle, generator)}
