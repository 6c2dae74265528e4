"""MuJoCo locomotion families: reward definitions, mass scaling and the Ant's healthy-height termination."""

from __future__ import annotations

import copy
import os

import mujoco
import numpy as np
import pytest

from metactl import sim
from metactl.sim.locomotion import ASSETS, compile_model


def step_both(family: str, tasks: list[sim.Task], steps: int, seed: int = 0) -> tuple[list, np.ndarray, np.ndarray]:
    """Step one batch with the same random actions in every row; return (obs per step, rewards [T, N], actions)."""
    fam = sim.make_family(family)
    batch = fam.make_batch(tasks)
    batch.reset([seed] * len(tasks))
    rng = np.random.default_rng(seed)
    actions = rng.uniform(fam.action_low, fam.action_high, size=(steps, fam.act_dim))
    obs_seq, rewards = [], []
    for a in actions:
        obs, reward, _ = batch.step(np.tile(a, (len(tasks), 1)))
        obs_seq.append(obs)
        rewards.append(reward)
    return obs_seq, np.array(rewards), actions


@pytest.mark.parametrize(("family", "ctrl_cost"), [("halfcheetah_fb", 0.05), ("ant_fb", 0.005)])
def test_forward_backward_reward_flips_sign_with_direction(family: str, ctrl_cost: float) -> None:
    obs_seq, rewards, actions = step_both(family, [sim.DirectionTask(1.0), sim.DirectionTask(-1.0)], steps=15)
    # The direction changes only the reward, never the dynamics: both rows follow the same trajectory.
    for obs in obs_seq:
        np.testing.assert_array_equal(obs[0], obs[1])
    # r(+1) = v_x - c|a|^2 (+ 0.05 alive bonus for the Ant) and r(-1) = -v_x - c|a|^2 (+ 0.05):
    # the difference is 2 v_x, the sum is -2 c|a|^2 (+ 0.1).
    bonus = 0.1 if family == "ant_fb" else 0.0
    np.testing.assert_allclose(rewards[:, 0] + rewards[:, 1], -2 * ctrl_cost * (actions**2).sum(1) + bonus, atol=1e-12)
    assert np.abs(rewards[:, 0] - rewards[:, 1]).max() > 1e-3


def test_reward_functions_by_hand() -> None:
    vx = np.array([2.0, -1.0])
    actions = np.array([[0.5] * 6, [1.0] * 6])  # |a|^2 = 1.5 and 6
    obs = np.zeros((2, 17))
    fb, vel = sim.make_family("halfcheetah_fb"), sim.make_family("halfcheetah_vel")
    # direction * v_x - 0.05 |a|^2: 1 * 2 - 0.075 and -1 * -1 - 0.3
    reward, terminated = fb.reward(vx, actions, obs, np.array([1.0, -1.0]))
    np.testing.assert_allclose(reward, [1.925, 0.7])
    assert not terminated.any()
    # -|v_x - v_goal| - 0.05 |a|^2: -|2 - 1.5| - 0.075 and -|-1 - 0.5| - 0.3
    reward, terminated = vel.reward(vx, actions, obs, np.array([1.5, 0.5]))
    np.testing.assert_allclose(reward, [-0.575, -1.8])
    assert not terminated.any()


def test_ant_terminates_outside_the_healthy_height_range() -> None:
    ant = sim.make_family("ant_fb")
    z = np.array([0.1, 0.2, 0.5, 1.0, 1.5])
    obs = np.zeros((5, 27))
    obs[:, 0] = z  # the torso height is the first observation
    reward, terminated = ant.reward(np.ones(5), np.zeros((5, 8)), obs, np.ones(5))
    # Healthy range [0.2, 1.0] inclusive, as Gymnasium's Ant; reward = 1 * 1 - 0 + 0.05 alive bonus.
    np.testing.assert_array_equal(terminated, [True, False, False, False, True])
    np.testing.assert_allclose(reward, 1.05)


def ant_batch_at(height: float | None) -> sim.BatchSim:
    """A one-Ant batch after reset, its torso optionally moved to ``height`` metres."""
    batch = sim.make_family("ant_fb").make_batch([sim.DirectionTask(1.0)])
    batch.reset([0])
    if height is not None:
        batch.qpos[0, 2] = height
        batch.forward()
    return batch


