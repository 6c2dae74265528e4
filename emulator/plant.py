"""The emulator in its plant role: MuJoCo physics behind the firmware's motor/sensor bus (its second UART).

On a real robot the motor controller writes PWM and reads encoders; here the reference firmware
(``firmware/``, on the POSIX port or in QEMU) talks protocol v1 to this process over a serial line,
as the host of a simple robot: HELLO/INFO once, RESET(seed) to start an episode, one COMMAND per
control period answered by the STATE after it. The physics is the emulator's (``emulator.firmware``,
with the config's ``[emulator]`` perturbations) stepped once per motor write, so the closed loop does
not depend on bus latency. The plant has no watchdog or safety logic of its own: that is the
firmware's job. The reward is a sensor reading here (on hardware: motion capture or odometry).

Every COMMAND is recorded, with the firmware's clock from its header, in a JSON-lines log, so tests
can see what the motors were told and when (e.g. the safe command after a watchdog trip).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import select
import signal
import time
import tty
from typing import Any

from metactl.deploy import protocol as pr
from metactl.deploy.hardware_config import HardwareConfig, load_hardware_config
from metactl.emulator.firmware import Firmware

log = logging.getLogger(__name__)


class Plant:
    """The physics of ``config``'s ``[emulator]`` section on the serial device ``device`` (opened, not created)."""

    def __init__(self, config: HardwareConfig, device: str, log_path: str | None = None, emulator: Any = None):
        self.physics = Firmware(config, emulator)
        self.decoder = pr.FrameDecoder()
        self.fd = os.open(device, os.O_RDWR | os.O_NOCTTY)
        tty.setraw(self.fd)
        self._log = open(log_path, "a") if log_path else None  # closed in close()
        self._seq = 0
        self._stop = False
        self.commands = 0

    def stop(self) -> None:
        self._stop = True

    def run(self) -> dict[str, Any]:
        """Answer the firmware until ``stop()``; the physics' and the decoder's counters."""
        try:
            while not self._stop:
                ready, _, _ = select.select([self.fd], [], [], 0.1)
                if not ready:
                    continue
                try:
                    data = os.read(self.fd, 4096)
                except OSError:  # the firmware's side of the line went away
                    time.sleep(0.01)
                    continue
                for frame in self.decoder.feed(data):
                    self._answer(frame)
        finally:
            self.close()
        return {"commands": self.commands, "bad_frames": self.decoder.bad_frames, "frames_ok": self.decoder.frames_ok}

    def close(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def _answer(self, frame: pr.Frame) -> None:
        now = time.monotonic()
        msg = frame.msg
        for reply in self.physics.handle(frame, now):  # no poll(): the plant has no watchdog of its own
            data = pr.encode(reply, self._seq, time.monotonic_ns() // 1000)
            self._seq = (self._seq + 1) % 65536
            while data:
                data = data[os.write(self.fd, data) :]
        if isinstance(msg, pr.Command | pr.Reset) and self._log is not None:
            record = {"t_us": frame.t_us, "monotonic": now, "answered": time.monotonic(), "seq": frame.seq}
            if isinstance(msg, pr.Command):
                self.commands += 1
                record["cmd"] = [float(v) for v in msg.cmd]
            else:
                record["reset"] = msg.seed
            self._log.write(json.dumps(record) + "\n")
            self._log.flush()


def read_plant_log(path: str) -> list[dict[str, Any]]:
    """The records of a plant log in arrival order: ``t_us`` (the firmware's clock in the frame's header),
    ``monotonic`` (arrival) and ``answered`` (reply written) on this machine's clock, ``seq``, ``cmd`` or ``reset``."""
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def main(argv: list[str] | None = None) -> int:
    """``python -m metactl.emulator.plant --config C --device /dev/pts/N [--log L] [--ready-file R]``."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True, help="hardware config with an [emulator] section")
    p.add_argument("--device", required=True, help="the firmware's bus UART (a pty path)")
    p.add_argument("--log", help="append every motor command to this JSON-lines file")
    p.add_argument("--ready-file", help="written once the device is open")
    args = p.parse_args(argv)
    plant = Plant(load_hardware_config(args.config), args.device, args.log)
    for s in (signal.SIGTERM, signal.SIGINT):
        signal.signal(s, lambda signum, frame: plant.stop())
    if args.ready_file:
        with open(args.ready_file + ".tmp", "w") as f:
            f.write(args.device + "\n")
        os.replace(args.ready_file + ".tmp", args.ready_file)
    print(json.dumps(plant.run()), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
