"""Point navigation rewards and dynamics, checked against values computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from metactl import sim
from metactl.sim.point_nav import DT, POSITION_LIMIT


def one_step_reward(task: sim.GoalTask, position: tuple[float, float]) -> float:
    """Reward of a zero-velocity step taken at ``position``."""
    batch = sim.make_family("four_corners").make_batch([task])
    batch.reset([0])
    batch.pos[:] = position
    _, reward, terminated = batch.step(np.zeros((1, 2)))
    assert not terminated[0]
    return float(reward[0])


def test_reward_is_minus_four_per_step_at_the_origin() -> None:
    # Goal (2, 2): d^2 = 8 > 4, so r = -4 + max(0, 4 - 8) = -4 per step; standing still for the horizon of 100 steps
    # gives -400, the return of the zero (mid-range) policy.
    result = sim.rollout(
        sim.make_family("four_corners").make_batch([sim.GoalTask(goal=(2.0, 2.0))]),
        lambda obs: np.zeros_like(obs),
        seeds=[0],
        horizon=100,
    )
    assert result.returns[0] == -400.0
    assert one_step_reward(sim.GoalTask(goal=(2.0, 2.0)), (0.0, 0.0)) == -4.0


@pytest.mark.parametrize(
    ("position", "expected"),
    [
        ((2.0, 2.0), 0.0),  # at the goal: -4 + (4 - 0) = 0
        ((2.0, 1.0), -1.0),  # d^2 = 1: -4 + (4 - 1) = -1
        ((2.0, 0.0), -4.0),  # d^2 = 4: on the edge of the reward disc, -4 + 0
        ((-5.0, -5.0), -4.0),  # far away: flat -4
    ],
)
def test_reward_rises_only_within_distance_two_of_the_goal(position: tuple[float, float], expected: float) -> None:
    assert one_step_reward(sim.GoalTask(goal=(2.0, 2.0)), position) == expected


def test_circle_penalizes_coming_near_a_wrong_goal() -> None:
    # Test task k=0 at phi = 45 deg: goal (2, 2), distractors (-2, 2), (-2, -2), (2, -2) (up to rounding).
    task = sim.make_family("multi_goal_circle").test_tasks()[0]
    batch = sim.make_family("multi_goal_circle").make_batch([task])
    batch.reset([0])
    batch.pos[:] = (-2.0, 1.0)
    _, reward, _ = batch.step(np.zeros((1, 2)))
    # By hand at (-2, 1): d^2 to the goal (2, 2) is 17 -> -4 + 0.
    # Distractor (-2, 2): d^2 = 1 -> 10000 * (1 - 4) = -30000; (-2, -2): d^2 = 9 and (2, -2): d^2 = 25 -> no penalty.
    assert reward[0] == pytest.approx(-30004.0, rel=1e-9)
    # Far from every distractor the circle reward equals the four-corners reward.
    batch.pos[:] = (2.0, 2.0)
    _, reward, _ = batch.step(np.zeros((1, 2)))
    assert reward[0] == pytest.approx(0.0, abs=1e-9)


def test_positions_are_clipped_to_the_arena_and_actions_to_unit_speed() -> None:
    batch = sim.make_family("four_corners").make_batch([sim.GoalTask(goal=(2.0, 2.0))])
    assert np.array_equal(batch.reset([0]), np.zeros((1, 2)))
    obs, _, _ = batch.step(np.array([[100.0, -100.0]]))
    # Actions are clipped to [-1, 1] before integrating for DT = 0.1 s.
    np.testing.assert_array_equal(obs, [[DT, -DT]])
    for _ in range(60):  # 60 steps of 0.1 would reach 6 > 5
        obs, _, _ = batch.step(np.array([[1.0, -1.0]]))
    np.testing.assert_array_equal(obs, [[POSITION_LIMIT, -POSITION_LIMIT]])
    assert POSITION_LIMIT == 5.0


def test_a_batch_needs_the_same_number_of_distractors_per_task() -> None:
    circle = sim.make_family("multi_goal_circle").test_tasks()[0]
    with pytest.raises(ValueError, match="distractor"):
        sim.make_family("multi_goal_circle").make_batch([circle, sim.GoalTask(goal=(1.0, 1.0))])
