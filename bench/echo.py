"""The echo process of ``metactl bench loop``'s bare loop: a pseudo-terminal that sends back every byte it reads.

Run as ``python -m metactl.bench.echo PORT_FILE``: it writes the device path to ``PORT_FILE`` and echoes until
SIGTERM. It waits on the line with ``select`` as the emulator does, so the bare loop and the runtime see the same
kind of peer, minus the protocol and the simulation.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import tty


def serve(port_file: str) -> None:
    """Echo on a fresh pty until SIGTERM; the device path goes to ``port_file`` (atomically)."""
    master, slave = os.openpty()
    tty.setraw(slave)  # a byte pipe like a UART: no echo by the terminal, no line editing
    stopping = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    with open(port_file + ".tmp", "w") as f:
        f.write(os.ttyname(slave) + "\n")
    os.replace(port_file + ".tmp", port_file)
    while not stopping:
        ready, _, _ = select.select([master], [], [], 0.05)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:  # no host has the device open right now
                continue
            while data:
                data = data[os.write(master, data) :]


if __name__ == "__main__":
    serve(sys.argv[1])
