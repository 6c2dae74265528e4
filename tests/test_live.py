"""The live view: a Foxglove WebSocket server showing what the run logs, as a Foxglove client sees it."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

websockets = pytest.importorskip("websockets")


def test_a_client_sees_named_states_and_faults() -> None:
    from metactl.live import LiveView

    view = LiveView(port=0)
    view.name_fields("/state", "obs", ["pos:x", "pos:y"])
    view.log("/state", {"step": 0, "obs": [0.0, 0.0]}, t_ns=1)  # advertises the channel before the client comes
    view.log("/fault", {"source": "safety", "code": "state_limit", "detail": "x out of range"}, t_ns=2)

    async def client() -> list[dict]:
        async with websockets.connect(view.url, subprotocols=["foxglove.sdk.v1"]) as ws:
            channels = {}
            while len(channels) < 2:
                msg = json.loads(await asyncio.wait_for(ws.recv(), 10))
                if msg["op"] == "advertise":
                    channels |= {c["id"]: c for c in msg["channels"]}
            subscriptions = [{"id": i, "channelId": cid} for i, cid in enumerate(channels)]
            await ws.send(json.dumps({"op": "subscribe", "subscriptions": subscriptions}))
            await asyncio.sleep(0.3)
            view.log("/state", {"step": 1, "obs": [0.5, -1.0]}, t_ns=time.time_ns())
            view.log("/fault", {"source": "safety", "code": "state_limit", "detail": "x"}, t_ns=time.time_ns())
            got = []
            while len(got) < 2:
                data = await asyncio.wait_for(ws.recv(), 10)
                got.append(json.loads(data[13:]))  # op (1) + subscription id (4) + log time (8), then the JSON
            return got, channels

    try:
        got, channels = asyncio.run(client())
    finally:
        view.close()
    by_topic = {c["topic"]: c for c in channels.values()}
    assert by_topic["/fault"]["schemaName"] == "foxglove.Log" and by_topic["/state"]["encoding"] == "json"
    state = next(m for m in got if "obs" in m)
    assert state["obs"] == {"pos_x": 0.5, "pos_y": -1.0}
    fault = next(m for m in got if "level" in m)
    assert fault["level"] == 3 and fault["message"] == "state_limit: x"  # a safety fault is a WARNING
