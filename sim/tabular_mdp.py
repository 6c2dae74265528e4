"""Random tabular MDPs as RL² samples them (Duan et al. 2016, Sec. 3.2, after Osband et al.'s PSRL experiments).

A task is one MDP with S states and A actions: every transition distribution P(.|s, a) ~ Dirichlet(1, ..., 1)
(flat), every mean reward mu(s, a) ~ N(1, 1), and a reward drawn on each step ~ N(mu(s, a), 1). Episodes last
``episode_len`` steps (the paper's T = 10) and always start in state 0; a trial is n episodes of the same MDP.
``MDPBatch`` steps B independent MDPs together; every random draw comes from the generator the caller passes.
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class MDPs:
    """B tabular MDPs: ``transitions`` [B, S, A, S] (rows sum to 1), ``mean_rewards`` [B, S, A]."""

    transitions: np.ndarray
    mean_rewards: np.ndarray

    @property
    def shape(self) -> tuple[int, int, int]:
        """(B, S, A)."""
        b, s, a = self.mean_rewards.shape
        return b, s, a


def dirichlet(rng: np.random.Generator, alpha: np.ndarray) -> np.ndarray:
    """One Dirichlet draw per row of ``alpha`` [..., S] (> 0), via normalized Gamma(alpha, 1) draws."""
    g = rng.gamma(alpha)
    total = g.sum(axis=-1, keepdims=True)
    return np.where(total > 0, g / np.maximum(total, 1e-300), 1.0 / alpha.shape[-1])


def sample_mdps(rng: np.random.Generator, trials: int, states: int = 10, actions: int = 5) -> MDPs:
    """``trials`` MDPs from the paper's prior: P(.|s,a) ~ Dirichlet(1), mu(s,a) ~ N(1, 1)."""
    if trials < 1 or states < 1 or actions < 2:
        raise ValueError(f"need trials >= 1, states >= 1 and actions >= 2, got {trials}, {states}, {actions}")
    p = dirichlet(rng, np.ones((trials, states, actions, states)))
    return MDPs(p, rng.normal(1.0, 1.0, size=(trials, states, actions)))


class MDPBatch:
    """B MDPs stepped together. Observations are one-hot states [B, S]; episodes end after ``episode_len`` steps
    and the next one starts in state 0."""

    def __init__(self, mdps: MDPs, rng: np.random.Generator, episode_len: int = 10):
        if episode_len < 1:
            raise ValueError(f"episode_len must be >= 1, got {episode_len}")
        self.mdps, self.rng, self.episode_len = mdps, rng, episode_len
        self.num_trials, self.obs_dim, self.num_actions = mdps.shape
        self.state = np.zeros(self.num_trials, dtype=np.int64)
        self.t = 0
        self._cum = np.cumsum(mdps.transitions, axis=-1)

    def _obs(self) -> np.ndarray:
        return np.eye(self.obs_dim)[self.state]

    def reset(self) -> np.ndarray:
        """Start an episode in state 0 in every MDP: one-hot observations [B, S]."""
        self.state[:] = 0
        self.t = 0
        return self._obs()

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(observations [B, S], rewards [B], episode ended [B]); an ended episode's next observation is the reset
        state, so a trial runs on without a separate ``reset`` call."""
        a = np.asarray(actions, dtype=np.int64)
        idx = np.arange(self.num_trials)
        reward = self.rng.normal(self.mdps.mean_rewards[idx, self.state, a], 1.0)
        u = self.rng.uniform(size=(self.num_trials, 1))
        nxt = (u > self._cum[idx, self.state, a]).sum(axis=-1)
        self.state = np.minimum(nxt, self.obs_dim - 1)
        self.last_state = self.state.copy()
        """The states [B] the last step reached (before an episode's end resets ``state`` to 0)."""
        self.t += 1
        done = self.t >= self.episode_len
        if done:
            self.reset()
        return self._obs(), reward, np.full(self.num_trials, done)


def optimal_values(mdps: MDPs, horizon: int) -> np.ndarray:
    """Finite-horizon optimal Q-values [horizon, B, S, A] by backward induction: Q_t = mu + P V_{t+1}."""
    b, s, a = mdps.shape
    q = np.zeros((horizon, b, s, a))
    v = np.zeros((b, s))
    for t in range(horizon - 1, -1, -1):
        q[t] = mdps.mean_rewards + np.einsum("bsan,bn->bsa", mdps.transitions, v)
        v = q[t].max(axis=-1)
    return q
