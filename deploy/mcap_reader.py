"""Read, check and recover the run logs of ``deploy.mcap_writer`` (stdlib only: usable on the robot).

``check`` tells whether a log is complete (footer, summary, every CRC) or where it was cut; ``recover``
rewrites a cut log — what SIGKILL or a power loss leaves — into a complete, indexed one holding every whole
chunk; ``read_messages`` returns every message of a complete or cut log, topic by topic. The official ``mcap``
reader is only needed to verify these files independently (the tests do).
"""

from __future__ import annotations

import dataclasses
import json
import os
import struct
import zlib
from collections.abc import Iterator
from typing import Any, BinaryIO

from metactl.deploy import mcap_writer as mw

_RECORD_HEAD = struct.Struct("<BQ")


class LogError(ValueError):
    """A file that is not an MCAP log, or cannot be recovered (user-facing)."""


@dataclasses.dataclass
class LogCheck:
    """What ``check`` found: complete (summary and footer, every CRC right), or how far the data goes."""

    path: str
    complete: bool
    messages: int
    chunks: int
    topics: dict[str, int]
    """Topic -> messages."""
    problem: str = ""
    """Why the log is not complete (empty when it is)."""
    readable_bytes: int = 0
    """Bytes up to the end of the last whole record."""


def _string(data: bytes, pos: int) -> tuple[str, int]:
    (n,) = struct.unpack_from("<I", data, pos)
    return data[pos + 4 : pos + 4 + n].decode("utf-8"), pos + 4 + n


def _map(data: bytes, pos: int) -> tuple[dict[str, str], int]:
    (n,) = struct.unpack_from("<I", data, pos)
    end, out, pos = pos + 4 + n, {}, pos + 4
    while pos < end:
        key, pos = _string(data, pos)
        value, pos = _string(data, pos)
        out[key] = value
    return out, end


def iter_records(f: BinaryIO) -> Iterator[tuple[int, int, bytes]]:
    """(offset, opcode, content) of every whole record after the magic; stops at the end of the data or at a record
    cut short (raising nothing: the caller sees where it stopped)."""
    if f.read(len(mw.MAGIC)) != mw.MAGIC:
        raise LogError(f"{getattr(f, 'name', 'the file')} is not an MCAP file (no MCAP magic)")
    offset = len(mw.MAGIC)
    while True:
        head = f.read(_RECORD_HEAD.size)
        if len(head) < _RECORD_HEAD.size:
            return
        opcode, length = _RECORD_HEAD.unpack(head)
        if length > 1 << 40:
            return
        content = f.read(length)
        if len(content) < length:
            return
        yield offset, opcode, content
        offset += _RECORD_HEAD.size + length


def _chunk_messages(content: bytes) -> Iterator[tuple[int, int, int, bytes]]:
    """(channel id, sequence, log time, data) of each message in a Chunk record's content (uncompressed only)."""
    _, _, size, crc = mw.CHUNK_HEAD.unpack_from(content)
    compression, pos = _string(content, mw.CHUNK_HEAD.size)
    (n,) = struct.unpack_from("<Q", content, pos)
    body = content[pos + 8 : pos + 8 + n]
    if compression or len(body) != size or zlib.crc32(body) != crc:
        raise LogError(f"a chunk is compressed ({compression!r}) or its CRC is wrong")
    pos = 0
    while pos < len(body):
        opcode, length = _RECORD_HEAD.unpack_from(body, pos)
        if opcode == mw.OP_MESSAGE:
            channel, sequence, log_time, _ = mw.MESSAGE_HEAD.unpack_from(body, pos + 9)
            yield channel, sequence, log_time, body[pos + 9 + mw.MESSAGE_HEAD.size : pos + 9 + length]
        pos += 9 + length


@dataclasses.dataclass
class _Contents:
    """Everything a log holds, in file order."""

    schemas: dict[int, tuple[str, bytes]] = dataclasses.field(default_factory=dict)
    channels: dict[int, tuple[str, int]] = dataclasses.field(default_factory=dict)
    """Channel id -> (topic, schema id)."""
    messages: list[tuple[int, int, bytes]] = dataclasses.field(default_factory=list)
    """(channel id, log time, data)."""
    metadata: list[tuple[str, dict[str, str]]] = dataclasses.field(default_factory=list)
    attachments: list[tuple[str, str, bytes, int]] = dataclasses.field(default_factory=list)
    chunks: int = 0
    footer: bool = False
    end: int = 0
    problem: str = ""


