"""The run log: our MCAP writer read back by the reference reader (the ``mcap`` package), and the RunLogger's
promises -- nothing logged is lost, errors surface on close, ``log()`` leaves all work to the worker."""

from __future__ import annotations

import json
import math
import os
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from mcap.exceptions import EndOfFile, McapError
from mcap.reader import make_reader
from mcap.records import Footer
from mcap.stream_reader import StreamReader

import metactl.deploy.run_logger as run_logger
from metactl.deploy import mcap_reader
from metactl.deploy.mcap_writer import MAGIC, McapWriter
from metactl.deploy.run_logger import RunLogger, read_log

POINT = {"type": "object", "properties": {"x": {"type": "number"}}}


def _records(path: str) -> list[tuple[int, int, int]]:
    """Reference parser: (offset, opcode, content length) of every record after the leading magic."""
    data = Path(path).read_bytes()
    assert data[:8] == MAGIC
    out, pos = [], 8
    while pos < len(data) - 8:
        opcode, length = struct.unpack_from("<BQ", data, pos)
        out.append((pos, opcode, length))
        pos += 9 + length
    assert pos == len(data) - 8 and data[-8:] == MAGIC
    return out


def _records_no_trailer(path: str) -> list[tuple[int, int, int]]:
    """Records of a file that may lack its summary and footer; fails on a torn (partly written) record."""
    data = Path(path).read_bytes()
    out, pos = [], 8
    while pos < len(data):
        opcode, length = struct.unpack_from("<BQ", data, pos)
        assert pos + 9 + length <= len(data), "torn record"
        out.append((pos, opcode, length))
        pos += 9 + length
    return out


def _write_three_topics(path: str) -> None:
    """/a and /b share a schema (stored once), /c has its own: 3 channels, 2 schemas, 2 + 3 + 1 messages."""
    with McapWriter(path) as w:
        a, b = w.add_channel("/a", "point", POINT), w.add_channel("/b", "point", POINT)
        c = w.add_channel("/c", "flag", {"type": "object", "properties": {"on": {"type": "boolean"}}})
        for t, ch in enumerate([a, b, a, b, c, b]):
            w.write(ch, 1_000 + t, json.dumps({"x": t} if ch != c else {"on": True}).encode())


def test_writer_output_is_read_by_the_mcap_library(tmp_path) -> None:
    path = str(tmp_path / "w.mcap")
    _write_three_topics(path)
    with open(path, "rb") as f:
        reader = make_reader(f)
        assert reader.get_header().profile == ""
        summary = reader.get_summary()
        assert summary is not None and summary.statistics is not None
        stats = summary.statistics
        assert (stats.message_count, stats.channel_count, stats.schema_count, stats.chunk_count) == (6, 3, 2, 1)
        topics = {cid: ch.topic for cid, ch in summary.channels.items()}
        assert {topics[cid]: n for cid, n in stats.channel_message_counts.items()} == {"/a": 2, "/b": 3, "/c": 1}
        assert (stats.message_start_time, stats.message_end_time) == (1_000, 1_005)
        assert {ch.message_encoding for ch in summary.channels.values()} == {"json"}
        assert {s.encoding for s in summary.schemas.values()} == {"jsonschema"}
        assert summary.schemas[summary.channels[1].schema_id].data == json.dumps(POINT, separators=(",", ":")).encode()
        (chunk_index,) = summary.chunk_indexes
        assert (chunk_index.message_start_time, chunk_index.message_end_time) == (1_000, 1_005)
        assert set(chunk_index.message_index_offsets) == {1, 2, 3}  # one MessageIndex per channel in the chunk
        messages = [(ch.topic, m.log_time, m.sequence, json.loads(m.data)) for _, ch, m in reader.iter_messages()]
        assert [m.log_time for _, _, m in reader.iter_messages(topics=["/b"])] == [1001, 1003, 1005]  # via the index
    assert [m[:3] for m in messages] == [
        ("/a", 1000, 0),
        ("/b", 1001, 0),
        ("/a", 1002, 1),
        ("/b", 1003, 1),
        ("/c", 1004, 0),
        ("/b", 1005, 2),
    ]
    assert messages[3][3] == {"x": 3}


