"""An MCAP writer (https://mcap.dev/spec), stdlib only: chunked, indexed, with metadata and attachments.

The robot side may not depend on the ``mcap`` package, so this module writes the format itself, as the spec's
reference writers do: magic, Header, then Schema and Channel records as topics appear, messages gathered in
uncompressed Chunks (each followed by one MessageIndex per channel in it), Metadata and Attachment records,
DataEnd; then the summary section (Schemas, Channels, Statistics, ChunkIndexes, AttachmentIndexes,
MetadataIndexes), one SummaryOffset per summary group, the Footer and the closing magic. Readers seek by the
indexes (``mcap.reader.make_reader``), and Foxglove opens large logs without loading them whole.

Durability. A chunk is closed and handed to the OS (whole records only, one unbuffered ``write``) at the latest
``flush_interval_s`` after its first message, once it holds ``chunk_bytes``, and on ``flush()``; so a process
killed with SIGKILL loses at most that much time of data and leaves a file that ends on a record boundary,
without summary or footer. ``deploy.mcap_reader.recover`` rewrites such a file into a complete, indexed one.
(Data handed to the OS survives the death of the process, not a power cut: nothing here calls ``fsync``.)

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

OP_HEADER, OP_FOOTER, OP_SCHEMA, OP_CHANNEL, OP_MESSAGE, OP_CHUNK = 0x01, 0x02, 0x03, 0x04, 0x05, 0x06
OP_MESSAGE_INDEX, OP_CHUNK_INDEX, OP_ATTACHMENT, OP_ATTACHMENT_INDEX = 0x07, 0x08, 0x09, 0x0A
OP_STATISTICS, OP_METADATA, OP_METADATA_INDEX, OP_SUMMARY_OFFSET, OP_DATA_END = 0x0B, 0x0C, 0x0D, 0x0E, 0x0F

_U16_MAX = 0xFFFF
_U64_LIMIT = 1 << 64
MESSAGE_HEAD = struct.Struct("<HIQQ")  # channel_id u16, sequence u32, log_time u64, publish_time u64
FOOTER_HEAD = struct.Struct("<BQQQ")  # opcode, record length, summary_start, summary_offset_start
CHUNK_HEAD = struct.Struct("<QQQI")  # message_start_time, message_end_time, uncompressed_size, uncompressed_crc


def string(value: str) -> bytes:
    """An MCAP string: u32 byte length, then UTF-8 bytes."""
    raw = value.encode("utf-8")
    return struct.pack("<I", len(raw)) + raw


def record(opcode: int, *fields: bytes) -> bytes:
    """One MCAP record: opcode u8, content length u64, content."""
    content = b"".join(fields)
    return struct.pack("<BQ", opcode, len(content)) + content


def string_map(items: dict[str, str]) -> bytes:
    """An MCAP map<string, string>: u32 byte length, then key and value strings."""
    body = b"".join(string(k) + string(v) for k, v in items.items())
    return struct.pack("<I", len(body)) + body


class _Chunk:
    """Messages gathered for the next Chunk record: their bytes, time range and per-channel (time, offset) index."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.size = 0
        self.start = self.end = 0
        self.index: dict[int, list[tuple[int, int]]] = {}
        self.opened = 0.0  # time.monotonic() of the first message

    def add(self, channel_id: int, log_time: int, message: bytes) -> None:
        if not self.parts:
            self.start = self.end = log_time
            self.opened = time.monotonic()
        self.index.setdefault(channel_id, []).append((log_time, self.size))
        self.parts.append(message)
        self.size += len(message)
        self.start, self.end = min(self.start, log_time), max(self.end, log_time)


