"""Open the robot a hardware config names: one factory per ``robot.link`` type, no if/elif chain."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from metactl.deploy.errors import HardwareConfigError
from metactl.deploy.hardware_config import HardwareConfig
from metactl.deploy.link import RobotLink
from metactl.deploy.sim_robot import open_sim


def _open_serial(config: HardwareConfig, task: int | Mapping[str, Any] | None, port: str | None = None) -> RobotLink:
    from metactl.deploy.serial_robot import SerialRobot  # pyserial: only for serial robots

    return SerialRobot(config, port)


LinkFactory = Callable[[HardwareConfig, "int | Mapping[str, Any] | None", "str | None"], RobotLink]
LINK_FACTORIES: dict[str, LinkFactory] = {"sim": open_sim, "serial": _open_serial}
"""How each ``robot.link`` type is opened: (config, task override, port override) -> link."""


def open_link(
    config: HardwareConfig, task: int | Mapping[str, Any] | None = None, port: str | None = None
) -> RobotLink:
    """Open the robot ``config`` describes; ``task`` overrides ``[sim] task`` for a simulated robot, ``port``
    the ``[serial] port`` of a serial one. A serial robot that does not answer raises ``NoHardwareError``."""
    if config.robot.link not in LINK_FACTORIES:
        raise HardwareConfigError(
            f"hardware config {config.path}: robot.link {config.robot.link!r} has no driver here; "
            f"use one of {sorted(LINK_FACTORIES)}"
        )
    return LINK_FACTORIES[config.robot.link](config, task, port)