def test_writer_crcs_and_summary_offsets_are_right(tmp_path) -> None:
    path = str(tmp_path / "w.mcap")
    with McapWriter(path, chunk_bytes=200) as w:  # several chunks
        ch = w.add_channel("/a", "point", POINT)
        w.metadata("run", {"robot": "x"})
        for t in range(20):
            w.write(ch, t, json.dumps({"x": t}).encode())
        w.attach("config.toml", "application/toml", b"[robot]\nname = 'x'\n")
    with open(path, "rb") as f:  # checks every chunk's CRC and the data section's
        assert isinstance(list(StreamReader(f, validate_crcs=True).records)[-1], Footer)
    data = Path(path).read_bytes()
    records = _records(path)
    footer_at, opcode, _ = records[-1]
    assert opcode == 0x02
    summary_start, offsets_start, summary_crc = struct.unpack_from("<QQI", data, footer_at + 9)
    # The summary CRC covers the summary and summary-offset sections and the footer up to its CRC field.
    assert summary_crc == zlib.crc32(data[summary_start : footer_at + 9 + 16])
    starts = {off: op for off, op, _ in records}
    assert starts[summary_start] == 0x03 and starts[offsets_start] == 0x0E
    assert [op for off, op, _ in records if off < summary_start][-1] == 0x0F  # DataEnd closes the data section
    groups = [struct.unpack_from("<BQQ", data, off + 9) for off, op, _ in records if op == 0x0E]
    # schemas, channels, statistics, chunk indexes, attachment indexes, metadata indexes
    assert [g[0] for g in groups] == [0x03, 0x04, 0x0B, 0x08, 0x0A, 0x0D]
    for group_opcode, start, length in groups:
        inside = [(off, op, n) for off, op, n in records if start <= off < start + length]
        assert {op for _, op, _ in inside} == {group_opcode}
        assert inside[-1][0] + 9 + inside[-1][2] == start + length
    with open(path, "rb") as f:
        reader = make_reader(f)
        assert reader.get_summary().statistics.chunk_count > 3
        assert [m.log_time for _, _, m in reader.iter_messages()] == list(range(20))
        ((name, meta),) = [(m.name, m.metadata) for m in reader.iter_metadata()]
        ((att_name, att_data),) = [(a.name, a.data) for a in reader.iter_attachments()]
    assert (name, meta) == ("run", {"robot": "x"}) and att_name == "config.toml" and att_data.startswith(b"[robot]")


def test_writer_close_is_idempotent_and_final(tmp_path) -> None:
    path = str(tmp_path / "w.mcap")
    w = McapWriter(path)
    ch = w.add_channel("/a", "point", POINT)
    w.close()
    w.close()
    with pytest.raises(ValueError, match="closed"):
        w.write(ch, 1, b"{}")
    with open(path, "rb") as f:
        summary = make_reader(f).get_summary()
    assert summary is not None and summary.statistics.message_count == 0
    assert summary.statistics.channel_message_counts == {ch: 0}


