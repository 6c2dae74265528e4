"""Faults the emulated robot can be told to have, at given times: what a host must survive on real hardware.

``--fault`` specs (times in seconds after the host's first frame, wall clock):

- ``reboot@T``: the motor controller reboots (brown-out, firmware reset): power-on state, its frame counter back at
  0, and an unsolicited INFO announcing it (protocol v1: a robot may announce itself when it boots);
- ``flap@T:D``: the link is down for D seconds (a loose connector): nothing arrives or leaves;
- ``garbage@T:N``: N random bytes on the line (noise, a half frame);
- ``delay@T:D:MS``: for D seconds every answer leaves MS milliseconds late.

``FaultSchedule`` answers, at any moment, what is in force; the server (``emulator.server``) acts on it.
"""

from __future__ import annotations

import dataclasses
import re

KINDS = ("reboot", "flap", "garbage", "delay")
_SPEC = re.compile(r"^(reboot|flap|garbage|delay)@([0-9.]+)(?::([0-9.]+))?(?::([0-9.]+))?$")


@dataclasses.dataclass(frozen=True)
class Fault:
    """One fault: ``kind`` at ``at`` [s]; ``duration`` [s] (flap, delay), ``amount`` (garbage bytes, delay ms)."""

    kind: str
    at: float
    duration: float = 0.0
    amount: float = 0.0

    def spec(self) -> str:
        if self.kind == "reboot":
            return f"reboot@{self.at:g}"
        if self.kind == "garbage":
            return f"garbage@{self.at:g}:{self.amount:g}"
        if self.kind == "flap":
            return f"flap@{self.at:g}:{self.duration:g}"
        return f"delay@{self.at:g}:{self.duration:g}:{self.amount:g}"


def parse_fault(spec: str) -> Fault:
    """A ``--fault`` spec; ``ValueError`` naming the accepted forms."""
    m = _SPEC.match(spec.strip())
    forms = "reboot@T, flap@T:D, garbage@T:N or delay@T:D:MS (seconds, bytes, milliseconds)"
    if m is None:
        raise ValueError(f"--fault {spec!r} is not {forms}")
    kind, at, a, b = m.group(1), float(m.group(2)), m.group(3), m.group(4)
    need = {"reboot": 0, "flap": 1, "garbage": 1, "delay": 2}[kind]
    given = sum(x is not None for x in (a, b))
    if given != need:
        raise ValueError(f"--fault {spec!r}: {kind} takes {need} value(s) after the time; forms: {forms}")
    if kind == "flap":
        return Fault(kind, at, duration=float(a))
    if kind == "garbage":
        return Fault(kind, at, amount=float(a))
    if kind == "delay":
        return Fault(kind, at, duration=float(a), amount=float(b))
    return Fault(kind, at)


class FaultSchedule:
    """The faults of one emulator run, in time order; instant ones (reboot, garbage) are handed out once."""

    def __init__(self, faults: list[Fault]):
        self.faults = sorted(faults, key=lambda f: f.at)
        self._next = 0
        self.injected: list[tuple[float, Fault]] = []
        """(wall time [s since the host's first frame] it took effect, the fault)."""

    def due(self, t: float) -> list[Fault]:
        """Faults starting by ``t`` not handed out yet (each once); recorded as injected."""
        out = []
        while self._next < len(self.faults) and self.faults[self._next].at <= t:
            out.append(self.faults[self._next])
            self.injected.append((t, self.faults[self._next]))
            self._next += 1
        return out

    def link_down(self, t: float) -> bool:
        return any(f.kind == "flap" and f.at <= t < f.at + f.duration for f in self.faults)

    def delay_s(self, t: float) -> float:
        return max((f.amount / 1e3 for f in self.faults if f.kind == "delay" and f.at <= t < f.at + f.duration),
                   default=0.0)  # fmt: skip
