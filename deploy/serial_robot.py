"""A robot behind a serial link (protocol v1, ``docs/protocol.md``), as a ``RobotLink``.

Opening it is the start-up handshake: HELLO until INFO answers (bounded attempts),
then the robot's id, sizes and control period are checked against the hardware
config. Every command is answered by a state with the command's sequence number;
``max_missed_replies`` missed answers in a row mean the link is lost
(``LinkLostError``), and a state saying the robot safe-stopped itself (its watchdog,
a bad command) raises ``RobotFaultError``: the runtime decides what happens next.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any

import numpy as np
import serial

from metactl.deploy import protocol as pr
from metactl.deploy.errors import HardwareConfigError
from metactl.deploy.hardware_config import HardwareConfig
from metactl.deploy.link import RobotState
from metactl.deploy.transport import LinkLostError, SerialTransport

_HANDSHAKE_ATTEMPTS = 3


class NoHardwareError(ConnectionError):
    """Nothing answered the handshake: no device, no reply, or only garbage on the line."""


class RobotFaultError(RuntimeError):
    """The robot reported a latched fault and safe-stopped its motors (e.g. its watchdog fired)."""


class RobotRebootError(RuntimeError):
    """The robot announced itself mid-run (an unsolicited INFO with its frame counter back at 0): it rebooted, and
    whatever it was doing (the episode, the start pose) is gone."""


def open_port(transport: SerialTransport) -> None:
    """Open the transport's port; ``NoHardwareError`` if there is no such device (or it cannot be opened)."""
    try:
        transport.open()
    except ValueError as e:  # pyserial: not a device path nor a URL it knows
        raise HardwareConfigError(
            f"port {transport.port!r} is neither a device path nor a pyserial URL ({e}); use e.g. /dev/ttyUSB0 or "
            "socket://host:port"
        ) from None
    except (OSError, serial.SerialException) as e:
        raise NoHardwareError(f"cannot open {transport.port}: {e}") from None


