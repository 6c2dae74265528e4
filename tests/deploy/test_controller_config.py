"""``[robot] policy_on``: where the policy runs, validated like every other field; the shipped controller config."""

from __future__ import annotations

import os

import pytest

from metactl.deploy import HardwareConfigError, load_hardware_config

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG_DIR = os.path.join(REPO, "hardware_configs")


def _load(tmp_path, robot: str):
    with open(os.path.join(CONFIG_DIR, "serial_halfcheetah_fb.toml")) as f:
        text = f.read().replace('name = "serial_halfcheetah_fb"\nlink = "serial"', robot)
    path = tmp_path / "robot.toml"
    path.write_text(text)
    return load_hardware_config(str(path))


def test_the_policy_runs_on_the_host_unless_the_config_says_controller(tmp_path) -> None:
    assert _load(tmp_path, 'name = "r"\nlink = "serial"').robot.policy_on == "host"
    assert _load(tmp_path, 'name = "r"\nlink = "serial"\npolicy_on = "controller"').robot.policy_on == "controller"
    with pytest.raises(HardwareConfigError, match=r"robot.policy_on must be one of \('host', 'controller'\)"):
        _load(tmp_path, 'name = "r"\nlink = "serial"\npolicy_on = "mcu"')


def test_a_controller_needs_a_serial_link(tmp_path) -> None:
    path = tmp_path / "sim.toml"
    with open(os.path.join(CONFIG_DIR, "sim_halfcheetah_fb.toml")) as f:
        path.write_text(f.read().replace('\nlink = "sim"\n', '\nlink = "sim"\npolicy_on = "controller"\n'))
    with pytest.raises(HardwareConfigError, match=r"needs robot\.link = 'serial'"):
        load_hardware_config(str(path))


def test_the_shipped_controller_config_is_the_serial_robot_with_its_policy_on_the_controller() -> None:
    ctrl = load_hardware_config(os.path.join(CONFIG_DIR, "controller_halfcheetah_fb.toml"))
    host = load_hardware_config(os.path.join(CONFIG_DIR, "serial_halfcheetah_fb.toml"))
    assert ctrl.robot.policy_on == "controller" and ctrl.robot.name == host.robot.name
    assert (ctrl.signals, ctrl.control, ctrl.limits, ctrl.safety) == (host.signals, host.control, host.limits,
                                                                      host.safety)  # fmt: skip
