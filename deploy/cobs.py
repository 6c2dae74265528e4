"""COBS (Cheshire & Baker, "Consistent Overhead Byte Stuffing", 1999): zero-free framing for protocol v1.

Encoding removes every zero byte, so a zero can delimit frames on the wire. Both directions work
block by block (``bytes.split`` / code-byte hops), not byte by byte: this runs in the control loop.
"""

from __future__ import annotations

from metactl.deploy.errors import ProtocolError

_ZERO = b"\x00"
_CODE = [bytes((i,)) for i in range(256)]


def cobs_encode(data: bytes) -> bytes:
    """COBS-encode ``data``: zero-free output, at most ``len(data) // 254 + 1`` bytes longer."""
    out: list[bytes] = []
    for seg in bytes(data).split(_ZERO):
        while len(seg) >= 254:  # a full block (code 0xFF) carries 254 bytes and no implied zero
            out += (b"\xff", seg[:254])
            seg = seg[254:]
        out += (_CODE[len(seg) + 1], seg)
    return b"".join(out)


def cobs_decode(data: bytes) -> bytes:
    """Inverse of ``cobs_encode``; ProtocolError for empty input, a zero byte or a block cut short."""
    n = len(data)
    if n == 0 or _ZERO in data:
        raise ProtocolError("COBS: empty frame" if n == 0 else "COBS: zero byte inside a frame")
    # Fast path, one step per block: each code byte becomes the zero its previous block implies.
    buf = bytearray(data)
    pos = 0
    while pos < n:
        code = buf[pos]
        if code == 0xFF:
            return _cobs_decode_blocks(data)  # full blocks (zero-free runs >= 254) imply no zero
        buf[pos] = 0
        pos += code
    if pos != n:
        raise ProtocolError(f"COBS: the last block runs {pos - n} bytes past the frame end ({n})")
    del buf[0]
    return bytes(buf)


def _cobs_decode_blocks(data: bytes) -> bytes:
    """The general decoder (any block codes), block by block."""
    n = len(data)
    out: list[bytes] = []
    pos = code = 0
    while pos < n:
        code = data[pos]
        end = pos + code
        if end > n:
            raise ProtocolError(f"COBS: the last block runs {end - n} bytes past the frame end ({n})")
        out.append(data[pos + 1 : end])
        if code != 0xFF:
            out.append(_ZERO)
        pos = end
    if code != 0xFF:
        out.pop()  # the last block's implied zero is not data
    return b"".join(out)
