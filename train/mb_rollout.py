"""Episodes of a task family driven by an MPC controller (or uniformly random actions), E in lockstep."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from metactl.controllers.mpc import MPCController
from metactl.controllers.planners import _Planner, make_planner
from metactl.sim.tasks import Task, TaskFamily


@dataclasses.dataclass
class Episodes:
    """E episodes: obs [E, T+1, d], act [E, T, a] (as applied, after clipping), rewards [E, T]; an episode that
    terminated early has ``lengths[e]`` < T valid transitions (the rest is padding). ``x`` [E, T+1]: the robot's
    root x position [m] (MuJoCo families; zeros otherwise), which the observations leave out."""

    obs: np.ndarray
    act: np.ndarray
    rewards: np.ndarray
    lengths: np.ndarray
    x: np.ndarray | None = None

    def returns(self) -> np.ndarray:
        mask = np.arange(self.rewards.shape[1])[None] < self.lengths[:, None]
        return (self.rewards * mask).sum(axis=1)

    @property
    def env_steps(self) -> int:
        return int(self.lengths.sum())

    def decisions(self, hold: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """Each episode as transitions of ``hold`` control steps: (obs [n + 1, d], act [n, a]) at the decisions,
        n = whole decisions in the episode's valid length."""
        out = []
        for e, length in enumerate(self.lengths):
            n = int(length) // hold
            out.append((self.obs[e, : n * hold + 1 : hold], self.act[e, : n * hold : hold]))
        return out


def planner_config(cfg: object) -> dict:
    """The planner settings of an ``MBConfig`` as ``make_planner``'s dict (also what a bundle stores)."""
    out = {"name": cfg.planner, "samples": cfg.samples, "horizon": cfg.planning_horizon}  # type: ignore[attr-defined]
    if cfg.planner == "mppi":  # type: ignore[attr-defined]
        out |= {"temperature": cfg.temperature, "noise_std": cfg.noise_std}  # type: ignore[attr-defined]
    return out


def build_planner(config: dict, family: TaskFamily) -> _Planner:
    return make_planner(config, family.action_low, family.action_high)


def run_episodes(
    family: TaskFamily,
    tasks: Sequence[Task],
    seeds: Sequence[int],
    steps: int,
    rng: np.random.Generator,
    controller: MPCController | None = None,
    hold: int = 1,
) -> Episodes:
    """One episode per task (reset with ``seeds``), ``steps`` control steps, in lockstep; ``controller`` None
    draws uniformly random actions from ``rng``, each held for ``hold`` control steps (as the controller holds its
    decisions). Terminated episodes keep being stepped but record nothing. A controller's model that can read
    the simulator (the oracle) is attached to the batch."""
    batch = family.make_batch(tasks)
    model = getattr(controller, "model", None)  # a plain policy (bench meta's gaits) has no model
    if model is not None and hasattr(model, "attach"):
        model.attach(batch)
    e = len(tasks)
    obs = np.zeros((e, steps + 1, family.obs_dim))
    act = np.zeros((e, steps, family.act_dim))
    rewards = np.zeros((e, steps))
    lengths = np.full(e, steps)
    alive = np.ones(e, dtype=bool)
    xs = np.zeros((e, steps + 1))
    obs[:, 0] = batch.reset(seeds)
    track = getattr(batch, "x", None)  # the root x of MuJoCo batches, updated in place every step
    if track is not None:
        xs[:, 0] = track
    if controller is not None:
        controller.reset()
    low, high = family.action_low, family.action_high
    for t in range(steps):
        if controller is None:
            a = rng.uniform(low, high, size=(e, family.act_dim)) if t % hold == 0 else act[:, t - 1]
        else:
            a = np.clip(controller.act(obs[:, t]), low, high)
        act[:, t] = a
        obs[:, t + 1], rewards[:, t], done = batch.step(a)
        if track is not None:
            xs[:, t + 1] = track
        ended = alive & done
        lengths[ended] = t + 1
        alive &= ~done
        if not alive.any():
            lengths[alive] = t + 1
            break
    return Episodes(obs, act, rewards * (np.arange(steps)[None] < lengths[:, None]), lengths, xs)
