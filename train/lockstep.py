"""Adapt many (parameters, task) pairs in lockstep through the batched simulator.

Each row runs the same adaptation operator (ES-MAML's U(theta, T)); one round of
every row becomes one batched rollout. Rows that share a task seed see the same
initial states and adaptation noise (common random numbers), which is what makes
antithetic ES-MAML differences low-variance.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from metactl.controllers import AdaptationOperator, NormalizerSnapshot, PolicySpec
from metactl.sim import RolloutResult, Task, TaskFamily
from metactl.train.workers import Backend, InProcess, RolloutJob, chunk_bounds

EVAL_ROUND = 10_000
"""Round index used to derive the seed of the evaluation episode after adaptation."""


@dataclasses.dataclass
class ObsStats:
    """Sums of observations for the running normalizer."""

    count: int
    total: np.ndarray
    total_sq: np.ndarray

    def add(self, count: int, total: np.ndarray, total_sq: np.ndarray) -> None:
        self.count += count
        self.total += total
        self.total_sq += total_sq


def episode_seed(task_seed: int, round_index: int) -> int:
    return int(np.random.SeedSequence([task_seed, round_index]).generate_state(1)[0] >> 1)


@dataclasses.dataclass
class Evaluator:
    """Runs episodes of one family with per-row policy parameters."""

    family: TaskFamily
    spec: PolicySpec
    normalizer: NormalizerSnapshot
    horizon: int
    backend: Backend = dataclasses.field(default_factory=InProcess)

    def __post_init__(self) -> None:
        self.stats = ObsStats(0, np.zeros(self.spec.obs_dim), np.zeros(self.spec.obs_dim))
        self.episodes = 0
        self.env_steps = 0

    def returns(self, params: np.ndarray, tasks: Sequence[Task], seeds: Sequence[int]) -> np.ndarray:
        """One episode per row: ``params`` [M, P], ``tasks`` [M], ``seeds`` [M] -> returns [M]."""
        return self.rollouts(params, tasks, seeds).returns

    def rollouts(self, params: np.ndarray, tasks: Sequence[Task], seeds: Sequence[int]) -> RolloutResult:
        """``returns`` with the rest of each episode: lengths and, for a robot that travels, displacement [M]."""
        spec, norm = self.spec, self.normalizer
        jobs = [
            RolloutJob(
                self.family.name,
                spec,
                norm.mean,
                norm.std,
                self.horizon,
                params[a:b],
                tuple(tasks[a:b]),
                tuple(int(s) for s in seeds[a:b]),
            )
            for a, b in chunk_bounds(len(tasks), self.backend.workers)
        ]
        results = self.backend.map(jobs)
        lengths = np.concatenate([r.lengths for r in results])
        obs_sum = np.concatenate([r.obs_sum for r in results])
        obs_sumsq = np.concatenate([r.obs_sumsq for r in results])
        # Sum per-episode rows in row order: the total is the same however rows were chunked.
        self.stats.add(int(lengths.sum()), obs_sum.sum(axis=0), obs_sumsq.sum(axis=0))
        self.episodes += len(tasks)
        self.env_steps += int(lengths.sum())
        moved = [r.displacement for r in results]
        displacement = None if any(d is None for d in moved) else np.concatenate(moved)  # type: ignore[arg-type]
        return RolloutResult(np.concatenate([r.returns for r in results]), lengths, obs_sum, obs_sumsq,
                             displacement=displacement)  # fmt: skip

    def adapt(
        self, operator: AdaptationOperator, params: np.ndarray, tasks: Sequence[Task], task_seeds: Sequence[int]
    ) -> np.ndarray:
        """U(theta_i, T_i) for every row; returns adapted parameters [M, P]."""
        states = [operator.start(p, s) for p, s in zip(params, task_seeds, strict=True)]
        for r, q in enumerate(operator.schedule()):
            asked = np.concatenate([operator.ask(s) for s in states])
            rows = [t for t in tasks for _ in range(q)]
            seeds = [episode_seed(s, slot) for s in task_seeds for slot in operator.seed_slots(r)]
            returns = self.returns(asked, rows, seeds).reshape(len(states), q)
            states = [operator.tell(s, ret) for s, ret in zip(states, returns, strict=True)]
        return np.stack([s.params for s in states])

    def evaluate(self, params: np.ndarray, tasks: Sequence[Task], task_seeds: Sequence[int]) -> np.ndarray:
        """Return of every row on its task's evaluation episode (the meta-objective f)."""
        return self.evaluation_rollouts(params, tasks, task_seeds).returns

    def evaluation_rollouts(
        self, params: np.ndarray, tasks: Sequence[Task], task_seeds: Sequence[int]
    ) -> RolloutResult:
        """``evaluate`` with the rest of each evaluation episode (``rollouts``)."""
        return self.rollouts(params, tasks, [episode_seed(s, EVAL_ROUND) for s in task_seeds])
