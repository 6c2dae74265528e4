"""The firmware's C codec against the Python codec: byte-identical frames, identical counters under fuzzing.

The C side is firmware/src/mc_wire.c and mc_msg.c built with the system gcc; codec_shim.c decodes every good
frame into typed fields and encodes it again from them, so a byte-identical result means both the C decoder
and the C encoder agree with Python on every field.
"""

from __future__ import annotations

import ctypes
import struct
import zlib

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metactl.deploy import protocol as pr
from metactl.deploy import protocol2 as p2


class CCodec:
    """The C receiver + re-encoder of ``codec_shim.c``."""

    def __init__(self, path: str):
        self.lib = ctypes.CDLL(path)
        self.lib.shim_feed.restype = ctypes.c_long
        self.lib.shim_feed.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t]
        self.lib.shim_reset()

    def feed(self, data: bytes) -> bytes:
        out = ctypes.create_string_buffer(2 * len(data) + 2 * pr.MAX_WIRE_BYTES)  # frames finished by this chunk
        n = self.lib.shim_feed(data, len(data), out, len(out))
        assert n >= 0, f"shim_feed failed ({n})"
        return out.raw[:n]

    def counters(self) -> tuple[int, ...]:
        c = (ctypes.c_uint32 * 5)()
        self.lib.shim_counters(c)
        return tuple(c)


def _counters(d: pr.FrameDecoder) -> tuple[int, ...]:
    return d.frames_ok, d.bad_frames, d.oversized_frames, d.bytes_discarded, d.buffered_bytes


def test_the_specs_worked_example_is_byte_identical(codec_lib: str) -> None:
    """docs/protocol.md section 7: COMMAND [1.0, -2.0], seq 7, t_us 1000."""
    wire = bytes.fromhex("00 04 01 11 07 03 e8 03 01 01 01 01 01 02 02 01 01 03 80 3f 01 01 06 c0 9a 10 40 25 00")
    assert pr.encode(pr.Command(np.array([1.0, -2.0], np.float32)), 7, 1000) == wire
    c = CCodec(codec_lib)
    assert c.feed(wire) == wire
    assert c.counters() == (1, 0, 0, 0, 0)


# ------------------------------------------------------------------ every message, both versions

