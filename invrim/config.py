"""The one table of defaults: :class:`RIMConfig` (the model) and :class:`FitConfig` (training).

``RIM(...)``, :func:`invrim.training.fit`, :func:`invrim.training.train_on_file` and the
``invrim train`` command all read their defaults from here, so the library, the command line's
``--help`` and the docs print the same numbers. Where a value differs from torch-rim's (the seed
library), ``docs/migrating.md`` says so; :data:`invrim.compat.TORCH_RIM_SETTINGS` restores them.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, fields
from typing import Any, Optional, Sequence, Union

INITIALIZATIONS = ("auto", "zeros", "approximate_inverse", "tikhonov", "model")
PREPROCESSINGS = ("identity", "arcsinh", "adam", "rmsprop")
LOSS_WEIGHTS = ("uniform", "linear", "quadratic", "log", "last")
SCHEDULES = ("constant", "cosine", "linear")
PRECISIONS = ("fp32", "bf16", "fp16")


@dataclass
class RIMConfig:
    """The RIM's settings, saved with the model (``model.json``'s ``"rim"`` entry).

    Attributes
    ----------
    T
        Number of recurrent steps: 6 (torch-rim's default is 10; on the command line's deblurring
        problem T = 6 trained 0.5 dB better in the same number of steps, at 0.59x the time:
        ``benchmarks/QUALITY.md``).
    initialization_method
        ``"auto"`` (for a problem with a linear forward model, the Tikhonov start once
        :meth:`RIM.fit` has chosen its damping, unless the model's ``auto_start`` asks for its
        pseudo-inverse, as CT's FBP does; otherwise the approximate inverse where the problem
        or ``approximate_inverse_fn`` offers one, else zeros: torch-rim's zeros for a ``score_fn``
        script; ``rim.start_method`` says which), ``"zeros"``,
        ``"approximate_inverse"``, ``"tikhonov"`` (a few conjugate-gradient iterations of the
        Tikhonov-regularised least squares of a linear forward model: CG-SENSE for MRI, the
        Wiener-like solution for deblurring) or ``"model"``.
    initialization_damping, initialization_prior_mean, initialization_iterations
        The Tikhonov start's ``λ`` (absolute; None: :meth:`RIM.fit` chooses it on the first
        training samples by the baseline's rule, :func:`invrim.baselines.choose_tikhonov`), prior
        mean ``x̄`` and number of CG iterations.
    score_preprocessing_method
        ``"identity"``, ``"arcsinh"``, ``"adam"`` or ``"rmsprop"``.
    standardize_score
        Divide each sample's score by its standard deviation (off, as in torch-rim: it discards the
        score's size, which tells the network how far it is from the data; measured to slow early
        training, benchmarks/QUALITY.md).
    loss_weights
        Per-step weights of the trajectory loss (uniform, as in torch-rim).
    detach_score
        Treat the score as an input (torch-rim) rather than differentiating through it.
    gradient_checkpointing
        Recompute each step in the backward pass: training memory nearly independent of ``T``.
    epsilon, beta_1, beta_2
        Constants of the ``adam``/``rmsprop`` preprocessing and of the standardisation.
    precision
        ``"fp32"``, ``"bf16"`` or ``"fp16"``: the precision the backbone runs in (autocast); the
        physics, the score and the loss stay fp32, and so do the weights (:mod:`invrim.precision`).
    compile
        Run the backbone through ``torch.compile`` (:mod:`invrim.compilation`): compiled at its
        first call (seconds to a minute), eager again where compiling fails. Measured on CPU to
        speed up bf16 inference, not training (``docs/speed.md``).
    """

    T: int = 6
    initialization_method: str = "auto"
    score_preprocessing_method: str = "identity"
    standardize_score: bool = False
    loss_weights: Union[str, Sequence[float]] = "uniform"
    detach_score: bool = True
    gradient_checkpointing: bool = False
    epsilon: float = 1e-7
    beta_1: float = 0.9
    beta_2: float = 0.999
    precision: str = "fp32"
    compile: bool = False
    initialization_damping: Optional[float] = None
    initialization_prior_mean: float = 0.0
    initialization_iterations: int = 10

    def __post_init__(self) -> None:
        T = self.T
        if not isinstance(T, int) or isinstance(T, bool) or T < 1:
            raise ValueError(f"T must be a positive integer, got {T!r}")
        for name, allowed in (("initialization_method", INITIALIZATIONS),
                              ("score_preprocessing_method", PREPROCESSINGS)):
            value = str(getattr(self, name)).lower()
            if value not in allowed:
                raise ValueError(f"unknown {name} {getattr(self, name)!r}; use one of {allowed}")
            setattr(self, name, value)
        self.precision = str(self.precision).lower()
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {self.precision!r}; use one of {PRECISIONS}")
        if not (0 <= self.beta_1 < 1 and 0 <= self.beta_2 < 1):
            raise ValueError("beta_1 and beta_2 must lie in [0, 1)")
        if not isinstance(self.loss_weights, str):
            self.loss_weights = [float(w) for w in self.loss_weights]
        for name in ("standardize_score", "detach_score", "gradient_checkpointing", "compile"):
            setattr(self, name, bool(getattr(self, name)))
        self.epsilon, self.beta_1, self.beta_2 = float(self.epsilon), float(self.beta_1), float(self.beta_2)
        if self.initialization_damping is not None:
            damping = float(self.initialization_damping)
            if not (math.isfinite(damping) and damping >= 0):
                raise ValueError(f"initialization_damping must be a non-negative number, got {damping!r}")
            self.initialization_damping = damping
        self.initialization_prior_mean = float(self.initialization_prior_mean)
        n = self.initialization_iterations
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"initialization_iterations must be a positive integer, got {n!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "RIMConfig":
        """Build from a saved ``"rim"`` entry; unknown keys (``link_function``) are ignored and
        the names of older files (``checkpointing``) are read."""
        values = dict(values)
        if "checkpointing" in values and "gradient_checkpointing" not in values:
            values["gradient_checkpointing"] = values.pop("checkpointing")
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})


@dataclass
class FitConfig:
    """Training options of :func:`invrim.training.fit` (and ``invrim train``).

    ``epochs`` counts the whole run (a resumed run continues up to it); ``max_time`` is in hours;
    ``patience`` in epochs; ``clip`` is the gradient-norm limit (0: off); ``ema_decay`` 0 is off;
    ``save_every`` is the interval, in epochs, between saved checkpoints (and the last epoch);
    ``models_to_keep`` the number of best weight files kept.
    """

    epochs: int = 10
    learning_rate: float = 1e-3
    batch_size: int = 16
    shuffle: bool = True
    validation_split: float = 0.0
    patience: float = math.inf
    tolerance: float = 0.0
    max_time: float = math.inf
    warmup: int = 0
    scheduler: str = "constant"
    min_learning_rate: float = 0.0
    clip: float = 1.0
    weight_decay: float = 0.0
    ema_decay: float = 0.0
    save_every: int = 1
    models_to_keep: int = 3
    seed: Optional[int] = None
    num_workers: int = 0

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "save_every", "models_to_keep"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")
        if not 0 <= self.validation_split < 1:
            raise ValueError(f"validation_split must lie in [0, 1), got {self.validation_split}")
        if self.warmup < 0 or self.clip < 0:
            raise ValueError("warmup and clip must be non-negative")
        if self.ema_decay and not 0 < self.ema_decay < 1:
            raise ValueError(f"ema_decay must be 0 (off) or lie in (0, 1), got {self.ema_decay}")
        if self.scheduler not in SCHEDULES:
            raise ValueError(f"unknown scheduler {self.scheduler!r}; use one of {SCHEDULES}")
        if not self.max_time > 0:
            raise ValueError(f"max_time must be positive (hours), got {self.max_time}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


#: The per-pixel scales a calibration can use (:class:`CalibrationConfig`'s ``scale``).
SCALES = ("auto", "base", "learned")


@dataclass
class CalibrationConfig:
    """Options of :func:`invrim.uncertainty.calibrate` (and ``invrim calibrate``).

    ``coverage`` is the nominal coverage of the intervals written by ``invrim reconstruct
    --uncertainty``; ``false_alarm`` the rate at which in-distribution samples are flagged by the
    data-consistency check (split over both tails); ``levels`` the further coverages a calibration
    also stores (for the calibration plot of ``invrim evaluate --plot``); ``tuning_fraction`` the
    share of the calibration samples used to choose the scale's floor (the rest gives the
    conformal quantiles); ``floor_factors`` the floors tried, as multiples of the mean scale;
    ``seed`` the seed of that split; ``scale`` the per-pixel scale: ``"base"`` (the trajectory's
    movement, or the ensemble's spread), ``"learned"`` (a log-linear fit of the error on the base
    scale, the image gradient, the sample's mean scale and data fit, made on the tuning samples) or
    ``"auto"`` (whichever gives the narrower intervals on the tuning samples).
    """

    coverage: float = 0.9
    false_alarm: float = 0.05
    levels: Sequence[float] = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)
    tuning_fraction: float = 0.5
    floor_factors: Sequence[float] = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 1000.0)
    batch_size: int = 16
    seed: int = 0
    scale: str = "auto"

    def __post_init__(self) -> None:
        if self.scale not in SCALES:
            raise ValueError(f"scale must be one of {', '.join(SCALES)}, got {self.scale!r}")
        for name in ("coverage", "false_alarm"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < 1:
                raise ValueError(f"{name} must lie strictly between 0 and 1, got {v!r}")
        self.coverage, self.false_alarm = float(self.coverage), float(self.false_alarm)
        self.levels = tuple(sorted({float(v) for v in self.levels} | {self.coverage}))
        if not all(0 < v < 1 for v in self.levels):
            raise ValueError(f"levels must lie strictly between 0 and 1, got {self.levels!r}")
        if not 0 <= self.tuning_fraction < 1:
            raise ValueError(f"tuning_fraction must lie in [0, 1), got {self.tuning_fraction}")
        self.floor_factors = tuple(float(v) for v in self.floor_factors)
        if not self.floor_factors or not all(v > 0 for v in self.floor_factors):
            raise ValueError("floor_factors must be positive numbers")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {self.batch_size!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def default(config: type, name: str) -> Any:
    """The default of one field, e.g. ``default(FitConfig, "learning_rate")`` (for ``--help``)."""
    return {f.name: f.default for f in fields(config)}[name]


__all__ = ["RIMConfig", "FitConfig", "CalibrationConfig", "default", "INITIALIZATIONS", "PREPROCESSINGS", "LOSS_WEIGHTS",
           "SCHEDULES"]
