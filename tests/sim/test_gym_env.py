"""The Gymnasium view of every task family: the env checker, reset/step semantics and parity with the batched engine."""

from __future__ import annotations

import warnings

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from metactl import sim
from metactl.sim.gym_env import TaskFamilyEnv

# The checker warns that our observation Box is unbounded; that is deliberate (raw MuJoCo state), nothing else is.
ALLOWED_WARNINGS = ("observation space minimum value is -infinity", "observation space maximum value is infinity")


def make_env(name: str) -> TaskFamilyEnv:
    return gymnasium.make(sim.FAMILIES[name].env_id).unwrapped


@pytest.mark.parametrize("name", sorted(sim.FAMILIES))
def test_every_registered_env_passes_the_gymnasium_checker(name: str) -> None:
    env = make_env(name)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env, skip_render_check=True)
    unexpected = [str(w.message) for w in caught if not any(a in str(w.message) for a in ALLOWED_WARNINGS)]
    assert unexpected == []
    assert env.observation_space.shape == (env.family.obs_dim,)
    assert env.action_space.shape == (env.family.act_dim,)


@pytest.mark.parametrize("name", ["halfcheetah_fb", "ant_fb"])
def test_reset_with_seed_starts_the_batch_engine_episode(name: str) -> None:
    env = make_env(name)
    task = env.test_tasks()[0]
    env.set_task(task)
    obs3, _ = env.reset(seed=3)
    batch_obs = env.family.make_batch([task]).reset([3])[0]
    np.testing.assert_array_equal(obs3, batch_obs)
    # The seed really drives the initial-state noise.
    assert not np.array_equal(obs3, env.reset(seed=4)[0])


def fixed_actions(env: gymnasium.Env, steps: int, seed: int) -> np.ndarray:
    """A deterministic action sequence [steps, act_dim] in float32, as a Gymnasium agent would send."""
    rng = np.random.default_rng(seed)
    low, high = env.action_space.low, env.action_space.high
    return rng.uniform(low, high, size=(steps, *env.action_space.shape)).astype(np.float32)


@pytest.mark.parametrize(
    ("name", "task", "steps"),
    [
        ("halfcheetah_fb", sim.DirectionTask(direction=-1.0, mass_scale=1.1), 40),
        ("four_corners", sim.GoalTask(goal=(0.3, -0.2)), 100),
    ],
)
def test_gym_env_matches_batched_rollout(name: str, task: sim.Task, steps: int) -> None:
    """Same task, seed and actions: the env's observations and return equal ``make_batch`` + ``sim.rollout``."""
    env = make_env(name)
    env.set_task(task)
    actions = fixed_actions(env, steps, seed=11)
    obs, _ = env.reset(seed=5)
    env_obs, env_rewards = [obs], []
    for a in actions:
        obs, reward, terminated, truncated, _ = env.step(a)
        env_obs.append(obs)
        env_rewards.append(reward)
        assert not terminated
    # The env truncates exactly at the family's horizon.
    assert truncated == (steps == env.family.horizon)

    t = iter(range(steps))
    result = sim.rollout(
        env.family.make_batch([task]),
        lambda o: actions[next(t)].astype(np.float64)[None],
        seeds=[5],
        horizon=steps,
        record=True,
    )
    np.testing.assert_array_equal(result.observations[:, 0], np.array(env_obs[:steps]))
    assert result.returns[0] == sum(env_rewards)
    assert result.lengths[0] == steps
    # A non-trivial episode: the goal (0.3, -0.2) is within reach, the cheetah moves.
    assert len(set(env_rewards)) > 1


def test_set_task_changes_the_reward_of_the_same_trajectory() -> None:
    env = make_env("four_corners")
    returns = []
    for goal in ((2.0, 2.0), (-2.0, -2.0)):
        env.set_task(sim.GoalTask(goal=goal))
        env.reset(seed=0)
        # 20 steps of velocity (1, 1) for 0.1 s reach (2, 2) from the origin.
        returns.append(sum(env.step(np.ones(2, dtype=np.float32))[1] for _ in range(20)))
    assert env.task == sim.GoalTask(goal=(-2.0, -2.0))
    # Towards (2, 2) the reward rises above -4 once within distance 2; away from (-2, -2) it stays -4.
    assert returns[1] == pytest.approx(-80.0)
    assert returns[0] > returns[1] + 10.0


def test_set_task_flips_the_locomotion_reward() -> None:
    env = make_env("halfcheetah_fb")
    actions = fixed_actions(env, 20, seed=2)
    rewards = {}
    for direction in (1.0, -1.0):
        env.set_task(sim.DirectionTask(direction=direction))
        env.reset(seed=1)
        rewards[direction] = np.array([env.step(a)[1] for a in actions])
    ctrl = 0.05 * np.sum(actions.astype(np.float64) ** 2, axis=1)
    # r(+1) = v_x - ctrl and r(-1) = -v_x - ctrl on the same trajectory, so their sum is -2 ctrl.
    np.testing.assert_allclose(rewards[1.0] + rewards[-1.0], -2.0 * ctrl, rtol=0, atol=1e-12)
    assert not np.allclose(rewards[1.0], rewards[-1.0])


def test_env_samples_and_lists_tasks_like_its_family() -> None:
    env = make_env("multi_goal_circle")
    assert env.test_tasks() == env.family.test_tasks()
    a = env.sample_tasks(np.random.default_rng(9), 3)
    b = env.family.sample_tasks(np.random.default_rng(9), 3)
    assert a == b
