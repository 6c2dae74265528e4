"""Task families: what a task is, how tasks are drawn, and the fixed train/test split.

A task is a frozen dataclass of the physical and goal parameters of one problem
instance (ES-MAML, Song et al., ICLR 2020, Sec. 5). A ``TaskFamily`` draws
training tasks from its training distribution, lists its fixed held-out test
tasks, and builds a ``BatchSim`` that steps many instances of the family at once.
"""

from __future__ import annotations

import dataclasses
import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np


class TaskError(ValueError):
    """A task or task family was named or described wrongly (user-facing)."""


@dataclasses.dataclass(frozen=True)
class Task:
    """Base of all task dataclasses; fields are plain floats so they serialize to JSON."""

    def to_dict(self) -> dict[str, Any]:
        return {"type": type(self).__name__, **dataclasses.asdict(self)}


@dataclasses.dataclass(frozen=True)
class GoalTask(Task):
    """Navigate to ``goal``; ``distractors`` are wrong goals (multi-goal circle only)."""

    goal: tuple[float, float]
    distractors: tuple[tuple[float, float], ...] = ()


@dataclasses.dataclass(frozen=True)
class DirectionTask(Task):
    """Run in ``direction`` (+1 forward, -1 backward) with body masses scaled by ``mass_scale``."""

    direction: float
    mass_scale: float = 1.0


@dataclasses.dataclass(frozen=True)
class VelocityTask(Task):
    """Run forward at ``velocity`` m/s with body masses scaled by ``mass_scale``."""

    velocity: float
    mass_scale: float = 1.0


@dataclasses.dataclass(frozen=True)
class DisabledJointTask(Task):
    """Actuator ``joint`` (model order) gives no torque: the robot is damaged (GrBAL, Nagabandi et al. 2019);
    ``joint = -1``: none, the healthy robot."""

    joint: int


@dataclasses.dataclass(frozen=True)
class CrippledLegTask(Task):
    """Leg ``leg`` is crippled (Ant crippled leg, Nagabandi et al. 2019); ``leg = -1``: none, the healthy robot."""

    leg: int


@dataclasses.dataclass(frozen=True)
class TerrainTask(Task):
    """Ground height: ``ramps`` are (x_start [m], length [m], rise [m]) pieces added up along x; ``name`` labels it."""

    ramps: tuple[tuple[float, float, float], ...]
    name: str = ""


@dataclasses.dataclass(frozen=True)
class PierTask(Task):
    """A pier of floating blocks along x, block k with damping ``damping[k]`` [N s/m] on its vertical spring."""

    damping: tuple[float, ...]
    name: str = ""


@dataclasses.dataclass(frozen=True)
class ChangeTask(Task):
    """The dynamic setting GrBAL / ReBAL are named for: task ``first`` until control step ``at_step`` of the episode,
    then ``then`` (e.g. a joint that fails mid-run); both of one family, with the same robot (state layout)."""

    first: Task
    then: Task
    at_step: int
    name: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"type": "ChangeTask", "first": self.first.to_dict(), "then": self.then.to_dict(),
                "at_step": self.at_step, "name": self.name}  # fmt: skip


TASK_TYPES: dict[str, type[Task]] = {
    t.__name__: t
    for t in (
        GoalTask,
        DirectionTask,
        VelocityTask,
        DisabledJointTask,
        CrippledLegTask,
        TerrainTask,
        PierTask,
        ChangeTask,
    )
}


def task_from_dict(data: dict[str, Any]) -> Task:
    """Inverse of ``Task.to_dict``; raises ``TaskError`` naming the bad field."""
    data = dict(data)
    kind = data.pop("type", None)
    if kind not in TASK_TYPES:
        raise TaskError(f"unknown task type {kind!r}; expected one of {sorted(TASK_TYPES)}")
    cls = TASK_TYPES[kind]
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise TaskError(f"task type {kind} has no field(s) {sorted(unknown)}; fields are {sorted(names)}")
    for key in ("first", "then"):
        if key in data:
            if not isinstance(data[key], dict):
                raise TaskError(f"ChangeTask.{key} must be a task table, got {data[key]!r}")
            data[key] = task_from_dict(data[key])
    for key in ("goal", "damping"):
        if key in data:
            data[key] = tuple(float(v) for v in data[key])
    for key in ("distractors", "ramps"):
        if key in data:
            data[key] = tuple(tuple(float(v) for v in g) for g in data[key])
    bad = [k for k, v in data.items() if not _finite(v)]
    if bad:
        raise TaskError(f"task type {kind} has non-finite {bad[0]} = {data[bad[0]]!r}; give finite numbers")
    return cls(**data)


def _finite(value: Any) -> bool:
    """Every number in ``value`` (nested tuples included) is finite."""
    if isinstance(value, tuple):
        return all(_finite(v) for v in value)
    return not isinstance(value, float) or math.isfinite(value)


class BatchSim(ABC):
    """N instances of one task family stepped together; arrays are float64, shapes [N, ...]."""

    num_envs: int
    obs_dim: int
    act_dim: int
    x: np.ndarray | None = None
    """Root x position [N] (m), live, for simulators of a robot that travels (locomotion); None otherwise."""

    @abstractmethod
    def reset(self, seeds: Sequence[int]) -> np.ndarray:
        """Start a new episode in every instance; ``seeds`` [N] fix the initial-state noise."""

    @abstractmethod
    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Apply ``actions`` [N, act_dim]; return (obs [N, obs_dim], reward [N], terminated [N])."""


class TaskFamily(ABC):
    """A distribution of tasks with a fixed, documented train/test split."""

    name: ClassVar[str]
    env_id: ClassVar[str]
    horizon: int
    control_period: float
    observation_names: tuple[str, ...]
    action_names: tuple[str, ...]
    action_low: np.ndarray
    action_high: np.ndarray
    vectorized: ClassVar[bool] = False
    """True when ``BatchSim`` steps all instances in one numpy call: so cheap that worker
    processes cost more in messaging than they save, and the default is to run in-process."""

    @property
    def obs_dim(self) -> int:
        return len(self.observation_names)

    @property
    def act_dim(self) -> int:
        return len(self.action_names)

    @abstractmethod
    def sample_tasks(self, rng: np.random.Generator, n: int) -> list[Task]:
        """Draw ``n`` tasks from the training split."""

    @abstractmethod
    def test_tasks(self) -> list[Task]:
        """The fixed held-out test tasks (never produced by ``sample_tasks``)."""

    @abstractmethod
    def make_batch(self, tasks: Sequence[Task]) -> BatchSim:
        """A simulator stepping one instance per task in ``tasks``."""

    def check_task(self, task: Task, task_type: type[Task]) -> None:
        if not isinstance(task, task_type):
            raise TaskError(f"family {self.name!r} takes {task_type.__name__}, got {type(task).__name__}")