def test_an_unclosed_file_holds_whole_chunks_and_recovers_into_a_complete_log(tmp_path) -> None:
    """What a run killed with SIGKILL leaves: whole chunks up to the last flush, no summary, no footer. The indexed
    reader refuses it; ``recover`` rewrites it into a complete log that it reads."""
    path = str(tmp_path / "partial.mcap")
    w = McapWriter(path, flush_interval_s=1e9)
    ch = w.add_channel("/a", "point", POINT)
    w.metadata("run", {"seed": "3"})
    for t in range(5):
        w.write(ch, t, json.dumps({"x": t}).encode())
    w.flush()
    w.write(ch, 5, b'{"x":5}')  # in the open chunk: not on disk, as after a kill
    seen: list[Any] = []
    with open(path, "rb") as f, pytest.raises(EndOfFile):
        seen.extend(StreamReader(f).records)
    kinds = ["Header", "Schema", "Channel", "Metadata"] + ["Message"] * 5 + ["MessageIndex"]  # one whole chunk
    assert [type(r).__name__ for r in seen] == kinds
    with open(path, "rb") as f, pytest.raises((McapError, struct.error)):  # it looks for the footer first
        make_reader(f).get_summary()
    found = mcap_reader.check(path)
    assert (found.complete, found.messages, found.chunks) == (False, 5, 1) and "without its summary" in found.problem
    fixed = str(tmp_path / "fixed.mcap")
    assert mcap_reader.recover(path, fixed).complete
    with open(fixed, "rb") as f:
        reader = make_reader(f)
        assert [m.log_time for _, _, m in reader.iter_messages()] == [0, 1, 2, 3, 4]
        assert [m.metadata for m in reader.iter_metadata()] == [{"seed": "3"}]
    w.close()  # and once closed, the original is complete too
    assert mcap_reader.check(path).complete and mcap_reader.check(path).messages == 6


def test_a_chunk_reaches_the_disk_within_the_flush_interval_or_its_size(tmp_path) -> None:
    path = str(tmp_path / "w.mcap")
    w = McapWriter(path, chunk_bytes=100, flush_interval_s=1e9)
    ch = w.add_channel("/a", "point", POINT)
    sizes = []
    for t in range(6):
        w.write(ch, t, b'{"x":12345678}')  # 14-byte messages, 43-byte records: a chunk every 3
        sizes.append(mcap_reader.check(path).messages)
    assert sizes == [0, 0, 3, 3, 3, 6]
    w2 = McapWriter(str(tmp_path / "t.mcap"), flush_interval_s=0.05)
    ch2 = w2.add_channel("/a", "point", POINT)
    w2.write(ch2, 0, b"{}")
    time.sleep(0.06)
    w2.write(ch2, 1, b"{}")  # the first message is older than the interval: both go to the disk
    assert mcap_reader.check(str(tmp_path / "t.mcap")).messages == 2
    w.close()
    w2.close()


STATE = {
    "episode": 2,
    "step": np.int64(7),
    "t": 0.125,
    "obs": np.array([0.5, -1.0, 2.0], dtype=np.float32),
    "reward": np.float32(0.25),
    "done": np.bool_(False),
    "ok": True,
    "mode": "run",
    "note": None,
    "gains": [1, 2.5],
    "ids": np.arange(4).reshape(2, 2),
    "pid": {"kp": 1.5, "on": True},
}


def test_run_logger_roundtrip_several_topics(tmp_path) -> None:
    path = str(tmp_path / "run.mcap")
    with RunLogger(path) as logger:
        for step in range(3):
            logger.log("/state", {**STATE, "step": np.int64(step)}, t_ns=10 * step + 1)
            logger.log("/command", {"policy": np.zeros(2), "sent": [0.0, 0.1]}, t_ns=10 * step + 2)
        logger.log("/timing", {"jitter_max_ms": 0.3}, t_ns=100)
    assert logger.messages_written == 7 and logger.records_failed == 0
    log = read_log(path)
    assert sorted(log) == ["/command", "/state", "/timing"]
    assert log["/state"][1] == {
        "episode": 2,
        "step": 1,
        "t": 0.125,
        "obs": [0.5, -1.0, 2.0],
        "reward": 0.25,
        "done": False,
        "ok": True,
        "mode": "run",
        "note": None,
        "gains": [1, 2.5],
        "ids": [0, 1, 2, 3],  # flattened
        "pid": {"kp": 1.5, "on": True},
        "log_time_ns": 11,
    }
    assert [r["log_time_ns"] for r in log["/command"]] == [2, 12, 22]
    with open(path, "rb") as f:
        reader = make_reader(f)
        stats = reader.get_summary().statistics
        assert stats.message_count == 7 and stats.channel_count == 3
        assert sum(1 for _ in reader.iter_messages(topics=["/state"])) == 3


