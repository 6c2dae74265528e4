"""``metactl bench es``: plain ES (ARS V2-t) on HalfCheetah, episodes and wall time to a return threshold.

Anchor: Mania, Guy, Recht, "Simple random search provides a competitive approach to
reinforcement learning", 2018, Table 1: HalfCheetah reaches 3430 in 1,707 episodes with
V2-t (linear policy, online observation normalization, top-b directions, reward-std
scaling). Their HalfCheetah hyperparameters: step 0.02, noise 0.03, 32 directions, top 4.
Our run uses the same ES loop as ES-MAML with the identity adaptation operator, the
``halfcheetah_run`` family (Gymnasium HalfCheetah-v5's reward, 1000-step episodes), and
evaluates the current policy after every iteration on 5 episodes (not counted).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from metactl.report import format_table
from metactl.summary import write_summary

ARS_HALFCHEETAH = {
    "family": "halfcheetah_run",
    "meta": False,
    "adaptation": {"name": "none"},
    "directions": 32,
    "top_directions": 4,
    "sigma": 0.03,
    "learning_rate": 0.02,
    "optimizer": "sgd",
    "return_normalization": "ars",
    "tasks_per_iteration": 1,
    "eval_repeats": 5,
}


def time_to_threshold(seed: int, threshold: float, max_episodes: int, workers: int | None) -> dict[str, Any]:
    """Run ARS until the evaluated return reaches ``threshold`` or ``max_episodes`` are spent."""
    from metactl.sim import make_family
    from metactl.train import TrainConfig
    from metactl.train.es_maml import current_policy, es_iteration, heldout_returns, initial_state
    from metactl.train.workers import make_backend

    config = TrainConfig(**ARS_HALFCHEETAH, iterations=max(1, max_episodes // 64), seed=seed)
    family = make_family(config.family)
    spec, operator = config.policy_spec(), config.operator()
    state = initial_state(config, spec)
    from tqdm import tqdm

    backend = make_backend(workers)
    bar = tqdm(total=max_episodes, desc=f"ARS seed {seed}", unit="ep")
    t0, best, curve = time.perf_counter(), -np.inf, []
    try:
        while state.episodes < max_episodes:
            state, _ = es_iteration(state, config, family, spec, operator, backend)
            value = float(heldout_returns(config, family, current_policy(state, config, spec), operator, backend)[0][0])
            best = max(best, value)
            curve.append((state.episodes, value))
            bar.update(state.episodes - bar.n)
            bar.set_postfix(ret=f"{value:.0f}")
            if value >= threshold:
                break
    finally:
        bar.close()
        backend.close()
    reached = best >= threshold
    return {
        "seed": seed,
        "reached": reached,
        "episodes": state.episodes if reached else None,
        "wall_s": round(time.perf_counter() - t0, 1) if reached else None,
        "best_return": best,
        "curve": curve,
    }


def bench_es(
    out_dir: str, seeds: int = 5, threshold: float = 3430.0, max_episodes: int = 20_000, workers: int | None = None
) -> dict[str, Any]:
    runs = [time_to_threshold(s, threshold, max_episodes, workers) for s in range(seeds)]
    episodes = [r["episodes"] if r["reached"] else np.inf for r in runs]
    walls = [r["wall_s"] if r["reached"] else np.inf for r in runs]
    median_ep, median_wall = float(np.median(episodes)), float(np.median(walls))
    summary = {
        "threshold": threshold,
        "episodes_to_3430": median_ep if np.isfinite(median_ep) else None,
        "wall_s_to_3430": median_wall if np.isfinite(median_wall) else None,
        "ars_paper_episodes": 1707,
        "runs": runs,
    }
    rows = [(r["seed"], r["episodes"] or "not reached", r["wall_s"] or "-", r["best_return"]) for r in runs]
    rows.append(("median", summary["episodes_to_3430"] or "not reached", summary["wall_s_to_3430"] or "-", ""))
    print(
        format_table(
            f"metactl bench es: ARS V2-t on HalfCheetah to {threshold:g} (paper: 1,707 episodes)",
            ("seed", "episodes", "wall s", "best evaluated return"),
            rows,
        )
    )
    write_summary(out_dir, summary)
    return summary
