"""Trials for RL² (Duan et al. 2016): B tasks stepped together for n episodes each, behind one small interface.

``TrialEnv``: ``reset() -> obs [B, obs_dim]`` at a trial's start, then ``step(actions) -> (obs, reward [B],
episode ended [B])``; an ended episode's next observation already starts the next one (same task), so RL²'s
policy reads one uninterrupted stream per trial. Bandits and tabular MDPs come from ``sim.bandits`` /
``sim.tabular_mdp``; a locomotion family (e.g. HalfCheetah forward-backward) is wrapped by ``LocomotionTrials``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from metactl.sim.bandits import BanditBatch, sample_bandits
from metactl.sim.tabular_mdp import MDPBatch, sample_mdps
from metactl.train.rl2_config import RL2Config


class TrialEnv(Protocol):
    """B tasks stepped together; every episode lasts ``episode_len`` steps."""

    num_trials: int
    obs_dim: int
    episode_len: int

    def reset(self) -> np.ndarray: ...

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...


class LocomotionTrials:
    """A locomotion family's tasks as trials: episodes of ``episode_len`` control steps, each episode of a trial
    starting from a fresh initial state (seeds drawn from ``rng``) of the same task. Families whose episodes can
    terminate early are refused (every trial has the same length)."""

    def __init__(self, family_name: str, tasks: Sequence[object], rng: np.random.Generator, episode_len: int = 0):
        from metactl.sim.registry import make_family

        self.family = make_family(family_name)
        self.sim = self.family.make_batch(tasks)  # type: ignore[arg-type]
        self.rng, self.num_trials = rng, len(tasks)
        self.obs_dim, self.act_dim = self.family.obs_dim, self.family.act_dim
        self.episode_len = episode_len or self.family.horizon
        self.t = 0

    def reset(self) -> np.ndarray:
        self.t = 0
        return self.sim.reset(self.rng.integers(0, 2**31 - 1, size=self.num_trials).tolist())

    def applied(self, actions: np.ndarray) -> np.ndarray:
        """The actions [B, act_dim] clipped to the family's limits: what the robot applies and the policy reads."""
        return np.clip(actions, self.family.action_low, self.family.action_high)

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        obs, reward, terminated = self.sim.step(np.asarray(actions, dtype=np.float64))
        if np.any(terminated):
            raise ValueError(f"family {self.family.name!r} ended an episode early; RL² here needs fixed-length ones")
        self.t += 1
        done = self.t >= self.episode_len
        if done:
            obs = self.reset()
        return obs, reward, np.full(self.num_trials, done)


def action_count(config: RL2Config) -> tuple[int, int]:
    """(observation features, actions: discrete count or action dimension) of ``config``'s family."""
    if config.family == "bandit":
        return 1, config.arms
    if config.family == "mdp":
        return config.states, config.actions
    from metactl.sim.registry import make_family

    fam = make_family(config.family)
    return fam.obs_dim, fam.act_dim


def make_trials(config: RL2Config, rng: np.random.Generator, trials: int, tasks: object = None) -> TrialEnv:
    """``trials`` fresh tasks of ``config.family`` (or the given ``tasks``: bandit probabilities [B, k], an
    ``MDPs``, or a list of locomotion tasks), every draw from ``rng``."""
    if config.family == "bandit":
        probs = sample_bandits(rng, trials, config.arms) if tasks is None else tasks
        return BanditBatch(probs, rng)  # type: ignore[arg-type]
    if config.family == "mdp":
        mdps = sample_mdps(rng, trials, config.states, config.actions) if tasks is None else tasks
        return MDPBatch(mdps, rng, config.episode_len)  # type: ignore[arg-type]
    from metactl.sim.registry import make_family

    if tasks is None:
        tasks = make_family(config.family).sample_tasks(rng, trials)
    return LocomotionTrials(config.family, tasks, rng, config.episode_len)  # type: ignore[arg-type]
