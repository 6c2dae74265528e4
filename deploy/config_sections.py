"""The optional sections of a hardware config: serial link, limits, safety, fallback, emulator.

Each section is a frozen dataclass read by one ``read_*`` function that validates
every field against the robot's signals (vector lengths = number of actions, limit
names = observation names) and raises ``HardwareConfigError`` naming the field and
the fix, through the reader of ``deploy.hardware_config``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Protocol

from metactl.deploy.errors import HardwareConfigError

EMULATOR_KEYS = (
    "family",
    "task",
    "seed",
    "payload_kg",
    "mass_scale",
    "friction_scale",
    "motor_gain",
    "actuator_gain",
    "battery_sag_per_s",
    "latency_steps",
    "obs_noise_std",
    "obs_bias",
)
"""Keys of ``[emulator]``: the simulated task and its perturbations (see ``EmulatorSection``)."""
ON_LINK_LOSS = ("stop", "sim")
"""What the runtime does when the link dies mid-run: stop safely, or continue in simulation."""
_REQUIRED = object()


class FieldReader(Protocol):
    """What the section readers need from ``hardware_config._Reader``."""

    def fail(self, what: str) -> HardwareConfigError: ...

    def get(self, data: dict[str, Any], field: str, ok: Any, what: str, fix: str, default: Any = _REQUIRED) -> Any: ...


@dataclasses.dataclass(frozen=True)
class SerialSection:
    """``[serial]``: device path or pyserial URL (``socket://``, ``loop://``, ...), baud rate, timeouts [s].

    ``reply_timeout_s``: how long a command waits for the robot's state; ``max_missed_replies``
    consecutive misses mean the link is lost."""

    port: str
    baud: int = 1_000_000
    reply_timeout_s: float = 0.02
    handshake_timeout_s: float = 1.0
    max_missed_replies: int = 2
    reconnect_s: float = 0.0
    """A lost link or a rebooted robot is first re-handshaked for this long (start-up rerun, the episode run again);
    0: no attempt. Only if that fails does ``[fallback] on_link_loss`` apply."""


@dataclasses.dataclass(frozen=True)
class LimitsSection:
    """``[limits]``: command range per action, max command change per control step, and state limits:
    ``position`` maps observation names to [low, high], ``velocity`` maps observation names to max |v|."""

    command_low: tuple[float, ...] | None = None
    command_high: tuple[float, ...] | None = None
    max_command_change: tuple[float, ...] | None = None
    position: dict[str, tuple[float, float]] = dataclasses.field(default_factory=dict)
    velocity: dict[str, float] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class SafetySection:
    """``[safety]``: the robot's watchdog timeout [s] (firmware side: the emulator uses it), the safe command
    (default zeros), and the start-up pose: a command ramped to from the safe command over ``startup_steps``."""

    watchdog_s: float | None = None
    safe_command: tuple[float, ...] | None = None
    startup_pose: tuple[float, ...] | None = None
    startup_steps: int = 0
    max_non_finite_commands: int = 10
    """Non-finite commands (replaced by the safe command) tolerated in a run before it stops as a safety stop."""


@dataclasses.dataclass(frozen=True)
class FallbackSection:
    """``[fallback]``: the simulation that stands in when no hardware answers, and ``on_link_loss``:
    ``"stop"`` (safe-stop and end the run) or ``"sim"`` (safe-stop, then continue in simulation)."""

    family: str
    task: int | dict[str, Any] = 0
    seed: int = 0
    on_link_loss: str = "stop"


@dataclasses.dataclass(frozen=True)
class EmulatorSection:
    """``[emulator]``: what ``metactl emulate`` simulates behind the serial protocol, and how it differs from
    the nominal robot: payload [kg] on the root body, mass and friction scales, motor gain (all actuators) and
    per-actuator gains (0 = a dead joint), battery sag (fraction of motor gain lost per second of an episode),
    actuator latency [control steps], observation noise std and bias (per observation, or one value)."""

    family: str
    task: int | dict[str, Any] = 0
    seed: int = 0
    payload_kg: float = 0.0
    mass_scale: float = 1.0
    friction_scale: float = 1.0
    motor_gain: float = 1.0
    actuator_gain: tuple[float, ...] | None = None
    battery_sag_per_s: float = 0.0
    latency_steps: int = 0
    obs_noise_std: tuple[float, ...] | float = 0.0
    obs_bias: tuple[float, ...] | float = 0.0


def read_serial(r: FieldReader, data: dict[str, Any]) -> SerialSection:
    d = SerialSection("")
    return SerialSection(
        port=r.get(data, "serial.port", is_nonempty_str, "a device path or pyserial URL", "e.g. '/dev/ttyUSB0'"),
        baud=r.get(data, "serial.baud", is_positive_int, "a positive integer", "e.g. 1000000", d.baud),
        reply_timeout_s=float(
            r.get(data, "serial.reply_timeout_s", is_positive, "seconds > 0", "e.g. 0.02", d.reply_timeout_s)
        ),
        handshake_timeout_s=float(
            r.get(data, "serial.handshake_timeout_s", is_positive, "seconds > 0", "e.g. 1.0", d.handshake_timeout_s)
        ),
        max_missed_replies=r.get(
            data, "serial.max_missed_replies", is_positive_int, "a positive integer", "e.g. 2", d.max_missed_replies
        ),
        reconnect_s=float(
            r.get(data, "serial.reconnect_s", _nonneg, "seconds >= 0 (0: no reconnect)", "e.g. 5.0", d.reconnect_s)
        ),
    )


def read_limits(r: FieldReader, data: dict[str, Any], actions: tuple[str, ...], obs: tuple[str, ...]) -> LimitsSection:
    n = len(actions)
    low = _vector(r, data, "limits.command_low", n, None)
    high = _vector(r, data, "limits.command_high", n, None)
    if low is not None and high is not None and any(lo >= hi for lo, hi in zip(low, high, strict=True)):
        raise r.fail("limits.command_low must be below limits.command_high for every action; swap or fix them")
    change = _vector(r, data, "limits.max_command_change", n, None)
    if change is not None and any(c <= 0 for c in change):
        raise r.fail("limits.max_command_change must be > 0 per action (a change per control step); e.g. 0.5")
    position = r.get(data, "limits.position", _table, "a table {name = [low, high]}", "e.g. { 'pos:x' = [-1, 1] }", {})
    velocity = r.get(data, "limits.velocity", _table, "a table {name = max_abs}", "e.g. { 'vel:x' = 5.0 }", {})
    for field, table in (("limits.position", position), ("limits.velocity", velocity)):
        for name in table:
            if name not in obs:
                raise r.fail(f"{field}: {name!r} is not an observation of this robot; use one of signals.observations")
    for name, v in position.items():
        if not (_pair(v) and v[0] < v[1]):
            raise r.fail(f"limits.position.{name} must be [low, high] with low < high (got {v!r})")
    for name, v in velocity.items():
        if not is_positive(v):
            raise r.fail(f"limits.velocity.{name} must be a positive max |velocity| (got {v!r})")
    return LimitsSection(
        low,
        high,
        change,
        {k: (float(v[0]), float(v[1])) for k, v in position.items()},
        {k: float(v) for k, v in velocity.items()},
    )


def read_safety(r: FieldReader, data: dict[str, Any], actions: tuple[str, ...], period_s: float) -> SafetySection:
    n = len(actions)
    watchdog = r.get(data, "safety.watchdog_s", is_positive, "seconds > 0", "e.g. 0.1 (a few control periods)", None)
    if watchdog is not None and watchdog < period_s:
        raise r.fail(f"safety.watchdog_s = {watchdog} is shorter than control.period_s = {period_s}; make it longer")
    steps = r.get(data, "safety.startup_steps", is_nonneg_int, "an integer >= 0", "e.g. 20", 0)
    nan_limit = r.get(data, "safety.max_non_finite_commands", is_nonneg_int, "an integer >= 0", "e.g. 10", 10)
    return SafetySection(
        watchdog_s=None if watchdog is None else float(watchdog),
        safe_command=_vector(r, data, "safety.safe_command", n, None),
        startup_pose=_vector(r, data, "safety.startup_pose", n, None),
        startup_steps=steps,
        max_non_finite_commands=nan_limit,
    )


def read_fallback(r: FieldReader, data: dict[str, Any]) -> FallbackSection:
    task_fix = "give an index into the family's test tasks (e.g. 0) or an inline table {type = 'GoalTask', ...}"
    task = r.get(data, "fallback.task", is_task, "an integer >= 0 or an inline table with 'type'", task_fix, 0)
    return FallbackSection(
        family=r.get(data, "fallback.family", is_nonempty_str, "a task family name", "e.g. 'halfcheetah_fb'"),
        task=dict(task) if isinstance(task, dict) else task,
        seed=r.get(data, "fallback.seed", is_nonneg_int, "an integer >= 0", "e.g. seed = 0", 0),
        on_link_loss=r.get(data, "fallback.on_link_loss", _on_loss, "'stop' or 'sim'", "e.g. 'stop'", "stop"),
    )


def read_emulator(
    r: FieldReader, data: dict[str, Any], actions: tuple[str, ...], obs: tuple[str, ...]
) -> EmulatorSection:
    task_fix = "give an index into the family's test tasks (e.g. 0) or an inline table {type = 'GoalTask', ...}"
    task = r.get(data, "emulator.task", is_task, "an integer >= 0 or an inline table with 'type'", task_fix, 0)
    d = EmulatorSection("")

    def scale(key: str, default: float, ok: Any = None, what: str = "a number > 0") -> float:
        return float(r.get(data, f"emulator.{key}", ok or is_positive, what, f"e.g. {default}", default))

    return EmulatorSection(
        family=r.get(data, "emulator.family", is_nonempty_str, "a task family name", "e.g. 'halfcheetah_fb'"),
        task=dict(task) if isinstance(task, dict) else task,
        seed=r.get(data, "emulator.seed", is_nonneg_int, "an integer >= 0", "e.g. seed = 0", 0),
        payload_kg=scale("payload_kg", d.payload_kg, _nonneg, "a mass >= 0 in kg"),
        mass_scale=scale("mass_scale", d.mass_scale),
        friction_scale=scale("friction_scale", d.friction_scale),
        motor_gain=scale("motor_gain", d.motor_gain, _nonneg, "a gain >= 0"),
        actuator_gain=_vector(r, data, "emulator.actuator_gain", len(actions), None, nonneg=True),
        battery_sag_per_s=scale("battery_sag_per_s", 0.0, _nonneg, "a fraction per second >= 0"),
        latency_steps=r.get(data, "emulator.latency_steps", is_nonneg_int, "an integer >= 0", "e.g. 1", 0),
        obs_noise_std=_vector(r, data, "emulator.obs_noise_std", len(obs), 0.0, nonneg=True, scalar=True),
        obs_bias=_vector(r, data, "emulator.obs_bias", len(obs), 0.0, scalar=True),
    )


def _vector(
    r: FieldReader,
    data: dict[str, Any],
    field: str,
    n: int,
    default: Any,
    *,
    nonneg: bool = False,
    scalar: bool = False,
) -> Any:
    """A list of ``n`` finite numbers (or one number, broadcast, where ``scalar``), as a tuple (or float)."""
    section, key = field.split(".")
    if key not in data.get(section, {}):
        return default
    v = data[section][key]
    sign = " >= 0" if nonneg else ""
    if scalar and _number(v):
        if nonneg and v < 0:
            raise r.fail(f"{field} must be a number{sign} (got {v!r})")
        return float(v)
    if not (isinstance(v, list) and len(v) == n and all(_number(x) and (not nonneg or x >= 0) for x in v)):
        one = " or one number" if scalar else ""
        raise r.fail(f"{field} must be a list of {n} finite numbers{sign}{one}, one per signal in order (got {v!r})")
    return tuple(float(x) for x in v)


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _pair(v: Any) -> bool:
    return isinstance(v, list) and len(v) == 2 and all(_number(x) for x in v)


def _table(v: Any) -> bool:
    return isinstance(v, dict)


def _on_loss(v: Any) -> bool:
    return v in ON_LINK_LOSS


def _nonneg(v: Any) -> bool:
    return _number(v) and v >= 0


def is_nonempty_str(v: Any) -> bool:
    return isinstance(v, str) and bool(v.strip())


def is_positive(v: Any) -> bool:
    return _number(v) and v > 0


def is_positive_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


def is_nonneg_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def is_names(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(is_nonempty_str(n) for n in v) and len(set(v)) == len(v)


def is_task(v: Any) -> bool:
    return is_nonneg_int(v) or (isinstance(v, dict) and isinstance(v.get("type"), str))
