"""The choice of meta-gradient estimator and inner step, and their hyperparameters (torch-free, validated by field).

``MBConfig`` carries these as flat fields (the CLI is generated from its field docstrings); the sinusoid
benchmark builds a ``MetaSettings`` directly. Both are validated by ``validate_meta``, so an error names
the field either way. What each choice is: ``docs/meta_learners.md``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from metactl.train.config import ConfigError

META_LEARNERS = ("maml", "fomaml", "imaml", "evo_maml")
INNER_STEPS = ("sgd", "meta_sgd", "lstm")
DEFAULT_INNER_STEPS = {"maml": 1, "fomaml": 1, "imaml": 10, "evo_maml": 1}
"""Inner steps per meta-learner when ``inner_steps`` is 0: MAML's one step (GrBAL's); iMAML needs its proximal
inner problem solved: 10 steps (Rajeswaran et al. 2019 used 5-25; more cost no memory, only time). With 5 steps of
0.01 on the sinusoid its gradient was wrong enough to leave the adapted loss above the unadapted one."""
LEARNED_INNER = {"maml", "fomaml", "evo_maml"}
"""Meta-learners whose meta-gradient reaches a learned inner step's parameters (Meta-SGD rates, the LSTM).
iMAML's implicit gradient depends only on the inner solution, not on how it was reached, so it cannot train them."""
MAX_INNER_STEPS = 100


@dataclasses.dataclass(frozen=True)
class MetaFields:
    """The meta-learning fields, documented once: ``MBConfig`` inherits them (so they are CLI flags) and so does
    ``MetaSettings`` (what the estimators and the sinusoid benchmark take)."""

    meta_learner: str = "maml"
    """GrBAL's meta-gradient estimator: 'maml' (exact, second order), 'fomaml' (first order), 'imaml' (implicit
    gradient of a proximally regularized inner problem, Rajeswaran et al. 2019) or 'evo_maml' (first-order gradient
    at a loss-weighted combination of perturbed copies). Costs and choices: docs/meta_learners.md."""
    inner_step: str = "sgd"
    """GrBAL's adaptation step: 'sgd' (theta - inner_lr * grad), 'meta_sgd' (a learned step size per parameter,
    Li et al. 2017) or 'lstm' (a learned coordinatewise LSTM optimizer, Andrychowicz et al. 2016; ~100x the
    training time of sgd on the default model)."""
    inner_steps: int = 0
    """Adaptation steps, in meta-training and on the robot (the exported graph unrolls them); 0 = the
    meta-learner's default: 1, iMAML 10."""
    imaml_lambda: float = 1.0
    """iMAML: lambda, strength of the proximal term lambda/2 |phi - theta|^2 of the inner problem."""
    imaml_cg_steps: int = 10
    """iMAML: conjugate-gradient iterations solving (I + H / lambda) x = grad of the query loss (5 let sinusoid
    training produce non-finite meta-gradients; 10 did not)."""
    imaml_cg_damping: float = 0.0
    """iMAML: added to the diagonal of (I + H / lambda), for a Hessian far from positive definite."""
    evo_population: int = 8
    """Evo-MAML: P, perturbed copies of theta per meta-step."""
    evo_sigma: float = 0.003
    """Evo-MAML: sigma; each copy is theta + sigma * sign(N(0, I)) (chosen on held-out HalfCheetah windows from
    0.003 and 0.03 by ``bench meta``)."""
    evo_temperature: float = 0.001
    """Evo-MAML: tau, in units of the loss; copies are weighted softmax(-post-adaptation query loss / tau) (chosen
    with sigma from 0.001 and 0.01; the sinusoid, whose losses are ~100x larger, chose 0.01)."""
    lstm_hidden: int = 20
    """LSTM inner step: width H of both LSTM layers (Andrychowicz et al.: 20)."""
    lstm_scale: float = 0.01
    """LSTM inner step: scale of its output update (the paper's reference code: 0.01)."""


@dataclasses.dataclass(frozen=True)
class MetaSettings(MetaFields):
    """``MetaFields`` plus the inner step size (``MBConfig.inner_lr``), validated: all an estimator needs."""

    inner_lr: float = 0.01
    """alpha: the step size of SGD, and Meta-SGD's initial rates."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "inner_steps", resolve_inner_steps(self.meta_learner, self.inner_steps))
        validate_meta(self)

    @classmethod
    def of(cls, config: Any) -> MetaSettings:
        """The meta-learning fields of any config that has them (e.g. an ``MBConfig``)."""
        return cls(**{f.name: getattr(config, f.name) for f in dataclasses.fields(cls)})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def proximal(self) -> float:
        """lambda of the inner objective L(phi) + lambda/2 |phi - theta|^2: iMAML's, 0 for the others."""
        return float(self.imaml_lambda) if self.meta_learner == "imaml" else 0.0


def resolve_inner_steps(meta_learner: str, inner_steps: Any) -> Any:
    """``inner_steps`` 0 -> the meta-learner's default (``DEFAULT_INNER_STEPS``); anything else unchanged."""
    if inner_steps == 0 and not isinstance(inner_steps, bool) and meta_learner in DEFAULT_INNER_STEPS:
        return DEFAULT_INNER_STEPS[meta_learner]
    return inner_steps


def _int(config: Any, name: str, low: int, high: int = 10**9) -> None:
    value = getattr(config, name)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"{name}: must be an integer in [{low}, {high}], got {value!r}")


def _number(config: Any, name: str, *, zero_ok: bool = False) -> None:
    value = getattr(config, name)
    ok = isinstance(value, int | float) and not isinstance(value, bool) and value == value and value != float("inf")
    if not ok or value < 0 or (value == 0 and not zero_ok):
        raise ConfigError(f"{name}: must be a finite number {'>= 0' if zero_ok else '> 0'}, got {value!r}")


def validate_meta(config: Any) -> None:
    """Check the meta-learning fields of ``config`` (``MetaSettings`` or ``MBConfig``); errors name the field."""
    if config.meta_learner not in META_LEARNERS:
        raise ConfigError(f"meta_learner: must be one of {META_LEARNERS}, got {config.meta_learner!r}")
    if config.inner_step not in INNER_STEPS:
        raise ConfigError(f"inner_step: must be one of {INNER_STEPS}, got {config.inner_step!r}")
    _int(config, "inner_steps", 1, MAX_INNER_STEPS)
    for name in ("imaml_cg_steps", "evo_population", "lstm_hidden"):
        _int(config, name, 1, 256)
    for name in ("inner_lr", "imaml_lambda", "evo_sigma", "evo_temperature", "lstm_scale"):
        _number(config, name)
    _number(config, "imaml_cg_damping", zero_ok=True)
    if config.inner_step != "sgd" and config.meta_learner not in LEARNED_INNER:
        raise ConfigError(
            f"inner_step: {config.inner_step!r} has learned parameters, which meta_learner {config.meta_learner!r} "
            "cannot train (its implicit gradient ignores how the inner problem was solved); use inner_step 'sgd'"
        )
    if config.meta_learner == "evo_maml" and config.inner_steps != 1:
        raise ConfigError(f"inner_steps: Evo-MAML adapts each copy by exactly one step, got {config.inner_steps}")
