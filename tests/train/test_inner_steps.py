"""Inner steps (SGD, Meta-SGD, the LSTM optimizer): learn2learn's semantics, reductions and a tiny learning test."""

from __future__ import annotations

import math

import pytest
import torch

from metactl.train import dynamics_model as dm
from metactl.train import meta_learners as ml
from metactl.train.inner_steps import SGD, LSTMOptimizer, MetaSGD, adapt, log_and_sign, lstm_cell
from metactl.train.mb_train import Adam
from metactl.train.meta_settings import MetaSettings


def _regression(seed: int = 0, tasks: int = 4, n: int = 10):
    """Linear-regression tasks y = x w_task through a 2 -> 8 -> 1 ReLU MLP; support and query of n points each."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(tasks, 2, 1, generator=g)
    x = torch.randn(tasks, 2 * n, 2, generator=g)
    y = x @ w
    theta = [torch.randn(2, 8, generator=g) * 0.5, torch.zeros(8), torch.randn(8, 1, generator=g) * 0.3, torch.zeros(1)]

    def loss(p, data):  # type: ignore[no-untyped-def]
        return ((dm.mlp(p, data[0]) - data[1]) ** 2).mean()

    return theta, loss, (x[:, :n], y[:, :n]), (x[:, n:], y[:, n:])


def _task(data, b: int = 0):  # type: ignore[no-untyped-def]
    return tuple(x[b] for x in data)


@pytest.mark.parametrize("inner", [SGD(0.0), MetaSGD(0.05)])
def test_zero_step_size_is_the_identity(inner) -> None:  # type: ignore[no-untyped-def]
    theta, loss, support, _ = _regression()
    phi = [torch.zeros_like(t) for t in theta] if isinstance(inner, MetaSGD) else []
    out = adapt(loss, theta, _task(support), inner, phi, 3).params
    for p, q in zip(theta, out, strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


@pytest.mark.parametrize("inner", [SGD(0.05), MetaSGD(0.05)])
def test_one_inner_step_lowers_the_inner_loss(inner) -> None:  # type: ignore[no-untyped-def]
    theta, loss, support, _ = _regression()
    phi = inner.init(theta, torch.Generator())
    s = _task(support)
    assert loss(adapt(loss, theta, s, inner, phi, 1).params, s) < loss(theta, s)


def test_meta_sgd_with_equal_rates_is_sgd_and_its_rate_gradients_sum_to_sgds() -> None:
    """alpha_i = a for every i: the same adapted weights and meta-gradient as SGD(a) (exactly); and since
    L(theta - a g) depends on a through every coordinate, sum_i dL/d alpha_i = dL/da."""
    a = 0.05
    theta, loss, support, query = _regression()
    meta_sgd = MetaSettings(inner_step="meta_sgd", inner_lr=a)
    phi = ml.init_inner(meta_sgd, theta, torch.Generator())
    assert all(bool((p == a).all()) for p in phi)
    for b in range(2):
        sgd_out = adapt(loss, theta, _task(support, b), SGD(a), [], 2).params
        msgd_out = adapt(loss, theta, _task(support, b), MetaSGD(a), phi, 2).params
        for x, y in zip(sgd_out, msgd_out, strict=True):
            torch.testing.assert_close(x, y, rtol=0, atol=0)
    ours = ml.make_meta_learner(meta_sgd, loss).meta_grad(theta, phi, support, query)
    plain = ml.make_meta_learner(MetaSettings(inner_lr=a), loss).meta_grad(theta, [], support, query)
    for x, y in zip(ours.theta, plain.theta, strict=True):
        torch.testing.assert_close(x, y, rtol=1e-6, atol=1e-8)

    def by_rate(rate: torch.Tensor) -> torch.Tensor:
        one = [(lambda s, q: loss(adapt(loss, theta, s, SGD(rate), [], 1).params, q))]  # type: ignore[arg-type]
        return torch.stack([one[0](_task(support, b), _task(query, b)) for b in range(4)]).mean()

    d_rate = torch.func.grad(by_rate)(torch.tensor(a))
    torch.testing.assert_close(sum(g.sum() for g in ours.phi), d_rate, rtol=1e-4, atol=1e-7)


def test_log_and_sign_matches_the_reference_codes_formula() -> None:
    """LogAndSign, k = 5: (max(log(|g| + eps) / 5, -1), clip(e^5 g, -1, 1)); by hand for three gradients."""
    g = torch.tensor([1.0, -0.05, 1e-6])
    out = log_and_sign(g).T
    want_log = [0.0, math.log(0.05 + 1.1920929e-07) / 5, -1.0]  # log(0.05)/5 = -0.60; log(1e-6)/5 = -2.76 -> -1
    want_sign = [1.0, -1.0, 1e-6 * math.exp(5)]  # e^5 * -0.05 = -7.4 is clipped to -1; e^5 * 1e-6 = 1.5e-4 is not
    torch.testing.assert_close(out, torch.tensor([want_log, want_sign]), rtol=1e-5, atol=1e-7)


def test_the_lstm_first_step_from_the_zero_state_equals_explicit_zeros() -> None:
    opt = LSTMOptimizer(6, 0.1)
    theta, loss, support, _ = _regression()
    phi = opt.init(theta, torch.Generator().manual_seed(0))
    g = torch.func.grad(loss)(theta, _task(support))
    fast, state = opt.update(theta, g, phi, [])
    slow, state2 = opt.update(theta, g, phi, opt.zero_state(theta))
    for x, y in zip(fast + state, slow + state2, strict=True):
        torch.testing.assert_close(x, y, rtol=1e-6, atol=1e-7)
    assert [tuple(s.shape) for s in state] == [(sum(t.numel() for t in theta), 6)] * 4


def test_the_lstm_optimizer_is_coordinatewise() -> None:
    """Each coordinate's update depends on its own gradient history only: permuting the coordinates of the gradients
    (and the state) permutes the updates the same way."""
    opt = LSTMOptimizer(5, 0.1)
    phi = opt.init([torch.zeros(7)], torch.Generator().manual_seed(1))
    g1, g2 = torch.randn(7, generator=torch.Generator().manual_seed(2)), torch.randn(7) * 1e-2
    perm = torch.randperm(7, generator=torch.Generator().manual_seed(3))
    p, s = opt.update([torch.zeros(7)], [g1], phi, [])
    p, s = opt.update(p, [g2], phi, s)
    q, t = opt.update([torch.zeros(7)], [g1[perm]], phi, [])
    q, t = opt.update(q, [g2[perm]], phi, t)
    torch.testing.assert_close(q[0], p[0][perm], rtol=1e-6, atol=1e-7)
    h, c = torch.randn(3, 5), torch.randn(3, 5)
    x = torch.randn(3, 2)
    h1, _ = lstm_cell(phi[0:3], x, h, c)
    h2, _ = lstm_cell(phi[0:3], x[[2, 0, 1]], h[[2, 0, 1]], c[[2, 0, 1]])
    torch.testing.assert_close(h2, h1[[2, 0, 1]])


def test_the_lstm_optimizer_learns_on_unrolled_optimization() -> None:
    """Meta-training the LSTM (and theta) for 60 Adam steps on 3 unrolled inner steps of regression tasks: the
    post-adaptation query loss on fresh tasks falls well below where it started (Andrychowicz et al.'s setting,
    first order)."""
    settings = MetaSettings(meta_learner="fomaml", inner_step="lstm", inner_steps=3, lstm_hidden=8, lstm_scale=0.1)
    theta, loss, _, _ = _regression()
    phi = ml.init_inner(settings, theta, torch.Generator().manual_seed(0))
    est = ml.make_meta_learner(settings, loss)
    _, _, test_s, test_q = _regression(seed=99, tasks=16)

    def test_loss(theta, phi) -> float:  # type: ignore[no-untyped-def]
        return float(est.meta_grad(theta, phi, test_s, test_q).value)

    before = test_loss(theta, phi)
    adam = Adam(theta + phi, 1e-2)
    for step in range(60):
        _, _, s, q = _regression(seed=1000 + step, tasks=8)
        out = est.meta_grad(theta, phi, s, q)
        new = adam.step(theta + phi, out.theta + out.phi)
        theta, phi = new[: len(theta)], new[len(theta) :]
    assert test_loss(theta, phi) < 0.6 * before  # 0.40 of it in this setting
