"""Meta-learning semantics of GrBAL and ReBAL (learn2learn's tests, on our functional torch models)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from metactl.controllers.dynamics import DynamicsSpec, DynamicsStats
from metactl.train import dynamics_model as dm
from metactl.train.torch_online import TorchOnlineModel

D, A = 4, 2


def _setup(kind: str = "mlp", seed: int = 0):
    spec = DynamicsSpec(kind, D, A, (16, 16), rnn_hidden=8 if kind == "recurrent" else 0)
    params = dm.init_params(spec, torch.Generator().manual_seed(seed))
    g = torch.Generator().manual_seed(seed + 1)
    obs = torch.randn(3, 12, D, generator=g)
    act = torch.rand(3, 12, A, generator=g) * 2 - 1
    nxt = obs + 0.1 * torch.randn(3, 12, D, generator=g) + 0.2 * act.sum(-1, keepdim=True)
    stats = dm.TorchStats(DynamicsStats.identity(D, A))
    return spec, params, stats, obs, act, nxt


def test_zero_inner_learning_rate_is_the_identity() -> None:
    _, params, stats, obs, act, nxt = _setup()
    adapted = dm.adapt_step(params, stats, obs[0], act[0], nxt[0], 0.0)
    for p, q in zip(params, adapted, strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


def test_one_inner_step_lowers_the_inner_loss() -> None:
    _, params, stats, obs, act, nxt = _setup()
    before = dm.mse(params, stats, obs[0], act[0], nxt[0])
    after = dm.mse(dm.adapt_step(params, stats, obs[0], act[0], nxt[0], 0.01), stats, obs[0], act[0], nxt[0])
    assert after < before


def _split(obs, act, nxt, m=6):
    return (obs[:, :m], act[:, :m], nxt[:, :m]), (obs[:, m:], act[:, m:], nxt[:, m:])


@pytest.mark.parametrize("first_order", [False, True])
def test_the_outer_gradient_reaches_every_meta_parameter(first_order: bool) -> None:
    _, params, stats, obs, act, nxt = _setup()
    past, future = _split(obs, act, nxt)
    grads = torch.func.grad(dm.grbal_meta_loss)(params, stats, past, future, 0.05, first_order)
    assert all(float(g.abs().max()) > 0 for g in grads)


def test_second_order_meta_gradient_matches_plain_autograd() -> None:
    # Independent reference: torch.autograd.grad with create_graph=True through the inner step, window by window.
    _, params, stats, obs, act, nxt = _setup()
    past, future = _split(obs, act, nxt)
    lr = 0.05
    ours = torch.func.grad(dm.grbal_meta_loss)(params, stats, past, future, lr)
    leaves = [p.clone().requires_grad_(True) for p in params]
    total = 0.0
    for b in range(obs.shape[0]):
        inner = dm.mse(leaves, stats, past[0][b], past[1][b], past[2][b])
        g = torch.autograd.grad(inner, leaves, create_graph=True)
        adapted = [p - lr * gi for p, gi in zip(leaves, g, strict=True)]
        total = total + dm.mse(adapted, stats, future[0][b], future[1][b], future[2][b])
    ref = torch.autograd.grad(total / obs.shape[0], leaves)
    for a, r in zip(ours, ref, strict=True):
        torch.testing.assert_close(a, r, rtol=1e-4, atol=1e-6)


def test_first_order_matches_a_hand_reference_and_differs_from_second_order() -> None:
    # First-order MAML: the gradient of the future loss taken at theta' (theta' treated as a constant shift).
    _, params, stats, obs, act, nxt = _setup()
    past, future = _split(obs, act, nxt)
    lr = 0.05
    ours = torch.func.grad(dm.grbal_meta_loss)(params, stats, past, future, lr, True)
    hand = [torch.zeros_like(p) for p in params]
    for b in range(obs.shape[0]):
        leaves = [p.clone().requires_grad_(True) for p in params]
        g = torch.autograd.grad(dm.mse(leaves, stats, past[0][b], past[1][b], past[2][b]), leaves)
        adapted = [(p - lr * gi).detach().requires_grad_(True) for p, gi in zip(params, g, strict=True)]
        gf = torch.autograd.grad(dm.mse(adapted, stats, future[0][b], future[1][b], future[2][b]), adapted)
        hand = [h + x / obs.shape[0] for h, x in zip(hand, gf, strict=True)]
    for a, r in zip(ours, hand, strict=True):
        torch.testing.assert_close(a, r, rtol=1e-4, atol=1e-6)
    second = torch.func.grad(dm.grbal_meta_loss)(params, stats, past, future, lr, False)
    assert max(float((a - b).abs().max()) for a, b in zip(ours, second, strict=True)) > 1e-6


def test_rebal_state_carries_the_past_and_its_loss_reaches_the_lstm() -> None:
    _, params, stats, obs, act, nxt = _setup("recurrent")
    grads = torch.func.grad(dm.rebal_loss)(params, stats, obs, act, nxt, 6)
    assert all(float(g.abs().max()) > 0 for g in grads[:3])  # the LSTM is trained through the loss
    h, c = dm.lstm_state(params, stats, obs[:, :5], act[:, :5])
    zero = torch.zeros(3, 8)
    fresh, _, _ = dm.predict_recurrent(params, stats, obs[:, 5], act[:, 5], zero, zero)
    moved, _, _ = dm.predict_recurrent(params, stats, obs[:, 5], act[:, 5], h, c)
    assert float((fresh - moved).abs().max()) > 1e-6


def test_rebal_online_state_is_the_last_m_and_each_candidate_steps_its_own() -> None:
    """At every control step ReBAL's state is rebuilt from zero over the last M transitions (as trained); a planner's
    rollout then steps every candidate's copy of it through that candidate's predicted future."""
    spec, params, stats, obs, act, nxt = _setup("recurrent")
    o, a, n = (x[:1].numpy().astype(np.float64) for x in (obs, act, nxt))
    model = TorchOnlineModel("rebal", spec, dm.to_numpy(params), DynamicsStats.identity(D, A), 1, window=4)
    for t in range(7):
        model.observe(o[:, t], a[:, t], n[:, t])
        model.adapt()
    h, c = dm.lstm_state(params, stats, obs[:1, 3:7], act[:1, 3:7])
    torch.testing.assert_close(model.h, h)
    torch.testing.assert_close(model.c, c)
    cand_o, cand_a = o[:, 7:10], a[:, 7:10]  # three candidates, two horizon steps with different actions
    step = model.rollout()
    first = step(cand_o, cand_a)
    second = step(first, cand_a[:, ::-1])
    hh, cc = h.expand(3, -1), c.expand(3, -1)
    want1, hh, cc = dm.predict_recurrent(params, stats, obs[0, 7:10], act[0, 7:10], hh, cc)
    want2, _, _ = dm.predict_recurrent(params, stats, want1, act[0, 7:10].flip(0), hh, cc)
    np.testing.assert_allclose(first[0], want1.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(second[0], want2.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.rollout()(cand_o, cand_a), first, rtol=0, atol=0)  # a new rollout starts over


def test_online_modes_grbal_resets_every_step_mb_de_accumulates() -> None:
    spec, params, stats, obs, act, nxt = _setup()
    arrays = dm.to_numpy(params)
    identity = DynamicsStats.identity(D, A)
    o, a, n = (x[:1].numpy().astype(np.float64) for x in (obs, act, nxt))
    cand_o, cand_a = o[:, :5], a[:, :5]
    models = {m: TorchOnlineModel(m, spec, arrays, identity, 1, window=4, lr=0.05) for m in ("grbal", "mb", "mb_de")}
    frozen = models["mb"].predict(cand_o, cand_a)
    for t in range(6):
        for model in models.values():
            model.observe(o[:, t], a[:, t], n[:, t])
            model.adapt()
    np.testing.assert_array_equal(models["mb"].predict(cand_o, cand_a), frozen)  # MB never changes
    # GrBAL = one step from the trained weights on the last 4; MB+DE took 6 steps and differs.
    ref = dm.adapt_step(params, stats, obs[0, 2:6], act[0, 2:6], nxt[0, 2:6], 0.05)
    want = dm.predict(ref, stats, torch.as_tensor(cand_o[0], dtype=torch.float32), torch.as_tensor(cand_a[0],
                      dtype=torch.float32))  # fmt: skip
    np.testing.assert_allclose(models["grbal"].predict(cand_o, cand_a)[0], want.numpy(), rtol=1e-5, atol=1e-6)
    assert np.abs(models["mb_de"].predict(cand_o, cand_a) - models["grbal"].predict(cand_o, cand_a)).max() > 1e-6
    for model in models.values():
        model.reset()
        np.testing.assert_array_equal(model.predict(cand_o, cand_a), frozen)  # back to the trained weights


def test_a_step_that_is_not_finite_is_refused_and_the_weights_are_kept() -> None:
    """Dynamic evaluation with a runaway step size must not put NaN weights (and NaN actions) on the robot."""
    spec, params, _, obs, act, nxt = _setup()
    identity = DynamicsStats.identity(D, A)
    o, a, n = (x[:1].numpy().astype(np.float64) for x in (obs, act, nxt))
    model = TorchOnlineModel("mb_de", spec, dm.to_numpy(params), identity, 1, window=4, lr=1e30)
    for t in range(6):
        model.observe(o[:, t], a[:, t], n[:, t])
        model.adapt()
        assert all(bool(torch.isfinite(w).all()) for w in model.current)
    assert model.refused > 0  # huge but finite weights may still predict inf: the planner prices that at +inf
