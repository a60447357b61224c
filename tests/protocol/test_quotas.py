"""Quotas (issue 12, finding 4) against a real `tureen serve` configured with small ones.

Each quota refuses with code `limit`, names its configuration key, and changes nothing; what
was refused works again once something is closed.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import zmq
import zmq.asyncio
from conftest import RoomDriver
from support import MEDIA_CODECS, ServerProcess, opus_parameters
from tureen.shared.client import TureenClient
from tureen.shared.errors import ProtocolError

pytestmark = pytest.mark.timeout(90)

QUOTAS = """
max_rooms = 3
max_peers_per_room = 3
max_transports_per_peer = 2
max_producers_per_peer = 2
max_consumers_per_peer = 3
max_app_data_bytes = 256
max_requests_per_second = 20
max_requests_burst = 20
"""

_ids = itertools.count(30_000_001)
_rooms = itertools.count(1)


@pytest.fixture(scope="module")
def small_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("quotas")
    config = tmp / "tureen.toml"
    config.write_text(QUOTAS)
    proc = ServerProcess(tmp, workers=1, extra=["--config", str(config)])
    try:
        proc.wait_ready()
        yield proc
    finally:
        proc.stop()


@pytest.fixture
async def small_client(small_server: ServerProcess) -> AsyncIterator[TureenClient]:
    async with TureenClient(small_server.endpoint, timeout=10.0) as client:
        yield client


@pytest.fixture
async def small_room(small_client: TureenClient) -> AsyncIterator[RoomDriver]:
    room_id = f"quota-{next(_rooms)}"
    created = await small_client.create_room(MEDIA_CODECS, room_id=room_id)
    yield RoomDriver(small_client, room_id, created["rtpCapabilities"])
    try:
        await small_client.close_room(room_id)
    except ProtocolError:
        pass


async def expect_limit(coro: Any, key: str) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        await coro
    assert info.value.code == "limit", info.value
    assert key in info.value.message, info.value.message
    return info.value


async def transport(room: RoomDriver, peer: str, direction: str = "send") -> int:
    tid = next(_ids)
    await room.req(peer, "createTransport", id=tid, direction=direction, options={},
                   plainRtpParameters={"ip": "127.0.0.1", "port": 5004})
    return tid


async def produce(room: RoomDriver, peer: str, send: int) -> int:
    pid = next(_ids)
    await room.req(peer, "createProducer", id=pid, kind="audio", transportId=send,
                   rtpParameters=opus_parameters(next(_ids)), paused=False)
    return pid


async def test_rooms_quota(small_client: TureenClient) -> None:
    before = {r["roomId"] for r in await small_client.list_rooms()}
    names = [f"many-{i}" for i in range(3 - len(before))]
    for name in names:
        await small_client.create_room(MEDIA_CODECS, room_id=name)
    try:
        await expect_limit(small_client.create_room(MEDIA_CODECS, room_id="one-too-many"), "max_rooms")
        assert "one-too-many" not in {r["roomId"] for r in await small_client.list_rooms()}
        await small_client.close_room(names[0])
        await small_client.create_room(MEDIA_CODECS, room_id="one-too-many")
        names[0] = "one-too-many"
    finally:
        for name in names:
            await small_client.close_room(name)


async def test_peers_per_room_quota(small_room: RoomDriver) -> None:
    for name in ("a", "b", "c"):
        await small_room.join(name)
    await expect_limit(small_room.join("d"), "max_peers_per_room")
    dump = await small_room.client.dump_room(small_room.id)
    assert [p["name"] for p in dump["peers"]] == ["a", "b", "c"]
    with pytest.raises(TimeoutError):
        await small_room.client.next_notification("a", "newPeer", timeout=0.2, name="d")
    await small_room.notify("c", "leave")
    await small_room.join("d")


async def test_transports_and_producers_per_peer(small_room: RoomDriver) -> None:
    await small_room.join("alice")
    send = await transport(small_room, "alice")
    recv = await transport(small_room, "alice", "recv")
    with pytest.raises(ProtocolError) as info:
        await transport(small_room, "alice")
    assert info.value.code == "limit" and "max_transports_per_peer" in info.value.message
    await produce(small_room, "alice", send)
    await produce(small_room, "alice", send)
    await expect_limit(produce(small_room, "alice", send), "max_producers_per_peer")
    dump = (await small_room.client.dump_room(small_room.id))["peers"][0]
    assert len(dump["transports"]) == 2 and len(dump["producers"]) == 2
    await small_room.notify("alice", "closeTransport", id=recv)
    await transport(small_room, "alice", "recv")


async def test_consumers_per_peer(small_room: RoomDriver) -> None:
    """A join that would bring more consumers than the quota, and a producer that would give
    some peer one too many, are refused; nobody gets a consumer of what was refused."""
    await small_room.join("alice")
    await small_room.join("bob")
    alice_send = await transport(small_room, "alice")
    bob_send = await transport(small_room, "bob")
    await produce(small_room, "alice", alice_send)
    await produce(small_room, "alice", alice_send)
    await produce(small_room, "bob", bob_send)
    await small_room.join("carol")  # receives 3 consumers: the quota
    await expect_limit(produce(small_room, "bob", bob_send), "max_consumers_per_peer")
    dump = await small_room.client.dump_room(small_room.id)
    by_name = {p["name"]: p for p in dump["peers"]}
    assert len(by_name["bob"]["producers"]) == 1 and len(by_name["carol"]["consumers"]) == 3
    assert len(by_name["alice"]["consumers"]) == 1
    # With a fourth producer in the room a newcomer would receive 4: refused too.
    await small_room.notify("carol", "leave")
    await produce(small_room, "bob", bob_send)
    await expect_limit(small_room.join("dave"), "max_consumers_per_peer")


async def test_app_data_quota(small_room: RoomDriver) -> None:
    await expect_limit(small_room.join("alice", app_data={"x": "y" * 300}), "max_app_data_bytes")
    await small_room.join("alice", app_data={"x": "y" * 200})
    await expect_limit(
        small_room.action("peer.close", peerName="alice", appData=["z" * 300]), "max_app_data_bytes"
    )
    assert [p["name"] for p in (await small_room.client.dump_room(small_room.id))["peers"]] == ["alice"]


async def test_request_rate_per_connection(small_server: ServerProcess) -> None:
    """300 pings in one go on one connection: the burst passes, the rest get `limit` replies
    that carry their ids; other connections are not slowed; later the connection is served."""
    sock = zmq.asyncio.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(small_server.endpoint)
    try:
        for i in range(300):
            await sock.send(orjson.dumps({"id": i, "method": "server.ping"}))
        replies = [orjson.loads(await asyncio.wait_for(sock.recv(), 5)) for _ in range(300)]
        assert sorted(r["id"] for r in replies) == list(range(300))
        refused = [r for r in replies if not r["ok"]]
        assert refused and len(refused) < 300
        assert all(r["error"]["code"] == "limit" for r in refused)
        assert "slow down" in refused[0]["error"]["message"]
        assert "max_requests_per_second" in refused[0]["error"]["message"]
        async with TureenClient(small_server.endpoint) as other:
            assert await other.request("server.ping") == {"pong": True}
        for attempt in range(50):  # bounded: tokens come back at 20 a second
            await asyncio.sleep(0.1)
            await sock.send(orjson.dumps({"id": f"again-{attempt}", "method": "server.ping"}))
            reply = orjson.loads(await asyncio.wait_for(sock.recv(), 5))
            if reply["ok"]:
                break
        assert reply["ok"], reply
    finally:
        sock.close()


def test_quotas_come_from_the_environment_and_are_refused_below_one(tmp_path: Path) -> None:
    from tureen.shared.config import load_config

    config = load_config(env={"TUREEN_MAX_ROOMS": "5", "TUREEN_MAX_REQUESTS_PER_SECOND": "2.5"})
    assert (config.max_rooms, config.max_requests_per_second) == (5, 2.5)
    path = tmp_path / "bad.toml"
    path.write_text("max_transports_per_peer = 0\n")
    with pytest.raises(ValueError, match="max_transports_per_peer"):
        load_config(path, env={})
    with pytest.raises(ValueError, match="max_app_data_bytes"):
        load_config(env={"TUREEN_MAX_APP_DATA_BYTES": "10"})
