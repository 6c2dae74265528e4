"""Adaptation operators as ask/tell state machines: ES-MAML semantics (Song et al., 2020, Sec. 3)."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from statistics import NormalDist

import numpy as np
import pytest

from metactl.controllers import AdaptationError, AdaptationOperator, AdaptState, ESGradient, HillClimb, make_operator

DIM = 6


Objective = Callable[[np.ndarray], np.ndarray]
"""Returns [q] of parameter rows [q, P]."""


def concave(theta_star: np.ndarray) -> Objective:
    """f(theta) = -|theta - theta*|^2, row by row."""
    return lambda thetas: -np.sum((np.atleast_2d(thetas) - theta_star) ** 2, axis=1)


def run(operator: AdaptationOperator, params: np.ndarray, seed: int, f: Objective) -> list[AdaptState]:
    """Every state of one adaptation of ``params`` on objective ``f``, following the operator's schedule."""
    states = [operator.start(params, seed)]
    for q in operator.schedule():
        asked = operator.ask(states[-1])
        assert asked.shape == (q, params.size)
        states.append(operator.tell(states[-1], f(asked)))
    return states


def test_es_gradient_with_zero_step_size_is_the_identity() -> None:
    op = ESGradient(queries=8, step_size=0.0, steps=3)
    params = np.random.default_rng(0).standard_normal(DIM)
    final = run(op, params, seed=1, f=concave(np.ones(DIM)))[-1]
    np.testing.assert_array_equal(final.params, params)
    assert final.round == 3


def test_es_gradient_first_query_is_the_baseline_and_noise_is_seeded() -> None:
    op = ESGradient(queries=5, sigma=0.3)
    params = np.arange(DIM, dtype=np.float64)
    state = op.start(params, seed=42)
    asked = op.ask(state)
    np.testing.assert_array_equal(asked[0], params)
    np.testing.assert_array_equal(op.ask(op.start(params, seed=42)), asked)
    assert not np.array_equal(op.ask(op.start(params, seed=43)), asked)
    # Perturbations are sigma * N(0, 1): the sample std of 5 x 6 = 30 draws is 0.3 within 4 standard errors,
    # 4 * 0.3 / sqrt(2 * 30) = 0.155.
    assert np.std(asked[1:] - params) == pytest.approx(0.3, abs=0.155)
    # The start state copies the caller's vector.
    params[0] = 99.0
    assert state.params[0] == 0.0


def test_es_gradient_step_improves_a_smooth_concave_objective() -> None:
    rng = np.random.default_rng(0)
    theta_star = rng.standard_normal(DIM)
    f = concave(theta_star)
    op = ESGradient(queries=20, sigma=0.1, step_size=0.05, steps=1)
    start = np.zeros(DIM)
    # Fixed seed: one step goes uphill.
    assert f(run(op, start, seed=0, f=f)[-1].params)[0] > f(start)[0]
    # Over 20 seeds at least 18 (90%) improve. Gaussian smoothing leaves the gradient of a quadratic unbiased
    # (2 theta* at 0) and sigma = 0.1 is small next to |theta*| = 0.93; measured: all 20 seeds improve f from
    # f(0) = -|theta*|^2 = -0.87 by 0.46-0.75.
    improved = [f(run(op, start, seed=s, f=f)[-1].params)[0] > f(start)[0] for s in range(20)]
    assert sum(improved) >= 18


def test_es_gradient_with_flat_returns_does_not_move() -> None:
    op = ESGradient(queries=4)
    params = np.ones(DIM)
    state = op.tell(op.start(params, 0), np.array([1.0, 2.0, 2.0, 2.0, 2.0]))
    np.testing.assert_array_equal(state.params, params)  # zero spread among the perturbations: no direction


def test_es_gradient_schedule_is_queries_plus_baseline_per_step() -> None:
    assert ESGradient(queries=8, steps=1).schedule() == (9,)
    assert ESGradient(queries=3, steps=4).schedule() == (4, 4, 4, 4)


@pytest.mark.parametrize(
    ("op", "schedule"),
    [
        (HillClimb(queries=10, mode="batch", batch_size=5), (1, 5, 5)),
        (HillClimb(queries=6, mode="batch", batch_size=2), (1, 2, 2, 2)),
        (HillClimb(queries=4, mode="average"), (1, 1, 1, 1, 1)),
    ],
)
def test_hill_climb_schedule_is_a_baseline_then_per_round_proposals(op: HillClimb, schedule: tuple[int, ...]) -> None:
    assert op.schedule() == schedule
    assert sum(op.schedule()) == 1 + op.queries
    params = np.zeros(DIM)
    states = run(op, params, seed=0, f=concave(np.ones(DIM)))
    assert op.ask(states[0]).shape == (1, DIM)  # round 0 evaluates the start point itself
    assert op.ask(states[1]).shape == (op.per_round, DIM)
    assert op.per_round == (1 if op.mode == "average" else op.batch_size)


