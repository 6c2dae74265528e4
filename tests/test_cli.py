"""The command line: one-line errors for bad input, and a CI-sized run of the whole chain."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
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
    proc = metactl("train", "es", "--family", "half_cheeta", "--out", str(tmp_path / "x"))
    assert_one_line_error(proc, "half_cheeta", "four_corners", "halfcheetah_fb")


def test_bad_argument_value_is_one_line(tmp_path):
    proc = metactl("train", "es", "--iterations", "many", "--out", str(tmp_path / "x"))
    assert_one_line_error(proc, "--iterations", "invalid literal for int")


def test_bad_setting_names_the_field(tmp_path):
    proc = metactl("train", "es", "--directions", "0", "--out", str(tmp_path / "x"))
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
    args = ["--iterations", "2", "--directions", "2", "--tasks-per-iteration", "1", "--eval-every", "1"]
    args += ["--no-progress"]
    assert metactl("train", "es", "--out", str(run), *args).returncode == 0
    assert metactl("export", "--run", str(run), "--out", str(tmp_path / "bundle")).returncode == 0
    config = os.path.join(ROOT, "hardware_configs", "sim_four_corners.toml")
    proc = metactl("run", "--bundle", str(tmp_path / "bundle"), "--config", config, "--out", str(tmp_path / "robot"))
    assert proc.returncode == 0, proc.stderr
    with open(tmp_path / "robot" / "summary.json") as f:
        summary = json.load(f)
    assert summary["episodes"] > 2
    assert "after adaptation" in proc.stdout


def test_eval_of_es_runs_puts_each_method_next_to_the_specialist(tmp_path):
    tiny = ["--iterations", "2", "--directions", "2", "--tasks-per-iteration", "1", "--eval-every", "2",
            "--adaptation.queries", "2", "--workers", "1", "--no-progress"]  # fmt: skip
    runs = {"m": [], "b": ["--no-meta"], "s0": ["--no-meta", "--specialist-task", "0"]}
    for name, flags in runs.items():
        assert metactl("train", "es", "--out", str(tmp_path / name), *tiny, *flags).returncode == 0
    proc = metactl("eval", *(str(tmp_path / n) for n in runs), "--episodes", "2", "--out", str(tmp_path / "eval"))
    assert proc.returncode == 0, proc.stderr
    assert "specialist (no adaptation)" in proc.stdout and "ES-MAML after - baseline after" in proc.stdout
    with open(tmp_path / "eval" / "summary.json") as f:
        summary = json.load(f)
    for key in ("specialist", "post_adaptation_vs_specialist", "post_adaptation_vs_baseline", "es_maml_post"):
        assert set(summary[key]) == set(summary["tasks"]), key
    proc = metactl("eval", str(tmp_path / "m"), "--samples", "100", "--out", str(tmp_path / "eval2"))
    assert_one_line_error(proc, "--samples apply to model-based runs only")
    proc = metactl("train", "es", "--out", str(tmp_path / "x"), "--no-meta", "--specialist-task", "9")
    assert_one_line_error(proc, "specialist_task: four_corners has test tasks 0..3")


def test_emulate_needs_an_emulator_section(tmp_path):
    config = os.path.join(ROOT, "hardware_configs", "sim_four_corners.toml")
    assert_one_line_error(metactl("emulate", "--config", config), "no [emulator] section")


def test_emulate_unknown_scenario_is_one_line(tmp_path):
    config = os.path.join(ROOT, "hardware_configs", "serial_halfcheetah_fb.toml")
    assert_one_line_error(metactl("emulate", "--config", config, "--scenario", "lava"), "lava", "latency_2")


@pytest.fixture(scope="module")
def hc_cli_bundle(tmp_path_factory):
    """A HalfCheetah bundle from a one-iteration CLI training run with 10-step episodes."""
    tmp = tmp_path_factory.mktemp("hc_cli")
    args = ["--family", "halfcheetah_fb", "--iterations", "1", "--directions", "1", "--tasks-per-iteration", "1"]
    args += ["--horizon", "10", "--eval-every", "1", "--no-progress"]
    assert metactl("train", "es", "--out", str(tmp / "run"), *args).returncode == 0
    assert metactl("export", "--run", str(tmp / "run"), "--out", str(tmp / "bundle")).returncode == 0
    return str(tmp / "bundle")


def test_sim2real_runs_scenarios_over_the_emulator(hc_cli_bundle, tmp_path):
    with open(os.path.join(ROOT, "hardware_configs", "serial_halfcheetah_fb.toml")) as f:
        text = f.read().replace("# episode_steps = 200", "episode_steps = 10")
    config = tmp_path / "robot.toml"
    config.write_text(text)
    out = tmp_path / "s2r"
    args = ["--scenarios", "nominal,latency_2", "--time-scale", "0", "--out", str(out)]
    proc = metactl("sim2real", "--bundle", hc_cli_bundle, "--config", str(config), *args)
    assert proc.returncode == 0, proc.stderr
    with open(out / "summary.json") as f:
        scenarios = json.load(f)["scenarios"]
    assert list(scenarios) == ["nominal", "latency_2"]
    for entry in scenarios.values():
        assert isinstance(entry["pre_adaptation_return"], float) and isinstance(entry["post_adaptation_return"], float)
        assert entry["link"] == "serial" and entry["status"] == "completed"
    assert scenarios["nominal"]["pre_adaptation_return"] != scenarios["latency_2"]["pre_adaptation_return"]
    assert (out / "sim2real.png").stat().st_size > 0 and "latency_2" in proc.stdout


def test_bench_loop_smoke(tmp_path):
    proc = metactl("bench", "loop", "--seconds", "0.2", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    with open(tmp_path / "summary.json") as f:
        summary = json.load(f)
    assert set(summary["runs"]) == {"500", "1000"}
    for run in summary["runs"].values():
        # A clean pty never corrupts a frame; an answer may miss its 1-2 ms deadline when other jobs load the cores
        # (seen once in CI: 1 of 200), so losses are only bounded, not required to be zero.
        assert run["bad_frames"] == 0 and 0 <= run["lost_frames"] <= run["cycles"] // 4
        # The bare loop ran in the same run, at the same rate: the ratios are the runtime's figures over its.
        assert run["deadline_met_vs_bare"] == pytest.approx(
            run["deadline_met_fraction"] / run["bare_deadline_met_fraction"]
        )
        assert run["jitter_p99_vs_bare"] == pytest.approx(run["jitter_p99_ms"] / run["bare_jitter_p99_ms"])
        assert run["goal_met"] is None or isinstance(run["goal_met"], bool)
    assert summary["runs"]["1000"]["cycles"] >= 150  # 200 steps, the last cycle of the episode is not closed
    assert "deadline_met_vs_bare" in proc.stdout


TINY_MB_ARGS = [
    "--family", "halfcheetah_disabled_joint", "--iterations", "2", "--rollouts", "2", "--episode-steps", "40",
    "--train-steps", "10", "--samples", "16", "--planning-horizon", "4", "--eval-every", "0", "--eval-steps", "10",
    "--threads", "1", "--no-progress",
]  # fmt: skip


@pytest.fixture(scope="module")
def mb_cli_runs(tmp_path_factory):
    """CI-sized ``metactl train grbal|rebal|mb`` runs (real data collection, training and MPC), one per method."""
    tmp = tmp_path_factory.mktemp("mb_cli")
    runs = {}
    for method in ("grbal", "rebal", "mb"):
        runs[method] = str(tmp / method)
        proc = metactl("train", method, "--out", runs[method], *TINY_MB_ARGS)
        assert proc.returncode == 0, proc.stderr
        assert os.path.isfile(os.path.join(runs[method], "model.npz"))
    return runs


def test_model_based_train_export_run_chain(mb_cli_runs, tmp_path, short_config):
    config = short_config("sim_halfcheetah_disabled_joint.toml", 15)
    for method, mode in (("grbal", None), ("rebal", None), ("mb", "mb_de")):
        bundle = tmp_path / f"{method}_bundle"
        proc = metactl("export", "--run", mb_cli_runs[method], "--out", str(bundle))
        assert proc.returncode == 0, proc.stderr
        assert (bundle / "dynamics.onnx").is_file()
        assert (bundle / ("recurrent_step.onnx" if method == "rebal" else "adapt.onnx")).is_file()
        out = tmp_path / f"{method}_robot"
        args = ["--bundle", str(bundle), "--config", config, "--out", str(out), "--no-progress"]
        proc = metactl("run", *args, *(["--mode", mode] if mode else []))
        assert proc.returncode == 0, proc.stderr
        with open(out / "summary.json") as f:
            summary = json.load(f)
        assert summary["adaptation"]["name"] == (mode or method) and summary["status"] == "completed"
        assert isinstance(summary["pre_adaptation_return"], float)
        assert isinstance(summary["post_adaptation_return"], float)


def test_model_based_flags_on_the_wrong_kind_are_one_line(quick_demo, tmp_path):
    config = os.path.join(ROOT, "hardware_configs", "sim_four_corners.toml")
    bundle = str(quick_demo[0] / "bundle_es_maml")
    proc = metactl("run", "--bundle", bundle, "--config", config, "--out", str(tmp_path), "--mode", "grbal")
    assert_one_line_error(proc, "--mode applies to model bundles only")
    proc = metactl("train", "grbal", "--out", str(tmp_path / "x"), "--directions", "3")
    assert_one_line_error(proc, "Unrecognized options: --directions", "metactl train grbal --help")
    proc = metactl("train", "es", "--out", str(tmp_path / "y"), "--threads", "1")
    assert_one_line_error(proc, "Unrecognized options: --threads", "metactl train es --help")


def test_eval_writes_one_key_per_method_and_reference(mb_cli_runs, tmp_path):
    out = tmp_path / "eval"
    proc = metactl("eval", *mb_cli_runs.values(), "--steps", "15", "--threads", "1", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    with open(out / "summary.json") as f:
        summary = json.load(f)
    assert summary["tasks"] == ["joint=0"]  # the held-out task: joint 0 disabled
    for mode in ("grbal", "frozen", "rebal", "mb", "mb_de", "oracle"):
        returns = summary[mode]
        assert set(returns) == {"joint=0"} and all(isinstance(v, float) for v in returns.values())
        assert len(summary["per_seed"][mode]["joint=0"]) == 1
        if mode != "oracle":
            assert isinstance(summary[f"{mode}_vs_oracle"]["joint=0"], float)
    assert "MB+DE" in proc.stdout and "GrBAL frozen" in proc.stdout and "oracle" in proc.stdout
    change = tmp_path / "change"
    proc = metactl("eval", mb_cli_runs["grbal"], "--tasks", "change", "--steps", "12", "--threads", "1",
                   "--out", str(change))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    with open(change / "summary.json") as f:
        summary = json.load(f)
    assert summary["tasks"] == ["joint 0 fails at 500"] and summary["progress_after"]["grbal"]  # the 12 steps: none


def test_bench_mpc_smoke(mb_cli_runs, tmp_path):
    args = ["--run", mb_cli_runs["grbal"], "--steps", "3", "--refit-steps", "3", "--eval-steps", "10"]
    proc = metactl("bench", "mpc", *args, "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    with open(tmp_path / "summary.json") as f:
        summary = json.load(f)
    for key in ("step_ms_reference", "step_ms_default", "return_default_vs_reference"):
        assert isinstance(summary[key], float) and np.isfinite(summary[key]), key
    for config in summary["configs"].values():
        assert config["plan_gflops"] > 0 and config["gemm_gflops"] > 0


def test_run_writes_videos_before_and_after_adaptation(hc_cli_bundle, tmp_path, short_config):
    """--video on a simulated robot: MP4s of the pre and post episodes, linked from summary.json."""
    import imageio.v2 as imageio

    config = short_config("sim_halfcheetah_fb.toml", 12)
    out = tmp_path / "robot"
    proc = metactl("run", "--bundle", hc_cli_bundle, "--config", config, "--out", str(out), "--video")
    assert proc.returncode == 0, proc.stderr
    with open(out / "summary.json") as f:
        videos = json.load(f)["videos"]
    assert set(videos) == {"pre", "post_1"}
    for path in videos.values():
        frames = imageio.mimread(path, memtest=False)
        assert len(frames) == 13 and frames[0].shape == (240, 320, 3)  # 12 steps + the start, 20 Hz: every frame


def test_export_target_c_and_firmware(hc_cli_bundle, tmp_path):
    """The C export and a POSIX firmware build, from the command line (the firmware tests check what they compute)."""
    out = tmp_path / "c"
    proc = metactl("export", "--run", hc_cli_bundle, "--out", str(out), "--target", "c")
    assert proc.returncode == 0, proc.stderr
    assert {"policy.h", "policy.c", "summary.json"} <= set(os.listdir(out))
    assert "void metactl_policy(const float *obs, float *action);" in (out / "policy.h").read_text()
    assert metactl("export", "--run", hc_cli_bundle, "--out", str(out), "--target", "c").returncode == 0  # re-export
    config = os.path.join(ROOT, "hardware_configs", "controller_halfcheetah_fb.toml")
    fw = tmp_path / "fw"
    proc = metactl("export", "--run", hc_cli_bundle, "--out", str(fw), "--target", "firmware", "--config", config,
                   "--arch", "posix")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    with open(fw / "summary.json") as f:
        assert os.access(json.load(f)["program"], os.X_OK)
    proc = metactl("export", "--run", hc_cli_bundle, "--out", str(tmp_path / "x"), "--target", "firmware")
    assert_one_line_error(proc, "--target firmware needs --config")


def test_a_reader_that_goes_away_is_not_a_traceback():
    """``metactl ... --help | head -1``: the pipe is closed before the help is written; no traceback follows."""
    proc = subprocess.Popen([sys.executable, "-m", "metactl.cli", "bench", "rl2", "--help"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    proc.stdout.close()  # before the interpreter has even imported metactl
    err = proc.stderr.read().decode()
    proc.wait(timeout=60)
    assert "Traceback" not in err and "BrokenPipeError" not in err
