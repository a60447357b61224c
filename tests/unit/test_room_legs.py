"""The pipe policy across hosts (supervisor/pipes.py) on fake workers: a producer crosses to
another host once, over a leg to that host's gateway, and fans out there through pipes from
the gateway; the leg goes with the last consumer of that host; a dead gateway is replaced.

Workers: 0 the supervisor's own (the producer's), 1, 2 and 3 of host "b"."""

from __future__ import annotations

import pytest
from memory_room import MemoryRoom
from tureen.shared import contract as c
from tureen.shared.errors import ProtocolError

pytestmark = pytest.mark.timeout(30)


async def setup(peers: tuple[str, ...] = ("bob", "carol")) -> tuple[MemoryRoom, int, int, dict[str, int]]:
    """alice produces video on worker 0; each of `peers` has a recv transport on worker 1, 2, 3..."""
    mem = MemoryRoom(workers=4)
    mem.services.host_of = {1: "b", 2: "b", 3: "b"}
    for name in ("alice", *peers):
        await mem.join(name)
    mem.services.placement = 0
    send = await mem.webrtc("alice", "send")
    recv = {}
    for i, name in enumerate(peers, start=1):
        mem.services.placement = i
        recv[name] = await mem.webrtc(name, "recv")
    pid = await mem.produce("alice", send, "video")
    return mem, pid, mem.worker_id("alice", "producers", pid), recv


async def enable(mem: MemoryRoom, peer: str, pid: int, recv: dict[str, int]) -> None:
    await mem.request(peer, "enableConsumer", id=mem.consumer_of(peer, pid), transportId=recv[peer], paused=False)


async def test_a_consumer_on_another_host_is_fed_over_a_leg_and_the_host_fans_out_locally() -> None:
    mem, pid, gid, recv = await setup()
    mark = mem.mark()
    await enable(mem, "bob", pid, recv)
    assert mem.sent(mark) == [
        (1, "producer.create"), (0, "leg.address"), (1, "leg.receive"), (0, "leg.send"), (1, "consumer.create"),
    ]  # fmt: skip
    _, address, receive, send, _ = mem.commands(mark)
    assert isinstance(receive, c.LegReceive) and isinstance(send, c.LegSend)
    assert receive.legId == send.legId and receive.key == send.key and len(bytes.fromhex(send.key)) == 28
    origin, gateway = mem.services.workers[0], mem.services.workers[1]
    assert (receive.ip, receive.port) == (origin.ip, origin.leg_port)  # the gateway takes only the origin's
    assert (send.ip, send.port) == (gateway.ip, gateway.leg_port)
    assert origin.producers[gid].legs == {send.legId} and gateway.producers[gid].leg_in == send.legId
    # carol, on another worker of host b: a pipe from the gateway, not a second leg.
    mark = mem.mark()
    await enable(mem, "carol", pid, recv)
    assert mem.sent(mark) == [(2, "producer.create"), (1, "pipe.open"), (2, "consumer.create")]
    assert gateway.producers[gid].pipes == {2} and origin.producers[gid].pipes == set()
    dump = mem.dump()["peers"]
    producer = next(p for p in dump if p["name"] == "alice")["producers"][0]
    assert producer["pipedTo"] == [1, 2] and producer["legs"] == {"1": send.legId}
    # bob goes: worker 1 stays the gateway while it feeds carol's worker.
    mark = mem.mark()
    await mem.notify("bob", "closeTransport", id=recv["bob"])
    assert mem.sent(mark) == [(1, "consumer.close"), (1, "transport.close")]
    # carol goes: her copy, then the gateway with nothing left to feed, then the leg.
    mark = mem.mark()
    await mem.notify("carol", "closeTransport", id=recv["carol"])
    assert mem.sent(mark) == [
        (2, "consumer.close"), (1, "pipe.close"), (2, "producer.close"),
        (0, "leg.close"), (1, "producer.close"), (2, "transport.close"),
    ]  # fmt: skip
    assert origin.producers[gid].legs == set() and gid not in gateway.producers
    await mem.close()
    assert all(w.empty() for w in mem.services.workers.values())


async def test_a_pause_reaches_the_gateways_over_the_host_link() -> None:
    mem, pid, gid, recv = await setup()
    await enable(mem, "bob", pid, recv)
    await enable(mem, "carol", pid, recv)
    mark = mem.mark()
    await mem.notify("alice", "pauseProducer", id=pid)
    assert mem.sent(mark) == [(0, "producer.pause"), (1, "producer.interrupt")]  # the gateway marks its pipes
    mark = mem.mark()
    await mem.notify("alice", "resumeProducer", id=pid)
    assert mem.sent(mark) == [(0, "producer.resume")]
    await mem.close()


async def test_a_leg_the_origin_refuses_undoes_the_gateway() -> None:
    mem, pid, gid, recv = await setup(("bob",))
    mem.services.fail_next(c.LegSend, ProtocolError("unavailable", "no free port"))
    mark = mem.mark()
    await mem.refused(
        mem.request("bob", "enableConsumer", id=mem.consumer_of("bob", pid), transportId=recv["bob"], paused=False),
        "unavailable", "no free port",
    )  # fmt: skip
    assert mem.sent(mark) == [
        (1, "producer.create"), (0, "leg.address"), (1, "leg.receive"), (0, "leg.send"),
        (1, "leg.close"), (1, "producer.close"),
    ]  # fmt: skip
    assert gid not in mem.services.workers[1].producers and mem.services.workers[1].legs == {}
    # Nothing half made: the next try builds it whole.
    await enable(mem, "bob", pid, recv)
    assert mem.services.workers[1].producers[gid].leg_in is not None
    await mem.close()


async def test_a_dead_gateway_is_replaced_by_a_worker_it_fed() -> None:
    mem, pid, gid, recv = await setup(("bob", "carol", "dave"))
    for name in ("bob", "carol", "dave"):
        await enable(mem, name, pid, recv)
    first_leg = next(iter(mem.services.workers[0].producers[gid].legs))
    mark = mem.mark()
    await mem.worker_died(1)
    sent = mem.sent(mark)
    # The leg to the dead gateway closes at the origin; worker 2 becomes the gateway (its
    # copy stays: carol keeps her consumer) and pipes to worker 3.
    assert (0, "leg.close") in sent
    assert sent[sent.index((0, "leg.close")) + 1 :][:4] == [
        (0, "leg.address"), (2, "leg.receive"), (0, "leg.send"), (2, "pipe.open"),
    ]  # fmt: skip
    origin = mem.services.workers[0].producers[gid]
    assert len(origin.legs) == 1 and first_leg not in origin.legs
    assert mem.services.workers[2].producers[gid].leg_in in origin.legs
    assert mem.services.workers[2].producers[gid].pipes == {3}
    producer = next(p for p in mem.dump()["peers"] if p["name"] == "alice")["producers"][0]
    assert producer["pipedTo"] == [2, 3] and list(producer["legs"]) == ["2"]
    await mem.close()