def test_inferred_schemas_are_valid_and_fit_foxglove(tmp_path) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    path = str(tmp_path / "run.mcap")
    with RunLogger(path) as logger:
        logger.log("/robot/state", STATE)
    with open(path, "rb") as f:
        reader = make_reader(f)
        (schema,) = reader.get_summary().schemas.values()
        ((_, _, message),) = list(reader.iter_messages())
    assert (schema.name, schema.encoding) == ("robot.state", "jsonschema")
    doc = json.loads(schema.data)
    jsonschema.Draft202012Validator.check_schema(doc)
    jsonschema.validate(json.loads(message.data), doc)
    # Foxglove's JSON-schema reader needs one type string per field and scalar array items; None fields
    # are left out (their type is unknown).
    assert doc == {
        "type": "object",
        "properties": {
            "episode": {"type": "integer"},
            "step": {"type": "integer"},
            "t": {"type": "number"},
            "obs": {"type": "array", "items": {"type": "number"}},
            "reward": {"type": "number"},
            "done": {"type": "boolean"},
            "ok": {"type": "boolean"},
            "mode": {"type": "string"},
            "gains": {"type": "array", "items": {"type": "number"}},
            "ids": {"type": "array", "items": {"type": "integer"}},
            "pid": {"type": "object", "properties": {"kp": {"type": "number"}, "on": {"type": "boolean"}}},
        },
    }


def test_non_finite_floats_are_written_as_null(tmp_path) -> None:
    path = str(tmp_path / "run.mcap")
    with RunLogger(path) as logger:
        logger.log("/x", {"a": math.nan, "b": np.float32(np.inf), "v": np.array([1.0, -np.inf, np.nan])})
    with open(path, "rb") as f:
        reader = make_reader(f)
        (schema,) = reader.get_summary().schemas.values()
        ((_, _, message),) = list(reader.iter_messages())

    def strict(token: str) -> None:
        raise AssertionError(f"non-standard JSON token {token}")

    assert json.loads(message.data, parse_constant=strict) == {"a": None, "b": None, "v": [1.0, None, None]}
    assert json.loads(schema.data)["properties"]["a"] == {"type": "number"}  # typed from the value, not the null


def test_ten_thousand_records_from_a_tight_loop_all_arrive_in_order(tmp_path) -> None:
    path = str(tmp_path / "run.mcap")
    logger = RunLogger(path)
    for i in range(10_000):
        logger.log("/tick", {"i": i, "v": np.full(3, i, dtype=np.float64)})
    logger.close()
    assert logger.messages_written == 10_000
    ticks = read_log(path)["/tick"]
    assert [r["i"] for r in ticks] == list(range(10_000))
    assert ticks[-1]["v"] == [9999.0] * 3
    times = [r["log_time_ns"] for r in ticks]
    assert times == sorted(times)  # stamped by log(), in call order
    with open(path, "rb") as f:
        assert make_reader(f).get_summary().statistics.message_count == 10_000


def test_close_is_idempotent_and_log_after_close_raises(tmp_path) -> None:
    path = str(tmp_path / "run.mcap")
    logger = RunLogger(path)
    logger.log("/a", {"x": 1})
    logger.close()
    logger.close()
    with pytest.raises(RuntimeError, match="closed"):
        logger.log("/a", {"x": 2})
    ((record,),) = read_log(path).values()
    assert record["x"] == 1


