"""The emulated motor controller: protocol v1 (``docs/protocol.md``) over a one-instance ``sim`` batch.

It behaves like firmware, not like a simulator API: the simulated time advances by one
control step per valid COMMAND (the host's deadline-paced loop sets the rate), the
command goes through the perturbations a real robot adds (actuator latency, motor gain,
battery sag, dead joints), the state comes back with sensor noise and bias, and a
watchdog fed only by valid commands safe-stops the motors and sends a FAULT when
commands stop coming mid-episode. RESET (the operator putting the robot back at its
start) and SAFE_STOP disarm the watchdog until the next command.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from metactl.deploy import protocol as pr
from metactl.deploy.hardware_config import HardwareConfig
from metactl.deploy.link import check_signals
from metactl.deploy.sim_robot import SimRobot
from metactl.emulator.physics import apply_model_perturbation

log = logging.getLogger(__name__)


@dataclasses.dataclass
class FirmwareStats:
    """What the firmware saw: frames by type, bad commands, watchdog trips, safe-stops, episodes."""

    commands: int = 0
    resets: int = 0
    bad_commands: int = 0
    watchdog_trips: int = 0
    safe_stops: int = 0
    heartbeats: int = 0
    hellos: int = 0


class Firmware:
    """The emulated robot of ``config`` (its ``[emulator]`` section; ``emulator`` overrides it).

    ``handle(frame, now)`` answers one decoded frame; ``poll(now)`` runs the watchdog. ``now`` is a
    monotonic wall clock [s]. Both return the messages to send, in order.
    """

    def __init__(self, config: HardwareConfig, emulator: Any = None):
        emu = emulator or config.emulator
        if emu is None:
            raise ValueError(f"hardware config {config.path} has no [emulator] section; add one with family = ...")
        self.config, self.emu = config, emu
        robot = SimRobot(emu.family, emu.task, emu.seed)  # the simulated robot (needs MuJoCo: a workstation tool)
        where = f"hardware config {config.path} [emulator]"
        check_signals(where, "observations", config.signals.observations, robot.observation_names)
        check_signals(where, "actions", config.signals.actions, robot.action_names)
        self.batch, self.family = robot.batch, robot.family
        apply_model_perturbation(self.batch, emu.payload_kg, emu.mass_scale, emu.friction_scale)
        self.low, self.high = robot.action_low, robot.action_high
        self.act_dim, self.obs_dim = len(robot.action_names), len(robot.observation_names)
        self.safe = np.asarray(config.safety.safe_command or np.zeros(self.act_dim), dtype=np.float64)
        gain = np.ones(self.act_dim) if emu.actuator_gain is None else np.asarray(emu.actuator_gain)
        self.gain = emu.motor_gain * gain
        self.watchdog_s = config.safety.watchdog_s or max(0.1, 5 * config.control.period_s)
        self.noise_std = np.broadcast_to(np.asarray(emu.obs_noise_std, dtype=np.float64), (self.obs_dim,))
        self.bias = np.broadcast_to(np.asarray(emu.obs_bias, dtype=np.float64), (self.obs_dim,))
        self.rng = np.random.default_rng(emu.seed)
        self.stats = FirmwareStats()
        self.on_disarm: Callable[[str], None] | None = None
        """Told why, whenever commanded motion ends (safe_stop, watchdog, reset): motors back in a safe state."""
        self._queue: collections.deque[np.ndarray] = collections.deque()
        self._armed_since: float | None = None  # time of the last valid command while armed
        self._stopped = False
        self._fault = False
        self._done = False
        self._t = 0.0
        self._reward = 0.0
        self._reset(emu.seed)  # power-on state: the robot at its start pose

    def handle(self, frame: pr.Frame, now: float) -> list[pr.Message]:
        """The replies to one good frame from the host."""
        msg = frame.msg
        if isinstance(msg, pr.Command):
            return self._command(frame.seq, msg.cmd, now)
        if isinstance(msg, pr.Reset):
            self.stats.resets += 1
            self._disarm("reset")
            self._reset(msg.seed)
            return [self._state(frame.seq)]
        if isinstance(msg, pr.SafeStop):
            self.stats.safe_stops += 1
            self._disarm("safe_stop")
            self._safe_stop()
            return [self._state(frame.seq)]
        if isinstance(msg, pr.Hello):
            self.stats.hellos += 1
            return [self.boot_announcement()]
        if isinstance(msg, pr.Heartbeat):
            self.stats.heartbeats += 1
            return [pr.Heartbeat()]
        return []  # robot-bound only; anything else from the host is ignored

    def boot_announcement(self) -> pr.Info:
        """What the firmware sends unsolicited when it (re)boots: its INFO, so a host mid-run knows it rebooted."""
        period_us = round(self.config.control.period_s * 1e6)
        return pr.Info(self.config.robot.name, self.obs_dim, self.act_dim, period_us)

    def poll(self, now: float) -> list[pr.Message]:
        """The watchdog: a FAULT (and motors safe-stopped) when no valid command came for ``watchdog_s``."""
        if self._armed_since is None or now - self._armed_since < self.watchdog_s:
            return []
        late = now - self._armed_since
        self.stats.watchdog_trips += 1
        self._disarm("watchdog")
        self._safe_stop()
        self._fault = True
        log.warning("watchdog: no valid command for %.1f ms; motors safe-stopped", late * 1e3)
        return [pr.Fault(pr.FaultCode.WATCHDOG, f"no valid command for {late * 1e3:.1f} ms; motors safe-stopped")]

    @property
    def next_deadline(self) -> float | None:
        """When the watchdog fires if no command comes (monotonic [s]), or None when disarmed."""
        return None if self._armed_since is None else self._armed_since + self.watchdog_s

    def _command(self, seq: int, cmd: np.ndarray, now: float) -> list[pr.Message]:
        cmd = np.asarray(cmd, dtype=np.float64)
        if cmd.shape != (self.act_dim,) or not np.all(np.isfinite(cmd)):
            self.stats.bad_commands += 1
            self._fault = True
            what = f"size {cmd.size}, want {self.act_dim}" if cmd.shape != (self.act_dim,) else "non-finite values"
            self._step(self.safe)
            return [pr.Fault(pr.FaultCode.BAD_COMMAND, f"command rejected ({what}); safe command applied"),
                    self._state(seq)]  # fmt: skip
        self.stats.commands += 1
        if self._stopped:  # latched until RESET: the motors stay safe whatever the host sends
            self._step(self.safe)
            return [self._state(seq)]
        self._armed_since = now
        self._queue.append(np.clip(cmd, self.low, self.high))
        applied = self._queue.popleft()
        sag = max(0.0, 1.0 - self.emu.battery_sag_per_s * self._t)
        self._step(applied * self.gain * sag)
        return [self._state(seq)]

    def _step(self, ctrl: np.ndarray) -> None:
        obs, reward, terminated = self.batch.step(ctrl[None])
        self._obs, self._reward, self._done = obs[0], float(reward[0]), self._done or bool(terminated[0])
        self._t += self.family.control_period

    def _reset(self, seed: int) -> None:
        self._obs = self.batch.reset([int(seed) % 2**31])[0]
        self._queue = collections.deque(self.safe.copy() for _ in range(self.emu.latency_steps))
        self._armed_since, self._stopped, self._fault, self._done = None, False, False, False
        self._t, self._reward = 0.0, 0.0

    @property
    def armed(self) -> bool:
        """Motors under commanded motion (a valid COMMAND since the last RESET, no stop since)."""
        return self._armed_since is not None

    def _disarm(self, cause: str) -> None:
        if self.armed and self.on_disarm is not None:
            self.on_disarm(cause)

    def _safe_stop(self) -> None:
        self._stopped, self._armed_since = True, None

    def _state(self, seq: int) -> pr.State:
        flags = (pr.FLAG_DONE if self._done else 0) | (pr.FLAG_FAULT if self._fault else 0)
        flags |= pr.FLAG_STOPPED if self._stopped else 0
        obs = self._obs + self.bias + self.noise_std * self.rng.standard_normal(self.obs_dim)
        return pr.State(seq, flags, self._reward, obs.astype(np.float32))
