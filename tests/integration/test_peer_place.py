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


async def test_the_supervisors_own_host_is_listed_drained_and_placed_on(room: RoomDriver) -> None:
    """A real server with no remote host: its own machine is host "local" (config host_name)
    for hosts.list, hosts.drain and peer.place {host}; a drain stops new peers only."""
    client = room.client
    listing = await client.list_hosts()
    assert [(h["name"], h["state"], h["local"], h["workers"]) for h in listing["hosts"]] == [("local", "up", True, [0, 1])]
    await room.join("erin")
    await room.join("fred")
    assert (await client.place_peer(room.id, "erin", host="local"))["worker"] in (0, 1)
    await room.req("erin", "createTransport", id=31, direction="send", options={}, **PLAIN)
    try:
        assert (await client.drain_host("local"))["state"] == "draining"
        # Its peers stay and keep making transports on their worker; new peers are refused.
        await room.req("erin", "createTransport", id=32, direction="recv", options={}, **PLAIN)
        with pytest.raises(ProtocolError) as err:
            await room.req("fred", "createTransport", id=41, direction="send", options={}, **PLAIN)
        assert err.value.code == "unavailable" and "draining" in err.value.message
        for where in ({"host": "local"}, {"worker": 1}):
            with pytest.raises(ProtocolError) as err:
                await client.place_peer(room.id, "fred", **where)
            assert err.value.code == "unavailable" and "draining" in err.value.message
        assert (await client.list_hosts())["hosts"][0]["state"] == "draining"
    finally:
        assert (await client.drain_host("local", False))["state"] == "up"
    assert await client.place_peer(room.id, "fred", 1, host="local") == {"worker": 1}
    with pytest.raises(ProtocolError) as err:
        await client.place_peer(room.id, "fred", host="elsewhere")
    assert err.value.code == "not_found" and "the hosts are: local" in err.value.message
    with pytest.raises(ProtocolError) as err:
        await client.drain_host("elsewhere")
    assert err.value.code == "not_found"
    await room.req("fred", "createTransport", id=42, direction="send", options={}, **PLAIN)
    assert await worker_of(room, "fred") == 1
