"""Held-out evaluation of model-based controllers: GrBAL, ReBAL, MB and MB+DE on a family's test tasks."""

from __future__ import annotations

from typing import Any

import numpy as np

from metactl.controllers.dynamics import DynamicsSpec, DynamicsStats, ForwardCost
from metactl.controllers.mpc import MPCController
from metactl.sim import TaskFamily
from metactl.sim.tasks import Task
from metactl.train.mb_rollout import build_planner, run_episodes
from metactl.train.torch_online import Adaptation, TorchOnlineModel

EVAL_SEED_KEY = 8_888_888


def task_label(task: Task) -> str:
    """A short name for a held-out task in tables and ``summary.json``."""
    d = task.to_dict()
    d.pop("type")
    if "name" in d:
        return str(d["name"])
    return ",".join(f"{k}={v}" for k, v in d.items() if k != "mass_scale" or v != 1.0)


def heldout_returns(
    family: TaskFamily,
    spec: DynamicsSpec,
    params: list[np.ndarray],
    stats: DynamicsStats,
    mode: str,
    planner: dict[str, Any],
    *,
    window: int,
    lr: float,
    steps: int,
    seed: int,
    episodes: int = 1,
    adapt: bool = True,
    adaptation: Adaptation | None = None,
) -> dict[str, float]:
    """Mean return per held-out test task of the model run as ``mode`` (grbal, rebal, mb, mb_de) with MPC;
    every task x episode runs in one lockstep batch; episode seeds derive from ``seed``. ``adaptation``: the
    model's meta-trained inner step (default: one SGD step of ``lr``)."""
    tasks = [t for t in family.test_tasks() for _ in range(episodes)]
    rng = np.random.default_rng([seed, EVAL_SEED_KEY])
    seeds = [int(s) for s in rng.integers(2**31 - 1, size=len(tasks))]
    model = TorchOnlineModel(mode, spec, params, stats, len(tasks), window, lr, adaptation)
    controller = MPCController(
        model, build_planner(planner, family), ForwardCost(family.observation_names, family.reward_spec), rng, adapt
    )
    returns = run_episodes(family, tasks, seeds, steps, rng, controller).returns()
    out: dict[str, list[float]] = {}
    for task, ret in zip(tasks, returns, strict=True):
        out.setdefault(task_label(task), []).append(float(ret))
    return {k: float(np.mean(v)) for k, v in out.items()}


METHOD_MODES = {"grbal": ("grbal",), "rebal": ("rebal",), "mb": ("mb", "mb_de")}
"""Evaluated modes per trained method: an MB model is evaluated as MB and as MB+DE (dynamic evaluation)."""


def evaluate_runs(
    run_dirs: list[str], *, episodes: int = 1, steps: int = 0, de_lr: float | None = None
) -> dict[str, Any]:
    """Held-out returns of every run in ``run_dirs`` (``metactl train grbal|rebal|mb`` outputs, one family).

    Returns ``{"family", "tasks", "methods": {mode: {task: mean over seeds}}, "std": {...}, "per_seed": {...}}``;
    ``steps`` overrides the episode length (0: the family's horizon); ``de_lr`` MB+DE's step size (default:
    the run's inner_lr). Each run is evaluated on its own seed's episode seeds.
    """
    from metactl.controllers.serialization import load_dynamics_model, load_inner_params
    from metactl.sim import make_family

    per_seed: dict[str, dict[str, list[float]]] = {}
    families = set()
    for run in run_dirs:
        spec, params, stats, extra = load_dynamics_model(_model_path(run))
        cfg = extra["train_config"]
        families.add(extra["family"])
        if len(families) > 1:
            raise ValueError(f"runs mix task families {sorted(families)}; evaluate one family at a time")
        family = make_family(extra["family"])
        for mode in METHOD_MODES[extra["method"]]:
            lr = de_lr if (mode == "mb_de" and de_lr is not None) else float(extra["inner_lr"])
            meta_trained = Adaptation.from_record(extra.get("adaptation"), load_inner_params(_model_path(run)), lr)
            returns = heldout_returns(
                family, spec, params, stats, mode, extra["planner"], window=int(extra["window"]), lr=lr,
                steps=steps or family.horizon, seed=int(cfg["seed"]), episodes=episodes,
                adaptation=meta_trained if mode == "grbal" else None,
            )  # fmt: skip
            for task, value in returns.items():
                per_seed.setdefault(mode, {}).setdefault(task, []).append(value)
    methods = {m: {t: float(np.mean(v)) for t, v in tasks.items()} for m, tasks in per_seed.items()}
    std = {m: {t: float(np.std(v)) for t, v in tasks.items()} for m, tasks in per_seed.items()}
    tasks = sorted({t for v in per_seed.values() for t in v})
    return {"family": families.pop(), "tasks": tasks, "methods": methods, "std": std, "per_seed": per_seed}


def _model_path(run: str) -> str:
    import os

    path = os.path.join(run, "model.npz") if os.path.isdir(run) else run
    if not os.path.isfile(path):
        raise ValueError(f"no trained model at {path}; pass 'metactl train grbal|rebal|mb' output folders")
    return path
