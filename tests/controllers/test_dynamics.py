"""The dynamics-model layout, its normalization, the planner cost and the adapt-then-plan controller."""

from __future__ import annotations

import numpy as np
import pytest

from metactl.controllers.dynamics import (
    UNHEALTHY_COST,
    DynamicsError,
    DynamicsSpec,
    DynamicsStats,
    ForwardCost,
    ObservedSignal,
    TransitionWindow,
)
from metactl.controllers.mpc import MPCController
from metactl.controllers.planners import MPPI

NAMES = ("pos:z", "vel:x", "vel:z")


def test_param_shapes_follow_the_documented_order() -> None:
    mlp = DynamicsSpec("mlp", 3, 2, (8, 4))
    assert mlp.param_shapes() == [(5, 8), (8,), (8, 4), (4,), (4, 3), (3,)]
    assert mlp.num_params == 5 * 8 + 8 + 8 * 4 + 4 + 4 * 3 + 3
    rec = DynamicsSpec("recurrent", 3, 2, (8,), rnn_hidden=6)
    # LSTM: x = [obs, act] (3 + 2 = 5) -> 4 gates x 6; the head reads [obs, act, h] = 11.
    assert rec.param_shapes() == [(5, 24), (6, 24), (24,), (11, 8), (8,), (8, 3), (3,)]
    assert DynamicsSpec.from_dict(rec.to_dict()) == rec
    assert mlp.mlp_flops(10) == 2 * 10 * (5 * 8 + 8 * 4 + 4 * 3)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"kind": "gru", "obs_dim": 3, "act_dim": 2}, "unknown"),
        ({"kind": "mlp", "obs_dim": 3, "act_dim": 2, "hidden": (0,)}, ">= 1"),
        ({"kind": "recurrent", "obs_dim": 3, "act_dim": 2}, "rnn_hidden"),
        ({"kind": "mlp", "obs_dim": 3, "act_dim": 2, "rnn_hidden": 4}, "rnn_hidden"),
    ],
)
def test_bad_specs_are_refused(kwargs, match) -> None:
    with pytest.raises(DynamicsError, match=match):
        DynamicsSpec(**kwargs)


def test_stats_normalize_and_floor_a_signal_that_never_moved() -> None:
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(500, 3))
    obs[:, 0] = 2.0  # constant: std 0 -> floored, never a division by zero
    act = rng.uniform(-1, 1, size=(500, 2))
    nxt = obs + 0.1
    stats = DynamicsStats.from_data(obs, act, nxt)
    np.testing.assert_allclose(stats.delta_mean, 0.1)
    assert stats.obs_std[0] > 0 and stats.delta_std.min() > 0
    again = DynamicsStats.from_dict(stats.to_dict())
    np.testing.assert_array_equal(again.obs_std, stats.obs_std)
    bad = stats.to_dict() | {"act_std": [1.0, -1.0]}
    with pytest.raises(DynamicsError, match="positive"):
        DynamicsStats.from_dict(bad)
    with pytest.raises(DynamicsError, match="lack"):
        DynamicsStats.from_dict({"obs_mean": [0.0]})


def test_forward_cost_is_minus_the_reward_and_punishes_unhealthy_heights() -> None:
    spec = {"velocity_signal": "vel:x", "ctrl_cost": 0.05, "alive_bonus": 0.1, "height_signal": "pos:z",
            "height_range": [0.2, 1.0]}  # fmt: skip
    cost = ForwardCost(NAMES, spec)
    nxt = np.array([[0.5, 2.0, 0.0], [1.5, 2.0, 0.0]])  # healthy, then too high
    act = np.array([[1.0, 0.0], [1.0, 0.0]])
    # reward = v + alive - 0.05 |a|^2 = 2 + 0.1 - 0.05 = 2.05
    np.testing.assert_allclose(cost(nxt, act, nxt), [-2.05, -2.05 + UNHEALTHY_COST])
    with pytest.raises(DynamicsError, match="not an observation"):
        ForwardCost(NAMES, spec | {"velocity_signal": "vel:rootx"})


def test_a_posture_limit_makes_predicted_steps_beyond_it_unhealthy() -> None:
    """The bound is symmetric, on the named signal, and absent when the limit is 0 or None."""
    spec = {"velocity_signal": "vel:x", "ctrl_cost": 0.0, "posture_signal": "pos:p", "posture_limit": 1.0}
    names = ("pos:z", "vel:x", "pos:p")
    nxt = np.array([[0.5, 2.0, 0.9], [0.5, 2.0, -1.1], [0.5, 2.0, 1.1]])
    act = np.zeros((3, 2))
    np.testing.assert_allclose(ForwardCost(names, spec)(nxt, act, nxt), [-2.0, -2.0 + UNHEALTHY_COST,
                               -2.0 + UNHEALTHY_COST])  # fmt: skip
    for off in (0, None):
        np.testing.assert_allclose(ForwardCost(names, spec | {"posture_limit": off})(nxt, act, nxt), [-2.0] * 3)
    with pytest.raises(DynamicsError, match="no posture_signal"):
        ForwardCost(names, spec | {"posture_signal": None})
    with pytest.raises(DynamicsError, match="must be > 0"):
        ForwardCost(names, spec | {"posture_limit": -0.5})


def _quat(axis: np.ndarray, angle: float) -> np.ndarray:
    return np.concatenate([[np.cos(angle / 2)], np.sin(angle / 2) * axis / np.linalg.norm(axis)])


