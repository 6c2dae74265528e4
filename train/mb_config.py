"""Configuration of model-based meta-training (GrBAL, ReBAL, MB): a frozen dataclass, validated by field."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from metactl.controllers.dynamics import DynamicsError, with_posture_limit
from metactl.train.config import ConfigError
from metactl.train.meta_settings import MetaFields, resolve_inner_steps, validate_meta

METHODS = ("grbal", "rebal", "mb")
PLANNERS = ("mppi", "cem", "random_shooting")
DEFAULT_WINDOW = {"grbal": 16, "rebal": 8, "mb": 16}
"""M per method when ``window`` is 0. GrBAL and MB (whose M is MB+DE's window) keep the reference's 16; ReBAL reads 8.
Ant leg 3, mean held-out return over seeds (50 episodes each): ReBAL with M = 8 31.7 (seeds 0-5; chosen on seeds 0-2,
then 32.6 on seeds 3-5), M = 4 32.1 (seeds 0-2), M = 16 19.7, M = 32 13.2 (seeds 0-1); MB 28.5. Why is open: the
M = 8 model's held-out prediction error is no lower (docs/grbal.md)."""


@dataclasses.dataclass(frozen=True)
class MBConfig(MetaFields):
    """Hyperparameters of one GrBAL / ReBAL / MB run (Nagabandi et al., ICLR 2019; the reference schedule is
    50 iterations x 5 rollouts x 1000 steps = 250k environment steps). GrBAL's meta-learner and inner step are
    the fields of ``MetaFields`` (listed first)."""

    method: str = "grbal"
    """'grbal' (MAML on windows), 'rebal' (recurrent) or 'mb' (non-adaptive model; also MB+DE at evaluation)."""
    family: str = "halfcheetah_disabled_joint"
    """Task family (see ``metactl families``)."""
    iterations: int = 30
    """Data-collection iterations; the first collects with uniformly random actions."""
    rollouts: int = 5
    """Episodes per iteration, each on a newly drawn training task, run in lockstep."""
    oracle_rollouts: int = 0
    """Extra episodes per iteration (from the second on), planned on the true simulator (the oracle: same planner and
    settings, ``train.oracle``) on newly drawn *training* tasks and added to the data. The method's own controller
    runs slow gaits, so its model never sees the fast ones a good plan needs (docs/grbal.md, "Against the oracle").
    0: own data only, as the reference."""
    episode_steps: int = 0
    """Control steps per collected episode; 0 uses the family's horizon."""
    decision_steps: int = 1
    """Control steps per decision: the planner acts every this many steps and holds its action in between, and the
    model predicts (and adapts on) transitions of this many steps. A coarser step looks further ahead for the same
    planning horizon (horizon in seconds = planning_horizon x decision_steps x the family's control period)."""
    hidden: tuple[int, ...] = (128, 128)
    """ReLU MLP widths of the dynamics model (the reference code's 3x512 is ~15x slower to plan with)."""
    rnn_hidden: int = 64
    """ReBAL's LSTM state size."""
    window: int = 0
    """M: past transitions the model adapts on; 0 = the method's default (``DEFAULT_WINDOW``)."""
    future: int = 16
    """K: following transitions the adapted model is scored on (meta-loss)."""
    inner_lr: float = 0.01
    """alpha: step size of the adaptation step (GrBAL; also MB+DE's online step)."""
    first_order: bool = False
    """GrBAL: drop the second-order term of the meta-gradient; the same as meta_learner 'fomaml' (kept for
    --first-order and older configs)."""
    meta_batch: int = 40
    """Windows per meta-gradient step (GrBAL, ReBAL); MB uses meta_batch x (M + K) transitions per step. The
    reference's 10-16 left GrBAL's adapted loss above MB's here (HalfCheetah disabled joint, 3000 steps on the
    same data: held-out K-loss 0.101 at 10 vs MB 0.093; 0.089 at 40)."""
    train_steps: int = 400
    """Gradient steps on all data collected so far, per iteration."""
    learning_rate: float = 1e-3
    """Adam step size of the outer (meta-)optimization."""
    planner: str = "mppi"
    """MPC planner: 'mppi' (warm-started), 'cem' or 'random_shooting'."""
    samples: int = 100
    """Candidate action sequences per control step."""
    planning_horizon: int = 10
    """Control steps each candidate looks ahead."""
    temperature: float = 0.1
    """MPPI: weight exp(-cost / temperature). 0.1 with noise 0.6 tripled the return of 0.5 / 0.3 when planning with
    the true (MuJoCo) dynamics on HalfCheetah joint 0 (289 vs 81 in 300 steps; random shooting 500 x 10: 196)."""
    noise_std: float = 0.6
    """MPPI / CEM: exploration noise, relative to half the action range."""
    posture_limit: float | None = None
    """Bound [rad] on the robot's posture signal in the planner's cost (HalfCheetah: the torso's pitch; Ant: its tilt
    from upright): a predicted step beyond +-this costs as much as leaving the healthy range. None: the family's
    default (``reward_spec["posture_limit"]``: HalfCheetah 1.3, chosen on validation tasks; the Ant none, as no
    bound helped it there); 0: no bound. Unbounded, every planner here flips the cheetah onto its back, the oracle
    too, and the models learn from upside-down data (docs/grbal.md, "Upright")."""
    eval_every: int = 10
    """Evaluate on the held-out test tasks every this many iterations (and at the end); 0 = only at the end."""
    eval_steps: int = 0
    """Control steps per held-out evaluation episode; 0 uses the family's horizon."""
    checkpoint_every: int = 1
    """Checkpoint every this many iterations (and at the end)."""
    seed: int = 0
    """Seed of every random choice in the run."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        if self.first_order is True and self.meta_learner in ("maml", "fomaml"):  # --first-order: FOMAML
            object.__setattr__(self, "meta_learner", "fomaml")
        elif self.meta_learner == "fomaml" and self.first_order is False:
            object.__setattr__(self, "first_order", True)
        object.__setattr__(self, "inner_steps", resolve_inner_steps(self.meta_learner, self.inner_steps))
        if self.window == 0 and not isinstance(self.window, bool) and self.method in DEFAULT_WINDOW:
            # resolved here, so config.json records the M used; False stays for validate() to refuse
            object.__setattr__(self, "window", DEFAULT_WINDOW[self.method])
        self.validate()

    def validate(self) -> None:
        from metactl.sim.registry import FAMILIES

        if self.method not in METHODS:
            raise ConfigError(f"method: must be one of {METHODS}, got {self.method!r}")
        usable = [name for name, cls in FAMILIES.items() if getattr(cls, "reward_spec", None)]
        if self.family not in usable:
            raise ConfigError(
                f"family: {self.family!r} has no reward_spec for a model-based planner; "
                f"choose one of: {', '.join(usable)}"
            )
        if self.planner not in PLANNERS:
            raise ConfigError(f"planner: must be one of {PLANNERS}, got {self.planner!r}")
        positive = ("iterations", "rollouts", "window", "future", "meta_batch", "train_steps", "samples",
                    "planning_horizon", "checkpoint_every", "rnn_hidden", "decision_steps")  # fmt: skip
        for name in positive:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name}: must be a positive integer, got {value!r}")
        for name in ("oracle_rollouts", "episode_steps", "eval_every", "eval_steps", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"{name}: must be an integer >= 0, got {value!r}")
        self._validate_posture()
        if not isinstance(self.first_order, bool):
            raise ConfigError(f"first_order: must be true or false, got {self.first_order!r}")
        if self.first_order and self.meta_learner != "fomaml":
            raise ConfigError(f"first_order: is meta_learner 'fomaml'; it cannot combine with {self.meta_learner!r}")
        validate_meta(self)
        if self.method != "grbal":
            for name, default in (("meta_learner", "maml"), ("inner_step", "sgd"), ("inner_steps", 1)):
                if getattr(self, name) != default:
                    raise ConfigError(f"{name}: applies to method 'grbal' only (got {getattr(self, name)!r} for "
                                      f"{self.method!r})")  # fmt: skip
        if not self.hidden or min(self.hidden) < 1:
            raise ConfigError(f"hidden: every width must be >= 1, got {self.hidden}")
        for name in ("inner_lr", "learning_rate", "temperature", "noise_std"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or isinstance(value, bool) or not value > 0:
                raise ConfigError(f"{name}: must be a number > 0, got {value!r}")

    def _validate_posture(self) -> None:
        from metactl.sim.registry import FAMILIES

        try:
            self.reward_spec(getattr(FAMILIES[self.family], "reward_spec", {}))
        except DynamicsError as e:
            raise ConfigError(f"posture_limit: {e} (family {self.family!r})") from None

    def reward_spec(self, family_spec: dict[str, Any]) -> dict[str, Any]:
        """The planner's cost spec of this run: the family's ``reward_spec`` with this run's posture limit."""
        return with_posture_limit(family_spec, self.posture_limit)

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "hidden": list(self.hidden)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MBConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"unknown setting(s) {unknown}; settings are {sorted(names)}")
        return cls(**data)

    def replace(self, **changes: Any) -> MBConfig:
        return dataclasses.replace(self, **changes)
