"""The exact firmware binary on an emulated Cortex-M4F (QEMU mps2-an386), in closed loop with the MuJoCo plant.

The host supervises over UART0 (protocol v2: episodes, STEP stream, PARAMS uploads, hill climbing on the host);
the plant answers on UART1. Returns equal the Python runtime's; killing the host makes the controller's watchdog
safe-stop the motors, timed on the controller's own clock (QEMU -icount: executed instructions, not host time).
"""

from __future__ import annotations

import numpy as np
from firmware_helpers import kill_host_mid_episode, needs_qemu, returns, robot_config

from metactl.deploy import run_online
from metactl.deploy.firmware_build import BUS_TIMEOUT_US
from metactl.emulator.firmware_loop import firmware_in_the_loop

pytestmark = needs_qemu


def test_closed_loop_hill_climbing_in_qemu_matches_the_python_runtime(
    hc_bundle, m4_firmware, python_runtime, tmp_path
) -> None:
    config = robot_config(str(tmp_path / "robot.toml"), controller=True)
    # -icount: the controller's clock counts its instructions, so a stall of this shared machine cannot time out its
    # motor bus or its watchdog (unpaced: the speed is the plant's, not the guest clock's).
    with firmware_in_the_loop(m4_firmware, config, str(tmp_path / "loop"), icount_shift=0) as loop:
        report = run_online(hc_bundle, config, port=loop.host_port, seed=4, time_scale=0)
    assert report.status == "completed" and len(report.episodes) == 5
    np.testing.assert_allclose(returns(report), returns(python_runtime), rtol=1e-3)
    timing = report.health["timing"]
    assert timing["steps"] == 100 and timing["parity_mismatches"] == 0 and timing["parity_max_abs_diff"] <= 1e-5
    np.testing.assert_array_equal(report.adapted_params, python_runtime.adapted_params)
    assert report.health["controller"]["params_applied"] >= 2


def test_killing_the_host_makes_the_watchdog_safe_stop_within_its_time(m4_firmware, tmp_path) -> None:
    config = robot_config(str(tmp_path / "robot.toml"), controller=True)
    report, commands, wd_us = kill_host_mid_episode(m4_firmware, config, str(tmp_path / "loop"), icount_shift=2)
    assert commands[-1]["cmd"] == [0.0] * 6 and report.watchdog_trips == 1
    late_us = report.trip_us - report.feed_us
    # Under -icount the controller's clock counts its own instructions, so this bound is exact whatever the
    # workstation's load: the check runs every pass of the main loop, and the longest pass is one control tick,
    # i.e. at most one motor-bus exchange (bounded by its timeout) plus the policy and a STEP (< 1 ms).
    assert wd_us <= late_us <= wd_us + BUS_TIMEOUT_US + 1000
    safe = commands[-1]["t_us"]
    assert report.trip_us <= safe <= report.trip_us + 1000  # the motors are told at the trip
    assert 0 < report.stack_bytes < 768  # the painted stack's bottom word was never reached (768 B reserved)


def test_the_firmware_meets_its_size_and_cost_targets(tmp_path) -> None:
    """Measured, as ``metactl bench firmware`` does (hard-float Cortex-M4F, QEMU -icount: exact counts): the
    whole firmware with a linear policy fits an STM32F030-class part, and inference stays within its budgets,
    computing exactly what onnxruntime computes."""
    from metactl.bench.firmware import TARGETS_OK, measure_network

    linear = measure_network("linear", (), str(tmp_path / "linear"), targets=("m4",), calls=200, baselines=False)
    assert linear["m4_flash"] <= TARGETS_OK["flash"] and linear["m4_ram"] <= TARGETS_OK["ram"]
    assert linear["m4_metactl_instructions"] <= TARGETS_OK["linear"]
    mlp = measure_network("mlp 64x64", (64, 64), str(tmp_path / "mlp"), targets=("m4",), calls=20, baselines=False)
    assert mlp["m4_metactl_instructions"] <= TARGETS_OK["mlp 64x64"]
    for row in (linear, mlp):
        assert row["m4_metactl_max_abs_diff_vs_ort"] <= 1e-5 and row["m4_metactl_nan_rows_agree"]
