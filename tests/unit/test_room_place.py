"""peer.place in memory (fake workers, memory_room.py): a peer pinned by host name (that
host's least loaded worker), by worker, or both; every refusal changes nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from memory_room import MemoryRoom
from tureen.supervisor.room_methods import ROOM_METHODS

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
async def mem() -> AsyncIterator[MemoryRoom]:
    m = MemoryRoom(workers=4)
    # Workers 0, 1 on the supervisor's own host, 2 on h1, 3 on h2.
    m.services.host_of = {2: "h1", 3: "h2"}
    yield m
    await m.close()


async def place(mem: MemoryRoom, **msg: Any) -> Any:
    room = mem.room
    return await room.submit(lambda: ROOM_METHODS["peer.place"](room, {"roomId": room.id, **msg}))


def worker_of(mem: MemoryRoom, name: str) -> int | None:
    return next(p for p in mem.dump()["peers"] if p["name"] == name)["worker"]


async def test_a_peer_placed_by_host_gets_that_hosts_worker(mem: MemoryRoom) -> None:
    await mem.join("alice")
    assert await place(mem, peerName="alice", host="h1") == {"worker": 2}
    await mem.plain("alice", "send")
    assert worker_of(mem, "alice") == 2
    assert {i for i, _ in mem.services.commands} == {2}  # its transport is there
    await mem.join("bob")
    assert await place(mem, peerName="bob", host="h2", worker=3) == {"worker": 3}
    await mem.join("carol")
    assert await place(mem, peerName="carol", worker=1) == {"worker": 1}
    assert await place(mem, peerName="carol", host="local") == {"worker": 0}  # re-pinned before a transport


async def test_bad_placements_are_refused_and_change_nothing(mem: MemoryRoom) -> None:
    mem.services.host_states = {"h2": "draining", "h9": "lost"}
    await mem.join("dave")
    for msg, code, words in (
        ({}, "bad_request", ("needs 'host'",)),
        ({"host": "nowhere"}, "not_found", ("no host named 'nowhere'", "h1")),
        ({"host": "h2"}, "unavailable", ("draining", "tureen host undrain h2")),
        ({"worker": 3}, "unavailable", ("h2", "draining")),
        ({"host": "h9"}, "unavailable", ("lost",)),
        ({"host": "h1", "worker": 0}, "bad_request", ("worker 0 is on host 'local', not 'h1'",)),
        ({"worker": 99}, "unavailable", ("not running",)),
        ({"host": 7}, "bad_request", ("host",)),
        ({"worker": "1"}, "bad_request", ("worker",)),
    ):
        await mem.refused(place(mem, peerName="dave", **msg), code, *words)
        assert worker_of(mem, "dave") is None, msg
    await mem.refused(place(mem, peerName="nobody", host="h1"), "not_found", "nobody")
    # Once the peer has a transport its worker is fixed, whatever is asked.
    await place(mem, peerName="dave", host="h1")
    await mem.plain("dave", "send")
    await mem.refused(place(mem, peerName="dave", host="local"), "invalid_state", "before its first createTransport")
    assert worker_of(mem, "dave") == 2
