"""Runs that did not complete as asked say so: in the report, in summary.json and in ``metactl run``'s exit code
(0 completed, fail-over to simulation included; 2 bad input; 3 link lost; 4 safety stop). Each case here exited 0
before (issue 18)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading

import numpy as np

from metactl.controllers import load_policy
from metactl.deploy import metadata as md
from metactl.deploy.bundle_writer import write_bundle
from metactl.deploy.export import build_metadata, build_model
from metactl.emulator.launcher import emulator_process


def metactl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "metactl.cli", *args], capture_output=True, text=True, timeout=300)


def nan_bundle(policy_path: str, out: str) -> str:
    """A bundle whose graph answers NaN to everything (its parameters are NaN): what a corrupted export would give.
    ``metactl export`` refuses to write one; the graph is written here directly."""
    policy, extra = load_policy(policy_path)
    broken = policy.with_params(np.full_like(policy.params, np.nan))
    return write_bundle(out, {md.ONNX_FILE: build_model(broken)}, build_metadata(broken, extra))


def test_a_controller_that_answers_nan_is_a_safety_stop(hc_linear_policy_path, shipped_config, tmp_path) -> None:
    bundle = nan_bundle(hc_linear_policy_path, str(tmp_path / "nan_bundle"))
    out = tmp_path / "robot"
    proc = metactl("run", "--bundle", bundle, "--config", shipped_config("halfcheetah_fb"), "--out", str(out))
    assert proc.returncode == 4, proc.stderr
    summary = json.load(open(out / "summary.json"))
    assert summary["status"] == "safety_stop" and summary["exit_code"] == 4
    assert summary["safety"]["non_finite_commands"] == 11  # the default tolerates 10
    assert "non-finite commands" in summary["detail"]


def test_a_nan_goal_in_a_config_task_is_bad_input(fc_bundle, shipped_config, tmp_path) -> None:
    text = open(shipped_config("four_corners")).read()
    config = tmp_path / "robot.toml"
    config.write_text(text.replace("task = 0", 'task = { type = "GoalTask", goal = [nan, 2.0] }'))
    proc = metactl("run", "--bundle", fc_bundle, "--config", str(config), "--out", str(tmp_path / "o"))
    assert proc.returncode == 2 and "non-finite goal" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_nan_action_bounds_in_a_model_bundle_are_bad_input(mb_bundles, shipped_config, tmp_path) -> None:
    import shutil

    bundle = tmp_path / "b"
    shutil.copytree(mb_bundles["grbal"], bundle)
    meta = json.load(open(bundle / "metadata.json"))
    meta["action_low"][0] = float("nan")
    (bundle / "metadata.json").write_text(json.dumps(meta))
    config = shipped_config("halfcheetah_disabled_joint")
    proc = metactl("run", "--bundle", str(bundle), "--config", config, "--out", str(tmp_path / "o"))
    assert proc.returncode == 2 and "'action_low' must hold finite numbers" in proc.stderr


def test_a_lost_link_exits_3_and_a_fail_over_completes_with_0(hc_identity_bundle, serial_robot_config, tmp_path):
    for on_loss, code in (("stop", 3), ("sim", 0)):
        config = serial_robot_config(**{'on_link_loss = "stop"': f'on_link_loss = "{on_loss}"'})
        out = tmp_path / f"out_{on_loss}"
        with emulator_process(config, str(tmp_path / f"emu_{on_loss}")) as emu:
            killer = threading.Timer(2.5, os.kill, (emu.pid, signal.SIGKILL))  # mid-run, after start-up
            killer.start()
            proc = metactl("run", "--bundle", hc_identity_bundle, "--config", config, "--port", emu.port,
                           "--out", str(out), "--time-scale", "1", "--no-progress")  # fmt: skip
            killer.join()
        assert proc.returncode == code, proc.stderr
        summary = json.load(open(out / "summary.json"))
        assert summary["exit_code"] == code and summary["failed_over"] == (on_loss == "sim")
        assert summary["status"] == ("link_lost" if on_loss == "stop" else "completed")
