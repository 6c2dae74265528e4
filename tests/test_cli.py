"""The command line: one-line errors for bad input, and a CI-sized run of the whole chain."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def metactl(*args: str, cwd: str = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "metactl.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr  # one clear line, no traceback
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_unknown_task_family_is_one_line(tmp_path):
    proc = metactl("train", "--family", "half_cheeta", "--out", str(tmp_path / "x"))
    assert_one_line_error(proc, "half_cheeta", "four_corners", "halfcheetah_fb")


def test_bad_argument_value_is_one_line(tmp_path):
    proc = metactl("train", "--iterations", "many", "--out", str(tmp_path / "x"))
    assert_one_line_error(proc, "--iterations", "invalid int value")


def test_bad_setting_names_the_field(tmp_path):
    proc = metactl("train", "--directions", "0", "--out", str(tmp_path / "x"))
    assert_one_line_error(proc, "directions")


def test_missing_hardware_config_is_one_line(tmp_path):
    proc = metactl("run", "--bundle", str(tmp_path), "--config", str(tmp_path / "nope.toml"), "--out", str(tmp_path))
    assert_one_line_error(proc, "nope.toml")


def test_malformed_hardware_config_is_one_line(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[robot]\nname = 'x\n")
    proc = metactl("run", "--bundle", str(tmp_path), "--config", str(bad), "--out", str(tmp_path))
    assert_one_line_error(proc, "bad.toml")


def test_missing_trained_policy_for_export_is_one_line(tmp_path):
    proc = metactl("export", "--run", str(tmp_path / "no_run"), "--out", str(tmp_path / "b"))
    assert_one_line_error(proc, "no_run")


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    proc = metactl("demo", "--quick", "--no-progress", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    return out, proc


def test_quick_demo_writes_summary_with_the_promised_keys(quick_demo):
    out, proc = quick_demo
    with open(out / "summary.json") as f:
        summary = json.load(f)
    for key in ("pre_adaptation_return", "post_adaptation_return", "baseline_post_adaptation_return"):
        assert isinstance(summary[key], float)
    assert os.path.exists(os.path.join(summary["bundle"], "policy.onnx"))
    assert (out / "demo_returns.png").stat().st_size > 0
    assert "ES-MAML after" in proc.stdout  # the summary table was printed


def test_bundle_that_does_not_match_the_robot_is_one_line(quick_demo, tmp_path):
    out, _ = quick_demo
    proc = metactl(
        "run",
        "--bundle",
        str(out / "bundle_es_maml"),
        "--config",
        os.path.join(ROOT, "hardware_configs", "sim_halfcheetah_fb.toml"),
        "--out",
        str(tmp_path),
    )
    assert_one_line_error(proc, "sim_halfcheetah_fb.toml")


def test_train_export_run_chain(tmp_path):
    run = tmp_path / "run"
    args = ["--iterations", "2", "--directions", "2", "--tasks", "1", "--eval-every", "1", "--no-progress"]
    assert metactl("train", "--out", str(run), *args).returncode == 0
    assert metactl("export", "--run", str(run), "--out", str(tmp_path / "bundle")).returncode == 0
    config = os.path.join(ROOT, "hardware_configs", "sim_four_corners.toml")
    proc = metactl("run", "--bundle", str(tmp_path / "bundle"), "--config", config, "--out", str(tmp_path / "robot"))
    assert proc.returncode == 0, proc.stderr
    with open(tmp_path / "robot" / "summary.json") as f:
        summary = json.load(f)
    assert summary["episodes"] > 2
    assert "after adaptation" in proc.stdout
