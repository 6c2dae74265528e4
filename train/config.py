"""ES-MAML training configuration: a frozen dataclass, validated with errors that name the field."""

from __future__ import annotations

import copy
import dataclasses
import json
from typing import Any, Literal

from metactl.controllers import AdaptationError, AdaptationOperator, PolicyError, PolicySpec, make_operator
from metactl.sim.registry import BENCHMARK_FAMILIES, FAMILIES, make_family


class ConfigError(ValueError):
    """A training setting is wrong; the message names the field and the fix (user-facing)."""


OPERATOR_FIELDS = {
    "hill_climb": ("queries", "sigma", "mode", "batch_size", "evaluations", "sampling"),
    "es_grad": ("queries", "sigma", "step_size", "steps"),
    "none": (),
}
"""The fields each adaptation operator takes (``controllers.adaptation``)."""


@dataclasses.dataclass(frozen=True)
class AdaptationConfig:
    """The adaptation operator U(theta, T) (ES-MAML, Song et al. 2020): every field, each used by the operators
    that take it (``OPERATOR_FIELDS``), so a preset and flags merge field by field."""

    name: Literal["hill_climb", "es_grad", "none"] = "hill_climb"
    """Operator: 'hill_climb' (monotone, non-smooth), 'es_grad' (ES-gradient steps) or 'none' (plain ES)."""
    queries: int = 10
    """K: episodes the operator may query (hill climbing: perturbations after one baseline round)."""
    sigma: float = 0.2
    """Perturbation scale of the queries."""
    step_size: float = 0.05
    """es_grad: step size alpha of each ES-gradient step."""
    steps: int = 1
    """es_grad: ES-gradient steps, each from ``queries`` perturbations plus the baseline."""
    mode: Literal["average", "batch"] = "batch"
    """hill_climb: 'average' (one perturbation per round, kept if its mean return over ``evaluations`` episodes is
    strictly better) or 'batch' (best of ``batch_size``, as on the real Minitaur)."""
    batch_size: int = 5
    """hill_climb batch mode: perturbations per round (``queries`` must be a multiple)."""
    evaluations: int = 1
    """hill_climb: R episodes per candidate, all candidates of an adaptation sharing their R reset seeds (the
    reference's ``parallel_evaluations``); one lucky episode is not locked in."""
    sampling: Literal["gaussian", "stratified"] = "gaussian"
    """hill_climb batch mode: 'gaussian' queries, or 'stratified': a Latin hypercube on the normal's
    quantiles, each perturbed number taking each of the batch's quantiles once (with one context input, the same
    offsets in every adaptation)."""
    params: Literal["all", "first_bias", "context"] = "all"
    """Parameters the queries perturb: 'all'; 'first_bias' — the first layer's biases only, the rest as
    meta-trained (context adaptation, CAVIA: with an MLP these are context inputs, so ``sigma`` can be large;
    with a linear policy they are the action biases); or 'context' — the policy's ``context`` values only, a
    learned low-dimensional subspace of those biases."""

    def operator_dict(self, spec: PolicySpec | None = None) -> dict[str, Any]:
        """The operator's own settings (``controllers.make_operator``'s input; what a bundle records); with
        ``params`` 'first_bias' or 'context' the span of those parameters in ``spec``'s vector, which it then needs."""
        d: dict[str, Any] = {"name": self.name, **{k: getattr(self, k) for k in OPERATOR_FIELDS[self.name]}}
        if self.params != "all" and self.name != "none":
            if spec is None:
                raise ValueError(f"adaptation.params {self.params!r} needs the policy's layout: "
                                 "use TrainConfig.operator()")  # fmt: skip
            d["span"] = list(spec.bias_span(0) if self.params == "first_bias" else spec.context_span())
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AdaptationConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"adaptation: unknown setting(s) {unknown}; settings are {sorted(names)}")
        return cls(**data)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of one ES-MAML (or non-meta baseline) run."""

    family: str = "four_corners"
    """Task family to train on (see ``metactl families``)."""
    meta: bool = True
    """True: ES-MAML (objective after adaptation). False: the non-meta baseline with the same
    ES budget — one policy for the whole task mixture (domain randomization)."""
    specialist_task: int | None = None
    """With --no-meta: train a *specialist*, plain ES on held-out test task K alone (``family.test_tasks()[K]``,
    see ``metactl families``) with the episodes of the ES-MAML run of the same settings: the reference of
    ES-MAML's held-out table (``metactl eval``). None: tasks drawn from the training distribution."""
    policy: str = "linear"
    """Policy architecture: 'linear' or 'mlp' (tanh units)."""
    hidden: tuple[int, ...] = (32, 32)
    """Hidden layer sizes of the 'mlp' policy."""
    context: int = 0
    """Context inputs of the policy: this many parameters fed to its first layer beside the observation
    (CAVIA); adapt them alone with ``adaptation.params context``. 0: none."""
    iterations: int = 60
    """Outer ES iterations."""
    directions: int = 16
    """Antithetic perturbation pairs per iteration (n)."""
    sigma: float = 0.1
    """Outer perturbation scale."""
    learning_rate: float = 0.02
    """Outer step size (beta)."""
    optimizer: str = "adam"
    """Outer optimizer: 'adam' or 'sgd' (plain ascent, as the reference code)."""
    tasks_per_iteration: int = 4
    """Training tasks per iteration, shared by all perturbations (common random numbers)."""
    adaptation: AdaptationConfig = AdaptationConfig()
    """Adaptation operator U(theta, T)."""
    horizon: int = 0
    """Episode length in control steps; 0 uses the family's default."""
    normalize_obs: bool = True
    """Learn a running observation normalizer (ARS V2), frozen into the export."""
    eval_every: int = 5
    """Evaluate on the held-out test tasks every this many iterations (for the learning curve)."""
    eval_repeats: int = 2
    """Independent adaptation runs per held-out task in each evaluation."""
    checkpoint_every: int = 5
    """Write a checkpoint every this many iterations (and at the end)."""
    top_directions: int = 0
    """Use only the best b antithetic pairs (by max of their two values) for the step (ARS); 0 = all."""
    return_normalization: str = "zscore"
    """'zscore' (ES-MAML reference) or 'ars': divide by the std of the kept returns, no 1/sigma (ARS V2-t)."""
    seed: int = 0
    """Seed of every random choice in the run."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        if isinstance(self.adaptation, dict):
            object.__setattr__(self, "adaptation", AdaptationConfig.from_dict(self.adaptation))
        self.validate()

    def validate(self) -> None:
        if self.family not in FAMILIES and self.family not in BENCHMARK_FAMILIES:
            raise ConfigError(f"family: unknown task family {self.family!r}; choose one of: {', '.join(FAMILIES)}")
        if self.policy not in ("linear", "mlp"):
            raise ConfigError(f"policy: must be 'linear' or 'mlp', got {self.policy!r}")
        if self.optimizer not in ("adam", "sgd"):
            raise ConfigError(f"optimizer: must be 'adam' or 'sgd', got {self.optimizer!r}")
        for name in (
            "iterations",
            "directions",
            "tasks_per_iteration",
            "eval_every",
            "eval_repeats",
            "checkpoint_every",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name}: must be a positive integer, got {value!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"seed: must be an integer >= 0, got {self.seed!r}")
        if not 0 <= self.top_directions <= self.directions:
            raise ConfigError(
                f"top_directions: must be in 0..directions ({self.directions}), got {self.top_directions}"
            )
        if self.return_normalization not in ("zscore", "ars"):
            raise ConfigError(f"return_normalization: must be 'zscore' or 'ars', got {self.return_normalization!r}")
        self._validate_specialist()
        if not isinstance(self.horizon, int) or self.horizon < 0:
            raise ConfigError(f"horizon: must be >= 0 (0 = family default), got {self.horizon}")
        for name in ("sigma", "learning_rate"):
            if not float(getattr(self, name)) > 0:
                raise ConfigError(f"{name}: must be > 0, got {getattr(self, name)!r}")
        if any(h < 1 for h in self.hidden):
            raise ConfigError(f"hidden: layer sizes must be positive, got {list(self.hidden)}")
        if self.policy == "mlp" and not self.hidden:
            raise ConfigError("hidden: an 'mlp' policy needs at least one hidden layer size, e.g. --hidden 32 32")
        if not isinstance(self.adaptation, AdaptationConfig):
            raise ConfigError(f"adaptation: must be a table of operator settings, got {self.adaptation!r}")
        if self.adaptation.params not in ("all", "first_bias", "context"):
            raise ConfigError(
                f"adaptation.params: must be 'all', 'first_bias' or 'context', got {self.adaptation.params!r}"
            )
        if isinstance(self.context, bool) or not isinstance(self.context, int) or self.context < 0:
            raise ConfigError(f"context: must be an integer >= 0, got {self.context!r}")
        if self.adaptation.params == "context" and not self.context and self.adaptation.name != "none":
            raise ConfigError("adaptation.params: 'context' adapts the policy's context inputs, but context is 0; "
                              "give the policy some, e.g. --context 2")  # fmt: skip
        if self.adaptation.name not in OPERATOR_FIELDS:
            raise ConfigError(
                f"adaptation: unknown operator {self.adaptation.name!r}; use one of {list(OPERATOR_FIELDS)}"
            )
        try:
            self.operator()
        except (AdaptationError, TypeError) as e:
            raise ConfigError(f"adaptation: {e}") from None

    def _validate_specialist(self) -> None:
        k = self.specialist_task
        if k is None:
            return
        n = len(make_family(self.family).test_tasks())
        if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k < n:
            raise ConfigError(f"specialist_task: {self.family} has test tasks 0..{n - 1} (see 'metactl families'), "
                              f"got {k!r}")  # fmt: skip
        if self.meta:
            raise ConfigError(
                "specialist_task: a specialist is plain ES on one task, without meta-learning; add --no-meta"
            )

    def policy_spec(self) -> PolicySpec:
        """The policy architecture this run trains, on its family's observations and actions."""
        family = make_family(self.family)
        return PolicySpec(
            kind=self.policy,
            obs_dim=family.obs_dim,
            act_dim=family.act_dim,
            action_low=tuple(float(v) for v in family.action_low),
            action_high=tuple(float(v) for v in family.action_high),
            hidden=self.hidden if self.policy == "mlp" else (),
            context=self.context,
        )

    def operator(self) -> AdaptationOperator:
        """The adaptation operator U, its ``span`` resolved on the policy's parameter layout."""
        return make_operator(self.adaptation.operator_dict(self.policy_spec()))

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["hidden"] = list(self.hidden)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ConfigError(f"unknown training setting(s) {sorted(unknown)}; known: {sorted(names)}")
        try:
            return cls(**data)
        except PolicyError as e:
            raise ConfigError(str(e)) from None

    def dumps(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


# Sparse reward: monotone hill climbing explores where gradient steps see a flat landscape.
_NAVIGATION: dict[str, Any] = {
    "iterations": 150,
    "directions": 32,
    "tasks_per_iteration": 8,
    "eval_every": 10,
    "eval_repeats": 8,
    "adaptation": {"name": "hill_climb", "queries": 10, "sigma": 1.0, "mode": "average"},
}
# Locomotion: one ES-gradient step from 8 queries was too noisy to learn on HalfCheetah FB at this
# budget; monotone hill climbing over 8 queries gives a clear meta-learning signal. 100-step (5 s) episodes.
_LOCOMOTION: dict[str, Any] = {
    "iterations": 60,
    "directions": 12,
    "tasks_per_iteration": 4,
    "horizon": 100,
    "adaptation": {"name": "hill_climb", "queries": 8, "sigma": 0.1, "mode": "average"},
}
# Forward-backward: the queries must reverse the gait. Chosen on validation tasks (docs/es_maml.md, seeds 0-3):
# an MLP of 16 whose first-layer biases alone are adapted, at sigma 1 (context adaptation), 168.5 +- 10.6 after
# adaptation against the linear preset's 114.3 +- 10.6; held out, 0.45 +- 0.05 of the specialist against 0.32.
_FORWARD_BACKWARD: dict[str, Any] = {
    **_LOCOMOTION,
    "policy": "mlp",
    "hidden": (16,),
    "adaptation": {**_LOCOMOTION["adaptation"], "sigma": 1.0, "params": "first_bias"},
}
PRESETS: dict[str, dict[str, Any]] = {
    "four_corners": _NAVIGATION,
    "multi_goal_circle": _NAVIGATION,
    "halfcheetah_fb": _FORWARD_BACKWARD,
    "halfcheetah_vel": _LOCOMOTION,
    "ant_fb": _LOCOMOTION,
}
"""Per-family defaults, applied before command-line overrides."""


def config_for(family: str, **overrides: Any) -> TrainConfig:
    """The family's preset with ``overrides`` (None values are ignored) applied on top, field by field: an
    ``adaptation`` override dict changes only the operator settings it names."""
    if family not in FAMILIES:
        raise ConfigError(f"family: unknown task family {family!r}; choose one of: {', '.join(FAMILIES)}")
    data: dict[str, Any] = {"family": family, **copy.deepcopy(PRESETS.get(family, {}))}
    for key, value in overrides.items():
        if value is None:
            continue
        if key == "adaptation" and isinstance(value, dict):
            value = {**data.get("adaptation", {}), **value}
        elif key == "adaptation" and isinstance(value, AdaptationConfig):
            value = dataclasses.asdict(value)
        data[key] = value
    return TrainConfig.from_dict(data)
