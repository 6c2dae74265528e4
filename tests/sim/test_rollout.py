"""``sim.rollout`` and the batched engines: batched equals looped, and termination stops the reward count."""

from __future__ import annotations

import numpy as np
import pytest

from metactl import sim
from metactl.sim.adaptive_locomotion import PIER_BLOCKS
from metactl.sim.tasks import CrippledLegTask, DisabledJointTask, PierTask, TerrainTask


def elementwise_policy(act_dim: int) -> sim.BatchPolicy:
    """A deterministic policy acting row by row (no matrix product, so batching cannot change rounding)."""
    return lambda obs: np.sin(3.0 * obs[:, :act_dim] + 1.0)


TASKS = {
    "four_corners": [sim.GoalTask(goal=(0.5, 0.5)), sim.GoalTask(goal=(-1.0, 0.8)), sim.GoalTask(goal=(2.0, -2.0))],
    "multi_goal_circle": sim.make_family("multi_goal_circle").sample_tasks(np.random.default_rng(0), 3),
    "halfcheetah_fb": [sim.DirectionTask(1.0), sim.DirectionTask(-1.0, 0.85), sim.DirectionTask(1.0, 1.15)],
    "halfcheetah_vel": [sim.VelocityTask(0.5), sim.VelocityTask(1.5, 0.9)],
    "ant_fb": [sim.DirectionTask(1.0), sim.DirectionTask(-1.0, 1.1)],
    # GrBAL's families: per-task gains and per-task models in one batch (a ramp down right under the start).
    "halfcheetah_disabled_joint": [DisabledJointTask(0), DisabledJointTask(3), DisabledJointTask(0)],
    "halfcheetah_slope": [TerrainTask(((-2.0, 4.0, -0.3),)), TerrainTask(()), TerrainTask(((2.0, 3.0, 1.0),))],
    "halfcheetah_pier": [PierTask((0.5,) * PIER_BLOCKS), PierTask((9.5,) * PIER_BLOCKS)],
    "ant_crippled_leg": [CrippledLegTask(0), CrippledLegTask(3)],
}
HORIZON = 60


@pytest.mark.parametrize("name", sorted(TASKS))
def test_batched_rollout_equals_looped_single_task_rollouts(name: str) -> None:
    family = sim.make_family(name)
    tasks, seeds = TASKS[name], [10 + i for i in range(len(TASKS[name]))]
    policy = elementwise_policy(family.act_dim)
    batched = sim.rollout(family.make_batch(tasks), policy, seeds, HORIZON, record=True)
    for i, (task, seed) in enumerate(zip(tasks, seeds, strict=True)):
        single = sim.rollout(family.make_batch([task]), policy, [seed], HORIZON, record=True)
        assert batched.returns[i] == single.returns[0]
        assert batched.lengths[i] == single.lengths[0]
        steps = single.observations.shape[0]
        np.testing.assert_array_equal(batched.observations[:steps, i], single.observations[:, 0])
    # Different tasks really behave differently.
    assert len(set(batched.returns.tolist())) > 1


@pytest.mark.parametrize("name", ["halfcheetah_fb", "halfcheetah_disabled_joint", "halfcheetah_pier", "ant_fb"])
def test_the_batched_engine_is_plain_mj_step_on_one_mjdata_per_instance(name: str) -> None:
    """MuJoCo's batch (state rows, one C call per step) against the textbook loop: ``mj_step`` on each task's model
    and its own ``MjData``, from the same initial state; bit for bit, gains and per-task models included."""
    import mujoco

    family = sim.make_family(name)
    tasks = TASKS[name]
    batch = family.make_batch(tasks)
    obs = batch.reset([3 + i for i in range(len(tasks))])
    datas = [batch.data(i) for i in range(len(tasks))]  # copies of the initial states
    gains = np.array([family.actuator_gain(t) for t in tasks])
    nq, nv = family.robot_dofs or (batch.models[0].nq, batch.models[0].nv)
    for t, actions in enumerate(np.random.default_rng(0).uniform(-1.3, 1.3, (40, len(tasks), family.act_dim))):
        obs, reward, _ = batch.step(actions)
        for i, (model, data) in enumerate(zip(batch.models, datas, strict=True)):
            x = data.qpos[0]
            data.ctrl[:] = np.clip(actions[i], family.action_low, family.action_high) * gains[i]
            mujoco.mj_step(model, data, family.frame_skip)
            expected = np.concatenate([data.qpos[family.qpos_skip : nq], data.qvel[:nv]])
            np.testing.assert_array_equal(obs[i], expected, err_msg=f"instance {i}, step {t}")
            vx = (data.qpos[0] - x) / (model.opt.timestep * family.frame_skip)
            by_hand = family.reward_one(vx, np.clip(actions[i], -1, 1), expected, batch.target[i])[0]
            assert reward[i] == pytest.approx(by_hand, rel=1e-12, abs=1e-12)  # the batch sums in another order
    assert batch.warnings().sum() == 0


