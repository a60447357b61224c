"""The Python TureenClient covers what the Node client does (issue 14, section 3).

- every control method clients/node/lib/client.js sends has a typed helper here;
- the server-app helpers against a real server;
- after a reconnection the client subscribes again (rooms and server-wide), and reports a room
  a restarted server no longer has. The connection is cut by a TCP relay between client and
  server (closing its sockets), so the same server sees a new connection; for the restart the
  relay is pointed at a new server.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from pathlib import Path
from typing import Any

import pytest
from conftest import MEDIA_CODECS, RoomDriver
from support import ServerProcess, free_tcp_port, opus_parameters
from tureen.shared.client import TureenClient
from tureen.shared.errors import ProtocolError

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parents[2]
NODE_CLIENT = ROOT / "clients" / "node" / "lib" / "client.js"
PYTHON_CLIENT = ROOT / "shared" / "client.py"


def test_every_control_method_of_the_node_client_has_a_python_helper() -> None:
    node = set(re.findall(r"(?:request|_action)\('([a-zA-Z]+\.[a-zA-Z]+)'", NODE_CLIENT.read_text()))
    python = PYTHON_CLIENT.read_text()
    assert len(node) >= 30, sorted(node)  # the pattern still finds them
    missing = sorted(m for m in node if f'"{m}"' not in python)
    assert not missing, f"control methods the Node client sends and TureenClient has no helper for: {missing}"


class Relay:
    """A TCP relay 127.0.0.1:port -> the server; `cut()` closes every relayed connection."""

    def __init__(self, target: str) -> None:
        self.port = free_tcp_port()
        self.endpoint = f"tcp://127.0.0.1:{self.port}"
        self.target = target
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None

    async def start(self) -> Relay:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        host, port = self.target.removeprefix("tcp://").rsplit(":", 1)
        try:
            up_reader, up_writer = await asyncio.open_connection(host, int(port))
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers -= {writer, up_writer}

    def cut(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


def _client_event(name: str, room_id: Any = ...) -> Any:
    return lambda e: e.get("event") == name and (room_id is ... or e.get("roomId") == room_id)


async def test_server_app_helpers_tell_the_peers(client: TureenClient) -> None:
    created = await client.create_room(MEDIA_CODECS, room_id="helpers")
    room = RoomDriver(client, "helpers", created["rtpCapabilities"])
    await room.join("alice")
    await room.join("bob")
    await room.req("alice", "createTransport", id=11, direction="send", options={},
                   plainRtpParameters={"ip": "127.0.0.1", "port": free_tcp_port()})
    await room.req("bob", "createTransport", id=12, direction="recv", options={},
                   plainRtpParameters={"ip": "127.0.0.1", "port": free_tcp_port()})
    await room.req("alice", "createProducer", id=21, kind="audio", transportId=11,
                   rtpParameters=opus_parameters(1111), paused=False)
    consumer = await client.next_notification("bob", "newConsumer")
    await room.req("bob", "enableConsumer", id=consumer["id"], transportId=12, paused=False)

    await client.pause_producer("helpers", "alice", 21, app_data={"by": "app"})
    assert (await client.next_notification("alice", "producerPaused", id=21))["appData"] == {"by": "app"}
    await client.next_notification("bob", "consumerPaused", id=consumer["id"])
    await client.resume_producer("helpers", "alice", 21)
    await client.next_notification("bob", "consumerResumed", id=consumer["id"])
    await client.pause_consumer("helpers", "bob", consumer["id"])
    await client.next_notification("bob", "consumerPaused", id=consumer["id"])
    await client.resume_consumer("helpers", "bob", consumer["id"])
    await client.next_notification("bob", "consumerResumed", id=consumer["id"])
    await client.set_consumer_preferred_profile("helpers", "bob", consumer["id"], "low")
    assert (await client.next_notification("bob", "consumerPreferredProfileSet"))["profile"] == "low"
    with pytest.raises(ProtocolError) as refused:
        await client.set_consumer_preferred_profile("helpers", "bob", consumer["id"], "best")
    assert refused.value.code == "bad_request"
    await client.close_transport("helpers", "bob", 12, app_data={"why": "app"})
    closed = await client.next_notification("bob", "transportClosed")
    assert (closed["id"], closed["appData"]) == (12, {"why": "app"})
    await client.close_producer("helpers", "alice", 21)
    await client.next_notification("alice", "producerClosed", id=21)
    await client.close_peer("helpers", "bob", app_data="kicked")
    assert (await client.next_notification("bob", "closed"))["appData"] == "kicked"
    assert await client.ping() == {"pong": True}
    assert (await client.wait_ready(timeout=5))["ready"] is True
    level = await client.set_log_level("info", "tureen.room")
    assert (level["level"], level["logger"]) == ("info", "tureen.room")
    with pytest.raises(ProtocolError):
        await client.set_log_level("loud")
    events: list[dict[str, Any]] = []
    client.on_event(events.append)
    client.off_event(events.append)
    await client.close_room("helpers")
    assert events == []


async def test_after_a_reconnection_the_client_subscribes_again(server: ServerProcess) -> None:
    relay = await Relay(server.endpoint).start()
    try:
        async with TureenClient(relay.endpoint, timeout=10.0) as app, TureenClient(server.endpoint) as other:
            created = await app.create_room(MEDIA_CODECS, room_id="kept")
            await app.subscribe_server()
            room = RoomDriver(other, "kept", created["rtpCapabilities"])  # joins come from elsewhere
            await room.join("alice")
            await app.next_event(_client_event("peer.joined", "kept"))

            relay.cut()  # the server sees the connection go; ZeroMQ reconnects through the relay
            await app.next_event(_client_event("client.disconnected"), timeout=10)
            await app.next_event(_client_event("client.reconnected"), timeout=10)
            resubscribed = {
                (await app.next_event(_client_event("client.resubscribed"), timeout=10))["roomId"] for _ in range(2)
            }
            assert resubscribed == {None, "kept"}
            # The room's events and the server-wide ones come to the new connection.
            await room.join("bob")
            await app.next_event(_client_event("peer.joined", "kept"), timeout=5)
            assert (await app.next_notification("alice", "newPeer"))["name"] == "bob"
            await other.create_room(MEDIA_CODECS, room_id="later")
            await app.next_event(_client_event("room.created", "later"), timeout=5)
            await other.close_room("later")
            await app.close_room("kept")
    finally:
        await relay.close()


async def test_a_room_the_restarted_server_lacks_is_reported_lost(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    first = ServerProcess(tmp_path / "a", workers=1)
    second: ServerProcess | None = None
    relay: Relay | None = None
    try:
        first.wait_ready()
        relay = await Relay(first.endpoint).start()
        async with TureenClient(relay.endpoint, timeout=10.0) as app:
            await app.create_room(MEDIA_CODECS, room_id="lost")
            first.stop()  # a stop closes the rooms: room.closed, nothing to subscribe again
            await app.next_event(_client_event("room.closed", "lost"), timeout=15)
            (tmp_path / "b").mkdir()
            second = ServerProcess(tmp_path / "b", workers=1)
            second.wait_ready()
            relay.target = second.endpoint
            relay.cut()
            await app.next_event(_client_event("client.reconnected"), timeout=15)
            assert await app.ping() == {"pong": True}
            assert not [e for e in app.pending_events() if e.get("event") == "client.roomLost"]

            # A room the new server does not have (as after a crash): reported lost.
            await app.create_room(MEDIA_CODECS, room_id="gone")
            third_dir = tmp_path / "c"
            third_dir.mkdir()
            third = ServerProcess(third_dir, workers=1)
            try:
                third.wait_ready()
                relay.target = third.endpoint
                relay.cut()
                lost = await app.next_event(_client_event("client.roomLost"), timeout=15)
                assert lost["roomId"] == "gone"
                assert await app.list_rooms() == []
            finally:
                third.stop()
    finally:
        if relay is not None:
            await relay.close()
        first.stop()
        if second is not None:
            second.stop()


async def test_helpers_of_the_newer_methods(client: TureenClient) -> None:
    created = await client.create_room(MEDIA_CODECS, room_id="newer")
    room = RoomDriver(client, "newer", created["rtpCapabilities"])
    await room.join("alice")
    await room.join("bob")
    await room.req("alice", "createTransport", id=31, direction="send", options={})
    await room.req("alice", "createTransport", id=32, direction="send", options={},
                   plainRtpParameters={"ip": "127.0.0.1", "port": free_tcp_port()})
    await room.req("bob", "createTransport", id=33, direction="recv", options={},
                   plainRtpParameters={"ip": "127.0.0.1", "port": free_tcp_port()})
    await room.req("alice", "createProducer", id=41, kind="audio", transportId=32,
                   rtpParameters=opus_parameters(4141), paused=False)
    consumer = await client.next_notification("bob", "newConsumer")
    await room.req("bob", "enableConsumer", id=consumer["id"], transportId=33, paused=False)

    assert (await client.set_transport_max_bitrate("newer", "alice", 31, 300_000))["bitrate"] <= 300_000
    assert await client.request_consumer_key_frame("newer", "bob", consumer["id"]) is None
    assert isinstance(await client.get_producer_stats("newer", "alice", 41), list)
    assert isinstance(await client.get_consumer_stats("newer", "bob", consumer["id"]), list)
    assert await client.get_transport_stats("newer", "alice", 32) == []
    assert (await client.dump_peer("newer", "alice"))["name"] == "alice"
    assert await client.set_audio_levels("newer", 500) == {"interval": 500, "threshold": -127}
    streamer = await client.create_rtp_streamer("newer", 41, "127.0.0.1", free_tcp_port())
    assert "m=audio" in streamer["sdp"]
    await client.close_rtp_streamer("newer", streamer["streamerId"])
    await client.close_room("newer")
