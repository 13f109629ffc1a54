"""The RIM engine: an unrolled learned optimiser driven by the likelihood's score."""
from __future__ import annotations

import inspect
import warnings
from typing import Any, Callable, Optional, Sequence, Union

import torch
from torch import Tensor, nn
from torch.func import vjp
from torch.utils.checkpoint import checkpoint as _checkpoint

from .backbones.base import Hidden
from .links import resolve_link
from .problem import Problem

INITIALIZATIONS = ("zeros", "approximate_inverse", "model")
PREPROCESSINGS = ("identity", "arcsinh", "adam", "rmsprop")
LOSS_WEIGHTS = ("uniform", "linear", "quadratic", "log", "last")

DEFAULTS: dict[str, Any] = {
    "T": 10,
    "initialization_method": "zeros",
    "score_preprocessing_method": "identity",
    "standardize_score": False,
    "loss_weights": "uniform",
    "detach_score": True,
    "checkpointing": False,
    "epsilon": 1e-7,
    "beta_1": 0.9,
    "beta_2": 0.999,
}


class _Unset:
    def __repr__(self) -> str:
        return "<default>"


_UNSET: Any = _Unset()


def trajectory_weights(kind: Union[str, Sequence[float], Tensor], T: int) -> Tensor:
    """Per-step weights ``w_t`` (``t = 1..T``), non-negative and summing to one.

    ``"uniform"``, ``"linear"`` (∝ t), ``"quadratic"`` (∝ t²), ``"log"`` (log-spaced from
    0.01 to 1), ``"last"`` (only the final estimate), or a sequence of ``T`` numbers.
    """
    t = torch.arange(1, T + 1, dtype=torch.float64)
    if isinstance(kind, str):
        if kind == "uniform":
            w = torch.ones(T, dtype=torch.float64)
        elif kind == "linear":
            w = t
        elif kind == "quadratic":
            w = t ** 2
        elif kind == "log":
            w = torch.logspace(-2, 0, T, dtype=torch.float64) if T > 1 else torch.ones(1, dtype=torch.float64)
        elif kind == "last":
            w = torch.zeros(T, dtype=torch.float64)
            w[-1] = 1
        else:
            raise ValueError(f"unknown loss_weights {kind!r}; use one of {LOSS_WEIGHTS} or {T} numbers")
    else:
        w = torch.as_tensor(kind, dtype=torch.float64).flatten()
        if w.numel() != T:
            raise ValueError(f"loss_weights has {w.numel()} values but T={T}")
        if (w < 0).any() or not torch.isfinite(w).all() or w.sum() <= 0:
            raise ValueError("loss_weights must be finite, non-negative and not all zero")
    return w / w.sum()


def _check_callable(fn: Callable, label: str) -> None:
    if not callable(fn):
        raise TypeError(f"{label} must be callable, got {type(fn).__name__}")
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):  # builtins without a signature: trust them
        return
    params = list(sig.parameters.values())
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if any(p.kind == p.VAR_POSITIONAL for p in params):
        return
    if len(positional) < 2:
        raise TypeError(f"{label} must have the signature {label}(x, y, *args); "
                        f"got {label}{sig}")


