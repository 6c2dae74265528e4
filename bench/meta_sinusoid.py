"""MAML's sinusoid regression (Finn, Abbeel, Levine, ICML 2017, Sec. 5.1) as a ``bench.meta_train.Problem``.

A task is y = A sin(x + phi) with amplitude A ~ U[0.1, 5] and phase phi ~ U[0, pi]; inputs x ~ U[-5, 5]; the
model is a 1 -> 40 -> 40 -> 1 ReLU MLP; K = 10 support points per task (meta-training also scores K query
points, as the paper). Test and validation tasks are fixed sets drawn from their own seeds (never from a
training stream), each with K support points and ``QUERY_POINTS`` query points.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from metactl.bench.meta_train import Problem
from metactl.train import dynamics_model as dm
from metactl.train.inner_steps import Data

AMPLITUDE = (0.1, 5.0)
PHASE = (0.0, math.pi)
X_RANGE = (-5.0, 5.0)
SIZES = (1, 40, 40, 1)
K = 10
QUERY_POINTS = 100
"""Query points per test / validation task (the MSE over the input range, not over 10 points)."""
SPLIT_KEYS = {"validation": 71_717, "test": 81_818}
"""Seeds of the fixed validation and test task sets (training draws from (seed, 1): disjoint streams)."""


def loss(params: dm.Params, data: Data) -> torch.Tensor:
    """Mean squared error of the MLP on (x [N, 1], y [N, 1])."""
    return ((dm.mlp(params, data[0]) - data[1]) ** 2).mean()


def _points(rng: np.random.Generator, amp: np.ndarray, phase: np.ndarray, n: int) -> tuple[torch.Tensor, ...]:
    x = rng.uniform(*X_RANGE, size=(len(amp), n, 1))
    y = amp[:, None, None] * np.sin(x + phase[:, None, None])
    return torch.as_tensor(x, dtype=dm.DTYPE), torch.as_tensor(y, dtype=dm.DTYPE)


def sample(rng: np.random.Generator, n: int, k: int = K, query: int = K) -> tuple[Data, Data]:
    """n tasks: support (x, y) [n, k, 1] and query (x, y) [n, query, 1]."""
    amp, phase = rng.uniform(*AMPLITUDE, size=n), rng.uniform(*PHASE, size=n)
    return _points(rng, amp, phase, k), _points(rng, amp, phase, query)


def fixed_tasks(split: str, n: int) -> tuple[Data, Data]:
    """The ``split`` ('validation' or 'test') task set: n tasks, K support and ``QUERY_POINTS`` query points."""
    return sample(np.random.default_rng(SPLIT_KEYS[split]), n, K, QUERY_POINTS)


def problem() -> Problem:
    return Problem("sinusoid", loss, lambda g: dm.init_mlp(SIZES, g), sample)
