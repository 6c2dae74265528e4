"""The robot link: the one interface the runtime uses to talk to a robot (real, emulated or simulated).

A link is a context manager with ``reset`` (start an episode), ``read_state`` and
``write_command`` (returns what was really sent, after clipping to the actuator
limits — the LeRobot ``send_action`` contract). ``SimRobot`` (``deploy.sim_robot``)
and ``SerialRobot`` (``deploy.serial_robot``) implement it; ``deploy.links`` opens the
one a hardware config names.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol, runtime_checkable

import numpy as np

from metactl.deploy.errors import HardwareConfigError


@dataclasses.dataclass(frozen=True)
class RobotState:
    """What the robot reports: observation [obs_dim] (float64, in the config's signal order), the
    reward of the last transition (0 right after ``reset``), whether the episode ended, time [s] since reset.
    ``fresh`` is False when the answer to the last command never came and this is the previous state again
    (its reward must not be counted twice)."""

    obs: np.ndarray
    reward: float
    done: bool
    t: float
    fresh: bool = True


@runtime_checkable
class RobotLink(Protocol):
    """A connection to one robot (real or simulated)."""

    def __enter__(self) -> RobotLink: ...

    def __exit__(self, *exc: object) -> None: ...

    def close(self) -> None:
        """Release the robot (idempotent)."""

    def reset(self, seed: int | None = None) -> None:
        """Start an episode; ``seed`` fixes initial-state noise where the robot has any (the simulator)."""

    def read_state(self) -> RobotState:
        """The latest state."""

    def write_command(self, cmd: np.ndarray) -> np.ndarray:
        """Send command [act_dim]; return the command actually sent (clipped to the actuator limits)."""

    def safe_stop(self) -> bool:
        """Put the motors in their safe state now (and between episodes); whether the robot confirmed it."""

    def describe(self) -> dict[str, Any]:
        """JSON-able facts about the link (type, task, port, ...) for run summaries."""


def check_signals(where: str, key: str, configured: tuple[str, ...], actual: tuple[str, ...]) -> None:
    if configured != actual:
        raise HardwareConfigError(
            f"{where}: signals.{key} {list(configured)} differ from the simulated robot's {list(actual)}; "
            "copy the simulator's names in its order"
        )
