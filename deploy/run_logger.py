"""The runtime's log: one MCAP file per run, written by a background thread so logging never blocks control.

``RunLogger.log(topic, record)`` only stamps the time, copies the dict (not the arrays in it) and puts it on
an unbounded queue; a worker thread converts numpy values, encodes JSON and writes
(``deploy.mcap_writer.McapWriter``). The first record on a topic creates the topic's channel, with a JSON
schema inferred from that record, so Foxglove Studio lists and plots its fields.

Record values: ``str``, ``int``, ``float``, ``bool``, ``None``, numpy scalars, lists/tuples of such scalars,
numpy arrays of booleans or numbers, and dicts of these (nested objects). Arrays are written flattened
(row-major; the shape is not kept), because Foxglove's JSON-schema reader supports no nested arrays.
Non-finite floats (NaN, +-inf) are written as JSON ``null`` (``json`` has no NaN; ``null`` keeps numeric
fields numeric, so Foxglove plots them with a gap) -- NaN and the sign of an infinity are not kept. A
field that is ``None`` in a topic's first record has no entry in the schema (its type is unknown); later
records are not checked against the schema.

Guarantees. Nothing logged is lost silently: ``close()`` writes every record logged before it, and a
record that could not be written (unsupported value, I/O error) makes ``close()`` raise the first such
error, with a note of how many records were not written. ``log()`` after ``close()`` raises. The worker
is not a daemon thread (a daemon would be killed mid-write at exit). Python joins non-daemon threads
*before* it runs ``atexit`` handlers, so a worker blocked on its queue would hang the exit; instead, when
the program ends without ``close()``, the worker notices it is the last non-daemon thread, finishes the
file and logs a warning -- a ``close()`` registered with ``atexit`` then finds the file finished.
A process that is killed loses at most the records of the last ``flush_interval_s`` (see
``deploy.mcap_writer``); ``read_log(path, allow_truncated=True)`` reads such a file.
"""

from __future__ import annotations

import json
import logging
import math
import os
import queue
import re
import struct
import threading
import time
from typing import Any

import numpy as np

from metactl.deploy.mcap_writer import McapWriter

log = logging.getLogger(__name__)

_STOP = object()
_ARRAY_ITEM_TYPES = {"b": "boolean", "i": "integer", "u": "integer", "f": "number"}


FAULT_TOPIC = "/fault"
"""Faults are written as ``foxglove.Log`` messages (Foxglove's Log panel lists them), their own fields kept."""
FOXGLOVE_LOG_SCHEMA: dict[str, Any] = {
    "title": "foxglove.Log",
    "type": "object",
    "properties": {
        "timestamp": {"type": "object", "title": "time", "properties": {
            "sec": {"type": "integer", "minimum": 0}, "nsec": {"type": "integer", "minimum": 0, "maximum": 999999999}}},
        "level": {"title": "foxglove.LogLevel", "type": "integer", "description": "3 WARNING, 4 ERROR"},
        "message": {"type": "string"},
        "name": {"type": "string"},
        "file": {"type": "string"},
        "line": {"type": "integer", "minimum": 0},
    },
}  # fmt: skip
_LOG_LEVEL = {"safety": 3, "robot": 4, "runtime": 4}


