"""GrBAL's task families: damage really disables actuators, terrain and pier are what their tasks say, splits and
rewards are the documented ones, and every scene stays finite and deterministic."""

from __future__ import annotations

import json

import numpy as np
import pytest

from metactl import sim
from metactl.controllers.dynamics import ObservedSignal
from metactl.sim.adaptive_locomotion import (
    ANT_REWARD,
    CHEETAH_DOFS,
    CHEETAH_REWARD,
    LEG_ACTUATORS,
    LEG_GEOMS,
    MAX_SLOPE,
    PIER_BLOCKS,
    TERRAIN_COLUMNS,
    TERRAIN_X,
    pier_model,
    terrain_heights,
    terrain_model,
)
from metactl.sim.locomotion import base_model
from metactl.sim.tasks import CrippledLegTask, DisabledJointTask, PierTask, TaskError, TerrainTask

GRBAL = ("halfcheetah_disabled_joint", "halfcheetah_slope", "halfcheetah_pier", "ant_crippled_leg")


def _run(family, task, actions: np.ndarray, seed: int = 0) -> np.ndarray:
    """Observations [T + 1, obs_dim] of one instance driven open loop by ``actions`` [T, act_dim]."""
    batch = family.make_batch([task])
    obs = [batch.reset([seed])[0]]
    for a in actions:
        obs.append(batch.step(a[None])[0][0])
    return np.array(obs)


def _random_rollout(name: str, tasks: list, steps: int, seed: int = 0) -> tuple[sim.BatchSim, np.ndarray]:
    family = sim.make_family(name)
    batch = family.make_batch(tasks)
    obs = [batch.reset(range(len(tasks)))]
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        obs.append(batch.step(rng.uniform(-1, 1, size=(len(tasks), family.act_dim)))[0])
    return batch, np.array(obs)


@pytest.mark.parametrize(
    ("name", "task", "dead", "alive"),
    [
        ("halfcheetah_disabled_joint", DisabledJointTask(joint=0), [0], 1),
        ("halfcheetah_disabled_joint", DisabledJointTask(joint=3), [3], 0),
        ("ant_crippled_leg", CrippledLegTask(leg=3), list(LEG_ACTUATORS[3]), 2),
        ("ant_crippled_leg", CrippledLegTask(leg=1), list(LEG_ACTUATORS[1]), 6),
    ],
)
def test_a_disabled_actuator_has_no_effect_and_the_others_do(name, task, dead, alive) -> None:
    family = sim.make_family(name)
    actions = np.random.default_rng(0).uniform(-1, 1, size=(30, family.act_dim))
    changed_dead, changed_alive = actions.copy(), actions.copy()
    changed_dead[:, dead] = -changed_dead[:, dead]
    changed_alive[:, alive] = -changed_alive[:, alive]
    base = _run(family, task, actions)
    np.testing.assert_array_equal(_run(family, task, changed_dead), base)
    assert np.abs(_run(family, task, changed_alive) - base).max() > 1e-3


def test_ant_legs_are_the_documented_actuator_pairs() -> None:
    names = sim.make_family("ant_crippled_leg").action_names
    legs = [tuple(names[i] for i in pair) for pair in LEG_ACTUATORS]
    # The reference code's numbering: leg 3 (test) is the right back leg, actions 0-1.
    assert legs == [("hip_1", "ankle_1"), ("hip_2", "ankle_2"), ("hip_3", "ankle_3"), ("hip_4", "ankle_4")]


@pytest.mark.parametrize("leg", [0, 3])
def test_a_crippled_leg_is_half_size_and_keeps_its_mass(leg: int) -> None:
    family = sim.make_family("ant_crippled_leg")
    whole = base_model("ant.xml")
    model = family.make_batch([CrippledLegTask(leg=leg)]).models[0]
    thigh, foot = (whole.geom(name).id for name in LEG_GEOMS[leg])
    np.testing.assert_allclose(model.geom_size[[thigh, foot], :2], whole.geom_size[[thigh, foot], :2] / 2)
    np.testing.assert_array_equal(model.geom_pos[foot], whole.geom_pos[thigh])
    others = np.setdiff1d(np.arange(whole.ngeom), [thigh, foot])
    np.testing.assert_array_equal(model.geom_size[others], whole.geom_size[others])
    np.testing.assert_array_equal(model.geom_pos[others], whole.geom_pos[others])
    np.testing.assert_array_equal(model.body_mass, whole.body_mass)  # edited after compiling, as the reference
    assert whole.geom(LEG_GEOMS[leg][0]).bodyid[0] == whole.joint(f"hip_{leg + 1}").bodyid[0]


