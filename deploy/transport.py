"""Frames over pyserial: bounded waits, resync after garbage, counters, and reconnect.

Any pyserial port works: a device path (``/dev/ttyUSB0``, a pty) or a URL
(``socket://host:port``, ``loop://``). Where the port has a file descriptor, waiting
is one ``select`` and reading one ``os.read`` (no per-call reconfiguration of
pyserial's timeout on the hot path); elsewhere pyserial's own timed read is used.
"""

from __future__ import annotations

import collections
import dataclasses
import errno
import functools
import logging
import os
import select
import time
from collections.abc import Callable
from typing import Any

import serial

from metactl.deploy import protocol as pr

log = logging.getLogger(__name__)


class _Hangup(OSError):
    """The other end of the line closed (a pty whose master is gone, a device that was unplugged)."""


class LinkLostError(ConnectionError):
    """The robot stopped answering, or its device vanished and could not be reopened."""


@dataclasses.dataclass
class LinkCounters:
    """Link health: frames sent/received, bad frames (CRC, framing), oversized, frames missing from the robot's
    sequence, replies that never came (timeouts), reconnects."""

    sent: int = 0
    received: int = 0
    bad_frames: int = 0
    oversized_frames: int = 0
    missing_frames: int = 0
    timeouts: int = 0
    reconnects: int = 0


class SerialTransport:
    """Send messages and receive frames on one pyserial port. ``open()`` raises ``serial.SerialException``
    when the port cannot be opened; I/O errors later trigger one reopen attempt, then ``LinkLostError``."""

    def __init__(
        self,
        port: str,
        baud: int,
        reopen_timeout_s: float = 0.05,
        *,
        encode: Callable[[Any, int, int], bytes] = pr.encode,
        decoder: Callable[[], pr.FrameDecoder] = pr.FrameDecoder,
    ):
        """``encode`` and ``decoder`` select the protocol version(s): version 1 by default (``protocol2`` has
        the version-2 pair)."""
        self.port, self.baud, self.reopen_timeout_s = port, baud, reopen_timeout_s
        self.counters = LinkCounters()
        self._encode = encode
        self._decoder = decoder()
        self._seqs = pr.SeqTracker()
        self._pending: collections.deque[pr.Frame] = collections.deque()
        self._seq = 0
        self._ser: serial.Serial | None = None
        self._fd: int | None = None
        self._lost: str | None = None  # why the link was declared lost; every later call fails at once

    def open(self) -> None:
        self._ser = serial.serial_for_url(self.port, baudrate=self.baud, timeout=0, write_timeout=0.1)
        try:
            self._fd = self._ser.fileno()
        except (AttributeError, NotImplementedError, OSError, ValueError, serial.SerialException):
            self._fd = None  # URL ports without a descriptor use pyserial's timed read

    def close(self) -> None:
        if self._ser is not None:
            try:
                self._ser.close()
            except (OSError, serial.SerialException) as e:
                log.debug("closing %s: %s", self.port, e)
            self._ser, self._fd = None, None

    def send(self, msg: Any, encode: Callable[[Any, int, int], bytes] | None = None) -> int:
        """Encode (with ``encode``, default: this transport's version) and write ``msg``; its sequence number."""
        seq = self._seq
        self._seq = (self._seq + 1) % 65536
        data = (encode or self._encode)(msg, seq, time.monotonic_ns() // 1000)
        self._io(lambda: self._write(data))
        self.counters.sent += 1
        return seq

    def receive(self, deadline: float) -> pr.Frame | None:
        """The next good frame, waiting until ``deadline`` (``time.perf_counter()`` seconds); None on timeout."""
        while not self._pending:
            remaining = deadline - time.perf_counter()
            wait = max(0.0, remaining)  # past the deadline: one last poll of what already arrived
            self._feed(self._io(functools.partial(self._read, wait)))
            if not self._pending and remaining <= 0:
                return None
        return self._pending.popleft()

    def drain(self) -> list[pr.Frame]:
        """Every frame already received, without waiting."""
        self._feed(self._io(lambda: self._read(0.0)))
        frames = list(self._pending)
        self._pending.clear()
        return frames

    def _feed(self, data: bytes) -> None:
        if not data:
            return
        for frame in self._decoder.feed(data):
            self.counters.missing_frames += self._seqs.update(frame.seq)
            self.counters.received += 1
            self._pending.append(frame)
        self.counters.bad_frames = self._decoder.bad_frames
        self.counters.oversized_frames = self._decoder.oversized_frames

    def _write(self, data: bytes) -> None:
        if self._ser is None:
            raise serial.SerialException(f"{self.port} is not open")
        self._ser.write(data)

    def _read(self, timeout: float) -> bytes:
        ser = self._ser
        if ser is None:
            raise serial.SerialException(f"{self.port} is not open")
        if self._fd is not None:
            ready, _, _ = select.select([self._fd], [], [], max(0.0, timeout))
            if not ready:
                return b""
            data = os.read(self._fd, 65536)
            if not data:  # readable but empty: the other end hung up
                raise _Hangup(f"{self.port}: the device reports readiness but returned no data (hung up)")
            return data
        ser.timeout = max(0.0, timeout)
        data = ser.read(1)
        return data + ser.read(ser.in_waiting) if data else data

    def _io(self, op):  # type: ignore[no-untyped-def]
        """Run ``op``; on an I/O error try to reopen the port for ``reopen_timeout_s`` (a device whose node
        vanished or hung up, e.g. an unplugged adapter or a dead emulator, is not retried), else ``LinkLostError``. Once
        lost, the link stays lost: every later call fails at once, so a safe-stop never waits on a dead line."""
        if self._lost is not None:
            raise LinkLostError(self._lost)
        try:
            return op()
        except (OSError, serial.SerialException) as first:
            self.close()
            stop = time.perf_counter() + self.reopen_timeout_s
            hangup = isinstance(first, _Hangup) or getattr(first, "errno", None) == errno.EIO
            while not hangup and ("://" in self.port or os.path.exists(self.port)):
                try:
                    self.open()
                    self.counters.reconnects += 1
                    log.warning("%s: I/O error (%s); reopened the port", self.port, first)
                    return op()
                except (OSError, serial.SerialException) as e:
                    self.close()
                    first = e
                    if time.perf_counter() >= stop:
                        break
                    time.sleep(0.001)
            self._lost = f"{self.port}: {first}; the link is lost"
            raise LinkLostError(self._lost) from None
