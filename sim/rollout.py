"""Closed-loop batched rollouts: one batched policy call per control step for N instances."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np

from sim.tasks import BatchSim

BatchPolicy = Callable[[np.ndarray], np.ndarray]
"""Maps observations [N, obs_dim] to actions [N, act_dim]."""


@dataclasses.dataclass
class RolloutResult:
    """Episode returns and lengths [N]; observation sums over every step the policy saw
    (alive instances only), for running normalizers; ``observations`` [T, N, obs_dim] if recorded."""

    returns: np.ndarray
    lengths: np.ndarray
    obs_count: int
    obs_sum: np.ndarray
    obs_sumsq: np.ndarray
    observations: np.ndarray | None = None


def rollout(
    sim: BatchSim, policy: BatchPolicy, seeds: Sequence[int], horizon: int, record: bool = False
) -> RolloutResult:
    """Run one episode in every instance of ``sim``; rewards stop counting once an instance terminates."""
    n = sim.num_envs
    if len(seeds) != n:
        raise ValueError(f"got {len(seeds)} seeds for {n} instances")
    obs = sim.reset(seeds)
    returns = np.zeros(n)
    lengths = np.zeros(n, dtype=np.int64)
    alive = np.ones(n, dtype=bool)
    obs_sum = np.zeros(sim.obs_dim)
    obs_sumsq = np.zeros(sim.obs_dim)
    count = 0
    recorded = np.zeros((horizon, n, sim.obs_dim)) if record else None
    for t in range(horizon):
        seen = obs if alive.all() else obs[alive]
        obs_sum += seen.sum(axis=0)
        obs_sumsq += np.einsum("ij,ij->j", seen, seen)
        count += len(seen)
        if recorded is not None:
            recorded[t] = obs
        obs, reward, terminated = sim.step(policy(obs))
        returns += np.where(alive, reward, 0.0)
        lengths += alive
        alive &= ~terminated
        if not alive.any():
            if recorded is not None:
                recorded = recorded[: t + 1]
            break
    return RolloutResult(returns, lengths, count, obs_sum, obs_sumsq, recorded)
