"""Learned dynamics models for GrBAL / ReBAL: their layout, normalization and the task cost (numpy, robot-side).

Nagabandi et al., "Learning to Adapt in Dynamic, Real-World Environments Through Meta-Reinforcement
Learning", ICLR 2019. A model predicts the *normalized state delta* of one control step:

    x = [(obs - obs_mean) / obs_std, (act - act_mean) / act_std]
    next_obs = obs + delta_mean + delta_std * f_theta(x)

``kind = "mlp"`` (GrBAL, MB, MB+DE): f is a ReLU MLP. ``kind = "recurrent"`` (ReBAL): an LSTM reads
x at every step, (h, c) <- LSTM(x, h, c), and f is a ReLU MLP of [x, h]: the state carries the recent
history (which the dynamics are) and, inside a planner's rollout, each candidate's own predicted past.
The flat parameter list and its order (``param_shapes``) is the contract between the torch
trainer, the checkpoint and the ONNX exporter: per layer W [in, out] then b [out]; for the
recurrent model first W_z [z, 4H], W_h [H, 4H], b [4H] with gates in the order i, f, g, o.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

KINDS = ("mlp", "recurrent")
STD_FLOOR = 1e-4
"""Normalization never divides by less: a signal that never moved in the data stays finite."""
UNHEALTHY_COST = 100.0
"""Planner cost per predicted step outside the robot's healthy height range (the episode would end) or posture limit."""


class DynamicsError(ValueError):
    """A dynamics model spec, stats or cost that cannot be right (user-facing)."""


@dataclasses.dataclass(frozen=True)
class DynamicsSpec:
    """Sizes of a dynamics model: ``hidden`` widths of the ReLU MLP; ``rnn_hidden`` H of ReBAL's LSTM."""

    kind: str
    obs_dim: int
    act_dim: int
    hidden: tuple[int, ...] = (512, 512, 512)
    rnn_hidden: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise DynamicsError(f"dynamics kind {self.kind!r} is unknown; use one of {KINDS}")
        if self.obs_dim < 1 or self.act_dim < 1 or not self.hidden or min(self.hidden) < 1:
            raise DynamicsError(f"obs_dim, act_dim and every hidden width must be >= 1, got {self}")
        if (self.kind == "recurrent") != (self.rnn_hidden > 0):
            raise DynamicsError("rnn_hidden must be > 0 exactly for the recurrent model")

    @property
    def z_dim(self) -> int:
        """Width of one LSTM input: the normalized observation and action."""
        return self.obs_dim + self.act_dim

    def param_shapes(self) -> list[tuple[int, ...]]:
        shapes: list[tuple[int, ...]] = []
        width = self.obs_dim + self.act_dim
        if self.kind == "recurrent":
            h = self.rnn_hidden
            shapes += [(self.z_dim, 4 * h), (h, 4 * h), (4 * h,)]
            width += h
        for out in (*self.hidden, self.obs_dim):
            shapes += [(width, out), (out,)]
            width = out
        return shapes

    @property
    def num_params(self) -> int:
        return int(sum(np.prod(s) for s in self.param_shapes()))

    def mlp_flops(self, rows: int) -> float:
        """Floating-point operations of one MLP pass over ``rows`` inputs (2 per multiply-add)."""
        shapes = self.param_shapes()[3:] if self.kind == "recurrent" else self.param_shapes()
        return float(2 * rows * sum(s[0] * s[1] for s in shapes if len(s) == 2))

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "hidden": list(self.hidden)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DynamicsSpec:
        try:
            return cls(**{**data, "hidden": tuple(int(h) for h in data["hidden"])})
        except (KeyError, TypeError) as e:
            raise DynamicsError(f"bad dynamics spec {dict(data)}: {e}") from None

    def check_params(self, params: Sequence[np.ndarray]) -> None:
        got = [tuple(np.shape(p)) for p in params]
        if got != self.param_shapes():
            raise DynamicsError(f"parameter shapes {got} do not match the spec's {self.param_shapes()}")


