"""RL² on the robot (Duan et al. 2016): the exported GRU step equals torch's, the metadata is validated, the state
carries over a trial's episodes (and the reset ablation forgets it), over the simulated robot, the serial
emulator and the command line."""

from __future__ import annotations

import copy
import dataclasses
import json
import os

import numpy as np
import pytest
import torch
from conftest import CONFIG_DIR

from metactl.deploy import BundleError, load_hardware_config, run_online
from metactl.deploy import metadata as md
from metactl.deploy.bundles import load_bundle
from metactl.deploy.rl2_bundle import RL2Bundle, RL2Controller
from metactl.deploy.rl2_export import export_rl2_bundle
from metactl.deploy.session import RobotSession
from metactl.train.rl2 import train_rl2
from metactl.train.rl2_config import RL2Config
from metactl.train.rl2_policy import policy_input

torch.set_num_threads(1)
SIM = os.path.join(CONFIG_DIR, "sim_halfcheetah_fb.toml")
TINY = RL2Config(family="halfcheetah_fb", episodes=2, episode_len=20, iterations=1, trials=2, minibatches=1,
                 hidden=16, eval_trials=2, lam=0.95)  # fmt: skip


@pytest.fixture(scope="module")
def rl2_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """(run folder, exported bundle) of a one-iteration HalfCheetah forward-backward RL² run, 20-step episodes."""
    run = str(tmp_path_factory.mktemp("rl2_run"))
    result = train_rl2(TINY, run)
    bundle = export_rl2_bundle(result.model_path, str(tmp_path_factory.mktemp("rl2_bundle")))
    return run, bundle


def test_onnx_gru_step_equals_torch(rl2_run) -> None:
    from metactl.train.rl2 import load_policy

    run, bundle_dir = rl2_run
    policy, _ = load_policy(os.path.join(run, "rl2.npz"))
    bundle = load_bundle(bundle_dir)
    assert isinstance(bundle, RL2Bundle)
    rng = np.random.default_rng(0)
    h, h_torch = np.zeros((1, bundle.hidden), np.float32), policy.initial_state(1)
    for t in range(30):  # the state is carried through both for 30 steps
        obs, act = rng.normal(size=bundle.obs_dim) * 3, rng.uniform(-1, 1, bundle.act_dim)
        reward, done = rng.normal(), float(t % 10 == 0)
        action, h = bundle.step(obs, act, reward, done, h)
        x = policy_input(policy.spec, obs[None], act[None], np.array([reward]), np.array([done]))
        with torch.no_grad():
            head, _, h_torch = policy(torch.as_tensor(x, dtype=torch.float32)[None], h_torch)
        np.testing.assert_allclose(h, h_torch[0].numpy(), atol=1e-5)
        np.testing.assert_allclose(action, np.clip(head[0, 0].numpy(), -1, 1), atol=1e-5)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: m["rl2"].update(hidden=0), "'rl2.hidden' must be an integer"),
        (lambda m: m["rl2"].update(hidden="16"), "'rl2.hidden' must be an integer"),
        (lambda m: m["rl2"].update(episodes_per_trial=-1), "'rl2.episodes_per_trial'"),
        (lambda m: m["rl2"].update(discrete=True), "'rl2.discrete' must be false"),
        (lambda m: m.pop("rl2"), "lacks 'rl2'"),
        (lambda m: m["files"].pop(md.RL2_FILE), "'files' lacks"),
        (lambda m: m.update(bundle_kind="policy"), "holds an ES policy"),
        (lambda m: m.update(horizon=0), "'horizon'"),
    ],
)
def test_metadata_refuses_malformed_fields(rl2_run, edit, message) -> None:
    meta = md.read_metadata_json(rl2_run[1])
    assert isinstance(md.parse_metadata(meta, "b"), md.RL2Metadata)
    bad = copy.deepcopy(meta)
    edit(bad)
    with pytest.raises(BundleError, match=message):
        md.guarded(md.RL2Metadata.parse, bad, "b")


