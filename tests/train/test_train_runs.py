"""Whole training runs at a tiny budget: outputs, determinism, episode accounting and resume errors."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from metactl import train
from metactl.controllers import load_policy
from metactl.train.run_log import COLUMNS, read_metrics

TRAINING_COLUMNS = [c for c in COLUMNS if c != "wall_s"]
"""Everything in metrics.csv except the wall-clock time, which differs between runs."""


def params_of(out: str) -> np.ndarray:
    policy, _ = load_policy(os.path.join(out, "policy.npz"))
    return policy.params


def training_rows(out: str) -> list[dict[str, str]]:
    return [{k: r[k] for k in TRAINING_COLUMNS} for r in read_metrics(os.path.join(out, "metrics.csv"))]


def test_a_run_writes_every_output(tiny_run_dir: str, tiny_run: dict[str, Any]) -> None:
    out = tiny_run_dir
    cfg = train.config_for("four_corners", **tiny_run)
    for name in ("policy.npz", "summary.json", "learning_curve.png", "metrics.csv", "config.json"):
        assert os.path.isfile(os.path.join(out, name)), name
    with open(os.path.join(out, "learning_curve.png"), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert any(name.startswith("events.out.tfevents") for name in os.listdir(os.path.join(out, "tb")))
    assert os.listdir(os.path.join(out, "checkpoints")) == ["ckpt_000003.npz"]  # the final one (every 5, and at end)
    with open(os.path.join(out, "config.json")) as f:
        assert json.load(f) == cfg.to_dict()

    with open(os.path.join(out, "summary.json")) as f:
        summary = json.load(f)
    assert set(summary) == {
        "family",
        "meta",
        "seed",
        "iterations",
        "episodes",
        "env_steps",
        "wall_s",
        "heldout_pre_adaptation_return",
        "heldout_post_adaptation_return",
        "heldout_pre_per_task",
        "heldout_post_per_task",
        "policy",
        "learning_curve",
        "versions",
    }
    assert summary["versions"]["metactl"] and summary["versions"]["numpy"] and summary["versions"]["mujoco"]
    assert (summary["family"], summary["meta"], summary["seed"], summary["iterations"]) == ("four_corners", True, 0, 3)
    assert len(summary["heldout_post_per_task"]) == 4  # the four test corners
    assert summary["heldout_post_adaptation_return"] == pytest.approx(np.mean(summary["heldout_post_per_task"]))

    policy, extra = load_policy(summary["policy"])
    assert policy.spec.kind == "linear"
    assert policy.params.shape == (policy.spec.num_params,) == (6,)  # 2 obs -> 2 actions: 4 weights + 2 biases
    assert extra["family"] == "four_corners"
    assert extra["train_config"] == cfg.to_dict()
    assert (extra["observation_names"], extra["action_names"], extra["horizon"]) == (["x", "y"], ["vx", "vy"], 100)

    rows = read_metrics(os.path.join(out, "metrics.csv"))
    assert [int(r["iteration"]) for r in rows] == [1, 2, 3]
    assert all(r["heldout_pre"] and r["heldout_post"] for r in rows)  # eval_every = 1
    # Episodes: 3 iterations x 2 directions x 2 signs x 1 task x (5 adaptation + 1 evaluation) = 72, 100 steps each.
    assert [int(r["episodes"]) for r in rows] == [24, 48, 72]
    assert summary["episodes"] == 72
    assert summary["env_steps"] == 7200


def test_same_seed_gives_bit_identical_runs(tiny_run_dir: str, tiny_run: dict[str, Any], tmp_path: Path) -> None:
    again = str(tmp_path / "again")
    train.train(train.config_for("four_corners", **tiny_run), again, progress=False)
    np.testing.assert_array_equal(params_of(again), params_of(tiny_run_dir))
    assert training_rows(again) == training_rows(tiny_run_dir)
    # The run really moved away from the zero initialization.
    assert np.abs(params_of(again)).max() > 0


def test_different_seed_gives_different_params(tiny_run_dir: str, tiny_run: dict[str, Any], tmp_path: Path) -> None:
    other = str(tmp_path / "seed1")
    train.train(train.config_for("four_corners", **tiny_run, seed=1), other, progress=False)
    assert not np.array_equal(params_of(other), params_of(tiny_run_dir))


def test_baseline_spends_the_same_episodes_per_iteration(
    tiny_run_dir: str, tiny_run: dict[str, Any], tmp_path: Path
) -> None:
    baseline = train.train(train.config_for("four_corners", **tiny_run, meta=False), str(tmp_path), progress=False)
    with open(os.path.join(tiny_run_dir, "summary.json")) as f:
        meta = json.load(f)
    assert baseline.summary["meta"] is False
    # ES-MAML: 1 task x 6 episodes per perturbation; baseline: 6 tasks x 1 episode per perturbation.
    assert baseline.summary["episodes"] == meta["episodes"] == 72
    assert baseline.summary["env_steps"] == meta["env_steps"]
    assert [r["episodes"] for r in training_rows(str(tmp_path))] == [r["episodes"] for r in training_rows(tiny_run_dir)]


def test_resume_without_a_checkpoint_is_a_config_error(tiny_run: dict[str, Any], tmp_path: Path) -> None:
    with pytest.raises(train.ConfigError, match="no checkpoint"):
        train.train(train.config_for("four_corners", **tiny_run), str(tmp_path), resume=True, progress=False)


def test_resume_with_changed_settings_is_a_config_error(tiny_run_dir: str, tiny_run: dict[str, Any]) -> None:
    changed = train.config_for("four_corners", **tiny_run, sigma=0.5)
    with pytest.raises(train.ConfigError, match="'sigma'"):
        train.train(changed, tiny_run_dir, resume=True, progress=False)


def test_a_new_run_refuses_a_directory_holding_one(tiny_run_dir: str, tiny_run: dict[str, Any]) -> None:
    before = training_rows(tiny_run_dir)
    with pytest.raises(train.ConfigError, match="already holds a run"):
        train.train(train.config_for("four_corners", **tiny_run), tiny_run_dir, progress=False)
    assert training_rows(tiny_run_dir) == before  # nothing was overwritten


def test_resuming_a_finished_run_changes_nothing(tiny_run_dir: str, tiny_run: dict[str, Any], tmp_path: Path) -> None:
    copy = str(tmp_path / "copy")
    shutil.copytree(tiny_run_dir, copy)
    result = train.train(train.config_for("four_corners", **tiny_run), copy, resume=True, progress=False)
    np.testing.assert_array_equal(params_of(copy), params_of(tiny_run_dir))
    assert training_rows(copy) == training_rows(tiny_run_dir)
    with open(os.path.join(tiny_run_dir, "summary.json")) as f:
        original = json.load(f)
    for key in ("episodes", "env_steps", "heldout_pre_per_task", "heldout_post_per_task"):
        assert result.summary[key] == original[key], key
