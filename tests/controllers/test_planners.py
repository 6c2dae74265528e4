"""MPC planners on a system whose optimum is known: a 2-D point mass that should reach the origin."""

from __future__ import annotations

import numpy as np
import pytest

from metactl.controllers.planners import CEM, MPPI, RandomShooting, sequence_costs

LOW, HIGH = -np.ones(2), np.ones(2)


def point_mass(obs: np.ndarray, act: np.ndarray) -> np.ndarray:
    """x' = x + 0.1 a (a batched 'model' over any leading dimensions)."""
    return obs + 0.1 * act


def point_mass_rollout():
    """The planners' rollout of the point mass: a stateless model hands out the same step every time."""
    return point_mass


def distance_cost(obs: np.ndarray, act: np.ndarray, nxt: np.ndarray) -> np.ndarray:
    return np.sum(nxt * nxt, axis=-1)


def _drive(planner, steps: int = 30, seed: int = 0) -> np.ndarray:
    """Two problems at once (E = 2): the point mass from two starts; each must reach the origin."""
    rng, x = np.random.default_rng(seed), np.array([[1.5, -1.0], [-1.2, 0.4]])
    for _ in range(steps):
        a = planner.plan(x, point_mass_rollout, distance_cost, rng)
        assert a.shape == (2, 2) and np.all(a >= LOW) and np.all(a <= HIGH)
        x = point_mass(x, a)
    return x


@pytest.mark.parametrize(
    "planner",
    [RandomShooting(LOW, HIGH, 200, 5), CEM(LOW, HIGH, 100, 5, iterations=3, elites=10), MPPI(LOW, HIGH, 100, 5, 0.01)],
    ids=["random_shooting", "cem", "mppi"],
)
def test_every_planner_reaches_the_goal(planner) -> None:
    # From |x| = 1.8 at <= 0.14 per step, 30 steps suffice; random shooting is the sloppiest.
    assert np.all(np.linalg.norm(_drive(planner), axis=1) < 0.2)


def test_sequence_costs_match_a_loop_over_candidates() -> None:
    rng = np.random.default_rng(1)
    actions = rng.uniform(-1, 1, size=(1, 7, 4, 2))
    x0 = np.array([[0.3, 0.2]])
    want = []
    for seq in actions[0]:
        x, total = x0.copy(), 0.0
        for a in seq:
            nxt = x[0] + 0.1 * a
            total += float(nxt @ nxt)
            x = nxt[None]
        want.append(total)
    np.testing.assert_allclose(sequence_costs(x0, actions, point_mass_rollout, distance_cost), [want])


def test_each_candidate_batch_gets_a_fresh_rollout_stepped_in_order() -> None:
    """A recurrent model keeps per-candidate state inside its rollout's step: the planner must start a rollout per
    batch of candidates and call its step once per horizon step, from the first to the last."""
    started, seen = [], []

    def rollout():
        started.append(len(seen))
        t = iter(range(100))

        def step(obs: np.ndarray, act: np.ndarray) -> np.ndarray:
            seen.append(next(t))
            return point_mass(obs, act)

        return step

    planner = CEM(LOW, HIGH, 16, 6, iterations=3, elites=4)
    planner.plan(np.ones((2, 2)), rollout, distance_cost, np.random.default_rng(0))
    assert started == [0, 6, 12] and seen == [0, 1, 2, 3, 4, 5] * 3


def test_random_shooting_returns_the_cheapest_candidates_first_action() -> None:
    planner, x0 = RandomShooting(LOW, HIGH, 50, 3), np.array([[0.5, 0.5], [-0.5, 0.1]])
    a = planner.plan(x0, point_mass_rollout, distance_cost, np.random.default_rng(2))
    actions = np.random.default_rng(2).uniform(LOW, HIGH, size=(2, 50, 3, 2))  # the same draw
    best = np.argmin(sequence_costs(x0, actions, point_mass_rollout, distance_cost), axis=1)
    np.testing.assert_array_equal(a, actions[[0, 1], best, 0])


