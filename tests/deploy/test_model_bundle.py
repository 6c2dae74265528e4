"""Model bundles (GrBAL / ReBAL / MB): exported graphs vs torch, the robot controller vs the training one,
the runtime on a simulated robot, and clear errors for the wrong bundle or robot."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
import torch

from metactl.controllers.dynamics import UNHEALTHY_COST, ForwardCost
from metactl.controllers.mpc import MPCController
from metactl.controllers.planners import make_planner
from metactl.controllers.serialization import load_dynamics_model
from metactl.deploy import PolicyBundle, load_hardware_config, run_online
from metactl.deploy.errors import BundleError
from metactl.deploy.model_bundle import ModelBundle
from metactl.deploy.model_export import export_model_bundle
from metactl.train import dynamics_model as dm
from metactl.train.torch_online import TorchOnlineModel

CONFIG_DIR = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "hardware_configs"
)
REL = 1e-5


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    """Largest error relative to the reference's largest magnitude."""
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-12))


def _data(spec, n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(n, spec.obs_dim)).astype(np.float32)
    act = rng.uniform(-1, 1, size=(n, spec.act_dim)).astype(np.float32)
    nxt = (obs + 0.05 * rng.normal(size=obs.shape)).astype(np.float32)
    return obs, act, nxt


@pytest.mark.parametrize("method", ["grbal", "mb"])
def test_exported_adaptation_step_matches_torch_autograd(mb_models, mb_bundles, method) -> None:
    spec, params, stats, extra = load_dynamics_model(mb_models[method])
    bundle = ModelBundle.load(mb_bundles[method])
    obs, act, nxt = _data(spec, 16)
    outs = bundle.sessions["adapt.onnx"].run(None, {"w_obs": obs, "w_act": act, "w_next": nxt})
    tp, ts = dm.from_numpy(params), dm.TorchStats(stats)
    ref = dm.adapt_step(tp, ts, *(torch.tensor(x) for x in (obs, act, nxt)), float(extra["inner_lr"]))
    for got, want, theta in zip(outs, ref, params, strict=True):
        assert _rel(got, want.numpy()) < REL  # theta'
        assert _rel(theta - got, theta - want.numpy()) < 1e-4  # the step itself, lr * grad (float32 sums)
    # lr is an overridable input: lr = 0 gives back the trained weights exactly.
    feed = {"w_obs": obs, "w_act": act, "w_next": nxt, "lr": np.array(0.0, dtype=np.float32)}
    zero = bundle.sessions["adapt.onnx"].run(None, feed)
    for got, theta in zip(zero, params, strict=True):
        np.testing.assert_array_equal(got, theta)


def test_exported_dynamics_and_recurrent_step_match_torch(mb_models, mb_bundles) -> None:
    for method in ("grbal", "rebal"):
        spec, params, stats, _ = load_dynamics_model(mb_models[method])
        sessions = ModelBundle.load(mb_bundles[method]).sessions
        tp, ts = dm.from_numpy(params), dm.TorchStats(stats)
        obs, act, _ = _data(spec, 64, seed=1)
        feed = {"obs": obs, "act": act}
        names = ["next_obs"]
        with torch.no_grad():
            if method == "rebal":  # one state per row, as a planner's candidates carry
                h = np.random.default_rng(2).normal(scale=0.3, size=(64, spec.rnn_hidden)).astype(np.float32)
                c = np.random.default_rng(3).normal(scale=0.3, size=(64, spec.rnn_hidden)).astype(np.float32)
                feed |= {"h": h, "c": c}
                names += ["h_next", "c_next"]
                want = dm.predict_recurrent(tp, ts, torch.tensor(obs), torch.tensor(act), torch.tensor(h),
                                            torch.tensor(c))  # fmt: skip
                step = sessions["recurrent_step.onnx"].run(["h_next", "c_next"], feed)
                for got, ref in zip(step, want[1:], strict=True):
                    assert _rel(got, ref.numpy()) < REL
            else:
                want = (dm.predict(tp, ts, torch.tensor(obs), torch.tensor(act)),)
        got = sessions["dynamics.onnx"].run(names, feed)
        for g, w in zip(got, want, strict=True):
            assert _rel(g, w.numpy()) < REL


