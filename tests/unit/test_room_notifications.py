"""The Room's protocol notifications in memory (fake workers, memory_room.py): every
client->server notification of docs/control-api.md, what it sends the workers and tells the
peers, and how each is refused (a refusal changes nothing: MemoryRoom.refused)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from fuzz import shapes
from memory_room import Call, MemoryRoom, audio_parameters, methods, new_id, simulcast_parameters
from tureen.shared import contract as c
from tureen.shared.errors import ProtocolError
from tureen.supervisor.room import NOTIFICATIONS

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
async def mem() -> AsyncIterator[MemoryRoom]:
    m = MemoryRoom()
    yield m
    await m.close()
    assert all(w.empty() for w in m.services.workers.values()), "the closed room left objects on a worker"


@pytest.fixture
async def call(mem: MemoryRoom) -> Call:
    return await Call(mem).setup()


def test_every_notification_of_the_control_api_is_tested_here() -> None:
    names = [name for name in globals() if name.startswith("test_")]
    missing = {m for m in NOTIFICATIONS if not any(m.lower() in name for name in names)}
    assert not missing, f"no test named test_<method>_... for {sorted(missing)}"


# ------------------------------------------------------------------ leave


async def test_leave_closes_everything_of_the_peer_and_tells_the_others(mem: MemoryRoom, call: Call) -> None:
    mark = mem.mark()
    await mem.notify("alice", "leave", appData={"bye": 1})
    assert methods(mem.notified(mark)) == [("bob", "peerClosed"), ("carol", "peerClosed")]
    assert mem.notified(mark, "bob") == [
        {"method": "peerClosed", "target": "peer", "notification": True, "name": "alice", "appData": {"bye": 1}}
    ]
    # Its producer went with it (the others close their consumers on peerClosed: no
    # consumerClosed), then its transports.
    assert sorted(mem.sent(mark)) == sorted([(0, "consumer.close"), (0, "producer.close"), (0, "transport.close")])
    assert [p["name"] for p in mem.dump()["peers"]] == ["bob", "carol"]
    assert call.worker.producers == {} and call.worker.consumers == {}
    assert mem.lifecycle(mark) == [{"event": "peer.closed", "roomId": "r1", "peerName": "alice"}]


async def test_leave_of_a_spy_is_not_announced(mem: MemoryRoom) -> None:
    await mem.join("alice")
    await mem.join("eve", spy=True)
    mark = mem.mark()
    await mem.notify("eve", "leave")
    assert mem.notified(mark) == []


async def test_leave_refusals(mem: MemoryRoom) -> None:
    await mem.join("alice")
    await mem.refused(mem.notify("bob", "leave"), "not_found", "peer 'bob'")


# ------------------------------------------------------------------ updateTransport


async def test_updatetransport_sets_the_remote_dtls_once_then_a_second_time_closes_it(mem: MemoryRoom, call: Call) -> None:
    gid = mem.worker_id("bob", "transports", call.recv)
    mark = mem.mark()
    await mem.notify("bob", "updateTransport", id=call.recv, dtlsParameters=shapes.DTLS_PARAMETERS)
    assert mem.commands(mark) == [c.TransportSetRemoteDtls(transportId=gid, dtlsParameters=shapes.DTLS_PARAMETERS)]
    assert call.worker.transports[gid].role == "server"
    assert mem.notified(mark) == []
    # v2: setting them twice fails, and a failed updateTransport closes the transport.
    mark = mem.mark()
    with pytest.raises(ProtocolError) as info:
        await mem.notify("bob", "updateTransport", id=call.recv, dtlsParameters=shapes.DTLS_PARAMETERS)
    assert info.value.code == "invalid_state" and "already set" in info.value.message and "closed" in info.value.message
    assert mem.notified(mark, "bob") == [
        {"method": "transportClosed", "target": "peer", "notification": True, "id": call.recv}
    ]
    assert mem.sent(mark) == [(0, "consumer.close"), (0, "transport.close")]
    assert gid not in call.worker.transports
    # bob's consumer is detached, not closed: enableConsumer on a new transport works.
    recv2 = await mem.webrtc("bob", "recv")
    await mem.request("bob", "enableConsumer", id=call.cid, transportId=recv2, paused=False)


async def test_updatetransport_the_worker_refuses_closes_the_transport(mem: MemoryRoom, call: Call) -> None:
    mark = mem.mark()
    with pytest.raises(ProtocolError) as info:
        await mem.notify("alice", "updateTransport", id=call.send, dtlsParameters={"role": "client", "fingerprints": []})
    assert info.value.code == "unsupported" and "updateTransport failed" in info.value.message
    # Its producer closed with it: bob's consumer too (consumerClosed), carol's unenabled one too.
    assert methods(mem.notified(mark)) == [("bob", "consumerClosed"), ("carol", "consumerClosed"), ("alice", "transportClosed")]
    assert call.worker.producers == {}


async def test_updatetransport_of_a_plain_transport_connects_it(mem: MemoryRoom) -> None:
    await mem.join("alice")
    tid = new_id()
    await mem.request("alice", "createTransport", id=tid, direction="send", plainRtpParameters={"comedia": True})
    gid = mem.worker_id("alice", "transports", tid)
    mark = mem.mark()
    await mem.notify("alice", "updateTransport", id=tid, plainRtpParameters={"ip": "127.0.0.2", "port": 6000})
    assert mem.commands(mark) == [c.TransportConnectPlain(transportId=gid, remoteIp="127.0.0.2", remotePort=6000)]
    assert mem.services.workers[0].transports[gid].remote == ("127.0.0.2", 6000)
    assert mem.dump()["peers"][0]["transports"][0]["remote"] == {"ip": "127.0.0.2", "port": 6000}


async def test_updatetransport_refusals(mem: MemoryRoom, call: Call) -> None:
    tid = new_id()
    await mem.request("alice", "createTransport", id=tid, direction="send", plainRtpParameters={"comedia": True})
    dtls = shapes.DTLS_PARAMETERS
    await mem.refused(mem.notify("alice", "updateTransport", id=new_id(), dtlsParameters=dtls), "not_found", "has no transport")
    await mem.refused(mem.notify("alice", "updateTransport", id=call.recv, dtlsParameters=dtls), "not_found", "peer 'alice'")
    await mem.refused(mem.notify("alice", "updateTransport", id=call.send), "bad_request", "dtlsParameters")
    await mem.refused(mem.notify("alice", "updateTransport", id=call.send, dtlsParameters=[]), "bad_request", "dtlsParameters")
    await mem.refused(mem.notify("alice", "updateTransport", id=tid), "bad_request", "plainRtpParameters")
    await mem.refused(mem.notify("alice", "updateTransport", id=tid, plainRtpParameters={}), "bad_request", "ip and port")
    await mem.refused(
        mem.notify("alice", "updateTransport", id=tid, plainRtpParameters={"ip": "x", "port": 1}), "bad_request", "not an IP"
    )


# ------------------------------------------------------------------ closeTransport


async def test_closetransport_closes_its_producers_and_tells_their_consumers(mem: MemoryRoom, call: Call) -> None:
    mark = mem.mark()
    await mem.notify("alice", "closeTransport", id=call.send, appData=None)
    assert methods(mem.notified(mark)) == [("bob", "consumerClosed"), ("carol", "consumerClosed")]
    assert mem.notified(mark, "bob") == [
        {"method": "consumerClosed", "target": "peer", "notification": True, "id": call.cid, "peerName": "alice"}
    ]
    assert mem.sent(mark) == [(0, "consumer.close"), (0, "producer.close"), (0, "transport.close")]
    assert mem.dump()["peers"][0]["transports"] == [] and call.worker.producers == {}


async def test_closetransport_of_a_receiving_transport_detaches_its_consumers(mem: MemoryRoom, call: Call) -> None:
    mark = mem.mark()
    await mem.notify("bob", "closeTransport", id=call.recv)
    assert mem.notified(mark) == []
    assert mem.sent(mark) == [(0, "consumer.close"), (0, "transport.close")]
    (consumer,) = [p for p in mem.dump()["peers"] if p["name"] == "bob"][0]["consumers"]
    assert consumer["enabled"] is False and consumer["transportId"] is None


async def test_closetransport_refusals(mem: MemoryRoom, call: Call) -> None:
    await mem.refused(mem.notify("alice", "closeTransport", id=call.recv), "not_found", "peer 'alice' has no transport")
    await mem.refused(mem.notify("alice", "closeTransport", id=None), "bad_request", "id")
    await mem.refused(mem.notify("alice", "closeTransport", id=-1), "bad_request", "id")


# ------------------------------------------------------------------ stats switches


async def next_notification(mem: MemoryRoom, mark: tuple[int, int], peer: str, method: str) -> dict[str, Any]:
    for _ in range(200):  # bounded: 2 s
        found = [n for n in mem.notified(mark, peer) if n["method"] == method]
        if found:
            return found[0]
        await asyncio.sleep(0.01)
    raise AssertionError(f"no {method} for {peer}")


async def test_enabletransportstats_reports_at_once_and_disabletransportstats_stops(mem: MemoryRoom, call: Call) -> None:
    gid = mem.worker_id("alice", "transports", call.send)
    mark = mem.mark()
    await mem.notify("alice", "enableTransportStats", id=call.send, interval=1000)
    note = await next_notification(mem, mark, "alice", "transportStats")
    assert note["id"] == call.send and note["stats"][0]["type"] == "transport"
    assert c.StatsGet(transportIds=[gid]) in mem.commands(mark)
    assert mem.dump()["peers"][0]["transports"][0]["statsInterval"] == 1000
    await mem.notify("alice", "enableTransportStats", id=call.send, interval=5000)  # v2: a no-op
    assert mem.dump()["peers"][0]["transports"][0]["statsInterval"] == 1000
    await mem.notify("alice", "disableTransportStats", id=call.send)
    assert mem.dump()["peers"][0]["transports"][0]["statsInterval"] is None


async def test_enabletransportstats_of_a_plain_transport_does_nothing(mem: MemoryRoom) -> None:
    await mem.join("alice")
    tid = await mem.plain("alice", "send")
    mark = mem.mark()
    await mem.notify("alice", "enableTransportStats", id=tid)
    assert mem.dump()["peers"][0]["transports"][0]["statsInterval"] is None and mem.sent(mark) == []


async def test_disabletransportstats_and_the_other_switches_refuse_unknown_ids(mem: MemoryRoom, call: Call) -> None:
    for method, oid in (
        ("enableTransportStats", call.recv), ("disableTransportStats", call.recv),
        ("enableProducerStats", new_id()), ("disableProducerStats", new_id()),
        ("enableConsumerStats", call.cid), ("disableConsumerStats", call.cid),  # bob's, not alice's
    ):  # fmt: skip
        await mem.refused(mem.notify("alice", method, id=oid), "not_found", "peer 'alice' has no")
    await mem.refused(mem.notify("alice", "enableTransportStats", id=call.send, interval="1s"), "bad_request", "interval")
    await mem.refused(mem.notify("alice", "enableProducerStats", id=call.pid, interval=2**31), "bad_request", "interval")


async def test_enableproducerstats_reports_the_streams_and_disableproducerstats_stops(mem: MemoryRoom, call: Call) -> None:
    mark = mem.mark()
    await mem.notify("alice", "enableProducerStats", id=call.pid)
    note = await next_notification(mem, mark, "alice", "producerStats")
    # The fake worker's stream has received no packet: v2 lists no stream before its first.
    assert note["id"] == call.pid and note["stats"] == []
    assert c.StatsGet(producerIds=[call.gid]) in mem.commands(mark)
    await mem.notify("alice", "disableProducerStats", id=call.pid)
    assert mem.dump()["peers"][0]["producers"][0]["statsInterval"] is None


async def test_enableconsumerstats_reports_and_disableconsumerstats_stops(mem: MemoryRoom, call: Call) -> None:
    mark = mem.mark()
    await mem.notify("bob", "enableConsumerStats", id=call.cid, interval=1500)
    note = await next_notification(mem, mark, "bob", "consumerStats")
    assert note["id"] == call.cid and note["peerName"] == "alice"
    assert {x["type"] for x in note["stats"]} >= {"outbound-rtp"}
    await mem.notify("bob", "disableConsumerStats", id=call.cid)
    bob = [p for p in mem.dump()["peers"] if p["name"] == "bob"][0]
    assert bob["consumers"][0]["statsInterval"] is None


# ------------------------------------------------------------------ updateProducer


async def test_updateproducer_sends_the_new_streams_to_the_worker(mem: MemoryRoom, call: Call) -> None:
    mark = mem.mark()
    await mem.notify("alice", "updateProducer", id=call.pid, rtpParameters=simulcast_parameters(7000))
    (command,) = mem.commands(mark)
    assert isinstance(command, c.ProducerUpdate) and command.producerId == call.gid and command.paused is False
    assert [s.ssrc for s in command.streams] == [7000, 7002, 7004]
    assert call.worker.producers[call.gid].streams[0] == (7000, 7001, "low")
    assert mem.notified(mark) == []


async def test_updateproducer_refusals(mem: MemoryRoom, call: Call) -> None:
    audio = await mem.produce("alice", call.send, "audio")
    bobs = await mem.produce("bob", call.bob_send, "audio")
    taken = audio_parameters(10_000 + 10 * audio)  # the audio producer's SSRC
    await mem.refused(mem.notify("alice", "updateProducer", id=bobs, rtpParameters=taken), "not_found", "peer 'alice' has no producer")
    await mem.refused(mem.notify("alice", "updateProducer", id=call.pid), "bad_request", "rtpParameters")
    await mem.refused(mem.notify("alice", "updateProducer", id=call.pid, rtpParameters=taken), "bad_request")  # audio for video
    video_taken = simulcast_parameters(10_000 + 10 * call.pid)
    await mem.refused(mem.notify("alice", "updateProducer", id=audio, rtpParameters=audio_parameters(10_000 + 10 * call.pid)), "bad_request", "SSRC")
    mem.services.fail_next(c.ProducerUpdate, ProtocolError("duplicate", "ssrc 1 is already received on transport 3"))
    await mem.refused(mem.notify("alice", "updateProducer", id=call.pid, rtpParameters=video_taken), "duplicate", "already received")


# ------------------------------------------------------------------ pauseProducer / resumeProducer


async def test_pauseproducer_and_resumeproducer_tell_the_enabled_consumers(mem: MemoryRoom, call: Call) -> None:
    mark = mem.mark()
    await mem.notify("alice", "pauseProducer", id=call.pid, appData=None)
    assert mem.commands(mark) == [c.ProducerPause(producerId=call.gid)]
    assert call.worker.producers[call.gid].paused is True
    # bob's consumer is enabled; carol's is not: only bob hears it.
    assert mem.notified(mark) == [
        {"to": "bob", "method": "consumerPaused", "target": "peer", "notification": True, "id": call.cid, "peerName": "alice"}
    ]
    mark = mem.mark()
    await mem.notify("alice", "pauseProducer", id=call.pid)  # already paused: nothing
    assert mem.sent(mark) == [] and mem.notified(mark) == []
    await mem.notify("alice", "resumeProducer", id=call.pid)
    assert mem.commands(mark) == [c.ProducerResume(producerId=call.gid)]
    assert methods(mem.notified(mark)) == [("bob", "consumerResumed")]
    assert call.worker.producers[call.gid].paused is False


async def test_pauseproducer_does_not_tell_a_consumer_the_app_paused(mem: MemoryRoom, call: Call) -> None:
    await mem.action("consumer.pause", peerName="bob", consumerId=call.cid)
    mark = mem.mark()
    await mem.notify("alice", "pauseProducer", id=call.pid)
    assert mem.notified(mark) == []


async def test_resumeproducer_and_pauseproducer_refusals(mem: MemoryRoom, call: Call) -> None:
    for method in ("pauseProducer", "resumeProducer", "closeProducer"):
        await mem.refused(mem.notify("bob", method, id=call.pid), "not_found", "peer 'bob' has no producer")
        await mem.refused(mem.notify("alice", method, id=[call.pid]), "bad_request", "id")
    mem.services.fail_next(c.ProducerPause, ProtocolError("not_found", "producer 9 not found on worker 0"))
    await mem.refused(mem.notify("alice", "pauseProducer", id=call.pid), "not_found", "not found on worker")


# ------------------------------------------------------------------ closeProducer


async def test_closeproducer_closes_its_consumers_and_tells_their_peers(mem: MemoryRoom, call: Call) -> None:
    mark = mem.mark()
    await mem.notify("alice", "closeProducer", id=call.pid)
    assert methods(mem.notified(mark)) == [("bob", "consumerClosed"), ("carol", "consumerClosed")]
    assert mem.sent(mark) == [(0, "consumer.close"), (0, "producer.close")]
    assert call.worker.producers == {} and call.worker.consumers == {}
    assert all(p["consumers"] == [] for p in mem.dump()["peers"])


# ------------------------------------------------------------------ consumers


async def test_pauseconsumer_and_resumeconsumer_tell_the_worker_once(mem: MemoryRoom, call: Call) -> None:
    mark = mem.mark()
    await mem.notify("bob", "pauseConsumer", id=call.cid)
    await mem.notify("bob", "pauseConsumer", id=call.cid)  # already: nothing more
    assert mem.commands(mark) == [c.ConsumerPause(consumerId=call.cgid)]
    assert call.worker.consumers[call.cgid].paused is True
    await mem.notify("bob", "resumeConsumer", id=call.cid)
    assert mem.commands(mark)[1:] == [c.ConsumerResume(consumerId=call.cgid)]
    assert call.worker.consumers[call.cgid].paused is False
    assert mem.notified(mark) == []


async def test_resumeconsumer_of_a_consumer_the_app_paused_keeps_it_paused_on_the_worker(mem: MemoryRoom, call: Call) -> None:
    await mem.action("consumer.pause", peerName="bob", consumerId=call.cid)
    await mem.notify("bob", "pauseConsumer", id=call.cid)
    mark = mem.mark()
    await mem.notify("bob", "resumeConsumer", id=call.cid)
    assert mem.sent(mark) == [] and call.worker.consumers[call.cgid].paused is True


async def test_pauseconsumer_before_enable_is_remembered(mem: MemoryRoom, call: Call) -> None:
    mark = mem.mark()
    await mem.notify("carol", "pauseConsumer", id=call.carol_cid)
    assert mem.sent(mark) == []  # not on a worker yet
    recv = await mem.webrtc("carol", "recv")
    answer = await mem.request("carol", "enableConsumer", id=call.carol_cid, transportId=recv, paused=False)
    assert answer["paused"] is False  # the enable's own `paused` wins, as in v2


async def test_setconsumerpreferredprofile_tells_the_worker_when_it_changes(mem: MemoryRoom, call: Call) -> None:
    mark = mem.mark()
    await mem.notify("bob", "setConsumerPreferredProfile", id=call.cid, profile="low")
    await mem.notify("bob", "setConsumerPreferredProfile", id=call.cid, profile="low")
    assert mem.commands(mark) == [c.ConsumerSetPreferredProfile(consumerId=call.cgid, profile="low")]
    assert call.worker.consumers[call.cgid].profile == "low"
    # Not enabled yet: remembered for enableConsumer.
    await mem.notify("carol", "setConsumerPreferredProfile", id=call.carol_cid, profile="medium")
    assert len(mem.commands(mark)) == 1


async def test_resumeconsumer_pauseconsumer_setconsumerpreferredprofile_refusals(mem: MemoryRoom, call: Call) -> None:
    for method in ("pauseConsumer", "resumeConsumer"):
        await mem.refused(mem.notify("alice", method, id=call.cid), "not_found", "peer 'alice' has no consumer")
        await mem.refused(mem.notify("bob", method, id="x"), "bad_request", "id")
    await mem.refused(
        mem.notify("alice", "setConsumerPreferredProfile", id=call.cid, profile="low"), "not_found", "has no consumer"
    )
    await mem.refused(mem.notify("bob", "setConsumerPreferredProfile", id=call.cid, profile="ultra"), "bad_request", "profile")
    await mem.refused(mem.notify("bob", "setConsumerPreferredProfile", id=call.cid), "bad_request", "profile")
    mem.services.fail_next(c.ConsumerPause, ProtocolError("not_found", "consumer 5 not found on worker 0"))
    await mem.refused(mem.notify("bob", "pauseConsumer", id=call.cid), "not_found", "not found on worker")
