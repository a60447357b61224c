"""peer.place: an app pins a peer's transports to a worker before the first one (issue 15)."""

from __future__ import annotations

import pytest
from conftest import RoomDriver
from tureen.shared.errors import ProtocolError

pytestmark = pytest.mark.timeout(60)

PLAIN = {"plainRtpParameters": {"ip": "127.0.0.1", "port": 9}}


async def worker_of(room: RoomDriver, peer: str) -> int | None:
    return (await room.client.dump_peer(room.id, peer))["worker"]


async def test_a_placed_peer_gets_its_transports_on_that_worker(room: RoomDriver) -> None:
    # Both workers, each chosen against what placement alone would do for the second peer.
    for n, (name, worker) in enumerate((("alice", 1), ("bob", 1), ("carol", 0))):
        await room.join(name)
        assert await room.client.place_peer(room.id, name, worker) == {"worker": worker}
        ids = {10 * n + 11, 10 * n + 12}  # transport ids are unique in a room
        await room.req(name, "createTransport", id=10 * n + 11, direction="send", options={}, **PLAIN)
        await room.req(name, "createTransport", id=10 * n + 12, direction="recv", options={}, **PLAIN)
        assert await worker_of(room, name) == worker
        dump = await room.client.dump_peer(room.id, name)
        assert {t["id"] for t in dump["transports"]} == ids


async def test_bad_placements_are_refused_and_change_nothing(room: RoomDriver) -> None:
    await room.join("dave")
    for params, code in (
        ({"worker": 99}, "unavailable"),
        ({"worker": -1}, "bad_request"),
        ({"worker": "1"}, "bad_request"),
        ({}, "bad_request"),
    ):
        with pytest.raises(ProtocolError) as err:
            await room.client.request("peer.place", roomId=room.id, peerName="dave", **params)
        assert err.value.code == code, (params, err.value)
        assert await worker_of(room, "dave") is None
    with pytest.raises(ProtocolError) as err:
        await room.client.place_peer(room.id, "nobody", 0)
    assert err.value.code == "not_found"
    # Once the peer has a transport its worker is fixed.
    await room.client.place_peer(room.id, "dave", 0)
    await room.req("dave", "createTransport", id=21, direction="send", options={}, **PLAIN)
    with pytest.raises(ProtocolError) as err:
        await room.client.place_peer(room.id, "dave", 1)
    assert err.value.code == "invalid_state"
    assert "before its first createTransport" in err.value.message
    assert await worker_of(room, "dave") == 0