def test_the_robot_plans_with_the_runs_posture_limit(mb_bundles) -> None:
    """The bound a run trained with travels in the bundle's reward_spec, and the robot's cost applies it."""
    bundle = ModelBundle.load(mb_bundles["rebal"])
    assert bundle.meta.reward_spec["posture_limit"] == 1.0
    cost = bundle.controller(seed=0).mpc.cost
    pitch = bundle.meta.observation_names.index(bundle.meta.reward_spec["posture_signal"])
    nxt = np.zeros((2, len(bundle.meta.observation_names)))
    nxt[1, pitch] = 1.2
    act = np.zeros((2, len(bundle.meta.action_names)))
    assert cost(nxt, act, nxt)[1] - cost(nxt, act, nxt)[0] == UNHEALTHY_COST


@pytest.mark.parametrize("mode", ["grbal", "rebal", "mb", "mb_de"])
def test_robot_controller_plans_like_the_training_controller(mb_models, mb_bundles, mode) -> None:
    """Same seed, same transitions: the ONNX controller and the torch one choose the same actions."""
    method = "mb" if mode in ("mb", "mb_de") else mode
    spec, params, stats, extra = load_dynamics_model(mb_models[method])
    bundle = ModelBundle.load(mb_bundles[method])
    robot = bundle.controller(seed=5, mode=mode)
    planner = make_planner(extra["planner"], np.asarray(extra["action_low"]), np.asarray(extra["action_high"]))
    torch_model = TorchOnlineModel(mode, spec, params, stats, 1, extra["window"], extra["inner_lr"])
    cost = ForwardCost(extra["observation_names"], extra["reward_spec"])
    train_side = MPCController(torch_model, planner, cost, np.random.default_rng(5))
    robot.reset()
    train_side.reset()
    from metactl.sim import make_family

    family = make_family(extra["family"])
    sim = family.make_batch(family.test_tasks()[:1])
    obs = sim.reset([3])[0]
    for _ in range(25):
        a_robot = robot.act(obs, True)
        a_train = train_side.act(obs[None])[0]
        np.testing.assert_allclose(a_robot, a_train, rtol=1e-4, atol=1e-4)
        robot.applied(a_train)
        train_side.applied(a_train[None])
        obs = sim.step(a_train[None])[0][0]


def test_the_robot_refuses_an_adaptation_step_that_is_not_finite(mb_bundles) -> None:
    """A window the float32 graph overflows on (a glitching sensor) must not leave NaN weights on the robot."""
    robot = ModelBundle.load(mb_bundles["mb"]).controller(seed=0, mode="mb_de")
    model = robot.mpc.model
    robot.reset()
    dim, act = model.spec.obs_dim, model.spec.act_dim
    model.observe(np.full((1, dim), 1e30), np.zeros((1, act)), np.full((1, dim), -1e30))
    model.adapt()
    assert model.refused == 1 and model.weights is None  # still the trained weights
    a = robot.act(np.zeros(dim), True)
    assert np.all(np.isfinite(a))


def _sim_config(short_config):
    """The shipped simulated damaged cheetah with 30-step episodes."""
    return load_hardware_config(short_config("sim_halfcheetah_disabled_joint.toml", 30))


def test_runtime_runs_a_model_bundle_on_the_simulated_robot(mb_bundles, tmp_path, short_config) -> None:
    config = _sim_config(short_config)
    report = run_online(mb_bundles["grbal"], config, seed=2, out_dir=str(tmp_path / "out"), adaptation_steps=2)
    assert report.status == "completed"
    kinds = [e.kind for e in report.episodes]
    assert kinds == ["pre", "post", "post"]
    assert report.episodes[0].length == config.control.episode_steps
    # The same seeds again: the same returns (planner noise and episodes are seeded).
    again = run_online(mb_bundles["grbal"], config, seed=2, adaptation_steps=2)
    assert [e.episode_return for e in again.episodes] == [e.episode_return for e in report.episodes]
    summary = json.load(open(tmp_path / "out" / "summary.json"))
    assert summary["adaptation"]["method"] == "grbal"
    assert os.path.getsize(tmp_path / "out" / "run.mcap") > 0


