"""A minimal MCAP writer (https://mcap.dev/spec), stdlib only, for JSON messages with JSON-schema schemas.

The robot side may not depend on the ``mcap`` package, so this module writes the format itself. The file is
*unchunked*: magic, Header, then Schema / Channel / Message records in the data section, then DataEnd, a
summary section (every Schema and Channel repeated, one Statistics record), one SummaryOffset per summary
group, the Footer and the closing magic. That is a valid MCAP file: ``mcap.reader.make_reader(f)`` reads it
(``get_summary()`` from the footer; ``iter_messages()`` by a linear scan, as there are no chunk indexes), and
Foxglove Studio opens it (unindexed files are loaded whole, which suits run logs of moderate size).

Durability. Records are built in memory and handed to the OS in whole records only (an unbuffered file, one
``write`` per batch), at the latest ``flush_interval_s`` after the previous hand-over or once ``flush_bytes``
are pending, and on every ``flush()``. A process killed with SIGKILL therefore loses at most that short
tail, and the file on disk ends on a record boundary. Such a file has no summary and no footer. Measured
with ``mcap`` 1.x (see ``tests/deploy/test_mcap_log.py``): ``mcap.stream_reader.StreamReader`` (and
``make_reader`` over a *non-seekable* stream) yields every record that reached the disk, in order, then
raises ``mcap.exceptions.EndOfFile`` where the footer should be; ``make_reader`` over a seekable file
raises at once, because it looks for the footer before reading anything. (Data handed to the OS survives
the death of the process, not a power cut: nothing here calls ``fsync``.)

Not thread-safe: one thread owns a writer (``deploy.run_logger.RunLogger`` writes from its worker thread).
"""

from __future__ import annotations

import json
import operator
import struct
import time
import zlib
from typing import Any

MAGIC = b"\x89MCAP0\r\n"
PROFILE = ""
LIBRARY = "metactl deploy.mcap_writer"
SCHEMA_ENCODING = "jsonschema"
MESSAGE_ENCODING = "json"

OP_HEADER, OP_FOOTER, OP_SCHEMA, OP_CHANNEL, OP_MESSAGE = 0x01, 0x02, 0x03, 0x04, 0x05
OP_STATISTICS, OP_SUMMARY_OFFSET, OP_DATA_END = 0x0B, 0x0E, 0x0F

_U16_MAX = 0xFFFF
_U64_LIMIT = 1 << 64
_MESSAGE_HEAD = struct.Struct("<HIQQ")  # channel_id u16, sequence u32, log_time u64, publish_time u64
_FOOTER_HEAD = struct.Struct("<BQQQ")  # opcode, record length, summary_start, summary_offset_start


def _string(value: str) -> bytes:
    """An MCAP string: u32 byte length, then UTF-8 bytes."""
    raw = value.encode("utf-8")
    return struct.pack("<I", len(raw)) + raw


def _record(opcode: int, *fields: bytes) -> bytes:
    """One MCAP record: opcode u8, content length u64, content."""
    content = b"".join(fields)
    return struct.pack("<BQ", opcode, len(content)) + content


