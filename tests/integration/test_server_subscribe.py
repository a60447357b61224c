"""Server-wide subscriptions of a real server: a monitor watches every room's lifecycle.

Issue 13, "Events for more than one listener": `server.subscribe` gives a connection every
room's lifecycle events (not protocol notifications) without taking anything from the
rooms' own subscribers; bounded, and a gone monitor is forgotten.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
import zmq
import zmq.asyncio
from conftest import MEDIA_CODECS, RoomDriver
from support import ServerProcess
from tureen.shared.client import TureenClient
from tureen.shared.errors import ProtocolError

pytestmark = pytest.mark.timeout(90)

Event = dict[str, Any]


def _is(name: str, room_id: str, peer: str | None = None) -> Any:
    def wanted(event: Event) -> bool:
        return (
            event.get("event") == name
            and event.get("roomId") == room_id
            and (peer is None or event.get("peerName") == peer)
        )

    return wanted


async def test_a_monitor_gets_every_rooms_lifecycle_and_the_app_keeps_everything(server: ServerProcess) -> None:
    async with TureenClient(server.endpoint) as app, TureenClient(server.endpoint) as monitor:
        created = await app.create_room(MEDIA_CODECS, room_id="watched-1")
        first = RoomDriver(app, "watched-1", created["rtpCapabilities"])
        await first.join("alice")  # before the monitor: it sees what happens from now on
        assert (await monitor.subscribe_server())["subscribers"] == 1
        assert (await monitor.subscribe_server())["subscribers"] == 1  # twice is harmless

        await first.join("bob")
        joined = await monitor.next_event(_is("peer.joined", first.id, "bob"))
        assert joined["spy"] is False
        # the app, the room's own subscriber, still gets everything: lifecycle and notifications
        await app.next_event(_is("peer.joined", first.id, "bob"))
        assert (await app.next_notification("alice", "newPeer", name="bob"))["name"] == "bob"

        # a room created after the monitor subscribed is watched too, from its creation on
        created = await app.create_room(MEDIA_CODECS, room_id="watched-2", app_data={"topic": "x"})
        second = RoomDriver(app, "watched-2", created["rtpCapabilities"])
        made = await monitor.next_event(_is("room.created", second.id))
        assert made["appData"] == {"topic": "x"}
        await second.join("carol")
        await second.join("dave")
        await monitor.next_event(_is("peer.joined", second.id, "carol"))
        await monitor.next_event(_is("peer.joined", second.id, "dave"))
        await app.next_notification("carol", "newPeer", name="dave")

        await second.notify("dave", "leave")
        await monitor.next_event(_is("peer.closed", second.id, "dave"))
        await app.next_event(_is("peer.closed", second.id, "dave"))
        await app.next_notification("carol", "peerClosed", name="dave")

        for room in (first, second):
            await app.close_room(room.id)
            await monitor.next_event(_is("room.closed", room.id))
            await app.next_event(_is("room.closed", room.id))
        # the room's own connection got every peer's `closed` notification
        for peer in ("alice", "bob"):
            await app.next_notification(peer, "closed")

        # Events reach one connection in the order they were sent, and room.closed was the
        # last of each room: whatever notification the monitor could have got is queued now.
        seen = monitor.pending_events()
        assert [e for e in seen if e.get("event") == "notification"] == []
        assert not any(e.get("event") == "room.created" and e.get("roomId") == first.id for e in seen)

        assert (await monitor.unsubscribe_server())["subscribers"] == 0
        with pytest.raises(ProtocolError) as info:
            await monitor.unsubscribe_server()
        assert info.value.code == "not_found"
        await app.create_room(MEDIA_CODECS, room_id="unwatched")
        with pytest.raises(TimeoutError):
            await monitor.next_event(_is("room.created", "unwatched"), timeout=0.5)
        await app.close_room("unwatched")


async def test_a_room_subscriber_that_also_watches_the_server_gets_each_event_once(room: RoomDriver) -> None:
    app = room.client
    await app.subscribe_server()
    try:
        await room.join("erin")
        await room.join("frank")
        await app.next_notification("erin", "newPeer", name="frank")  # still the app's
        await app.close_room(room.id)
        await app.next_event(_is("room.closed", room.id))
        # room.closed was the room's last event: every copy of the earlier ones is queued
        events = app.pending_events()
        for peer in ("erin", "frank"):
            assert len([e for e in events if _is("peer.joined", room.id, peer)(e)]) == 1
        assert not [e for e in events if _is("room.closed", room.id)(e)]
    finally:
        await app.unsubscribe_server()


async def test_server_subscribers_are_bounded_and_a_gone_one_is_forgotten(room: RoomDriver, server: ServerProcess) -> None:
    ctx = zmq.asyncio.Context.instance()
    monitors: list[TureenClient] = []
    raw = ctx.socket(zmq.DEALER)
    raw.setsockopt(zmq.LINGER, 0)
    raw.connect(server.endpoint)
    try:
        for _ in range(16):  # the most a server takes
            monitors.append(await TureenClient(server.endpoint).connect())
            await monitors[-1].subscribe_server()
        await raw.send(orjson.dumps({"id": "full", "method": "server.subscribe"}))
        reply = orjson.loads(await asyncio.wait_for(raw.recv(), 5))
        assert reply["error"]["code"] == "limit"
        assert "16" in reply["error"]["message"] and "server.unsubscribe" in reply["error"]["message"]

        # One monitor goes away without unsubscribing: the next lifecycle event of any room
        # cannot be routed to it, which frees its slot. (When ZeroMQ has noticed the
        # disconnect is up to the kernel: retry, bounded.)
        await monitors.pop().close()
        for attempt in range(50):
            await room.join(f"p{attempt}")
            await raw.send(orjson.dumps({"id": attempt, "method": "server.subscribe"}))
            reply = orjson.loads(await asyncio.wait_for(raw.recv(), 5))
            if reply["ok"]:
                break
            assert reply["error"]["code"] == "limit"
            await asyncio.sleep(0.1)
        assert reply["ok"] and reply["data"]["subscribers"] == 16
        # the room's creator and the remaining monitors still get the room's events
        await room.join("last")
        for listener in (room.client, monitors[0], monitors[-1]):
            await listener.next_event(_is("peer.joined", room.id, "last"))
    finally:
        await raw.send(orjson.dumps({"id": "bye", "method": "server.unsubscribe"}))
        await asyncio.wait_for(raw.recv(), 5)
        raw.close()
        for monitor in monitors:
            await monitor.unsubscribe_server()
            await monitor.close()
