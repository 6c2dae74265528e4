"""One run on one robot: open it (or its simulated stand-in), start it up, pace, guard, log, survive link loss.

Start-up: handshake (opening the link) → the safe command → a ramp to the configured
start pose → episodes. Every command goes through the safety layer; every control step
is deadline-paced and timed per section; state, commands, timings, faults and link
switches go to the run's MCAP log. No hardware answering at start → the ``[fallback]``
simulation, said loudly; the link lost (or the robot faulted) mid-run → safe-stop,
then continue in simulation or stop, as ``fallback.on_link_loss`` says.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import numpy as np

from metactl.deploy.hardware_config import HardwareConfig
from metactl.deploy.link import RobotLink
from metactl.deploy.links import open_link
from metactl.deploy.pacing import LoopTimer
from metactl.deploy.safety import SafetyLayer, SafetyStopError
from metactl.deploy.serial_robot import NoHardwareError, RobotFaultError, RobotRebootError
from metactl.deploy.sim_robot import open_fallback
from metactl.deploy.transport import LinkLostError

log = logging.getLogger(__name__)
FAILURES = (LinkLostError, RobotFaultError, RobotRebootError, SafetyStopError)
"""What can end an episode on a robot: the session decides what happens next (``_on_failure``)."""
FAILURE_KINDS = {LinkLostError: "link_lost", RobotFaultError: "robot_fault", RobotRebootError: "robot_reboot"}
MAX_RETRIES = 3
"""Reconnects for one episode before the run gives up on the robot."""
Logger = Callable[[str, dict[str, Any], int], None]
"""``log(topic, record, t_ns)``: where a session's records go (``RunLogger.log``)."""


class Controller(Protocol):
    """What drives the robot through one episode: an ES policy with fixed parameters, or adaptive MPC."""

    def reset(self) -> None:
        """Start of an episode."""

    def act(self, obs: np.ndarray, fresh: bool) -> np.ndarray:
        """Command [act_dim] for observation [obs_dim]; ``fresh=False``: the robot's answer was lost and ``obs``
        is the previous state again."""

    def applied(self, sent: np.ndarray) -> None:
        """The command really sent (after the safety layer and the actuator limits) for the last ``act``."""

    # Optional: ``rewarded(reward: float) -> None``, called with each step's reward before the next ``act``
    # (0 when the robot's answer was lost), for a controller whose policy reads rewards (RL²).


class PolicyController:
    """A policy graph with a fixed parameter vector (ES-MAML's queries and evaluations): stateless."""

    def __init__(self, act: Callable[[np.ndarray, np.ndarray], np.ndarray], params: np.ndarray | None):
        self._act, self.params = act, params

    def reset(self) -> None:
        pass

    def act(self, obs: np.ndarray, fresh: bool) -> np.ndarray:
        return self._act(obs, self.params)

    def applied(self, sent: np.ndarray) -> None:
        pass