u8, u16, u32, u64 = (st.integers(0, 2**k - 1) for k in (8, 16, 32, 64))
f32s = st.binary(max_size=4 * 40).map(lambda b: np.frombuffer(b[: len(b) // 4 * 4], "<f4").astype(np.float32))
f64s = st.binary(min_size=8, max_size=8).map(lambda b: struct.unpack("<d", b)[0])
text = st.text(max_size=40)
V1 = st.one_of(
    st.builds(pr.Hello), st.builds(pr.Info, text, u16, u16, u32), st.builds(pr.State, u16, u8, f64s, f32s),
    st.builds(pr.Command, f32s), st.builds(pr.Reset, u64), st.builds(pr.Heartbeat),
    st.builds(pr.Fault, u16, text), st.builds(pr.SafeStop),
)  # fmt: skip
V2 = st.one_of(
    st.builds(pr.Hello), st.builds(pr.State, u16, u8, f64s, f32s), st.builds(pr.Command, f32s),
    st.builds(pr.Reset, u64), st.builds(pr.Heartbeat), st.builds(pr.Fault, u16, text), st.builds(pr.SafeStop),
    st.builds(p2.InfoV2, text, u16, u16, u32, u32, u32, u32, u32, u16, u8),
    st.builds(p2.EpisodeStart, u64, u32, u8), st.builds(p2.Step, u16, u32, u8, f64s, f32s, f32s),
    st.builds(p2.EpisodeEnd, u16, u8, u32, f64s, u32), st.builds(p2.Keepalive), st.builds(p2.Params, u32, f32s),
    st.builds(p2.ParamsCommit, u32, u32), st.builds(p2.ParamsAck, u16, u8, u32, u32), st.builds(p2.Status),
    st.builds(p2.StatusReport, u16, u32, u32, u32, u32, u64, u64, u32, u32),
)  # fmt: skip


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(V1.map(lambda m: (pr.encode, m)), V2.map(lambda m: (p2.encode, m))), u16, u64)
def test_every_message_of_both_versions_round_trips_byte_identical(codec_lib: str, item, seq: int, t_us: int) -> None:
    encode, msg = item
    wire = encode(msg, seq, t_us)
    c = CCodec(codec_lib)
    assert c.feed(wire) == wire  # decoded to fields and encoded from them: every bit of every field agrees
    assert c.counters()[:3] == (1, 0, 0)


# ------------------------------------------------------------------ fuzzing against the Python decoder


def _random_message(rng: np.random.Generator) -> tuple[bytes, int]:
    """A random v1 or v2 frame (wire bytes) and its seq."""
    seq, t_us = int(rng.integers(0, 2**16)), int(rng.integers(0, 2**63))
    floats = rng.standard_normal(int(rng.integers(0, 24))).astype(np.float32)
    floats[rng.random(floats.size) < 0.1] = np.nan
    pick = int(rng.integers(0, 9))
    v1 = (pr.State(seq, 5, float(rng.standard_normal()), floats), pr.Command(floats), pr.Reset(seq),
          pr.Info("cheetah-01", 17, 6, 50_000), pr.Fault(2, "überhitzt ⚠"), pr.Hello())  # fmt: skip
    v2 = (p2.Step(seq, 3, 1, -0.25, floats, floats[:6]), p2.Params(seq, floats), p2.EpisodeEnd(seq, 3, 7, 1.5, 9),
          p2.InfoV2("ロボット", 17, 6, 50_000, 250_000, 108, 1, 2, 32, 1), p2.Keepalive())  # fmt: skip
    if pick < 5:
        return pr.encode(v1[int(rng.integers(0, len(v1)))], seq, t_us), seq
    return p2.encode(v2[int(rng.integers(0, len(v2)))], seq, t_us), seq


def _damaged(rng: np.random.Generator, wire: bytes) -> bytes:
    kind = int(rng.integers(0, 5))
    if kind == 0:  # truncated: the leading zero and some of the frame
        return wire[: 2 + int(rng.integers(0, len(wire) - 3))]
    if kind == 1:  # bit flips
        body = bytearray(wire[1:-1])
        for at in set(rng.integers(0, len(body), int(rng.integers(1, 4))).tolist()):
            body[at] ^= 1 << int(rng.integers(0, 8))
        return b"\x00" + bytes(body) + b"\x00"
    if kind == 2:  # garbage, sometimes dense in zeros
        junk = rng.bytes(int(rng.integers(1, 80)))
        return bytes(b & 3 for b in junk) if rng.random() < 0.5 else junk
    if kind == 3:  # a good CRC around an unknown version or type
        payload = struct.pack("<BBHQ", int(rng.choice([0, 3, 7])), 0x11, 1, 0) + b"\x00\x00"
        if rng.random() < 0.5:
            payload = struct.pack("<BBHQ", 2, 0x7E, 1, 0)
        return b"\x00" + pr.cobs_encode(payload + struct.pack("<I", zlib.crc32(payload))) + b"\x00"
    size = pr.MAX_FRAME_BYTES + int(rng.integers(1, 3000))  # oversized, with a good CRC
    payload = struct.pack("<BBHQ", 1, 0x10, 0, 0) + rng.bytes(size - 16)
    return b"\x00" + pr.cobs_encode(payload + struct.pack("<I", zlib.crc32(payload))) + b"\x00"


def test_fuzzed_streams_decode_exactly_as_in_python(codec_lib: str) -> None:
    """20,000 frames of both versions mixed with truncated, corrupted, oversized, foreign-version frames and
    garbage, fed in random chunks: the C receiver returns exactly the intact frames, byte for byte, and its
    counters equal Python's FrameDecoder's (frames, bad, oversized, bytes discarded, bytes held)."""
    rng = np.random.default_rng(17)
    c, py = CCodec(codec_lib), p2.frame_decoder()
    for _ in range(4):
        parts, intact = [], []
        for _ in range(5000):
            wire, _seq = _random_message(rng)
            if rng.random() < 0.2:
                parts.append(_damaged(rng, wire))
            else:
                parts.append(wire)
                intact.append(wire)
        stream = b"".join(parts)
        cuts = np.sort(rng.integers(0, len(stream), len(stream) // 50))
        from_c, from_py = [], []
        for a, b in zip([0, *cuts.tolist()], [*cuts.tolist(), len(stream)], strict=True):
            from_c.append(c.feed(stream[a:b]))
            from_py += py.feed(stream[a:b])
        assert b"".join(from_c) == b"".join(intact)  # every intact frame, once, in order, byte-identical
        assert len(from_py) == len(intact)
        assert c.counters() == _counters(py)
    assert py.bad_frames > 1000 and py.oversized_frames > 50  # the damage really happened
