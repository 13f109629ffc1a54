"""The RIM engine: an unrolled learned optimiser driven by the likelihood's score.

Shapes: ``y`` is the observation (batch first, any shape the physics takes); ``x`` is
``(B, C, *dimensions)`` in model space; the hidden state ``h`` is whatever the backbone keeps.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

import torch
from torch import Tensor, nn
from torch.func import vjp
from torch.utils.checkpoint import checkpoint as _checkpoint

from . import compat
from . import precision as _precision
from .backbones.base import Hidden
from .baselines import choose_tikhonov, has_tikhonov
from .compilation import CompiledBackbone
from .config import INITIALIZATIONS, LOSS_WEIGHTS, PREPROCESSINGS, RIMConfig  # noqa: F401 (re-exported)
from .links import resolve_link
from .physics.base import auto_start
from .problem import CallableProblem, Problem
from .runs import CheckpointError, RunFolder

_SETTINGS = tuple(RIMConfig.__dataclass_fields__)
#: Settings readable as attributes (``rim.T``); ``loss_weights`` is the normalised buffer instead.
#: ``compile`` stays ``rim.settings.compile``: ``nn.Module.compile`` is torch's own method.
_ATTRIBUTES = {**{name: name for name in _SETTINGS if name not in ("loss_weights", "compile")},
               "checkpointing": "gradient_checkpointing"}


def trajectory_weights(kind: Union[str, Sequence[float], Tensor], T: int) -> Tensor:
    """Per-step weights ``w_t`` (``t = 1..T``), non-negative and summing to one.

    ``"uniform"``, ``"linear"`` (∝ t), ``"quadratic"`` (∝ t²), ``"log"`` (log-spaced from
    0.01 to 1), ``"last"`` (only the final estimate), or a sequence of ``T`` numbers.
    """
    t = torch.arange(1, T + 1, dtype=torch.float64)
    if isinstance(kind, str):
        shapes = {"uniform": torch.ones(T, dtype=torch.float64), "linear": t, "quadratic": t ** 2,
                  "log": torch.logspace(-2, 0, T, dtype=torch.float64) if T > 1 else torch.ones(1, dtype=torch.float64),
                  "last": (t == T).double()}
        if kind not in shapes:
            raise ValueError(f"unknown loss_weights {kind!r}; use one of {LOSS_WEIGHTS} or {T} numbers")
        w = shapes[kind]
    else:
        w = torch.as_tensor(kind, dtype=torch.float64).flatten()
        if w.numel() != T:
            raise ValueError(f"loss_weights has {w.numel()} values but T={T}")
        if (w < 0).any() or not torch.isfinite(w).all() or w.sum() <= 0:
            raise ValueError("loss_weights must be finite, non-negative and not all zero")
    return w / w.sum()


def _checked_device(device: Union[str, torch.device]) -> torch.device:
    """``device`` as a torch.device, or a one-line ValueError when it is malformed or absent here."""
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"invalid device {device!r}: {str(e).splitlines()[0]}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r} was requested but CUDA is not available here; use 'cpu'")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"device {str(device)!r} does not exist: {torch.cuda.device_count()} CUDA device(s)")
    return device


def _reload_arguments(run: Any, weights: Union[str, int], given: dict[str, Any]) -> dict[str, Any]:
    """The constructor arguments of the RIM saved in ``run``, with ``given`` overriding them
    (a warning for each setting that changes the saved model's)."""
    folder = RunFolder(run)
    model, saved = folder.load_backbone(given.get("model"), weights)
    rim_saved = saved.get("rim", {})
    settings = RIMConfig.from_dict(rim_saved).to_dict()
    dims = tuple(saved.get("dimensions", ()))
    if given.get("dimensions") and len(given["dimensions"]) != len(dims):   # other sizes of one rank are fine
        raise ValueError(f"dimensions {tuple(given['dimensions'])} do not match the checkpoint's {dims}")
    for key in _SETTINGS:
        value = given.get(key)
        if value is not None and settings[key] != (list(value) if isinstance(value, (tuple, Tensor)) else value):
            warnings.warn(f"{key}={value!r} overrides the checkpoint's {key}={settings[key]!r}", stacklevel=4)
    link = rim_saved.get("link_function", "identity")
    if link == "custom" and given.get("link_function") is None:
        raise ValueError(f"the model in {folder.path} was trained with a custom link function: pass "
                         "link_function= and inverse_link_function=")
    out = {**given, **{k: settings[k] if given.get(k) is None else given[k] for k in _SETTINGS},
           "dimensions": given.get("dimensions") or dims, "model": model}
    if given.get("link_function") is None and link not in ("identity", "custom"):
        out["link_function"] = link
    if all(given.get(k) is None for k in ("score_fn", "energy_fn", "problem")) and saved.get("problem"):
        folder.check_providers(("forward_model", "likelihood"), saved)
        out["problem"] = Problem.from_config(**saved["problem"])     # rebuilt through the registry
    return out


class RIM(nn.Module):
    """Recurrent Inference Machine (Putzky & Welling 2017).

    From an observation ``y`` the RIM iterates, for ``t = 0..T-1``::

        s_t       = score(link(x_t), y)  carried back to model space by the chain rule
        dx, h     = model(x_t, preprocess(s_t), h_t)
        x_{t+1}   = x_t + dx

    Parameters
    ----------
    dimensions
        Spatial shape of ``x`` without batch and channel axes (``()`` for a parameter vector).
    model
        The backbone (:class:`~invrim.backbones.Hourglass`, :class:`~invrim.backbones.UNet` …).
    checkpoints_directory
        torch-rim's way to reload a trained model; prefer :meth:`RIM.from_checkpoint`.
    score_fn, energy_fn, problem
        Exactly one of: ``score_fn(x, y, *args) -> ∇ₓ log p(y|x)`` (shape of ``x``);
        ``energy_fn(x, y, *args) -> -log p(y|x)`` per sample ``(B,)`` (its score is ``-∇ energy``,
        computed with ``torch.func``); or a :class:`~invrim.problem.Problem`, whose per-sample
        parameters are then passed by keyword.
    link_function, inverse_link_function
        Map between model space (where the RIM iterates) and physical space: a name
        (``"identity"``, ``"exp"``, ``"softplus"``, ``"sigmoid"``, ``"tanh"``) or two callables.
    approximate_inverse_fn
        ``approximate_inverse_fn(y, *args)`` for ``initialization_method="approximate_inverse"``
        with a ``score_fn``/``energy_fn`` (a problem uses its forward model's pseudo-inverse).
    T, initialization_method, score_preprocessing_method, standardize_score, loss_weights, \
detach_score, gradient_checkpointing, epsilon, beta_1, beta_2, precision, compile, \
initialization_damping, initialization_prior_mean, initialization_iterations
        The settings of :class:`~invrim.config.RIMConfig` (its defaults apply to what is not given);
        ``compile`` is read back as ``rim.settings.compile`` (``rim.compile`` is PyTorch's method).
    config
        A :class:`~invrim.config.RIMConfig` to start from instead of the defaults.
    weights
        With ``checkpoints_directory``: which weights to load, ``"best"``, ``"last"`` or an epoch.
    device
        Optional: move the backbone there. Otherwise computation follows ``y``'s device.
    """

    def __init__(
        self,
        dimensions: Sequence[int] = (),
        model: Optional[nn.Module] = None,
        checkpoints_directory: Optional[str] = None,
        score_fn: Optional[Callable] = None,
        energy_fn: Optional[Callable] = None,
        problem: Optional[Problem] = None,
        T: Optional[int] = None,
        link_function: Union[str, Callable, None] = None,
        inverse_link_function: Optional[Callable] = None,
        initialization_method: Optional[str] = None,
        approximate_inverse_fn: Optional[Callable] = None,
        score_preprocessing_method: Optional[str] = None,
        standardize_score: Optional[bool] = None,
        loss_weights: Union[str, Sequence[float], Tensor, None] = None,
        detach_score: Optional[bool] = None,
        gradient_checkpointing: Optional[bool] = None,
        epsilon: Optional[float] = None,
        beta_1: Optional[float] = None,
        beta_2: Optional[float] = None,
        precision: Optional[str] = None,
        compile: Optional[bool] = None,
        initialization_damping: Optional[float] = None,
        initialization_prior_mean: Optional[float] = None,
        initialization_iterations: Optional[int] = None,
        config: Optional[RIMConfig] = None,
        weights: Union[str, int] = "best",
        device: Union[str, torch.device, None] = None,
        **deprecated: Any,
    ):
        super().__init__()
        renamed = compat.translate("RIM", deprecated, compat.RENAMED_RIM)
        weights = renamed.pop("weights", weights)
        gradient_checkpointing = renamed.pop("gradient_checkpointing", gradient_checkpointing)
        if renamed:
            raise compat.unexpected("RIM", renamed)
        given = dict(dimensions=tuple(dimensions), model=model, score_fn=score_fn, energy_fn=energy_fn,
                     problem=problem, T=T, link_function=link_function, inverse_link_function=inverse_link_function,
                     initialization_method=initialization_method, approximate_inverse_fn=approximate_inverse_fn,
                     score_preprocessing_method=score_preprocessing_method, standardize_score=standardize_score,
                     loss_weights=loss_weights, detach_score=detach_score, precision=precision, compile=compile,
                     initialization_damping=initialization_damping, initialization_prior_mean=initialization_prior_mean,
                     initialization_iterations=initialization_iterations,
                     gradient_checkpointing=gradient_checkpointing, epsilon=epsilon, beta_1=beta_1, beta_2=beta_2)
        if checkpoints_directory is not None:              # the seed's reload path
            given = _reload_arguments(checkpoints_directory, weights, given)
        self._setup(config=config, device=device, **given)

    @classmethod
    def from_checkpoint(cls, run: Union[str, Path, RunFolder], weights: Union[str, int] = "best",
                        **overrides: Any) -> "RIM":
        """The RIM trained in the run folder ``run`` (backbone, weights, settings and, when it was
        trained on a registered problem, the problem), with ``weights`` ``"best"``, ``"last"`` or an
        epoch number. ``overrides`` are constructor arguments (``device=``, ``problem=``, ``T=`` …)."""
        return cls(checkpoints_directory=run, weights=weights, **overrides)

    def _setup(self, dimensions, model, score_fn, energy_fn, problem, link_function, inverse_link_function,
               approximate_inverse_fn, config, device, **settings) -> None:
        if model is None:
            raise ValueError("RIM needs a backbone: pass model=..., or load one with RIM.from_checkpoint(run)")
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module backbone, got {type(model).__name__}")
        base = (config or RIMConfig()).to_dict()
        self.settings = RIMConfig(**{**base, **{k: v for k, v in settings.items() if v is not None}})
        if isinstance(self.settings.loss_weights, Tensor):
            self.settings.loss_weights = self.settings.loss_weights.tolist()
        if device is not None:
            model = model.to(_checked_device(device))
        self.model = model
        self.dimensions = tuple(int(d) for d in dimensions)
        self.C = getattr(model, "channels", None)
        if self.C is None:
            raise ValueError("the backbone must expose its number of channels as `.channels`")

        # ---- the physics: one problem-like object -------------------------------------------------
        sources = [n for n, v in (("score_fn", score_fn), ("energy_fn", energy_fn), ("problem", problem))
                   if v is not None]
        if len(sources) != 1:
            raise ValueError("pass exactly one of score_fn, energy_fn or problem"
                             + (f" (got {', '.join(sources)})" if sources else ""))
        if problem is not None and not isinstance(problem, Problem):
            raise TypeError(f"problem must be an invrim.Problem, got {type(problem).__name__}")
        if problem is not None and approximate_inverse_fn is not None:
            raise ValueError("approximate_inverse_fn goes with score_fn/energy_fn; with a problem the approximate "
                             "inverse is its forward model's pseudo_inverse (override that method instead)")
        self.physics = problem if problem is not None else CallableProblem(score_fn, energy_fn, approximate_inverse_fn)
        self.link_function, self.inverse_link_function, self._link_name = resolve_link(
            link_function, inverse_link_function)

        s = self.settings
        if s.initialization_method == "approximate_inverse" and not self.physics.has_approximate_inverse:
            raise ValueError("initialization_method='approximate_inverse' needs approximate_inverse_fn "
                             "(or a problem whose forward model has a pseudo_inverse)")
        if problem is not None:
            auto_start(problem.forward_model)         # a one-line error for a value invrim does not know
        if s.initialization_method == "tikhonov" and not self._linear:
            raise ValueError("initialization_method='tikhonov' needs a problem with a linear forward model "
                             "(its least_squares); use 'approximate_inverse' or 'zeros'")
        self.register_buffer("loss_weights", trajectory_weights(s.loss_weights, s.T), persistent=False)
        self._check_steps()
        self._check_precision()
        if s.compile and getattr(self.model, "steps", None) is not None:
            warnings.warn("compile=True is not applied to a backbone with weights per step (steps set): "
                          "it would compile one graph per step; running it eagerly", UserWarning, stacklevel=3)

    @property
    def _linear(self) -> bool:
        return self.problem is not None and has_tikhonov(self.problem.forward_model)

    @property
    def _auto_tikhonov(self) -> bool:
        """Whether ``"auto"`` means the Tikhonov start here (a linear model that asks for it)."""
        return self._linear and auto_start(self.problem.forward_model) == "tikhonov"

    @property
    def start_method(self) -> str:
        """The start this RIM uses: ``initialization_method`` with ``"auto"`` resolved. ``"auto"``
        is ``"tikhonov"`` for a problem with a linear forward model whose ``auto_start`` says so
        (the default; CT's says ``"pseudo_inverse"``) once the start's damping is chosen
        (:meth:`fit` chooses it on the first training samples), else ``"approximate_inverse"``
        where the problem (or ``approximate_inverse_fn``) has one, else ``"zeros"``."""
        method = self.settings.initialization_method
        if method != "auto":
            return method
        if self._auto_tikhonov and self.settings.initialization_damping is not None:
            return "tikhonov"
        return "approximate_inverse" if self.physics.has_approximate_inverse else "zeros"

    @property
    def chooses_tikhonov_start(self) -> bool:
        """Whether :meth:`fit` chooses the Tikhonov start's damping (none chosen yet, and the start
        is ``"tikhonov"`` or ``"auto"`` on a linear problem)."""
        method = self.settings.initialization_method
        return self.settings.initialization_damping is None and (
            method == "tikhonov" or (method == "auto" and self._auto_tikhonov))

    def _check_precision(self) -> None:
        param = next(self.model.parameters(), None)
        _precision.check_precision(self.settings.precision, param.device if param is not None else "cpu")

    def _check_steps(self) -> None:
        steps = getattr(self.model, "steps", None)
        if steps is not None and self.settings.T > steps:
            raise ValueError(f"the backbone has weights for {steps} steps but T={self.settings.T}: "
                             f"build it with steps={self.settings.T} (or more), or lower T")

    # ---- settings as attributes (the seed's names) ---------------------------------------------
    def __getattr__(self, name: str) -> Any:
        settings = self.__dict__.get("settings")
        if settings is not None and name in _ATTRIBUTES:
            return getattr(settings, _ATTRIBUTES[name])
        return super().__getattr__(name)

    def __setattr__(self, name: str, value: Any) -> None:
        settings = self.__dict__.get("settings")
        if settings is not None and name in _ATTRIBUTES:
            self.settings = RIMConfig(**{**settings.to_dict(), _ATTRIBUTES[name]: value})   # validated
            self._buffers["loss_weights"] = trajectory_weights(self.settings.loss_weights, self.settings.T).to(
                self._buffers["loss_weights"].device)
            self._check_steps()
            if name == "precision":
                self._check_precision()
            return
        super().__setattr__(name, value)

    @property
    def problem(self) -> Optional[Problem]:
        """The :class:`~invrim.Problem`, or None for a ``score_fn``/``energy_fn`` RIM."""
        return self.physics if isinstance(self.physics, Problem) else None

    @problem.setter
    def problem(self, problem: Problem) -> None:
        if not isinstance(problem, Problem):
            raise TypeError(f"problem must be an invrim.Problem, got {type(problem).__name__}")
        self.physics = problem

    @property
    def score_fn(self) -> Optional[Callable]:
        return getattr(self.physics, "score_fn", None)

    @property
    def energy_fn(self) -> Optional[Callable]:
        return getattr(self.physics, "energy_fn", None)

    def config(self) -> dict[str, Any]:
        """The JSON-serialisable settings saved with a checkpoint."""
        return {
            "dimensions": list(self.dimensions),
            "backbone": {"name": getattr(self.model, "name", type(self.model).__name__.lower()),
                         "config": self.model.config() if hasattr(self.model, "config") else {}},
            "rim": {**self.settings.to_dict(), "link_function": self._link_name},
            "problem": self.problem.config() if self.problem is not None else None,
        }

    @property
    def hyperparameters(self) -> dict[str, Any]:
        """The seed's name for the saved settings."""
        return self.config()

    # ---- the score, in model space ----------------------------------------------------------
    def physical_score(self, x: Tensor, y: Tensor, *args: Any, **kwargs: Any) -> Tensor:
        """``∇ log p(y | x)`` with ``x`` in physical space."""
        return self.physics.score(x, y, *args, **kwargs)

    def model_score(self, x: Tensor, y: Tensor, *args: Any, **kwargs: Any) -> Tensor:
        """The score with respect to the model-space variable ``x`` (chain rule through the link)."""
        if self._link_name == "identity":
            return self.physical_score(x, y, *args, **kwargs)
        linked, pullback = vjp(self.link_function, x)                  # linked: (B, C, *dimensions)
        return pullback(self.physical_score(linked, y, *args, **kwargs))[0]

    # ---- preprocessing ----------------------------------------------------------------------
    def _preprocess(self, score: Tensor, state: tuple[Tensor, ...], t: int) -> tuple[Tensor, tuple[Tensor, ...]]:
        s = self.settings
        if s.standardize_score:
            std = score.flatten(1).std(dim=1, unbiased=False).clamp_min(s.epsilon)      # (B,)
            score = score / std.view(-1, *([1] * (score.dim() - 1)))
        method = s.score_preprocessing_method
        if method == "identity":
            return score, state
        if method == "arcsinh":
            return torch.arcsinh(score), state
        if method == "adam":
            m, v = state                                                             # each like x
            m = s.beta_1 * m + (1 - s.beta_1) * score
            v = s.beta_2 * v + (1 - s.beta_2) * score ** 2
            m_hat = m / (1 - s.beta_1 ** (t + 1))
            v_hat = v / (1 - s.beta_2 ** (t + 1))
            return m_hat / (torch.sqrt(v_hat) + s.epsilon), (m, v)
        # rmsprop: the running second moment IS updated (the seed divided by epsilon forever)
        (v,) = state
        v = s.beta_2 * v + (1 - s.beta_2) * score ** 2
        v_hat = v / (1 - s.beta_2 ** (t + 1))
        return score / (torch.sqrt(v_hat) + s.epsilon), (v,)

    def _init_state(self, x: Tensor) -> tuple[Tensor, ...]:
        method = self.settings.score_preprocessing_method
        return {"adam": (torch.zeros_like(x), torch.zeros_like(x)), "rmsprop": (torch.zeros_like(x),)}.get(method, ())

    # ---- the unrolled loop ------------------------------------------------------------------
    def _check_observation(self, y: Any, args: tuple) -> torch.dtype:
        """The dtype the RIM computes in; one-line errors for a ``y`` the model cannot take."""
        if not isinstance(y, Tensor):
            raise TypeError(f"y must be a torch.Tensor, got {type(y).__name__}")
        if args and self.problem is not None:
            raise TypeError("with a problem, pass per-sample parameters by keyword (e.g. psf=...)")
        param = next(self.model.parameters(), None)
        if param is None:
            return y.real.dtype if y.is_floating_point() or y.is_complex() else torch.get_default_dtype()
        if y.device != param.device:
            raise ValueError(f"y is on {y.device} but the model is on {param.device}: move one of them "
                             f"(y.to('{param.device}') or rim.to('{y.device}'))")
        if y.is_floating_point() and y.dtype != param.dtype:
            raise TypeError(f"y has dtype {y.dtype} but the model's weights are {param.dtype}: pass "
                            f"y.to({param.dtype}) (or convert the model with rim.to({y.dtype}))")
        if self.problem is not None:
            self.problem.check_observation(y)
        return param.dtype

    def initialization(self, y: Tensor, *args: Any, **kwargs: Any) -> tuple[Tensor, Hidden]:
        """Initial estimate ``x_0`` (model space) and hidden state for observation ``y``."""
        dtype = self._check_observation(y, args)
        zeros = torch.zeros((y.shape[0], self.C, *self.dimensions), device=y.device, dtype=dtype)  # (B, C, *dims)
        method = self.start_method
        x = zeros
        if method in ("approximate_inverse", "tikhonov"):
            if method == "tikhonov" and args:
                raise ValueError("the Tikhonov start takes the forward model's per-sample parameters by name "
                                 "(y, mask=..., not positionally)")
            start = (self._tikhonov_start(y, **kwargs) if method == "tikhonov"
                     else self.physics.approximate_inverse(y, *args, **kwargs))
            x = self.inverse_link_function(start).to(dtype)
            if x.shape != zeros.shape:
                raise ValueError(f"y has shape {tuple(y.shape)}, whose approximate inverse has shape "
                                 f"{tuple(x.shape)}, but the RIM reconstructs x of shape {tuple(zeros.shape)} "
                                 "(batch, channels, *dimensions): check y's shape and the RIM's dimensions")
        h = self.model.init_hidden(x)
        if method == "model":
            dx, h = self._network(x, torch.zeros_like(x), h, 0)
            x = x + dx
        return x, h

    def _tikhonov_start(self, y: Tensor, **params: Any) -> Tensor:
        s = self.settings
        if s.initialization_damping is None:
            raise ValueError("initialization_method='tikhonov' has no damping yet: rim.fit chooses it on the "
                             "training data, or call rim.choose_initialization(batches) or set "
                             "initialization_damping=")
        with torch.no_grad():
            return self.problem.forward_model.least_squares(
                y, damping=s.initialization_damping, prior_mean=s.initialization_prior_mean,
                iterations=s.initialization_iterations, tol=0.0, **params)

    def choose_initialization(self, batches) -> dict[str, Any]:
        """For the Tikhonov start (``initialization_method="tikhonov"``, or ``"auto"`` on a linear
        problem): choose its damping and prior mean on
        ``batches`` of ``(y, x, params)`` (:func:`invrim.baselines.choose_tikhonov` with the start's
        number of CG iterations), store them in the settings and return the choice."""
        if self.problem is None or not has_tikhonov(self.problem.forward_model):
            raise ValueError("choose_initialization needs a problem with a linear forward model")
        s = self.settings
        choice = choose_tikhonov(self.problem.forward_model, batches, iterations=s.initialization_iterations,
                                 tol=0.0, source="the RIM's Tikhonov start")
        self.settings = RIMConfig(**{**s.to_dict(), "initialization_damping": choice["damping"],
                                     "initialization_prior_mean": choice["prior_mean"]})
        return choice

    def _network(self, x: Tensor, score: Tensor, h: Hidden, t: int) -> tuple[Tensor, Hidden]:
        """One call of the backbone, in the RIM's ``precision`` (autocast; its update and hidden
        state come back in ``x``'s dtype); a backbone with weights of its own per step
        (``steps`` set) is told which step this is."""
        precision = self.settings.precision
        with _precision.autocast(precision, x.device):
            if getattr(self.model, "steps", None) is not None:
                dx, h = self.model(x, score, h, step=t)
            else:
                dx, h = self._backbone()(x, score, h)
        if precision != "fp32":
            dx = dx.to(x.dtype)
            h = h.to(x.dtype) if isinstance(h, Tensor) else type(h)(v.to(x.dtype) for v in h)
        return dx, h

    def _backbone(self) -> Callable:
        """The backbone, or its :class:`~invrim.compilation.CompiledBackbone` with ``compile`` on
        (kept per model: replacing ``rim.model`` compiles the new one)."""
        if not self.settings.compile:
            return self.model
        compiled = self.__dict__.get("_compiled")
        if compiled is None or compiled.model is not self.model:
            compiled = self.__dict__["_compiled"] = CompiledBackbone(self.model)
        return compiled

    @property
    def compile_seconds(self) -> dict[str, float]:
        """With ``compile`` on: seconds the first call of each compiled graph took
        (``"training"``, ``"frozen"`` inference, ``"inference"``); empty before any."""
        compiled = self.__dict__.get("_compiled")
        return dict(compiled.seconds) if compiled is not None else {}

    def _step(self, t: int, y: Tensor, args: tuple, kwargs: dict, x: Tensor, h: Hidden,
              *state: Tensor) -> tuple[Tensor, Hidden, tuple[Tensor, ...]]:
        if self.settings.detach_score:
            with torch.no_grad():
                score = self.model_score(x.detach(), y, *args, **kwargs)                 # like x
        else:
            score = self.model_score(x, y, *args, **kwargs)
        score, state = self._preprocess(score, state, t)
        dx, h = self._network(x, score, h, t)                                            # dx like x
        return x + dx, h, state

    def forward(self, y: Tensor, *args: Any, **kwargs: Any) -> list[Tensor]:
        """The trajectory ``[x_1, …, x_T]`` in model space (``args``/``kwargs`` go to the score)."""
        x, h = self.initialization(y, *args, **kwargs)
        state = self._init_state(x)
        recompute = self.settings.gradient_checkpointing and torch.is_grad_enabled()
        out = []
        for t in range(self.settings.T):
            if recompute:
                x, h, state = _checkpoint(self._step, t, y, args, kwargs, x, h, *state, use_reentrant=False)
            else:
                x, h, state = self._step(t, y, args, kwargs, x, h, *state)
            out.append(x)
        return out

    def predict(self, y: Tensor, *args: Any, **kwargs: Any) -> Tensor:
        """The final estimate ``link(x_T)`` in physical space, computed without a graph."""
        with torch.no_grad():
            return self.link_function(self.forward(y, *args, **kwargs)[-1])

    def loss_fn(self, y: Tensor, x_true: Tensor, *args: Any, **kwargs: Any) -> Tensor:
        """The trajectory loss ``Σ_t w_t mean((x_t − link⁻¹(x_true))²)`` with ``Σ_t w_t = 1``.

        A mean over samples and pixels, so its scale does not depend on image size, batch
        size or ``T``.
        """
        target = self.inverse_link_function(x_true)                                      # (B, C, *dims)
        xs = self(y, *args, **kwargs)
        if xs[0].shape != target.shape:
            raise ValueError(f"x_true has shape {tuple(x_true.shape)} but the RIM's estimates have "
                             f"shape {tuple(xs[0].shape)}")
        w = self.loss_weights.to(device=target.device, dtype=target.dtype)
        loss = target.new_zeros(())
        for t, x in enumerate(xs):
            if w[t] != 0:
                loss = loss + w[t] * torch.mean((x - target) ** 2)
        return loss

    def fit(self, dataset, epochs: Optional[int] = None, learning_rate: Optional[float] = None, **options: Any):
        """Train the backbone on ``dataset``; see :func:`invrim.training.fit` for the options."""
        from .training.fit import fit          # the one upward hand-over the layers allow (DESIGN §2)
        return fit(self, dataset, epochs=epochs, learning_rate=learning_rate, **options)


__all__ = ["RIM", "RIMConfig", "trajectory_weights", "CheckpointError"]
