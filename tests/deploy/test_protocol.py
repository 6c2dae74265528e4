"""Protocol v1 codec: round trips (bit-exact floats), COBS, the streaming decoder's resync and counters, SeqTracker,
and the codec fuzzer."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metactl.deploy import fuzz_codec as fz
from metactl.deploy import protocol as pr

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _wire(payload: bytes) -> bytes:
    """A frame around any payload (no size or content checks), as a foreign or broken sender would make it."""
    return b"\x00" + pr.cobs_encode(payload + struct.pack("<I", zlib.crc32(payload))) + b"\x00"


def _payload(mtype: int, body: bytes = b"", version: int = pr.PROTOCOL_VERSION, seq: int = 0) -> bytes:
    return struct.pack("<BBHQ", version, mtype, seq, 0) + body


# ---------------------------------------------------------------- strategies

u16, u32, u64 = (st.integers(0, 2**k - 1) for k in (16, 32, 64))
# Arbitrary float32 bit patterns: NaNs with payloads (quiet and signalling), infinities, denormals, -0.
f32_arrays = st.binary(max_size=4 * 64).map(lambda b: np.frombuffer(b[: len(b) // 4 * 4], "<f4").astype(np.float32))
f64_any = st.binary(min_size=8, max_size=8).map(lambda b: struct.unpack("<d", b)[0])
messages = st.one_of(
    st.builds(pr.Hello),
    st.builds(pr.Info, st.text(max_size=60), u16, u16, u32),
    st.builds(pr.State, u16, st.integers(0, 255), st.one_of(st.floats(), f64_any), f32_arrays),
    st.builds(pr.Command, f32_arrays),
    st.builds(pr.Reset, u64),
    st.builds(pr.Heartbeat),
    st.builds(pr.Fault, st.one_of(st.sampled_from(pr.FaultCode), u16), st.text(max_size=80)),
    st.builds(pr.SafeStop),
)
frames = st.builds(pr.Frame, u16, u64, messages)


def _encode(f: pr.Frame) -> bytes:
    return pr.encode(f.msg, f.seq, f.t_us)


# ---------------------------------------------------------------- round trips and layout


@FAST
@given(frames)
def test_every_message_round_trips_bit_exact(frame: pr.Frame) -> None:
    wire = _encode(frame)
    assert wire[0] == 0 and wire[-1] == 0 and 0 not in wire[1:-1]
    (got,) = pr.FrameDecoder().feed(wire)
    assert got == frame  # State/Command equality compares float bits: NaN payloads survive
    if isinstance(frame.msg, pr.State | pr.Command):
        arr = got.msg.obs if isinstance(got.msg, pr.State) else got.msg.cmd
        assert arr.dtype == np.float32 and arr.flags.writeable
    if isinstance(frame.msg, pr.State):
        assert struct.pack("<d", got.msg.reward) == struct.pack("<d", frame.msg.reward)


def test_byte_layout_matches_docs() -> None:
    """The worked example of docs/protocol.md: COMMAND [1.0, -2.0], seq 7, t_us 1000."""
    wire = pr.encode(pr.Command(np.array([1.0, -2.0], np.float32)), 7, 1000)
    payload = bytes.fromhex("01 11 0700 e803000000000000 0200 0000803f 000000c0")
    raw = pr.cobs_decode(wire[1:-1])
    assert raw == payload + struct.pack("<I", zlib.crc32(payload))
    assert wire.hex(" ") == "00 04 01 11 07 03 e8 03 01 01 01 01 01 02 02 01 01 03 80 3f 01 01 06 c0 9a 10 40 25 00"
    assert pr.decode_payload(payload) == pr.Frame(7, 1000, pr.Command(np.array([1.0, -2.0], np.float32)))


def test_seq_is_taken_mod_2_16_and_float64_commands_become_float32() -> None:
    (f,) = pr.FrameDecoder().feed(pr.encode(pr.Command(np.array([0.1, 2.0])), 65536 + 5, 3))
    assert f.seq == 5 and f.msg.cmd.dtype == np.float32 and f.msg == pr.Command(np.array([0.1, 2.0], np.float32))


def test_fault_text_is_cut_to_255_bytes_at_a_character_boundary() -> None:
    (f,) = pr.FrameDecoder().feed(pr.encode(pr.Fault(pr.FaultCode.LIMIT, "é" * 200), 0, 0))
    assert f.msg.message == "é" * 127  # 2 bytes each: 127 fit in 255, the 128th would be cut in half
    assert f.msg.code is pr.FaultCode.LIMIT
    (f,) = pr.FrameDecoder().feed(pr.encode(pr.Fault(4242, "x"), 0, 0))
    assert f.msg.code == 4242  # unknown codes pass through as int


@pytest.mark.parametrize(
    "msg, what",
    [
        (pr.Info("x" * 256, 1, 1, 1), "255"),
        (pr.Info("r", 70000, 1, 1), "Info"),
        (pr.Reset(2**64), "Reset"),
        (pr.Reset(-1), "Reset"),
        (pr.State(0, 256, 0.0, np.zeros(1, np.float32)), "State"),
        (pr.Command(np.zeros((2, 2), np.float32)), "1-D"),
        (pr.Command(np.zeros(1100, np.float32)), "MAX_FRAME_BYTES"),
        ("hello", "not a protocol message"),
    ],
)
def test_unencodable_messages_raise_protocol_error(msg, what) -> None:
    with pytest.raises(pr.ProtocolError, match=what):
        pr.encode(msg, 0, 0)


def test_largest_frame_fits_and_one_more_float_does_not() -> None:
    n = (pr.MAX_FRAME_BYTES - 12 - 13 - 4) // 4  # header 12, STATE head 13, CRC 4: 1016 floats = 4093 bytes
    big = pr.State(1, 0, 0.0, np.ones(n, np.float32))
    assert pr.FrameDecoder().feed(pr.encode(big, 0, 0))[0].msg == big
    with pytest.raises(pr.ProtocolError):
        pr.encode(pr.State(1, 0, 0.0, np.ones(n + 1, np.float32)), 0, 0)


@pytest.mark.parametrize(
    "payload, error",
    [
        (b"\x01\x13", "shorter than the 12-byte header"),
        (_payload(pr.MsgType.HEARTBEAT, version=2), "protocol version 2"),
        (_payload(0x7F), "unknown message type 0x7f"),
        (_payload(pr.MsgType.HEARTBEAT, b"\x00"), "HEARTBEAT body is 1 bytes"),
        (_payload(pr.MsgType.RESET, b"\x00" * 7), "RESET body is 7 bytes"),
        (_payload(pr.MsgType.COMMAND, b"\x02\x00" + b"\x00" * 4), "COMMAND body"),
        (_payload(pr.MsgType.COMMAND, b"\x01"), "COMMAND body"),
        (_payload(pr.MsgType.STATE, b"\x00" * 13 + b"\x00"), "STATE body"),
        (_payload(pr.MsgType.INFO, b"\x00" * 8 + b"\x02a"), "INFO body"),
        (_payload(pr.MsgType.INFO, b"\x00" * 8 + b"\x01\xff"), "not UTF-8"),
        (_payload(pr.MsgType.FAULT, b"\x01\x00\x05abc"), "FAULT body"),
    ],
)
def test_decode_payload_says_what_is_wrong(payload: bytes, error: str) -> None:
    with pytest.raises(pr.ProtocolError, match=error):
        pr.decode_payload(payload)


def test_messages_compare_and_hash_by_their_wire_bits() -> None:
    a = pr.State(1, 2, float("nan"), np.array([np.nan, 1.0], np.float32))
    b = pr.State(1, 2, float("nan"), np.array([np.nan, 1.0], np.float32))
    assert a == b and hash(a) == hash(b) and a != pr.State(1, 2, float("nan"), np.array([np.nan, 2.0], np.float32))
    assert pr.Command(np.zeros(2, np.float32)) != pr.Command(np.array([0.0, -0.0], np.float32))
    assert pr.Command(np.zeros(1, np.float32)) != pr.State(0, 0, 0.0, np.zeros(1, np.float32))


# ---------------------------------------------------------------- COBS

zero_free_runs = st.integers(1, 700).map(lambda n: bytes(range(1, 256)) * (n // 255) + bytes(range(1, n % 255 + 1)))
cobs_inputs = st.one_of(
    st.binary(max_size=1200),
    st.integers(0, 600).map(bytes),  # all zeros
    st.lists(st.one_of(zero_free_runs, st.binary(max_size=8)), max_size=6).map(b"".join),  # runs > 254
)


@FAST
@given(cobs_inputs)
def test_cobs_round_trips_with_bounded_overhead(data: bytes) -> None:
    enc = pr.cobs_encode(data)
    assert 0 not in enc and len(enc) <= len(data) + len(data) // 254 + 1
    assert pr.cobs_decode(enc) == data == fz.reference_cobs_decode(enc)


@FAST
@given(st.binary(min_size=1, max_size=600).map(lambda b: b.replace(b"\x00", b"\xff")))
def test_cobs_decode_matches_the_reference_on_any_zero_free_input(data: bytes) -> None:
    want = fz.reference_cobs_decode(data)
    if want is None:
        with pytest.raises(pr.ProtocolError):
            pr.cobs_decode(data)
    else:
        assert pr.cobs_decode(data) == want


def test_cobs_decode_accepts_a_frame_ending_in_a_full_block() -> None:
    run = bytes(range(1, 255))  # 254 zero-free bytes: our encoder adds a final 0x01 block, others may not
    assert pr.cobs_encode(run) == b"\xff" + run + b"\x01"
    assert pr.cobs_decode(b"\xff" + run) == run == pr.cobs_decode(b"\xff" + run + b"\x01")


@pytest.mark.parametrize("data", [b"", b"\x02a\x00", b"\x05abc"])
def test_cobs_decode_rejects_invalid_input(data: bytes) -> None:
    with pytest.raises(pr.ProtocolError, match="COBS"):
        pr.cobs_decode(data)


# ---------------------------------------------------------------- streaming decoder


@FAST
@given(st.lists(frames, min_size=1, max_size=12), st.data())
def test_any_chunking_gives_the_same_frames(sent: list[pr.Frame], data: st.DataObject) -> None:
    stream = b"".join(_encode(f) for f in sent)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=30)))
    dec, got = pr.FrameDecoder(), []
    for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        got += dec.feed(stream[a:b])
    assert got == sent and dec.frames_ok == len(sent) and dec.errors == 0


@FAST
@given(st.binary(min_size=1, max_size=300), frames)
def test_a_frame_after_any_garbage_is_decoded(garbage: bytes, frame: pr.Frame) -> None:
    dec = pr.FrameDecoder()
    got = dec.feed(garbage) + dec.feed(_encode(frame))
    assert got[-1] == frame


def test_garbage_without_and_with_zeros_counts_one_bad_frame_per_segment() -> None:
    good = pr.encode(pr.Heartbeat(), 1, 2)
    dec = pr.FrameDecoder()
    assert dec.feed(b"noise without zeros" + good) == [pr.Frame(1, 2, pr.Heartbeat())]
    assert dec.feed(b"ab\x00cd\x00\x00" + good) == [pr.Frame(1, 2, pr.Heartbeat())]
    assert (dec.bad_frames, dec.oversized_frames, dec.frames_ok) == (3, 0, 2)  # "noise..", "ab", "cd"
    assert dec.bytes_discarded == len(b"noise without zeros") + 4


def test_empty_frames_are_ignored() -> None:
    dec = pr.FrameDecoder()
    assert dec.feed(b"\x00" * 50) == [] and dec.errors == 0 and dec.bytes_discarded == 0


def test_corrupted_byte_is_counted_and_the_next_frame_decoded() -> None:
    a, b = pr.encode(pr.Reset(123), 0, 0), pr.encode(pr.Reset(456), 1, 0)
    for i in range(1, len(a) - 1):
        for bit in (0x01, 0x80):
            bad = bytearray(a)
            bad[i] ^= bit
            dec = pr.FrameDecoder()
            assert dec.feed(bytes(bad) + b) == [pr.Frame(1, 0, pr.Reset(456))], (i, bit)
            assert dec.bad_frames >= 1 and dec.oversized_frames == 0 and dec.frames_ok == 1


def test_truncated_frame_then_good_frame() -> None:
    a, b = pr.encode(pr.Info("cheetah", 17, 6, 50_000), 0, 0), pr.encode(pr.Heartbeat(), 1, 0)
    for cut in range(2, len(a) - 1):
        dec = pr.FrameDecoder()
        assert dec.feed(a[:cut]) == []
        assert dec.feed(b) == [pr.Frame(1, 0, pr.Heartbeat())]
        assert (dec.bad_frames, dec.bytes_discarded) == (1, cut - 1)


def test_version_mismatch_and_unknown_type_are_counted_bad() -> None:
    good = pr.encode(pr.Heartbeat(), 3, 0)
    dec = pr.FrameDecoder()
    stream = _wire(_payload(pr.MsgType.HEARTBEAT, version=2)) + _wire(_payload(0x55)) + good
    assert dec.feed(stream) == [pr.Frame(3, 0, pr.Heartbeat())]
    assert dec.bad_frames == 2 and "unknown message type" in dec.last_error


def test_bad_body_length_is_counted_bad() -> None:
    dec = pr.FrameDecoder()
    assert dec.feed(_wire(_payload(pr.MsgType.RESET, b"\x01" * 9))) == []
    assert dec.bad_frames == 1 and "RESET body" in dec.last_error


def test_oversized_frames_are_dropped_with_bounded_memory() -> None:
    good = pr.encode(pr.Heartbeat(), 9, 0)
    just_over = _wire(_payload(pr.MsgType.STATE, b"\x01" * (pr.MAX_FRAME_BYTES - 12 - 4 + 1)))
    dec = pr.FrameDecoder()
    assert dec.feed(just_over + good) == [pr.Frame(9, 0, pr.Heartbeat())]
    assert (dec.oversized_frames, dec.bad_frames) == (1, 0)
    # A megabyte without a delimiter, in chunks: never more than MAX_WIRE_BYTES held, one oversized frame.
    blob = bytes(range(1, 256)) * 4096
    for i in range(0, len(blob), 3000):
        assert dec.feed(blob[i : i + 3000]) == []
        assert dec.buffered_bytes <= pr.MAX_WIRE_BYTES
    assert dec.feed(good) == [pr.Frame(9, 0, pr.Heartbeat())]
    assert (dec.oversized_frames, dec.bad_frames, dec.errors) == (2, 0, 2)
    assert dec.bytes_discarded == len(just_over) - 2 + len(blob)
    assert dec.feed(b"\x01" * 10**6 + good) == [pr.Frame(9, 0, pr.Heartbeat())]  # the same in one chunk
    assert dec.oversized_frames == 3 and dec.buffered_bytes == 0


# ---------------------------------------------------------------- SeqTracker


def test_seq_tracker_counts_gaps_across_the_wrap() -> None:
    t = pr.SeqTracker()
    assert [t.update(s) for s in (65533, 65534, 65535, 0, 1, 4, 5)] == [0, 0, 0, 0, 0, 2, 0]  # 2, 3 lost
    assert [t.update(s) for s in (65534 + 65536, 1)] == [0, 0]  # seq is taken mod 2**16; 65534 is 7 behind: late
    t = pr.SeqTracker()
    assert [t.update(s) for s in (65534, 1, 2)] == [0, 2, 0]  # 65535 and 0 lost across the wrap
    assert (t.missing, t.out_of_order) == (2, 0)


def test_seq_tracker_counts_duplicates_and_late_frames_without_losing_its_place() -> None:
    t = pr.SeqTracker()
    assert [t.update(s) for s in (10, 12, 11, 12, 13)] == [0, 1, 0, 0, 0]  # 11 late, 12 twice
    assert (t.missing, t.out_of_order) == (1, 2)


def test_seq_tracker_follows_a_restarted_sender() -> None:
    t = pr.SeqTracker()
    assert [t.update(s) for s in (5000, 5001, 0, 1, 3)] == [0, 0, 0, 0, 1]  # 0 is > REORDER_WINDOW behind
    assert (t.missing, t.out_of_order) == (1, 1)


# ---------------------------------------------------------------- fuzzer


def test_fuzz_codec_finds_no_violations() -> None:
    r = fz.fuzz_codec(20_000, 0)
    assert r["violations"] == []
    assert r["resync_ok"] and r["valid_after_damage"] > 100
    for k in ("generated_truncated", "generated_corrupted", "generated_oversized", "garbage_runs"):
        assert r[k] > 0, k
    assert min(r["valid_by_type"].values()) > 0
    assert r["decoded_frames"] == r["generated_valid"] + r["damaged_but_valid"]
    assert r["max_buffered_bytes"] <= pr.MAX_WIRE_BYTES


class _ForgetsAfterDamage(pr.FrameDecoder):
    """A broken decoder: drops the first good frame after a bad one (no resync)."""

    def feed(self, data: bytes) -> list[pr.Frame]:
        errors = self.errors
        frames = super().feed(data)
        return frames[1:] if self.errors > errors else frames


class _Raises(pr.FrameDecoder):
    def feed(self, data: bytes) -> list[pr.Frame]:
        raise IndexError("boom")


@pytest.mark.parametrize("broken", [_ForgetsAfterDamage, _Raises])
def test_fuzz_codec_reports_a_broken_decoder(monkeypatch, broken) -> None:
    monkeypatch.setattr(fz.pr, "FrameDecoder", broken)
    r = fz.fuzz_codec(3000, 1)
    assert r["violations"]
