"""Train RL² (Duan et al., "RL²: Fast Reinforcement Learning via Slow Reinforcement Learning", 2016).

The "slow" learner (PPO, ``train.rl2_ppo``) trains a GRU policy (``train.rl2_policy``) across many tasks; the
"fast" learner is the GRU's hidden state, which carries over the n episodes of a trial in one task and is reset
between trials. ``train_rl2`` runs one configuration, writes ``rl2.npz`` (weights, spec, family signals),
``config.json``, ``metrics.csv`` and ``summary.json``; ``evaluate`` scores a policy on given tasks (total reward
per trial), which is how ``bench.rl2`` puts it next to the baselines on the very same tasks.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import os
import time
from typing import Any

import numpy as np
import torch

from metactl.summary import write_summary
from metactl.train.rl2_config import RL2Config, check
from metactl.train.rl2_envs import action_count, make_trials
from metactl.train.rl2_policy import RL2Policy, RL2Spec
from metactl.train.rl2_ppo import collect, ppo_update, return_scale

log = logging.getLogger(__name__)
MODEL_FILE = "rl2.npz"
EVAL_SEED_OFFSET = 1_000_003
"""Held-out trials draw their tasks from ``seed + EVAL_SEED_OFFSET`` (never from the training stream)."""


@dataclasses.dataclass
class RL2Result:
    policy: RL2Policy
    summary: dict[str, Any]
    model_path: str | None


def make_policy(config: RL2Config) -> RL2Policy:
    """A fresh GRU policy for ``config``, its initial weights drawn from ``config.seed``."""
    obs_dim, actions = action_count(config)
    spec = RL2Spec(obs_dim, actions, config.discrete, config.hidden)
    return RL2Policy(spec, torch.Generator().manual_seed(config.seed), config.init_log_std)


def _fit_normalizer(policy: RL2Policy, config: RL2Config, rng: np.random.Generator, gen: torch.Generator) -> None:
    """From one trial batch of the untrained policy, fixed afterwards: the value head's return scale (every family)
    and, for locomotion, observation and reward input scales (folded into the exported graph). The discrete
    families' inputs (one-hot, rewards of order 1) stay unscaled."""
    batch = collect(policy, make_trials(config, rng, config.trials), config.episodes, gen)
    policy.ret_scale.fill_(return_scale(batch.rewards, config.gamma))
    if config.discrete:
        return
    x = batch.inputs.reshape(-1, policy.spec.in_dim)
    mean, std = x.mean(0), x.std(0).clamp_min(1e-2)
    o = policy.spec.obs_dim
    keep = torch.zeros(policy.spec.in_dim, dtype=torch.bool)
    keep[:o] = True
    keep[-2] = True  # the reward; actions (already in [-1, 1]) and the done flag stay as they are
    policy.in_mean.copy_(torch.where(keep, mean, 0.0))
    policy.in_std.copy_(torch.where(keep, std, 1.0))


def train_rl2(config: RL2Config, out_dir: str | None = None, progress: bool = False) -> RL2Result:
    """Train one RL² policy; write its files into ``out_dir`` if given. Uses one torch thread unless set otherwise."""
    check(config)
    t0 = time.perf_counter()
    rng = np.random.default_rng(config.seed)
    gen = torch.Generator().manual_seed(config.seed + 1)
    policy = make_policy(config)
    _fit_normalizer(policy, config, rng, gen)
    opt = torch.optim.Adam(policy.parameters(), lr=config.lr)
    rows = []
    bar = _progress_bar(config) if progress else None
    for it in range(config.iterations):
        frac = 1.0 - it / config.iterations
        for group in opt.param_groups:
            group["lr"] = config.lr * frac
        batch = collect(policy, make_trials(config, rng, config.trials), config.episodes, gen)
        stats = ppo_update(policy, opt, batch, config, gen, config.entropy * frac)
        rows.append({"iteration": it, "trial_reward": float(batch.totals.mean()), **dataclasses.asdict(stats)})
        log.debug("rl2 %s it %d: reward per trial %.2f", config.family, it, rows[-1]["trial_reward"])
        if bar is not None:
            bar.set_postfix(reward=f"{rows[-1]['trial_reward']:.2f}")
            bar.update()
    if bar is not None:
        bar.close()
    totals = evaluate(policy, config, config.eval_trials, config.seed + EVAL_SEED_OFFSET)
    extra = {} if config.discrete else heldout_locomotion(policy, config, config.seed + EVAL_SEED_OFFSET)
    summary = {
        "family": config.family,
        "episodes": config.episodes,
        "iterations": config.iterations,
        "trials_seen": config.iterations * config.trials,
        "env_steps": config.iterations * config.trials * config.episodes * _episode_len(config),
        "heldout_trial_reward_mean": float(totals.mean()),
        "heldout_trial_reward_se": float(totals.std(ddof=1) / np.sqrt(len(totals))) if len(totals) > 1 else 0.0,
        "heldout_trials": len(totals),
        "wall_s": time.perf_counter() - t0,
        **extra,
    }
    path = _write_run(out_dir, policy, config, rows, summary) if out_dir else None
    return RL2Result(policy, summary, path)


