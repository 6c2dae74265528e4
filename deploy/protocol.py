"""Serial protocol v1 between the robot host and the motor controller: a pure codec, no I/O.

Wire frame: ``0x00 + COBS(payload + crc32_le(payload)) + 0x00``; payload = 12-byte header
(version, type, seq, t_us) + a per-type body. COBS (Cheshire & Baker, "Consistent Overhead
Byte Stuffing", IEEE/ACM Trans. Networking 7(2), 1999) removes every zero byte from the
frame, so a zero always means "frame boundary": a receiver that lost sync (garbage, a
corrupted or cut frame) is back in sync at the next zero. The leading zero ends any garbage
before a frame, so the first good frame after garbage is decoded. The full specification,
with byte layouts and the message exchange, is ``docs/protocol.md``.

Only the stdlib and numpy: this module runs on the robot.
"""

from __future__ import annotations

import enum
import logging
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from metactl.deploy.cobs import cobs_decode, cobs_encode
from metactl.deploy.errors import ProtocolError

log = logging.getLogger(__name__)
_ZERO = b"\x00"

PROTOCOL_VERSION = 1
MAX_FRAME_BYTES = 4096
"""Largest decoded payload + CRC [bytes]; longer frames are discarded and counted as oversized."""
MAX_WIRE_BYTES = MAX_FRAME_BYTES + MAX_FRAME_BYTES // 254 + 1
"""Largest COBS encoding of MAX_FRAME_BYTES bytes (delimiters excluded); longer runs are oversized unseen."""


class MsgType(enum.IntEnum):
    HELLO = 0x01  # host -> robot, empty body; robot answers INFO
    INFO = 0x02  # robot -> host: robot_id, obs_dim, act_dim, period_us
    STATE = 0x10  # robot -> host: the state after a RESET or a COMMAND
    COMMAND = 0x11  # host -> robot: actuator command; feeds the watchdog; robot answers STATE
    RESET = 0x12  # host -> robot: start an episode with a seed; robot answers STATE (reward 0)
    HEARTBEAT = 0x13  # either way, empty body; robot echoes it (does NOT feed the watchdog)
    FAULT = 0x20  # robot -> host: code u16 + utf-8 message
    SAFE_STOP = 0x21  # host -> robot, empty body: motors to safe state; robot answers STATE with FLAG_STOPPED


FLAG_DONE = 1  # STATE: the episode ended (e.g. fell)
FLAG_FAULT = 2  # STATE: a fault is latched on the robot
FLAG_STOPPED = 4  # STATE: motors are safe-stopped


class FaultCode(enum.IntEnum):
    WATCHDOG = 1  # no valid COMMAND within the watchdog timeout
    BAD_COMMAND = 2  # wrong size or non-finite command
    NOT_RESET = 3  # COMMAND before any RESET
    VERSION = 4  # unsupported protocol version
    SAFE_STOP = 5  # safe-stop requested by the host
    LIMIT = 6  # command outside the robot's limits (clipped)


def _f32_bits(x: Any) -> tuple[tuple[int, ...], bytes]:
    a = np.asarray(x, dtype="<f4")
    return a.shape, a.tobytes()


def _f64_bits(x: Any) -> bytes:
    return struct.pack("<d", float(x))


@dataclass(frozen=True)
class Hello:
    pass


@dataclass(frozen=True)
class Info:
    robot_id: str
    obs_dim: int
    act_dim: int
    period_us: int


@dataclass(frozen=True)
class State:
    """``obs`` float32 [obs_dim]; ``cmd_seq`` = seq of the COMMAND (or RESET) this state answers.

    Equality is bit equality of what goes on the wire (a NaN equals the same NaN)."""

    cmd_seq: int
    flags: int
    reward: float
    obs: np.ndarray

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, State):
            return NotImplemented
        return (
            (self.cmd_seq, self.flags) == (other.cmd_seq, other.flags)
            and _f64_bits(self.reward) == _f64_bits(other.reward)
            and _f32_bits(self.obs) == _f32_bits(other.obs)
        )

    def __hash__(self) -> int:
        return hash((self.cmd_seq, self.flags, _f64_bits(self.reward), _f32_bits(self.obs)))


@dataclass(frozen=True)
class Command:
    """``cmd`` float32 [act_dim]. Equality is bit equality of what goes on the wire."""

    cmd: np.ndarray

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Command):
            return NotImplemented
        return _f32_bits(self.cmd) == _f32_bits(other.cmd)

    def __hash__(self) -> int:
        return hash(_f32_bits(self.cmd))