def _read(path: str) -> _Contents:
    out = _Contents()
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        for offset, opcode, content in iter_records(f):
            out.end = offset + 9 + len(content)
            if opcode == mw.OP_SCHEMA:
                sid = struct.unpack_from("<H", content)[0]
                name, pos = _string(content, 2)
                _, pos = _string(content, pos)
                (n,) = struct.unpack_from("<I", content, pos)
                out.schemas.setdefault(sid, (name, content[pos + 4 : pos + 4 + n]))
            elif opcode == mw.OP_CHANNEL:
                cid, sid = struct.unpack_from("<HH", content)
                topic, _ = _string(content, 4)
                out.channels.setdefault(cid, (topic, sid))
            elif opcode == mw.OP_CHUNK:
                try:
                    out.messages += [(c, t, d) for c, _, t, d in _chunk_messages(content)]
                except (LogError, struct.error) as e:
                    out.problem = f"chunk at byte {offset}: {e}"
                    return out
                out.chunks += 1
            elif opcode == mw.OP_MESSAGE:
                channel, _, log_time, _ = mw.MESSAGE_HEAD.unpack_from(content)
                out.messages.append((channel, log_time, content[mw.MESSAGE_HEAD.size :]))
            elif opcode == mw.OP_METADATA:
                name, pos = _string(content, 0)
                out.metadata.append((name, _map(content, pos)[0]))
            elif opcode == mw.OP_ATTACHMENT:
                log_time = struct.unpack_from("<Q", content)[0]
                name, pos = _string(content, 16)
                media, pos = _string(content, pos)
                (n,) = struct.unpack_from("<Q", content, pos)
                out.attachments.append((name, media, content[pos + 8 : pos + 8 + n], log_time))
            elif opcode == mw.OP_FOOTER:
                out.footer = True
    if not out.footer:
        out.problem = f"the log ends at byte {out.end} of {size} without its summary and footer (was the run killed?)"
    elif out.end + len(mw.MAGIC) != size:
        out.problem = f"{size - out.end} bytes after the footer are not the closing magic"
        out.footer = False
    return out


def check(path: str) -> LogCheck:
    """Whether the log at ``path`` is complete; if not, what a recovery would keep."""
    c = _read(path)
    topics: dict[str, int] = {}
    for channel, _, _ in c.messages:
        topic = c.channels.get(channel, (f"channel {channel}", 0))[0]
        topics[topic] = topics.get(topic, 0) + 1
    return LogCheck(path, c.footer and not c.problem, len(c.messages), c.chunks, topics, c.problem, c.end)


def recover(src: str, dst: str) -> LogCheck:
    """Rewrite the (cut) log ``src`` as a complete, indexed log ``dst`` holding every whole chunk, metadata record and
    attachment of ``src``; what ``check`` says of the result."""
    c = _read(src)
    if not c.channels and not c.messages:
        raise LogError(f"{src} holds no channel and no message: nothing to recover")
    if os.path.abspath(src) == os.path.abspath(dst):
        raise LogError("recover writes a new file; give it another name than the damaged log")
    with mw.McapWriter(dst) as w:
        ids = {}
        for cid, (topic, sid) in sorted(c.channels.items()):
            name, data = c.schemas.get(sid, ("record", b'{"type":"object"}'))
            ids[cid] = w.add_channel(topic, name, json.loads(data))
        for name, values in c.metadata:
            w.metadata(name, values)
        for name, media, data, log_time in c.attachments:
            w.attach(name, media, data, log_time)
        for channel, log_time, data in c.messages:
            w.write(ids[channel], log_time, data)
    return check(dst)


def read_messages(path: str) -> dict[str, list[dict[str, Any]]]:
    """Topic -> its messages (decoded JSON, plus ``log_time_ns``) in file order, from a complete or a cut log."""
    c = _read(path)
    out: dict[str, list[dict[str, Any]]] = {}
    for channel, log_time, data in c.messages:
        topic = c.channels[channel][0]
        out.setdefault(topic, []).append({**json.loads(data), "log_time_ns": log_time})
    return out


def read_metadata(path: str) -> tuple[list[tuple[str, dict[str, str]]], list[tuple[str, str, bytes]]]:
    """The log's metadata records (name, values) and attachments (name, media type, data)."""
    c = _read(path)
    return c.metadata, [(n, m, d) for n, m, d, _ in c.attachments]
