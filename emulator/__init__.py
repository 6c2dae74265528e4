"""A robot emulator: the MuJoCo robot behind the serial protocol, behaving like motor-controller firmware.

Users run it (``metactl emulate --config X``) to test the host side over a real serial
device before touching hardware; the tests and ``metactl sim2real`` run it the same way.
``firmware`` is the protocol state machine (no I/O); ``server`` puts it behind a
pseudo-terminal or a TCP socket. ``plant`` plays the same physics on the reference C firmware's
motor bus, and ``firmware_loop`` runs that firmware (in QEMU or on its POSIX port) with the plant.
"""

from metactl.emulator.firmware import Firmware, FirmwareStats
from metactl.emulator.server import serve

__all__ = ["Firmware", "FirmwareStats", "serve"]