def test_the_control_cost_charges_the_commanded_action_of_a_disabled_joint() -> None:
    family = sim.make_family("halfcheetah_disabled_joint")
    batch = family.make_batch([DisabledJointTask(joint=0)])
    batch.reset([0])
    x0, action = batch.x[0], np.full((1, 6), 0.5)
    _, reward, terminated = batch.step(action)
    # r = v_x - 0.05 |a|^2 with a the command, disabled joint included: |a|^2 = 6 * 0.25 = 1.5, dt = 0.01 s.
    assert reward[0] == pytest.approx((batch.x[0] - x0) / 0.01 - 0.05 * 1.5, abs=1e-12)
    assert not terminated[0]


def test_damage_splits_are_the_documented_ones() -> None:
    rng = np.random.default_rng(1)
    joints = [t.joint for t in sim.make_family("halfcheetah_disabled_joint").sample_tasks(rng, 200)]
    legs = [t.leg for t in sim.make_family("ant_crippled_leg").sample_tasks(rng, 200)]
    # Train: joints 1-5 and legs 0-2, every one drawn (missing one in 200 draws: 5 * 0.8^200 ~ 2e-19).
    assert set(joints) == {1, 2, 3, 4, 5} and set(legs) == {0, 1, 2}
    assert sim.make_family("halfcheetah_disabled_joint").test_tasks() == [DisabledJointTask(joint=0)]
    assert sim.make_family("ant_crippled_leg").test_tasks() == [CrippledLegTask(leg=3)]


@pytest.mark.parametrize(
    ("name", "task"),
    [
        ("halfcheetah_disabled_joint", DisabledJointTask(joint=6)),
        ("halfcheetah_disabled_joint", DisabledJointTask(joint=-2)),  # -1 is the healthy robot; -2 nothing
        ("halfcheetah_disabled_joint", DisabledJointTask(joint=1.0)),  # type: ignore[arg-type]
        ("ant_crippled_leg", CrippledLegTask(leg=4)),
        ("halfcheetah_slope", TerrainTask(ramps=((2.0, 0.0, 0.5),))),
        ("halfcheetah_slope", TerrainTask(ramps=((2.0, 20.0, 4.0),))),  # a 4 m span: more than the field holds
        ("halfcheetah_pier", PierTask(damping=(1.0, 2.0))),
        ("halfcheetah_pier", PierTask(damping=(-1.0,) * PIER_BLOCKS)),
    ],
)
def test_a_malformed_task_is_refused_naming_its_field(name: str, task: sim.Task) -> None:
    with pytest.raises(TaskError, match=f"{type(task).__name__}\\."):
        sim.make_family(name).make_batch([task])


def test_control_periods_horizons_and_reward_specs_follow_the_paper() -> None:
    for name in GRBAL:
        family = sim.make_family(name)
        ant = name.startswith("ant")
        assert family.control_period == pytest.approx(0.05 if ant else 0.01)
        assert family.horizon == (500 if ant else 1000)
        assert family.reward_spec == (ANT_REWARD if ant else CHEETAH_REWARD)
        # The planner's reward description names real observations.
        assert family.reward_spec["velocity_signal"] in family.observation_names
        ObservedSignal(family.observation_names, family.reward_spec["posture_signal"])  # reads real observations
    assert CHEETAH_REWARD == {"velocity_signal": "vel:rootx", "ctrl_cost": 0.05, "alive_bonus": 0.0,
                              "height_signal": None, "height_range": None, "posture_signal": "pos:rooty",
                              "posture_limit": 1.3}  # fmt: skip
    assert ANT_REWARD == {"velocity_signal": "vel:root.vx", "ctrl_cost": 0.005, "alive_bonus": 0.05,
                          "height_signal": None, "height_range": None, "posture_signal": "tilt:root",
                          "posture_limit": None}  # fmt: skip


