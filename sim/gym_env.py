"""Gymnasium view of a task family: one instance of the same simulator the batched engine steps."""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium
import numpy as np

from metactl.sim.tasks import Task


class TaskFamilyEnv(gymnasium.Env):
    """A single-instance env with ``sample_tasks`` / ``set_task`` / ``test_tasks`` for meta-RL.

    ``reset(seed=s)`` starts the same episode as ``BatchSim.reset([s])``; episodes are
    truncated at the family's horizon.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": []}

    def __init__(self, family: str, task: Task | None = None):
        from metactl.sim.registry import make_family

        self.family = make_family(family)
        self.observation_space = gymnasium.spaces.Box(-np.inf, np.inf, (self.family.obs_dim,), np.float64)
        self.action_space = gymnasium.spaces.Box(
            self.family.action_low.astype(np.float32), self.family.action_high.astype(np.float32), dtype=np.float32
        )
        self._horizon = self.family.horizon
        self.set_task(task if task is not None else self.family.test_tasks()[0])
        self._t = 0

    def sample_tasks(self, rng: np.random.Generator, n: int) -> list[Task]:
        return self.family.sample_tasks(rng, n)

    def test_tasks(self) -> list[Task]:
        return self.family.test_tasks()

    def set_task(self, task: Task) -> None:
        self._sim = self.family.make_batch([task])
        self.task = task

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):  # type: ignore[override]
        super().reset(seed=seed)
        episode_seed = seed if seed is not None else int(self.np_random.integers(2**31 - 1))
        self._t = 0
        return self._sim.reset([episode_seed])[0], {}

    def step(self, action: np.ndarray):  # type: ignore[override]
        obs, reward, terminated = self._sim.step(np.asarray(action, dtype=np.float64)[None])
        self._t += 1
        return obs[0], float(reward[0]), bool(terminated[0]), self._t >= self._horizon, {}
