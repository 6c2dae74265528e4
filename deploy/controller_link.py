"""The host's end of protocol version 2: a motor controller that runs the policy itself (``docs/protocol.md``).

Opening is the handshake: HELLO in version 2 until an ``InfoV2`` answers; the robot's id, sizes, period and
its compiled-in policy (size and ``policy_id``, the CRC-32 of its structure) are checked against the hardware
config and the bundle. A controller that speaks only version 1 answers a version-1 HELLO and is refused with
one line saying so, instead of timing out. Then, between episodes, ``upload`` sends a parameter vector in
chunks, each acknowledged, and commits it with its CRC-32 (skipped when the controller already holds it);
``episode`` starts one episode, feeds the controller's watchdog with KEEPALIVEs while the STEPs stream in,
and returns its EPISODE_END. Stdlib, numpy and pyserial only: this runs on the robot host.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from metactl.deploy import protocol as pr
from metactl.deploy import protocol2 as p2
from metactl.deploy.c_export import params_crc
from metactl.deploy.errors import BundleError, HardwareConfigError
from metactl.deploy.hardware_config import HardwareConfig
from metactl.deploy.serial_robot import NoHardwareError, RobotFaultError, open_port
from metactl.deploy.transport import LinkLostError, SerialTransport

log = logging.getLogger(__name__)
_HANDSHAKE_ATTEMPTS = 3
_UPLOAD_ATTEMPTS = 2


class ProtocolVersionError(HardwareConfigError):
    """The controller does not speak protocol version 2 (on-controller control)."""


@dataclasses.dataclass
class UploadStats:
    uploads: int = 0
    skipped: int = 0
    chunks: int = 0
    seconds: float = 0.0


class ControllerLink:
    """The controller of ``config`` on ``port`` (default ``[serial] port``), spoken to in protocol version 2."""

    def __init__(self, config: HardwareConfig, port: str | None = None):
        if config.serial is None:
            raise HardwareConfigError(f"hardware config {config.path}: policy_on = 'controller' needs [serial]")
        self.config, self.settings = config, config.serial
        self.port = port or config.serial.port
        self.transport = SerialTransport(self.port, self.settings.baud, self.settings.reply_timeout_s,
                                         encode=p2.encode, decoder=p2.frame_decoder)  # fmt: skip
        self.faults: list[tuple[float, int, str]] = []
        self.uploads = UploadStats()
        self._closed = False
        open_port(self.transport)
        try:
            self.info = self._handshake()
            self._check_info(self.info)
        except BaseException:
            self.transport.close()
            raise
        self.params_crc = self.info.params_crc

    @property
    def watchdog_s(self) -> float:
        return self.info.watchdog_us * 1e-6

    def close(self) -> None:
        """Safe-stop (best effort), then release the port (idempotent)."""
        if not self._closed:
            self._closed = True
            self.safe_stop()
            self.transport.close()

    def check_policy(self, param_count: int, policy_id: int, source: str) -> None:
        """Refuse a bundle whose policy differs from the one compiled into the controller."""
        if (param_count, policy_id) != (self.info.param_count, self.info.policy_id):
            raise BundleError(
                f"the controller on {self.port} runs a policy with {self.info.param_count} parameters and id "
                f"{self.info.policy_id:08x}, the bundle {source} one with {param_count} and id {policy_id:08x} "
                "(another architecture or normalizer); build and flash the firmware from this bundle"
            )

    def upload(self, params: np.ndarray) -> bool:
        """Make ``params`` the controller's parameters (between episodes); False if it already held them."""
        values = np.asarray(params, dtype="<f4")
        crc = params_crc(values)
        if crc == self.params_crc:
            self.uploads.skipped += 1
            return False
        t0 = time.perf_counter()
        chunk = max(1, self.info.max_chunk)
        for attempt in range(_UPLOAD_ATTEMPTS):
            acks = [self._request(p2.Params(k, values[k : k + chunk])) for k in range(0, values.size, chunk)]
            self.uploads.chunks += len(acks)
            if all(a.status == p2.AckStatus.STAGED for a in acks):
                ack = self._request(p2.ParamsCommit(values.size, crc))
                if ack.status == p2.AckStatus.APPLIED and ack.params_crc == crc:
                    self.params_crc = crc
                    self.uploads.uploads += 1
                    self.uploads.seconds += time.perf_counter() - t0
                    return True
                acks.append(ack)
            bad = next(a for a in acks if a.status != p2.AckStatus.STAGED)
            log.warning("PARAMS upload attempt %d refused: %s", attempt + 1, p2.AckStatus(bad.status).name)
        raise RobotFaultError(f"the controller on {self.port} refused the parameters ({p2.AckStatus(bad.status).name})")

    def episode(self, seed: int, steps: int, flags: int, on_step: Callable[[p2.Step], None]) -> p2.EpisodeEnd:
        """Run one episode on the controller; ``on_step`` sees every streamed STEP (it may raise to stop)."""
        start = self.transport.send(p2.EpisodeStart(int(seed) % 2**64, steps, flags))
        feed_every = self.watchdog_s / 4
        # This long without a frame mid-episode and the link is lost (generous: the controller streams every period).
        silence = max(1.0, 4 * self.watchdog_s, 20 * self.config.control.period_s, 10 * self.settings.reply_timeout_s)
        last_feed = last_heard = time.perf_counter()
        self.transport.send(p2.Keepalive())
        while True:
            frame = self.transport.receive(min(last_feed + feed_every, last_heard + silence))
            now = time.perf_counter()
            if now - last_feed >= feed_every:
                self.transport.send(p2.Keepalive())
                last_feed = now
            if frame is None:
                if now - last_heard >= silence:
                    raise LinkLostError(f"{self.port}: the controller said nothing for {silence:.1f} s mid-episode")
                continue
            last_heard = now
            msg = frame.msg
            if isinstance(msg, pr.Fault):
                self._fault(msg)
            elif isinstance(msg, p2.Step) and msg.episode_seq == start:
                on_step(msg)
            elif isinstance(msg, p2.EpisodeEnd) and msg.episode_seq == start:
                return msg

    def status(self) -> p2.StatusReport:
        report = self._request(p2.Status(), p2.StatusReport)
        return report

    def safe_stop(self) -> bool:
        """SAFE_STOP (ends a running episode); whether the controller confirmed it with a stopped STATE."""
        try:
            seq = self.transport.send(pr.SafeStop())
            deadline = time.perf_counter() + max(self.settings.reply_timeout_s, 0.5)
            while (frame := self.transport.receive(deadline)) is not None:
                if isinstance(frame.msg, pr.State) and frame.msg.cmd_seq == seq:
                    return bool(frame.msg.flags & pr.FLAG_STOPPED)
                if isinstance(frame.msg, pr.Fault):
                    self._fault(frame.msg)
        except LinkLostError:
            pass
        return False

    def describe(self) -> dict[str, Any]:
        return {"link": "serial", "port": self.port, "robot_id": self.info.robot_id, "policy_on": "controller",
                "protocol": p2.PROTOCOL_VERSION, "policy_id": f"{self.info.policy_id:08x}"}  # fmt: skip

    def counters(self) -> dict[str, int]:
        return dict(vars(self.transport.counters))

    def _fault(self, msg: pr.Fault) -> None:
        self.faults.append((time.monotonic(), int(msg.code), msg.message))
        log.warning("controller fault %s: %s", msg.code, msg.message)

    def _request(self, msg: Any, want: type = p2.ParamsAck) -> Any:
        """Send ``msg`` and wait for the answer of type ``want`` that refers to it."""
        seq = self.transport.send(msg)
        deadline = time.perf_counter() + max(self.settings.reply_timeout_s, 0.5)
        while (frame := self.transport.receive(deadline)) is not None:
            if isinstance(frame.msg, want) and frame.msg.cmd_seq == seq:
                return frame.msg
            if isinstance(frame.msg, pr.Fault):
                self._fault(frame.msg)
        self.transport.counters.timeouts += 1
        raise LinkLostError(f"{self.port}: no {want.__name__} for {type(msg).__name__}")

    def _handshake(self) -> p2.InfoV2:
        wait = self.settings.handshake_timeout_s / _HANDSHAKE_ATTEMPTS
        try:
            for attempt in range(_HANDSHAKE_ATTEMPTS + 1):
                v1 = attempt == _HANDSHAKE_ATTEMPTS  # last: does a version-1 robot answer?
                self.transport.send(pr.Hello(), pr.encode if v1 else None)
                deadline = time.perf_counter() + wait
                while (frame := self.transport.receive(deadline)) is not None:
                    msg = frame.msg
                    if isinstance(msg, p2.InfoV2):
                        return msg
                    if isinstance(msg, pr.Info) or (isinstance(msg, pr.Fault) and msg.code == pr.FaultCode.VERSION):
                        what = "answers protocol version 1 only" if isinstance(msg, pr.Info) else msg.message
                        raise ProtocolVersionError(
                            f"the robot on {self.port} {what}; policy_on = 'controller' needs a controller that "
                            "speaks protocol version 2 (flash the reference firmware, firmware/), or set "
                            "policy_on = 'host'"
                        )
        except LinkLostError as e:
            raise NoHardwareError(str(e)) from None
        raise NoHardwareError(f"no controller answered on {self.port} within {self.settings.handshake_timeout_s} s")

    def _check_info(self, info: p2.InfoV2) -> None:
        cfg = self.config
        problems = []
        if info.robot_id != cfg.robot.name:
            problems.append(f"robot id {info.robot_id!r} (robot.name is {cfg.robot.name!r})")
        if (info.obs_dim, info.act_dim) != (len(cfg.signals.observations), len(cfg.signals.actions)):
            problems.append(f"{info.obs_dim} observations and {info.act_dim} actions (signals differ)")
        if not math.isclose(info.period_us * 1e-6, cfg.control.period_s, rel_tol=1e-6, abs_tol=1e-6):
            problems.append(f"control period {info.period_us} us (control.period_s is {cfg.control.period_s})")
        if not info.caps & p2.CAP_CONTROLLER:
            problems.append("no on-controller policy (caps bit 0 clear)")
        if problems:
            raise HardwareConfigError(f"hardware config {cfg.path}: the controller on {self.port} reports "
                                      f"{'; '.join(problems)}; fix the config or flash matching firmware")  # fmt: skip