def test_the_state_persists_across_episodes_on_the_robot(rl2_run) -> None:
    config = load_hardware_config(SIM)
    carried = run_online(rl2_run[1], config, adaptation_steps=2, seed=3)
    reset = run_online(rl2_run[1], config, adaptation_steps=2, seed=3, mode="rl2_reset")
    assert [e.kind for e in carried.episodes] == ["pre", "post", "post"] and carried.adaptation["name"] == "rl2"
    # The same seed for every episode and a deterministic policy: with the state zeroed every episode is the pre one.
    assert reset.post_adaptation_returns == (reset.pre_adaptation_return,) * 2
    assert carried.pre_adaptation_return == reset.pre_adaptation_return
    # With the state carried over (the adaptation), the later episodes differ.
    assert carried.post_adaptation_returns[0] != carried.pre_adaptation_return
    assert carried.adapted_params.shape == (TINY.hidden,) and np.abs(carried.adapted_params).max() > 0
    again = run_online(rl2_run[1], config, adaptation_steps=2, seed=3)
    assert again.post_adaptation_returns == carried.post_adaptation_returns
    with pytest.raises(BundleError, match="runs as"):
        run_online(rl2_run[1], config, mode="grbal")


def test_the_session_hands_each_reward_to_the_controller_before_it_acts(rl2_run) -> None:
    class Recording(RL2Controller):
        """Records the reward it holds at every ``act``."""

        def __init__(self, bundle: RL2Bundle) -> None:
            super().__init__(bundle)
            self.seen: list[float] = []

        def act(self, obs: np.ndarray, fresh: bool) -> np.ndarray:
            self.seen.append(self.prev_reward)
            return super().act(obs, fresh)

    config = load_hardware_config(SIM)
    logged: list[float] = []

    def log_fn(topic: str, record: dict, t_ns: int | None = None) -> None:
        if topic == "/state":
            logged.append(float(record["reward"]))

    controller = Recording(RL2Bundle.load(rl2_run[1]))
    controller.new_trial()
    with RobotSession(config, log_fn=log_fn, time_scale=0) as session:
        total, length = session.episode(controller, seed=3, steps=20)
    assert length == 20 and len(controller.seen) == 20
    # the first action knows no reward yet; each later one was given the reward of the step just before it
    assert controller.seen[0] == 0.0 and controller.seen[1:] == logged[:19]
    assert total == pytest.approx(sum(logged)) and any(r != 0.0 for r in logged)
    controller.reset()  # a second episode of the trial: done = 1 on its first step, the state kept
    assert controller.prev_done == 1.0 and np.abs(controller.h).max() > 0
    controller.new_trial()
    assert controller.prev_done == 0.0 and not controller.h.any() and controller.prev_reward == 0.0


def test_over_the_serial_emulator_equals_the_simulated_robot(rl2_run, tmp_path) -> None:
    from metactl.emulator.launcher import emulator_process

    with open(os.path.join(CONFIG_DIR, "serial_halfcheetah_fb.toml")) as f:
        text = f.read().replace("# episode_steps = 200", "episode_steps = 20")
    path = tmp_path / "robot.toml"
    path.write_text(text)
    with emulator_process(str(path), str(tmp_path / "emu")) as emu:
        serial = run_online(rl2_run[1], str(path), port=emu.port, adaptation_steps=1, seed=4, time_scale=20)
    sim = run_online(rl2_run[1], load_hardware_config(SIM), adaptation_steps=1, seed=4)
    assert serial.link["link"] == "serial" and serial.status == "completed"
    got, want = [e.episode_return for e in serial.episodes], [e.episode_return for e in sim.episodes]
    np.testing.assert_allclose(got, want, rtol=1e-5)  # float32 on the wire, as in the graph


def test_cli_exports_an_rl2_run_and_runs_it(rl2_run, tmp_path, capsys) -> None:
    from metactl.cli import main

    out = str(tmp_path / "bundle")
    assert main(["export", "--run", rl2_run[0], "--out", out]) == 0
    with open(os.path.join(out, "summary.json")) as f:
        assert json.load(f)["kind"] == "rl2"
    assert main(["run", "--bundle", out, "--config", SIM, "--out", str(tmp_path / "robot"), "--adapt-steps", "1"]) == 0
    assert "after adaptation step 1" in capsys.readouterr().out


def test_a_bandit_run_is_not_a_robot_bundle(tmp_path) -> None:
    bandit = dataclasses.replace(TINY, family="bandit", arms=3, episode_len=10, hidden=8)
    result = train_rl2(bandit, str(tmp_path / "run"))
    with pytest.raises(BundleError, match="only locomotion runs export"):
        export_rl2_bundle(result.model_path, str(tmp_path / "bundle"))