class RunStoppedError(RuntimeError):
    """The run ended early, safely: ``reason`` is ``link_lost`` (``on_link_loss = "stop"``), ``robot_fault`` (the
    robot safe-stopped itself) or ``safety_stop`` (a state limit, too many non-finite commands)."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


class RobotSession:
    """The robot of ``config``; ``port`` overrides ``[serial] port``; ``task`` a simulated robot's task.

    ``log_fn(topic, record, t_ns)`` receives every log record (e.g. ``RunLogger.log``); ``idle_fn(until)`` is
    told when the loop sleeps (e.g. ``RunLogger.set_budget``); ``time_scale`` > 1 paces faster than real time (for
    emulated or simulated robots), 0 runs unpaced. Records are stamped with wall time on a paced run and with the
    robot's simulated time (from the run's start, one control period per step) on an unpaced one, so a log of a
    simulation replays at the robot's own speed.
    """

    def __init__(
        self,
        config: HardwareConfig,
        *,
        task: int | Mapping[str, Any] | None = None,
        port: str | None = None,
        log_fn: Logger | None = None,
        time_scale: float = 1.0,
        idle_fn: Callable[[float], None] | None = None,
    ):
        self.config, self.task = config, task
        self._log = log_fn or (lambda topic, record, t_ns=None: None)
        self._t0_ns, self._steps_done = time.time_ns(), 0
        self._simulated_time = time_scale == 0
        self.safety = SafetyLayer(config, sink=self.log_fn)
        self.timer = LoopTimer(config.control.period_s, time_scale, idle_fn)
        self._idle_fn = idle_fn
        self.events: list[dict[str, Any]] = []
        self._faults_seen = 0
        self._episode_index = 0
        self.missed_steps = 0
        self._dropped_counters: dict[str, int] = {}  # summed counters of serial links dropped (failover, reconnect)
        self._dropped: RobotLink | None = None
        self.failed_over = False  # the run continued (or started) on the [fallback] simulation
        self.reconnects = 0  # the link re-established after a loss or a robot's reboot
        self._retries = 0  # failures of the current episode (a reconnect runs it again, a few times at most)
        self._port = port
        self.link = self._open(port)
        try:
            try:
                self._startup()
            except FAILURES as e:
                self._on_failure(e)  # RunStoppedError, or the run continues on the simulation
        except BaseException:  # anything else (Ctrl-C, SIGTERM, a bad fallback): never leave the robot running
            self.close()
            raise

    def log_fn(self, topic: str, record: dict[str, Any]) -> None:
        """Log ``record`` on ``topic``, stamped with the session's clock (wall time, or simulated time unpaced)."""
        if self._simulated_time:
            self._log(topic, record, self._t0_ns + round(self._steps_done * self.config.control.period_s * 1e9))
        else:
            self._log(topic, record, time.time_ns())

    def close(self) -> None:
        """Safe-stop and release the robot (idempotent)."""
        if self.link is not None and self.link is not self._dropped:
            self.link.close()
        self.link = None  # type: ignore[assignment]

    def __enter__(self) -> RobotSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def episode(
        self, controller: Controller, seed: int, steps: int, observations: list[np.ndarray] | None = None
    ) -> tuple[float, int]:
        """(return, length) of one episode; re-run on the simulation if the link fails over to it. Every observation
        of the episode is appended to ``observations`` if given (the start state first)."""
        while True:
            if observations is not None:
                observations.clear()
            try:
                result = self._episode(controller, seed, steps, observations)
                self._retries = 0
                return result
            except FAILURES as e:
                self._on_failure(e)
            finally:
                self._release_log_writer()  # between episodes

    def _episode(
        self, controller: Controller, seed: int, steps: int, observations: list[np.ndarray] | None
    ) -> tuple[float, int]:
        """Each control step: wake at the deadline, read the robot's answer to the last command, infer,
        guard, write, log. The robot answers while the loop sleeps, so a cycle never waits on the line."""
        link, timer, safety, log_fn = self.link, self.timer, self.safety, self.log_fn
        index = self._episode_index
        self._episode_index += 1
        link.reset(seed)
        safety.reset()
        controller.reset()
        state = link.read_state()
        if observations is not None:
            observations.append(state.obs)
        total, length = 0.0, 0
        cmd = sent = safety.safe_command  # what the previous cycle sent (logged with the state it caused)
        rewarded = getattr(controller, "rewarded", None)
        timer.start()
        for step in range(steps + 1):
            timer.wait()
            if step > 0:
                self._steps_done += 1
                state = link.read_state()
                timer.lap("read")
                safety.check_state(state.obs)
                length += 1
                if state.fresh:
                    total += state.reward
                else:  # the answer never came: this transition's reward is unknown, not the last one again
                    self.missed_steps += 1
                    log_fn("/fault", {"source": "runtime", "code": "missed_reply", "episode": index, "step": step - 1})
                if rewarded is not None:
                    rewarded(state.reward if state.fresh else 0.0)
                if observations is not None:
                    observations.append(state.obs)
                log_fn("/state", {"episode": index, "step": step - 1, "t": state.t, "obs": state.obs,
                                  "reward": state.reward})  # fmt: skip
                log_fn("/command", {"episode": index, "step": step - 1, "policy": cmd, "sent": sent})
                self._log_robot_faults()
                timer.lap("log")
                if state.done or step == steps:
                    break
            cmd = controller.act(state.obs, state.fresh)
            timer.lap("infer")
            safe = safety.command(cmd)
            timer.lap("safety")
            sent = link.write_command(safe)
            timer.lap("write")
            controller.applied(sent)
        link.safe_stop()  # a robot holds still between episodes, its watchdog disarmed
        jit = timer.jitter[-length:] if timer.jitter else []
        log_fn("/timing", {"episode": index, "steps": length, "jitter_max_ms": 1e3 * max(jit, default=0.0)})
        return total, length

    def _open(self, port: str | None) -> RobotLink:
        try:
            link = open_link(self.config, self.task, port)
        except NoHardwareError as e:
            if self.config.fallback is None:
                raise NoHardwareError(f"{e}; add a [fallback] section to run on simulation instead") from None
            self._switch("none", f"no hardware: {e}")
            return open_fallback(self.config, self.task)
        self._event("/link", {"event": "open", "link": link.describe()})
        return link

    def _startup(self) -> None:
        """Safe command, then a paced ramp to the start pose (robots that hold a state between episodes)."""
        if not getattr(self.link, "holds_state", False):
            return
        s = self.config.safety
        pose = self.safety.safe_command if s.startup_pose is None else np.asarray(s.startup_pose)
        steps = max(1, s.startup_steps)
        self.timer.start()
        try:
            for k in range(steps + 1):
                self.timer.wait()
                cmd = self.safety.safe_command + (pose - self.safety.safe_command) * (k / steps)
                self.link.write_command(self.safety.command(cmd))
                self.link.read_state()
        finally:
            self._release_log_writer()
        self._event("/link", {"event": "startup_done", "steps": steps})

    def _on_failure(self, error: Exception) -> None:
        t0 = time.perf_counter()
        confirmed = self.link.safe_stop()
        kind = FAILURE_KINDS.get(type(error), "safety_stop")
        self._log_robot_faults()
        self._event(
            "/fault",
            {"source": "runtime", "code": kind, "detail": str(error), "safe_stop_confirmed": confirmed,
             "safe_stop_ms": 1e3 * (time.perf_counter() - t0)},
        )  # fmt: skip
        if kind != "safety_stop" and self._reconnect(kind):
            return  # the episode runs again on the re-established link
        policy = self.config.fallback.on_link_loss if self.config.fallback else "stop"
        self._drop_link()
        if kind == "safety_stop" or policy == "stop":
            raise RunStoppedError(kind, f"{error}; the robot was safe-stopped and the run ended") from None
        self._switch(kind, str(error))
        self.link = open_fallback(self.config, self.task)
        self._faults_seen = 0

    def _reconnect(self, kind: str) -> bool:
        """Re-handshake the serial robot for up to ``serial.reconnect_s`` and rerun its start-up; whether it came
        back. A robot that keeps failing is not retried for ever: ``MAX_RETRIES`` per episode."""
        serial = self.config.serial
        if serial is None or serial.reconnect_s <= 0 or self.failed_over or self._retries >= MAX_RETRIES:
            return False
        self._retries += 1
        self._drop_link()
        deadline = time.monotonic() + serial.reconnect_s
        while time.monotonic() < deadline:
            try:
                self.link = open_link(self.config, self.task, self._port)
                self.link.reset(None)  # clears the latched safe stop (ours, or the watchdog's) before the ramp
                self._startup()
            except (NoHardwareError, *FAILURES) as e:
                log.info("reconnect after %s: %s", kind, e)
                self._drop_link()
                time.sleep(0.1)
                continue
            self.reconnects += 1
            self._faults_seen = 0
            self._event("/link", {"event": "reconnected", "after": kind, "attempt": self._retries})
            log.warning("link re-established after %s; the episode runs again", kind)
            return True
        self._event("/link", {"event": "reconnect_failed", "after": kind, "reconnect_s": serial.reconnect_s})
        return False

    def _drop_link(self) -> None:
        """Close a failed link (quietly, once), keeping its counters for the run's health record."""
        if self.link is None or self.link is self._dropped:
            return
        self._dropped = self.link
        for k, v in (self.link.counters() if hasattr(self.link, "counters") else {}).items():
            self._dropped_counters[k] = self._dropped_counters.get(k, 0) + v
        try:
            self.link.close()
        except (LinkLostError, OSError) as e:
            log.debug("closing the failed link: %s", e)

    def link_counters(self) -> dict[str, int]:
        """Counters of every serial link of the run (those dropped on a reconnect or failover included)."""
        live = self.link is not None and self.link is not self._dropped and hasattr(self.link, "counters")
        current = self.link.counters() if live else {}
        return {k: current.get(k, 0) + self._dropped_counters.get(k, 0) for k in {*current, *self._dropped_counters}}

    def _release_log_writer(self) -> None:
        """Outside the paced loop the log writer may run whenever it likes."""
        if self._idle_fn is not None:
            self._idle_fn(math.inf)

    def _switch(self, reason: str, detail: str) -> None:
        self.failed_over = True
        fb = self.config.fallback
        msg = f"NO HARDWARE ({detail}): RUNNING ON SIMULATION {fb.family!r}" if reason == "none" else (
            f"LINK {reason.upper()} ({detail}): CONTINUING ON SIMULATION {fb.family!r}")  # fmt: skip
        log.warning(msg)
        print(f"*** {msg} ***", file=sys.stderr, flush=True)
        self._event("/link", {"event": "switch_to_sim", "reason": reason, "detail": detail, "family": fb.family})

    def _log_robot_faults(self) -> None:
        faults = getattr(self.link, "faults", ())
        for t, code, message in faults[self._faults_seen :]:
            self._event("/fault", {"source": "robot", "code": code, "detail": message, "t": t})
        self._faults_seen = len(faults)

    def _event(self, topic: str, record: dict[str, Any]) -> None:
        self.events.append({"topic": topic, **record})
        self.log_fn(topic, record)