class McapWriter:
    """Writes an unchunked MCAP file of JSON messages (schema encoding ``jsonschema``, message encoding ``json``).

    ``add_channel`` registers a topic (writing its Schema and Channel records), ``write`` appends one
    message, ``close`` writes DataEnd, the summary, the footer and the closing magic. Timestamps are
    nanoseconds (any epoch; ``time.time_ns()`` is what Foxglove expects). Use as a context manager.
    """

    def __init__(self, path: str, *, flush_bytes: int = 1 << 16, flush_interval_s: float = 0.1):
        self.path = path
        self.flush_bytes = flush_bytes
        self.flush_interval_s = flush_interval_s
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._offset = 0  # file offset of the next record
        self._data_crc = 0  # CRC-32 of every byte written so far (the data section, magic included)
        self._schema_ids: dict[tuple[str, bytes], int] = {}
        self._schemas: list[bytes] = []  # Schema records, repeated in the summary
        self._channels: list[bytes] = []  # Channel records, repeated in the summary
        self._topics: dict[str, int] = {}
        self._counts: dict[int, int] = {}  # channel id -> messages written
        self._time_range: tuple[int, int] | None = None
        self._failed: BaseException | None = None
        self._closed = False
        self._last_flush = 0.0
        self._file = open(path, "wb", buffering=0)  # owned until close()
        self._emit(MAGIC)
        self._emit(_record(OP_HEADER, _string(PROFILE), _string(LIBRARY)))
        self._write_pending()  # even a run killed at once leaves a file that readers recognise

    @property
    def message_count(self) -> int:
        """Messages written so far (handed to the OS or still pending)."""
        return sum(self._counts.values())

    def add_channel(self, topic: str, schema_name: str, json_schema: dict[str, Any]) -> int:
        """Register ``topic`` whose messages follow ``json_schema``; returns its channel id.

        Identical schemas (same name and JSON) are stored once. A topic can be registered only once.
        """
        self._check_usable()
        if topic in self._topics:
            raise ValueError(f"{self.path}: topic {topic!r} already has channel {self._topics[topic]}")
        data = json.dumps(json_schema, separators=(",", ":"), allow_nan=False).encode("utf-8")
        schema_id = self._schema_ids.get((schema_name, data))
        if schema_id is None:
            schema_id = len(self._schemas) + 1  # 0 means "no schema"
            if schema_id > _U16_MAX:
                raise ValueError(f"{self.path}: more than {_U16_MAX} schemas")
            record = _record(
                OP_SCHEMA,
                struct.pack("<H", schema_id),
                _string(schema_name),
                _string(SCHEMA_ENCODING),
                struct.pack("<I", len(data)),
                data,
            )
            self._schema_ids[(schema_name, data)] = schema_id
            self._schemas.append(record)
            self._emit(record)
        channel_id = len(self._channels) + 1
        if channel_id > _U16_MAX:
            raise ValueError(f"{self.path}: more than {_U16_MAX} channels")
        no_metadata = struct.pack("<I", 0)
        header = struct.pack("<HH", channel_id, schema_id)
        record = _record(OP_CHANNEL, header, _string(topic), _string(MESSAGE_ENCODING), no_metadata)
        self._channels.append(record)
        self._topics[topic] = channel_id
        self._counts[channel_id] = 0
        self._emit(record)
        return channel_id

    def write(self, channel_id: int, log_time_ns: int, data: bytes, publish_time_ns: int | None = None) -> None:
        """Append one message (``data``: the JSON-encoded message) to channel ``channel_id``."""
        self._check_usable()
        if channel_id not in self._counts:
            raise ValueError(f"{self.path}: unknown channel id {channel_id}; call add_channel first")
        log_time_ns = operator.index(log_time_ns)  # numpy integers pass, floats raise TypeError
        publish = log_time_ns if publish_time_ns is None else operator.index(publish_time_ns)
        if not (0 <= log_time_ns < _U64_LIMIT and 0 <= publish < _U64_LIMIT):
            raise ValueError(f"{self.path}: timestamps must be in [0, 2**64) ns, got {log_time_ns}, {publish}")
        sequence = self._counts[channel_id] & 0xFFFFFFFF
        self._emit(_record(OP_MESSAGE, _MESSAGE_HEAD.pack(channel_id, sequence, log_time_ns, publish), data))
        self._counts[channel_id] += 1
        lo, hi = self._time_range or (log_time_ns, log_time_ns)
        self._time_range = (min(lo, log_time_ns), max(hi, log_time_ns))
        now = time.monotonic()
        if self._pending_size >= self.flush_bytes or now - self._last_flush >= self.flush_interval_s:
            self.flush()

    def flush(self) -> None:
        """Hand every pending record to the OS (whole records only). No-op when nothing is pending."""
        self._check_usable()
        self._write_pending()

    def _write_pending(self) -> None:
        self._last_flush = time.monotonic()
        if not self._pending:
            return
        data = b"".join(self._pending)
        self._pending.clear()
        self._pending_size = 0
        try:
            view = memoryview(data)
            while view:  # an unbuffered file may accept fewer bytes than offered
                view = view[self._file.write(view) :]
        except BaseException as e:
            self._failed = e
            raise

    def close(self) -> None:
        """Write DataEnd, the summary, the footer and the closing magic, then close the file. Idempotent.

        After a failed write the file is closed as it is (no summary): readers see what reached the disk.
        """
        if self._closed:
            return
        self._closed = True
        try:
            if self._failed is None:
                self._emit(_record(OP_DATA_END, struct.pack("<I", self._data_crc)))
                self._emit_summary_and_footer()
                self._write_pending()
        finally:
            self._file.close()

    def __enter__(self) -> McapWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _emit(self, record: bytes) -> None:
        self._pending.append(record)
        self._pending_size += len(record)
        self._offset += len(record)
        self._data_crc = zlib.crc32(record, self._data_crc)

    def _emit_summary_and_footer(self) -> None:
        """Summary groups (schemas, channels, statistics), their SummaryOffsets, Footer, magic."""
        summary_start = self._offset
        parts: list[bytes] = []
        offsets: list[bytes] = []
        position = summary_start
        for opcode, group in ((OP_SCHEMA, self._schemas), (OP_CHANNEL, self._channels), (OP_STATISTICS, None)):
            records = group if group is not None else [self._statistics()]
            if not records:
                continue
            length = sum(len(r) for r in records)
            offsets.append(_record(OP_SUMMARY_OFFSET, struct.pack("<BQQ", opcode, position, length)))
            parts.extend(records)
            position += length
        summary_offset_start = position
        summary = b"".join(parts + offsets)
        footer_head = _FOOTER_HEAD.pack(OP_FOOTER, 8 + 8 + 4, summary_start, summary_offset_start)
        summary_crc = zlib.crc32(footer_head, zlib.crc32(summary))  # summary bytes up to the footer's CRC field
        self._emit(summary)
        self._emit(footer_head + struct.pack("<I", summary_crc))
        self._emit(MAGIC)

    def _statistics(self) -> bytes:
        start, end = self._time_range or (0, 0)
        counts = b"".join(struct.pack("<HQ", cid, n) for cid, n in self._counts.items())
        return _record(
            OP_STATISTICS,
            struct.pack("<QHIIIIQQ", self.message_count, len(self._schemas), len(self._channels), 0, 0, 0, start, end),
            struct.pack("<I", len(counts)),
            counts,
        )

    def _check_usable(self) -> None:
        if self._closed:
            raise ValueError(f"{self.path}: MCAP writer is closed")
        if self._failed is not None:
            raise RuntimeError(f"{self.path}: an earlier write to the file failed") from self._failed
