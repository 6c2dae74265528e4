"""Named reality gaps for sim-to-real tests: each is a change to the emulated robot's ``[emulator]`` section.

They cover what differs between a simulator and a robot on the bench: a payload, floor
friction, weaker motors and a sagging battery, actuator latency of 1-3 control steps,
sensor noise and bias, and a damaged (dead) joint.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from metactl.deploy.config_sections import EmulatorSection

Scenario = Callable[[EmulatorSection, int], EmulatorSection]
"""(nominal emulator section, number of actuators) -> the perturbed section."""


def _set(**changes: object) -> Scenario:
    return lambda emu, n_act: dataclasses.replace(emu, **changes)


def _dead_joint(emu: EmulatorSection, n_act: int) -> EmulatorSection:
    gains = list(emu.actuator_gain or [1.0] * n_act)
    gains[0] = 0.0  # the first actuator in the robot's order produces no torque
    return dataclasses.replace(emu, actuator_gain=tuple(gains))


SCENARIOS: dict[str, Scenario] = {
    "nominal": _set(),
    "payload": _set(payload_kg=3.0),
    "friction_low": _set(friction_scale=0.3),
    "friction_high": _set(friction_scale=2.0),
    "motor_weak": _set(motor_gain=0.6),
    "battery_sag": _set(battery_sag_per_s=0.05),
    "latency_1": _set(latency_steps=1),
    "latency_2": _set(latency_steps=2),
    "latency_3": _set(latency_steps=3),
    "sensor_noise": _set(obs_noise_std=0.05),
    "sensor_bias": _set(obs_bias=0.1),
    "damaged_joint": _dead_joint,
}
"""Every scenario by name, in table order."""
MUJOCO_ONLY = ("payload", "friction_low", "friction_high")
"""Scenarios that change the physics model (not available on the 2-D point robots)."""


def scenario(name: str, emu: EmulatorSection, n_act: int) -> EmulatorSection:
    """The ``[emulator]`` section of scenario ``name``; ``ValueError`` naming the known ones."""
    if name not in SCENARIOS:
        raise ValueError(f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}")
    return SCENARIOS[name](emu, n_act)
