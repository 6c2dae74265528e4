"""Firmware in the loop: the reference firmware's exact binary, its motor bus on the MuJoCo plant, its host link
on a pty for the robot host.

    host runtime --(UART0 pty: protocol v1/v2)--> firmware --(UART1 pty: motor/sensor bus)--> plant (MuJoCo)

The firmware is an ARM ELF run by ``qemu-system-arm -M mps2-an386`` (both UARTs on ptys) or the POSIX
port's executable, which opens two ptys itself and announces them in QEMU's words. With ``icount_shift``
QEMU runs the guest with ``-icount shift=N``: its clock then counts instructions (2^N ns each), so the
controller's control period and watchdog are measured in its own executed instructions, independent of
how loaded the workstation is. The plant process opens the bus pty before anything is said on it (QEMU
drops bytes sent to a pty nobody has open), and the firmware says nothing before the host's first frame.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import NamedTuple

from metactl.emulator.launcher import stop_process, wait_for_file

_START_TIMEOUT_S = 60.0
_PTY_LINE = re.compile(r"redirected to (\S+) \(label serial(\d)\)")
QEMU_MACHINE = "mps2-an386"


class LoopHandle(NamedTuple):
    """A running arrangement: the device the host opens, the bus device, the processes and the plant's log."""

    host_port: str
    bus_port: str
    firmware_pid: int
    plant_pid: int
    plant_log: str


def is_arm_elf(path: str) -> bool:
    """An ELF for 32-bit ARM (e_machine 40), as opposed to the POSIX port's host executable."""
    with open(path, "rb") as f:
        head = f.read(20)
    return head[:4] == b"\x7fELF" and int.from_bytes(head[18:20], "little") == 40


def firmware_command(firmware: str, icount_shift: int | None = None, machine: str = QEMU_MACHINE) -> list[str]:
    """How to start ``firmware``: QEMU for an ARM ELF (two UARTs on ptys, semihosting exit), else the executable."""
    if not is_arm_elf(firmware):
        return [os.path.abspath(firmware)]
    cmd = ["qemu-system-arm", "-M", machine, "-display", "none", "-monitor", "none", "-serial", "pty", "-serial",
           "pty", "-semihosting-config", "enable=on,target=native", "-kernel", os.path.abspath(firmware)]  # fmt: skip
    if icount_shift is not None:
        cmd += ["-icount", f"shift={int(icount_shift)}"]
    return cmd


def _ptys(proc: subprocess.Popen, log_path: str) -> dict[int, str]:
    deadline = time.monotonic() + _START_TIMEOUT_S
    while True:
        with open(log_path) as f:
            found = {int(n): dev for dev, n in _PTY_LINE.findall(f.read())}
        if {0, 1} <= set(found):
            return found
        if proc.poll() is not None or time.monotonic() > deadline:
            with open(log_path) as f:
                raise RuntimeError(f"the firmware did not open its UARTs (exit {proc.poll()}): {f.read()[-800:]}")
        time.sleep(0.01)


@contextlib.contextmanager
def firmware_in_the_loop(
    firmware: str,
    config_path: str,
    work_dir: str,
    *,
    icount_shift: int | None = None,
    machine: str = QEMU_MACHINE,
) -> Iterator[LoopHandle]:
    """Start the firmware and the plant of ``config_path`` (its ``[emulator]`` section); yield where the host
    connects; stop both on exit. Logs go to ``work_dir`` (``firmware.log``, ``plant.log``, ``plant.jsonl``)."""
    os.makedirs(work_dir, exist_ok=True)
    fw_log, plant_out = os.path.join(work_dir, "firmware.log"), os.path.join(work_dir, "plant.log")
    plant_log, ready = os.path.join(work_dir, "plant.jsonl"), os.path.join(work_dir, "plant.ready")
    for path in (plant_log, ready):
        if os.path.exists(path):
            os.remove(path)
    with open(fw_log, "w") as out:
        fw = subprocess.Popen(firmware_command(firmware, icount_shift, machine), stdout=out, stderr=subprocess.STDOUT)
    plant = None
    try:
        ports = _ptys(fw, fw_log)
        cmd = [sys.executable, "-m", "metactl.emulator.plant", "--config", config_path, "--device", ports[1],
               "--log", plant_log, "--ready-file", ready]  # fmt: skip
        with open(plant_out, "w") as out:
            plant = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        wait_for_file(ready, plant, plant_out, "the plant")
        yield LoopHandle(ports[0], ports[1], fw.pid, plant.pid, plant_log)
    finally:
        if plant is not None:
            stop_process(plant)
        stop_process(fw)


def serve_firmware_in_the_loop(
    firmware: str,
    config_path: str,
    work_dir: str,
    *,
    icount_shift: int | None = None,
    announce: Callable[[str], None] = print,
) -> None:
    """Run the arrangement until SIGINT/SIGTERM, announcing where the host connects (``metactl emulate
    --firmware``)."""
    stop = []
    old = {s: signal.signal(s, lambda signum, frame: stop.append(signum)) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        with firmware_in_the_loop(firmware, config_path, work_dir, icount_shift=icount_shift) as h:
            announce(f"firmware {os.path.basename(firmware)} (pid {h.firmware_pid}) with the MuJoCo plant "
                     f"(pid {h.plant_pid}) on its motor bus {h.bus_port}")  # fmt: skip
            announce(f"connect the host to {h.host_port}, e.g. metactl run --config {config_path} --port {h.host_port}")
            while not stop:
                time.sleep(0.2)
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
