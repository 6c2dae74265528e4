"""The oracle planner: its predictions are the simulator's own next states, and planning with it moves the robot."""

from __future__ import annotations

import numpy as np
import pytest

from metactl import sim
from metactl.controllers.dynamics import ForwardCost, ObservedSignal
from metactl.controllers.mpc import MPCController
from metactl.controllers.planners import make_planner
from metactl.sim import ChangeTask, DisabledJointTask
from metactl.train.mb_eval import episode_stats
from metactl.train.mb_rollout import Episodes, run_episodes
from metactl.train.oracle import OracleDynamics


@pytest.mark.parametrize("hold", [1, 3])
@pytest.mark.parametrize(
    "task",
    [DisabledJointTask(0), ChangeTask(DisabledJointTask(-1), DisabledJointTask(0), 2)],
    ids=["joint0", "changed"],
)
def test_oracle_predictions_are_the_simulator_itself(hold, task) -> None:
    """Candidate sequences stepped in copies of the true state equal what the episode then really does, bit for
    bit, over the whole horizon (the damaged actuator and the held actions included)."""
    family = sim.make_family("halfcheetah_disabled_joint")
    batch = family.make_batch([task, DisabledJointTask(2)])
    batch.reset([3, 4])
    for a in np.random.default_rng(0).uniform(-1, 1, (4, 2, 6)):
        obs, _, _ = batch.step(a)  # not at the start: the warm start and state are mid-episode
    oracle = OracleDynamics(hold=hold)
    oracle.attach(batch)
    plans = np.random.default_rng(1).uniform(-1.2, 1.2, (2, 5, 4, 6))  # 5 candidates, 4 decisions, some clipped
    predicted = oracle.rollout().sequence(obs, plans)
    chosen = plans[:, 2]  # live out candidate 2
    for h in range(4):
        for _ in range(hold):
            obs, _, _ = batch.step(chosen[:, h])
        np.testing.assert_array_equal(predicted[:, 2, h], obs)


def test_the_oracle_planner_runs_forward() -> None:
    """MPPI on the true dynamics (the default settings) makes the damaged cheetah run: the reference every learned
    model is held against."""
    family = sim.make_family("halfcheetah_disabled_joint")
    planner = make_planner({"name": "mppi", "samples": 30, "horizon": 8, "temperature": 0.1, "noise_std": 0.6},
                           family.action_low, family.action_high)  # fmt: skip
    rng = np.random.default_rng(0)
    controller = MPCController(OracleDynamics(hold=2), planner, ForwardCost(family.observation_names,
                               family.reward_spec), rng, hold=2)  # fmt: skip
    eps = run_episodes(family, family.test_tasks(), [0], 100, rng, controller, hold=2)
    random = run_episodes(family, family.test_tasks(), [0], 100, np.random.default_rng(0), hold=2)
    assert eps.returns()[0] > random.returns()[0] + 20  # 1 s: measured 50.6 vs -4.6 random


def _bounded_oracle_episodes(family, limit: float | None, *, samples: int, steps: int, hold: int) -> Episodes:
    """Three held-out episodes (seeds 0-2) of MPPI on the true dynamics, its posture bounded at ``limit``."""
    planner = make_planner({"name": "mppi", "samples": samples, "horizon": 10, "temperature": 0.1, "noise_std": 0.6},
                           family.action_low, family.action_high)  # fmt: skip
    rng = np.random.default_rng(0)
    cost = ForwardCost(family.observation_names, family.reward_spec | {"posture_limit": limit})
    controller = MPCController(OracleDynamics(hold=hold), planner, cost, rng, hold=hold)
    return run_episodes(family, family.test_tasks() * 3, [0, 1, 2], steps, rng, controller, hold=hold)


def test_a_posture_limit_keeps_the_oracle_upright() -> None:
    """Unbounded, MPPI on the true dynamics flips the cheetah onto its back (the quickest speed within its 0.5 s
    look-ahead); with the torso's pitch bounded at 1 rad in the cost it runs upright, and no slower."""
    family = sim.make_family("halfcheetah_disabled_joint")
    pitch, x, upside_down = {}, {}, {}
    for limit in (None, 1.0):
        eps = _bounded_oracle_episodes(family, limit, samples=50, steps=300, hold=5)
        pitch[limit], x[limit] = np.abs(eps.obs[:, :, 1]).max(axis=1), eps.x[:, -1] - eps.x[:, 0]
        upside_down[limit] = episode_stats(family, family.test_tasks() * 3, eps).upside_down
        np.testing.assert_allclose(upside_down[limit], (np.abs(eps.obs[:, 1:, 1]) > np.pi / 2).mean(axis=1))
    assert (pitch[None] > np.pi / 2).any()  # measured: 2 of 3 episodes flip, max |pitch| 3.56 / 1.42 / 3.44
    assert (pitch[1.0] < 1.25).all()  # measured 0.67 / 0.86 / 0.91
    assert x[1.0].mean() > 0.9 * x[None].mean()  # measured 6.2 vs 5.5 m in 3 s
    assert (upside_down[1.0] == 0).all() and upside_down[None].max() > 0.3  # measured 0.78 / 0 / 0.76


def test_a_tilt_limit_keeps_the_oracle_ant_on_its_feet() -> None:
    """The Ant's posture is its torso's tilt from upright ('tilt:root'): unbounded, the oracle tumbles the crippled
    Ant onto its back within 3 s; with the tilt bounded at 0.5 rad in the cost it stays on its feet and still runs."""
    family = sim.make_family("ant_crippled_leg")
    tasks = family.test_tasks() * 3
    tilt, upside_down, x = {}, {}, {}
    for limit in (None, 0.5):
        eps = _bounded_oracle_episodes(family, limit, samples=20, steps=60, hold=1)
        tilt[limit] = ObservedSignal(family.observation_names, "tilt:root")(eps.obs[:, 1:])
        upside_down[limit] = episode_stats(family, tasks, eps).upside_down
        np.testing.assert_allclose(upside_down[limit], (tilt[limit] > np.pi / 2).mean(axis=1))
        x[limit] = eps.x[:, -1] - eps.x[:, 0]
    assert (tilt[None].max(axis=1) > np.pi / 2).sum() >= 2  # measured max tilt 2.97 / 2.91 / 2.42
    assert (upside_down[0.5] == 0).all() and (tilt[0.5] < 0.7).all()  # measured max 0.45 / 0.46 / 0.47
    assert (x[0.5] > 5.0).all()  # measured 10.2 / 9.9 / 8.9 m in 3 s (unbounded, tumbling: 6.3 / 9.9 / 12.7)
