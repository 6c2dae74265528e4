"""Serial protocol version 2: on-controller control (``docs/protocol.md``, "Version 2"). A pure codec, no I/O.

Version 2 keeps every version-1 message and its layout (same framing, header version byte 2), gives
INFO a longer layout (``InfoV2``: watchdog, policy size and identity, parameter CRC, chunk size) and
adds what a controller that runs the policy itself needs:

- ``EpisodeStart`` -> a ``Step`` per control period (if streamed) -> ``EpisodeEnd`` (return, CRC of the
  parameters used); ``Keepalive`` feeds the controller's watchdog meanwhile;
- ``Params`` chunks and a CRC-checked ``ParamsCommit``, each answered by ``ParamsAck``; refused during an
  episode, applied atomically between episodes;
- ``Status`` -> ``StatusReport`` (counters and the last watchdog trip, on the controller's clock).

A version-2 receiver decodes version-1 and version-2 frames (``decode_payload``); a version-1 receiver
counts version-2 frames as bad. Only the stdlib and numpy: this module runs on the robot host.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from metactl.deploy import protocol as pr
from metactl.deploy.protocol import Frame, ProtocolError

PROTOCOL_VERSION = 2


class MsgType2(enum.IntEnum):
    INFO = 0x02  # robot -> host, the version-2 layout
    EPISODE_START = 0x30  # host -> robot: seed, steps, flags; answered by EPISODE_END when the episode ends
    STEP = 0x31  # robot -> host, one per control period of a streamed episode
    EPISODE_END = 0x32  # robot -> host: status, steps, return, CRC of the parameters used
    KEEPALIVE = 0x33  # host -> robot, empty: feeds the watchdog during an episode; not answered
    PARAMS = 0x34  # host -> robot: a chunk of the parameter vector; answered by PARAMS_ACK
    PARAMS_COMMIT = 0x35  # host -> robot: count + CRC-32 of the staged vector; answered by PARAMS_ACK
    PARAMS_ACK = 0x36  # robot -> host
    STATUS = 0x37  # host -> robot, empty; answered by STATUS_REPORT
    STATUS_REPORT = 0x38  # robot -> host


START_STREAM = 1  # EpisodeStart.flags: send a STEP every control period
START_UNPACED = 2  # EpisodeStart.flags: tick as soon as the plant answers (emulated plants only)
CAP_CONTROLLER = 1  # InfoV2.caps: runs its policy on the controller


class EndStatus(enum.IntEnum):
    COMPLETED = 0  # all steps run
    DONE = 1  # the robot reported the episode's end (e.g. a fall)
    STOPPED = 2  # SAFE_STOP from the host
    WATCHDOG = 3  # no KEEPALIVE within the watchdog time: motors safe-stopped
    BUS = 4  # the motors or sensors stopped answering
    REFUSED = 5  # not started: an episode is running, zero steps, or unpaced not allowed


class AckStatus(enum.IntEnum):
    STAGED = 0
    APPLIED = 1
    BUSY = 2  # an episode is running: parameters change only between episodes
    BAD_OFFSET = 3  # chunks must arrive in order; offset 0 starts over
    BAD_SIZE = 4
    BAD_CRC = 5  # the staged vector's CRC differs from the commit's: nothing applied, staging cleared
    INCOMPLETE = 6
    NON_FINITE = 7


def _floats(x: Any) -> np.ndarray:
    return np.asarray(x, dtype="<f4").reshape(-1)


def _f32_eq(a: Any, b: Any) -> bool:
    return _floats(a).tobytes() == _floats(b).tobytes()


@dataclass(frozen=True)
class InfoV2:
    robot_id: str
    obs_dim: int
    act_dim: int
    period_us: int
    watchdog_us: int
    param_count: int
    policy_id: int
    params_crc: int
    max_chunk: int
    caps: int


@dataclass(frozen=True)
class EpisodeStart:
    seed: int  # u64
    steps: int  # u32
    flags: int = START_STREAM


@dataclass(frozen=True, eq=False)
class Step:
    """One control period on the controller: the observation the policy saw, the command written to the motors
    (after the controller's safety layer) and the reward of that period. Equality is bit equality."""

    episode_seq: int
    step: int
    flags: int
    reward: float
    obs: np.ndarray
    action: np.ndarray

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Step):
            return NotImplemented
        head = (self.episode_seq, self.step, self.flags, struct.pack("<d", self.reward))
        return head == (other.episode_seq, other.step, other.flags, struct.pack("<d", other.reward)) and (
            _f32_eq(self.obs, other.obs) and _f32_eq(self.action, other.action)
        )

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True, eq=False)
class EpisodeEnd:
    episode_seq: int
    status: int
    steps: int
    episode_return: float
    params_crc: int

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, EpisodeEnd):
            return NotImplemented
        key = lambda e: (e.episode_seq, e.status, e.steps, e.params_crc, struct.pack("<d", e.episode_return))  # noqa: E731
        return key(self) == key(other)

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True)
class Keepalive:
    pass


@dataclass(frozen=True, eq=False)
class Params:
    offset: int  # index of the first float in the whole vector
    values: np.ndarray  # float32

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Params):
            return NotImplemented
        return self.offset == other.offset and _f32_eq(self.values, other.values)

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True)
class ParamsCommit:
    count: int
    crc: int  # zlib.crc32 of the whole vector as little-endian float32


@dataclass(frozen=True)
class ParamsAck:
    cmd_seq: int
    status: int
    staged: int
    params_crc: int  # of the parameters now active


@dataclass(frozen=True)
class Status:
    pass