class McapWriter:
    """Writes a chunked, indexed MCAP file of JSON messages (schema encoding ``jsonschema``, message encoding
    ``json``). ``add_channel`` registers a topic, ``write`` appends a message, ``metadata`` and ``attach`` add named
    records, ``close`` writes the summary and footer. Timestamps are nanoseconds since the epoch. A context manager.
    """

    def __init__(self, path: str, *, chunk_bytes: int = 1 << 19, flush_interval_s: float = 0.25):
        self.path, self.chunk_bytes, self.flush_interval_s = path, chunk_bytes, flush_interval_s
        self._pending: list[bytes] = []  # records built but not yet handed to the OS
        self._offset = 0  # file offset of the next record
        self._data_crc = 0  # CRC-32 of every byte of the data section so far
        self._schema_ids: dict[tuple[str, bytes], int] = {}
        self._schemas: list[bytes] = []  # Schema records, repeated in the summary
        self._channels: list[bytes] = []  # Channel records, repeated in the summary
        self._topics: dict[str, int] = {}
        self._counts: dict[int, int] = {}  # channel id -> messages written
        self._chunk = _Chunk()
        self._chunk_indexes: list[bytes] = []
        self._attachment_indexes: list[bytes] = []
        self._metadata_indexes: list[bytes] = []
        self._time_range: tuple[int, int] | None = None
        self._failed: BaseException | None = None
        self._closed = False
        self._file = open(path, "wb", buffering=0)  # owned until close()
        self._emit(MAGIC)
        self._emit(record(OP_HEADER, string(PROFILE), string(LIBRARY)))
        self._write_pending()  # even a run killed at once leaves a file that readers recognise

    @property
    def bytes_written(self) -> int:
        """The file's size once everything pending is written (the open chunk not included)."""
        return self._offset

    @property
    def message_count(self) -> int:
        """Messages written so far (handed to the OS or still in the open chunk)."""
        return sum(self._counts.values())

    def add_channel(self, topic: str, schema_name: str, json_schema: dict[str, Any]) -> int:
        """Register ``topic`` whose messages follow ``json_schema``; returns its channel id. Identical schemas (same
        name and JSON) are stored once. A topic can be registered only once."""
        self._check_usable()
        if topic in self._topics:
            raise ValueError(f"{self.path}: topic {topic!r} already has channel {self._topics[topic]}")
        data = json.dumps(json_schema, separators=(",", ":"), allow_nan=False).encode("utf-8")
        schema_id = self._schema_ids.get((schema_name, data))
        if schema_id is None:
            schema_id = len(self._schemas) + 1  # 0 means "no schema"
            if schema_id > _U16_MAX:
                raise ValueError(f"{self.path}: more than {_U16_MAX} schemas")
            rec = record(OP_SCHEMA, struct.pack("<H", schema_id), string(schema_name), string(SCHEMA_ENCODING),
                         struct.pack("<I", len(data)), data)  # fmt: skip
            self._schema_ids[(schema_name, data)] = schema_id
            self._schemas.append(rec)
            self._emit(rec)
        channel_id = len(self._channels) + 1
        if channel_id > _U16_MAX:
            raise ValueError(f"{self.path}: more than {_U16_MAX} channels")
        rec = record(OP_CHANNEL, struct.pack("<HH", channel_id, schema_id), string(topic), string(MESSAGE_ENCODING),
                     string_map({}))  # fmt: skip
        self._channels.append(rec)
        self._topics[topic] = channel_id
        self._counts[channel_id] = 0
        self._emit(rec)
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
        self._chunk.add(
            channel_id,
            log_time_ns,
            record(OP_MESSAGE, MESSAGE_HEAD.pack(channel_id, sequence, log_time_ns, publish), data),
        )
        self._counts[channel_id] += 1
        lo, hi = self._time_range or (log_time_ns, log_time_ns)
        self._time_range = (min(lo, log_time_ns), max(hi, log_time_ns))
        if self._chunk.size >= self.chunk_bytes or time.monotonic() - self._chunk.opened >= self.flush_interval_s:
            self.flush()

    def metadata(self, name: str, values: dict[str, str]) -> None:
        """A Metadata record ``name`` with string ``values`` (e.g. the run's bundle, config and versions)."""
        self._check_usable()
        rec = record(OP_METADATA, string(name), string_map({str(k): str(v) for k, v in values.items()}))
        self._metadata_indexes.append(record(OP_METADATA_INDEX, struct.pack("<QQ", self._offset, len(rec)),
                                             string(name)))  # fmt: skip
        self._emit(rec)

    def attach(self, name: str, media_type: str, data: bytes, log_time_ns: int | None = None) -> None:
        """An Attachment record: a file (e.g. the bundle's metadata.json, the hardware config) inside the log."""
        self._check_usable()
        t = time.time_ns() if log_time_ns is None else operator.index(log_time_ns)
        head = struct.pack("<QQ", t, t) + string(name) + string(media_type) + struct.pack("<Q", len(data)) + data
        rec = record(OP_ATTACHMENT, head, struct.pack("<I", zlib.crc32(head)))
        index = struct.pack("<QQQQQ", self._offset, len(rec), t, t, len(data)) + string(name) + string(media_type)
        self._attachment_indexes.append(record(OP_ATTACHMENT_INDEX, index))
        self._emit(rec)

    def flush(self) -> None:
        """Close the open chunk and hand every pending record to the OS (whole records only)."""
        self._check_usable()
        self._close_chunk()
        self._write_pending()

    def close(self) -> None:
        """Write the last chunk, DataEnd, the summary, the footer and the closing magic; close the file. Idempotent.
        After a failed write the file is closed as it is (no summary): readers see what reached the disk."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._failed is None:
                self._close_chunk()
                self._emit(record(OP_DATA_END, struct.pack("<I", self._data_crc)))
                self._emit_summary_and_footer()
                self._write_pending()
        finally:
            self._file.close()

    def __enter__(self) -> McapWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _close_chunk(self) -> None:
        chunk = self._chunk
        if not chunk.parts:
            return
        self._chunk = _Chunk()
        body = b"".join(chunk.parts)
        rec = record(OP_CHUNK, CHUNK_HEAD.pack(chunk.start, chunk.end, len(body), zlib.crc32(body)), string(""),
                     struct.pack("<Q", len(body)), body)  # fmt: skip
        chunk_start = self._offset
        self._emit(rec)
        index_offsets, index_start = {}, self._offset
        for channel_id, entries in sorted(chunk.index.items()):
            index_offsets[channel_id] = self._offset
            pairs = b"".join(struct.pack("<QQ", t, off) for t, off in entries)
            self._emit(record(OP_MESSAGE_INDEX, struct.pack("<HI", channel_id, len(pairs)), pairs))
        offsets = b"".join(struct.pack("<HQ", c, o) for c, o in index_offsets.items())
        self._chunk_indexes.append(record(
            OP_CHUNK_INDEX, struct.pack("<QQQQ", chunk.start, chunk.end, chunk_start, len(rec)),
            struct.pack("<I", len(offsets)), offsets, struct.pack("<Q", self._offset - index_start), string(""),
            struct.pack("<QQ", len(body), len(body)),
        ))  # fmt: skip

    def _write_pending(self) -> None:
        if not self._pending:
            return
        data = b"".join(self._pending)
        self._pending.clear()
        try:
            view = memoryview(data)
            while view:  # an unbuffered file may accept fewer bytes than offered
                view = view[self._file.write(view) :]
        except BaseException as e:
            self._failed = e
            raise

    def _emit(self, rec: bytes) -> None:
        self._pending.append(rec)
        self._offset += len(rec)
        self._data_crc = zlib.crc32(rec, self._data_crc)

    def _emit_summary_and_footer(self) -> None:
        """Summary groups, their SummaryOffsets, Footer, magic."""
        summary_start = position = self._offset
        parts: list[bytes] = []
        offsets: list[bytes] = []
        groups = ((OP_SCHEMA, self._schemas), (OP_CHANNEL, self._channels), (OP_STATISTICS, [self._statistics()]),
                  (OP_CHUNK_INDEX, self._chunk_indexes), (OP_ATTACHMENT_INDEX, self._attachment_indexes),
                  (OP_METADATA_INDEX, self._metadata_indexes))  # fmt: skip
        for opcode, records in groups:
            if not records:
                continue
            length = sum(len(r) for r in records)
            offsets.append(record(OP_SUMMARY_OFFSET, struct.pack("<BQQ", opcode, position, length)))
            parts.extend(records)
            position += length
        summary = b"".join(parts + offsets)
        footer_head = FOOTER_HEAD.pack(OP_FOOTER, 8 + 8 + 4, summary_start, position)
        summary_crc = zlib.crc32(footer_head, zlib.crc32(summary))  # summary bytes up to the footer's CRC field
        self._emit(summary)
        self._emit(footer_head + struct.pack("<I", summary_crc))
        self._emit(MAGIC)

    def _statistics(self) -> bytes:
        start, end = self._time_range or (0, 0)
        counts = b"".join(struct.pack("<HQ", cid, n) for cid, n in self._counts.items())
        head = struct.pack("<QHIIIIQQ", self.message_count, len(self._schemas), len(self._channels),
                           len(self._attachment_indexes), len(self._metadata_indexes), len(self._chunk_indexes),
                           start, end)  # fmt: skip
        return record(OP_STATISTICS, head, struct.pack("<I", len(counts)), counts)

    def _check_usable(self) -> None:
        if self._closed:
            raise ValueError(f"{self.path}: MCAP writer is closed")
        if self._failed is not None:
            raise RuntimeError(f"{self.path}: an earlier write to the file failed") from self._failed
