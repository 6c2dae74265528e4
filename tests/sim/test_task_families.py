"""Task families: deterministic sampling, the fixed train/test split, the registry and task (de)serialization."""

from __future__ import annotations

import numpy as np
import pytest

from metactl import sim
from metactl.sim.point_nav import CORNERS

N_SAMPLES = 300


@pytest.mark.parametrize("name", sorted(sim.FAMILIES))
def test_sample_tasks_is_deterministic_given_the_rng(name: str) -> None:
    family = sim.make_family(name)
    a = family.sample_tasks(np.random.default_rng(123), 20)
    b = family.sample_tasks(np.random.default_rng(123), 20)
    c = family.sample_tasks(np.random.default_rng(124), 20)
    assert a == b
    assert a != c
    assert len(a) == 20


@pytest.mark.parametrize("name", sorted(sim.FAMILIES))
def test_sample_tasks_never_returns_a_test_task(name: str) -> None:
    family = sim.make_family(name)
    test = set(family.test_tasks())
    sampled = family.sample_tasks(np.random.default_rng(0), N_SAMPLES)
    assert test.isdisjoint(sampled)


def test_four_corners_split_keeps_a_hole_around_each_test_corner() -> None:
    family = sim.make_family("four_corners")
    assert [t.goal for t in family.test_tasks()] == [(2.0, 2.0), (-2.0, 2.0), (-2.0, -2.0), (2.0, -2.0)]
    goals = np.array([t.goal for t in family.sample_tasks(np.random.default_rng(1), N_SAMPLES)])
    corners = np.array(CORNERS)
    offset = goals[:, None, :] - corners[None]  # [S, 4, 2]
    nearest = np.abs(offset).max(axis=2).min(axis=1)
    # Documented: corner + offset, offset in [-0.25, 0.25]^2 with |offset|_inf >= 0.05.
    assert nearest.min() >= 0.05
    assert nearest.max() <= 0.25
    # Every corner is drawn (4 corners, 300 draws: missing one has probability 4 * 0.75^300 ~ 1e-37).
    assert set(np.argmin(np.abs(offset).max(axis=2), axis=1)) == {0, 1, 2, 3}


def test_multi_goal_circle_test_goals_are_the_corners_with_three_distractors() -> None:
    family = sim.make_family("multi_goal_circle")
    for task, corner in zip(family.test_tasks(), CORNERS, strict=True):
        # phi = 45 deg on radius sqrt(8): sqrt(8) * cos(45 deg) = 2, up to rounding.
        np.testing.assert_allclose(task.goal, corner, atol=1e-12)
        assert len(task.distractors) == 3
        others = sorted(c for c in CORNERS if c != corner)
        np.testing.assert_allclose(sorted(task.distractors), others, atol=1e-12)
    for task in family.sample_tasks(np.random.default_rng(2), N_SAMPLES):
        goals = np.array([task.goal, *task.distractors])
        np.testing.assert_allclose(np.hypot(goals[:, 0], goals[:, 1]), np.sqrt(8.0))
        # The rotation of the set is phi mod 90 deg; the training split keeps |phi - 45| >= 5 deg.
        phi = np.rad2deg(np.arctan2(goals[:, 1], goals[:, 0])) % 90.0
        assert np.all(np.abs(phi - 45.0) >= 5.0 - 1e-9)


def test_locomotion_test_tasks_are_the_documented_values() -> None:
    fb = [sim.DirectionTask(1.0), sim.DirectionTask(-1.0), sim.DirectionTask(1.0, 0.9), sim.DirectionTask(-1.0, 1.1)]
    assert sim.make_family("halfcheetah_fb").test_tasks() == fb
    assert sim.make_family("ant_fb").test_tasks() == fb
    assert sim.make_family("halfcheetah_vel").test_tasks() == [sim.VelocityTask(v) for v in (0.25, 0.75, 1.25, 1.75)]


@pytest.mark.parametrize("name", ["halfcheetah_fb", "ant_fb", "halfcheetah_vel"])
def test_locomotion_training_tasks_follow_the_documented_distribution(name: str) -> None:
    tasks = sim.make_family(name).sample_tasks(np.random.default_rng(3), N_SAMPLES)
    scales = np.array([t.mass_scale for t in tasks])
    assert scales.min() >= 0.8
    assert scales.max() <= 1.2
    if name == "halfcheetah_vel":
        v = np.array([t.velocity for t in tasks])
        assert v.min() >= 0.0
        assert v.max() <= 2.0
    else:
        assert {t.direction for t in tasks} == {-1.0, 1.0}


@pytest.mark.parametrize("name", ["halfcheetah_fb", "ant_fb"])
def test_forward_backward_draws_are_balanced_for_even_counts(name: str) -> None:
    family = sim.make_family(name)
    for seed in range(10):
        tasks = family.sample_tasks(np.random.default_rng(seed), 6)
        assert sum(t.direction for t in tasks) == 0.0  # stratified: 3 forward, 3 backward


@pytest.mark.parametrize("n", [1, 3])
def test_forward_backward_draws_both_directions_for_odd_counts(n: int) -> None:
    family = sim.make_family("halfcheetah_fb")
    # 40 independent draws: with a fair extra task, the sum is never +1 in all of them (probability 2^-40).
    sums = {sum(t.direction for t in family.sample_tasks(np.random.default_rng(seed), n)) for seed in range(40)}
    assert sums == {1.0, -1.0}


def test_unknown_family_raises_task_error_listing_the_known_names() -> None:
    with pytest.raises(sim.TaskError) as err:
        sim.make_family("pong")
    assert "'pong'" in str(err.value)
    for name in sim.FAMILIES:
        assert name in str(err.value)


def test_a_family_rejects_tasks_of_another_type() -> None:
    with pytest.raises(sim.TaskError, match="DirectionTask"):
        sim.make_family("halfcheetah_fb").make_batch([sim.GoalTask(goal=(1.0, 1.0))])
    with pytest.raises(sim.TaskError, match="GoalTask"):
        sim.make_family("four_corners").make_batch([sim.VelocityTask(velocity=1.0)])


@pytest.mark.parametrize("name", sorted(sim.FAMILIES))
def test_task_from_dict_inverts_to_dict(name: str) -> None:
    family = sim.make_family(name)
    for task in family.test_tasks() + family.sample_tasks(np.random.default_rng(4), 3):
        data = task.to_dict()
        assert data["type"] == type(task).__name__
        assert sim.task_from_dict(data) == task


def test_task_from_dict_accepts_json_lists() -> None:
    data = {"type": "GoalTask", "goal": [1, 2], "distractors": [[3, 4], [5, 6]]}
    assert sim.task_from_dict(data) == sim.GoalTask(goal=(1.0, 2.0), distractors=((3.0, 4.0), (5.0, 6.0)))


@pytest.mark.parametrize(
    ("data", "named"),
    [
        ({"type": "SpinTask", "rate": 1.0}, "SpinTask"),
        ({"direction": 1.0}, "None"),
        ({"type": "DirectionTask", "direction": 1.0, "mass": 2.0}, "mass"),
    ],
)
def test_task_from_dict_errors_name_the_problem(data: dict, named: str) -> None:
    with pytest.raises(sim.TaskError, match=named):
        sim.task_from_dict(data)