def test_close_from_another_thread(tmp_path) -> None:
    path = str(tmp_path / "run.mcap")
    logger = RunLogger(path)
    for i in range(100):
        logger.log("/a", {"i": i})
    closer = threading.Thread(target=logger.close)
    closer.start()
    closer.join()
    logger.close()
    assert [r["i"] for r in read_log(path)["/a"]] == list(range(100))


def test_an_exception_in_the_with_block_still_finishes_the_file(tmp_path) -> None:
    path = str(tmp_path / "run.mcap")
    with pytest.raises(KeyError), RunLogger(path) as logger:
        logger.log("/a", {"i": 0})
        raise KeyError("control loop failed")
    assert [r["i"] for r in read_log(path)["/a"]] == [0]


def test_an_unloggable_value_is_raised_by_close_and_the_rest_is_written(tmp_path) -> None:
    path = str(tmp_path / "run.mcap")
    logger = RunLogger(path)
    logger.log("/a", {"i": 0})
    logger.log("/a", {"i": 1, "bad": object()})
    logger.log("/a", {"i": 2})
    with pytest.raises(TypeError, match="cannot log a value of type object") as info:
        logger.close()
    assert "1 record(s) not written, 2 written" in "".join(info.value.__notes__)
    logger.close()  # raised once
    assert [r["i"] for r in read_log(path)["/a"]] == [0, 2]


def test_a_write_error_in_the_worker_is_raised_by_close(tmp_path, monkeypatch) -> None:
    real_write = McapWriter.write

    def write_until_disk_full(self: McapWriter, channel_id: int, log_time_ns: int, data: bytes, *args: Any) -> None:
        if self.message_count == 3:
            raise OSError(28, "No space left on device")
        real_write(self, channel_id, log_time_ns, data, *args)

    monkeypatch.setattr(McapWriter, "write", write_until_disk_full)
    path = str(tmp_path / "run.mcap")
    logger = RunLogger(path)
    for i in range(10):
        logger.log("/a", {"i": i})
    with pytest.raises(OSError, match="No space left") as info:
        logger.close()
    assert "7 record(s) not written, 3 written" in "".join(info.value.__notes__)
    assert [r["i"] for r in read_log(path)["/a"]] == [0, 1, 2]


def test_log_leaves_encoding_and_io_to_the_worker(tmp_path, monkeypatch) -> None:
    """The worker is held inside its first encode: log() still returns every time, and the file does not grow."""
    release, held = threading.Event(), threading.Event()
    threads: set[threading.Thread] = set()
    real_encode, real_write = run_logger.encode_record, McapWriter.write

    def encode(record: dict[str, Any]) -> bytes:
        threads.add(threading.current_thread())
        held.set()
        release.wait()
        return real_encode(record)

    def write(self: McapWriter, *args: Any) -> None:
        threads.add(threading.current_thread())
        real_write(self, *args)

    monkeypatch.setattr(run_logger, "encode_record", encode)
    monkeypatch.setattr(McapWriter, "write", write)
    path = str(tmp_path / "run.mcap")
    logger = RunLogger(path)
    size = os.path.getsize(path)  # magic + header
    logger.log("/a", {"i": 0})
    held.wait()
    for i in range(1, 1_000):
        logger.log("/a", {"i": i, "v": np.ones(8)})
    assert os.path.getsize(path) == size and logger.messages_written == 0
    release.set()
    logger.close()
    assert threads == {logger._thread} and threading.current_thread() not in threads
    assert [r["i"] for r in read_log(path)["/a"]] == list(range(1_000))


def test_read_log_names_the_missing_reader(tmp_path, monkeypatch) -> None:
    path = str(tmp_path / "run.mcap")
    RunLogger(path).close()
    monkeypatch.setitem(sys.modules, "mcap.exceptions", None)  # as if `mcap` were not installed
    with pytest.raises(ModuleNotFoundError, match="pip install mcap"):
        read_log(path)


def _run_child(code: str, tmp_path, **kwargs: Any) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", code], cwd=tmp_path, text=True, **kwargs)