@dataclass(frozen=True)
class Reset:
    seed: int  # u64


@dataclass(frozen=True)
class Heartbeat:
    pass


@dataclass(frozen=True)
class Fault:
    code: int  # a FaultCode when known; other u16 values pass through as int
    message: str


@dataclass(frozen=True)
class SafeStop:
    pass


Message = Hello | Info | State | Command | Reset | Heartbeat | Fault | SafeStop


@dataclass(frozen=True)
class Frame:
    seq: int
    t_us: int
    msg: Message


# ---------------------------------------------------------------- payload codec

_HEADER = struct.Struct("<BBHQ")
HEADER_BYTES = _HEADER.size  # 12
_CRC = struct.Struct("<I")
_NONE, _INFO, _STATE = struct.Struct("<"), struct.Struct("<HHIB"), struct.Struct("<HBdH")
_COMMAND, _RESET, _FAULT = struct.Struct("<H"), struct.Struct("<Q"), struct.Struct("<HB")
_FAULT_CODES = {int(c): c for c in FaultCode}


def _with_floats(layout: struct.Struct, fixed: tuple[Any, ...], x: Any, what: str) -> bytes:
    """``layout`` (whose last field is the count) then the float32 values of ``x``."""
    try:
        a = np.asarray(x, dtype="<f4")
    except (TypeError, ValueError) as e:
        raise ProtocolError(f"{what} is not a float array: {e}") from None
    if a.ndim != 1:
        raise ProtocolError(f"{what} must be 1-D, got shape {a.shape}")
    return layout.pack(*fixed, a.size) + a.tobytes()


def _with_text(layout: struct.Struct, fixed: tuple[Any, ...], text: bytes, what: str) -> bytes:
    """``layout`` (whose last field is the u8 length) then ``text``."""
    if len(text) > 255:
        raise ProtocolError(f"{what} is {len(text)} bytes of UTF-8, at most 255")
    return layout.pack(*fixed, len(text)) + text


def _fault_text(message: str) -> bytes:
    """UTF-8, cut to 255 bytes at a character boundary (a fault must always be sendable)."""
    raw = str(message).encode("utf-8", "replace")
    return raw[:255].decode("utf-8", "ignore").encode("utf-8") if len(raw) > 255 else raw


ENCODERS: dict[type, tuple[MsgType, Any]] = {  # message class -> (type, body builder); version 2 extends it
    Hello: (MsgType.HELLO, lambda m: b""),
    Info: (
        MsgType.INFO,
        lambda m: _with_text(_INFO, (m.obs_dim, m.act_dim, m.period_us), m.robot_id.encode("utf-8"), "robot_id"),
    ),
    State: (MsgType.STATE, lambda m: _with_floats(_STATE, (m.cmd_seq % 65536, m.flags, m.reward), m.obs, "obs")),
    Command: (MsgType.COMMAND, lambda m: _with_floats(_COMMAND, (), m.cmd, "cmd")),
    Reset: (MsgType.RESET, lambda m: _RESET.pack(m.seed)),
    Heartbeat: (MsgType.HEARTBEAT, lambda m: b""),
    Fault: (MsgType.FAULT, lambda m: _with_text(_FAULT, (m.code,), _fault_text(m.message), "message")),
    SafeStop: (MsgType.SAFE_STOP, lambda m: b""),
}


def encode(msg: Message, seq: int, t_us: int) -> bytes:
    """The wire bytes of ``msg`` (both delimiters included); ``seq`` is taken mod 2**16, ``t_us`` is a u64.

    Raises ProtocolError for an unencodable message: unknown type, a field out of range, a
    robot id over 255 bytes, a frame over MAX_FRAME_BYTES."""
    return frame_bytes(PROTOCOL_VERSION, msg, seq, t_us, ENCODERS)


