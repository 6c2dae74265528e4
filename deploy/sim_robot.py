"""The simulated robot: a one-instance ``sim`` batch behind the ``RobotLink`` interface.

``sim`` (MuJoCo) is imported lazily, only when a simulated robot is opened: the robot-side
runtime never needs it. It also stands in for hardware: a config's ``[fallback]`` section.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from metactl.deploy.errors import HardwareConfigError
from metactl.deploy.hardware_config import HardwareConfig
from metactl.deploy.link import RobotLink, RobotState, check_signals


class SimRobot:
    """A simulated robot: one instance of a ``sim`` task family, stepped once per ``write_command``.

    ``task`` is an index into ``family.test_tasks()`` or a task dict (``Task.to_dict()`` form).
    ``seed`` seeds the episode seeds drawn when ``reset`` gets ``None``. Raises ``sim.TaskError``
    for an unknown family or a bad task.
    """

    def __init__(self, family_name: str, task: int | Mapping[str, Any] = 0, seed: int = 0):
        from metactl import sim  # lazy: only the simulated robot needs MuJoCo

        self.family = sim.make_family(family_name)
        self.task = resolve_task(sim, self.family, task)
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


def resolve_task(sim: Any, family: Any, task: int | Mapping[str, Any]) -> Any:
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


def open_sim(config: HardwareConfig, task: int | Mapping[str, Any] | None, port: str | None = None) -> RobotLink:
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
        from metactl import sim
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
