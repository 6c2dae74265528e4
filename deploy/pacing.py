"""A deadline-paced fixed-rate loop that measures itself (after LeRobot's cycle timer).

Deadlines are ``t0 + k * period``: the loop sleeps *to the next deadline*, never "one
period after the work", so computation time never accumulates into drift. Each cycle
records its wake-up jitter (wake time - deadline), whether its work finished before
the next deadline, and the time of each named section (``lap``).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import numpy as np

_GUARD_S = 200e-6
"""Background work stops this long before a deadline (one log record takes ~20-50 us to encode)."""
_SPIN_S = 100e-6
"""The last stretch before a deadline is busy-waited: ``time.sleep`` overshoots by ~50-100 us on Linux."""


class LoopTimer:
    """Paces a loop at ``period_s`` (scaled by ``1 / time_scale``: 10 runs ten times faster than real time;
    0 disables pacing) and keeps per-cycle statistics."""

    def __init__(self, period_s: float, time_scale: float = 1.0, on_idle: Callable[[float], None] | None = None):
        self.period = period_s / time_scale if time_scale > 0 else 0.0
        self.on_idle = on_idle
        """Called with ``deadline - guard`` before each sleep: until then, background work (the log writer)
        may run without delaying the loop's wake-up."""
        self.guard = min(_GUARD_S, self.period / 4)
        self.jitter: list[float] = []
        self.met: list[bool] = []
        self.sections: dict[str, list[float]] = defaultdict(list)
        self.skipped = 0
        self.cycles = 0
        self._t0 = self._deadline = self._last = 0.0
        self._k = 0
        self._in_cycle = False

    def start(self) -> None:
        """(Re)start the schedule now; the first ``wait`` returns at now + one period."""
        self._t0 = self._last = time.perf_counter()
        self._k = 0
        self._in_cycle = False

    def wait(self) -> None:
        """End the current cycle's work and sleep until the next deadline."""
        now = time.perf_counter()
        self._k += 1
        deadline = self._t0 + self._k * self.period
        if self._in_cycle:
            self.cycles += 1
            if self.period:
                self.met.append(now <= deadline)
        if self.period and now > deadline + self.period:
            # Overran by more than a period: skip the deadlines already gone, resume on the grid.
            missed = int((now - deadline) // self.period) + 1
            self.skipped += missed
            self._k += missed
            deadline = self._t0 + self._k * self.period
        if self.period:
            if self.on_idle is not None:
                self.on_idle(deadline - self.guard)
            remaining = deadline - now
            if remaining > _SPIN_S:
                time.sleep(remaining - _SPIN_S)
            while (now := time.perf_counter()) < deadline:
                pass
            self.jitter.append(now - deadline)
        self._last = now
        self._in_cycle = True

    def lap(self, section: str) -> None:
        """Close ``section``: the time since the previous lap or wake-up."""
        now = time.perf_counter()
        self.sections[section].append(now - self._last)
        self._last = now

    def summary(self) -> dict[str, Any]:
        """Cycles, achieved rate, deadline-met share, jitter p50/p99/max [ms], sections p50/p99 [us]."""
        jit = np.asarray(self.jitter) * 1e3
        out: dict[str, Any] = {
            "cycles": self.cycles,
            "paced": bool(self.period),
            "skipped_deadlines": self.skipped,
        }
        if self.met:
            out["deadline_met_fraction"] = float(np.mean(self.met))
        if jit.size:
            out.update(
                jitter_p50_ms=float(np.percentile(jit, 50)),
                jitter_p99_ms=float(np.percentile(jit, 99)),
                jitter_max_ms=float(jit.max()),
            )
        for name, values in self.sections.items():
            v = np.asarray(values) * 1e6
            out[f"{name}_p50_us"] = float(np.percentile(v, 50))
            out[f"{name}_p99_us"] = float(np.percentile(v, 99))
        return out
