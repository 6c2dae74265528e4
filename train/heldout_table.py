"""The held-out table of model-based runs: every method next to its references, on the same episodes.

For each run (one seed of GrBAL, ReBAL or MB) and each held-out task — the family's test tasks, or its mid-episode
change tests — the same episodes (seeds derived from the run's seed, planner noise included) are driven by:

- the method itself (GrBAL, ReBAL; an MB model as MB and as MB+DE, dynamic evaluation);
- *frozen*: a GrBAL model's meta-trained weights without the adaptation step (and ReBAL's weights with an LSTM state
  that reads no transitions: ``rebal_frozen``);
- the *oracle*: the same planner and settings on the true simulator (``train.oracle``).

Reported per task: mean ± standard error over seeds (of each seed's mean over its episodes) of the return and of
what it is made of (forward progress, control cost, alive bonus; progress after a mid-episode change), each
method's forward progress as a fraction of the oracle's (``<method>_vs_oracle``), GrBAL adapting vs frozen as a
paired difference over seeds, the planner's horizon in seconds, and optionally (``model_error``) each model's
open-loop prediction error over the horizon on the oracle's episodes.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from metactl.controllers.dynamics import DynamicsError, with_posture_limit
from metactl.controllers.serialization import MODEL_FILE, load_dynamics_model, load_inner_params, run_file
from metactl.sim import make_family
from metactl.train.mb_eval import EpisodeStats, episode_seeds, run_controller
from metactl.train.model_error import open_loop_error
from metactl.train.oracle import OracleDynamics
from metactl.train.task_sets import paired_difference, standard_error, task_label, task_set
from metactl.train.torch_online import Adaptation, TorchOnlineModel

METHOD_MODES = {"grbal": ("grbal", "frozen"), "rebal": ("rebal", "rebal_frozen"), "mb": ("mb", "mb_de")}
"""Evaluated modes per trained method: GrBAL and ReBAL also frozen (their weights without the adaptation: no inner
step; an LSTM state that reads no transitions); an MB model also as MB+DE."""
FROZEN = {"frozen": "grbal", "rebal_frozen": "rebal"}
"""Frozen mode -> the adapting mode whose weights it runs (summary: ``adapt_vs_frozen``, ``rebal_adapt_vs_frozen``)."""
TERMS = ("returns", "progress", "ctrl_cost", "alive", "progress_after", "upside_down")


def _model_path(run: str) -> str:
    path = run_file(run, MODEL_FILE)
    if not os.path.isfile(path):
        raise ValueError(f"no trained model at {path}; pass 'metactl train grbal|rebal|mb' output folders")
    return path


def evaluate_runs(
    run_dirs: list[str],
    *,
    episodes: int = 1,
    steps: int = 0,
    de_lr: float | None = None,
    tasks: str = "test",
    oracle: bool = True,
    model_error: bool = False,
    video_dir: str | None = None,
    planner: dict[str, Any] | None = None,
    posture_limit: float | None = None,
) -> dict[str, Any]:
    """The table of ``run_dirs`` (``metactl train grbal|rebal|mb`` outputs of one family); see the module doc.
    ``tasks``: see ``task_set``; ``steps`` overrides the episode
    length (0: the family's horizon); ``de_lr`` MB+DE's step size (default: the run's inner_lr); ``planner``
    overrides the runs' planner settings (e.g. ``{"samples": 300}``; choose them on validation tasks);
    ``posture_limit`` the runs' bound on the posture in the planner's cost (0: none; None: each run's own)."""
    planner_override = planner
    runs = [load_dynamics_model(_model_path(r)) for r in run_dirs]
    families = {extra["family"] for _, _, _, extra in runs}
    if len(families) != 1:
        raise ValueError(f"runs mix task families {sorted(families)}; evaluate one family at a time")
    family = make_family(families.pop())
    held_out = task_set(family, tasks)
    batch_tasks = [t for t in held_out for _ in range(episodes)]
    steps = steps or family.horizon
    per_seed: dict[str, dict[str, dict[str, list[float]]]] = {}  # mode -> term -> task -> per-seed means
    oracles: dict[str, tuple[EpisodeStats, Any]] = {}
    errors: dict[str, dict[str, list[list[float]]]] = {}
    horizons = {}
    for (spec, params, stats, extra), run_dir in zip(runs, run_dirs, strict=True):
        seed, hold = int(extra["train_config"]["seed"]), int(extra.get("decision_steps", 1))
        planner, window = {**extra["planner"], **(planner_override or {})}, int(extra["window"])
        horizons[run_dir] = planner["horizon"] * hold * family.control_period
        reward_spec = run_reward_spec(family, extra["reward_spec"], posture_limit)
        seeds, _ = episode_seeds(seed, len(batch_tasks))
        key = json.dumps([seed, planner, hold, reward_spec], sort_keys=True)
        if oracle and key not in oracles:
            oracles[key] = run_controller(family, batch_tasks, seeds, steps, OracleDynamics(hold), planner, hold=hold,
                                          rng=episode_seeds(seed, len(batch_tasks))[1],
                                          reward_spec=reward_spec)  # fmt: skip
            _add(per_seed, f"oracle#{key}", oracles[key][0], batch_tasks)
        for mode in METHOD_MODES[extra["method"]]:
            lr = de_lr if (mode == "mb_de" and de_lr is not None) else float(extra["inner_lr"])
            model_mode = FROZEN.get(mode, mode)
            adaptation = None  # plain SGD of lr; GrBAL: its meta-trained inner step (Meta-SGD, the LSTM, ...)
            if model_mode == "grbal":
                inner = load_inner_params(_model_path(run_dir))
                adaptation = Adaptation.from_record(extra.get("adaptation"), inner, lr)
            model = TorchOnlineModel(model_mode, spec, params, stats, len(batch_tasks), window, lr, adaptation)
            rng = episode_seeds(seed, len(batch_tasks))[1]
            result, eps = run_controller(family, batch_tasks, seeds, steps, model, planner, hold=hold, rng=rng,
                                         adapt=mode not in FROZEN, reward_spec=reward_spec)  # fmt: skip
            _add(per_seed, mode, result, batch_tasks)
            if video_dir is not None:
                _videos(family, batch_tasks, episodes, eps, os.path.join(video_dir, f"video_{mode}_seed{seed}"))
            if model_error and oracle:
                decisions = oracles[key][1].decisions(hold)
                velocity = family.observation_names.index(family.reward_spec["velocity_signal"])
                err = open_loop_error(spec, params, stats, model_mode, decisions, window=window, lr=lr,
                                      horizon=planner["horizon"], velocity_index=velocity, adaptation=adaptation,
                                      adapt=mode not in FROZEN)  # fmt: skip
                for k, v in err.items():
                    errors.setdefault(mode, {}).setdefault(k, []).append(v)
    _merge_oracles(per_seed)
    result = _summary(family, held_out, tasks, episodes, steps, per_seed, errors, horizons, run_dirs)
    return {**result, "planner_override": planner_override or {}, "posture_limit_override": posture_limit}


def run_reward_spec(family: Any, saved: dict[str, Any], posture_limit: float | None = None) -> dict[str, Any]:
    """The planner's cost a run is evaluated with: the one it was trained with (a run saved before posture limits
    plans without one), its posture limit replaced by ``posture_limit`` if given (0: none)."""
    signal = saved.get("posture_signal") or family.reward_spec.get("posture_signal")
    spec = {"posture_limit": None, **saved, "posture_signal": signal}
    try:
        return with_posture_limit(spec, posture_limit)
    except DynamicsError as e:
        raise ValueError(f"--posture-limit: {e}") from None


def _add(per_seed: dict, mode: str, result: EpisodeStats, tasks: list) -> None:
    for term in TERMS:
        by_task: dict[str, list[float]] = {}
        for task, value in zip(tasks, getattr(result, term), strict=True):
            by_task.setdefault(task_label(task), []).append(float(value))
        for label, values in by_task.items():
            per_seed.setdefault(mode, {}).setdefault(term, {}).setdefault(label, []).append(float(np.mean(values)))


def _merge_oracles(per_seed: dict) -> None:
    """One oracle column: each seed's oracle (its planner settings) in seed order."""
    keys = [k for k in per_seed if k.startswith("oracle#")]
    if not keys:
        return
    merged: dict[str, dict[str, list[float]]] = {}
    for key in keys:
        for term, by_task in per_seed.pop(key).items():
            for label, values in by_task.items():
                merged.setdefault(term, {}).setdefault(label, []).extend(values)
    per_seed["oracle"] = merged


def _summary(family, held_out, tasks, episodes, steps, per_seed, errors, horizons, run_dirs) -> dict[str, Any]:
    labels = [task_label(t) for t in held_out]
    out: dict[str, Any] = {"family": family.name, "task_set": tasks, "tasks": labels, "episodes": episodes,
                           "steps": steps, "horizon_s": sorted(set(horizons.values())),
                           "runs": [os.path.abspath(r) for r in run_dirs]}  # fmt: skip
    for term in TERMS:
        out[term] = {m: {t: float(np.mean(v)) for t, v in d[term].items()} for m, d in per_seed.items()}
        out[f"{term}_se"] = {m: {t: standard_error(v) for t, v in d[term].items()} for m, d in per_seed.items()}
    out["per_seed"] = {m: d["returns"] for m, d in per_seed.items()}
    out["per_seed_progress"] = {m: d["progress"] for m, d in per_seed.items()}
    for mode in per_seed:
        out[mode] = out["returns"][mode]  # the summary keys: grbal, rebal, mb, mb_de, frozen, oracle
    if "oracle" in per_seed:
        oracle = out["progress"]["oracle"]
        for mode in per_seed:
            if mode != "oracle":
                out[f"{mode}_vs_oracle"] = {t: v / oracle[t] if oracle[t] else float("nan")
                                            for t, v in out["progress"][mode].items()}  # fmt: skip
    for frozen, adapting in FROZEN.items():
        if adapting not in per_seed or frozen not in per_seed:
            continue
        key = "adapt_vs_frozen" if adapting == "grbal" else f"{adapting}_adapt_vs_frozen"
        out[key] = {}
        for label in labels:  # paired over seeds: the same episodes
            mean, se, n = paired_difference(
                *(dict(enumerate(per_seed[m]["returns"][label])) for m in (adapting, frozen))
            )
            entry = {"return_diff": mean, "se": se, "seeds": n}
            after = [dict(enumerate(per_seed[m]["progress_after"][label])) for m in (adapting, frozen)]
            if all(np.isfinite(list(d.values())).all() for d in after):  # a change test: also the progress after it
                mean, se, _ = paired_difference(*after)
                entry |= {"progress_after_diff": mean, "progress_after_se": se}
            out[key][label] = entry
    if errors:
        out["model_error"] = {m: {k: np.mean(v, axis=0).tolist() for k, v in d.items()} for m, d in errors.items()}
    return out


def _videos(family, tasks, episodes, eps, prefix: str) -> None:
    from metactl.sim.render import render_episode

    for i in range(0, len(tasks), episodes):
        render_episode(family, tasks[i], eps.obs[i, : eps.lengths[i] + 1], f"{prefix}_{task_label(tasks[i])}.mp4")
