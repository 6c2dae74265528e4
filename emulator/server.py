"""Put the emulated firmware behind a real serial device (a pseudo-terminal) or a TCP socket.

``serve`` opens a pty pair and announces the device path a host opens with pyserial
(``/dev/pts/N``), or listens on TCP for ``socket://host:port`` (one host at a time), then
answers frames until SIGTERM/SIGINT or ``stop()``. Bytes are parsed with the same
``FrameDecoder`` as the host: garbage is counted and skipped, never fatal.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import random
import select
import signal
import socket
import threading
import time
import tty
from collections.abc import Callable
from typing import Any

from metactl.deploy import protocol as pr
from metactl.deploy.hardware_config import HardwareConfig
from metactl.emulator.faults import FaultSchedule, parse_fault
from metactl.emulator.firmware import Firmware

log = logging.getLogger(__name__)
_IDLE_POLL_S = 0.05
_TRANSIT_US = 1000
"""A host cannot act on a frame sooner than this after it left [us] (a pty delivers in ~50 us)."""


class Server:
    """One emulated robot on one endpoint; ``run()`` blocks until ``stop()`` or a signal. ``faults``: what to go wrong
    when (``emulator.faults``). ``time_scale``: the robot's clock runs this many times faster than the wall clock (its
    watchdog, fault times and delays), for a host pacing at the same scale."""

    def __init__(
        self,
        config: HardwareConfig,
        emulator: Any = None,
        listen: str | None = None,
        busy_poll: bool = False,
        faults: FaultSchedule | None = None,
        time_scale: float = 1.0,
    ):
        if not time_scale > 0:
            raise ValueError(f"--time-scale {time_scale}: must be > 0 (10: ten times faster than real time)")
        self.time_scale = time_scale
        self.config, self.emulator = config, emulator
        self.timeline: list[dict[str, Any]] = []
        """Faults injected and ends of commanded motion, in order: robot time ``t`` [s since the host's first frame],
        wall time ``wall`` [s since the epoch, comparable with a host's log], and whether motors were ``armed``."""
        self.commands_after_reboot = 0  # COMMANDs a rebooted robot got before any RESET, sent after it announced
        self.commands_in_flight = 0  # ... sent before the announcement could reach the host (on the wire already)
        self._announced_us: int | None = None  # when the boot INFO left (host clock: monotonic [us])
        self._t0: float | None = None  # robot time of the host's first frame: fault times count from it
        self._before_reboot: dict[str, int] = {}
        self.firmware = self._boot()
        self.decoder = pr.FrameDecoder()
        self.busy_poll = busy_poll
        self.faults = faults
        self.reboots = 0
        self._rng = random.Random(0)
        self._seq = 0
        self._stop = threading.Event()
        self._listener: socket.socket | None = None
        self._fd: int | None = None
        if listen is None:
            self._fd, self._slave = os.openpty()
            tty.setraw(self._slave)  # no echo, no line editing: a byte pipe like a UART
            self.address = os.ttyname(self._slave)
        else:
            host, port = _parse_listen(listen)
            try:
                self._listener = socket.create_server((host, port))
            except (OSError, OverflowError) as e:  # a port in use, a host that does not resolve
                raise ValueError(f"--listen {listen}: cannot listen there ({e}); choose another host or port") from None
            self.address = f"socket://{host}:{self._listener.getsockname()[1]}"
            self._conn: socket.socket | None = None

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> dict[str, Any]:
        """Serve until stopped; the firmware's and the decoder's counters."""
        while not self._stop.is_set():
            fd = self._endpoint(self._timeout())
            if fd is not None:
                ready, _, _ = select.select([fd], [], [], self._timeout())
                if ready:
                    data = self._read(fd)
                    if data and self._t0 is None:
                        self._t0 = self._now()
                    if not self._link_down():  # a flapping link: what the host sends is lost
                        for frame in self.decoder.feed(data):
                            self._send(fd, self._handle(frame), delayed=True)
                self._inject(fd)
            # The watchdog runs whether or not a host is connected; with none, its FAULT has nowhere to go.
            faults = self.firmware.poll(self._now())
            fd = self._endpoint(0.0)
            if fd is not None and not self._link_down():
                self._send(fd, faults)
        self._close()
        return self.stats()

    def _now(self) -> float:
        """The robot's clock [s]: the wall clock, ``time_scale`` times faster."""
        return time.monotonic() * self.time_scale

    def _elapsed(self) -> float | None:
        return None if self._t0 is None else self._now() - self._t0

    def _link_down(self) -> bool:
        t = self._elapsed()
        return self.faults is not None and t is not None and self.faults.link_down(t)

    def _inject(self, fd: int) -> None:
        """Instant faults that are due: a reboot, a burst of garbage."""
        t = self._elapsed()
        if self.faults is None or t is None:
            return
        for fault in self.faults.due(t):
            log.warning("fault injected: %s", fault.spec())
            # A flap or a delay is in force from its start (``FaultSchedule``); a reboot or garbage from now.
            onset = fault.at if fault.duration else t
            self.timeline.append({"event": "fault", "spec": fault.spec(), "kind": fault.kind, "t": onset,
                                  "duration": fault.duration,
                                  "wall": time.time() - (t - onset) / self.time_scale,
                                  "armed": self.firmware.armed})  # fmt: skip
            up = not self._link_down()  # on a link that is down, what the robot sends is lost too
            if fault.kind == "reboot":  # power-on state, the frame counter from 0, and the boot announcement
                self.firmware = self._boot(rebooted=True)
                self.decoder, self._seq, self.reboots = pr.FrameDecoder(), 0, self.reboots + 1
                if up:
                    self._send(fd, [self.firmware.boot_announcement()])
                    self._announced_us = time.monotonic_ns() // 1000
            elif fault.kind == "garbage" and up:
                self._write(fd, bytes(self._rng.randrange(1, 256) for _ in range(int(fault.amount))))

    def _boot(self, rebooted: bool = False) -> Firmware:
        """A freshly powered-on firmware; the counters of the one it replaces are kept (``stats``)."""
        if rebooted:
            for k, v in self._counters().items():
                self._before_reboot[k] = self._before_reboot.get(k, 0) + v
        firmware = Firmware(self.config, self.emulator)
        firmware.on_disarm = self._on_disarm
        self._rebooted, self._announced_us = rebooted, None
        return firmware

    def _on_disarm(self, cause: str) -> None:
        self.timeline.append({"event": "disarm", "cause": cause, "t": self._elapsed() or 0.0, "wall": time.time()})

    def _handle(self, frame: pr.Frame) -> list[pr.Message]:
        if not self._rebooted:
            return self.firmware.handle(frame, self._now())
        # Until the host RESETs it, a rebooted robot should hear nothing that moves it.
        self._rebooted = not isinstance(frame.msg, pr.Reset)
        if isinstance(frame.msg, pr.Command):  # frames carry the sender's monotonic clock, which we share
            known = self._announced_us is not None and frame.t_us > self._announced_us + _TRANSIT_US
            self.commands_after_reboot += known
            self.commands_in_flight += not known
        was_armed = self.firmware.armed
        replies = self.firmware.handle(frame, self._now())
        if self.firmware.armed and not was_armed:  # moving again: a safe stop is owed (timeline)
            self.timeline.append({"event": "armed_after_reboot", "t": self._elapsed() or 0.0, "wall": time.time()})
        return replies

    def _counters(self) -> dict[str, int]:
        d = self.decoder
        return {**dataclasses.asdict(self.firmware.stats), "frames_ok": d.frames_ok, "bad_frames": d.bad_frames,
                "oversized_frames": d.oversized_frames}  # fmt: skip

    def stats(self) -> dict[str, Any]:
        """Counters over the whole run (reboots included), the faults injected and the timeline."""
        counters = {k: v + self._before_reboot.get(k, 0) for k, v in self._counters().items()}
        injected = [[round(t, 3), f.spec()] for t, f in self.faults.injected] if self.faults else []
        return {**counters, "reboots": self.reboots, "commands_after_reboot": self.commands_after_reboot,
                "commands_in_flight_at_reboot": self.commands_in_flight,
                "faults_injected": injected, "timeline": self.timeline}  # fmt: skip

    def _timeout(self) -> float:
        """How long a wait may block: until the watchdog's deadline, at most ``_IDLE_POLL_S``; 0 if busy-polling."""
        if self.busy_poll:
            return 0.0  # like firmware in its main loop: never sleep, answer within microseconds
        deadline = self.firmware.next_deadline
        if deadline is None:
            return _IDLE_POLL_S
        return max(0.0, min(_IDLE_POLL_S, (deadline - self._now()) / self.time_scale))

    def _endpoint(self, timeout: float) -> int | None:
        """The descriptor to talk on; a TCP server waits up to ``timeout`` for a host. None: no host."""
        if self._listener is None:
            return self._fd
        if self._conn is None:
            ready, _, _ = select.select([self._listener], [], [], timeout)
            if not ready:
                return None
            self._conn, peer = self._listener.accept()
            self._conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.decoder = pr.FrameDecoder()
            log.info("host connected from %s", peer)
        return self._conn.fileno()

    def _read(self, fd: int) -> bytes:
        try:
            data = os.read(fd, 65536)
        except OSError:  # pty: no host has the device open right now
            data = b""
        if not data:
            if self._listener is not None and self._conn is not None:
                self._conn.close()
                self._conn = None
                log.info("host disconnected")
            else:
                time.sleep(0.001)
        return data

    def _send(self, fd: int, messages: list[pr.Message], delayed: bool = False) -> None:
        t = self._elapsed()
        if delayed and messages and self.faults is not None and t is not None and self.faults.delay_s(t):
            time.sleep(self.faults.delay_s(t) / self.time_scale)  # a slow controller: the answer leaves late
        for msg in messages:
            data = pr.encode(msg, self._seq, time.monotonic_ns() // 1000)
            self._seq = (self._seq + 1) % 65536
            if not self._write(fd, data):
                return

    def _write(self, fd: int, data: bytes) -> bool:
        try:
            while data:
                data = data[os.write(fd, data) :]
        except OSError as e:  # the host went away mid-frame: it will resync on its next frame
            log.info("write failed (%s); dropping the frame", e)
            return False
        return True

    def _close(self) -> None:
        if self._listener is not None:
            if self._conn is not None:
                self._conn.close()
            self._listener.close()
        else:
            os.close(self._fd)  # type: ignore[arg-type]
            os.close(self._slave)


def serve(
    config: HardwareConfig,
    *,
    emulator: Any = None,
    listen: str | None = None,
    announce: Callable[[str], None] = print,
    port_file: str | None = None,
    busy_poll: bool = False,
    faults: list[str] | tuple[str, ...] = (),
    time_scale: float = 1.0,
) -> dict[str, Any]:
    """Run the emulator of ``config`` until SIGTERM/SIGINT; announce its address (and write it to ``port_file``,
    atomically, for scripts and tests). ``emulator`` overrides the config's ``[emulator]`` section. ``busy_poll``
    polls the line without sleeping (a core of its own, like a motor controller's main loop). ``faults``: ``--fault``
    specs (``emulator.faults``); ``time_scale``: the robot's clock vs the wall clock (``Server``). Counters."""
    schedule = FaultSchedule([parse_fault(f) for f in faults]) if faults else None
    server = Server(config, emulator, listen, busy_poll, schedule, time_scale)

    def on_signal(signum: int, frame: object) -> None:
        server.stop()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        if port_file is not None:
            tmp = port_file + ".tmp"
            with open(tmp, "w") as f:
                f.write(server.address + "\n")
            os.replace(tmp, port_file)
        announce(server.address)
        return server.run()
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


def _parse_listen(listen: str) -> tuple[str, int]:
    """``tcp://HOST:PORT`` (PORT 0 = any free port) -> (host, port)."""
    if not listen.startswith("tcp://") or ":" not in listen[6:]:
        raise ValueError(f"--listen {listen!r} must look like tcp://127.0.0.1:5555 (port 0 picks a free one)")
    host, _, port = listen[6:].rpartition(":")
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"--listen {listen!r}: port {port!r} is not a port number 0..65535; e.g. tcp://127.0.0.1:5555")
    return host, int(port)
