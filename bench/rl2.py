"""``metactl bench rl2``: RL² next to the classic algorithms, as in Duan et al. 2016 (Tables 1 and 2).

Multi-armed bandits (n pulls x k Bernoulli arms, p ~ U[0, 1]) and random tabular MDPs (10 states, 5 actions,
10-step episodes, n episodes): per row one RL² policy is trained (``train.rl2``, PPO with the budget of
``RL2Budget``) and scored on held-out trials; every baseline of ``train.rl2_baselines`` is scored on the *same*
tasks. Reported: total reward per trial, mean ± standard error over the held-out trials, one table per family,
with RL²'s training budget (iterations, trials seen) and time in each row. Writes ``summary.json`` and
``table.md`` into ``out_dir``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from metactl.bench.rl2_budget import RL2Budget
from metactl.report import format_table
from metactl.summary import write_summary

log = logging.getLogger(__name__)
BANDIT_METHODS = ("random", "greedy", "epsilon_greedy", "ucb1", "thompson", "gittins")
MDP_METHODS = ("random", "greedy", "epsilon_greedy", "psrl")
TASK_SEED = 7_919
"""Held-out tasks of a row come from ``seed + TASK_SEED + row``; training never draws from it."""


def _stats(totals: np.ndarray) -> dict[str, float]:
    return {"mean": float(totals.mean()), "se": float(totals.std(ddof=1) / np.sqrt(len(totals)))}


def _train(config: Any) -> tuple[Any, dict[str, Any]]:
    from metactl.train.rl2 import train_rl2

    t0 = time.perf_counter()
    result = train_rl2(config)
    cost = {"iterations": config.iterations, "trials_seen": config.iterations * config.trials,
            "train_s": time.perf_counter() - t0}  # fmt: skip
    return result.policy, cost


def bandit_row(n: int, k: int, budget: RL2Budget, row: int) -> dict[str, Any]:
    """One bandit row: RL² and every baseline on the same ``eval_trials`` bandits."""
    from metactl.sim.bandits import sample_bandits
    from metactl.train import rl2_baselines as bl
    from metactl.train.rl2 import evaluate
    from metactl.train.rl2_config import RL2Config

    iterations = max(1, min(budget.max_iterations, budget.bandit_steps // n))
    config = RL2Config(family="bandit", episodes=n, arms=k, iterations=iterations, trials=budget.trials,
                       hidden=budget.hidden, seed=budget.seed + row, eval_trials=2)  # fmt: skip
    policy, cost = _train(config)
    task_seed = budget.seed + TASK_SEED + row
    probs = sample_bandits(np.random.default_rng(task_seed), budget.eval_trials, k)
    results = {"rl2": _stats(evaluate(policy, config, budget.eval_trials, task_seed, tasks=probs))}
    rules = {**bl.BANDIT_RULES, "gittins": bl.gittins_rule(n)}
    for i, name in enumerate(BANDIT_METHODS):
        results[name] = _stats(bl.run_bandit(rules[name], probs, n, np.random.default_rng(task_seed + 1 + i)))
    oracle = float(n * probs.max(axis=1).mean())
    return {"n": n, "k": k, "results": results, "oracle_mean": oracle, **cost}


def mdp_row(n: int, budget: RL2Budget, row: int) -> dict[str, Any]:
    """One MDP row: RL² and every baseline on the same ``eval_trials`` MDPs."""
    from metactl.sim.tabular_mdp import sample_mdps
    from metactl.train import rl2_baselines as bl
    from metactl.train.rl2 import evaluate
    from metactl.train.rl2_config import RL2Config

    iterations = max(1, min(budget.max_iterations, budget.mdp_steps // (10 * n)))
    config = RL2Config(family="mdp", episodes=n, iterations=iterations, trials=budget.trials, hidden=budget.hidden,
                       seed=budget.seed + row, eval_trials=2)  # fmt: skip
    policy, cost = _train(config)
    task_seed = budget.seed + TASK_SEED + row
    mdps = sample_mdps(np.random.default_rng(task_seed), budget.eval_trials)
    results = {"rl2": _stats(evaluate(policy, config, budget.eval_trials, task_seed, tasks=mdps))}
    for i, name in enumerate(MDP_METHODS):
        results[name] = _stats(bl.run_mdp(name, mdps, n, np.random.default_rng(task_seed + 1 + i)))
    return {"n": n, "results": results, **cost}


def _cell(r: dict[str, float]) -> str:
    return f"{r['mean']:.1f} ± {r['se']:.1f}"


def tables(summary: dict[str, Any]) -> dict[str, tuple[str, list[str], list[list[str]]]]:
    """(title, headers, rows) of each family's table."""
    out = {}
    budget = f"RL² iterations × {summary['budget']['trials']} trials"
    if summary.get("bandit"):
        heads = ["n", "k", *BANDIT_METHODS, "RL²", budget, "RL² train s"]
        rows = [[str(r["n"]), str(r["k"]), *(_cell(r["results"][m]) for m in BANDIT_METHODS),
                 _cell(r["results"]["rl2"]), str(r["iterations"]), f"{r['train_s']:.0f}"]
                for r in summary["bandit"]]  # fmt: skip
        out["bandit"] = ("Bernoulli bandits: total reward per trial of n pulls", heads, rows)
    if summary.get("mdp"):
        heads = ["n", *MDP_METHODS, "RL²", budget, "RL² train s"]
        rows = [[str(r["n"]), *(_cell(r["results"][m]) for m in MDP_METHODS), _cell(r["results"]["rl2"]),
                 str(r["iterations"]), f"{r['train_s']:.0f}"] for r in summary["mdp"]]  # fmt: skip
        out["mdp"] = ("Tabular MDPs (10 states, 5 actions, 10-step episodes): total reward per trial", heads, rows)
    return out


def markdown(title: str, heads: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = [f"**{title}**", "", "| " + " | ".join(heads) + " |", "|" + " --- |" * len(heads)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def bench_rl2(
    out_dir: str, families: Sequence[str] = ("bandit", "mdp"), budget: RL2Budget | None = None
) -> dict[str, Any]:
    """Run the benchmark; write ``summary.json`` and ``table.md``; print one table per family."""
    import torch

    torch.set_num_threads(1)
    budget = budget or RL2Budget()
    t0 = time.perf_counter()
    summary: dict[str, Any] = {"budget": dataclasses.asdict(budget), "bandit": [], "mdp": []}
    row = 0
    if "bandit" in families:
        for n in budget.bandit_episodes:
            for k in budget.bandit_arms:
                summary["bandit"].append(bandit_row(n, k, budget, row))
                log.info("bench rl2: bandit n=%d k=%d done (%.0f s)", n, k, time.perf_counter() - t0)
                row += 1
    if "mdp" in families:
        for n in budget.mdp_episodes:
            summary["mdp"].append(mdp_row(n, budget, row))
            log.info("bench rl2: mdp n=%d done (%.0f s)", n, time.perf_counter() - t0)
            row += 1
    summary["wall_s"] = time.perf_counter() - t0
    parts = []
    for title, heads, rows in tables(summary).values():
        print(format_table(f"metactl bench rl2: {title}", heads, rows))
        parts.append(markdown(title, heads, rows))
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "table.md"), "w") as f:
        f.write("\n\n".join(parts) + "\n")
    write_summary(out_dir, summary)
    return summary
