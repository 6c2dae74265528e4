"""The one safety layer between every policy and every robot (simulated, emulated or real).

Commands: non-finite values become the safe command and a fault record, and more of them in a run
than ``safety.max_non_finite_commands`` stop it (a broken controller); the rest is clipped to the
configured command range, then rate-limited to the configured change per control step. States: a
position or velocity outside its configured limit stops the run (``SafetyStopError``) after the
robot is told to safe-stop.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from metactl.deploy.hardware_config import HardwareConfig

EventSink = Callable[[str, dict[str, Any]], None]
"""Where safety events go: ``sink(topic, record)`` (the run's MCAP log)."""


class SafetyStopError(RuntimeError):
    """A state limit was violated; the robot has been told to safe-stop."""


class SafetyLayer:
    """Command filter and state monitor for the robot of ``config`` ([limits] and [safety] sections)."""

    def __init__(self, config: HardwareConfig, sink: EventSink | None = None):
        n = len(config.signals.actions)
        lim = config.limits
        self.low = np.full(n, -np.inf) if lim.command_low is None else np.asarray(lim.command_low)
        self.high = np.full(n, np.inf) if lim.command_high is None else np.asarray(lim.command_high)
        self.max_change = None if lim.max_command_change is None else np.asarray(lim.max_command_change)
        self.safe_command = (
            np.zeros(n) if config.safety.safe_command is None else np.asarray(config.safety.safe_command)
        )
        self.safe_command = np.clip(self.safe_command, self.low, self.high)
        names = list(config.signals.observations)
        # Position and velocity limits as one vector check: |v| <= max is -max <= v <= max.
        self._limit_names = [*lim.position, *lim.velocity]
        self._limit_idx = np.array([names.index(k) for k in self._limit_names], dtype=int)
        self._limit_lo = np.array([v[0] for v in lim.position.values()] + [-v for v in lim.velocity.values()])
        self._limit_hi = np.array([v[1] for v in lim.position.values()] + list(lim.velocity.values()))
        self.sink = sink
        self.counts = {"non_finite_commands": 0, "limited_commands": 0, "state_stops": 0}
        self.max_non_finite = config.safety.max_non_finite_commands
        self._prev = self.safe_command.copy()

    def reset(self, previous: np.ndarray | None = None) -> None:
        """Start of an episode: the rate limit starts from ``previous`` (default: the safe command)."""
        self._prev = self.safe_command.copy() if previous is None else np.asarray(previous, dtype=np.float64)

    def command(self, cmd: np.ndarray) -> np.ndarray:
        """The command to send for the policy's ``cmd`` [act_dim]."""
        cmd = np.asarray(cmd, dtype=np.float64)
        if not np.isfinite(cmd).all():
            self.counts["non_finite_commands"] += 1
            self._event("/fault", {"source": "safety", "code": "non_finite_command", "command": cmd})
            if self.counts["non_finite_commands"] > self.max_non_finite:
                self.counts["state_stops"] += 1
                raise SafetyStopError(
                    f"{self.counts['non_finite_commands']} non-finite commands (more than "
                    f"safety.max_non_finite_commands = {self.max_non_finite}): the controller is broken"
                )
            out = self.safe_command.copy()
        else:
            out = np.clip(cmd, self.low, self.high)
            if self.max_change is not None:
                out = np.clip(out, self._prev - self.max_change, self._prev + self.max_change)
            if (out != cmd).any():
                self.counts["limited_commands"] += 1
        self._prev = out
        return out

    def check_state(self, obs: np.ndarray) -> None:
        """Raise ``SafetyStopError`` naming the first observation outside its limit (NaN counts as outside)."""
        if self._limit_names:
            v = np.asarray(obs)[self._limit_idx]
            inside = (v >= self._limit_lo) & (v <= self._limit_hi)
            if not inside.all():
                i = int(np.flatnonzero(~inside)[0])
                bad = f"{self._limit_names[i]} = {v[i]:.4g} outside [{self._limit_lo[i]:.4g}, {self._limit_hi[i]:.4g}]"
                self.counts["state_stops"] += 1
                self._event("/fault", {"source": "safety", "code": "state_limit", "detail": bad})
                raise SafetyStopError(f"state limit violated: {bad}")

    def _event(self, topic: str, record: dict[str, Any]) -> None:
        if self.sink is not None:
            self.sink(topic, record)
