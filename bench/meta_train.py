"""The supervised loop of ``bench meta``: meta-train, pretrain a non-meta baseline, evaluate after k steps.

A ``Problem`` is a family of regression tasks: its per-task loss, an initializer, and a sampler of meta-batches
(support, query). ``meta_train`` runs Adam on the meta-gradient of the chosen estimator (``train.meta_learners``)
over theta and the inner step's phi, timing each meta-step; ``pretrain`` fits the same network to all tasks at
once (the "pretrained" baseline of Finn et al. 2017, Sec. 5.1); ``evaluate`` adapts on each test task's support
set for k steps and scores its query set.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch.func import vmap

from metactl.train.dynamics_model import Params
from metactl.train.inner_steps import SGD, Data, InnerStep, LossFn, adapt
from metactl.train.mb_train import Adam
from metactl.train.meta_learners import init_inner, make_meta_learner
from metactl.train.meta_settings import MetaSettings


@dataclasses.dataclass(frozen=True)
class Problem:
    """A task family for meta-learning: ``sample(rng, n)`` -> (support, query) tuples of [n, ...] tensors."""

    name: str
    loss: LossFn
    init: Callable[[torch.Generator], Params]
    sample: Callable[[np.random.Generator, int], tuple[Data, Data]]


@dataclasses.dataclass
class Trained:
    theta: Params
    phi: Params
    step_ms: float
    """Median wall time of one meta-step (meta-gradient + Adam) after the first 10 [ms]."""
    final_loss: float
    """Mean meta-loss of the last 10% of meta-steps."""
    skipped: int = 0
    """Meta-steps whose gradient was not finite and was therefore not applied."""


def meta_train(problem: Problem, settings: MetaSettings, *, steps: int, batch: int, lr: float, seed: int) -> Trained:
    """``steps`` Adam steps on the meta-gradient of ``settings.meta_learner`` over batches of ``batch`` tasks."""
    rng, gen = np.random.default_rng([seed, 1]), torch.Generator().manual_seed(seed)
    theta = problem.init(gen)
    phi = init_inner(settings, theta, gen)
    learner = make_meta_learner(settings, problem.loss)
    adam = Adam(theta + phi, lr)
    times, losses, skipped = [], [], 0
    for _ in range(steps):
        support, query = problem.sample(rng, batch)
        t0 = time.perf_counter()
        out = learner.meta_grad(theta, phi, support, query, gen)
        if all(bool(torch.isfinite(g).all()) for g in (*out.theta, *out.phi)):
            new = adam.step(theta + phi, out.theta + out.phi)
            theta, phi = new[: len(theta)], new[len(theta) :]
        else:  # an inner problem that diverged: this meta-batch teaches nothing; counted and reported
            skipped += 1
        times.append(time.perf_counter() - t0)
        losses.append(float(out.value))
    return _trained(theta, phi, times, losses, skipped)


def pretrain(problem: Problem, *, steps: int, batch: int, lr: float, seed: int) -> Trained:
    """The non-meta baseline: ``steps`` Adam steps of the plain loss on the support and query points of ``batch``
    tasks at once (one model for all tasks), the same budget of data as meta-training."""
    rng, gen = np.random.default_rng([seed, 1]), torch.Generator().manual_seed(seed)
    theta = problem.init(gen)
    adam = Adam(theta, lr)
    grad_and_value = torch.func.grad_and_value(lambda p, s, q: vmap(problem.loss, (None, 0))(p, s).mean() / 2
                                               + vmap(problem.loss, (None, 0))(p, q).mean() / 2)  # fmt: skip
    times, losses = [], []
    for _ in range(steps):
        support, query = problem.sample(rng, batch)
        t0 = time.perf_counter()
        grads, value = grad_and_value(theta, support, query)
        theta = adam.step(theta, grads)
        times.append(time.perf_counter() - t0)
        losses.append(float(value))
    return _trained(theta, [], times, losses)


def _trained(theta: Params, phi: Params, times: list[float], losses: list[float], skipped: int = 0) -> Trained:
    tail = losses[-max(1, len(losses) // 10) :]
    return Trained(theta, phi, 1e3 * float(np.median(times[10:] or times)), float(np.nanmean(tail)), skipped)


def evaluate(
    loss: LossFn,
    theta: Params,
    inner: InnerStep,
    phi: Params,
    support: Data,
    query: Data,
    steps: Sequence[int],
    proximal: float = 0.0,
) -> dict[int, np.ndarray]:
    """Per-task query loss [B] after adapting on each task's support for each k in ``steps`` (0 = no adaptation),
    with ``inner`` (and iMAML's proximal term); no meta-gradient is taken."""

    def after(k: int) -> Callable[[Data, Data], torch.Tensor]:
        def one(s: Data, q: Data) -> torch.Tensor:
            adapted = adapt(loss, theta, s, inner, phi, k, proximal=proximal, first_order=True).params
            return loss(adapted, q)

        return one

    with torch.no_grad():
        return {k: vmap(after(k))(support, query).numpy().astype(np.float64) for k in steps}


def evaluate_learned(
    problem: Problem, trained: Trained, settings: MetaSettings, data: tuple[Data, Data], steps: Sequence[int]
) -> dict[int, np.ndarray]:
    """``evaluate`` with the meta-trained model's own inner step, phi and proximal term."""
    from metactl.train.inner_steps import make_inner_step

    inner = make_inner_step(settings)
    return evaluate(problem.loss, trained.theta, inner, trained.phi, *data, steps, settings.proximal)


def evaluate_finetuned(
    problem: Problem, trained: Trained, lr: float, data: tuple[Data, Data], steps: Sequence[int]
) -> dict[int, np.ndarray]:
    """``evaluate`` of the pretrained baseline, fine-tuned by plain SGD with step size ``lr``."""
    return evaluate(problem.loss, trained.theta, SGD(lr), [], *data, steps)
