"""The held-out table of ES-MAML runs: every method next to its references, on the same episodes.

Song et al., "ES-MAML: Simple Hessian-Free Meta Learning", ICLR 2020, compare ES-MAML with the same ES without
meta-learning; issue 16 adds the *specialist*, the same ES trained on one held-out task alone with as many episodes
(``metactl train es --no-meta --specialist-task K``). For each held-out task, every run's policy drives the same
E episodes (task seeds from one key shared by the whole table, one episode length):

- ES-MAML (``metactl train es``): before and after its adaptation operator U;
- the non-meta baseline (``--no-meta``, the same ES budget): before and after the same U;
- the specialist of that task, without adaptation;
- zero action: the policy whose parameters are all zero (mid-range actions: zero torque for HalfCheetah), the
  floor the ratios are measured from.

Reported per task and over all tasks: mean ± standard error over seeds (of each seed's mean over its episodes);
``post_adaptation_vs_specialist``, ES-MAML after adaptation as a fraction of the specialist's gain over zero action
((post - zero) / (specialist - zero): the plain ratio of returns where zero action earns 0, and still meaningful
where every return is negative, as in goal velocity; not given where the specialist's gain is within 2 standard
errors of 0), with its standard error over ES-MAML's seeds (the specialist's gain taken as exact); and paired
differences over seeds (same seed, same episodes): ES-MAML after - baseline after, and each method's after - before.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from metactl.controllers import AdaptationOperator, NormalizerSnapshot, Policy, load_policy
from metactl.controllers.serialization import POLICY_FILE, run_file
from metactl.sim import RolloutResult, TaskFamily, make_family
from metactl.train.config import TrainConfig
from metactl.train.es_maml import heldout_seeds, pre_post_rollouts
from metactl.train.lockstep import Evaluator
from metactl.train.task_sets import paired_difference, standard_error, task_label, task_set

TABLE_KEY = 16
"""Key of the table's task seeds (``es_maml.heldout_seeds``): every run and method sees the same episodes."""
ALL = "all tasks"
"""Label of the mean over the held-out tasks."""
MEASURES = ("returns", "episode_length", "distance")
"""What the table reports per method and task (``_per_task``)."""
METHODS = ("es_maml_pre", "es_maml_post", "baseline_pre", "baseline_post", "specialist", "zero_action")


@dataclasses.dataclass(frozen=True)
class ESRun:
    """One ``metactl train es`` run: its kind ('es_maml', 'baseline' or 'specialist'), settings and policy."""

    path: str
    kind: str
    config: TrainConfig
    policy: Policy
    horizon: int
    episodes: int


def load_run(run: str) -> ESRun:
    """The run in folder ``run`` (or its policy.npz); ``ValueError`` naming the fix if it is not one."""
    path = run_file(run, POLICY_FILE)
    if not os.path.isfile(path):
        raise ValueError(f"no trained policy at {path}; pass 'metactl train es' output folders")
    policy, extra = load_policy(path)
    config = TrainConfig.from_dict(extra["train_config"])
    kind = "es_maml" if config.meta else ("baseline" if config.specialist_task is None else "specialist")
    episodes = _episodes(os.path.dirname(path))
    return ESRun(os.path.abspath(os.path.dirname(path)), kind, config, policy, int(extra["horizon"]), episodes)


def _episodes(run_dir: str) -> int:
    """Training episodes of a run, from its summary.json (-1 if it has none)."""
    summary = os.path.join(run_dir, "summary.json")
    if not os.path.isfile(summary):
        return -1
    with open(summary) as f:
        return int(json.load(f)["episodes"])


