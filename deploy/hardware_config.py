"""Hardware config files: one TOML file per robot, validated once on load.

A config says how to reach the robot and what its signals are, in order::

    [robot]
    name = "sim_four_corners"
    link = "sim"                # how the runtime talks to the robot

    [control]
    period_s = 0.1              # control period in seconds
    episode_steps = 100         # optional; default: the bundle's training horizon

    [signals]
    observations = ["x", "y"]   # in the order the robot reports them
    actions = ["vx", "vy"]      # in the order the robot takes them

    [sim]                       # only for link = "sim": the simulation stands in for the robot
    family = "four_corners"
    task = 0                    # index into the family's test tasks, or an inline task table
    seed = 0

A serial robot (``link = "serial"``) has ``[serial]`` (port or pyserial URL, baud,
timeouts) instead of ``[sim]``; every robot may have ``[limits]`` and ``[safety]``
(enforced by the one safety layer), ``[fallback]`` (the simulation to run when no
hardware answers, and what to do when the link is lost mid-run) and ``[emulator]``
(how ``metactl emulate`` plays this robot, perturbations included). See
``hardware_configs/serial_halfcheetah_fb.toml`` for every key, commented.

Each section maps to a frozen dataclass, so a later link type adds a section
without touching the others. Every error names the file, the field and the fix.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Callable
from typing import Any

from metactl.deploy.config_sections import (
    EMULATOR_KEYS,
    EmulatorSection,
    FallbackSection,
    LimitsSection,
    SafetySection,
    SerialSection,
    is_names,
    is_nonempty_str,
    is_nonneg_int,
    is_positive,
    is_positive_int,
    is_task,
    read_emulator,
    read_fallback,
    read_limits,
    read_safety,
    read_serial,
)
from metactl.deploy.errors import HardwareConfigError

LINKS = ("sim", "serial")
"""Link types this runtime can open."""
POLICY_ON = ("host", "controller")
"""Where the policy runs: on the host (protocol v1, a COMMAND per control step) or on the motor controller
(protocol v2: the host supervises episodes and uploads parameters; ``deploy.controller_session``)."""
SECTIONS: dict[str, tuple[str, ...]] = {
    "robot": ("name", "link", "policy_on"),
    "control": ("period_s", "episode_steps"),
    "signals": ("observations", "actions"),
    "sim": ("family", "task", "seed"),
    "serial": ("port", "baud", "reply_timeout_s", "handshake_timeout_s", "max_missed_replies", "reconnect_s"),
    "limits": ("command_low", "command_high", "max_command_change", "position", "velocity"),
    "safety": ("watchdog_s", "safe_command", "startup_pose", "startup_steps", "max_non_finite_commands"),
    "fallback": ("family", "task", "seed", "on_link_loss"),
    "emulator": EMULATOR_KEYS,
}
"""Known sections and their keys."""
_REQUIRED = object()


@dataclasses.dataclass(frozen=True)
class RobotSection:
    """``[robot]``: a name for logs, the link type (``"sim"``) and where the policy runs (``"host"``)."""

    name: str
    link: str
    policy_on: str = "host"


@dataclasses.dataclass(frozen=True)
class ControlSection:
    """``[control]``: control period [s] and episode length [steps] (None = the bundle's horizon)."""

    period_s: float
    episode_steps: int | None = None


@dataclasses.dataclass(frozen=True)
class SignalsSection:
    """``[signals]``: observation and action names, in the robot's order."""

    observations: tuple[str, ...]
    actions: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class SimSection:
    """``[sim]``: the task family, the task (test-task index or ``Task.to_dict()`` form) and the base seed."""

    family: str
    task: int | dict[str, Any]
    seed: int = 0


@dataclasses.dataclass(frozen=True)
class HardwareConfig:
    """A validated hardware config; ``path`` is the file it came from (used in error messages)."""

    path: str
    robot: RobotSection
    control: ControlSection
    signals: SignalsSection
    sim: SimSection | None = None
    serial: SerialSection | None = None
    limits: LimitsSection = dataclasses.field(default_factory=LimitsSection)
    safety: SafetySection = dataclasses.field(default_factory=SafetySection)
    fallback: FallbackSection | None = None
    emulator: EmulatorSection | None = None

    @property
    def robot_name(self) -> str:
        """Shorthand for ``robot.name`` (for logs and CLI tables)."""
        return self.robot.name


def load_hardware_config(path: str) -> HardwareConfig:
    """Read and validate the TOML file at ``path``; raise ``HardwareConfigError`` naming the field and fix."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise HardwareConfigError(
            f"hardware config {path} not found; pass the path of a robot's TOML file, "
            "e.g. hardware_configs/sim_four_corners.toml"
        )
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise HardwareConfigError(f"hardware config {path}: TOML syntax error: {e}; fix that line") from None
    return _Reader(path).config(data)


class _Reader:
    """Field-by-field validation with messages that name ``path`` and the field."""

    def __init__(self, path: str):
        self.path = path

    def fail(self, what: str) -> HardwareConfigError:
        return HardwareConfigError(f"hardware config {self.path}: {what}")

    def config(self, data: dict[str, Any]) -> HardwareConfig:
        for name, value in data.items():
            if name not in SECTIONS:
                raise self.fail(f"unknown section [{name}]; known sections: {', '.join(SECTIONS)}")
            if not isinstance(value, dict):
                raise self.fail(f"'{name}' must be a section [{name}], not a plain value; put its keys under [{name}]")
            unknown = [k for k in value if k not in SECTIONS[name]]
            if unknown:
                raise self.fail(f"unknown key {name}.{unknown[0]}; [{name}] takes: {', '.join(SECTIONS[name])}")
        robot = RobotSection(
            name=self.get(data, "robot.name", is_nonempty_str, "a non-empty string", "name the robot, e.g. 'arm_1'"),
            link=self.get(data, "robot.link", _link, f"one of {LINKS}", "use link = 'sim' or 'serial'"),
            policy_on=self.get(data, "robot.policy_on", POLICY_ON.__contains__, f"one of {POLICY_ON}",
                               "use policy_on = 'host' or 'controller'", "host"),
        )  # fmt: skip
        if robot.policy_on == "controller" and robot.link != "serial":
            raise self.fail("robot.policy_on = 'controller' needs robot.link = 'serial' (a motor controller to run on)")
        control = ControlSection(
            period_s=float(
                self.get(data, "control.period_s", is_positive, "a positive number", "set it in seconds, e.g. 0.05")
            ),
            episode_steps=self.get(
                data, "control.episode_steps", is_positive_int, "a positive integer", "set it in steps, e.g. 200", None
            ),
        )
        names_fix = "list the names in the robot's order, e.g. ['x', 'y']"
        signals = SignalsSection(
            observations=tuple(self.get(data, "signals.observations", is_names, "a list of unique names", names_fix)),
            actions=tuple(self.get(data, "signals.actions", is_names, "a list of unique names", names_fix)),
        )
        sim = None
        if robot.link == "sim":
            if "sim" not in data:
                raise self.fail("robot.link is 'sim' but section [sim] is missing; add [sim] with family, task, seed")
            task_fix = "give an index into the family's test tasks (e.g. 0) or an inline table {type = 'GoalTask', ...}"
            task = self.get(data, "sim.task", is_task, "an integer >= 0 or an inline table with 'type'", task_fix)
            sim = SimSection(
                family=self.get(data, "sim.family", is_nonempty_str, "a task family name", "e.g. 'four_corners'"),
                task=dict(task) if isinstance(task, dict) else task,
                seed=self.get(data, "sim.seed", is_nonneg_int, "an integer >= 0", "e.g. seed = 0", 0),
            )
        serial = None
        if robot.link == "serial":
            if "serial" not in data:
                raise self.fail("robot.link is 'serial' but section [serial] is missing; add [serial] with port, baud")
            serial = read_serial(self, data)
        acts, obs = signals.actions, signals.observations
        limits = read_limits(self, data, acts, obs) if "limits" in data else LimitsSection()
        safety = read_safety(self, data, acts, control.period_s) if "safety" in data else SafetySection()
        fallback = read_fallback(self, data) if "fallback" in data else None
        emulator = read_emulator(self, data, acts, obs) if "emulator" in data else None
        return HardwareConfig(self.path, robot, control, signals, sim, serial, limits, safety, fallback, emulator)

    def get(
        self,
        data: dict[str, Any],
        field: str,
        ok: Callable[[Any], bool],
        what: str,
        fix: str,
        default: Any = _REQUIRED,
    ) -> Any:
        section, key = field.split(".")
        if key not in data.get(section, {}):
            if default is not _REQUIRED:
                return default
            if section not in data:
                raise self.fail(f"section [{section}] is missing; add it with at least {field}")
            raise self.fail(f"{field} is missing; it must be {what}: {fix}")
        value = data[section][key]
        if not ok(value):
            raise self.fail(f"{field} must be {what} (got {value!r}); {fix}")
        return value


def _link(v: Any) -> bool:
    return v in LINKS