@dataclasses.dataclass(frozen=True)
class DynamicsStats:
    """Normalization of inputs and targets (float64 [obs_dim] / [act_dim]); fixed once data is collected."""

    obs_mean: np.ndarray
    obs_std: np.ndarray
    act_mean: np.ndarray
    act_std: np.ndarray
    delta_mean: np.ndarray
    delta_std: np.ndarray

    @classmethod
    def from_data(cls, obs: np.ndarray, act: np.ndarray, next_obs: np.ndarray) -> DynamicsStats:
        """From transitions obs [T, d], act [T, a], next_obs [T, d]."""
        delta = next_obs - obs

        def std(x: np.ndarray) -> np.ndarray:
            return np.maximum(x.std(axis=0), STD_FLOOR)

        return cls(obs.mean(0), std(obs), act.mean(0), std(act), delta.mean(0), std(delta))

    @classmethod
    def identity(cls, obs_dim: int, act_dim: int) -> DynamicsStats:
        z, o = np.zeros, np.ones
        return cls(z(obs_dim), o(obs_dim), z(act_dim), o(act_dim), z(obs_dim), o(obs_dim))

    def to_dict(self) -> dict[str, list[float]]:
        return {k: [float(v) for v in getattr(self, k)] for k in self.field_names()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DynamicsStats:
        missing = [k for k in cls.field_names() if k not in data]
        if missing:
            raise DynamicsError(f"dynamics stats lack {missing}")
        stats = cls(**{k: np.asarray(data[k], dtype=np.float64) for k in cls.field_names()})
        if not all(np.all(np.isfinite(getattr(stats, k))) for k in cls.field_names()):
            raise DynamicsError("dynamics stats hold non-finite numbers")
        if min(float(stats.obs_std.min()), float(stats.act_std.min()), float(stats.delta_std.min())) <= 0:
            raise DynamicsError("dynamics stats: every std must be positive")
        return stats

    @staticmethod
    def field_names() -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(DynamicsStats))


def with_posture_limit(reward_spec: dict[str, Any], limit: float | None) -> dict[str, Any]:
    """``reward_spec`` with its posture bound replaced by ``limit`` [rad] (0: none; None: unchanged). The one place a
    run's or an evaluation's bound is checked against the robot: a bound needs a ``posture_signal`` to act on."""
    if limit is None:
        return dict(reward_spec)
    if isinstance(limit, bool) or not isinstance(limit, int | float) or not limit >= 0:
        raise DynamicsError(f"must be a number of radians >= 0 (0: no bound), got {limit!r}")
    if limit and not reward_spec.get("posture_signal"):
        raise DynamicsError("this robot has no posture signal to bound; leave it unset or 0")
    return {**reward_spec, "posture_limit": float(limit) or None}