def evaluate_es_runs(
    run_dirs: Sequence[str], *, episodes: int = 10, steps: int = 0, tasks: str = "test"
) -> dict[str, Any]:
    """The table of ``run_dirs`` (``metactl train es`` outputs of one family); see the module doc. ``episodes``
    per task and run; ``steps`` the episode length (0: the runs' own, which must agree); ``tasks`` 'test',
    'validation' or 'confirmation' (``task_sets.task_set``; specialists are trained on test tasks, so only 'test')."""
    if episodes < 1:
        raise ValueError(f"--episodes must be >= 1, got {episodes}")
    runs = [load_run(r) for r in run_dirs]
    family = make_family(_one(runs, lambda r: r.config.family, "task families", "evaluate one family at a time"))
    operator = _operator(runs)
    if steps == 0:
        steps = _one(runs, lambda r: r.horizon, "episode lengths", "pass --steps N to evaluate all on N steps")
    if tasks not in ("test", "validation", "confirmation"):
        raise ValueError(f"ES runs are evaluated on --tasks test, validation or confirmation, got {tasks!r}")
    if tasks != "test" and any(r.kind == "specialist" for r in runs):
        raise ValueError("specialists are trained on test tasks: evaluate them with --tasks test")
    held_out = task_set(family, tasks)
    labels = [task_label(t) for t in held_out]
    batch = [t for t in held_out for _ in range(episodes)]
    seeds = heldout_seeds(TABLE_KEY, len(batch))
    per_seed = {k: {m: {t: {} for t in labels} for m in METHODS} for k in MEASURES}
    for run in runs:
        ev = Evaluator(family, run.policy.spec, run.policy.normalizer, steps)
        if run.kind == "specialist":  # its own task only, without adaptation
            k = run.config.specialist_task
            mine = seeds[k * episodes : (k + 1) * episodes]  # the episodes every other method has on task k
            own = ev.evaluation_rollouts(np.tile(run.policy.params, (episodes, 1)), [held_out[k]] * episodes, mine)
            _record(per_seed, "specialist", run, _per_task(own, [held_out[k]] * episodes, [labels[k]], episodes))
            continue
        pre, post = pre_post_rollouts(ev, operator, run.policy.params, batch, seeds)
        for when, result in (("pre", pre), ("post", post)):
            _record(per_seed, f"{run.kind}_{when}", run, _per_task(result, batch, labels, episodes))
    zero = _zero_action(family, runs[0].policy, batch, seeds, steps)
    for measure, per_task in _per_task(zero, batch, labels, episodes).items():
        for label, value in per_task.items():
            per_seed[measure]["zero_action"][label][0] = value
    return _summary(family, labels, tasks, episodes, steps, per_seed, runs, operator)


def _per_task(result: RolloutResult, tasks: list[Any], labels: list[str], episodes: int) -> dict[str, dict]:
    """measure -> task label -> the mean over that task's ``episodes`` consecutive rows of ``result``: the return,
    the episode length (a fall ends it early) and, for a robot that travels, the distance along the task's heading
    (m; forward-backward: the commanded way). That distance over the control period is a forward-backward return's
    progress term, apart from its control cost and alive bonus."""
    per_episode = {"returns": result.returns, "episode_length": result.lengths.astype(float)}
    if result.displacement is not None:
        per_episode["distance"] = np.array([getattr(t, "direction", 1.0) for t in tasks]) * result.displacement
    return {m: {label: float(v[i * episodes : (i + 1) * episodes].mean()) for i, label in enumerate(labels)}
            for m, v in per_episode.items()}  # fmt: skip


def _record(per_seed: dict, method: str, run: ESRun, per_task: dict[str, dict[str, float]]) -> None:
    for measure, values in per_task.items():
        for label, value in values.items():
            _put(per_seed[measure][method][label], run, value)


def _one(runs: list[ESRun], get: Any, what: str, fix: str) -> Any:
    values = sorted({get(r) for r in runs})
    if len(values) != 1:
        raise ValueError(f"runs mix {what} {values}; {fix}")
    return values[0]


def _operator(runs: list[ESRun]) -> AdaptationOperator:
    """ES-MAML's own operator U (all ES-MAML runs must share it); the baseline is given the same U."""
    meta = [r for r in runs if r.kind == "es_maml"] or [r for r in runs if r.kind == "baseline"] or runs
    ops = {r.config.adaptation for r in meta}
    if len(ops) != 1:
        names = sorted({str(r.config.operator().to_dict()) for r in meta})
        raise ValueError(f"ES-MAML runs adapt with different operators {names}; evaluate each operator's runs apart")
    return meta[0].config.operator()


def _put(slot: dict[int, float], run: ESRun, value: float) -> None:
    if run.config.seed in slot:
        raise ValueError(f"two {run.kind} runs with seed {run.config.seed} for one task (the second: {run.path})")
    slot[run.config.seed] = value


def _zero_action(family: TaskFamily, like: Policy, tasks: list[Any], seeds: list[int], steps: int) -> RolloutResult:
    spec = like.spec
    ev = Evaluator(family, spec, NormalizerSnapshot.identity(spec.obs_dim), steps)
    return ev.evaluation_rollouts(np.zeros((len(tasks), spec.num_params)), tasks, seeds)