def test_the_crippled_ant_reward_is_ant_fb_forward_and_never_ends_an_episode() -> None:
    """As the reference code (done = False): a fallen Ant earns nothing but the episode keeps its 500 steps."""
    crippled, fb = sim.make_family("ant_crippled_leg"), sim.make_family("ant_fb")
    rng = np.random.default_rng(0)
    vx, actions, obs = rng.normal(size=4), rng.uniform(-1, 1, (4, 8)), rng.normal(size=(4, 27))
    obs[:, 0] = [0.1, 0.5, 0.9, 1.1]
    reward, terminated = crippled.reward(vx, actions, obs, np.ones(4))
    expected = fb.reward(vx, actions, obs, np.ones(4))  # direction +1: v_x - 0.005 |a|^2 + 0.05
    np.testing.assert_array_equal(reward, expected[0])
    assert not terminated.any() and expected[1].any()  # ant_fb (the ES family) still ends on a fall


@pytest.mark.parametrize("name", GRBAL)
def test_rollouts_are_deterministic_given_the_seeds(name: str) -> None:
    tasks = sim.make_family(name).test_tasks()[:2]
    _, a = _random_rollout(name, tasks, 40)
    _, b = _random_rollout(name, tasks, 40)
    _, c = _random_rollout(name, tasks, 40, seed=1)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("name", GRBAL)
def test_tasks_survive_a_json_round_trip(name: str) -> None:
    family = sim.make_family(name)
    for task in family.test_tasks() + family.sample_tasks(np.random.default_rng(0), 3):
        assert sim.task_from_dict(json.loads(json.dumps(task.to_dict()))) == task


@pytest.mark.parametrize("name", ["halfcheetah_slope", "halfcheetah_pier"])
def test_a_random_action_episode_stays_finite_and_stable(name: str) -> None:
    family = sim.make_family(name)
    tasks = family.test_tasks() + family.sample_tasks(np.random.default_rng(2), 2)
    batch, obs = _random_rollout(name, tasks, 300)
    assert np.isfinite(obs).all()
    np.testing.assert_array_equal(batch.warnings(), 0)  # MuJoCo warns (bad qacc, contact overflow, ...)


@pytest.mark.parametrize("name", ["halfcheetah_slope", "halfcheetah_pier"])
def test_the_scene_keeps_gymnasiums_cheetah(name: str) -> None:
    family, cheetah = sim.make_family(name), base_model("half_cheetah.xml")
    model = family.make_batch(family.test_tasks()[:1]).models[0]
    n = cheetah.nbody
    np.testing.assert_array_equal(model.body_mass[:n], cheetah.body_mass)  # 14 kg, the asset's settotalmass
    np.testing.assert_array_equal(model.body_inertia[:n], cheetah.body_inertia)
    assert family.observation_names == sim.make_family("halfcheetah_fb").observation_names
    assert model.opt.timestep == 0.01


def test_the_height_field_is_the_task_profile() -> None:
    x = np.linspace(*TERRAIN_X, TERRAIN_COLUMNS)
    family = sim.make_family("halfcheetah_slope")
    for task in family.test_tasks() + family.sample_tasks(np.random.default_rng(3), 5):
        model = terrain_model(task.ramps)
        floor = model.geom("floor").id
        surface = model.geom_pos[floor, 2] + model.hfield_data[:TERRAIN_COLUMNS] * model.hfield_size[0, 2]
        np.testing.assert_allclose(surface, terrain_heights(task.ramps, x), atol=1e-5)
    # hill = up 0.6 m over x in [2, 5], back down over [5, 8]
    np.testing.assert_allclose(terrain_heights(((2, 3, 0.6), (5, 3, -0.6)), np.array([0, 3.5, 5, 6.5, 10])),
                               [0, 0.3, 0.6, 0.3, 0])  # fmt: skip