def bang_bang(act_dim: int) -> sim.BatchPolicy:
    """Full-torque random actions; the draw at step t depends only on t, so reruns see the same actions."""
    t = iter(range(10**6))
    return lambda obs: np.random.default_rng([next(t)]).choice([-1.0, 1.0], size=(len(obs), act_dim))


def test_rollout_stops_counting_after_termination() -> None:
    """Reference: step the same Ant batch by hand and sum each instance's rewards up to its termination step."""
    ant = sim.make_family("ant_fb")
    tasks = [sim.DirectionTask(1.0), sim.DirectionTask(-1.0), sim.DirectionTask(1.0, 0.9), sim.DirectionTask(-1.0, 1.1)]
    seeds = [1, 2, 3, 4]
    n = len(tasks)
    result = sim.rollout(ant.make_batch(tasks), bang_bang(8), seeds, ant.horizon)

    batch, policy = ant.make_batch(tasks), bang_bang(8)
    obs = batch.reset(seeds)
    start = batch.x.copy()
    returns, lengths, alive = np.zeros(n), np.zeros(n, dtype=int), np.ones(n, dtype=bool)
    progress, ctrl, end = np.zeros(n), np.zeros(n), start.copy()
    for _ in range(ant.horizon):
        actions = policy(obs)
        x = batch.x.copy()
        obs, reward, terminated = batch.step(actions)
        for i in range(n):
            if alive[i]:
                returns[i] += reward[i]
                progress[i] += tasks[i].direction * (batch.x[i] - x[i]) / ant.control_period
                ctrl[i] += ant.ctrl_cost * actions[i] @ actions[i]
                end[i] = batch.x[i]
                lengths[i] += 1
                alive[i] = not terminated[i]
        if not alive.any():
            break
    # Bang-bang actions make the Ant jump above 1 m early (measured with this policy: all of seeds 1-20 end within
    # 8-33 of 200 steps), so episodes end at different steps and the masking is exercised.
    assert (lengths < ant.horizon).any()
    assert len(set(lengths.tolist())) > 1
    np.testing.assert_array_equal(result.lengths, lengths)
    np.testing.assert_allclose(result.returns, returns, rtol=0, atol=1e-12)
    # The displacement stops where the reward stops: the return is its progress, the control cost and the bonus.
    np.testing.assert_array_equal(result.displacement, end - start)
    heading = np.array([t.direction for t in tasks])
    by_parts = heading * result.displacement / ant.control_period - ctrl + 0.05 * lengths
    np.testing.assert_allclose(result.returns, by_parts, rtol=0, atol=1e-9)
    np.testing.assert_allclose(progress, heading * result.displacement / ant.control_period, rtol=1e-12, atol=1e-9)


def test_observation_sums_cover_exactly_the_steps_each_instance_was_alive() -> None:
    ant = sim.make_family("ant_fb")
    tasks, seeds = [sim.DirectionTask(1.0), sim.DirectionTask(-1.0)], [4, 5]
    result = sim.rollout(ant.make_batch(tasks), bang_bang(8), seeds, ant.horizon, record=True)
    assert result.obs_count == result.lengths.sum()
    seen = np.concatenate([result.observations[: result.lengths[i], i] for i in range(2)])
    np.testing.assert_allclose(result.obs_sum.sum(axis=0), seen.sum(axis=0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(result.obs_sumsq.sum(axis=0), (seen**2).sum(axis=0), rtol=1e-12, atol=1e-12)
    assert result.observations.shape == (result.lengths.max(), 2, ant.obs_dim)


def test_rollout_needs_one_seed_per_instance() -> None:
    batch = sim.make_family("four_corners").make_batch([sim.GoalTask(goal=(1.0, 1.0))] * 2)
    with pytest.raises(ValueError, match="2 instances"):
        sim.rollout(batch, lambda obs: obs, seeds=[0], horizon=5)
    # a point on a plane has no root x: no displacement is made up for it
    assert sim.rollout(batch, lambda obs: obs, seeds=[0, 1], horizon=5).displacement is None
