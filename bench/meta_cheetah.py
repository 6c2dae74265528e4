"""HalfCheetah disabled-joint dynamics (Nagabandi et al., ICLR 2019) as a ``bench.meta_train.Problem``.

Data comes from the ``metactl.sim`` batch simulator of ``halfcheetah_disabled_joint`` (one actuator gives no
torque), collected without any learned controller: half the episodes with uniformly random actions, half with
a random open-loop gait (per episode and actuator: amplitude, frequency and phase of a sine, plus noise), so the
cheetah also moves. A task is a window of M + K consecutive transitions of one episode: support = the past M,
query = the next K (GrBAL's meta-training windows); the loss is the MSE of the normalized state delta.

Splits: training tasks are windows of the training joints; hyperparameters are chosen with the model trained on
joints 1-4 and scored on joint 5 (validation); the reported numbers come from models trained on joints 1-5 and
scored on joint 0, the family's held-out test task, from episodes of their own seeds.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import torch
from torch.func import vmap

from metactl.bench.meta_train import Problem
from metactl.controllers.dynamics import DynamicsSpec, DynamicsStats
from metactl.sim import DisabledJointTask, make_family
from metactl.train import dynamics_model as dm
from metactl.train.inner_steps import Data, InnerStep, adapt
from metactl.train.mb_rollout import run_episodes
from metactl.train.mb_train import Dataset

FAMILY = "halfcheetah_disabled_joint"
HIDDEN = (64, 64)
"""The benchmark's model: the LSTM inner step costs ~n_params x tasks x H^2 per meta-step, 0.9 s on the
default 2x128 model (MAML: 14 ms); 2x64 keeps every row affordable (documented in docs/meta_learners.md)."""


class GaitPolicy:
    """Open-loop sine gaits with noise, one per episode: a = clip(amp sin(2 pi f t dt + phase) + noise)."""

    def __init__(self, rng: np.random.Generator, episodes: int, act_dim: int, dt: float):
        self.rng, self.dt = rng, dt
        self.amp = rng.uniform(0.3, 1.0, size=(episodes, act_dim))
        self.freq = rng.uniform(0.5, 3.0, size=(episodes, 1))  # [Hz], shared by the legs of one gait
        self.phase = rng.uniform(0, 2 * np.pi, size=(episodes, act_dim))
        self.t = 0

    def reset(self) -> None:
        self.t = 0

    def act(self, obs: np.ndarray) -> np.ndarray:
        a = self.amp * np.sin(2 * np.pi * self.freq * self.t * self.dt + self.phase)
        self.t += 1
        return np.clip(a + 0.2 * self.rng.standard_normal(a.shape), -1.0, 1.0)


def collect(joints: Sequence[int], episodes: int, steps: int, seed: int) -> dict[int, Dataset]:
    """Per disabled joint, ``episodes`` episodes of ``steps`` steps (half random actions, half gaits)."""
    family = make_family(FAMILY)
    out = {}
    for joint in joints:
        rng = np.random.default_rng([seed, joint])
        data = Dataset()
        tasks = [DisabledJointTask(joint=joint)] * (episodes // 2)
        for policy in (None, GaitPolicy(rng, len(tasks), family.act_dim, family.control_period)):
            seeds = [int(s) for s in rng.integers(2**31 - 1, size=len(tasks))]
            data.add(run_episodes(family, tasks, seeds, steps, rng, policy))  # type: ignore[arg-type]
        out[joint] = data
    return out


def merged(datasets: Sequence[Dataset]) -> Dataset:
    data = Dataset()
    for d in datasets:
        data.episodes += d.episodes
    return data


@dataclasses.dataclass
class WindowProblem:
    """Windows of ``data`` as meta-learning tasks for a dynamics model normalized by ``stats``."""

    data: Dataset
    stats: DynamicsStats
    m: int = 16
    k: int = 16

    def __post_init__(self) -> None:
        self.tstats = dm.TorchStats(self.stats)

    @property
    def spec(self) -> DynamicsSpec:
        obs, act = self.data.episodes[0]
        return DynamicsSpec("mlp", obs.shape[1], act.shape[1], HIDDEN)

    def loss(self, params: dm.Params, window: Data) -> torch.Tensor:
        return dm.mse(params, self.tstats, *window)

    def split(self, obs: np.ndarray, act: np.ndarray, nxt: np.ndarray) -> tuple[Data, Data]:
        t = [torch.as_tensor(x, dtype=dm.DTYPE) for x in (obs, act, nxt)]
        return tuple(x[:, : self.m] for x in t), tuple(x[:, self.m :] for x in t)

    def sample(self, rng: np.random.Generator, n: int) -> tuple[Data, Data]:
        return self.split(*self.data.windows(rng, n, self.m + self.k))

    def problem(self) -> Problem:
        spec = self.spec
        return Problem(FAMILY, self.loss, lambda g: dm.init_params(spec, g), self.sample)


def rollout_error(
    wp: WindowProblem, theta: dm.Params, inner: InnerStep, phi: dm.Params, support: Data, query: Data, proximal: float
) -> np.ndarray:
    """Per window: after one adaptation step on the support, the K-step open-loop prediction error (each predicted
    observation fed back, the true actions applied), mean over steps of the squared error in units of obs_std."""
    std = torch.as_tensor(wp.stats.obs_std, dtype=dm.DTYPE)

    def one(s: Data, q: Data) -> torch.Tensor:
        adapted = adapt(wp.loss, theta, s, inner, phi, 1, proximal=proximal, first_order=True).params
        obs, errors = q[0][0], []
        for t in range(q[0].shape[0]):
            obs = dm.predict(adapted, wp.tstats, obs, q[1][t])
            errors.append((((obs - q[2][t]) / std) ** 2).mean())
        return torch.stack(errors).mean()

    with torch.no_grad():
        return vmap(one)(support, query).numpy().astype(np.float64)


def fixed_windows(wp: WindowProblem, n: int, seed: int) -> tuple[Data, Data]:
    """A fixed set of n evaluation windows (support, query) of ``wp``'s data."""
    return wp.sample(np.random.default_rng(seed), n)


def stats_of(datasets: Sequence[Dataset]) -> DynamicsStats:
    return DynamicsStats.from_data(*merged(datasets).transitions())