@pytest.mark.parametrize("ending", ["atexit", "forgotten"])
def test_a_program_that_ends_without_close_still_exits_with_a_complete_file(tmp_path, ending) -> None:
    """A non-daemon worker must not keep the interpreter alive (which would also keep atexit from running)."""
    path = str(tmp_path / "run.mcap")
    code = (
        "import atexit\n"
        "from metactl.deploy.run_logger import RunLogger\n"
        f"logger = RunLogger({path!r})\n"
        + ("atexit.register(logger.close)\n" if ending == "atexit" else "")
        + "for i in range(500):\n    logger.log('/a', {'i': i})\n"
    )
    child = _run_child(code, tmp_path, stderr=subprocess.PIPE)
    _, err = child.communicate(timeout=120)
    assert child.returncode == 0, err
    assert [r["i"] for r in read_log(path)["/a"]] == list(range(500))  # not truncated: summary and footer written
    # Python joins non-daemon threads before it runs atexit handlers: either way the worker finishes the file
    # (and says so); the registered close() then finds it finished.
    assert "ending without close()" in err


def test_a_killed_run_loses_at_most_the_flush_interval_and_recovers(tmp_path) -> None:
    """SIGKILL mid-run: every record logged more than the flush interval (0.25 s) before the kill is on disk, and
    ``recover`` makes the file a complete, indexed log again."""
    path = str(tmp_path / "run.mcap")
    code = (
        "import sys, time\n"
        "from metactl.deploy.run_logger import RunLogger\n"
        f"logger = RunLogger({path!r})\n"
        "for i in range(300):\n    logger.log('/a', {'i': i})\n"
        "time.sleep(0.5)\n"  # twice the flush interval: all 300 must reach the disk without a flush() or close()
        "print('ready', flush=True)\n"
        "time.sleep(600)\n"
    )
    child = _run_child(code, tmp_path, stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
    finally:
        child.kill()
        child.wait(timeout=60)
    assert child.returncode == -9
    with pytest.raises(ValueError, match="ends before its footer"):
        read_log(path)
    assert [r["i"] for r in read_log(path, allow_truncated=True)["/a"]] == list(range(300))
    assert not mcap_reader.check(path).complete
    fixed = str(tmp_path / "fixed.mcap")
    assert mcap_reader.recover(path, fixed).complete
    with open(fixed, "rb") as f:
        assert [json.loads(m.data)["i"] for _, _, m in make_reader(f).iter_messages()] == list(range(300))


def test_faults_are_foxglove_logs_and_signals_have_names(tmp_path) -> None:
    path = str(tmp_path / "run.mcap")
    with RunLogger(path) as logger:
        logger.name_fields("/state", "obs", ["pos:rootz", "vel:root.vx"])
        logger.log("/state", {"step": 0, "obs": np.array([0.5, -1.0])}, t_ns=1_500_000_000)
        logger.log(
            "/fault", {"source": "runtime", "code": "link_lost", "detail": "3 replies missed"}, t_ns=2_000_000_001
        )
    with open(path, "rb") as f:
        reader = make_reader(f)
        schemas = {
            ch.topic: reader.get_summary().schemas[ch.schema_id] for ch in reader.get_summary().channels.values()
        }
        messages = {ch.topic: json.loads(m.data) for _, ch, m in reader.iter_messages()}
    assert messages["/state"]["obs"] == {"pos_rootz": 0.5, "vel_root_vx": -1.0}
    assert schemas["/fault"].name == "foxglove.Log"
    fault = messages["/fault"]
    assert fault["timestamp"] == {"sec": 2, "nsec": 1} and fault["level"] == 4 and fault["name"] == "runtime"
    assert fault["message"] == "link_lost: 3 replies missed" and fault["code"] == "link_lost"
    assert set(json.loads(schemas["/fault"].data)["properties"]) >= {"timestamp", "level", "message", "name"}
