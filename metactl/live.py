"""A live view of a running robot in Foxglove: a Foxglove WebSocket server fed with the run's log records.

Workstation side (the 'live' extra, ``foxglove-sdk``): never needed on the robot, where the MCAP log is the record.
Records are queued by the control loop and published from a worker thread, encoded as the log file encodes them
(named signals, faults as ``foxglove.Log``); when the viewer falls behind, records are dropped, never waited for.
"""

from __future__ import annotations

import queue
import threading
from typing import Any

from metactl.deploy.run_logger import (
    FAULT_TOPIC,
    FOXGLOVE_LOG_SCHEMA,
    encode_record,
    field_names,
    prepare_record,
    record_schema,
    schema_name,
)

MAX_BACKLOG = 10_000


class LiveView:
    """A Foxglove WebSocket server on ``host:port`` (0: any free port); ``log(topic, record, t_ns)`` publishes."""

    def __init__(self, port: int = 8765, host: str = "127.0.0.1"):
        import foxglove

        self._foxglove = foxglove
        self._server = foxglove.start_server(name="metactl", host=host, port=port)
        self.port, self.host = self._server.port, host
        self.dropped = 0
        self._names: dict[tuple[str, str], list[str]] = {}
        self._channels: dict[str, Any] = {}
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="LiveView", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    def name_fields(self, topic: str, field: str, names: list[str] | tuple[str, ...]) -> None:
        self._names[(topic, field)] = field_names(names)

    def log(self, topic: str, record: dict[str, Any], t_ns: int) -> None:
        """Queue a record (never blocks; dropped when the viewer is far behind)."""
        if self._queue.qsize() > MAX_BACKLOG:
            self.dropped += 1
            return
        self._queue.put((topic, dict(record), t_ns))

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=5)
        self._server.stop()

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            topic, record, t_ns = item
            record = prepare_record(topic, record, t_ns, self._names)
            channel = self._channels.get(topic)
            if channel is None:
                schema = record_schema(record)
                if topic == FAULT_TOPIC:
                    schema["properties"] = {**schema["properties"], **FOXGLOVE_LOG_SCHEMA["properties"]}
                name = "foxglove.Log" if topic == FAULT_TOPIC else schema_name(topic)
                channel = self._foxglove.Channel(topic, schema={"title": name, **schema}, message_encoding="json")
                self._channels[topic] = channel
            channel.log(encode_record(record), log_time=t_ns)