class ForwardCost:
    """Minus a locomotion reward, batched for the planner: ``-(v + alive) + ctrl_cost |a|^2`` per step, plus
    ``UNHEALTHY_COST`` per predicted step where the height leaves ``height_range`` (the episode would end there) or
    the posture signal (an observation, or a derived ``tilt:<joint>``: ``ObservedSignal``) leaves
    ``[-posture_limit, posture_limit]``.

    The posture limit is a state constraint of the planner, not a term of the reward: with HalfCheetah's 0.5 s
    look-ahead, every planner (the oracle on the true dynamics included) finds that flipping onto the back is the
    quickest way to speed, and runs the rest of the episode upside down (docs/grbal.md, "Upright").

    Built from the task family's ``reward_spec`` and observation names, so the robot computes the same cost from
    the bundle's metadata. ``v`` is read from the predicted next observation.
    """

    def __init__(self, observation_names: Sequence[str], reward_spec: Mapping[str, Any]):
        names = list(observation_names)
        self.spec = dict(reward_spec)
        self.velocity = ObservedSignal(names, reward_spec["velocity_signal"], "velocity_signal")
        self.ctrl_cost = float(reward_spec["ctrl_cost"])
        self.alive_bonus = float(reward_spec.get("alive_bonus", 0.0))
        self.limits: list[tuple[ObservedSignal, float, float]] = []  # outside [low, high] a step costs UNHEALTHY_COST
        if reward_spec.get("height_signal"):
            low, high = reward_spec.get("height_range") or (-np.inf, np.inf)
            height = ObservedSignal(names, reward_spec["height_signal"], "height_signal")
            self.limits.append((height, float(low), float(high)))
        limit = reward_spec.get("posture_limit")
        if limit:
            if not reward_spec.get("posture_signal"):
                raise DynamicsError("reward_spec.posture_limit is set but this robot has no posture_signal to bound; "
                                    "leave posture_limit out (or 0)")  # fmt: skip
            if not float(limit) > 0:
                raise DynamicsError(f"reward_spec.posture_limit must be > 0 (or 0: none), got {limit!r}")
            posture = ObservedSignal(names, reward_spec["posture_signal"], "posture_signal")
            self.limits.append((posture, -float(limit), float(limit)))

    def __call__(self, obs: np.ndarray, act: np.ndarray, next_obs: np.ndarray) -> np.ndarray:
        """Cost [...] of transitions obs [..., d], act [..., a], next_obs [..., d]."""
        cost = self.ctrl_cost * np.sum(act * act, axis=-1) - self.velocity(next_obs) - self.alive_bonus
        for signal, low, high in self.limits:
            z = signal(next_obs)
            cost = cost + UNHEALTHY_COST * ((z < low) | (z > high))
        return cost


class ObservedSignal:
    """A scalar the cost bounds, read from observations [..., d]: an observation by name (HalfCheetah's
    ``pos:rooty``, the torso's signed pitch [rad]), or ``tilt:<free joint>``, the angle [rad] between the body's up
    axis and the world's, from the joint's quaternion observations ``pos:<joint>.qw .. .qz`` (the Ant's torso:
    0 upright, pi on its back, whatever its heading). Either way, beyond pi/2 the robot is on its back."""

    def __init__(self, observation_names: Sequence[str], name: str, key: str = "signal"):
        names = list(observation_names)
        parts = [f"pos:{name[5:]}.q{c}" for c in "wxyz"] if name.startswith("tilt:") else [name]
        missing = [p for p in parts if p not in names]
        if missing:
            what = "is not an observation" if missing == [name] else f"needs the observations {missing}"
            raise DynamicsError(f"reward_spec.{key} = {name!r} {what}; observations are {names}")
        self._columns = [names.index(p) for p in parts]

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        if len(self._columns) == 1:
            return obs[..., self._columns[0]]
        w, x, y, z = (obs[..., i] for i in self._columns)
        norm = w * w + x * x + y * y + z * z  # a learned model's quaternion need not be a unit one
        up = (w * w + z * z - x * x - y * y) / np.maximum(norm, 1e-12)  # the body's z axis, world z component
        return np.arccos(np.clip(up, -1.0, 1.0))


class TransitionWindow:
    """The last ``size`` real transitions of E episodes run in lockstep (GrBAL adapts on exactly these)."""

    def __init__(self, size: int, envs: int, obs_dim: int, act_dim: int):
        if size < 1:
            raise DynamicsError(f"the adaptation window must hold >= 1 transition, got {size}")
        self.size = size
        self._obs = np.zeros((envs, size, obs_dim))
        self._act = np.zeros((envs, size, act_dim))
        self._next = np.zeros((envs, size, obs_dim))
        self.count = 0

    def clear(self) -> None:
        self.count = 0

    def push(self, obs: np.ndarray, act: np.ndarray, next_obs: np.ndarray) -> None:
        """Append one transition per episode: obs [E, d], act [E, a], next_obs [E, d]."""
        k = self.count % self.size
        self._obs[:, k], self._act[:, k], self._next[:, k] = obs, act, next_obs
        self.count += 1

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(obs, act, next_obs), each [E, m, ...] oldest first, m = min(count, size)."""
        m = min(self.count, self.size)
        order = (np.arange(m) + (self.count - m)) % self.size
        return self._obs[:, order], self._act[:, order], self._next[:, order]