def frame_bytes(version: int, msg: Any, seq: int, t_us: int, encoders: dict[type, tuple[int, Any]]) -> bytes:
    """The wire frame of ``msg`` in protocol ``version``, its body built by ``encoders[type(msg)]`` (shared with
    later protocol versions, which add message types)."""
    entry = encoders.get(type(msg))
    if entry is None:
        raise ProtocolError(f"not a protocol message: {type(msg).__name__} (version {version})")
    mtype, body_of = entry
    try:
        payload = _HEADER.pack(version, mtype, int(seq) % 65536, t_us) + body_of(msg)
    except ProtocolError:
        raise
    except (struct.error, OverflowError, TypeError, ValueError, AttributeError) as e:
        raise ProtocolError(f"cannot encode {type(msg).__name__}: {e}") from None
    size = len(payload) + _CRC.size
    if size > MAX_FRAME_BYTES:
        raise ProtocolError(f"{type(msg).__name__} frame is {size} bytes, at most MAX_FRAME_BYTES={MAX_FRAME_BYTES}")
    return b"\x00" + cobs_encode(payload + _CRC.pack(zlib.crc32(payload))) + b"\x00"


def _float32(p: bytes, off: int, n: int) -> np.ndarray:
    return np.frombuffer(p, "<f4", n, off).astype(np.float32) if n else np.empty(0, np.float32)  # writable copy


def _robot_id(p: bytes, off: int, n: int) -> str:
    try:
        return p[off:].decode("utf-8")
    except UnicodeDecodeError as e:
        raise ProtocolError(f"INFO robot_id is not UTF-8: {e}") from None


# type -> (fixed part after the header, variable tail: (bytes per item, decoder[, item count from the fixed fields,
# default: the last one]), build); version 2 extends it
BODIES: dict[int, tuple[struct.Struct, Any, Any]] = {
    MsgType.HELLO: (_NONE, None, lambda f, t: Hello()),
    MsgType.INFO: (_INFO, (1, _robot_id), lambda f, t: Info(t, f[0], f[1], f[2])),
    MsgType.STATE: (_STATE, (4, _float32), lambda f, t: State(f[0], f[1], f[2], t)),
    MsgType.COMMAND: (_COMMAND, (4, _float32), lambda f, t: Command(t)),
    MsgType.RESET: (_RESET, None, lambda f, t: Reset(f[0])),
    MsgType.HEARTBEAT: (_NONE, None, lambda f, t: Heartbeat()),
    MsgType.FAULT: (  # the text is decoded leniently: a fault must not be lost to a mangled message
        _FAULT,
        (1, lambda p, off, n: p[off:].decode("utf-8", "replace")),
        lambda f, t: Fault(_FAULT_CODES.get(f[0], f[0]), t),
    ),
    MsgType.SAFE_STOP: (_NONE, None, lambda f, t: SafeStop()),
}


def decode_payload(payload: bytes) -> Frame:
    """The frame in ``payload`` (header + body, after COBS decoding and the CRC check).

    Raises ProtocolError saying what is wrong: short header, other version, unknown type,
    a body whose length disagrees with its layout, a robot id that is not UTF-8."""
    return decode_with(payload, {PROTOCOL_VERSION: BODIES})


def decode_with(payload: bytes, bodies: dict[int, dict[int, tuple[struct.Struct, Any, Any]]]) -> Frame:
    """Decode ``payload`` with the body table of its version (``bodies[version][type]``: fixed layout, variable
    tail, builder); shared with later protocol versions."""
    payload = bytes(payload)
    if len(payload) < HEADER_BYTES:
        raise ProtocolError(f"payload is {len(payload)} bytes, shorter than the {HEADER_BYTES}-byte header")
    version, mtype, seq, t_us = _HEADER.unpack_from(payload)
    table = bodies.get(version)
    if table is None:
        raise ProtocolError(f"protocol version {version}, this side speaks {', '.join(map(str, sorted(bodies)))}")
    if mtype not in table:
        raise ProtocolError(f"unknown message type 0x{mtype:02x}")
    layout, tail, build = table[mtype]
    got = len(payload) - HEADER_BYTES
    if got < layout.size:
        raise ProtocolError(f"{_type_name(mtype)} body is {got} bytes, shorter than its {layout.size}-byte head")
    fixed = layout.unpack_from(payload, HEADER_BYTES)
    count = (tail[2](fixed) if len(tail) > 2 else fixed[-1]) if tail else 0
    want = layout.size + (tail[0] * count if tail else 0)
    if got != want:
        raise ProtocolError(f"{_type_name(mtype)} body is {got} bytes, its layout says {want}")
    value = tail[1](payload, HEADER_BYTES + layout.size, count) if tail else None
    return Frame(seq, t_us, build(fixed, value))


def _type_name(mtype: int) -> str:
    return MsgType(mtype).name if mtype in MsgType._value2member_map_ else f"type 0x{mtype:02x}"


# ---------------------------------------------------------------- streaming