def _progress_bar(config: RL2Config) -> Any:
    from tqdm import tqdm

    return tqdm(total=config.iterations, desc=f"rl2 {config.family}", unit="it")


def _episode_len(config: RL2Config) -> int:
    if config.family == "bandit":
        return 1
    if config.family == "mdp":
        return config.episode_len
    from metactl.sim.registry import make_family

    return config.episode_len or make_family(config.family).horizon


def evaluate(policy: RL2Policy, config: RL2Config, trials: int, seed: int, tasks: object = None) -> np.ndarray:
    """Total reward per trial [trials] of ``policy`` on fresh tasks drawn from ``seed`` (or the given ``tasks``).
    Discrete families sample actions, as trained (exploration is part of the learned algorithm); locomotion acts
    with the Gaussian's mean, as the robot does."""
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    env = make_trials(config, rng, trials, tasks)
    return collect(policy, env, config.episodes, gen, greedy=not config.discrete).totals


def heldout_locomotion(policy: RL2Policy, config: RL2Config, seed: int) -> dict[str, Any]:
    """The family's held-out test tasks, one trial each: RL²'s return per episode [task][episode] (the state carried
    over), the same with the state zeroed before every episode (no adaptation), and a zero-action reference."""
    from metactl.sim.registry import make_family

    tasks = make_family(config.family).test_tasks()
    n, length = config.episodes, _episode_len(config)

    def per_episode(rewards: np.ndarray) -> list[list[float]]:  # rewards [T, B] -> [B][n]
        return rewards.reshape(n, length, len(tasks)).sum(1).T.tolist()

    gen = torch.Generator().manual_seed(seed)
    carried = collect(policy, make_trials(config, np.random.default_rng(seed), len(tasks), tasks), n, gen, True)
    one = dataclasses.replace(config, episodes=1)
    reset = [collect(policy, make_trials(one, np.random.default_rng(seed), len(tasks), tasks), 1, gen, True).rewards
             for _ in range(n)]  # fmt: skip
    env = make_trials(config, np.random.default_rng(seed), len(tasks), tasks)
    env.reset()
    zero = np.array([env.step(np.zeros((len(tasks), policy.spec.actions)))[1] for _ in range(n * length)])
    return {
        "test_tasks": [t.to_dict() for t in tasks],
        "test_episode_returns": per_episode(carried.rewards.numpy()),
        "test_episode_returns_state_reset": per_episode(np.concatenate([r.numpy() for r in reset])),
        "test_episode_returns_zero_action": per_episode(zero),
    }


def _write_run(out_dir: str, policy: RL2Policy, config: RL2Config, rows: list[dict], summary: dict) -> str:
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(dataclasses.asdict(config), f, indent=2)
    with open(os.path.join(out_dir, "metrics.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    path = save_policy(os.path.join(out_dir, MODEL_FILE), policy, config)
    write_summary(out_dir, {**summary, "model": os.path.abspath(path), "config": dataclasses.asdict(config)})
    return path


def family_signals(config: RL2Config) -> dict[str, Any]:
    """What a bundle needs of a locomotion family: signal names, period, action limits, episode length."""
    if config.discrete:
        return {}
    from metactl.sim.registry import make_family

    fam = make_family(config.family)
    return {"observation_names": list(fam.observation_names), "action_names": list(fam.action_names),
            "control_period": fam.control_period, "action_low": fam.action_low.tolist(),
            "action_high": fam.action_high.tolist(), "horizon": _episode_len(config)}  # fmt: skip


def save_policy(path: str, policy: RL2Policy, config: RL2Config) -> str:
    """``rl2.npz``: every weight (float32) plus ``meta`` (JSON: spec, config, family signals); numpy-readable."""
    meta = {"kind": "rl2", "spec": policy.spec.to_dict(), "config": dataclasses.asdict(config),
            "signals": family_signals(config)}  # fmt: skip
    np.savez(path, meta=np.array(json.dumps(meta)), **policy.arrays())
    return path


def load_policy(path: str) -> tuple[RL2Policy, RL2Config]:
    """The policy and config saved by ``save_policy``."""
    with np.load(path) as data:
        meta = json.loads(str(data["meta"]))
        arrays = {k: data[k] for k in data.files if k != "meta"}
    config = RL2Config(**meta["config"])
    policy = RL2Policy(RL2Spec.from_dict(meta["spec"]), torch.Generator().manual_seed(0), config.init_log_std)
    policy.load_arrays(arrays)
    return policy, config