@pytest.mark.parametrize("mode", ["average", "batch"])
def test_hill_climb_is_monotone_and_accepts_only_strict_improvements(mode: str) -> None:
    op = HillClimb(queries=40, sigma=0.5, mode=mode, batch_size=4)
    rng = np.random.default_rng(5)
    theta_star = rng.standard_normal(DIM)
    f = concave(theta_star)
    states = run(op, np.zeros(DIM), seed=3, f=f)
    assert states[1].best_return == f(np.zeros(DIM))[0]
    accepted = 0
    for before, after in itertools.pairwise(states[1:]):
        assert after.best_return >= before.best_return
        if not np.array_equal(after.params, before.params):
            accepted += 1
            assert after.best_return > before.best_return
            # The kept vector is the best proposal of the round, and its return is the new best.
            proposals = op.ask(before)
            np.testing.assert_array_equal(after.params, proposals[np.argmax(f(proposals))])
            assert after.best_return == f(after.params)[0]
        else:
            assert after.best_return == before.best_return
    # Sigma 0.5 around a point 1.98 from the optimum: some proposals are better and get accepted
    # (measured: 9 of 40 rounds in average mode, 6 of 10 in batch mode).
    assert accepted >= 1
    assert f(states[-1].params)[0] > f(np.zeros(DIM))[0]


def test_hill_climb_rejects_ties() -> None:
    op = HillClimb(queries=10, batch_size=5)
    params = np.random.default_rng(6).standard_normal(DIM)
    final = run(op, params, seed=0, f=lambda thetas: np.zeros(len(np.atleast_2d(thetas))))[-1]
    np.testing.assert_array_equal(final.params, params)  # equal returns are never "strictly better"
    assert final.best_return == 0.0


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: HillClimb(queries=10, mode="batch", batch_size=3), "divisible"),
        (lambda: HillClimb(mode="median"), "mode"),
        (lambda: HillClimb(queries=0), "queries"),
        (lambda: HillClimb(sigma=-0.1), "sigma"),
        (lambda: HillClimb(sampling="sobol"), "sampling"),
        (lambda: HillClimb(sampling="stratified", mode="average"), "batch"),
        (lambda: HillClimb(queries=3, batch_size=1, sampling="stratified"), "batch_size >= 2"),
        (lambda: ESGradient(sigma=0.0), "sigma"),
        (lambda: ESGradient(steps=0), "steps"),
        (lambda: ESGradient(step_size=-0.01), "step_size"),
    ],
)
def test_bad_operator_settings_raise_adaptation_error(build: Callable[[], object], match: str) -> None:
    with pytest.raises(AdaptationError, match=match):
        build()


def test_make_operator_builds_by_name_and_names_bad_input() -> None:
    assert make_operator({"name": "es_grad", "queries": 3}) == ESGradient(queries=3)
    assert make_operator({"name": "hill_climb", "mode": "average"}) == HillClimb(mode="average")
    for op in (ESGradient(queries=3, steps=2), HillClimb(queries=4, mode="average")):
        assert make_operator(op.to_dict()) == op
    with pytest.raises(AdaptationError, match="'newton'"):
        make_operator({"name": "newton"})
    with pytest.raises(AdaptationError, match="None"):
        make_operator({"queries": 3})
    with pytest.raises(AdaptationError, match="learning_rate"):
        make_operator({"name": "es_grad", "learning_rate": 0.1})


def test_hill_climb_averages_repeated_evaluations_on_shared_seeds() -> None:
    """R evaluations per candidate: the value is their mean, and every candidate uses the same R seed slots, so one
    lucky episode cannot lock a candidate in (the reference's ``parallel_evaluations``)."""
    op = HillClimb(queries=3, sigma=0.5, mode="average", evaluations=4)
    assert op.schedule() == (4, 4, 4, 4)
    assert all(op.seed_slots(r) == (0, 1, 2, 3) for r in range(4))
    batch = HillClimb(queries=4, mode="batch", batch_size=2, evaluations=3)
    assert batch.schedule() == (3, 6, 6) and batch.seed_slots(1) == (0, 1, 2, 0, 1, 2)
    state = op.start(np.zeros(DIM), seed=0)
    asked = op.ask(state)
    np.testing.assert_array_equal(asked, np.zeros((4, DIM)))  # the baseline, 4 times
    state = op.tell(state, np.array([1.0, 2.0, 3.0, 10.0]))
    assert state.best_return == 4.0  # the mean, not the best episode
    candidate = op.ask(state)
    assert candidate.shape == (4, DIM) and (candidate == candidate[0]).all()  # one candidate, repeated
    # One lucky episode (100) but a mean of 3.9 < 4: rejected.
    after = op.tell(state, np.array([100.0, -30.0, -27.4, -27.0]))
    np.testing.assert_array_equal(after.params, np.zeros(DIM))
    # A mean of 4.5 > 4: accepted.
    after = op.tell(state, np.array([4.0, 5.0, 4.0, 5.0]))
    np.testing.assert_array_equal(after.params, candidate[0])
    assert after.best_return == 4.5