@dataclass(frozen=True)
class StatusReport:
    cmd_seq: int
    episodes: int
    watchdog_trips: int
    params_applied: int
    bad_frames: int
    feed_us: int  # the last watchdog trip: the last feed before it [controller clock, us]; 0 if none
    trip_us: int  # ... and the trip itself
    stack_bytes: int = 0  # the controller's stack high-water mark [bytes]; 0: it cannot tell
    overruns: int = 0  # control ticks that started more than a period late


_INFO2 = struct.Struct("<HHIIIIIHBB")
_START, _STEP, _END = struct.Struct("<QIB"), struct.Struct("<HIBdHH"), struct.Struct("<HBIdI")
_PARAMS, _COMMIT, _ACK = struct.Struct("<IH"), struct.Struct("<II"), struct.Struct("<HBII")
_REPORT = struct.Struct("<HIIIIQQII")


def _with_floats(layout: struct.Struct, fixed: tuple[Any, ...], *arrays: Any) -> bytes:
    return layout.pack(*fixed) + b"".join(_floats(a).tobytes() for a in arrays)


def _info2(m: InfoV2) -> bytes:
    rid = m.robot_id.encode("utf-8")
    if len(rid) > 255:
        raise ProtocolError(f"robot_id is {len(rid)} bytes of UTF-8, at most 255")
    fixed = (m.obs_dim, m.act_dim, m.period_us, m.watchdog_us, m.param_count, m.policy_id, m.params_crc)
    return _INFO2.pack(*fixed, m.max_chunk, m.caps, len(rid)) + rid


ENCODERS: dict[type, tuple[int, Any]] = {
    **{cls: entry for cls, entry in pr.ENCODERS.items() if cls is not pr.Info},  # v1 INFO exists in v1 only
    InfoV2: (MsgType2.INFO, _info2),
    EpisodeStart: (MsgType2.EPISODE_START, lambda m: _START.pack(m.seed, m.steps, m.flags)),
    Step: (MsgType2.STEP, lambda m: _with_floats(
        _STEP, (m.episode_seq, m.step, m.flags, m.reward, _floats(m.obs).size, _floats(m.action).size),
        m.obs, m.action)),
    EpisodeEnd: (MsgType2.EPISODE_END, lambda m: _END.pack(m.episode_seq, m.status, m.steps, m.episode_return,
                                                           m.params_crc)),
    Keepalive: (MsgType2.KEEPALIVE, lambda m: b""),
    Params: (MsgType2.PARAMS, lambda m: _with_floats(_PARAMS, (m.offset, _floats(m.values).size), m.values)),
    ParamsCommit: (MsgType2.PARAMS_COMMIT, lambda m: _COMMIT.pack(m.count, m.crc)),
    ParamsAck: (MsgType2.PARAMS_ACK, lambda m: _ACK.pack(m.cmd_seq, m.status, m.staged, m.params_crc)),
    Status: (MsgType2.STATUS, lambda m: b""),
    StatusReport: (MsgType2.STATUS_REPORT, lambda m: _REPORT.pack(
        m.cmd_seq, m.episodes, m.watchdog_trips, m.params_applied, m.bad_frames, m.feed_us, m.trip_us,
        m.stack_bytes, m.overruns)),
}  # fmt: skip


def _f32(p: bytes, off: int, n: int) -> np.ndarray:
    return np.frombuffer(p, "<f4", n, off).astype(np.float32)


def _utf8(p: bytes, off: int, n: int) -> str:
    try:
        return p[off:].decode("utf-8")
    except UnicodeDecodeError as e:
        raise ProtocolError(f"INFO robot_id is not UTF-8: {e}") from None


_NONE = struct.Struct("<")
BODIES: dict[int, tuple[struct.Struct, Any, Any]] = {
    **{t: entry for t, entry in pr.BODIES.items() if t != pr.MsgType.INFO},
    MsgType2.INFO: (_INFO2, (1, _utf8), lambda f, t: InfoV2(t, *f[:9])),
    MsgType2.EPISODE_START: (_START, None, lambda f, t: EpisodeStart(*f)),
    MsgType2.STEP: (_STEP, (4, _f32, lambda f: f[4] + f[5]), lambda f, t: Step(*f[:4], t[: f[4]], t[f[4] :])),
    MsgType2.EPISODE_END: (_END, None, lambda f, t: EpisodeEnd(*f)),
    MsgType2.KEEPALIVE: (_NONE, None, lambda f, t: Keepalive()),
    MsgType2.PARAMS: (_PARAMS, (4, _f32), lambda f, t: Params(f[0], t)),
    MsgType2.PARAMS_COMMIT: (_COMMIT, None, lambda f, t: ParamsCommit(*f)),
    MsgType2.PARAMS_ACK: (_ACK, None, lambda f, t: ParamsAck(*f)),
    MsgType2.STATUS: (_NONE, None, lambda f, t: Status()),
    MsgType2.STATUS_REPORT: (_REPORT, None, lambda f, t: StatusReport(*f)),
}
_TABLES = {pr.PROTOCOL_VERSION: pr.BODIES, PROTOCOL_VERSION: BODIES}


def encode(msg: Any, seq: int, t_us: int) -> bytes:
    """The wire bytes of ``msg`` as a version-2 frame (``protocol.encode`` sends version 1)."""
    return pr.frame_bytes(PROTOCOL_VERSION, msg, seq, t_us, ENCODERS)


def decode_payload(payload: bytes) -> Frame:
    """A version-1 or version-2 frame (``protocol.ProtocolError`` for anything else); ``Info`` only comes in
    version 1 and ``InfoV2`` only in version 2, so an answer to HELLO tells which version the robot speaks."""
    return pr.decode_with(payload, _TABLES)


def frame_decoder() -> pr.FrameDecoder:
    """A streaming decoder of version-1 and version-2 frames (the counters of ``protocol.FrameDecoder``)."""
    return pr.FrameDecoder(decode_payload)
