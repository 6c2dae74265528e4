"""Held-out episodes of model-based controllers, with what each return is made of.

One evaluation drives E episodes in lockstep (``run_episodes``) with an adaptive MPC controller — a learned model in
one of its modes, or the oracle — and records per episode its return split into forward progress (the reward's
velocity term: displacement / control period), control cost and alive bonus, and for a task that changes
mid-episode the progress made after the change. ``heldout_returns`` is the short form training uses.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from metactl.controllers.dynamics import DynamicsSpec, DynamicsStats, ForwardCost, ObservedSignal
from metactl.controllers.mpc import MPCController, OnlineDynamics
from metactl.sim import TaskFamily
from metactl.sim.tasks import ChangeTask, Task
from metactl.train.mb_rollout import Episodes, build_planner, run_episodes
from metactl.train.task_sets import task_label
from metactl.train.torch_online import Adaptation, TorchOnlineModel

EVAL_SEED_KEY = 8_888_888


@dataclasses.dataclass
class EpisodeStats:
    """Per episode [E]: return = progress - ctrl_cost + alive; ``progress_after`` is the progress made from a task's
    change on (NaN for a task that does not change); ``displacement`` in meters; ``upside_down`` the share of steps
    with the posture signal beyond +-pi/2, i.e. on its back (NaN for a robot without one)."""

    returns: np.ndarray
    progress: np.ndarray
    ctrl_cost: np.ndarray
    alive: np.ndarray
    progress_after: np.ndarray
    displacement: np.ndarray
    upside_down: np.ndarray


def episode_stats(family: TaskFamily, tasks: Sequence[Task], eps: Episodes) -> EpisodeStats:
    """What the returns of ``eps`` (one per task) are made of, from the episodes' root positions and actions."""
    spec = family.reward_spec  # type: ignore[attr-defined]
    steps = np.arange(eps.act.shape[1])[None] < eps.lengths[:, None]
    ctrl = float(spec["ctrl_cost"]) * np.einsum("eta,eta->e", eps.act * steps[..., None], eps.act)
    alive = float(spec.get("alive_bonus", 0.0)) * eps.lengths
    end = eps.x[np.arange(len(tasks)), eps.lengths]
    dt = family.control_period
    after = np.array([
        (end[i] - eps.x[i, min(t.at_step, eps.lengths[i])]) / dt if isinstance(t, ChangeTask) else np.nan
        for i, t in enumerate(tasks)
    ])  # fmt: skip
    displacement = end - eps.x[:, 0]
    return EpisodeStats(eps.returns(), displacement / dt, ctrl, alive, after, displacement, _upside_down(family, eps))


def _upside_down(family: TaskFamily, eps: Episodes) -> np.ndarray:
    signal = family.reward_spec.get("posture_signal")  # type: ignore[attr-defined]
    if not signal:
        return np.full(len(eps.lengths), np.nan)
    posture = np.abs(ObservedSignal(family.observation_names, signal)(eps.obs[:, 1:])) > np.pi / 2
    valid = np.arange(posture.shape[1])[None] < eps.lengths[:, None]
    return (posture & valid).sum(axis=1) / np.maximum(eps.lengths, 1)


def run_controller(
    family: TaskFamily,
    tasks: Sequence[Task],
    seeds: Sequence[int],
    steps: int,
    model: OnlineDynamics,
    planner: dict[str, Any],
    *,
    hold: int,
    rng: np.random.Generator,
    adapt: bool = True,
    reward_spec: Mapping[str, Any] | None = None,
) -> tuple[EpisodeStats, Episodes]:
    """One episode per task, driven by adaptive MPC on ``model`` (E = len(tasks) in lockstep); the planner's cost
    from ``reward_spec`` (a run's, with its posture limit; None: the family's)."""
    spec = family.reward_spec if reward_spec is None else reward_spec  # type: ignore[attr-defined]
    cost = ForwardCost(family.observation_names, spec)
    controller = MPCController(model, build_planner(planner, family), cost, rng, adapt, hold=hold)
    eps = run_episodes(family, tasks, seeds, steps, rng, controller, hold=hold)
    return episode_stats(family, tasks, eps), eps


def episode_seeds(seed: int, n: int) -> tuple[list[int], np.random.Generator]:
    """The held-out episode seeds of a run of seed ``seed`` (the same for every method and reference), and the
    generator of the planner's noise."""
    rng = np.random.default_rng([seed, EVAL_SEED_KEY])
    return [int(s) for s in rng.integers(2**31 - 1, size=n)], rng


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
    hold: int = 1,
    adaptation: Adaptation | None = None,
    reward_spec: Mapping[str, Any] | None = None,
) -> dict[str, float]:
    """Mean return per held-out test task of the model run as ``mode`` (grbal, rebal, mb, mb_de) with MPC;
    every task x episode runs in one lockstep batch; episode seeds derive from ``seed``. ``adaptation``: the
    model's meta-trained inner step (default: one SGD step of ``lr``); ``reward_spec``: the planner's cost (the
    run's; None: the family's)."""
    tasks = [t for t in family.test_tasks() for _ in range(episodes)]
    seeds, rng = episode_seeds(seed, len(tasks))
    model = TorchOnlineModel(mode, spec, params, stats, len(tasks), window, lr, adaptation)
    result, _ = run_controller(family, tasks, seeds, steps, model, planner, hold=hold, rng=rng, adapt=adapt,
                               reward_spec=reward_spec)  # fmt: skip
    out: dict[str, list[float]] = {}
    for task, ret in zip(tasks, result.returns, strict=True):
        out.setdefault(task_label(task), []).append(float(ret))
    return {k: float(np.mean(v)) for k, v in out.items()}
