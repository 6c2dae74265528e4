"""Start ``metactl emulate`` as a process of its own and hand back the device path it serves on.

The emulator runs in its own process, as a robot's firmware runs on its own controller: the host
under test talks to it over a real serial device (a pseudo-terminal) and nothing is shared in memory.
Used by ``metactl sim2real``, ``metactl bench loop`` and the serial tests.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import NamedTuple

_START_TIMEOUT_S = 60.0


class EmulatorHandle(NamedTuple):
    """A running emulator process: the device path to open and its process id."""

    port: str
    pid: int


def wait_for_file(path: str, proc: subprocess.Popen, log_path: str, what: str) -> str:
    """The content of ``path`` once the process ``proc`` has written it; ``RuntimeError`` with the tail of its log
    (``log_path``) if it exits or ``_START_TIMEOUT_S`` pass first."""
    deadline = time.monotonic() + _START_TIMEOUT_S
    while not os.path.exists(path):
        if proc.poll() is not None or time.monotonic() > deadline:
            with open(log_path) as f:
                raise RuntimeError(f"{what} did not start (exit {proc.poll()}): {f.read()[-500:]}")
        time.sleep(0.02)
    with open(path) as f:
        return f.read()


def stop_process(proc: subprocess.Popen) -> None:
    """SIGTERM ``proc`` if it still runs; SIGKILL it after 10 s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def emulator_process(
    config_path: str,
    work_dir: str,
    scenario: str | None = None,
    busy_poll: bool = False,
    faults: tuple[str, ...] = (),
    time_scale: float = 1.0,
    stats_file: str | None = None,
) -> Iterator[EmulatorHandle]:
    """Start ``metactl emulate`` in a subprocess (its output in ``work_dir/emulator.log``); yield its handle;
    SIGTERM it on exit. ``faults``: ``--fault`` specs (``emulator.faults``); ``time_scale``: its clock's speed;
    ``stats_file``: where it writes its counters, faults and timeline (JSON) when stopped."""
    os.makedirs(work_dir, exist_ok=True)
    port_file = os.path.join(work_dir, "emulator.port")
    if os.path.exists(port_file):
        os.remove(port_file)
    cmd = [sys.executable, "-m", "metactl.cli", "emulate", "--config", config_path, "--port-file", port_file]
    if scenario is not None:
        cmd += ["--scenario", scenario]
    if busy_poll:
        cmd.append("--busy-poll")
    if faults:
        cmd += ["--fault", *faults]
    if time_scale != 1.0:
        cmd += ["--time-scale", repr(time_scale)]
    if stats_file is not None:
        cmd += ["--stats-file", stats_file]
    log_path = os.path.join(work_dir, "emulator.log")
    with open(log_path, "w") as log_file:
        proc = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT)
    try:
        yield EmulatorHandle(wait_for_file(port_file, proc, log_path, "the emulator").strip(), proc.pid)
    finally:
        stop_process(proc)
