"""Codec fuzzer: valid, truncated, corrupted and oversized frames plus garbage through one ``FrameDecoder``.

The stream is built in batches from a seeded ``np.random.Generator`` and fed to the decoder
in random-size chunks (1 byte to 8 KiB). Beside it runs a reference receiver that is slow
and obviously correct: it splits the whole stream on zeros and classifies each damaged
segment with a per-byte COBS decoder. The fuzzer then checks that the decoder agrees with
it exactly (every intact frame decoded once, equal to what was encoded, in order; the bad
and oversized counters and discarded bytes match), that every damaged frame shows up in the
error counters, that a good frame right after damage is always decoded (resync within one
frame) and that the decoder never holds more than MAX_WIRE_BYTES. Violations are returned,
never raised.
"""

from __future__ import annotations

import struct
import time
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from metactl.deploy import protocol as pr

_BATCH = 2048
_P_TRUNCATED, _P_CORRUPTED, _P_OVERSIZED = 0.05, 0.07, 0.004  # the rest are valid frames
_P_GARBAGE = 0.05  # chance of a garbage run before any frame
_MAX_CHUNK = 8192
_ROBOT_IDS = ("cheetah-01", "four_corners", "", "ロボット-7", "x" * 255)
_FAULT_TEXT = ("", "watchdog", "no valid command for 61.2 ms; motors safe-stopped", "überhitzt ⚠", "é" * 127)
_FAULT_CODES = (*pr.FaultCode, 0, 999, 65535)
_MSG_TYPES = (pr.Hello, pr.Info, pr.State, pr.Command, pr.Reset, pr.Heartbeat, pr.Fault, pr.SafeStop)
_LOW_BITS = bytes(b & 3 for b in range(256))  # turns random bytes into zero-dense garbage
_MAX_VIOLATIONS = 20


def reference_cobs_decode(segment: bytes) -> bytes | None:
    """Per-byte COBS decoding straight from Cheshire & Baker; None when the segment is not valid COBS."""
    out = bytearray()
    i, n = 0, len(segment)
    if n == 0:
        return None
    while i < n:
        code = segment[i]
        i += 1
        if code == 0:
            return None
        for _ in range(code - 1):
            if i >= n or segment[i] == 0:
                return None
            out.append(segment[i])
            i += 1
        if code < 0xFF and i < n:
            out.append(0)
    return bytes(out)