def _call_with_optional_args(fn: Callable, y: Tensor, args: tuple, kwargs: dict) -> Tensor:
    """Call ``fn(y, *args, **kwargs)``, or ``fn(y)`` when it takes only the observation."""
    try:
        inspect.signature(fn).bind(y, *args, **kwargs)
    except TypeError:
        return fn(y)
    except ValueError:
        pass
    return fn(y, *args, **kwargs)


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
        May be omitted when ``checkpoints_directory`` is given.
    checkpoints_directory
        Reload a trained model (backbone, weights and RIM settings) from this folder.
    score_fn, energy_fn, problem
        Exactly one of: ``score_fn(x, y, *args) -> ∇ₓ log p(y|x)`` (shape of ``x``);
        ``energy_fn(x, y, *args) -> -log p(y|x)`` per sample ``(B,)`` (its score is ``-∇ energy``,
        computed with ``torch.func``); or a :class:`~invrim.problem.Problem`, whose per-sample
        parameters are then passed by keyword.
    T
        Number of recurrent steps.
    link_function, inverse_link_function
        Map between model space (where the RIM iterates) and physical space: a name
        (``"identity"``, ``"exp"``, ``"softplus"``, ``"sigmoid"``, ``"tanh"``) or two callables.
    initialization_method
        ``"zeros"``, ``"approximate_inverse"`` (``approximate_inverse_fn(y, *args)``, or the
        problem's pseudo-inverse) or ``"model"`` (one backbone step from zero with zero score).
    score_preprocessing_method
        ``"identity"``, ``"arcsinh"``, ``"adam"`` or ``"rmsprop"`` (moments over the trajectory).
    standardize_score
        Divide each sample's score by its standard deviation before preprocessing.
    loss_weights
        Per-step weights of the trajectory loss (see :func:`trajectory_weights`).
    detach_score
        True (default, like torch-rim): the score is treated as an input; False keeps it in
        the autograd graph (second-order training, as DIRECT does).
    checkpointing
        Recompute each step in the backward pass (``torch.utils.checkpoint``) so training
        memory is nearly independent of ``T``; gradients are unchanged.
    checkpoint
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
        T: int = _UNSET,
        link_function: Union[str, Callable, None] = None,
        inverse_link_function: Optional[Callable] = None,
        initialization_method: str = _UNSET,
        approximate_inverse_fn: Optional[Callable] = None,
        score_preprocessing_method: str = _UNSET,
        standardize_score: bool = _UNSET,
        loss_weights: Union[str, Sequence[float], Tensor] = _UNSET,
        detach_score: bool = _UNSET,
        checkpointing: bool = _UNSET,
        epsilon: float = _UNSET,
        beta_1: float = _UNSET,
        beta_2: float = _UNSET,
        checkpoint: Union[str, int] = "best",
        device: Union[str, torch.device, None] = None,
        **hyperparameters: Any,
    ):
        super().__init__()
        if hyperparameters:
            raise TypeError(f"RIM got unexpected argument(s): {', '.join(sorted(hyperparameters))}")
        given = {k: v for k, v in dict(
            T=T, initialization_method=initialization_method,
            score_preprocessing_method=score_preprocessing_method,
            standardize_score=standardize_score, loss_weights=loss_weights,
            detach_score=detach_score, checkpointing=checkpointing,
            epsilon=epsilon, beta_1=beta_1, beta_2=beta_2).items() if v is not _UNSET}

        saved: dict[str, Any] = {}
        if checkpoints_directory is not None:
            from .training.checkpoints import load_model
            model, saved_cfg = load_model(checkpoints_directory, model=model, which=checkpoint)
            saved = saved_cfg.get("rim", {})
            saved_dims = tuple(saved_cfg.get("dimensions", ()))
            if not dimensions:
                dimensions = saved_dims
            elif len(dimensions) != len(saved_dims):      # other sizes of the same rank are fine
                raise ValueError(f"dimensions {tuple(dimensions)} do not match the checkpoint's {saved_dims}")
            for k, v in given.items():
                if k in saved and saved[k] != (list(v) if isinstance(v, (tuple, Tensor)) else v):
                    warnings.warn(f"{k}={v!r} overrides the checkpoint's {k}={saved[k]!r}", stacklevel=2)
            if saved.get("link_function") == "custom" and link_function is None:
                raise ValueError(f"the model in {checkpoints_directory} was trained with a custom link "
                                 "function: pass link_function= and inverse_link_function=")
            if link_function is None and saved.get("link_function", "identity") != "identity":
                link_function = saved["link_function"]
            if score_fn is None and energy_fn is None and problem is None and saved_cfg.get("problem"):
                problem = Problem.from_config(**saved_cfg["problem"])   # rebuilt through the registry
        if model is None:
            raise ValueError("RIM needs a backbone: pass model=... or checkpoints_directory=...")
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module backbone, got {type(model).__name__}")
        settings = {**DEFAULTS, **{k: v for k, v in saved.items() if k in DEFAULTS}, **given}
        if isinstance(settings["loss_weights"], Tensor):
            settings["loss_weights"] = settings["loss_weights"].tolist()

        if device is not None:
            model = model.to(_checked_device(device))
        self.model = model
        self.dimensions = tuple(int(d) for d in dimensions)
        self.C = getattr(model, "channels", None)
        if self.C is None:
            raise ValueError("the backbone must expose its number of channels as `.channels`")

        # ---- the physics: exactly one of score_fn / energy_fn / problem ---------------------
        sources = [n for n, v in (("score_fn", score_fn), ("energy_fn", energy_fn), ("problem", problem))
                   if v is not None]
        if len(sources) != 1:
            raise ValueError("pass exactly one of score_fn, energy_fn or problem"
                             + (f" (got {', '.join(sources)})" if sources else ""))
        if score_fn is not None:
            _check_callable(score_fn, "score_fn")
        if energy_fn is not None:
            _check_callable(energy_fn, "energy_fn")
        if problem is not None and not isinstance(problem, Problem):
            raise TypeError(f"problem must be an invrim.Problem, got {type(problem).__name__}")
        self.score_fn, self.energy_fn, self.problem = score_fn, energy_fn, problem

        self.link_function, self.inverse_link_function, self._link_name = resolve_link(
            link_function, inverse_link_function)

        # ---- settings --------------------------------------------------------------------
        T = settings["T"]
        if not isinstance(T, int) or isinstance(T, bool) or T < 1:
            raise ValueError(f"T must be a positive integer, got {T!r}")
        self.T = T
        init = str(settings["initialization_method"]).lower()
        if init not in INITIALIZATIONS:
            raise ValueError(f"unknown initialization_method {settings['initialization_method']!r}; "
                             f"use one of {INITIALIZATIONS}")
        if init == "approximate_inverse" and approximate_inverse_fn is None and problem is None:
            raise ValueError("initialization_method='approximate_inverse' needs approximate_inverse_fn "
                             "(or a problem whose forward model has a pseudo_inverse)")
        if approximate_inverse_fn is not None and not callable(approximate_inverse_fn):
            raise TypeError("approximate_inverse_fn must be callable")
        self.initialization_method = init
        self.approximate_inverse_fn = approximate_inverse_fn
        pre = str(settings["score_preprocessing_method"]).lower()
        if pre not in PREPROCESSINGS:
            raise ValueError(f"unknown score_preprocessing_method "
                             f"{settings['score_preprocessing_method']!r}; use one of {PREPROCESSINGS}")
        self.score_preprocessing_method = pre
        self.standardize_score = bool(settings["standardize_score"])
        self.detach_score = bool(settings["detach_score"])
        self.checkpointing = bool(settings["checkpointing"])
        self.epsilon = float(settings["epsilon"])
        self.beta_1 = float(settings["beta_1"])
        self.beta_2 = float(settings["beta_2"])
        if not (0 <= self.beta_1 < 1 and 0 <= self.beta_2 < 1):
            raise ValueError("beta_1 and beta_2 must lie in [0, 1)")
        self._loss_weights_spec = settings["loss_weights"]
        self.register_buffer("loss_weights", trajectory_weights(settings["loss_weights"], T), persistent=False)

    # ------------------------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        """The JSON-serialisable settings saved with a checkpoint."""
        lw = self._loss_weights_spec
        return {
            "dimensions": list(self.dimensions),
            "backbone": {"name": getattr(self.model, "name", type(self.model).__name__.lower()),
                         "config": self.model.config() if hasattr(self.model, "config") else {}},
            "rim": {
                "T": self.T,
                "initialization_method": self.initialization_method,
                "score_preprocessing_method": self.score_preprocessing_method,
                "standardize_score": self.standardize_score,
                "loss_weights": lw if isinstance(lw, str) else list(map(float, lw)),
                "detach_score": self.detach_score,
                "checkpointing": self.checkpointing,
                "epsilon": self.epsilon,
                "beta_1": self.beta_1,
                "beta_2": self.beta_2,
                "link_function": self._link_name,
            },
            "problem": self.problem.config() if self.problem is not None else None,
        }

    @property
    def hyperparameters(self) -> dict[str, Any]:
        """The seed's name for the saved settings."""
        return self.config()

    # ---- the score, in model space ----------------------------------------------------------
    def physical_score(self, x: Tensor, y: Tensor, *args: Any, **kwargs: Any) -> Tensor:
        """``∇ log p(y | x)`` with ``x`` in physical space."""
        if self.problem is not None:
            if args:
                raise TypeError("with a problem, pass per-sample parameters by keyword (e.g. psf=...)")
            return self.problem.score(x, y, **kwargs)
        if self.score_fn is not None:
            return self._call_user(self.score_fn, "score_fn", x, y, args, kwargs)
        energy, pullback = vjp(lambda x_: self._call_user(self.energy_fn, "energy_fn", x_, y, args, kwargs), x)
        return -pullback(torch.ones_like(energy))[0]

    def model_score(self, x: Tensor, y: Tensor, *args: Any, **kwargs: Any) -> Tensor:
        """The score with respect to the model-space variable ``x`` (chain rule through the link)."""
        if self._link_name == "identity":
            score = self.physical_score(x, y, *args, **kwargs)
        elif self.energy_fn is not None:
            energy, pullback = vjp(lambda x_: self._call_user(
                self.energy_fn, "energy_fn", self.link_function(x_), y, args, kwargs), x)
            score = -pullback(torch.ones_like(energy))[0]
        else:
            linked, pullback = vjp(self.link_function, x)
            score = pullback(self.physical_score(linked, y, *args, **kwargs))[0]
        if score.shape != x.shape:
            raise ValueError(f"the score has shape {tuple(score.shape)} but x has shape {tuple(x.shape)}")
        return score

    @staticmethod
    def _call_user(fn: Callable, label: str, x: Tensor, y: Tensor, args: tuple, kwargs: dict) -> Tensor:
        try:
            return fn(x, y, *args, **kwargs)
        except TypeError as e:
            try:
                inspect.signature(fn).bind(x, y, *args, **kwargs)
            except TypeError as bind_error:
                raise TypeError(f"{label} could not be called as {label}(x, y, *args) with "
                                f"{len(args)} extra argument(s): {bind_error}") from e
            except ValueError:
                pass
            raise

    # ---- preprocessing ----------------------------------------------------------------------
    def _preprocess(self, score: Tensor, state: tuple[Tensor, ...], t: int) -> tuple[Tensor, tuple[Tensor, ...]]:
        if self.standardize_score:
            std = score.flatten(1).std(dim=1, unbiased=False).clamp_min(self.epsilon)
            score = score / std.view(-1, *([1] * (score.dim() - 1)))
        method = self.score_preprocessing_method
        if method == "identity":
            return score, state
        if method == "arcsinh":
            return torch.arcsinh(score), state
        if method == "adam":
            m, v = state
            m = self.beta_1 * m + (1 - self.beta_1) * score
            v = self.beta_2 * v + (1 - self.beta_2) * score ** 2
            m_hat = m / (1 - self.beta_1 ** (t + 1))
            v_hat = v / (1 - self.beta_2 ** (t + 1))
            return m_hat / (torch.sqrt(v_hat) + self.epsilon), (m, v)
        # rmsprop: the running second moment IS updated (the seed divided by epsilon forever)
        (v,) = state
        v = self.beta_2 * v + (1 - self.beta_2) * score ** 2
        v_hat = v / (1 - self.beta_2 ** (t + 1))
        return score / (torch.sqrt(v_hat) + self.epsilon), (v,)

    def _init_state(self, x: Tensor) -> tuple[Tensor, ...]:
        if self.score_preprocessing_method == "adam":
            return (torch.zeros_like(x), torch.zeros_like(x))
        if self.score_preprocessing_method == "rmsprop":
            return (torch.zeros_like(x),)
        return ()

    # ---- the unrolled loop ------------------------------------------------------------------
    def _dtype(self, y: Tensor) -> torch.dtype:
        for p in self.model.parameters():
            return p.dtype
        return y.real.dtype if y.is_floating_point() or y.is_complex() else torch.get_default_dtype()

    def initialization(self, y: Tensor, *args: Any, **kwargs: Any) -> tuple[Tensor, Hidden]:
        """Initial estimate ``x_0`` (model space) and hidden state for observation ``y``."""
        if not isinstance(y, Tensor):
            raise TypeError(f"y must be a torch.Tensor, got {type(y).__name__}")
        B = y.shape[0]
        dtype = self._dtype(y)
        zeros = torch.zeros((B, self.C, *self.dimensions), device=y.device, dtype=dtype)
        if self.initialization_method == "approximate_inverse":
            if self.approximate_inverse_fn is not None:
                x_phys = _call_with_optional_args(self.approximate_inverse_fn, y, args, kwargs)
            else:
                x_phys = self.problem.approximate_inverse(y, **kwargs)
            x = self.inverse_link_function(x_phys).to(dtype)
            if x.shape != zeros.shape:
                raise ValueError(f"the approximate inverse has shape {tuple(x.shape)}, expected "
                                 f"{tuple(zeros.shape)} (batch, channels, *dimensions)")
        else:
            x = zeros
        h = self.model.init_hidden(x)
        if self.initialization_method == "model":
            dx, h = self.model(x, torch.zeros_like(x), h)
            x = x + dx
        return x, h

    def _step(self, t: int, y: Tensor, args: tuple, kwargs: dict, x: Tensor, h: Hidden,
              *state: Tensor) -> tuple[Tensor, Hidden, tuple[Tensor, ...]]:
        if self.detach_score:
            with torch.no_grad():
                score = self.model_score(x.detach(), y, *args, **kwargs)
        else:
            score = self.model_score(x, y, *args, **kwargs)
        score, state = self._preprocess(score, state, t)
        dx, h = self.model(x, score, h)
        return x + dx, h, state

    def forward(self, y: Tensor, *args: Any, **kwargs: Any) -> list[Tensor]:
        """The trajectory ``[x_1, …, x_T]`` in model space (``args``/``kwargs`` go to the score)."""
        if torch.is_grad_enabled() and isinstance(y, Tensor) and y.device.type == "cpu":
            from .training.heap import keep_heap       # (not at import: it loads the training package)
            keep_heap()           # a training step: keep glibc's heap between steps
        x, h = self.initialization(y, *args, **kwargs)
        state = self._init_state(x)
        out = []
        use_ckpt = self.checkpointing and torch.is_grad_enabled()
        for t in range(self.T):
            if use_ckpt:
                x, h, state = _checkpoint(self._step, t, y, args, kwargs, x, h, *state,
                                          use_reentrant=False)
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
        target = self.inverse_link_function(x_true)
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

    def fit(self, dataset, epochs: int = 100, learning_rate: float = 1e-4, **options: Any):
        """Train the backbone on ``dataset``; see :func:`invrim.training.fit` for the options."""
        from .training.fit import fit
        return fit(self, dataset, epochs=epochs, learning_rate=learning_rate, **options)