def test_es_gradient_queries_of_a_step_share_one_seed_slot() -> None:
    op = ESGradient(queries=3, steps=2)
    assert op.seed_slots(0) == (0, 0, 0, 0) and op.seed_slots(1) == (1, 1, 1, 1)


@pytest.mark.parametrize(
    "op",
    [HillClimb(queries=4, sigma=2.0, mode="average", span=(2, 4)), ESGradient(queries=4, sigma=2.0, span=(2, 4))],
    ids=["hill_climb", "es_grad"],
)
def test_a_span_perturbs_and_moves_only_its_parameters(op: AdaptationOperator) -> None:
    """Context adaptation: queries move params[2:4] far (sigma 2) and leave every other parameter as trained."""
    params = np.arange(DIM, dtype=np.float64)
    states = run(op, params, seed=3, f=concave(np.full(DIM, 10.0)))
    asked = np.concatenate([op.ask(s) - s.params for s in states[:-1]])  # every query's perturbation
    assert not asked[:, [0, 1, 4, 5]].any() and np.abs(asked[:, 2:4]).max() > 1.0
    assert not np.array_equal(states[-1].params[2:4], params[2:4])  # it did adapt, inside the span
    np.testing.assert_array_equal(np.delete(states[-1].params, [2, 3]), np.delete(params, [2, 3]))
    assert make_operator(op.to_dict()) == op and op.to_dict()["span"] == [2, 4]  # what a bundle records
    assert "span" not in HillClimb().to_dict()  # no span: every parameter, as bundles without one were read


@pytest.mark.parametrize("span", [(3, 3), (-1, 2), (0, 1, 2), (0, 2.5), ("0", "2"), 4, (True, 2)])
def test_a_bad_span_is_named(span: object) -> None:
    with pytest.raises(AdaptationError, match="span"):
        HillClimb(span=span)  # type: ignore[arg-type]


def test_a_span_beyond_the_parameters_is_named() -> None:
    op = HillClimb(queries=2, mode="average", span=(4, DIM + 1))
    state = op.tell(op.start(np.zeros(DIM), seed=0), np.zeros(1))
    with pytest.raises(AdaptationError, match=f"beyond the {DIM} parameters"):
        op.ask(state)


def test_stratified_queries_take_each_normal_quantile_once_per_coordinate() -> None:
    """A Latin hypercube on the normal's quantiles: in every round, each perturbed coordinate takes each of the
    batch's quantiles exactly once, the rest stay as they are; with one coordinate, every adaptation asks the
    same offsets, whatever its seed."""
    q, sigma = 8, 0.7
    quantiles = np.array([NormalDist().inv_cdf((i + 0.5) / q) for i in range(q)])
    op = HillClimb(queries=2 * q, sigma=sigma, batch_size=q, sampling="stratified", span=(2, 5))
    params = np.arange(DIM, dtype=float)
    state = op.tell(op.start(params, seed=4), np.zeros(1))
    proposals = op.ask(state)
    offsets = (proposals - params) / sigma
    np.testing.assert_array_equal(proposals[:, :2], np.broadcast_to(params[:2], (q, 2)))
    np.testing.assert_array_equal(proposals[:, 5:], np.broadcast_to(params[5:], (q, DIM - 5)))
    for j in range(2, 5):
        np.testing.assert_allclose(np.sort(offsets[:, j]), quantiles, atol=1e-12)
    assert not np.array_equal(offsets[:, 2], offsets[:, 3])  # each coordinate in its own order
    one = HillClimb(queries=q, sigma=1.0, batch_size=q, sampling="stratified", span=(0, 1))
    for seed in (0, 1, 99):
        asked = one.ask(one.tell(one.start(np.zeros(3), seed), np.zeros(1)))
        np.testing.assert_allclose(np.sort(asked[:, 0]), quantiles, atol=1e-12)
    assert make_operator(op.to_dict()) == op
