"""Bernoulli multi-armed bandits as RL² samples them (Duan et al., "RL²: Fast Reinforcement Learning via Slow
Reinforcement Learning", 2016, Sec. 3.1).

A task is one bandit: k arms whose success probabilities are drawn i.i.d. from U[0, 1]; one *episode* is one pull,
a *trial* is n pulls of the same bandit. ``BanditBatch`` steps B independent bandits at once (numpy, no MuJoCo),
with every random draw taken from a generator the caller passes in.
"""

from __future__ import annotations

import numpy as np


def sample_bandits(rng: np.random.Generator, trials: int, arms: int) -> np.ndarray:
    """Success probabilities [trials, arms], each ~ U[0, 1] (the paper's prior)."""
    if trials < 1 or arms < 2:
        raise ValueError(f"need trials >= 1 and arms >= 2, got {trials}, {arms}")
    return rng.uniform(0.0, 1.0, size=(trials, arms))


class BanditBatch:
    """B Bernoulli bandits pulled together: ``pull(actions [B]) -> rewards [B]`` in {0, 1}.

    ``probs`` [B, k] are the arms' success probabilities; ``rng`` draws every reward. An episode is one pull, so
    the observation is constant (one feature, 1.0) and every step ends an episode.
    """

    obs_dim = 1
    episode_len = 1

    def __init__(self, probs: np.ndarray, rng: np.random.Generator):
        probs = np.asarray(probs, dtype=np.float64)
        if probs.ndim != 2 or not np.all((probs >= 0) & (probs <= 1)):
            raise ValueError("probs must be [B, k] probabilities in [0, 1]")
        self.probs, self.rng = probs, rng
        self.num_trials, self.num_actions = probs.shape

    def reset(self) -> np.ndarray:
        """Start an episode: observations [B, 1] (constant)."""
        return np.ones((self.num_trials, 1))

    def pull(self, actions: np.ndarray) -> np.ndarray:
        """Rewards [B] of pulling arm ``actions[b]`` of bandit b: 1 with the arm's probability, else 0."""
        p = self.probs[np.arange(self.num_trials), np.asarray(actions, dtype=np.int64)]
        return (self.rng.uniform(size=self.num_trials) < p).astype(np.float64)

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(next observations [B, 1], rewards [B], episode ended [B]): every pull ends its episode."""
        reward = self.pull(actions)
        return self.reset(), reward, np.ones(self.num_trials, dtype=bool)

    def best_mean(self) -> np.ndarray:
        """The best arm's success probability [B]: an oracle's expected reward per pull."""
        return self.probs.max(axis=1)