def test_the_cheetah_stands_on_each_test_profile_at_its_height() -> None:
    """Dropped at x = 6.5 m, where the four test profiles differ, the cheetah settles on the ground there."""
    family = sim.make_family("halfcheetah_slope")
    tasks = [TerrainTask(ramps=()), *family.test_tasks()]
    x = 6.5
    heights = np.array([terrain_heights(t.ramps, np.array([x]))[0] for t in tasks])
    # flat 0; gentle 0.5 * 4.5 / 10; steep 2.0 * 4.5 / 10; hill 0.6 - 0.6 * 1.5 / 3; basin -(hill)
    np.testing.assert_allclose(heights, [0.0, 0.225, 0.9, 0.3, -0.3])
    batch = family.make_batch(tasks)
    batch.reset([0] * len(tasks))
    batch.qpos[:, 0] = x
    batch.qpos[:, 1] += heights
    batch.forward()
    for _ in range(100):  # 1 s, motors off
        batch.step(np.zeros((len(tasks), 6)))
    rootz = batch.qpos[:, 1].copy()
    # Above the ground by what it stands on flat ground (measured within 0.05 m: the slope tilts the body).
    np.testing.assert_allclose(rootz - heights, rootz[0], atol=0.06)


def test_random_terrain_follows_the_documented_distribution() -> None:
    x = np.linspace(0.0, 40.0, 4001)
    for task in sim.make_family("halfcheetah_slope").sample_tasks(np.random.default_rng(2), 100):
        ramps = np.array(task.ramps)
        assert task.name == "random" and 3 <= len(ramps) <= 5
        assert 2.0 <= ramps[0, 0] <= 3.0 and ramps[0, 2] > 0  # starts on flat ground, going up
        np.testing.assert_allclose(ramps[1:, 0], ramps[:-1, 0] + ramps[:-1, 1], atol=1e-9)  # end to end
        assert np.all(ramps[:, 1] >= 2.0) and np.all(np.abs(ramps[:, 2]) / ramps[:, 1] <= MAX_SLOPE + 1e-9)
        h = terrain_heights(task.ramps, x)
        assert 0.2 - 3e-3 <= h.max() - h.min() <= 1.0 + 3e-3  # span U[0.2, 1.0] m, up to rounding to mm


def test_pier_damping_changes_the_dynamics_and_only_the_cheetah_is_randomized() -> None:
    family = sim.make_family("halfcheetah_pier")
    assert family.obs_dim == 17
    bouncy, calm, alternating = family.test_tasks()
    np.testing.assert_array_equal(pier_model(calm.damping).dof_damping[CHEETAH_DOFS[1] :], [9.5] * PIER_BLOCKS)
    np.testing.assert_array_equal(pier_model(alternating.damping).dof_damping[CHEETAH_DOFS[1] :: 2], 0.5)
    actions = np.random.default_rng(3).uniform(-1, 1, size=(100, 6))
    a, b = _run(family, bouncy, actions), _run(family, calm, actions)
    np.testing.assert_array_equal(a[0], b[0])
    assert np.abs(a - b).max() > 1e-2
    batch = family.make_batch([bouncy])
    batch.reset([7])
    np.testing.assert_array_equal(batch.qpos[0, CHEETAH_DOFS[0] :], 0.0)  # blocks start at rest
    for _ in range(100):
        batch.step(np.zeros((1, 6)))
    # Block 7 (x in [12, 14] m) carries nothing: its spring holds it flush with the shore (within a mm).
    assert abs(batch.qpos[0, CHEETAH_DOFS[0] + 7]) < 1e-3


def test_pier_training_damping_is_uniform_on_0_10() -> None:
    tasks = sim.make_family("halfcheetah_pier").sample_tasks(np.random.default_rng(4), 50)
    damping = np.array([t.damping for t in tasks])
    assert damping.shape == (50, PIER_BLOCKS) and {t.name for t in tasks} == {"random"}
    assert damping.min() >= 0.0 and damping.max() <= 10.0 and len(np.unique(damping)) > 400
