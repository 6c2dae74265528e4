"""The robot link: the one interface the runtime uses to talk to a robot, and its simulated implementation.

A link is a context manager with ``reset`` (start an episode), ``read_state`` and
``write_command`` (returns what was really sent, after clipping to the actuator
limits — the LeRobot ``send_action`` contract). ``SimRobot`` implements it over a
one-instance ``sim`` batch, so the whole robot path runs without hardware; a serial
link implements the same protocol. ``sim`` (MuJoCo) is imported lazily, only when
a simulated robot is opened: the robot-side runtime never needs it.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Mapping
from typing import Any, Protocol, runtime_checkable

import numpy as np

from deploy.errors import HardwareConfigError
from deploy.hardware_config import HardwareConfig


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


class SimRobot:
    """A simulated robot: one instance of a ``sim`` task family, stepped once per ``write_command``.

    ``task`` is an index into ``family.test_tasks()`` or a task dict (``Task.to_dict()`` form).
    ``seed`` seeds the episode seeds drawn when ``reset`` gets ``None``. Raises ``sim.TaskError``
    for an unknown family or a bad task.
    """

    def __init__(self, family_name: str, task: int | Mapping[str, Any] = 0, seed: int = 0):
        import sim  # lazy: only the simulated robot needs MuJoCo

        self.family = sim.make_family(family_name)
        self.task = _resolve_task(sim, self.family, task)
        try:
            self.batch = self.family.make_batch([self.task])
        except sim.TaskError:
            raise
        except (TypeError, ValueError) as e:  # e.g. a goal with the wrong number of coordinates
            raise sim.TaskError(f"task {self.task.to_dict()} does not fit family {family_name!r}: {e}") from None
        self.observation_names: tuple[str, ...] = tuple(self.family.observation_names)
        self.action_names: tuple[str, ...] = tuple(self.family.action_names)
        self.action_low = np.asarray(self.family.action_low, dtype=np.float64)
        self.action_high = np.asarray(self.family.action_high, dtype=np.float64)
        self.control_period = float(self.family.control_period)
        self._rng = np.random.default_rng(seed)
        self._seed = seed
        self._state: RobotState | None = None
        self._closed = False

    def __enter__(self) -> SimRobot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._closed = True
        self._state = None

    def reset(self, seed: int | None = None) -> None:
        self._check_open()
        episode_seed = int(self._rng.integers(2**31)) if seed is None else int(seed)
        obs = self.batch.reset([episode_seed])[0]
        self._state = RobotState(obs.astype(np.float64), 0.0, False, 0.0)

    def read_state(self) -> RobotState:
        return self._current()

    def write_command(self, cmd: np.ndarray) -> np.ndarray:
        state = self._current()
        if state.done:
            raise RuntimeError("the episode is over; call reset() before sending more commands")
        cmd = np.asarray(cmd, dtype=np.float64)
        if cmd.shape != self.action_low.shape:
            raise ValueError(f"command must have shape {list(self.action_low.shape)}, got {list(cmd.shape)}")
        if not np.all(np.isfinite(cmd)):
            raise ValueError(f"refusing to send a non-finite command {cmd.tolist()}")
        sent = np.clip(cmd, self.action_low, self.action_high)
        obs, reward, terminated = self.batch.step(sent[None])
        self._state = RobotState(obs[0].copy(), float(reward[0]), bool(terminated[0]), state.t + self.control_period)
        return sent

    def safe_stop(self) -> bool:
        """A simulated robot has no motors to stop: nothing to do."""
        return True

    def describe(self) -> dict[str, Any]:
        task = json.loads(json.dumps(self.task.to_dict()))  # tuples -> lists, as in summary.json
        return {"link": "sim", "family": self.family.name, "task": task, "seed": self._seed}

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("this SimRobot is closed; open a new one")

    def _current(self) -> RobotState:
        self._check_open()
        if self._state is None:
            raise RuntimeError("no episode started; call reset() first")
        return self._state


def _resolve_task(sim: Any, family: Any, task: int | Mapping[str, Any]) -> Any:
    """A ``sim.Task`` from a test-task index or a task dict; ``sim.TaskError`` if impossible."""
    if isinstance(task, int) and not isinstance(task, bool):
        tests = family.test_tasks()
        if not 0 <= task < len(tests):
            raise sim.TaskError(f"task index {task} is out of range; {family.name} has test tasks 0..{len(tests) - 1}")
        return tests[task]
    if not isinstance(task, Mapping):
        raise sim.TaskError(f"task must be a test-task index or a task table, got {type(task).__name__}")
    try:
        return sim.task_from_dict(dict(task))
    except (TypeError, ValueError) as e:  # missing fields / non-numeric values; TaskError is a ValueError
        raise sim.TaskError(f"task {dict(task)} is invalid: {e}") from None


def _open_sim(config: HardwareConfig, task: int | Mapping[str, Any] | None, port: str | None = None) -> RobotLink:
    if config.sim is None:
        raise HardwareConfigError(
            f"hardware config {config.path}: robot.link is 'sim' but section [sim] is missing; add family, task, seed"
        )
    return _sim_robot(config, "sim", config.sim.family, config.sim.task if task is None else task, config.sim.seed)


def open_fallback(config: HardwareConfig, task: int | Mapping[str, Any] | None = None) -> RobotLink:
    """The simulated stand-in of ``config``'s ``[fallback]`` section (checked against the config's signals)."""
    fb = config.fallback
    if fb is None:
        raise HardwareConfigError(f"hardware config {config.path}: no [fallback] section; add family, task, seed")
    return _sim_robot(config, "fallback", fb.family, fb.task if task is None else task, fb.seed)


def _sim_robot(config: HardwareConfig, section: str, family_name: str, task: Any, seed: int) -> RobotLink:
    where = f"hardware config {config.path}"
    try:
        import sim
    except ModuleNotFoundError as e:
        raise HardwareConfigError(
            f"{where}: [{section}] needs the simulation extras ({e}); install them with pip install 'metactl[sim]'"
        ) from None
    try:
        family = sim.make_family(family_name)
    except sim.TaskError as e:
        raise HardwareConfigError(f"{where}: {section}.family: {e}") from None
    try:
        robot = SimRobot(family_name, task, seed)
    except sim.TaskError as e:
        raise HardwareConfigError(f"{where}: {section}.task: {e}; fix it to match family {family.name!r}") from None
    check_signals(where, "observations", config.signals.observations, robot.observation_names)
    check_signals(where, "actions", config.signals.actions, robot.action_names)
    if not math.isclose(config.control.period_s, robot.control_period, rel_tol=1e-9):
        raise HardwareConfigError(
            f"{where}: control.period_s = {config.control.period_s} but the simulated robot steps every "
            f"{robot.control_period} s; set control.period_s = {robot.control_period}"
        )
    return robot


def _open_serial(config: HardwareConfig, task: int | Mapping[str, Any] | None, port: str | None = None) -> RobotLink:
    from deploy.serial_robot import SerialRobot  # imports this module: bound late

    return SerialRobot(config, port)


def check_signals(where: str, key: str, configured: tuple[str, ...], actual: tuple[str, ...]) -> None:
    if configured != actual:
        raise HardwareConfigError(
            f"{where}: signals.{key} {list(configured)} differ from the simulated robot's {list(actual)}; "
            "copy the simulator's names in its order"
        )


LinkFactory = Callable[[HardwareConfig, "int | Mapping[str, Any] | None", "str | None"], RobotLink]
LINK_FACTORIES: dict[str, LinkFactory] = {"sim": _open_sim, "serial": _open_serial}
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
