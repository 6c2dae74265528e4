"""The emulated firmware without I/O: perturbations act as documented, the watchdog fires and latches."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest

from metactl.deploy import load_hardware_config
from metactl.deploy import protocol as pr
from metactl.emulator import Firmware

CONFIG = os.path.join(os.path.dirname(__file__), "..", "..", "hardware_configs", "serial_halfcheetah_fb.toml")


@pytest.fixture(scope="module")
def config():
    return load_hardware_config(CONFIG)


def _frame(msg: pr.Message, seq: int = 0) -> pr.Frame:
    return pr.Frame(seq, 0, msg)


def _trajectory(fw: Firmware, commands: np.ndarray, seed: int = 3) -> np.ndarray:
    """Observations answering RESET then each command, [len(commands) + 1, obs_dim]."""
    (state,) = fw.handle(_frame(pr.Reset(seed)), 0.0)
    out = [state.obs]
    for k, c in enumerate(commands):
        (state,) = fw.handle(_frame(pr.Command(c.astype(np.float32)), k + 1), 0.001 * k)
        out.append(state.obs)
    return np.asarray(out)


def _firmware(config, **changes) -> Firmware:
    return Firmware(config, dataclasses.replace(config.emulator, **changes))


def test_handshake_reports_the_configured_robot(config) -> None:
    (info,) = _firmware(config).handle(_frame(pr.Hello()), 0.0)
    assert info == pr.Info("serial_halfcheetah_fb", 17, 6, 50_000)


def test_latency_delays_commands_by_whole_steps(config) -> None:
    cmds = np.random.default_rng(0).uniform(-1, 1, size=(6, 6))
    delayed = _trajectory(_firmware(config, latency_steps=2), cmds)
    # Latency 2 = the nominal robot driven by [safe, safe, c0, c1, ...].
    shifted = np.concatenate([np.zeros((2, 6)), cmds[:-2]])
    np.testing.assert_array_equal(delayed, _trajectory(_firmware(config), shifted))
    assert not np.array_equal(delayed, _trajectory(_firmware(config), cmds))


def test_dead_joint_and_motor_gain_scale_the_applied_command(config) -> None:
    cmds = np.random.default_rng(1).uniform(-1, 1, size=(5, 6))
    dead = _trajectory(_firmware(config, actuator_gain=(0.0, 1, 1, 1, 1, 1)), cmds)
    zeroed = cmds.copy()
    zeroed[:, 0] = 0.0
    np.testing.assert_array_equal(dead, _trajectory(_firmware(config), zeroed))
    weak = _trajectory(_firmware(config, motor_gain=0.5), cmds)
    np.testing.assert_allclose(weak, _trajectory(_firmware(config), 0.5 * cmds), atol=1e-6)


def test_sensor_bias_shifts_every_observation(config) -> None:
    cmds = np.zeros((3, 6))
    biased = _trajectory(_firmware(config, obs_bias=0.25), cmds)
    np.testing.assert_allclose(biased - _trajectory(_firmware(config), cmds), 0.25, atol=1e-6)  # float32 obs


def test_payload_and_friction_change_the_dynamics_not_the_cached_model(config) -> None:
    cmds = np.random.default_rng(2).uniform(-1, 1, size=(10, 6))
    nominal = _trajectory(_firmware(config), cmds)
    for change in ({"payload_kg": 3.0}, {"friction_scale": 0.3}):
        assert not np.allclose(_trajectory(_firmware(config, **change), cmds), nominal)
    np.testing.assert_array_equal(_trajectory(_firmware(config), cmds), nominal)  # shared model untouched


def test_watchdog_safe_stops_and_latches_until_reset(config) -> None:
    fw = _firmware(config)
    fw.handle(_frame(pr.Reset(0)), 0.0)
    assert fw.poll(10.0) == []  # disarmed until the first command
    fw.handle(_frame(pr.Command(np.zeros(6, np.float32)), 1), 1.0)
    assert fw.poll(1.0 + 0.9 * fw.watchdog_s) == []
    (fault,) = fw.poll(1.0 + fw.watchdog_s)
    assert fault.code == pr.FaultCode.WATCHDOG
    (state,) = fw.handle(_frame(pr.Command(np.ones(6, np.float32)), 2), 2.0)
    assert state.flags & pr.FLAG_STOPPED and state.flags & pr.FLAG_FAULT
    (state,) = fw.handle(_frame(pr.Reset(0)), 3.0)
    assert state.flags == 0


def test_heartbeat_does_not_feed_the_watchdog(config) -> None:
    fw = _firmware(config)
    fw.handle(_frame(pr.Reset(0)), 0.0)
    fw.handle(_frame(pr.Command(np.zeros(6, np.float32)), 1), 0.0)
    assert fw.handle(_frame(pr.Heartbeat()), 0.9 * fw.watchdog_s) == [pr.Heartbeat()]
    assert [m.code for m in fw.poll(fw.watchdog_s)] == [pr.FaultCode.WATCHDOG]


@pytest.mark.parametrize("cmd", [np.full(6, np.nan), np.zeros(5)])
def test_bad_command_applies_the_safe_command_and_reports(config, cmd) -> None:
    fw = _firmware(config)
    fw.handle(_frame(pr.Reset(0)), 0.0)
    fault, state = fw.handle(_frame(pr.Command(cmd.astype(np.float32)), 1), 0.0)
    assert fault.code == pr.FaultCode.BAD_COMMAND and state.flags & pr.FLAG_FAULT
    assert fw.stats.bad_commands == 1
