"""The settings of one RL² run (Duan et al. 2016): a light module (no torch), so the command line can offer every
field as a flag. ``preset(family)`` gives a family's defaults; ``check`` names the first bad field."""

from __future__ import annotations

import dataclasses
from typing import Literal

DISCRETE_FAMILIES = ("bandit", "mdp")
"""The paper's small-scale families; any other name is a locomotion family of ``sim.registry``."""


@dataclasses.dataclass(frozen=True)
class RL2Config:
    """One RL² training run: the task family, the trial's shape, the GRU and PPO's hyperparameters."""

    family: str = "bandit"
    """'bandit' (Bernoulli arms, p ~ U[0, 1]), 'mdp' (random tabular MDPs) or a locomotion family (halfcheetah_fb)."""
    episodes: int = 10
    """Episodes per trial (n): the GRU's hidden state carries over all of them, and is reset between trials."""
    arms: int = 5
    """Bandits: arms (k); one episode is one pull."""
    states: int = 10
    """MDPs: states (the paper's 10)."""
    actions: int = 5
    """MDPs: actions (the paper's 5)."""
    episode_len: int = 10
    """MDPs: steps per episode (the paper's T = 10); locomotion: control steps per episode (0: the family's)."""
    iterations: int = 100
    """PPO iterations (each: a batch of fresh trials, then ``epochs`` passes over it)."""
    trials: int = 64
    """Trials (tasks) per iteration."""
    hidden: int = 64
    """GRU units."""
    lr: float = 1e-2
    """Adam step size (annealed linearly to 0); 1e-2 learned the bandits and MDPs faster than 3e-3 here."""
    gamma: float = 0.99
    """Discount across the whole trial (episode boundaries do not cut the return: the trial is RL²'s episode)."""
    lam: float = 0.3
    """GAE lambda (the paper's 0.3 for the small-scale problems)."""
    clip: float = 0.2
    """PPO's clipping range."""
    epochs: int = 4
    """Passes over each iteration's trials."""
    minibatches: int = 2
    """Minibatches (of whole trials) per pass."""
    entropy: float = 0.01
    """Entropy bonus (annealed linearly to 0)."""
    value_coef: float = 0.5
    """Weight of the value loss."""
    max_grad_norm: float = 1.0
    """Gradient-norm clip."""
    init_log_std: float = -0.5
    """Locomotion: initial log standard deviation of the Gaussian actions."""
    eval_trials: int = 200
    """Held-out trials scored at the end of training (their tasks drawn from their own seed)."""
    seed: int = 0
    """Seed of everything (tasks, rewards, actions, initial weights)."""
    device: Literal["cpu"] = "cpu"
    """Torch device."""

    @property
    def discrete(self) -> bool:
        return self.family in DISCRETE_FAMILIES


def preset(family: str = "bandit") -> RL2Config:
    """Defaults for ``family``: the paper's small-scale settings, or a short locomotion budget (2 episodes a trial,
    as MAML/ProMP's forward-backward RL² baseline, GAE lambda 0.95, fewer, longer trials)."""
    if family in DISCRETE_FAMILIES:
        return RL2Config(family=family)
    return RL2Config(family=family, episodes=2, episode_len=0, iterations=60, trials=16, lam=0.95, lr=1e-3,
                     entropy=0.0, eval_trials=8)  # fmt: skip


def check(config: RL2Config) -> None:
    """``ValueError`` naming the first field out of range."""
    positive = ("episodes", "iterations", "trials", "hidden", "epochs", "minibatches", "eval_trials", "states")
    for name in positive:
        if getattr(config, name) < 1:
            raise ValueError(f"RL2Config.{name} must be >= 1, got {getattr(config, name)}")
    if config.family == "bandit" and config.arms < 2:
        raise ValueError(f"RL2Config.arms must be >= 2, got {config.arms}")
    if config.family == "mdp" and (config.actions < 2 or config.episode_len < 1):
        raise ValueError("RL2Config.actions must be >= 2 and episode_len >= 1 for MDPs")
    if config.episode_len < 0 or config.seed < 0:
        raise ValueError("RL2Config.episode_len and seed must be >= 0")
    if config.minibatches > config.trials:
        raise ValueError(f"RL2Config.minibatches ({config.minibatches}) must be <= trials ({config.trials})")
    for name, low, high in (("gamma", 0.0, 1.0), ("lam", 0.0, 1.0), ("clip", 0.0, 1.0)):
        if not low <= getattr(config, name) <= high:
            raise ValueError(f"RL2Config.{name} must be in [{low}, {high}], got {getattr(config, name)}")
    if config.lr <= 0 or config.entropy < 0 or config.value_coef < 0 or config.max_grad_norm <= 0:
        raise ValueError("RL2Config.lr and max_grad_norm must be > 0, entropy and value_coef >= 0")