class RunLogger:
    """An MCAP run log fed from any thread; ``log`` never does I/O or encoding. Use as a context manager."""

    def __init__(self, path: str, *, flush_interval_s: float = 0.25, max_bytes: int = 1 << 31):
        self.path = path
        self.records_logged = 0
        """Records handed to ``log`` (by the caller); with no loss, ``messages_written`` ends equal to it."""
        self.messages_written = 0
        """Records written so far (by the worker); after ``close()``, all that made it into the file."""
        self.records_failed = 0
        self.records_dropped = 0
        """High-rate records (states, commands) left out once the log reached ``max_bytes``; faults never are."""
        self.max_bytes = max_bytes
        self._field_names: dict[tuple[str, str], list[str]] = {}
        self._writer = McapWriter(path, flush_interval_s=flush_interval_s)
        self._flush_interval_s = flush_interval_s
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._lock = threading.Lock()  # orders "closed" against queue.put, so nothing lands after _STOP
        self._closed = False
        self._error: BaseException | None = None
        self._error_raised = False
        self._channels: dict[str, int] = {}
        self._budget_end = math.inf
        self._budget_open = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"RunLogger {os.path.basename(path)}", daemon=False)
        self._thread.start()

    def log(self, topic: str, record: dict[str, Any], t_ns: int | None = None) -> None:
        """Queue ``record`` for ``topic`` at ``t_ns`` [ns since the epoch; default now]. Never blocks.

        The dict is copied; arrays in it are not: do not modify them in place after logging them.
        """
        if t_ns is None:
            t_ns = time.time_ns()
        self._put((self._write, topic, dict(record), t_ns))
        self.records_logged += 1

    def name_fields(self, topic: str, field: str, names: list[str] | tuple[str, ...]) -> None:
        """Write array ``field`` of ``topic``'s records as an object of named numbers (Foxglove plots each by name);
        ``names`` are the signals in array order, made identifier-safe (``pos:rootz`` -> ``pos_rootz``)."""
        self._field_names[(topic, field)] = field_names(names)

    def metadata(self, name: str, values: dict[str, Any]) -> None:
        """A Metadata record (string values; others are written as JSON)."""
        strings = {k: v if isinstance(v, str) else json.dumps(v, default=str) for k, v in values.items()}
        self._put((self._writer.metadata, name, strings))

    def attach(self, name: str, media_type: str, data: bytes) -> None:
        """A file inside the log (e.g. the bundle's metadata.json, the hardware config)."""
        self._put((self._writer.attach, name, media_type, bytes(data)))

    def _put(self, item: tuple[Any, ...]) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError(f"RunLogger({self.path}) is closed: {item[1]!r} not logged")
            self._queue.put(item)

    def set_budget(self, end: float) -> None:
        """Let the worker encode and write only until ``end`` (``time.perf_counter()`` seconds; ``math.inf``:
        always, the default). A paced control loop calls this before it sleeps, with its next deadline minus a
        guard, so the worker runs in the loop's idle time and never holds the GIL when the loop wakes up."""
        self._budget_end = end
        self._budget_open.set()

    def close(self) -> None:
        """Write everything logged so far, finish and close the file. Idempotent; safe from any thread.

        Raises the first error the worker met (once), noting how many records were not written.
        """
        self._request_stop()
        if threading.current_thread() is not self._thread:
            self._thread.join()
        with self._lock:
            error = None if self._error_raised else self._error
            self._error_raised = True
        if error is not None:
            raise error

    def counts(self) -> dict[str, int]:
        """Records logged, written, dropped at the size limit and failed; ``lost`` is what a reader will miss for
        no declared reason (0 on a healthy run; final once ``close()`` returned)."""
        lost = self.records_logged - self.messages_written - self.records_dropped - self.records_failed
        return {"records": self.records_logged, "written": self.messages_written, "dropped": self.records_dropped,
                "failed": self.records_failed, "lost": lost}  # fmt: skip

    def __enter__(self) -> RunLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request_stop(self) -> None:
        self.set_budget(math.inf)
        with self._lock:
            if not self._closed:
                self._closed = True
                self._queue.put(_STOP)

    def _run(self) -> None:
        """Worker: write records until ``_STOP``; hand data to the OS whenever the queue is idle."""
        try:
            while True:
                try:
                    item = self._queue.get(timeout=self._flush_interval_s)
                except queue.Empty:
                    self._idle()
                    continue
                if item is _STOP:
                    break
                self._await_budget()
                fn, *args = item
                try:
                    fn(*args)
                except Exception as e:  # a record that cannot be written is counted and raised by close()
                    self.records_failed += 1
                    self._keep(e)
        finally:
            try:
                self._writer.close()
            except Exception as e:
                self._keep(e)
            if self._error is not None:
                self._error.add_note(
                    f"RunLogger({self.path}): {self.records_failed} record(s) not written, "
                    f"{self.messages_written} written; this was the first error"
                )

    def _write(self, topic: str, record: dict[str, Any], t_ns: int) -> None:
        if topic in HIGH_RATE and self._writer.bytes_written >= self.max_bytes:
            self.records_dropped += 1
            return
        record = prepare_record(topic, record, t_ns, self._field_names)
        data = encode_record(record)
        channel = self._channels.get(topic)
        if channel is None:
            schema = record_schema(record)
            if topic == FAULT_TOPIC:
                schema["properties"] = {**schema["properties"], **FOXGLOVE_LOG_SCHEMA["properties"]}
            name = "foxglove.Log" if topic == FAULT_TOPIC else schema_name(topic)
            channel = self._writer.add_channel(topic, name, schema)
            self._channels[topic] = channel
        self._writer.write(channel, t_ns, data)
        self.messages_written += 1

    def _await_budget(self) -> None:
        while time.perf_counter() >= self._budget_end:
            self._budget_open.wait(self._flush_interval_s)
            self._budget_open.clear()

    def _idle(self) -> None:
        try:
            self._writer.flush()
        except Exception as e:
            self._keep(e)
        if not threading.main_thread().is_alive() and _last_non_daemon_thread():
            log.warning("RunLogger(%s): program ending without close(); finishing the log now", self.path)
            self._request_stop()

    def _keep(self, error: BaseException) -> None:
        if self._error is None:
            self._error = error
            log.error("RunLogger(%s): %r (raised again by close())", self.path, error)