def test_cem_keeps_the_lowest_cost_elites() -> None:
    # Cost depends only on the action: ||a - a*||^2. Correct elite selection converges to a*;
    # keeping the highest-cost end of the sort (the reference code's bug) would run away from it.
    target = np.array([0.6, -0.3])
    cost = lambda obs, act, nxt: np.sum((act - target) ** 2, axis=-1)  # noqa: E731
    planner = CEM(LOW, HIGH, 200, 1, iterations=6, elites=20)
    a = planner.plan(np.zeros((1, 2)), point_mass_rollout, cost, np.random.default_rng(3))
    np.testing.assert_allclose(a[0], target, atol=0.05)


def test_mppi_warm_start_improves_the_plan_and_reset_forgets_it() -> None:
    planner, rng, x0 = MPPI(LOW, HIGH, 64, 8, temperature=0.01), np.random.default_rng(4), np.array([[1.0, 1.0]])
    planner.plan(x0, point_mass_rollout, distance_cost, rng)
    plan_cost = lambda: sequence_costs(x0, planner._plan[:, None], point_mass_rollout, distance_cost)[0, 0]  # noqa: E731
    costs = [plan_cost()]
    for _ in range(5):  # replanning from the same state refines the kept plan
        planner._plan = np.roll(planner._plan, 1, axis=1)  # undo the shift
        planner.plan(x0, point_mass_rollout, distance_cost, rng)
        costs.append(plan_cost())
    zero_plan = sequence_costs(x0, np.zeros((1, 1, 8, 2)), point_mass_rollout, distance_cost)[0, 0]
    assert costs[-1] < costs[0] < zero_plan  # each call moves the plan toward the origin
    planner.reset()
    assert planner._plan is None  # the next call starts from the middle of the range again


def test_same_seed_same_action_and_bad_settings_are_refused() -> None:
    a, b = (CEM(LOW, HIGH, 30, 4, elites=5).plan(np.ones((1, 2)), point_mass_rollout, distance_cost,
                                                 np.random.default_rng(5)) for _ in range(2))  # fmt: skip
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="elites"):
        CEM(LOW, HIGH, 10, 4, elites=11)
    with pytest.raises(ValueError, match="low < high"):
        RandomShooting(HIGH, LOW, 10, 4)


@pytest.mark.parametrize("make", [lambda: RandomShooting(LOW, HIGH, 64, 5), lambda: CEM(LOW, HIGH, 64, 5, elites=8),
                                  lambda: MPPI(LOW, HIGH, 64, 5, temperature=0.1)])  # fmt: skip
def test_a_diverged_model_never_steers_the_plan(make) -> None:
    """Candidates whose predicted rollout is NaN / inf cost +inf; with none finite MPPI keeps its plan."""

    def half_broken(obs: np.ndarray, act: np.ndarray) -> np.ndarray:
        nxt = point_mass(obs, act)
        nxt[:, 1::2] = np.nan  # every other candidate diverges
        nxt[:, 2::4] = np.inf
        return nxt

    x, rng = np.array([[1.5, -1.0]]), np.random.default_rng(0)
    costs = sequence_costs(x, rng.uniform(-1, 1, (1, 8, 5, 2)), lambda: half_broken, distance_cost)
    assert np.all(np.isinf(costs[:, 1::2])) and np.all(np.isfinite(costs[:, ::4]))
    planner = make()
    for _ in range(30):
        a = planner.plan(x, lambda: half_broken, distance_cost, rng)
        assert np.all(np.isfinite(a))
        x = point_mass(x, a)
    assert np.linalg.norm(x) < 0.3  # the finite half still drives the point mass home
    a = planner.plan(x, lambda: lambda o, u: np.full_like(o, np.nan), distance_cost, rng)
    assert np.all(np.isfinite(a)) and np.all(a >= LOW) and np.all(a <= HIGH)
