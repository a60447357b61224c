"""Control connections of a real server: who receives a room's events, who gets a reply.

Issue 12, finding 6: `room.subscribe` from another connection took the room's events away
from the app that created the room, and a process presenting the app's ZeroMQ identity took
over its replies (ROUTER_HANDOVER).
"""

from __future__ import annotations

import asyncio
import contextlib

import orjson
import pytest
import zmq
import zmq.asyncio
from conftest import RoomDriver
from support import ServerProcess
from tureen.shared.client import TureenClient
from tureen.shared.errors import ProtocolError

pytestmark = pytest.mark.timeout(90)


async def _drain(sock: zmq.asyncio.Socket, seconds: float) -> list[dict]:
    """Everything `sock` receives within `seconds`."""
    got: list[dict] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while (remaining := deadline - loop.time()) > 0:
        if await sock.poll(remaining * 1000, zmq.POLLIN):
            got.append(orjson.loads((await sock.recv_multipart())[-1]))
    return got


async def test_another_subscriber_adds_a_listener_and_the_creator_keeps_the_events(
    room: RoomDriver, server: ServerProcess
) -> None:
    await room.join("alice")
    async with TureenClient(server.endpoint) as other:
        await other.subscribe(room.id)
        await room.join("bob")
        for listener in (room.client, other):  # every event goes to every subscriber
            note = await listener.next_notification("alice", "newPeer", name="bob")
            assert note["name"] == "bob"
            joined = await listener.next_event(
                lambda e: e.get("event") == "peer.joined" and e.get("peerName") == "bob"
            )
            assert joined["roomId"] == room.id
        await other.unsubscribe(room.id)
        await room.join("carol")
        await room.client.next_notification("alice", "newPeer", name="carol")
        with pytest.raises(TimeoutError):
            await other.next_notification("alice", "newPeer", timeout=0.5, name="carol")
        with pytest.raises(ProtocolError) as info:
            await other.unsubscribe(room.id)
        assert info.value.code == "not_found"


async def test_subscribers_are_bounded_and_a_gone_one_is_forgotten(room: RoomDriver, server: ServerProcess) -> None:
    ctx = zmq.asyncio.Context.instance()
    listeners: list[TureenClient] = []
    raw = ctx.socket(zmq.DEALER)
    raw.setsockopt(zmq.LINGER, 0)
    raw.connect(server.endpoint)
    try:
        for _ in range(15):  # with the creator: 16, the most a room takes
            listeners.append(await TureenClient(server.endpoint).connect())
            await listeners[-1].subscribe(room.id)
        await raw.send(orjson.dumps({"id": "full", "method": "room.subscribe", "roomId": room.id}))
        reply = orjson.loads(await asyncio.wait_for(raw.recv(), 5))
        assert reply["error"]["code"] == "limit"
        assert "16" in reply["error"]["message"] and "room.unsubscribe" in reply["error"]["message"]

        # One listener goes away without unsubscribing: the room's next event cannot be
        # routed to it, which frees its slot. (When ZeroMQ has noticed the disconnect is up
        # to the kernel: retry, bounded.)
        await listeners.pop().close()
        for attempt in range(50):
            await room.join(f"p{attempt}")
            await raw.send(orjson.dumps({"id": attempt, "method": "room.subscribe", "roomId": room.id}))
            reply = orjson.loads(await asyncio.wait_for(raw.recv(), 5))
            if reply["ok"]:
                break
            assert reply["error"]["code"] == "limit"
            await asyncio.sleep(0.1)
        assert reply["ok"] and reply["data"]["subscribers"] == 16
        # the creator and the remaining listeners still get everything
        await room.join("last")
        for listener in (room.client, listeners[0], listeners[-1]):
            await listener.next_event(lambda e: e.get("event") == "peer.joined" and e.get("peerName") == "last")
    finally:
        raw.close()
        for listener in listeners:
            await listener.close()


async def test_a_connection_reusing_the_apps_identity_gets_none_of_its_replies(server: ServerProcess) -> None:
    ctx = zmq.asyncio.Context.instance()
    app = ctx.socket(zmq.DEALER)
    thief = ctx.socket(zmq.DEALER)
    for sock in (app, thief):
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.ROUTING_ID, b"the-app")
    try:
        app.connect(server.endpoint)
        await app.send(orjson.dumps({"id": 0, "method": "server.ping"}))
        assert orjson.loads(await asyncio.wait_for(app.recv(), 5))["id"] == 0
        thief.connect(server.endpoint)
        await thief.send(orjson.dumps({"id": "thief", "method": "server.ping"}))
        stolen = await _drain(thief, 0.5)
        for request_id in range(1, 6):
            await app.send(orjson.dumps({"id": request_id, "method": "server.ping"}))
        replies = []
        with contextlib.suppress(TimeoutError):
            while len(replies) < 5:
                replies.append(orjson.loads(await asyncio.wait_for(app.recv(), 5))["id"])
        stolen += await _drain(thief, 0.5)
        assert stolen == [], "a second connection with the app's identity received messages"
        assert sorted(replies) == [1, 2, 3, 4, 5]
    finally:
        app.close()
        thief.close()