def _with_mean(per_task: dict[str, dict[int, float]]) -> dict[str, dict[int, float]]:
    """``per_task`` plus ALL: per seed, the mean over tasks, for the seeds every task has."""
    common = set.intersection(*(set(v) for v in per_task.values()))
    return {**per_task, ALL: {s: float(np.mean([v[s] for v in per_task.values()])) for s in sorted(common)}}


def _diff(a: dict[int, float], b: dict[int, float]) -> dict[str, Any]:
    """Paired difference a - b over the seeds both have."""
    mean, se, n = paired_difference(a, b)
    return {"return_diff": mean, "se": se, "seeds": n, "above_2se": bool(n) and mean > 2 * se}


def _summary(family, labels, tasks, episodes, steps, per_seed, runs, operator) -> dict[str, Any]:
    keys = [*labels, ALL]
    out: dict[str, Any] = {"family": family.name, "task_set": tasks, "tasks": keys, "episodes": episodes,
                           "steps": steps, "adaptation": operator.to_dict(), "table_key": TABLE_KEY,
                           "runs": {k: sorted(r.path for r in runs if r.kind == k) for k in ("es_maml", "baseline",
                                                                                              "specialist")},
                           "training_episodes": {k: sorted({r.episodes for r in runs if r.kind == k})
                                                 for k in ("es_maml", "baseline", "specialist")}}  # fmt: skip
    tables = {k: {m: _with_mean(d) for m, d in per_seed[k].items() if any(d.values())} for k in MEASURES}
    for measure, table in tables.items():
        if not table:  # no distance where the simulator has no root x
            continue
        suffix = "" if measure == "returns" else f"_{measure}"
        out[measure] = {m: {t: float(np.mean(list(d[t].values()))) if d[t] else float("nan") for t in keys}
                        for m, d in table.items()}  # fmt: skip
        out[f"{measure}_se"] = {m: {t: standard_error(list(d[t].values())) for t in keys} for m, d in table.items()}
        out[f"per_seed{suffix}"] = {m: {t: d[t] for t in keys} for m, d in table.items()}
        if measure != "episode_length":
            out.update(_vs_specialist(out[measure], out[f"{measure}_se"], keys, suffix))
    for method in tables["returns"]:
        out[method] = out["returns"][method]  # the summary keys: es_maml_post, ..., specialist, zero_action
    if "specialist" in out["returns"]:
        out["post_adaptation_vs_specialist"] = out.get("es_maml_post_vs_specialist", {})
        out["post_adaptation_vs_specialist_se"] = out.get("es_maml_post_vs_specialist_se", {})
    table = tables["returns"]
    pairs = (("post_adaptation_vs_baseline", "es_maml_post", "baseline_post"),
             ("es_maml_post_minus_pre", "es_maml_post", "es_maml_pre"),
             ("baseline_post_minus_pre", "baseline_post", "baseline_pre"))  # fmt: skip
    for key, a, b in pairs:
        if a in table and b in table:
            out[key] = {t: _diff(table[a][t], table[b][t]) for t in keys}
    return out


def _vs_specialist(mean: dict, se: dict, keys: list[str], suffix: str) -> dict[str, Any]:
    """``<method>_vs_specialist<suffix>`` and its ``_se`` for the methods after adaptation: (method - zero action)
    / (specialist - zero action) per task, the specialist's gain taken as exact (the spread of ``method``'s seeds
    alone); NaN where that gain is not above 2 of the specialist's standard errors."""
    if "specialist" not in mean or "zero_action" not in mean:
        return {}
    spec, zero = mean["specialist"], mean["zero_action"]
    gain = {t: _gain(spec[t] - zero[t], se["specialist"][t]) for t in keys}
    out: dict[str, Any] = {}
    for method in ("es_maml_post", "baseline_post"):
        if method in mean:
            out[f"{method}_vs_specialist{suffix}"] = {t: (mean[method][t] - zero[t]) / gain[t] for t in keys}
            out[f"{method}_vs_specialist{suffix}_se"] = {t: se[method][t] / gain[t] for t in keys}
    return out


def _gain(gain: float, se: float) -> float:
    """The specialist's ``gain`` over zero action, or NaN if it is not clearly positive (> 2 ``se``; > 0 for one
    seed): a ratio to a gain within noise is no number (goal velocity 0.25, where standing still is near-best)."""
    return gain if gain > 0 and not gain <= 2 * se else float("nan")
