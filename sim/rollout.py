"""Closed-loop batched rollouts: one batched policy call per control step for N instances."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np

from metactl.sim.tasks import BatchSim

BatchPolicy = Callable[[np.ndarray], np.ndarray]
"""Maps observations [N, obs_dim] to actions [N, act_dim]."""


@dataclasses.dataclass
class RolloutResult:
    """Episode returns and lengths [N]; per-instance sums of the observations the policy saw while
    alive, ``obs_sum`` and ``obs_sumsq`` [N, obs_dim], for running normalizers (kept per instance so
    that totals do not depend on how instances were batched); ``observations`` [T, N, obs_dim] if recorded;
    ``displacement`` [N] the root's x travel (m) from the reset to the episode's last counted step, for simulators
    with a root x (``BatchSim.x``; None otherwise): what a return is made of besides alive bonus and control cost."""

    returns: np.ndarray
    lengths: np.ndarray
    obs_sum: np.ndarray
    obs_sumsq: np.ndarray
    observations: np.ndarray | None = None
    displacement: np.ndarray | None = None

    @property
    def obs_count(self) -> int:
        """Observations seen in all instances: one per step alive."""
        return int(self.lengths.sum())


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
    obs_sum = np.zeros((n, sim.obs_dim))
    obs_sumsq = np.zeros((n, sim.obs_dim))
    recorded = np.zeros((horizon, n, sim.obs_dim)) if record else None
    start = None if sim.x is None else sim.x.copy()
    end = None if start is None else start.copy()
    for t in range(horizon):
        seen = obs if alive.all() else np.where(alive[:, None], obs, 0.0)
        obs_sum += seen
        obs_sumsq += seen * seen
        if recorded is not None:
            recorded[t] = obs
        obs, reward, terminated = sim.step(policy(obs))
        returns += np.where(alive, reward, 0.0)
        lengths += alive
        if end is not None and terminated.any():  # where an episode ends; the survivors' once, after the loop
            np.copyto(end, sim.x, where=alive & terminated)  # sim.x re-read: a mid-episode change may rebind it
        alive &= ~terminated
        if not alive.any():
            if recorded is not None:
                recorded = recorded[: t + 1]
            break
    displacement = None
    if end is not None:
        np.copyto(end, sim.x, where=alive)
        displacement = end - start
    return RolloutResult(returns, lengths, obs_sum, obs_sumsq, recorded, displacement)
