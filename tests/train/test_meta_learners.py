"""The mathematics of the meta-gradient estimators (MAML, first-order MAML, iMAML, Evo-MAML) on tiny problems."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from metactl.bench.meta_memory import peak_growth_mb
from metactl.controllers.dynamics import DynamicsSpec, DynamicsStats
from metactl.train import dynamics_model as dm
from metactl.train import meta_learners as ml
from metactl.train.inner_steps import adapt, make_inner_step
from metactl.train.meta_settings import INNER_STEPS, LEARNED_INNER, META_LEARNERS, MetaSettings

D, A = 3, 2


def _problem(seed: int = 0, hidden: tuple[int, ...] = (8,), tasks: int = 3, m: int = 10):
    """A small GrBAL-like problem: an MLP dynamics model and `tasks` windows split into support and query."""
    spec = DynamicsSpec("mlp", D, A, hidden)
    theta = dm.init_params(spec, torch.Generator().manual_seed(seed))
    g = torch.Generator().manual_seed(seed + 1)
    obs = torch.randn(tasks, 2 * m, D, generator=g)
    act = torch.rand(tasks, 2 * m, A, generator=g) * 2 - 1
    nxt = obs + 0.3 * torch.tanh(obs) * act.sum(-1, keepdim=True) + 0.05 * torch.randn(tasks, 2 * m, D, generator=g)
    stats = dm.TorchStats(DynamicsStats.identity(D, A))

    def loss(p, data):  # type: ignore[no-untyped-def]
        return dm.mse(p, stats, *data)

    support = (obs[:, :m], act[:, :m], nxt[:, :m])
    query = (obs[:, m:], act[:, m:], nxt[:, m:])
    return theta, loss, support, query


def _cos(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    u, v = torch.cat([x.flatten() for x in a]), torch.cat([x.flatten() for x in b])
    return float(u @ v / (u.norm() * v.norm()))


def test_the_registry_holds_every_estimator_the_config_offers() -> None:
    assert tuple(ml.META_LEARNERS) == META_LEARNERS


@pytest.mark.parametrize("learner", META_LEARNERS)
@pytest.mark.parametrize("inner", INNER_STEPS)
def test_every_combination_reaches_every_meta_parameter(learner: str, inner: str) -> None:
    if inner != "sgd" and learner not in LEARNED_INNER:
        pytest.skip("refused by the config (tested in test_train_config)")
    steps = 1 if learner == "evo_maml" else 2  # the LSTM's recurrent weights act from the second step on
    settings = MetaSettings(meta_learner=learner, inner_step=inner, inner_lr=0.05, lstm_hidden=4, lstm_scale=0.05,
                            inner_steps=steps)  # fmt: skip
    theta, loss, support, query = _problem()
    phi = ml.init_inner(settings, theta, torch.Generator().manual_seed(5))
    out = ml.make_meta_learner(settings, loss).meta_grad(theta, phi, support, query, torch.Generator().manual_seed(1))
    assert torch.isfinite(out.value)
    assert all(float(g.abs().max()) > 0 for g in out.theta)
    assert len(out.phi) == len(phi)
    for i, g in enumerate(out.phi):
        recurrent = inner == "lstm" and i in (1, 4)  # W_h of each layer multiplies the state, zero before step 1
        assert (float(g.abs().max()) == 0) if (recurrent and steps == 1) else (float(g.abs().max()) > 0), i


def test_maml_equals_the_existing_grbal_meta_gradient() -> None:
    theta, loss, support, query = _problem()
    stats = dm.TorchStats(DynamicsStats.identity(D, A))
    ref = torch.func.grad(dm.grbal_meta_loss)(theta, stats, support, query, 0.05)
    out = ml.make_meta_learner(MetaSettings(inner_lr=0.05), loss).meta_grad(theta, [], support, query)
    for a, r in zip(out.theta, ref, strict=True):
        torch.testing.assert_close(a, r, rtol=1e-5, atol=1e-7)


def test_fomaml_is_maml_without_its_second_order_term() -> None:
    """For one SGD step theta' = theta - a g_s(theta): d L_q(theta')/d theta = (I - a H_s(theta)) grad L_q(theta').
    FOMAML keeps grad L_q(theta') only, so MAML - FOMAML = -a H_s(theta) grad L_q(theta'), the Hessian-vector
    product taken here by plain double backward, window by window."""
    alpha = 0.1
    theta, loss, support, query = _problem()
    maml = ml.make_meta_learner(MetaSettings(inner_lr=alpha), loss).meta_grad(theta, [], support, query)
    fo = ml.make_meta_learner(MetaSettings(meta_learner="fomaml", inner_lr=alpha), loss).meta_grad(
        theta, [], support, query
    )
    second = [torch.zeros_like(t) for t in theta]
    for b in range(support[0].shape[0]):
        s, q = tuple(x[b] for x in support), tuple(x[b] for x in query)
        leaves = [t.clone().requires_grad_(True) for t in theta]
        g_s = torch.autograd.grad(loss(leaves, s), leaves, create_graph=True)
        adapted = [(t - alpha * g).detach().requires_grad_(True) for t, g in zip(theta, g_s, strict=True)]
        v = torch.autograd.grad(loss(adapted, q), adapted)
        hv = torch.autograd.grad(g_s, leaves, grad_outputs=v)
        second = [acc - alpha * h / support[0].shape[0] for acc, h in zip(second, hv, strict=True)]
    for m, f, s2 in zip(maml.theta, fo.theta, second, strict=True):
        torch.testing.assert_close(m - f, s2, rtol=1e-4, atol=1e-7)
    assert max(float(x.abs().max()) for x in second) > 1e-4  # the term is not negligible on this problem


def test_imaml_matches_the_exact_unrolled_gradient_once_the_inner_problem_is_converged() -> None:
    """Rajeswaran et al. 2019, Thm. 1: with phi* = argmin L_s(phi) + lambda/2 |phi - theta|^2, the implicit gradient
    (I + H_s / lambda)^-1 grad L_q(phi*) is d L_q(phi*(theta)) / d theta. Reference: autograd through 100 unrolled
    proximal GD steps, converged (the proximal gradient is < 1e-4 at the end on every task)."""
    lam, lr, steps = 0.5, 0.3, 100
    theta, loss, support, query = _problem(hidden=(6,))
    settings = MetaSettings(meta_learner="imaml", inner_lr=lr, inner_steps=steps, imaml_lambda=lam, imaml_cg_steps=30)
    ours = ml.make_meta_learner(settings, loss).meta_grad(theta, [], support, query)
    sgd = make_inner_step(settings)
    tasks = [(tuple(x[b] for x in support), tuple(x[b] for x in query)) for b in range(support[0].shape[0])]

    def unrolled(t: list[torch.Tensor]) -> torch.Tensor:
        return sum(loss(adapt(loss, t, s, sgd, [], steps, proximal=lam).params, q) for s, q in tasks) / len(tasks)

    exact = torch.func.grad(unrolled)(theta)
    first_order = [torch.zeros_like(t) for t in theta]  # grad L_q(phi*) alone, without the implicit correction
    for s, q in tasks:
        phi = adapt(loss, theta, s, sgd, [], steps, proximal=lam).params
        residual = torch.func.grad(loss)(phi, s)
        prox = torch.cat([(r + lam * (p - t)).flatten() for r, p, t in zip(residual, phi, theta, strict=True)])
        assert float(prox.norm()) < 1e-4  # converged
        first_order = [f + g / len(tasks) for f, g in zip(first_order, torch.func.grad(loss)(phi, q), strict=True)]
    assert _cos(ours.theta, exact) >= 0.99
    error = torch.cat([(a - b).flatten() for a, b in zip(ours.theta, exact, strict=True)]).norm()
    assert float(error / torch.cat([b.flatten() for b in exact]).norm()) < 1e-3
    assert _cos(first_order, exact) < 0.95  # the Hessian term matters on this problem: the test can tell


def test_conjugate_gradient_solves_a_small_spd_system() -> None:
    g = torch.Generator().manual_seed(0)
    q = torch.randn(5, 5, generator=g)
    a = q @ q.T + 0.5 * torch.eye(5)
    b = torch.randn(5, generator=g)
    (x,) = ml.conjugate_gradient(lambda v: [a @ v[0]], [b], 5)  # exact in n iterations (up to rounding)
    torch.testing.assert_close(x, torch.linalg.solve(a, b), rtol=1e-3, atol=1e-4)


def test_conjugate_gradient_stops_at_negative_curvature() -> None:
    """An indefinite A (an unconverged inner problem of a ReLU net): CG keeps its last iterate instead of dividing
    by a vanishing or negative curvature. Here b's first direction has p^T A p = -1: x stays 0."""
    a = torch.diag(torch.tensor([-1.0, 2.0]))
    (x,) = ml.conjugate_gradient(lambda v: [a @ v[0]], [torch.tensor([1.0, 0.0])], 4)
    torch.testing.assert_close(x, torch.zeros(2))
    (y,) = ml.conjugate_gradient(lambda v: [a @ v[0]], [torch.tensor([1.0, 1.0])], 4)  # curvature 1: one step
    assert bool(torch.isfinite(y).all())


def test_imaml_peak_memory_does_not_grow_with_the_number_of_inner_steps() -> None:
    """Unrolled, each inner step of a 2x256 model on 2 tasks x 256 transitions keeps its activations and their
    second-order graph: MAML's peak per meta-step grew from ~22 MB (2 steps) to 110-140 MB (12 steps) here. iMAML
    keeps none: ~20 MB for both (within 1.5 MB over three runs). Thresholds: MAML must grow > 25 MB (so the probe
    can see growth), iMAML < 4 MB."""
    problem = {"sizes": [10, 256, 256, 8], "tasks": 2, "support": 256, "query": 256}

    def growth(learner: str) -> list[float]:  # peak memory of a meta-step with 2, then with 12 inner steps
        steps = [{"meta_learner": learner, "inner_steps": n, "inner_lr": 0.01} for n in (2, 12)]
        return peak_growth_mb(problem | {"settings": steps})

    maml_2, maml_12 = growth("maml")
    imaml_2, imaml_12 = growth("imaml")
    assert maml_12 - maml_2 > 25, f"the probe must see an unrolled graph grow (MAML: {maml_2:.1f} -> {maml_12:.1f} MB)"
    assert imaml_12 - imaml_2 < 4, f"iMAML's peak grew from {imaml_2:.1f} to {imaml_12:.1f} MB (2 -> 12 inner steps)"


def test_evo_maml_perturbations_are_plus_or_minus_sigma_and_reproducible() -> None:
    theta, _, _, _ = _problem()
    eps = ml.draw_perturbations(theta, 6, 0.03, torch.Generator().manual_seed(4))
    again = ml.draw_perturbations(theta, 6, 0.03, torch.Generator().manual_seed(4))
    for e, f, t in zip(eps, again, theta, strict=True):
        assert e.shape == (6, *t.shape)
        torch.testing.assert_close(e.abs(), torch.full_like(e, 0.03), rtol=0, atol=0)
        torch.testing.assert_close(e, f, rtol=0, atol=0)
    flat = torch.cat([e.flatten() for e in eps])
    assert abs(float((flat > 0).float().mean()) - 0.5) < 0.1  # sign(N(0, 1)) is a fair coin


def _linear_grads(w: np.ndarray, b: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gradient of mean((x w + b - y)^2) over all N x d_out entries: 2/(N d) x^T r and 2/(N d) sum r."""
    r = x @ w + b - y
    scale = 2.0 / r.size
    return scale * x.T @ r, scale * r.sum(0)


def test_evo_maml_update_equals_a_hand_computation() -> None:
    """A linear model y = x W + b (an MLP with no hidden layer), P = 3 copies, two tasks, all in float64 numpy."""
    g = torch.Generator().manual_seed(7)
    w, b = torch.randn(2, 1, generator=g) * 0.5, torch.randn(1, generator=g) * 0.1
    xs, ys = torch.randn(2, 8, 2, generator=g), torch.randn(2, 8, 1, generator=g)
    alpha, sigma, tau, pop = 0.1, 0.2, 0.05, 3

    def loss(p, data):  # type: ignore[no-untyped-def]
        return ((dm.mlp(p, data[0]) - data[1]) ** 2).mean()

    settings = MetaSettings(meta_learner="evo_maml", inner_lr=alpha, evo_population=pop, evo_sigma=sigma,
                            evo_temperature=tau)  # fmt: skip
    est = ml.make_meta_learner(settings, loss)
    eps = ml.draw_perturbations([w, b], pop, sigma, torch.Generator().manual_seed(3))
    support, query = (xs[:, :4], ys[:, :4]), (xs[:, 4:], ys[:, 4:])
    ours = est.meta_grad_with([w, b], [], support, query, eps)

    xs_, ys_, w_, b_ = (t.double().numpy() for t in (xs, ys, w, b))
    e_w, e_b = (e.double().numpy() for e in eps)
    adapted = np.empty((pop, 2), dtype=object)  # (copy, task) -> (W', b')
    post = np.zeros((pop, 2))
    for p in range(pop):
        for t in range(2):
            wp, bp = w_ + e_w[p], b_ + e_b[p]
            gw, gb = _linear_grads(wp, bp, xs_[t, :4], ys_[t, :4])
            wa, ba = wp - alpha * gw, bp - alpha * gb  # one first-order inner step per copy
            adapted[p, t] = (wa, ba)
            post[p, t] = np.mean((xs_[t, 4:] @ wa + ba - ys_[t, 4:]) ** 2)
    fitness = post.mean(1)  # each copy's post-adaptation query loss, averaged over the meta-batch
    weights = np.exp(-(fitness - fitness.min()) / tau)
    weights /= weights.sum()  # softmax(-fitness / tau)
    grad_w, grad_b, value = np.zeros_like(w_), np.zeros_like(b_), 0.0
    for t in range(2):
        cw = sum(weights[p] * adapted[p, t][0] for p in range(pop))
        cb = sum(weights[p] * adapted[p, t][1] for p in range(pop))
        gw, gb = _linear_grads(cw, cb, xs_[t, 4:], ys_[t, 4:])  # first-order gradient at the combination
        grad_w, grad_b = grad_w + gw / 2, grad_b + gb / 2
        value += np.mean((xs_[t, 4:] @ cw + cb - ys_[t, 4:]) ** 2) / 2
    assert 0.05 < weights.max() < 0.999  # the weights are neither uniform nor one-hot: the test sees them
    np.testing.assert_allclose(ours.theta[0].numpy(), grad_w, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(ours.theta[1].numpy(), grad_b, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(float(ours.value), value, rtol=1e-5)


def test_evo_maml_needs_an_explicit_generator() -> None:
    theta, loss, support, query = _problem()
    est = ml.make_meta_learner(MetaSettings(meta_learner="evo_maml"), loss)
    with pytest.raises(ValueError, match=r"torch\.Generator"):
        est.meta_grad(theta, [], support, query)
    a = est.meta_grad(theta, [], support, query, torch.Generator().manual_seed(2))
    b = est.meta_grad(theta, [], support, query, torch.Generator().manual_seed(2))
    for x, y in zip(a.theta, b.theta, strict=True):
        torch.testing.assert_close(x, y, rtol=0, atol=0)


@pytest.mark.parametrize("learner", ["maml", "fomaml"])
def test_chunked_meta_gradient_equals_the_whole_batch(monkeypatch, learner: str) -> None:
    """The LSTM inner step runs the meta-batch in chunks (memory): the mean over chunks is the mean over tasks."""
    settings = MetaSettings(meta_learner=learner, inner_step="lstm", lstm_hidden=4, lstm_scale=0.05)
    theta, loss, support, query = _problem(tasks=5)
    phi = ml.init_inner(settings, theta, torch.Generator().manual_seed(1))
    est = ml.make_meta_learner(settings, loss)
    whole = est.meta_grad(theta, phi, support, query)
    monkeypatch.setattr(ml, "LSTM_COORDINATES", 2 * sum(t.numel() for t in theta))  # chunks of 2, 2, 1 tasks
    chunked = est.meta_grad(theta, phi, support, query)
    torch.testing.assert_close(chunked.value, whole.value, rtol=1e-5, atol=1e-7)
    for a, b in zip(chunked.theta + chunked.phi, whole.theta + whole.phi, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-7)
