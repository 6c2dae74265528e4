"""Model-based meta-training: GrBAL, ReBAL and the non-adaptive MB baseline.

Nagabandi et al., "Learning to Adapt in Dynamic, Real-World Environments Through Meta-Reinforcement
Learning", ICLR 2019, Alg. 1. Each iteration collects ``rollouts`` episodes on newly drawn training
tasks (the first with uniformly random actions, later on-policy with the method's own adaptive MPC),
refits the normalization to all data so far, then takes ``train_steps`` Adam steps on it:

- GrBAL: windows of M + K consecutive transitions of one episode; the meta-loss of theta is the
  error on the K after adapting on the M (one SGD step by default, ``train.dynamics_model.grbal_meta_loss``);
  the meta-gradient estimator (``meta_learner``) and the inner step (``inner_step``, whose learned parameters
  phi are meta-trained with theta) are picked by name from ``train.meta_learners``.
- ReBAL: the same windows; the LSTM reads them and is scored on the last K steps.
- MB: plain regression of single transitions.

Every random draw of iteration i comes from ``(seed, i)``; collected data is written per
iteration, so a killed run resumes from its last checkpoint exactly.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import logging
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from metactl.controllers.dynamics import DynamicsSpec, DynamicsStats, ForwardCost
from metactl.controllers.mpc import MPCController
from metactl.controllers.serialization import MODEL_FILE, save_dynamics_model
from metactl.sim import TaskFamily, make_family
from metactl.summary import write_summary
from metactl.train import dynamics_model as dm
from metactl.train.checkpoint import load_checked, prune, save_checked
from metactl.train.checkpoint import resume as resume_from
from metactl.train.config import ConfigError
from metactl.train.mb_config import MBConfig
from metactl.train.mb_eval import heldout_returns
from metactl.train.mb_rollout import Episodes, build_planner, planner_config, run_episodes
from metactl.train.meta_learners import MetaGrad, describe, init_inner, make_meta_learner
from metactl.train.meta_settings import MetaSettings
from metactl.train.oracle import OracleDynamics
from metactl.train.run_curves import MBCurves
from metactl.train.torch_online import Adaptation, TorchOnlineModel

log = logging.getLogger(__name__)
ADAM_B1, ADAM_B2, ADAM_EPS = 0.9, 0.999, 1e-8
COLLECT_MODE = {"grbal": "grbal", "rebal": "rebal", "mb": "mb"}


@dataclasses.dataclass
class MBResult:
    out_dir: str
    model_path: str
    summary: dict[str, Any]


def model_spec(config: MBConfig, family: TaskFamily) -> DynamicsSpec:
    recurrent = config.method == "rebal"
    return DynamicsSpec(
        "recurrent" if recurrent else "mlp",
        family.obs_dim,
        family.act_dim,
        config.hidden,
        config.rnn_hidden if recurrent else 0,
    )


class Dataset:
    """All transitions collected so far, as whole episodes (windows never cross an episode boundary)."""

    def __init__(self, hold: int = 1) -> None:
        self.hold = hold
        self.episodes: list[tuple[np.ndarray, np.ndarray]] = []  # (obs [T+1, d], act [T, a]) per valid episode

    def add(self, eps: Episodes) -> None:
        """Keep ``eps`` as transitions of ``hold`` control steps (the model's step)."""
        for obs, act in eps.decisions(self.hold):
            if len(act) > 0:
                self.episodes.append((obs, act))

    def transitions(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        obs = np.concatenate([o[:-1] for o, _ in self.episodes])
        nxt = np.concatenate([o[1:] for o, _ in self.episodes])
        return obs, np.concatenate([a for _, a in self.episodes]), nxt

    def windows(self, rng: np.random.Generator, n: int, length: int) -> tuple[np.ndarray, ...]:
        """``n`` windows of ``length`` consecutive transitions: obs, act, next_obs each [n, length, ...]."""
        ok = [i for i, (_, a) in enumerate(self.episodes) if len(a) >= length]
        if not ok:
            raise ConfigError(f"no collected episode is as long as window + future = {length}; shorten them")
        sizes = np.array([len(self.episodes[i][1]) - length + 1 for i in ok], dtype=np.float64)
        picks = rng.choice(len(ok), size=n, p=sizes / sizes.sum())
        out = []
        for k in picks:
            o, a = self.episodes[ok[k]]
            s = int(rng.integers(len(a) - length + 1))
            out.append((o[s : s + length], a[s : s + length], o[s + 1 : s + length + 1]))
        return tuple(np.stack(x) for x in zip(*out, strict=True))


class Adam:
    """Adam over a parameter list, with its state in plain arrays (so a checkpoint restores it exactly)."""

    def __init__(self, params: dm.Params, lr: float):
        self.lr, self.t = lr, 0
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params]

    def step(self, params: dm.Params, grads: dm.Params) -> dm.Params:
        self.t += 1
        out = []
        for i, (p, g) in enumerate(zip(params, grads, strict=True)):
            self.m[i] = ADAM_B1 * self.m[i] + (1 - ADAM_B1) * g
            self.v[i] = ADAM_B2 * self.v[i] + (1 - ADAM_B2) * g * g
            m_hat, v_hat = self.m[i] / (1 - ADAM_B1**self.t), self.v[i] / (1 - ADAM_B2**self.t)
            out.append(p - self.lr * m_hat / (v_hat.sqrt() + ADAM_EPS))
        return out


TrainStep = Callable[[dm.Params, dm.Params, torch.Tensor, torch.Tensor, torch.Tensor, torch.Generator], MetaGrad]
"""(theta, phi, obs, act, nxt [B, L, ...], generator) -> the loss and its gradients for theta and phi."""


def train_step(config: MBConfig, stats: dm.TorchStats) -> TrainStep:
    """The gradient of ``config.method``'s training loss on windows [B, M + K, ...]: GrBAL's through the chosen
    meta-learner (past M = support, next K = query), ReBAL's and MB's by plain autograd (no phi)."""
    m = config.window
    if config.method == "grbal":
        learner = make_meta_learner(MetaSettings.of(config), lambda p, d: dm.mse(p, stats, *d))

        def grbal(theta, phi, obs, act, nxt, generator):  # type: ignore[no-untyped-def]
            past, future = (obs[:, :m], act[:, :m], nxt[:, :m]), (obs[:, m:], act[:, m:], nxt[:, m:])
            return learner.meta_grad(theta, phi, past, future, generator)

        return grbal
    if config.method == "rebal":
        value_and_grad = torch.func.grad_and_value(lambda p, o, a, n: dm.rebal_loss(p, stats, o, a, n, m))
    else:
        value_and_grad = torch.func.grad_and_value(lambda p, o, a, n: dm.mse(p, stats, o, a, n))

    def plain(theta, phi, obs, act, nxt, generator):  # type: ignore[no-untyped-def]
        grads, value = value_and_grad(theta, obs, act, nxt)
        return MetaGrad(value, grads, [])

    return plain


def fit(
    config: MBConfig,
    params: dm.Params,
    inner: dm.Params,
    adam: Adam,
    stats: DynamicsStats,
    data: Dataset,
    rng: np.random.Generator,
) -> tuple[dm.Params, dm.Params, float]:
    """``config.train_steps`` Adam steps of the method's loss on ``data``, on the model's parameters and those of
    its inner step; (new params, new inner parameters, mean loss of the last 10%)."""
    step = train_step(config, dm.TorchStats(stats))
    generator = torch.Generator().manual_seed(int(rng.integers(2**31 - 1)))
    length = config.window + config.future
    losses = []
    for _ in range(config.train_steps):
        if config.method == "mb":
            obs, act, nxt = data.windows(rng, config.meta_batch * length, 1)
        else:
            obs, act, nxt = data.windows(rng, config.meta_batch, length)
        out = step(params, inner, *(torch.as_tensor(x, dtype=dm.DTYPE) for x in (obs, act, nxt)), generator)
        new = adam.step(params + inner, out.theta + out.phi)
        params, inner = new[: len(params)], new[len(params) :]
        losses.append(float(out.value))
    tail = losses[-max(1, len(losses) // 10) :]
    return params, inner, float(np.mean(tail))


def train_model_based(config: MBConfig, out_dir: str, *, resume: bool = False, progress: bool = True) -> MBResult:
    """Run ``config`` writing into ``out_dir``: checkpoints, per-iteration data, ``metrics.csv``, ``curve.png``,
    ``model.npz`` and ``summary.json``. ``resume`` continues from the last checkpoint (same config required)."""
    family = make_family(config.family)
    spec = model_spec(config, family)
    steps = config.episode_steps or family.horizon
    if (config.window + config.future) * config.decision_steps > steps:
        raise ConfigError(
            f"window + future = {config.window + config.future} decisions of {config.decision_steps} steps exceed "
            f"episode_steps {steps}; shorten the window or the decision step"
        )
    ckpt_dir, data_dir = os.path.join(out_dir, "checkpoints"), os.path.join(out_dir, "data")
    os.makedirs(ckpt_dir, exist_ok=True)
    os.makedirs(data_dir, exist_ok=True)
    state = _State.fresh(config, spec) if not resume else _State.resume(config, spec, out_dir)
    if not resume:
        with open(os.path.join(out_dir, "config.json"), "w") as f:
            f.write(config.to_json())
    curves = MBCurves(out_dir, resume_from=state.iteration)
    planner = planner_config(config)
    cost = ForwardCost(family.observation_names, config.reward_spec(family.reward_spec))
    bar = _progress(config, state.iteration) if progress else None
    t_start = time.perf_counter() - state.elapsed_s
    for it in range(state.iteration, config.iterations):
        rng = np.random.default_rng([config.seed, it])
        tasks = family.sample_tasks(rng, config.rollouts)
        seeds = [int(s) for s in rng.integers(2**31 - 1, size=config.rollouts)]
        controller = None
        if it > 0:
            model = TorchOnlineModel(COLLECT_MODE[config.method], spec, dm.to_numpy(state.params), state.stats,
                                     config.rollouts, config.window, config.inner_lr,
                                     Adaptation.of(config, state.inner))  # fmt: skip
            controller = MPCController(model, build_planner(planner, family), cost, rng, hold=config.decision_steps)
        eps = run_episodes(family, tasks, seeds, steps, rng, controller, hold=config.decision_steps)
        _save_episodes(data_dir, it, "", eps)
        state.data.add(eps)
        state.env_steps += eps.env_steps
        if _has_oracle_data(config, it):
            expert = _oracle_episodes(config, family, planner, cost, steps, rng)
            _save_episodes(data_dir, it, "_oracle", expert)
            state.data.add(expert)
            state.env_steps += expert.env_steps
        state.stats = DynamicsStats.from_data(*state.data.transitions())
        torch.manual_seed(int(rng.integers(2**31 - 1)))
        state.params, state.inner, loss = fit(config, state.params, state.inner, state.adam, state.stats, state.data,
                                              rng)  # fmt: skip
        state.iteration = it + 1
        row: dict[str, Any] = {
            "iteration": it + 1, "env_steps": state.env_steps, "model_loss": loss,
            "rollout_return": float(eps.returns().mean()), "random_actions": int(it == 0),
        }  # fmt: skip
        if config.eval_every and ((it + 1) % config.eval_every == 0 or it + 1 == config.iterations):
            row["heldout_return"] = float(np.mean(list(_heldout(config, family, spec, state).values())))
        state.elapsed_s = time.perf_counter() - t_start
        row["wall_s"] = state.elapsed_s
        curves.write(row)
        if (it + 1) % config.checkpoint_every == 0 or it + 1 == config.iterations:
            state.save(ckpt_dir)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(ret=f"{row['rollout_return']:.1f}", loss=f"{loss:.3f}")
    if bar is not None:
        bar.close()
    heldout = _heldout(config, family, spec, state)
    model_path = os.path.join(out_dir, MODEL_FILE)
    extra = model_extra(config, family, steps)
    save_dynamics_model(model_path, spec, dm.to_numpy(state.params), state.stats, extra, dm.to_numpy(state.inner))
    curves.close()
    curves.plot(f"{config.method.upper()} on {config.family} (seed {config.seed})")
    summary = {
        "method": config.method, "family": config.family, "seed": config.seed, "iterations": state.iteration,
        "env_steps": state.env_steps, "wall_s": time.perf_counter() - t_start, "heldout_returns": heldout,
        "heldout_return": float(np.mean(list(heldout.values()))), "model": model_path, "curve": curves.png_path,
    }  # fmt: skip
    write_summary(out_dir, summary)
    return MBResult(out_dir, model_path, summary)


def _oracle_episodes(
    config: MBConfig, family: TaskFamily, planner: dict[str, Any], cost: ForwardCost, steps: int,
    rng: np.random.Generator,
) -> Episodes:  # fmt: skip
    """``config.oracle_rollouts`` episodes on newly drawn training tasks, planned on the true simulator."""
    tasks = family.sample_tasks(rng, config.oracle_rollouts)
    seeds = [int(s) for s in rng.integers(2**31 - 1, size=config.oracle_rollouts)]
    hold = config.decision_steps
    controller = MPCController(OracleDynamics(hold), build_planner(planner, family), cost, rng, hold=hold)
    return run_episodes(family, tasks, seeds, steps, rng, controller, hold=hold)


def _has_oracle_data(config: MBConfig, it: int) -> bool:
    """Whether iteration ``it`` also collects (and its data folder holds) oracle-planned episodes."""
    return it > 0 and config.oracle_rollouts > 0


def _data_path(data_dir: str, it: int, suffix: str = "") -> str:
    """Iteration ``it``'s episodes: ``iter_NNNN.npz`` (the method's own), ``iter_NNNN_oracle.npz`` (the oracle's)."""
    return os.path.join(data_dir, f"iter_{it:04d}{suffix}.npz")


def _save_episodes(data_dir: str, it: int, suffix: str, eps: Episodes) -> None:
    save_checked(_data_path(data_dir, it, suffix),
                 {"obs": eps.obs, "act": eps.act, "rewards": eps.rewards, "lengths": eps.lengths})  # fmt: skip


def refit(run_dir: str, out_path: str, *, hidden: tuple[int, ...], train_steps: int, progress: bool = False) -> str:
    """Train a model of another size on the data a finished run collected (same method, loss and seed), e.g. the
    reference code's 3x512 on the data of our default run; writes a model file like the run's own."""
    with open(os.path.join(run_dir, "config.json")) as f:
        config = MBConfig.from_dict(json.load(f)).replace(hidden=tuple(hidden), train_steps=train_steps)
    family = make_family(config.family)
    spec = model_spec(config, family)
    data = Dataset(config.decision_steps)
    paths = sorted(glob.glob(os.path.join(run_dir, "data", "iter_*.npz")))
    if not paths:
        raise ConfigError(f"{run_dir} holds no collected data (data/iter_*.npz); pass a 'metactl train' output")
    for path in paths:
        data.add(load_episodes(path))
    stats = DynamicsStats.from_data(*data.transitions())
    params, inner = _initial(config, spec)
    rng = np.random.default_rng([config.seed, len(paths), 1])
    params, inner, loss = fit(config, params, inner, Adam(params + inner, config.learning_rate), stats, data, rng)
    log.info("refit %s with hidden %s: final loss %.4f", run_dir, hidden, loss)
    steps = config.episode_steps or family.horizon
    extra = model_extra(config, family, steps)
    save_dynamics_model(out_path, spec, dm.to_numpy(params), stats, extra, dm.to_numpy(inner))
    return out_path


def model_extra(config: MBConfig, family: TaskFamily, steps: int) -> dict[str, Any]:
    """What the exporter and the evaluators need besides the weights."""
    return {
        "method": config.method, "family": config.family, "observation_names": list(family.observation_names),
        "action_names": list(family.action_names), "control_period": family.control_period, "horizon": steps,
        "action_low": [float(v) for v in family.action_low], "action_high": [float(v) for v in family.action_high],
        "reward_spec": config.reward_spec(family.reward_spec), "planner": planner_config(config),
        "window": config.window, "inner_lr": config.inner_lr, "decision_steps": config.decision_steps,
        "train_config": config.to_dict(), "adaptation": describe(config),
    }  # fmt: skip


def _heldout(config: MBConfig, family: TaskFamily, spec: DynamicsSpec, state: _State) -> dict[str, float]:
    return heldout_returns(
        family, spec, dm.to_numpy(state.params), state.stats, COLLECT_MODE[config.method], planner_config(config),
        window=config.window, lr=config.inner_lr, steps=config.eval_steps or family.horizon, seed=config.seed,
        hold=config.decision_steps, adaptation=Adaptation.of(config, state.inner),
        reward_spec=config.reward_spec(family.reward_spec),
    )  # fmt: skip


def _initial(config: MBConfig, spec: DynamicsSpec) -> tuple[dm.Params, dm.Params]:
    """Initial weights (seeded by ``config.seed``) and the initial parameters of GrBAL's inner step."""
    params = dm.init_params(spec, torch.Generator().manual_seed(config.seed))
    if config.method != "grbal":
        return params, []
    return params, init_inner(MetaSettings.of(config), params, torch.Generator().manual_seed(config.seed + 1))


def _progress(config: MBConfig, start: int):  # type: ignore[no-untyped-def]
    from tqdm import tqdm

    return tqdm(total=config.iterations, initial=start, desc=f"{config.method} {config.family}", unit="it")


@dataclasses.dataclass
class _State:
    """Everything a resumed run needs: iteration, weights, optimizer, normalization, data, counters."""

    iteration: int
    params: dm.Params
    inner: dm.Params
    """The learned parameters of GrBAL's inner step (Meta-SGD's rates, the LSTM optimizer); [] for SGD."""
    adam: Adam
    """Over params + inner."""
    stats: DynamicsStats
    data: Dataset
    env_steps: int = 0
    elapsed_s: float = 0.0

    @classmethod
    def fresh(cls, config: MBConfig, spec: DynamicsSpec) -> _State:
        params, inner = _initial(config, spec)
        stats = DynamicsStats.identity(spec.obs_dim, spec.act_dim)
        return cls(0, params, inner, Adam(params + inner, config.learning_rate), stats, Dataset(config.decision_steps))

    @classmethod
    def resume(cls, config: MBConfig, spec: DynamicsSpec, out_dir: str) -> _State:
        """The newest checkpoint that is intact and whose data files are too (``train.checkpoint.resume``)."""
        with open(os.path.join(out_dir, "config.json")) as f:
            saved = MBConfig.from_dict(json.load(f))
        if saved.replace(iterations=config.iterations) != config:
            raise ConfigError(f"--resume: {out_dir} was trained with another config (only iterations may change)")
        n, k = len(spec.param_shapes()), len(_initial(config, spec)[1])
        keys = ("iteration", "adam_t", "env_steps", "elapsed_s", "stats", *(f"p{i}" for i in range(n)),
                *(f"q{i}" for i in range(k)), *(f"{m}{i}" for m in "mv" for i in range(n + k)))  # fmt: skip

        def load(path: str) -> _State:
            f = load_checked(path, keys)
            params = [torch.tensor(f[f"p{i}"]) for i in range(n)]
            inner = [torch.tensor(f[f"q{i}"]) for i in range(k)]
            adam = Adam(params + inner, config.learning_rate)
            adam.m = [torch.tensor(f[f"m{i}"]) for i in range(n + k)]
            adam.v = [torch.tensor(f[f"v{i}"]) for i in range(n + k)]
            adam.t = int(f["adam_t"])
            stats = DynamicsStats.from_dict(json.loads(str(f["stats"])))
            state = cls(int(f["iteration"]), params, inner, adam, stats, Dataset(config.decision_steps),
                        int(f["env_steps"]), float(f["elapsed_s"]))  # fmt: skip
            for it in range(state.iteration):  # a checkpoint is only as good as the data it was trained on
                data_dir = os.path.join(out_dir, "data")
                state.data.add(load_episodes(_data_path(data_dir, it)))
                if _has_oracle_data(config, it):
                    state.data.add(load_episodes(_data_path(data_dir, it, "_oracle")))
            return state

        state, path, _ = resume_from(os.path.join(out_dir, "checkpoints"), load)
        log.info("resumed %s at iteration %d from %s", out_dir, state.iteration, path)
        return state

    def save(self, directory: str, keep: int = 2) -> None:
        arrays: dict[str, Any] = {f"p{i}": p.numpy() for i, p in enumerate(self.params)}
        arrays |= {f"q{i}": q.numpy() for i, q in enumerate(self.inner)}
        arrays |= {f"m{i}": m.numpy() for i, m in enumerate(self.adam.m)}
        arrays |= {f"v{i}": v.numpy() for i, v in enumerate(self.adam.v)}
        arrays |= {"iteration": self.iteration, "adam_t": self.adam.t, "env_steps": self.env_steps,
                   "elapsed_s": self.elapsed_s, "stats": json.dumps(self.stats.to_dict())}  # fmt: skip
        save_checked(os.path.join(directory, f"ckpt_{self.iteration:06d}.npz"), arrays)
        prune(directory, keep)


def load_episodes(path: str) -> Episodes:
    """One iteration's collected episodes; ``CheckpointError`` naming the file if it is not intact."""
    d = load_checked(path, ("obs", "act", "rewards", "lengths"))
    return Episodes(d["obs"], d["act"], d["rewards"], d["lengths"])
