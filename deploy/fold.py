"""Turn an overridable initializer of an ONNX model into a plain constant, without the ``onnx`` package.

The policy graph keeps ``params`` as a graph input with a default (an overridable initializer), so the
robot can run any parameter vector the adaptation operator proposes. That stops onnxruntime from folding
the Slice/Reshape of the weights into constants: every call re-slices the vector. While the parameters
stay fixed (a whole episode), a graph in which ``params`` is an ordinary initializer runs at the floor.

``fold_initializer`` rewrites the serialized ModelProto directly: it drops ``name`` from the graph's inputs
and replaces its initializer with the given values. Protobuf's wire format is simple enough to do this
with the standard library (the robot has onnxruntime but not ``onnx``): a message is a sequence of
(field number, wire type, value) records; only ModelProto.graph (7), GraphProto.initializer (5) and
GraphProto.input (11) are touched, every other byte is copied as it was.
"""

from __future__ import annotations

import numpy as np

_MODEL_GRAPH, _GRAPH_INITIALIZER, _GRAPH_INPUT = 7, 5, 11
_NAME = {"tensor": 8, "value_info": 1}  # TensorProto.name, ValueInfoProto.name
_FLOAT = 1  # TensorProto.DataType.FLOAT


class FoldError(ValueError):
    """The model bytes are not what this module expects (not protobuf, or no such initializer)."""


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise FoldError("truncated or overlong varint")
        b = data[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, pos
        shift += 7


def _put_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        b = value & 0x7F
        value >>= 7
        out.append(b | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _records(data: bytes) -> list[tuple[int, int, bytes, bytes]]:
    """(field, wire type, the record's raw bytes, its length-delimited payload or b"") for every record."""
    out, pos = [], 0
    while pos < len(data):
        start = pos
        key, pos = _varint(data, pos)
        field, wire = key >> 3, key & 7
        payload = b""
        if wire == 0:
            _, pos = _varint(data, pos)
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        elif wire == 2:
            n, pos = _varint(data, pos)
            payload, pos = data[pos : pos + n], pos + n
        else:
            raise FoldError(f"unsupported protobuf wire type {wire} (field {field})")
        if pos > len(data):
            raise FoldError(f"field {field} runs past the end of the message")
        out.append((field, wire, data[start:pos], payload))
    return out


def _named(message: bytes, name_field: int) -> str | None:
    for field, wire, _, payload in _records(message):
        if field == name_field and wire == 2:
            return payload.decode("utf-8", "replace")
    return None


def _length_delimited(field: int, payload: bytes) -> bytes:
    return _put_varint(field << 3 | 2) + _put_varint(len(payload)) + payload


def _tensor(name: str, values: np.ndarray) -> bytes:
    """A float32 TensorProto: dims (1), data_type (2), name (8), raw_data (9, little-endian)."""
    values = np.asarray(values, dtype="<f4").reshape(-1)
    dims = _put_varint(1 << 3) + _put_varint(values.size)
    dtype = _put_varint(2 << 3) + _put_varint(_FLOAT)
    return dims + dtype + _length_delimited(8, name.encode()) + _length_delimited(9, values.tobytes())


def fold_initializer(model: bytes, name: str, values: np.ndarray) -> bytes:
    """``model`` with the overridable initializer ``name`` made a constant holding ``values`` (float32, 1-D)."""
    out, found = bytearray(), False
    for field, wire, raw, payload in _records(bytes(model)):
        if field != _MODEL_GRAPH or wire != 2:
            out += raw
            continue
        graph = bytearray()
        for g_field, g_wire, g_raw, g_payload in _records(payload):
            if g_field == _GRAPH_INPUT and g_wire == 2 and _named(g_payload, _NAME["value_info"]) == name:
                continue  # no longer an input: a constant onnxruntime may fold
            if g_field == _GRAPH_INITIALIZER and g_wire == 2 and _named(g_payload, _NAME["tensor"]) == name:
                graph += _length_delimited(_GRAPH_INITIALIZER, _tensor(name, values))
                found = True
                continue
            graph += g_raw
        out += _length_delimited(_MODEL_GRAPH, bytes(graph))
    if not found:
        raise FoldError(f"the model has no initializer named {name!r}")
    return bytes(out)
