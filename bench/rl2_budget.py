"""The sizes of a ``metactl bench rl2`` run: a light module of its own, so the command line can offer them as
flags without importing torch."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class RL2Budget:
    """Sizes of one ``bench rl2`` run (the defaults are the documented ~25 min run on one core; tests pass tiny
    ones). RL² gets ``iterations = min(max_iterations, steps // T)`` PPO iterations for a trial of T steps, so every
    row costs about the same time: long trials get fewer iterations (and are undertrained: said in the table)."""

    bandit_episodes: tuple[int, ...] = (10, 100, 500)
    """Pulls per bandit trial (n), the paper's."""
    bandit_arms: tuple[int, ...] = (5, 10, 50)
    """Arms (k), the paper's."""
    mdp_episodes: tuple[int, ...] = (10, 25, 50, 75, 100)
    """Episodes per MDP trial (n), the paper's."""
    bandit_steps: int = 30_000
    """Bandits: PPO iterations x trial length, per row."""
    mdp_steps: int = 60_000
    """MDPs: PPO iterations x trial length (n x 10 steps), per row."""
    max_iterations: int = 600
    """Most PPO iterations of any row."""
    trials: int = 64
    """Trials per PPO iteration."""
    hidden: int = 64
    """GRU units."""
    eval_trials: int = 300
    """Held-out trials per row, the same tasks for RL² and every baseline."""
    seed: int = 0
    """Seed of training and of the held-out tasks."""