def test_tilt_is_the_angle_from_upright_whatever_the_heading() -> None:
    """'tilt:<joint>' reads the free joint's quaternion: yaw does not count, a roll or pitch does, on its back is pi;
    a learned model's non-unit quaternion gives the same angle."""
    names = ("pos:root.z", "pos:root.qw", "pos:root.qx", "pos:root.qy", "pos:root.qz", "vel:root.vx")
    tilt = ObservedSignal(names, "tilt:root")
    quats = [_quat(np.array([0.0, 0.0, 1.0]), 2.0), _quat(np.array([1.0, 0.0, 0.0]), 0.7),
             _quat(np.array([0.0, 1.0, 0.0]), -1.2), _quat(np.array([1.0, 1.0, 0.0]), np.pi),
             3.0 * _quat(np.array([1.0, 0.0, 0.0]), 0.7)]  # fmt: skip
    obs = np.array([[0.5, *q, 1.0] for q in quats])
    np.testing.assert_allclose(tilt(obs), [0.0, 0.7, 1.2, np.pi, 0.7], atol=1e-7)
    np.testing.assert_allclose(tilt(obs[None, :, None]), tilt(obs)[None, :, None])  # any leading shape
    spec = {"velocity_signal": "vel:root.vx", "ctrl_cost": 0.0, "posture_signal": "tilt:root", "posture_limit": 1.0}
    np.testing.assert_allclose(ForwardCost(names, spec)(obs, np.zeros((5, 2)), obs),
                               [-1.0, -1.0, -1.0 + UNHEALTHY_COST, -1.0 + UNHEALTHY_COST, -1.0])  # fmt: skip
    with pytest.raises(DynamicsError, match=r"'tilt:torso' needs the observations \['pos:torso.qw'"):
        ObservedSignal(names, "tilt:torso", "posture_signal")


def test_window_returns_the_last_transitions_oldest_first() -> None:
    w = TransitionWindow(3, 1, 1, 1)
    for k in range(5):
        w.push(np.array([[k]]), np.array([[10 + k]]), np.array([[k + 1]]))
    obs, act, nxt = w.arrays()
    assert obs[0, :, 0].tolist() == [2, 3, 4] and act[0, :, 0].tolist() == [12, 13, 14]
    assert nxt[0, :, 0].tolist() == [3, 4, 5]
    w.clear()
    assert w.arrays()[0].shape == (1, 0, 1)


class LinearModel:
    """An ``OnlineDynamics`` over x' = x + b * a whose gain b is fitted to the observed transitions (least squares):
    the simplest model that adapts, to check what the controller feeds it."""

    def __init__(self) -> None:
        self.gain, self.seen, self.adapts = 0.01, [], 0

    def reset(self) -> None:
        self.gain, self.seen = 0.01, []

    def observe(self, obs, act, next_obs) -> None:
        self.seen.append((obs.copy(), act.copy(), next_obs.copy()))

    def adapt(self) -> None:
        self.adapts += 1
        if self.seen:
            d = np.concatenate([n - o for o, _, n in self.seen]).ravel()
            a = np.concatenate([a for _, a, _ in self.seen]).ravel()
            self.gain = float(d @ a / max(a @ a, 1e-12))

    def rollout(self):
        return lambda obs, act: obs + self.gain * act


def test_mpc_feeds_applied_transitions_adapts_and_reaches_the_goal() -> None:
    # True system: x' = x + 0.2 a; the goal is x = 1. The model starts with gain 0.01 and must learn 0.2.
    model = LinearModel()
    planner = MPPI(-np.ones(1), np.ones(1), 64, 5, temperature=0.01)
    ctrl = MPCController(model, planner, lambda o, a, n: (n[..., 0] - 1.0) ** 2, np.random.default_rng(0))
    ctrl.reset()
    x = np.zeros((1, 1))
    for _ in range(30):
        a = ctrl.act(x)
        applied = 0.5 * a  # the safety layer halves it: the model must see what was applied
        ctrl.applied(applied)
        x = x + 0.2 * applied
    assert model.gain == pytest.approx(0.2)
    assert abs(x[0, 0] - 1.0) < 0.05
    obs, act, nxt = model.seen[0]
    np.testing.assert_allclose(nxt - obs, 0.2 * act)


def test_a_stale_observation_skips_both_transitions_and_adapt_false_freezes_the_model() -> None:
    model = LinearModel()
    ctrl = MPCController(model, MPPI(-np.ones(1), np.ones(1), 8, 2), lambda o, a, n: n[..., 0] ** 2,
                         np.random.default_rng(1))  # fmt: skip
    ctrl.reset()
    ctrl.act(np.zeros((1, 1)))
    ctrl.act(np.zeros((1, 1)), fresh=False)  # the answer was lost: no transition into it
    ctrl.act(np.ones((1, 1)))  # nor out of it
    assert model.seen == []
    ctrl.act(np.full((1, 1), 2.0))
    assert len(model.seen) == 1
    frozen = LinearModel()
    ctrl = MPCController(frozen, MPPI(-np.ones(1), np.ones(1), 8, 2), lambda o, a, n: n[..., 0] ** 2,
                         np.random.default_rng(1), adapt=False)  # fmt: skip
    for k in range(3):
        ctrl.act(np.full((1, 1), float(k)))
    assert frozen.seen == [] and frozen.adapts == 0
