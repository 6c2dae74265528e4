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
from metactl.emulator.firmware import Firmware

log = logging.getLogger(__name__)
_IDLE_POLL_S = 0.05


class Server:
    """One emulated robot on one endpoint; ``run()`` blocks until ``stop()`` or a signal."""

    def __init__(
        self, config: HardwareConfig, emulator: Any = None, listen: str | None = None, busy_poll: bool = False
    ):
        self.firmware = Firmware(config, emulator)
        self.decoder = pr.FrameDecoder()
        self.busy_poll = busy_poll
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
                    for frame in self.decoder.feed(data):
                        self._send(fd, self.firmware.handle(frame, time.monotonic()))
            # The watchdog runs whether or not a host is connected; with none, its FAULT has nowhere to go.
            faults = self.firmware.poll(time.monotonic())
            fd = self._endpoint(0.0)
            if fd is not None:
                self._send(fd, faults)
        self._close()
        return self.stats()

    def stats(self) -> dict[str, Any]:
        d = self.decoder
        return {
            **dataclasses.asdict(self.firmware.stats),
            "frames_ok": d.frames_ok,
            "bad_frames": d.bad_frames,
            "oversized_frames": d.oversized_frames,
        }

    def _timeout(self) -> float:
        """How long a wait may block: until the watchdog's deadline, at most ``_IDLE_POLL_S``; 0 if busy-polling."""
        if self.busy_poll:
            return 0.0  # like firmware in its main loop: never sleep, answer within microseconds
        deadline = self.firmware.next_deadline
        return _IDLE_POLL_S if deadline is None else max(0.0, min(_IDLE_POLL_S, deadline - time.monotonic()))

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

    def _send(self, fd: int, messages: list[pr.Message]) -> None:
        for msg in messages:
            data = pr.encode(msg, self._seq, time.monotonic_ns() // 1000)
            self._seq = (self._seq + 1) % 65536
            try:
                while data:
                    data = data[os.write(fd, data) :]
            except OSError as e:  # the host went away mid-frame: it will resync on its next frame
                log.info("write failed (%s); dropping the frame", e)
                return

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
) -> dict[str, Any]:
    """Run the emulator of ``config`` until SIGTERM/SIGINT; announce its address (and write it to ``port_file``,
    atomically, for scripts and tests). ``emulator`` overrides the config's ``[emulator]`` section. ``busy_poll``
    polls the line without sleeping (a core of its own, like a motor controller's main loop). Counters."""
    server = Server(config, emulator, listen, busy_poll)

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
