"""``metactl eval`` of ES-MAML runs: ``train.es_table``'s held-out table, printed as the model-based one is.

``metactl eval`` tells the two kinds apart by their files: a ``metactl train es`` folder holds a ``policy.npz``,
a model-based one a ``model.npz``.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from metactl.commands import UserError
from metactl.report import format_table, mean_se
from metactl.summary import write_summary

if TYPE_CHECKING:
    from metactl import arguments as cli

NAMES = {"es_maml_pre": "ES-MAML before adaptation", "es_maml_post": "ES-MAML after adaptation",
         "baseline_pre": "baseline before adaptation", "baseline_post": "baseline after adaptation",
         "specialist": "specialist (no adaptation)", "zero_action": "zero action"}  # fmt: skip
DIFFS = {"post_adaptation_vs_baseline": "ES-MAML after - baseline after",
         "es_maml_post_minus_pre": "ES-MAML after - before",
         "baseline_post_minus_pre": "baseline after - before"}  # fmt: skip
MODEL_BASED_FLAGS = ("de_lr", "samples", "noise_std", "horizon")


def is_es_run(run: str) -> bool:
    """True for a ``metactl train es`` output folder (or its policy.npz)."""
    from metactl.controllers.serialization import POLICY_FILE, run_file

    path = run_file(run, POLICY_FILE)
    return os.path.basename(path) == POLICY_FILE and os.path.isfile(path)


def evaluate_es(cmd: cli.Eval) -> dict[str, Any]:
    """ES-MAML, the baseline and the specialists on the same held-out episodes; writes ``summary.json``."""
    from metactl.train.es_table import evaluate_es_runs

    given = [f"--{f.replace('_', '-')}" for f in MODEL_BASED_FLAGS if getattr(cmd, f) is not None]
    given += [flag for flag, on in (("--model-error", cmd.model_error), ("--video", cmd.video)) if on]
    if given:
        raise UserError(
            f"{', '.join(given)} apply to model-based runs only; leave them out for 'metactl train es' runs"
        )
    from metactl.controllers.serialization import MODEL_FILE

    if any(os.path.isfile(os.path.join(r, MODEL_FILE)) for r in cmd.runs):
        raise UserError("metactl eval: runs mix 'metactl train es' folders with model-based ones; evaluate them apart")
    try:
        result = evaluate_es_runs(list(cmd.runs), episodes=cmd.episodes or 10, steps=cmd.steps, tasks=cmd.tasks)
    except ValueError as e:
        raise UserError(str(e)) from None
    print_es_eval(result)
    write_summary(cmd.out, result)
    return result


def print_es_eval(result: dict[str, Any]) -> None:
    """Per task (and over all tasks): return, mean ± standard error over seeds, and the share of the specialist's
    gain over zero action; then the paired differences."""
    travels = "distance" in result
    header = ("method", "seeds", "return", "vs specialist", "episode steps")
    if travels:
        header += ("distance (m)", "distance vs specialist")
    for task in result["tasks"]:
        rows = []
        for method, name in NAMES.items():
            if method not in result["returns"]:
                continue
            n = len(result["per_seed"][method][task])
            steps = result["episode_length"][method][task]
            row = (name, n, _cell(result, "returns", method, task, n), _share(result, method, task),
                   f"{steps:.1f}" if n else "-")  # fmt: skip
            if travels:
                row += (_cell(result, "distance", method, task, n), _share(result, method, task, "_distance"))
            rows.append(row)
        title = (
            f"metactl eval: {result['family']}, {task} ({result['episodes']} episodes per seed and task, "
            f"{result['steps']} steps, mean ± SE over seeds; adaptation {result['adaptation']['name']}"
            + ("; distance along the task's heading" if travels else "")
            + ")"
        )
        print(format_table(title, header, rows))
    for key, name in DIFFS.items():
        for task, d in result.get(key, {}).items():
            mark = " (> 2 SE)" if d["above_2se"] else ""
            diff = mean_se(d["return_diff"], d["se"], d["seeds"], signed=True)
            print(f"{name} on {task}: {diff} (SE over {d['seeds']} seeds){mark}")
    budget = ", ".join(f"{k} {v}" for k, v in result["training_episodes"].items() if v)
    print(f"training episodes per run: {budget}")


def _cell(result: dict[str, Any], measure: str, method: str, task: str, n: int) -> str:
    return mean_se(result[measure][method][task], result[f"{measure}_se"][method][task], n)


def _share(result: dict[str, Any], method: str, task: str, suffix: str = "") -> str:
    """``method``'s fraction of the specialist's gain over zero action (in return, or with ``suffix``
    '_distance' in distance), ± its standard error over seeds."""
    share = result.get(f"{method}_vs_specialist{suffix}", {}).get(task)
    if share is None or share != share:
        return "-"
    se = result[f"{method}_vs_specialist{suffix}_se"][task]
    return f"{share:.2f}" if se != se else f"{share:.2f} ± {se:.2f}"
