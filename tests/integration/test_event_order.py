"""A reply goes out before the events of the requests handled after it in the same room.

Apps relay in wire order. When a join's reply came after the `peerClosed` of a peer it lists
(the room had already handled that peer's leave), the joining client heard of the close
before it knew the peer, then got the peer from the join reply: a ghost peer for good. Found
by the load test's churn (tests/load_churn.py).
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import zmq
import zmq.asyncio
from support import MEDIA_CODECS, ServerProcess, peer_capabilities


async def test_a_join_reply_precedes_the_events_of_later_requests(server: ServerProcess) -> None:
    sock = zmq.asyncio.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(server.endpoint)
    trace: list[Any] = []

    async def read_until_replies(ids: set[int]) -> dict[int, Any]:
        """Every message until the replies to `ids` are in (each wait bounded); their data."""
        data = {}
        while len(data) < len(ids):
            message = orjson.loads(await asyncio.wait_for(sock.recv(), 10))
            if "id" in message:
                assert message["ok"], message
                data[message["id"]] = message["data"]
                trace.append(("reply", message["id"]))
            elif message.get("event") == "notification":
                trace.append((message["peerName"], message["notification"]["method"]))
            else:
                trace.append((message.get("peerName"), message["event"]))
        return data

    async def send(request_id: int, method: str, **params: Any) -> None:
        await sock.send(orjson.dumps({"id": request_id, "method": method, **params}))

    def join(name: str) -> dict[str, Any]:
        return {
            "method": "join",
            "target": "room",
            "peerName": name,
            "rtpCapabilities": caps,
            "spy": False,
        }

    try:
        await send(1, "room.create", mediaCodecs=MEDIA_CODECS, roomId="order")
        created = (await read_until_replies({1}))[1]
        caps = peer_capabilities(created["rtpCapabilities"])
        await send(3, "room.request", roomId="order", request=join("quinn"))
        await send(4, "room.request", roomId="order", request=join("rita"))
        await read_until_replies({3, 4})
        trace.clear()

        # Back to back, so the room holds all three at once: a request that waits for a worker
        # (the other two queue behind it), carol's join, rita's leave (no worker involved).
        await send(
            5,
            "room.request",
            roomId="order",
            peerName="quinn",
            request={
                "method": "createTransport",
                "target": "peer",
                "id": 777,
                "direction": "recv",
                "options": {},
                "plainRtpParameters": {"ip": "127.0.0.1", "port": 9},
            },
        )
        await send(6, "room.request", roomId="order", request=join("carol"))
        await send(
            7,
            "room.notify",
            roomId="order",
            peerName="rita",
            notification={"method": "leave", "target": "peer", "notification": True},
        )
        await read_until_replies({5, 6, 7})

        assert trace.index(("reply", 5)) < trace.index(("quinn", "newPeer")), trace
        assert trace.index(("reply", 6)) < trace.index(("carol", "peerClosed")), trace
        await send(8, "room.close", roomId="order")
        await read_until_replies({8})
    finally:
        sock.close()