class FrameDecoder:
    """Streaming parser: feed() any chunk of bytes, get the complete good frames; keeps partial data between calls.

    Counters: ``frames_ok``; ``bad_frames`` (COBS error, CRC mismatch, bad version, unknown
    type, bad body length); ``oversized_frames`` (decoded size over MAX_FRAME_BYTES, or more
    than MAX_WIRE_BYTES without a delimiter); ``bytes_discarded`` (wire bytes of every bad or
    oversized frame, delimiters excluded). Empty frames (consecutive zeros) are ignored.
    Memory is bounded: at most MAX_WIRE_BYTES of an unfinished frame are kept."""

    def __init__(self, decode: Callable[[bytes], Frame] = decode_payload) -> None:
        self._decode = decode  # the payload decoder of the protocol version(s) this side speaks
        self.frames_ok = 0
        self.bad_frames = 0
        self.oversized_frames = 0
        self.bytes_discarded = 0
        self.last_error = ""  # why the latest bad or oversized frame was dropped
        self._buf = b""
        self._skipping = False  # inside an oversized frame: drop everything up to the next zero

    @property
    def errors(self) -> int:
        return self.bad_frames + self.oversized_frames

    @property
    def buffered_bytes(self) -> int:
        """Bytes of an unfinished frame held until its closing zero arrives (≤ MAX_WIRE_BYTES)."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Frame]:
        """The good frames completed by ``data``, in order."""
        if not data:
            return []
        data = bytes(data)
        if self._skipping:
            end = data.find(_ZERO)
            if end < 0:
                self.bytes_discarded += len(data)
                return []
            self.bytes_discarded += end
            self._skipping = False
            data = data[end + 1 :]
        elif self._buf:
            data = self._buf + data
        *complete, self._buf = data.split(_ZERO)
        frames = [f for f in map(self._frame, filter(None, complete)) if f is not None]  # empty segments: no frame
        if len(self._buf) > MAX_WIRE_BYTES:
            self._oversized(self._buf, f"no delimiter within {MAX_WIRE_BYTES} bytes")
            self._buf, self._skipping = b"", True
        return frames

    def _frame(self, segment: bytes) -> Frame | None:
        if len(segment) > MAX_WIRE_BYTES:
            return self._oversized(segment, f"{len(segment)} bytes on the wire")
        try:
            raw = cobs_decode(segment)
            if len(raw) > MAX_FRAME_BYTES:
                return self._oversized(segment, f"{len(raw)} bytes decoded")
            payload = raw[:-4]
            if len(raw) < 4 or zlib.crc32(payload) != _CRC.unpack_from(raw, len(raw) - 4)[0]:
                raise ProtocolError(f"CRC mismatch ({len(raw)}-byte frame)")
            frame = self._decode(payload)
        except ProtocolError as e:
            self.bad_frames += 1
            self.bytes_discarded += len(segment)
            self.last_error = str(e)
            log.debug("bad frame dropped: %s", e)
            return None
        self.frames_ok += 1
        return frame

    def _oversized(self, segment: bytes, what: str) -> None:
        self.oversized_frames += 1
        self.bytes_discarded += len(segment)
        self.last_error = f"oversized frame ({what}, MAX_FRAME_BYTES={MAX_FRAME_BYTES})"
        log.debug("%s", self.last_error)


class SeqTracker:
    """Counts frames missing from one sender's sequence (gaps, with wrap-around at 2**16) and duplicates/reordered.

    A seq ahead of the last one by d (mod 2**16, d < 2**15) means d - 1 frames were lost. A
    seq at most REORDER_WINDOW behind is a duplicate or late frame (``out_of_order``, the
    expected position is kept); further behind, the sender restarted: counted out of order
    and the tracker follows the new sequence."""

    REORDER_WINDOW = 1024

    def __init__(self) -> None:
        self.missing = 0
        self.out_of_order = 0
        self._last: int | None = None

    def update(self, seq: int) -> int:
        """The number of frames missing just before ``seq`` (0 normally, and on the first call)."""
        seq %= 65536
        last, self._last = self._last, seq
        if last is None:
            return 0
        ahead = (seq - last) % 65536
        if 0 < ahead < 32768:
            self.missing += ahead - 1
            return ahead - 1
        self.out_of_order += 1
        if (last - seq) % 65536 <= self.REORDER_WINDOW:
            self._last = last  # a straggler: keep expecting what follows `last`
        return 0