def test_ant_dropped_from_above_the_healthy_range_terminates_at_once() -> None:
    batch = ant_batch_at(1.5)
    _, _, terminated = batch.step(np.zeros((1, 8)))
    # After one control step (0.05 s) of free fall from 1.5 m the torso is still above 1.0 m.
    assert batch.qpos[0, 2] > 1.0
    assert terminated[0]


def test_ant_standing_still_stays_healthy_for_the_whole_horizon() -> None:
    batch, horizon = ant_batch_at(None), sim.make_family("ant_fb").horizon
    heights = []
    for _ in range(horizon):
        _, _, terminated = batch.step(np.zeros((1, 8)))
        heights.append(batch.qpos[0, 2])
        assert not terminated[0]
    # It settles on its legs (measured z ~ 0.38 m), well inside [0.2, 1.0].
    assert 0.3 < heights[-1] < 0.5


@pytest.mark.parametrize("xml", ["half_cheetah.xml", "ant.xml"])
@pytest.mark.parametrize("scale", [0.8, 1.2])
def test_mass_scale_scales_total_mass_and_inertia(xml: str, scale: float) -> None:
    base, scaled = compile_model(xml, 1.0), compile_model(xml, scale)
    assert scaled.body_mass.sum() == pytest.approx(scale * base.body_mass.sum(), rel=1e-12)
    np.testing.assert_allclose(scaled.body_mass, scale * base.body_mass, rtol=1e-12)
    np.testing.assert_allclose(scaled.body_inertia, scale * base.body_inertia, rtol=1e-12)


def test_half_cheetah_keeps_the_asset_total_mass() -> None:
    # half_cheetah.xml declares settotalmass="14"; the deprecated attribute is replaced by mj_setTotalmass.
    assert compile_model("half_cheetah.xml", 1.0).body_mass.sum() == pytest.approx(14.0, rel=1e-12)


def test_tasks_with_different_masses_get_different_models_and_dynamics() -> None:
    tasks = [sim.DirectionTask(1.0, 0.8), sim.DirectionTask(1.0, 1.2), sim.DirectionTask(-1.0, 0.8)]
    batch = sim.make_family("halfcheetah_fb").make_batch(tasks)
    assert batch.models[0] is batch.models[2]  # same scale: one shared model
    assert batch.models[0] is not batch.models[1]
    obs_seq, _, _ = step_both("halfcheetah_fb", tasks, steps=10)
    assert not np.allclose(obs_seq[-1][0], obs_seq[-1][1])
    np.testing.assert_array_equal(obs_seq[-1][0], obs_seq[-1][2])


@pytest.mark.parametrize(("xml", "scale"), [("half_cheetah.xml", 1.0), ("half_cheetah.xml", 0.8), ("ant.xml", 1.2)])
def test_scaled_model_constants_are_consistent_with_its_masses(xml: str, scale: float) -> None:
    """Regression: mj_setTotalmass alone left invweight0, subtreemass and actuator_acc0 of the unscaled model,
    which changed contact softness (the HalfCheetah was not Gymnasium's); compile_model must call mj_setConst."""
    model = compile_model(xml, scale)
    reference = copy.deepcopy(model)
    mujoco.mj_setConst(reference, mujoco.MjData(reference))
    for field in ("body_subtreemass", "body_invweight0", "dof_invweight0", "actuator_acc0"):
        np.testing.assert_allclose(getattr(model, field), getattr(reference, field), rtol=1e-9, err_msg=field)
    if scale == 1.0:  # and at scale 1 the model is exactly the one Gymnasium compiles from the asset
        gym_model = mujoco.MjModel.from_xml_path(os.path.join(ASSETS, xml))
        np.testing.assert_allclose(model.dof_invweight0, gym_model.dof_invweight0, rtol=1e-9)


@pytest.mark.parametrize(("name", "obs_dim", "act_dim"), [("halfcheetah_fb", 17, 6), ("ant_fb", 27, 8)])
def test_signal_layout_and_control_period(name: str, obs_dim: int, act_dim: int) -> None:
    family = sim.make_family(name)
    assert (family.obs_dim, family.act_dim) == (obs_dim, act_dim)
    assert len(set(family.observation_names)) == obs_dim
    # Documented: dt = 0.05 s per control step (MuJoCo timestep 0.01 s x frame skip 5).
    assert family.control_period == pytest.approx(0.05)
    np.testing.assert_array_equal(family.action_low, -family.action_high)