class SerialRobot:
    """The robot of ``config`` on ``port`` (default: ``[serial] port``); raises ``NoHardwareError`` when
    nothing answers, ``HardwareConfigError`` when what answers is not the configured robot."""

    holds_state = True
    """A physical robot stays where it is between commands: the session runs the start-up ramp on it."""

    def __init__(self, config: HardwareConfig, port: str | None = None):
        if config.serial is None:
            raise HardwareConfigError(f"hardware config {config.path}: robot.link = 'serial' needs a [serial] section")
        self.config, self.settings = config, config.serial
        self.port = port or config.serial.port
        self.transport = SerialTransport(self.port, self.settings.baud, self.settings.reply_timeout_s)
        self.faults: list[tuple[float, int, str]] = []  # (monotonic time, code, message) as they arrived
        self.info: pr.Info | None = None
        self._state: RobotState | None = None
        self._missed = 0
        self._pending: int | None = None  # seq of the message whose answer has not been read yet
        self._reply_deadline = 0.0
        self._t = 0.0
        open_port(self.transport)
        try:
            self.info = self._handshake()
        except BaseException:
            self.transport.close()
            raise
        self.robot_id = self.info.robot_id
        self._check_info(self.info)

    def __enter__(self) -> SerialRobot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Safe-stop the motors (best effort), then release the port."""
        if self.info is not None:
            self.info = None
            self.safe_stop()
        self.transport.close()

    def safe_stop(self) -> bool:
        """Send SAFE_STOP and wait one reply timeout for the robot to confirm; whether it did."""
        self._pending = None  # whatever was in flight is superseded
        try:
            seq = self.transport.send(pr.SafeStop())
            return self._reply(seq) is not None
        except LinkLostError:
            return False

    def reset(self, seed: int | None = None) -> None:
        self._collect()  # an unanswered command of the last episode must not answer for this reset
        self._send(pr.Reset(0 if seed is None else int(seed) % 2**64))
        self._t = 0.0
        self._state = None
        self._collect()

    def read_state(self) -> RobotState:
        """The robot's answer to the last command, waiting for it if it has not arrived yet."""
        self._collect()
        if self._state is None:  # the robot never answered (RESET, or the first command after power-on)
            raise LinkLostError(f"{self.port}: no state received from the robot yet")
        return self._state

    def write_command(self, cmd: np.ndarray) -> np.ndarray:
        """Send ``cmd`` and return at once (float32 on the wire, returned as float64): the robot answers
        while the host's loop sleeps, and ``read_state`` picks the answer up at the next control step."""
        self._collect()
        self._check_line()
        sent = np.asarray(cmd, dtype=np.float32)
        self._send(pr.Command(sent))
        self._t += self.config.control.period_s
        return sent.astype(np.float64)

    def _send(self, msg: pr.Message) -> None:
        self._pending = self.transport.send(msg)
        self._reply_deadline = time.perf_counter() + self.settings.reply_timeout_s

    def _collect(self) -> None:
        """Wait for the answer to the message in flight, if any."""
        if self._pending is not None:
            seq, self._pending = self._pending, None
            self._await_state(seq)

    def describe(self) -> dict[str, Any]:
        return {"link": "serial", "port": self.port, "robot_id": self.robot_id}

    def counters(self) -> dict[str, int]:
        """Link health counters (see ``LinkCounters``)."""
        return dict(vars(self.transport.counters))

    def _handshake(self) -> pr.Info:
        wait = self.settings.handshake_timeout_s / _HANDSHAKE_ATTEMPTS
        for _ in range(_HANDSHAKE_ATTEMPTS):
            try:
                self.transport.send(pr.Hello())
                deadline = time.perf_counter() + wait
                while (frame := self.transport.receive(deadline)) is not None:
                    if isinstance(frame.msg, pr.Info):
                        return frame.msg
            except LinkLostError as e:
                raise NoHardwareError(str(e)) from None
        c = self.transport.counters
        heard = f"{c.bad_frames} bad frames" if c.bad_frames or c.oversized_frames else "no reply"
        raise NoHardwareError(
            f"no robot answered on {self.port} within {self.settings.handshake_timeout_s} s ({heard}); "
            "check the cable, the port and that the controller is powered"
        )

    def _check_info(self, info: pr.Info) -> None:
        cfg, where = self.config, f"hardware config {self.config.path}"
        problems = []
        if info.robot_id != cfg.robot.name:
            problems.append(f"robot id {info.robot_id!r} (robot.name is {cfg.robot.name!r})")
        if info.obs_dim != len(cfg.signals.observations):
            problems.append(f"{info.obs_dim} observations (signals lists {len(cfg.signals.observations)})")
        if info.act_dim != len(cfg.signals.actions):
            problems.append(f"{info.act_dim} actions (signals lists {len(cfg.signals.actions)})")
        if not math.isclose(info.period_us * 1e-6, cfg.control.period_s, rel_tol=1e-6, abs_tol=1e-6):
            problems.append(f"control period {info.period_us} us (control.period_s is {cfg.control.period_s})")
        if problems:
            self.close()
            raise HardwareConfigError(
                f"{where}: the robot on {self.port} reports {'; '.join(problems)}; "
                "fix the config or connect the robot it describes"
            )

    def _await_state(self, seq: int) -> None:
        state = self._reply(seq, self._reply_deadline)
        if state is None:
            self._missed += 1
            if self._missed >= self.settings.max_missed_replies:
                raise LinkLostError(
                    f"{self.port}: {self._missed} replies missed in a row "
                    f"(reply timeout {self.settings.reply_timeout_s * 1e3:.1f} ms)"
                )
            if self._state is not None:  # one late reply is tolerated: the last state again, marked stale
                self._state = dataclasses.replace(self._state, fresh=False)
            return
        self._missed = 0
        self._state = RobotState(
            state.obs.astype(np.float64), float(state.reward), bool(state.flags & pr.FLAG_DONE), self._t
        )
        if state.flags & pr.FLAG_STOPPED:
            last = self.faults[-1][2] if self.faults else "no fault message received"
            raise RobotFaultError(f"{self.config.robot.name} safe-stopped its motors: {last}")

    def _reply(self, seq: int, deadline: float | None = None) -> pr.State | None:
        """The STATE answering ``seq`` (FAULTs on the way are recorded), or None after ``deadline``
        (``time.perf_counter()`` [s]; default: one reply timeout from now)."""
        if deadline is None:
            deadline = time.perf_counter() + self.settings.reply_timeout_s
        while (frame := self.transport.receive(deadline)) is not None:
            self._unsolicited(frame)
            if isinstance(frame.msg, pr.State) and frame.msg.cmd_seq == seq:
                return frame.msg
        self.transport.counters.timeouts += 1
        return None

    def _unsolicited(self, frame: pr.Frame) -> None:
        """Record a FAULT; raise ``RobotRebootError`` on a reboot's INFO; anything else is left to the caller."""
        msg = frame.msg
        if isinstance(msg, pr.Fault):
            self.faults.append((time.monotonic(), int(msg.code), msg.message))
        elif isinstance(msg, pr.Info) and frame.seq == 0 and self.info is not None:
            raise RobotRebootError(f"{msg.robot_id} announced a reboot (INFO with its frame counter at 0)")

    def _check_line(self) -> None:
        """Before a COMMAND: what arrived unasked since the last answer (a FAULT, a reboot's INFO). A robot that
        rebooted since is not sent a command that would move it."""
        for frame in self.transport.drain():
            self._unsolicited(frame)
