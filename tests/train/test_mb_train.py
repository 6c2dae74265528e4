"""Model-based training runs (GrBAL, ReBAL, MB): outputs, determinism, exact resume, config errors."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from metactl.controllers.serialization import load_dynamics_model
from metactl.sim import make_family
from metactl.train.config import ConfigError
from metactl.train.mb_config import MBConfig
from metactl.train.mb_rollout import Episodes
from metactl.train.mb_train import Dataset, train_model_based

TINY = {"family": "halfcheetah_disabled_joint", "iterations": 3, "rollouts": 2, "episode_steps": 40, "train_steps": 15,
        "samples": 12, "planning_horizon": 3, "eval_every": 2, "eval_steps": 10}  # fmt: skip


def _params(path: str) -> list[np.ndarray]:
    return load_dynamics_model(path)[1]


@pytest.mark.parametrize("method", ["grbal", "rebal", "mb"])
def test_a_run_writes_its_model_curve_metrics_and_summary(tmp_path, method) -> None:
    result = train_model_based(MBConfig(method=method, **TINY), str(tmp_path), progress=False)
    for name in ("model.npz", "curve.png", "metrics.csv", "summary.json", "config.json"):
        assert os.path.getsize(tmp_path / name) > 0
    s = result.summary
    assert s["env_steps"] == 3 * 2 * 40  # iterations x rollouts x steps (no early termination for the cheetah)
    assert set(s["heldout_returns"]) == {"joint=0"}
    rows = (tmp_path / "metrics.csv").read_text().splitlines()
    assert len(rows) == 4 and rows[1].split(",")[3] == "1"  # header + 3 iterations; the first used random actions
    spec, _, _, extra = load_dynamics_model(result.model_path)
    assert spec.kind == ("recurrent" if method == "rebal" else "mlp") and extra["method"] == method
    loss = [step for tag, step, _ in tensorboard_scalars(str(tmp_path / "tb")) if tag == "model_loss"]
    assert loss == [80, 160, 240]  # one point per iteration, by environment step


def tensorboard_scalars(directory: str) -> list[tuple[str, int, float]]:
    """(tag, step, value) of every scalar in the TensorBoard event files of ``directory`` (TFRecord framing:
    length u64, its CRC u32, the Event protobuf, its CRC u32)."""
    import struct

    from tensorboardX.proto.event_pb2 import Event

    out = []
    for name in sorted(os.listdir(directory)):
        data, pos = open(os.path.join(directory, name), "rb").read(), 0
        while pos < len(data):
            (n,) = struct.unpack_from("<Q", data, pos)
            event = Event.FromString(data[pos + 12 : pos + 12 + n])
            pos += 12 + n + 4
            out += [(v.tag, event.step, v.simple_value) for v in event.summary.value]
    return out


def test_same_seed_same_model_and_a_killed_run_resumes_exactly(tmp_path) -> None:
    config = MBConfig(method="grbal", **TINY)
    straight = train_model_based(config, str(tmp_path / "a"), progress=False)
    again = train_model_based(config, str(tmp_path / "b"), progress=False)
    for p, q in zip(_params(straight.model_path), _params(again.model_path), strict=True):
        np.testing.assert_array_equal(p, q)
    # "Killed" after 2 iterations (its checkpoint and data are what a kill leaves behind), then resumed to 3.
    train_model_based(config.replace(iterations=2), str(tmp_path / "c"), progress=False)
    resumed = train_model_based(config, str(tmp_path / "c"), resume=True, progress=False)
    for p, q in zip(_params(straight.model_path), _params(resumed.model_path), strict=True):
        np.testing.assert_array_equal(p, q)
    assert resumed.summary["env_steps"] == straight.summary["env_steps"]
    metrics = (tmp_path / "c" / "metrics.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in metrics[1:]] == ["1", "2", "3"]


def test_oracle_episodes_join_the_data_from_the_second_iteration_and_a_resume_reloads_them(tmp_path) -> None:
    config = MBConfig(method="rebal", **TINY | {"oracle_rollouts": 1, "eval_every": 0})
    straight = train_model_based(config, str(tmp_path / "a"), progress=False)
    assert straight.summary["env_steps"] == 3 * 2 * 40 + 2 * 1 * 40  # + one oracle episode in iterations 2 and 3
    data = sorted(os.listdir(tmp_path / "a" / "data"))
    assert data == ["iter_0000.npz", "iter_0001.npz", "iter_0001_oracle.npz", "iter_0002.npz", "iter_0002_oracle.npz"]
    assert np.load(tmp_path / "a" / "data" / "iter_0001_oracle.npz")["obs"].shape == (1, 41, 17)
    train_model_based(config.replace(iterations=2), str(tmp_path / "b"), progress=False)
    resumed = train_model_based(config, str(tmp_path / "b"), resume=True, progress=False)
    for p, q in zip(_params(straight.model_path), _params(resumed.model_path), strict=True):
        np.testing.assert_array_equal(p, q)


def test_resume_refuses_another_config(tmp_path) -> None:
    train_model_based(MBConfig(method="mb", **TINY | {"iterations": 1}), str(tmp_path), progress=False)
    with pytest.raises(ConfigError, match="another config"):
        train_model_based(MBConfig(method="mb", **TINY | {"window": 8}), str(tmp_path), resume=True, progress=False)


def test_window_defaults_per_method_and_is_recorded_resolved() -> None:
    assert [MBConfig(method=m).window for m in ("grbal", "rebal", "mb")] == [16, 8, 16]
    assert MBConfig(method="rebal", window=16).window == 16
    saved = MBConfig(method="rebal").to_dict()
    assert saved["window"] == 8 and MBConfig.from_dict(saved) == MBConfig(method="rebal")


@pytest.mark.parametrize(
    "changes, match",
    [
        ({"method": "maml"}, "method"),
        ({"family": "four_corners"}, "reward_spec"),
        ({"window": -1}, "window"),
        ({"inner_lr": -1.0}, "inner_lr"),
        ({"planner": "ilqr"}, "planner"),
        ({"first_order": "yes"}, "first_order"),
        ({"posture_limit": -1.0}, "posture_limit"),
    ],
)
def test_bad_settings_name_the_field(changes, match) -> None:
    with pytest.raises(ConfigError, match=match):
        MBConfig(**changes)


def test_a_runs_posture_limit_reaches_its_cost_and_its_bundle_metadata() -> None:
    """None keeps the family's spec, 0 removes the bound, a value replaces it; old runs (no key) plan unbounded."""
    from metactl.train.heldout_table import run_reward_spec

    family = make_family("halfcheetah_disabled_joint")
    assert MBConfig().reward_spec(family.reward_spec) == family.reward_spec
    assert MBConfig(posture_limit=1.0).reward_spec(family.reward_spec)["posture_limit"] == 1.0
    assert MBConfig(posture_limit=0).reward_spec(family.reward_spec)["posture_limit"] is None
    old = {k: v for k, v in family.reward_spec.items() if not k.startswith("posture")}
    assert run_reward_spec(family, old)["posture_limit"] is None
    assert run_reward_spec(family, old, 0.8) == {**family.reward_spec, "posture_limit": 0.8}
    ant = make_family("ant_crippled_leg")  # an Ant run saved before its posture signal: unbounded, as it was trained
    old_ant = {**ant.reward_spec, "posture_signal": None, "posture_limit": None}
    assert run_reward_spec(ant, old_ant)["posture_limit"] is None
    assert run_reward_spec(ant, old_ant, 0.5) == {**ant.reward_spec, "posture_limit": 0.5}
    with pytest.raises(ValueError, match="--posture-limit: must be a number"):
        run_reward_spec(ant, old_ant, -1.0)


