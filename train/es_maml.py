"""ES-MAML: zero-order model-agnostic meta-learning with evolution strategies.

Song, Gao, Yang, Choromanski, Pacchiano, Tang, "ES-MAML: Simple Hessian-Free Meta
Learning", ICLR 2020, Algorithm 3. The meta-objective of parameters theta is the
return after adaptation, f(U(theta, T)), averaged over training tasks T; it is
treated as a black box and ascended with antithetic Gaussian smoothing:

    theta <- theta + beta / (2 n sigma) * sum_j (z_j^+ - z_j^-) eps_j

with z the z-scored objective values of theta +- sigma eps_j. With
``meta=False`` the same loop ascends f(theta, T) without adaptation, on as many
episodes per iteration: the non-meta (domain randomization) baseline; with
``specialist_task`` K as well, on held-out test task K alone: the *specialist*,
the reference ES-MAML's held-out table measures against (``train.es_table``).

Every random draw of iteration i comes from ``SeedSequence([seed, i])``, so a run
resumed from a checkpoint continues exactly as if never interrupted.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from typing import Any

import numpy as np

from metactl.controllers import (
    AdaptationOperator,
    NormalizerSnapshot,
    Policy,
    PolicySpec,
    RunningNormalizer,
    save_policy,
)
from metactl.controllers.serialization import POLICY_FILE
from metactl.sim import RolloutResult, TaskFamily, make_family
from metactl.summary import write_summary
from metactl.train.checkpoint import ESState, latest_checkpoint, load_checkpoint, save_checkpoint
from metactl.train.checkpoint import resume as resume_from
from metactl.train.config import ConfigError, TrainConfig
from metactl.train.lockstep import Evaluator
from metactl.train.run_log import RunLog, plot_learning_curve
from metactl.train.workers import Backend, InProcess, make_backend

log = logging.getLogger(__name__)

ADAM_B1, ADAM_B2, ADAM_EPS = 0.9, 0.999, 1e-8
EVAL_SEED_KEY = 7_777_777


@dataclasses.dataclass
class TrainResult:
    """Where the run wrote its outputs and its final held-out numbers (means over test tasks)."""

    out_dir: str
    policy_path: str
    summary: dict[str, Any]


def initial_state(config: TrainConfig, spec: PolicySpec) -> ESState:
    params = spec.init_params(np.random.default_rng([config.seed, 0xC0FFEE]))
    zeros = np.zeros_like(params)
    return ESState(0, params, RunningNormalizer.empty(spec.obs_dim), zeros, zeros.copy())


def episodes_per_task(operator: AdaptationOperator) -> int:
    """Episodes one adapted evaluation costs: every query plus the evaluation of U(theta)."""
    return sum(operator.schedule()) + 1


def training_episodes(config: TrainConfig) -> int:
    """Episodes a whole ES-MAML run of ``config`` costs: iterations x 2 directions x tasks x episodes per task.

    The baseline and the specialist run exactly as many, without adaptation (``es_iteration``).
    """
    per_iteration = 2 * config.directions * config.tasks_per_iteration * episodes_per_task(config.operator())
    return config.iterations * per_iteration


def es_iteration(
    state: ESState,
    config: TrainConfig,
    family: TaskFamily,
    spec: PolicySpec,
    operator: AdaptationOperator,
    backend: Backend | None = None,
) -> tuple[ESState, float]:
    """One outer ES-MAML step; returns the new state and the mean objective of the perturbations."""
    rng = np.random.default_rng([config.seed, state.iteration + 1])
    n_tasks = config.tasks_per_iteration * (1 if config.meta else episodes_per_task(operator))
    tasks = family.sample_tasks(rng, n_tasks)
    if config.specialist_task is not None:  # drawn all the same: the specialist sees the baseline's episode seeds
        tasks = [family.test_tasks()[config.specialist_task]] * n_tasks
    task_seeds = rng.integers(0, 2**31 - 1, size=n_tasks).tolist()
    eps = rng.standard_normal((config.directions, state.params.size))
    thetas = np.concatenate([state.params + config.sigma * eps, state.params - config.sigma * eps])

    norm = _snapshot(state, config, spec)
    ev = Evaluator(family, spec, norm, config.horizon or family.horizon, backend or InProcess())
    rows = np.repeat(thetas, n_tasks, axis=0)
    row_tasks, row_seeds = tasks * len(thetas), task_seeds * len(thetas)
    if config.meta:
        rows = ev.adapt(operator, rows, row_tasks, row_seeds)
    values = ev.evaluate(rows, row_tasks, row_seeds).reshape(len(thetas), n_tasks).mean(axis=1)

    grad = es_gradient(values, eps, config)
    params, m, v = _ascend(state, grad, config)
    normalizer = state.normalizer
    if config.normalize_obs:
        normalizer = normalizer.update(ev.stats.count, ev.stats.total, ev.stats.total_sq)
    new_state = ESState(
        state.iteration + 1,
        params,
        normalizer,
        m,
        v,
        state.episodes + ev.episodes,
        state.env_steps + ev.env_steps,
        state.elapsed_s,
    )
    return new_state, float(values.mean())


def es_gradient(values: np.ndarray, eps: np.ndarray, config: TrainConfig) -> np.ndarray:
    """Ascent direction from the values [2n] of theta + sigma eps (first n) and theta - sigma eps.

    'zscore': 1/(2 b sigma) sum (z+ - z-) eps over the kept pairs, z the z-scored values.
    'ars' (Mania et al. 2018, V2-t): 1/(b sigma_R) sum (r+ - r-) eps, sigma_R the std of the kept returns.
    Kept pairs: the ``top_directions`` best by max(r+, r-), or all.
    """
    n = config.directions
    plus, minus = values[:n], values[n:]
    b = config.top_directions or n
    # Kept pairs in their original order, so that keeping all of them is the plain sum.
    keep = np.sort(np.argsort(-np.maximum(plus, minus), kind="stable")[:b]) if b < n else np.arange(n)
    if config.return_normalization == "ars":
        spread = np.concatenate([plus[keep], minus[keep]]).std()
        return (plus[keep] - minus[keep]) @ eps[keep] / (b * spread + 1e-12)
    z = (values - values.mean()) / (values.std() + 1e-12)
    return (z[:n][keep] - z[n:][keep]) @ eps[keep] / (2 * b * config.sigma)


def _ascend(state: ESState, grad: np.ndarray, config: TrainConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if config.optimizer == "sgd":
        return state.params + config.learning_rate * grad, state.adam_m, state.adam_v
    t = state.iteration + 1
    m = ADAM_B1 * state.adam_m + (1 - ADAM_B1) * grad
    v = ADAM_B2 * state.adam_v + (1 - ADAM_B2) * grad**2
    step = config.learning_rate * (m / (1 - ADAM_B1**t)) / (np.sqrt(v / (1 - ADAM_B2**t)) + ADAM_EPS)
    return state.params + step, m, v


def _snapshot(state: ESState, config: TrainConfig, spec: PolicySpec) -> NormalizerSnapshot:
    """The frozen normalizer the policy of ``state`` acts with (identity if not normalizing)."""
    return state.normalizer.snapshot() if config.normalize_obs else NormalizerSnapshot.identity(spec.obs_dim)


def heldout_seeds(key: int, n: int) -> list[int]:
    """Task seeds [n] of held-out episodes: fixed by ``key`` (a run's seed, or one key a whole table shares)."""
    return np.random.default_rng([key, EVAL_SEED_KEY]).integers(0, 2**31 - 1, n).tolist()


def pre_post_rollouts(
    ev: Evaluator, operator: AdaptationOperator, params: np.ndarray, tasks: list[Any], seeds: list[int]
) -> tuple[RolloutResult, RolloutResult]:
    """Episodes [E] of ``params`` before and after ``operator`` adapts it on each episode's task (the same
    episodes)."""
    rows = np.tile(params, (len(tasks), 1))
    pre = ev.evaluation_rollouts(rows, tasks, seeds)
    return pre, ev.evaluation_rollouts(ev.adapt(operator, rows, tasks, seeds), tasks, seeds)


def heldout_returns(
    config: TrainConfig,
    family: TaskFamily,
    policy: Policy,
    operator: AdaptationOperator,
    backend: Backend | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Return before and after adaptation on each held-out test task [T], mean over repeats.

    Seeds are fixed for the run, so evaluations at different iterations are comparable.
    """
    test = family.test_tasks()
    tasks = test * config.eval_repeats
    seeds = heldout_seeds(config.seed, len(tasks))
    ev = Evaluator(family, policy.spec, policy.normalizer, config.horizon or family.horizon, backend or InProcess())
    pre, post = pre_post_rollouts(ev, operator, policy.params, tasks, seeds)
    return (
        pre.returns.reshape(config.eval_repeats, len(test)).mean(axis=0),
        post.returns.reshape(config.eval_repeats, len(test)).mean(axis=0),
    )


def current_policy(state: ESState, config: TrainConfig, spec: PolicySpec) -> Policy:
    return Policy(spec, state.params.copy(), _snapshot(state, config, spec))


def _prepare_out_dir(config: TrainConfig, out_dir: str, resume: bool) -> ESState | None:
    """Save the resolved config; on resume, check it matches and load the newest checkpoint."""
    os.makedirs(out_dir, exist_ok=True)
    cfg_path = os.path.join(out_dir, "config.json")
    ckpt = latest_checkpoint(os.path.join(out_dir, "checkpoints"))
    if resume:
        if ckpt is None:
            raise ConfigError(f"--resume: no checkpoint in {out_dir}/checkpoints; start without --resume")
        with open(cfg_path) as f:
            saved = TrainConfig.from_dict(json.load(f)).to_dict()  # settings added since the run: their defaults
        if saved != config.to_dict():
            diff = sorted(k for k in saved if saved.get(k) != config.to_dict().get(k))
            raise ConfigError(f"--resume: settings {diff} differ from the run in {out_dir}; pass the same settings")
        state, _, _ = resume_from(os.path.join(out_dir, "checkpoints"), load_checkpoint)
        return state
    if ckpt is not None:
        raise ConfigError(f"--out {out_dir} already holds a run; pass --resume to continue it or choose a new --out")
    with open(cfg_path, "w") as f:
        f.write(config.dumps())
    return None


def train(
    config: TrainConfig,
    out_dir: str,
    resume: bool = False,
    progress: bool = True,
    workers: int | None = 1,
    backend: str = "local",
    address: str | None = None,
) -> TrainResult:
    """Run ES-MAML (or the baseline) for ``config.iterations``; checkpoints allow exact resume.

    ``workers`` rollout processes (``None``: one per core, or in-process for a vectorized family)
    on ``backend`` ('local' or 'ray', joining the cluster at ``address`` if given) change the
    speed, never the result.
    """
    family = make_family(config.family)
    spec = config.policy_spec()
    operator = config.operator()
    state = _prepare_out_dir(config, out_dir, resume) or initial_state(config, spec)
    if workers is None and backend == "local" and family.vectorized:
        workers = 1  # measured: the Four Corners demo took 96 s in-process, 105 s with 2 processes
    pool = make_backend(workers, backend, address)
    run_log = RunLog(out_dir, resume_from=state.iteration)
    ckpt_dir = os.path.join(out_dir, "checkpoints")
    pre = post = np.full(len(family.test_tasks()), np.nan)
    from tqdm import tqdm

    label = run_label(config)
    bar = tqdm(total=config.iterations, initial=state.iteration, desc=f"{label} {config.family}", disable=not progress)
    try:
        while state.iteration < config.iterations:
            t0 = time.perf_counter()
            state, objective = es_iteration(state, config, family, spec, operator, pool)
            state.elapsed_s += time.perf_counter() - t0
            row: dict[str, Any] = {
                "iteration": state.iteration,
                "episodes": state.episodes,
                "env_steps": state.env_steps,
                "wall_s": round(state.elapsed_s, 3),
                "train_objective": objective,
            }
            if state.iteration % config.eval_every == 0 or state.iteration == config.iterations:
                pre, post = heldout_returns(config, family, current_policy(state, config, spec), operator, pool)
                row.update(heldout_pre=float(pre.mean()), heldout_post=float(post.mean()))
            run_log.write(row)
            if state.iteration % config.checkpoint_every == 0 or state.iteration == config.iterations:
                save_checkpoint(ckpt_dir, state)
            bar.update(1)
            bar.set_postfix(objective=f"{objective:.1f}")
        if np.isnan(pre).all():  # resumed a finished run: evaluate once more
            pre, post = heldout_returns(config, family, current_policy(state, config, spec), operator, pool)
    finally:
        bar.close()
        run_log.close()
        pool.close()
    return _finish(config, out_dir, state, spec, family, pre, post)


def _finish(
    config: TrainConfig,
    out_dir: str,
    state: ESState,
    spec: PolicySpec,
    family: TaskFamily,
    pre: np.ndarray,
    post: np.ndarray,
) -> TrainResult:
    policy = current_policy(state, config, spec)
    policy_path = os.path.join(out_dir, POLICY_FILE)
    extra = {
        "family": config.family,
        "control_period": family.control_period,
        "observation_names": list(family.observation_names),
        "action_names": list(family.action_names),
        "adaptation": config.operator().to_dict(),
        "horizon": config.horizon or family.horizon,
        "train_config": config.to_dict(),
    }
    save_policy(policy_path, policy, extra)
    plot_learning_curve(
        os.path.join(out_dir, "metrics.csv"),
        os.path.join(out_dir, "learning_curve.png"),
        f"{run_label(config)} on {config.family} (seed {config.seed})",
    )
    summary = {
        "family": config.family,
        "meta": config.meta,
        "seed": config.seed,
        "iterations": state.iteration,
        "episodes": state.episodes,
        "env_steps": state.env_steps,
        "wall_s": round(state.elapsed_s, 2),
        "heldout_pre_adaptation_return": float(pre.mean()),
        "heldout_post_adaptation_return": float(post.mean()),
        "heldout_pre_per_task": pre.tolist(),
        "heldout_post_per_task": post.tolist(),
        "policy": policy_path,
        "learning_curve": os.path.join(out_dir, "learning_curve.png"),
    }
    if config.specialist_task is not None:
        summary["specialist_task"] = config.specialist_task
        summary["specialist_task_params"] = family.test_tasks()[config.specialist_task].to_dict()
        summary["es_maml_episodes"] = training_episodes(config)  # what it is matched to
    write_summary(out_dir, summary)
    return TrainResult(out_dir, policy_path, summary)


def run_label(config: TrainConfig) -> str:
    """'ES-MAML', 'non-meta baseline' or 'specialist (test task K)'."""
    if config.specialist_task is not None:
        return f"specialist (test task {config.specialist_task})"
    return "ES-MAML" if config.meta else "non-meta baseline"
