"""2-D point navigation with sparse reward: Four Corners and the multi-goal circle.

From ES-MAML (Song et al., ICLR 2020, Sec. 5.1 and google-research ``es_maml``):
the agent starts at the origin and must find an unseen goal; it observes only its
own position. Reward per step is ``-4 + max(0, 4 - d^2)`` with ``d`` the distance to
the goal, so it is flat (-4) until the agent is within 2 of the goal. Positions
are clipped to [-5, 5]. The circle task puts four goals on a circle of radius
sqrt(8); coming within 2 of a wrong goal costs ``10000 * min(0, d_wrong^2 - 4)``.

Actions are velocities in [-1, 1]^2 (units/s) applied for ``dt`` = 0.1 s.

Train/test split (fixed):
- Four Corners: train goals are a corner (+-2, +-2) moved by an offset drawn from
  [-0.25, 0.25]^2 with |offset|_inf >= 0.05; test goals are the four exact corners.
- Circle: train goal sets are rotated by phi ~ U[0, 90) deg with |phi - 45| >= 5 deg;
  the test set is phi = 45 deg (the goals are the four corners), each goal in turn.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from metactl.sim.tasks import BatchSim, GoalTask, Task, TaskFamily

CORNERS = ((2.0, 2.0), (-2.0, 2.0), (-2.0, -2.0), (2.0, -2.0))
POSITION_LIMIT = 5.0
DT = 0.1
WRONG_GOAL_WEIGHT = 10000.0


class PointBatch(BatchSim):
    """Vectorized point-mass navigation; no initial-state noise (the start is the origin)."""

    def __init__(self, tasks: Sequence[GoalTask]):
        self.num_envs, self.obs_dim, self.act_dim = len(tasks), 2, 2
        self.goals = np.array([t.goal for t in tasks], dtype=np.float64).reshape(-1, 2)
        n_wrong = {len(t.distractors) for t in tasks}
        if len(n_wrong) > 1:
            raise ValueError("all tasks in one batch need the same number of distractor goals")
        k = n_wrong.pop() if n_wrong else 0
        self.distractors = np.array([t.distractors for t in tasks], dtype=np.float64).reshape(self.num_envs, k, 2)
        self.pos = np.zeros((self.num_envs, 2))

    def reset(self, seeds: Sequence[int]) -> np.ndarray:
        self.pos[:] = 0.0
        return self.pos.copy()

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        np.clip(self.pos + DT * np.clip(actions, -1.0, 1.0), -POSITION_LIMIT, POSITION_LIMIT, out=self.pos)
        d2 = np.sum((self.pos - self.goals) ** 2, axis=1)
        reward = -4.0 + np.maximum(0.0, 4.0 - d2)
        if self.distractors.shape[1]:
            d2_wrong = np.sum((self.pos[:, None, :] - self.distractors) ** 2, axis=2)
            reward += WRONG_GOAL_WEIGHT * np.minimum(0.0, d2_wrong - 4.0).sum(axis=1)
        return self.pos.copy(), reward, np.zeros(self.num_envs, dtype=bool)


class _PointFamily(TaskFamily):
    vectorized = True
    horizon = 100
    control_period = DT
    observation_names = ("x", "y")
    action_names = ("vx", "vy")
    action_low = np.array([-1.0, -1.0])
    action_high = np.array([1.0, 1.0])

    def make_batch(self, tasks: Sequence[Task]) -> PointBatch:
        for t in tasks:
            self.check_task(t, GoalTask)
        return PointBatch(tasks)  # type: ignore[arg-type]


class FourCorners(_PointFamily):
    """Goal is one of (+-2, +-2); see the module docstring for the split."""

    name = "four_corners"
    env_id = "metactl/FourCorners-v0"

    def sample_tasks(self, rng: np.random.Generator, n: int) -> list[Task]:
        tasks: list[Task] = []
        for _ in range(n):
            corner = np.array(CORNERS[rng.integers(4)])
            offset = rng.uniform(-0.25, 0.25, size=2)
            while np.max(np.abs(offset)) < 0.05:
                offset = rng.uniform(-0.25, 0.25, size=2)
            tasks.append(GoalTask(goal=tuple(float(v) for v in corner + offset)))
        return tasks

    def test_tasks(self) -> list[Task]:
        return [GoalTask(goal=c) for c in CORNERS]


def _circle_task(phi: float, k: int) -> GoalTask:
    radius = np.sqrt(8.0)
    angles = phi + np.arange(4) * np.pi / 2
    goals = [(float(radius * np.cos(a)), float(radius * np.sin(a))) for a in angles]
    return GoalTask(goal=goals[k], distractors=tuple(g for i, g in enumerate(goals) if i != k))


class MultiGoalCircle(_PointFamily):
    """Four goals on a circle of radius sqrt(8); the wrong three are penalized."""

    name = "multi_goal_circle"
    env_id = "metactl/MultiGoalCircle-v0"

    def sample_tasks(self, rng: np.random.Generator, n: int) -> list[Task]:
        tasks: list[Task] = []
        for _ in range(n):
            phi = rng.uniform(0.0, 90.0)
            while abs(phi - 45.0) < 5.0:
                phi = rng.uniform(0.0, 90.0)
            tasks.append(_circle_task(np.deg2rad(phi), int(rng.integers(4))))
        return tasks

    def test_tasks(self) -> list[Task]:
        return [_circle_task(np.deg2rad(45.0), k) for k in range(4)]