def test_windows_never_cross_an_episode_boundary() -> None:
    # Two episodes whose observations encode (episode, step): every window must be one episode's consecutive steps.
    obs = np.zeros((2, 11, 1))
    obs[0, :, 0] = np.arange(11)
    obs[1, :, 0] = 100 + np.arange(11)
    data = Dataset()
    data.add(Episodes(obs, np.zeros((2, 10, 1)), np.zeros((2, 10)), np.array([10, 7])))
    o, _, n = data.windows(np.random.default_rng(0), 200, 5)
    assert np.all(np.diff(o[..., 0], axis=1) == 1) and np.all(n[..., 0] - o[..., 0] == 1)
    assert np.all((o[:, 0, 0] <= 5) | ((o[:, 0, 0] >= 100) & (o[:, 0, 0] <= 102)))  # episode 2 has 7 valid steps
    assert json.dumps(sorted({int(x >= 100) for x in o[:, 0, 0]})) == "[0, 1]"


def test_a_damaged_data_file_makes_resume_fall_back_to_a_checkpoint_that_does_not_need_it(tmp_path) -> None:
    """The newest checkpoint is intact but was trained on a data file that is now damaged: resume names that file,
    falls back to the checkpoint before it, re-collects the iteration, and ends as an uninterrupted run does."""
    config = MBConfig(method="mb", **{**TINY, "eval_every": 0})
    reference = train_model_based(config, str(tmp_path / "reference"), progress=False)
    out = tmp_path / "damaged"
    train_model_based(config, str(out), progress=False)
    (out / "data" / "iter_0002.npz").write_bytes(b"")
    resumed = train_model_based(config, str(out), resume=True, progress=False)
    for a, b in zip(_params(reference.model_path), _params(resumed.model_path), strict=True):
        np.testing.assert_array_equal(a, b)
