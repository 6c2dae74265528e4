"""The dynamic setting: a task that changes mid-episode (``ChangeTask``), in the batched engine and the Gym env."""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest

from metactl import sim
from metactl.sim import ChangeTask, CrippledLegTask, DisabledJointTask


def _rollout(family, task, actions, seed=0):
    batch = family.make_batch([task])
    obs = [batch.reset([seed])[0]]
    for a in actions:
        obs.append(batch.step(a[None])[0][0])
    return np.array(obs)


@pytest.mark.parametrize(
    ("name", "healthy", "damaged", "at"),
    [
        ("halfcheetah_disabled_joint", DisabledJointTask(-1), DisabledJointTask(0), 30),
        ("ant_crippled_leg", CrippledLegTask(-1), CrippledLegTask(3), 12),
    ],
)
def test_a_change_task_is_the_first_task_then_the_second(name, healthy, damaged, at) -> None:
    family = sim.make_family(name)
    actions = np.random.default_rng(0).uniform(-1, 1, (2 * at, family.act_dim))
    changing = _rollout(family, ChangeTask(healthy, damaged, at), actions)
    before = _rollout(family, healthy, actions)
    np.testing.assert_array_equal(changing[: at + 1], before[: at + 1])  # identical up to the change ...
    assert not np.allclose(changing[at + 2 :], before[at + 2 :])  # ... then the damage shows
    # From the changed state on, it steps exactly as the damaged task would from that state.
    batch = family.make_batch([ChangeTask(healthy, damaged, at)])
    batch.reset([0])
    for a in actions[:at]:
        batch.step(a[None])
    reference = family.make_batch([damaged])
    reference.reset([0])
    reference.state[:] = batch.state  # the whole integration state: qpos, qvel, warm start, ...
    np.testing.assert_array_equal(batch.step(actions[at][None])[0], reference.step(actions[at][None])[0])


def test_reset_undoes_the_change_and_the_episode_repeats() -> None:
    family = sim.make_family("halfcheetah_disabled_joint")
    task = family.change_tests()[0]
    assert (task.first, task.then, task.at_step) == (DisabledJointTask(-1), DisabledJointTask(0), 500)
    actions = np.random.default_rng(1).uniform(-1, 1, (520, 6))
    np.testing.assert_array_equal(_rollout(family, task, actions), _rollout(family, task, actions))


def test_change_tasks_round_trip_and_run_in_the_gym_env() -> None:
    family = sim.make_family("ant_crippled_leg")
    (task,) = family.change_tests()
    assert sim.task_from_dict(task.to_dict()) == task
    env = gymnasium.make(family.env_id).unwrapped
    env.set_task(task)
    env.reset(seed=0)
    for _ in range(300):
        env.step(env.action_space.sample())
    assert env._sim.models[0] is not sim.make_family("ant_crippled_leg").make_batch([CrippledLegTask(-1)]).models[0]