HIGH_RATE = ("/state", "/command")
"""Topics written every control step: the ones left out once a log reaches its size limit."""


def field_names(names: list[str] | tuple[str, ...]) -> list[str]:
    """Signal names as identifier-safe, unique JSON keys: ``vel:root.vx`` -> ``vel_root_vx``."""
    out: list[str] = []
    for name in names:
        key = re.sub(r"\W+", "_", str(name)).strip("_") or "signal"
        while key in out:
            key += "_"
        out.append(key)
    return out


def prepare_record(
    topic: str, record: dict[str, Any], t_ns: int, names: dict[tuple[str, str], list[str]]
) -> dict[str, Any]:
    """``record`` as it is written: named array fields as objects (``names``: (topic, field) -> names), faults as
    ``foxglove.Log`` messages. The same for the log file and the live view."""
    for (named_topic, field), field_keys in names.items():
        if named_topic == topic and field in record:
            record[field] = dict(zip(field_keys, np.asarray(record[field]).ravel().tolist(), strict=True))
    return as_foxglove_log(record, t_ns) if topic == FAULT_TOPIC else record


def as_foxglove_log(record: dict[str, Any], t_ns: int) -> dict[str, Any]:
    """A fault record with the fields of ``foxglove.Log`` added (its own fields kept)."""
    source, code = str(record.get("source", "runtime")), str(record.get("code", "fault"))
    detail = record.get("detail", "")
    return {
        **record,
        "timestamp": {"sec": t_ns // 1_000_000_000, "nsec": t_ns % 1_000_000_000},
        "level": _LOG_LEVEL.get(source, 4),
        "message": f"{code}: {detail}" if detail else code,
        "name": source,
        "file": "",
        "line": 0,
    }


def _last_non_daemon_thread() -> bool:
    """True when every other non-daemon thread has ended (the interpreter is waiting for the caller)."""
    me = threading.current_thread()
    return all(t is me or t.daemon or not t.is_alive() for t in threading.enumerate())


def schema_name(topic: str) -> str:
    """The schema (Foxglove datatype) name of a topic: ``/robot/state`` -> ``robot.state``."""
    return topic.strip("/").replace("/", ".") or "record"


def encode_record(record: dict[str, Any]) -> bytes:
    """``record`` as compact UTF-8 JSON: numpy values as lists / Python scalars, non-finite floats as null."""
    return json.dumps(_json_object(record), separators=(",", ":"), allow_nan=False).encode("utf-8")


def record_schema(record: dict[str, Any]) -> dict[str, Any]:
    """The JSON schema of ``record``: an object whose properties are typed from its values.

    Scalars become ``boolean`` / ``integer`` / ``number`` / ``string``, arrays and lists ``array`` with
    typed ``items``, dicts nested ``object`` s; ``None`` fields are left out (type unknown).
    """
    properties = {}
    for key, value in record.items():
        schema = _value_schema(value)
        if schema is not None:
            properties[key] = schema
    return {"type": "object", "properties": properties}


def _json_object(record: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in record.items():
        if not isinstance(key, str):
            raise TypeError(f"record keys must be str, got {key!r}")
        out[key] = _json_value(value)
    return out


def _json_value(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, (float, np.floating)):
        x = float(value)
        return x if math.isfinite(x) else None
    if isinstance(value, np.generic):
        return _json_value(value.item())
    if isinstance(value, np.ndarray):
        return _json_array(value)
    if isinstance(value, (list, tuple)):
        if not all(v is None or isinstance(v, (bool, int, float, str, np.generic)) for v in value):
            raise TypeError("a logged list may hold only scalars; log a numpy array (written flattened) instead")
        return [_json_value(v) for v in value]
    if isinstance(value, dict):
        return _json_object(value)
    raise TypeError(f"cannot log a value of type {type(value).__name__}: {value!r:.80}")


def _json_array(a: np.ndarray) -> Any:
    if a.dtype.kind not in _ARRAY_ITEM_TYPES:
        raise TypeError(f"cannot log a numpy array of dtype {a.dtype}; only booleans and numbers")
    if a.ndim == 0:
        return _json_value(a.item())
    flat = a.ravel()
    if a.dtype.kind == "f":
        bad = ~np.isfinite(flat)
        if bad.any():
            out = flat.astype(object)
            out[bad] = None
            return out.tolist()
    return flat.tolist()


def _value_schema(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)):
        return {"type": "boolean"}
    if isinstance(value, (int, np.integer)):
        return {"type": "integer"}
    if isinstance(value, (float, np.floating)):
        return {"type": "number"}
    if isinstance(value, str):
        return {"type": "string"}
    if isinstance(value, np.ndarray):
        item = {"type": _ARRAY_ITEM_TYPES[value.dtype.kind]}
        return item if value.ndim == 0 else {"type": "array", "items": item}
    if isinstance(value, (list, tuple)):
        return {"type": "array", "items": {"type": _list_item_type(value)}}
    if isinstance(value, dict):
        return record_schema(value)
    raise TypeError(f"cannot log a value of type {type(value).__name__}")


def _list_item_type(values: list[Any] | tuple[Any, ...]) -> str:
    types = {schema["type"] for v in values if (schema := _value_schema(v)) is not None}
    if types <= {"integer", "number"}:
        return "integer" if types == {"integer"} else "number"  # an empty list counts as numbers
    if len(types) == 1:
        return types.pop()
    raise TypeError(f"a logged list must hold one type of value, got {sorted(types)}")


def read_log(path: str, *, allow_truncated: bool = False) -> dict[str, list[dict[str, Any]]]:
    """Topic -> its records in the order they were logged, each with a ``log_time_ns`` key added.

    Needs the ``mcap`` package (a dev/test dependency, imported here only). A file that ends before its
    footer (the process writing it was killed) raises ``ValueError`` unless ``allow_truncated``, which
    returns the records up to the cut.
    """
    try:
        from mcap.exceptions import EndOfFile
        from mcap.records import Channel, Message
        from mcap.stream_reader import StreamReader
    except ModuleNotFoundError as e:
        raise ModuleNotFoundError("read_log needs the mcap reader library: pip install mcap", name="mcap") from e
    topics: dict[int, str] = {}
    out: dict[str, list[dict[str, Any]]] = {}
    with open(path, "rb") as f:
        try:
            for rec in StreamReader(f).records:  # file order = log() order (make_reader would sort by time)
                if isinstance(rec, Channel):
                    topics[rec.id] = rec.topic
                elif isinstance(rec, Message):
                    out.setdefault(topics[rec.channel_id], []).append(
                        {**json.loads(rec.data), "log_time_ns": rec.log_time}
                    )
        except (EndOfFile, struct.error) as e:
            n = sum(map(len, out.values()))
            if not allow_truncated:
                raise ValueError(
                    f"{path} ends before its footer (was the run killed?); "
                    f"read_log(path, allow_truncated=True) returns the {n} records before the cut"
                ) from e
    return out