def test_the_wrong_kind_of_bundle_is_refused_with_a_clear_error(mb_bundles, fc_bundle, tmp_path, short_config) -> None:
    with pytest.raises(BundleError, match=r"holds a dynamics model .*, but this needs an ES policy"):
        PolicyBundle.load(mb_bundles["grbal"])
    with pytest.raises(BundleError, match=r"holds an ES policy, but this needs a dynamics model"):
        ModelBundle.load(fc_bundle)
    with pytest.raises(BundleError, match="runs as"):
        ModelBundle.load(mb_bundles["grbal"]).controller(0, mode="rebal")
    config = _sim_config(short_config)
    with pytest.raises(BundleError, match="--mode applies to model bundles only"):
        run_online(fc_bundle, config, mode="grbal")


def test_a_model_for_another_robot_is_refused_before_it_moves(mb_bundles) -> None:
    ant = load_hardware_config(os.path.join(CONFIG_DIR, "sim_ant_fb.toml"))
    with pytest.raises(BundleError, match=r"observations but .* lists"):
        run_online(mb_bundles["grbal"], ant)


def test_a_tampered_graph_or_metadata_is_named(mb_bundles, tmp_path) -> None:
    broken = str(tmp_path / "b")
    shutil.copytree(mb_bundles["rebal"], broken)
    with open(os.path.join(broken, "recurrent_step.onnx"), "ab") as f:
        f.write(b"x")
    with pytest.raises(BundleError, match=r"recurrent_step\.onnx has sha256 .* but metadata.json expects"):
        ModelBundle.load(broken)
    meta_path = os.path.join(broken, "metadata.json")
    meta = json.load(open(meta_path))
    meta["dynamics"]["obs_dim"] = 5
    json.dump(meta, open(meta_path, "w"))
    with pytest.raises(BundleError, match=r"dynamics. sizes disagree with observation_names"):
        ModelBundle.load(broken)


def test_a_rebal_model_of_the_earlier_layout_is_refused_with_a_clear_error(mb_models, tmp_path) -> None:
    """The first ReBAL's LSTM also read the observed delta (a wider input weight): export names the mismatch."""
    with np.load(mb_models["rebal"]) as f:
        arrays = {k: f[k] for k in f.files}
    w_z = arrays["param_000"]
    arrays["param_000"] = np.zeros((w_z.shape[0] + 17, w_z.shape[1]), np.float32)  # + the delta's 17 signals
    old = str(tmp_path / "old_rebal.npz")
    np.savez(old, **arrays)
    with pytest.raises(BundleError, match=r"old_rebal\.npz: parameter shapes .* re-train it with this metactl"):
        export_model_bundle(old, str(tmp_path / "bundle"))


def test_grbal_over_the_serial_link_equals_the_in_process_robot(mb_bundles, tmp_path, short_config) -> None:
    """The emulator (its own process, a pty) plays the damaged cheetah; the host adapts and plans every step."""
    from metactl.emulator.launcher import emulator_process

    with open(os.path.join(CONFIG_DIR, "serial_halfcheetah_disabled_joint.toml")) as f:
        text = f.read().replace("# episode_steps = 1000", "episode_steps = 30")
    serial = tmp_path / "robot.toml"
    serial.write_text(text)
    sim_config = _sim_config(short_config)
    with emulator_process(str(serial), str(tmp_path / "emu")) as emu:
        over_serial = run_online(mb_bundles["grbal"], str(serial), port=emu.port, seed=3, time_scale=5)
    in_process = run_online(mb_bundles["grbal"], sim_config, seed=3)
    assert over_serial.link["link"] == "serial" and over_serial.status == "completed"
    assert over_serial.health["link_counters"]["bad_frames"] == 0
    got = [e.episode_return for e in over_serial.episodes]
    np.testing.assert_allclose(got, [e.episode_return for e in in_process.episodes], rtol=1e-5)