def _float_pool(rng: np.random.Generator) -> np.ndarray:
    """float32 values: normals, specials, and 10 % arbitrary bit patterns (NaN payloads, denormals)."""
    pool = rng.standard_normal(1 << 16).astype(np.float32)
    special = np.array([np.nan, np.inf, -np.inf, -0.0, 0.0, 3.4028235e38, 1e-45], np.float32)
    pool[rng.integers(0, pool.size, 2000)] = rng.choice(special, 2000)
    pool[rng.integers(0, pool.size, pool.size // 10)] = rng.integers(0, 2**32, pool.size // 10, np.uint32).view(
        np.float32
    )
    return pool


class _Messages:
    """Random messages of every type, built from pre-drawn integers (numpy calls per batch, not per frame)."""

    def __init__(self, rng: np.random.Generator):
        self.floats = _float_pool(rng)
        self.rewards = [float(x) for x in rng.standard_normal(1021)] + [float("nan"), float("inf"), -0.0]

    def make(self, kind: int, r: list[int]) -> pr.Message:
        """The message of type ``_MSG_TYPES[kind]`` drawn from the five random u32 in ``r``."""
        cls = _MSG_TYPES[kind]
        if cls is pr.Info:
            return pr.Info(_ROBOT_IDS[r[0] % len(_ROBOT_IDS)], r[1] & 0xFFFF, r[2] & 0xFFFF, r[3])
        if cls is pr.State:
            n, at = r[3] % 65, r[4] % (self.floats.size - 64)
            return pr.State(
                r[0] & 0xFFFF, r[1] & 0xFF, self.rewards[r[2] % len(self.rewards)], self.floats[at : at + n]
            )
        if cls is pr.Command:
            n, at = r[3] % 33, r[4] % (self.floats.size - 32)
            return pr.Command(self.floats[at : at + n])
        if cls is pr.Reset:
            return pr.Reset(r[0] << 32 | r[1])
        if cls is pr.Fault:
            return pr.Fault(_FAULT_CODES[r[0] % len(_FAULT_CODES)], _FAULT_TEXT[r[1] % len(_FAULT_TEXT)])
        return cls()


@dataclass
class _Reference:
    """The slow receiver: what the decoder must report for the stream seen so far."""

    frames: list[pr.Frame] = field(default_factory=list)  # expected from the current batch
    after_damage: list[bool] = field(default_factory=list)  # per expected frame: right after damage?
    bad: int = 0
    oversized: int = 0
    discarded: int = 0
    accidental_good: int = 0  # damaged segments that still were valid frames (CRC-32 misses ~2**-32)
    tail: bytes = b""  # the segment still open (no closing zero yet)

    def damaged(self, data: bytes) -> None:
        *closed, self.tail = (self.tail + data).split(b"\x00")
        for segment in closed:
            if segment:
                self._classify(segment)

    def intact(self, frame: pr.Frame, after_damage: bool) -> None:
        if self.tail:  # the frame's leading zero closes whatever was open
            self._classify(self.tail)
            self.tail = b""
        self.frames.append(frame)
        self.after_damage.append(after_damage)

    def _classify(self, segment: bytes) -> None:
        raw = None if len(segment) > pr.MAX_WIRE_BYTES else reference_cobs_decode(segment)
        if len(segment) > pr.MAX_WIRE_BYTES or (raw is not None and len(raw) > pr.MAX_FRAME_BYTES):
            self.oversized += 1
        elif raw is None or len(raw) < 4 or zlib.crc32(raw[:-4]) != int.from_bytes(raw[-4:], "little"):
            self.bad += 1
        else:
            try:
                self.frames.append(pr.decode_payload(raw[:-4]))
                self.after_damage.append(False)
                self.accidental_good += 1
                return
            except pr.ProtocolError:
                self.bad += 1
        self.discarded += len(segment)


@dataclass
class _Counts:
    valid: int = 0
    truncated: int = 0
    corrupted: int = 0
    oversized: int = 0
    garbage_runs: int = 0
    garbage_bytes: int = 0
    valid_after_damage: int = 0
    by_type: dict[str, int] = field(default_factory=lambda: {c.__name__: 0 for c in _MSG_TYPES})


def _oversized_item(rng: np.random.Generator, seq: int, t_us: int) -> bytes:
    """A well-formed STATE frame (good CRC) whose payload + CRC exceeds MAX_FRAME_BYTES by 1 B to ~12 KiB."""
    size = pr.MAX_FRAME_BYTES + int(rng.integers(1, 64) if rng.random() < 0.5 else rng.integers(64, 12_000))
    payload = struct.pack("<BBHQ", pr.PROTOCOL_VERSION, pr.MsgType.STATE, seq, t_us) + rng.bytes(size - 16)
    return b"\x00" + pr.cobs_encode(payload + struct.pack("<I", zlib.crc32(payload))) + b"\x00"


def _batch(
    rng: np.random.Generator, msgs: _Messages, n: int, seq0: int, t0: int, counts: _Counts, ref: _Reference
) -> bytes:
    """``n`` frames of the stream (with garbage runs between them), also told to the reference receiver."""
    u = rng.random((n, 2)).tolist()
    kinds = rng.integers(0, len(_MSG_TYPES), n).tolist()
    r = rng.integers(0, 2**32, (n, 5), dtype=np.uint64).tolist()
    parts: list[bytes] = []
    damaged_before = False
    for i in range(n):
        seq, t_us = (seq0 + i) % 65536, t0 + 1000 * i
        if u[i][1] < _P_GARBAGE:
            garbage = rng.bytes(1 + r[i][4] % 64)
            garbage = garbage.translate(_LOW_BITS) if r[i][4] & 1 else garbage
            parts.append(garbage)
            ref.damaged(garbage)
            counts.garbage_runs, counts.garbage_bytes = counts.garbage_runs + 1, counts.garbage_bytes + len(garbage)
            damaged_before = True
        p = u[i][0]
        if p < _P_OVERSIZED:
            item = _oversized_item(rng, seq, t_us)
            counts.oversized += 1
            ref.damaged(item)
            parts.append(item)
            damaged_before = True
            continue
        msg = msgs.make(kinds[i], r[i])
        wire = pr.encode(msg, seq, t_us)
        if p < _P_OVERSIZED + _P_TRUNCATED:
            item = wire[: 2 + r[i][0] % (len(wire) - 3)]  # the leading zero and 1 .. len-1 encoded bytes
            counts.truncated += 1
        elif p < _P_OVERSIZED + _P_TRUNCATED + _P_CORRUPTED:
            body = bytearray(wire[1:-1])
            for at in {(r[i][2] >> (10 * k)) % len(body) for k in range(1 + r[i][1] % 3)}:  # distinct: no undo
                body[at] ^= 1 << ((r[i][3] >> (3 * (at % 8))) & 7)
            item = b"\x00" + bytes(body) + b"\x00"
            counts.corrupted += 1
        else:
            parts.append(wire)
            ref.intact(pr.Frame(seq, t_us, msg), damaged_before)
            counts.valid += 1
            counts.by_type[type(msg).__name__] += 1
            counts.valid_after_damage += damaged_before
            damaged_before = False
            continue
        parts.append(item)
        ref.damaged(item)
        damaged_before = True
    return b"".join(parts)


def _chunk_ends(rng: np.random.Generator, length: int) -> list[int]:
    """Cut points for feeding ``length`` bytes in log-uniform chunks of 1 .. _MAX_CHUNK bytes."""
    ends: list[int] = []
    total = 0
    while total < length:
        sizes = np.exp(rng.uniform(0.0, np.log(_MAX_CHUNK), 256)).astype(np.int64)
        cum = np.cumsum(sizes) + total
        ends += cum[cum < length].tolist()
        total = int(cum[-1])
    return [*ends, length]


def _feed(decoder: pr.FrameDecoder, stream: bytes, ends: list[int]) -> tuple[list[pr.Frame], float, int]:
    """Feed ``stream`` cut at ``ends``: the decoded frames, the seconds spent, the most bytes buffered."""
    frames: list[pr.Frame] = []
    most, start = 0, 0
    t = time.perf_counter()
    for end in ends:
        frames += decoder.feed(stream[start:end])
        most = max(most, decoder.buffered_bytes)
        start = end
    return frames, time.perf_counter() - t, most


def _compare(decoded: list[pr.Frame], ref: _Reference, violations: list[str]) -> int:
    """Check the batch's decoded frames against the reference; how many frames right after damage were decoded."""
    if decoded == ref.frames:
        return sum(ref.after_damage)
    violations.append(f"decoded {len(decoded)} frames that differ from the {len(ref.frames)} sent (content or order)")
    by_time: dict[int, list[pr.Frame]] = {}
    for f in decoded:
        by_time.setdefault(f.t_us, []).append(f)
    resynced = 0
    for want, after in zip(ref.frames, ref.after_damage, strict=True):
        got = by_time.get(want.t_us, [])
        if want in got:
            got.remove(want)
            resynced += after
        else:
            where = " right after damage (no resync)" if after else ""
            violations.append(f"frame seq={want.seq} t_us={want.t_us} ({type(want.msg).__name__}){where} was lost")
    extra = [f for fs in by_time.values() for f in fs]
    if extra:
        violations.append(f"{len(extra)} decoded frames were not sent (or decoded twice), e.g. {extra[0]!r:.200}")
    return resynced


def fuzz_codec(n_frames: int, seed: int) -> dict[str, Any]:
    """Fuzz ``FrameDecoder`` with ``n_frames`` frames (valid, truncated, corrupted, oversized) plus garbage runs.

    Returns flat counts (JSON-ready): frames generated per category, what the decoder
    reported and what the reference expected, resync after damage, decode time and
    frames/s (all ``n_frames`` over the time spent inside ``feed``), and ``violations``."""
    t_start = time.perf_counter()
    rng = np.random.default_rng(seed)
    msgs, counts, ref, decoder = _Messages(rng), _Counts(), _Reference(), pr.FrameDecoder()
    violations: list[str] = []
    decode_s, most, stream_bytes, chunks, resynced, done = 0.0, 0, 0, 0, 0, 0
    t0 = int(rng.integers(0, 2**62))
    while done <= n_frames:  # the last round (no frames) only closes the stream with a zero
        n = min(_BATCH, n_frames - done)
        stream = _batch(rng, msgs, n, seq0=done, t0=t0 + 1000 * done, counts=counts, ref=ref) if n else b"\x00"
        if not n:
            ref.damaged(stream)
        ends = _chunk_ends(rng, len(stream))
        try:
            decoded, seconds, held = _feed(decoder, stream, ends)
        except Exception as e:  # a fuzzer reports; the decoder raising on any input is the violation
            violations.append(f"FrameDecoder.feed raised {type(e).__name__}: {e}")
            break
        decode_s, most = decode_s + seconds, max(most, held)
        stream_bytes, chunks = stream_bytes + len(stream), chunks + len(ends)
        resynced += _compare(decoded, ref, violations)
        ref.frames, ref.after_damage = [], []
        done += n if n else 1
    _check_counters(decoder, ref, counts, most, violations)
    damaged = counts.truncated + counts.corrupted + counts.oversized
    return {
        "n_frames": n_frames,
        "seed": seed,
        "generated_valid": counts.valid,
        "generated_truncated": counts.truncated,
        "generated_corrupted": counts.corrupted,
        "generated_oversized": counts.oversized,
        "garbage_runs": counts.garbage_runs,
        "garbage_bytes": counts.garbage_bytes,
        "stream_bytes": stream_bytes,
        "chunks": chunks,
        "decoded_frames": decoder.frames_ok,
        "bad_frames": decoder.bad_frames,
        "oversized_frames": decoder.oversized_frames,
        "bytes_discarded": decoder.bytes_discarded,
        "expected_bad_frames": ref.bad,
        "expected_oversized_frames": ref.oversized,
        "damaged_but_valid": ref.accidental_good,
        "damaged_frames": damaged,
        "valid_after_damage": counts.valid_after_damage,
        "resynced_after_damage": resynced,
        "resync_ok": resynced == counts.valid_after_damage,
        "max_buffered_bytes": most,
        "decode_seconds": decode_s,
        "frames_per_s": n_frames / decode_s if decode_s > 0 else 0.0,
        "mb_per_s": stream_bytes / decode_s / 1e6 if decode_s > 0 else 0.0,
        "seconds": time.perf_counter() - t_start,
        "valid_by_type": counts.by_type,
        "violations": violations[:_MAX_VIOLATIONS]
        + ([f"... and {len(violations) - _MAX_VIOLATIONS} more"] if len(violations) > _MAX_VIOLATIONS else []),
    }


def _check_counters(
    decoder: pr.FrameDecoder, ref: _Reference, counts: _Counts, most: int, violations: list[str]
) -> None:
    """The decoder's counters against the reference's, and the invariants that need no reference."""
    want_ok = counts.valid + ref.accidental_good
    for name, got, want in (
        ("frames_ok", decoder.frames_ok, want_ok),
        ("bad_frames", decoder.bad_frames, ref.bad),
        ("oversized_frames", decoder.oversized_frames, ref.oversized),
        ("bytes_discarded", decoder.bytes_discarded, ref.discarded),
        ("buffered_bytes at the end", decoder.buffered_bytes, 0),
    ):
        if got != want:
            violations.append(f"decoder {name} = {got}, the reference says {want}")
    # Each damaged frame starts a segment of its own (its leading zero), so it is at least one error.
    damaged = counts.truncated + counts.corrupted + counts.oversized
    if decoder.errors < damaged - ref.accidental_good:
        violations.append(f"{decoder.errors} errors counted for {damaged} damaged frames")
    if decoder.oversized_frames < counts.oversized:
        violations.append(f"{decoder.oversized_frames} oversized frames counted, {counts.oversized} sent")
    if most > pr.MAX_WIRE_BYTES:
        violations.append(f"the decoder buffered {most} bytes, more than MAX_WIRE_BYTES={pr.MAX_WIRE_BYTES}")
