"""The Room's protocol requests in memory (fake workers, memory_room.py): queryRoom, join,
createTransport, restartTransport, createProducer, enableConsumer; what each answers, what it
sends the workers and tells the peers, and every way each is refused (a refusal changes
nothing: MemoryRoom.refused)."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from typing import Any

import pytest
from fuzz import shapes
from memory_room import MemoryRoom, audio_parameters, new_id, simulcast_parameters, video_parameters
from tureen.shared import contract as c
from tureen.shared.errors import ProtocolError
from tureen.supervisor.quotas import Quotas

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
async def mem() -> AsyncIterator[MemoryRoom]:
    m = MemoryRoom()
    yield m
    await m.close()
    assert all(w.empty() for w in m.services.workers.values()), "the closed room left objects on a worker"


# ------------------------------------------------------------------ the envelope


async def test_a_message_that_is_not_an_object_or_names_no_known_method_is_refused(mem: MemoryRoom) -> None:
    await mem.join("alice")
    await mem.refused(mem.raw("alice", ["join"], notification=False), "bad_request", "JSON object")
    await mem.refused(mem.raw("alice", {"target": "peer"}, notification=False), "bad_request", "method")
    await mem.refused(mem.raw("alice", {"method": 7}, notification=True), "bad_request", "method")
    await mem.refused(mem.request("alice", "teleport"), "unknown_method", "teleport")


async def test_a_request_sent_as_notification_and_the_reverse_are_refused(mem: MemoryRoom) -> None:
    await mem.join("alice")
    await mem.refused(mem.notify(None, "queryRoom"), "bad_request", "queryRoom is a request", "room.request")
    await mem.refused(mem.request("alice", "leave"), "bad_request", "leave is a notification", "room.notify")


async def test_the_wrong_target_is_refused(mem: MemoryRoom) -> None:
    await mem.join("alice")
    bad = {"method": "queryRoom", "target": "peer"}
    await mem.refused(mem.raw(None, bad, notification=False), "bad_request", "target 'room'")
    bad = {"method": "leave", "target": "room", "notification": True}
    await mem.refused(mem.raw("alice", bad, notification=True), "bad_request", "target 'peer'")


async def test_peer_messages_need_a_known_sender(mem: MemoryRoom) -> None:
    await mem.join("alice")
    await mem.refused(mem.notify(None, "leave"), "bad_request", "give the peerName")
    await mem.refused(mem.notify("", "leave"), "bad_request", "give the peerName")
    await mem.refused(mem.notify(7, "leave"), "bad_request", "give the peerName")
    await mem.refused(mem.notify("mallory", "leave"), "not_found", "peer 'mallory' not found")


async def test_a_closed_room_refuses_everything(mem: MemoryRoom) -> None:
    await mem.join("alice")
    await mem.close()
    with pytest.raises(ProtocolError) as info:
        await mem.request(None, "queryRoom")
    assert info.value.code == "not_found" and "closed" in info.value.message
    with pytest.raises(ProtocolError) as info:
        await mem.action("peer.close", peerName="alice")
    assert info.value.code == "not_found"


# ------------------------------------------------------------------ queryRoom, join


async def test_query_room_answers_the_room_capabilities_from_anyone(mem: MemoryRoom) -> None:
    mark = mem.mark()
    answer = await mem.request(None, "queryRoom")
    assert answer == {"rtpCapabilities": mem.room.rtp_capabilities, "mandatoryCodecPayloadTypes": []}
    assert [x["mimeType"] for x in answer["rtpCapabilities"]["codecs"]] == [
        "audio/opus", "video/VP8", "video/rtx", "video/H264", "video/rtx",
    ]  # fmt: skip
    assert mem.sent(mark) == [] and mem.notified(mark) == []


async def test_join_answers_earlier_peers_with_consumers_and_announces_the_newcomer(mem: MemoryRoom) -> None:
    await mem.join("alice", app_data={"role": "host"})
    send = await mem.webrtc("alice", "send")
    pid = await mem.produce("alice", send, "audio", appData={"src": "mic"})
    await mem.join("spy", spy=True)
    mark = mem.mark()
    answer = await mem.join("bob", app_data={"b": 1})
    # Only alice (the spy is invisible), with bob's consumer of her producer, not yet enabled.
    (alice,) = answer["peers"]
    assert alice["name"] == "alice" and alice["appData"] == {"role": "host"}
    (consumer,) = alice["consumers"]
    assert consumer["id"] == mem.consumer_of("bob", pid)
    assert consumer["peerName"] == "alice" and consumer["kind"] == "audio" and consumer["appData"] == {"src": "mic"}
    assert consumer["paused"] is False and consumer["preferredProfile"] == "default"
    assert 10_000_000 <= consumer["id"] <= 99_999_999
    assert consumer["rtpParameters"]["encodings"][0]["ssrc"] != audio_parameters(0)["encodings"][0]["ssrc"]
    # A consumer is enabled later: nothing reached a worker.
    assert mem.sent(mark) == []
    assert mem.notified(mark) == [
        {"to": "alice", "method": "newPeer", "target": "peer", "notification": True, "name": "bob", "appData": {"b": 1}, "consumers": []},
        {"to": "spy", "method": "newPeer", "target": "peer", "notification": True, "name": "bob", "appData": {"b": 1}, "consumers": []},
    ]  # fmt: skip
    assert mem.lifecycle(mark) == [
        {"event": "peer.joined", "roomId": "r1", "peerName": "bob", "spy": False, "appData": {"b": 1}}
    ]


async def test_a_spy_joins_unannounced(mem: MemoryRoom) -> None:
    await mem.join("alice")
    mark = mem.mark()
    await mem.join("eve", spy=True)
    assert mem.notified(mark) == []
    assert (await mem.join("bob"))["peers"] == [{"name": "alice", "consumers": []}]  # no appData: absent


async def test_join_refusals(mem: MemoryRoom) -> None:
    await mem.join("alice")
    await mem.refused(mem.join(""), "bad_request", "must not be empty")
    await mem.refused(mem.request(None, "join", rtpCapabilities=shapes.JOIN_CAPS), "bad_request", "peerName")
    await mem.refused(mem.request(None, "join", peerName=5, rtpCapabilities=shapes.JOIN_CAPS), "bad_request", "peerName")
    await mem.refused(mem.join("x" * 257), "bad_request", "peerName")
    await mem.refused(mem.join("alice"), "duplicate", "duplicated Peer", "alice")
    await mem.refused(mem.request(None, "join", peerName="bob"), "bad_request", "rtpCapabilities")
    await mem.refused(mem.join("bob", caps={"codecs": "x"}), "bad_request")
    await mem.refused(
        mem.request(None, "join", peerName="bob", rtpCapabilities=shapes.JOIN_CAPS, spy="yes"), "bad_request", "spy"
    )
    # The envelope's sender and the join's peerName must agree.
    await mem.refused(
        mem.request("alice", "join", peerName="mallory", rtpCapabilities=shapes.JOIN_CAPS),
        "bad_request", "'mallory' sent as peer 'alice'",
    )  # fmt: skip


async def test_join_payload_types_the_room_does_not_have_are_refused(mem: MemoryRoom) -> None:
    caps = copy.deepcopy(shapes.JOIN_CAPS)
    caps["codecs"] = [{"kind": "video", "name": "VP9", "mimeType": "video/VP9", "clockRate": 90000, "preferredPayloadType": 300}]
    await mem.refused(mem.join("carol", caps=caps), "bad_request")


async def test_join_quotas_say_limit() -> None:
    small = MemoryRoom(quotas=Quotas(peers_per_room=2, consumers_per_peer=1))
    try:
        await small.join("alice")
        send = await small.webrtc("alice", "send")
        await small.produce("alice", send)
        await small.join("bob")
        await small.refused(small.join("carol"), "limit", "2 peers", "max_peers_per_room")
        # Two producers would give a newcomer two consumers: more than consumers_per_peer.
        small2 = MemoryRoom(quotas=Quotas(consumers_per_peer=1))
        await small2.join("alice")
        send = await small2.webrtc("alice", "send")
        await small2.produce("alice", send)
        await small2.produce("alice", send)
        await small2.refused(small2.join("bob"), "limit", "max_consumers_per_peer")
        await small2.close()
    finally:
        await small.close()


# ------------------------------------------------------------------ createTransport


async def test_create_webrtc_transport_answers_the_workers_parameters(mem: MemoryRoom) -> None:
    await mem.join("alice")
    mark = mem.mark()
    tid = new_id()
    answer = await mem.request(
        "alice", "createTransport", id=tid, direction="recv",
        options={"udp": True, "tcp": False, "preferUdp": True}, appData={"t": 1},
    )  # fmt: skip
    (command,) = mem.commands(mark)
    assert isinstance(command, c.TransportCreateWebRtc)
    assert command.options() == {"udp": True, "tcp": False, "preferIPv4": False, "preferIPv6": False, "preferUdp": True, "preferTcp": False}
    assert (command.room, command.peer, command.clientId) == ("r1", "alice", tid)
    fake = mem.services.workers[0].transports[command.transportId]
    assert answer["iceParameters"] == {"usernameFragment": fake.ufrag, "password": fake.password, "iceLite": True}
    assert [x["protocol"] for x in answer["iceCandidates"]] == ["udp"]
    assert answer["dtlsParameters"]["role"] == "auto"
    (entry,) = mem.dump()["peers"][0]["transports"]
    assert entry == {
        "id": tid, "workerId": command.transportId, "worker": 0, "type": "WebRtcTransport", "direction": "recv",
        "iceState": "new", "dtlsState": "new", "remote": None, "local": None, "statsInterval": None,
        "appData": {"t": 1},
    }  # fmt: skip
    assert mem.notified(mark) == []


async def test_create_webrtc_transport_with_dtls_parameters_applies_them_first(mem: MemoryRoom) -> None:
    await mem.join("alice")
    mark = mem.mark()
    tid = await mem.webrtc("alice", "send", dtls=True)
    assert mem.sent(mark) == [(0, "transport.createWebRtc"), (0, "transport.setRemoteDtls")]
    gid = mem.worker_id("alice", "transports", tid)
    assert mem.services.workers[0].transports[gid].role == "server"  # the client said client
    # Set once: updateTransport with DTLS again closes it (v2), tested with updateTransport.


async def test_create_webrtc_transport_with_bad_dtls_parameters_leaves_nothing_on_the_worker(mem: MemoryRoom) -> None:
    await mem.join("alice")
    await mem.webrtc("alice", "recv")  # placed (see test_a_failed_first_create_transport_leaves_the_peer_unplaced)
    for dtls, code in (
        ({"role": "client", "fingerprints": [{"algorithm": "md5", "value": "AB"}]}, "unsupported"),
        ({"role": "boss", "fingerprints": shapes.DTLS_PARAMETERS["fingerprints"]}, "bad_request"),
        ({"role": "client"}, "bad_request"),
        ({"role": "client", "fingerprints": ["x"]}, "bad_request"),
    ):
        mark = mem.mark()
        await mem.refused(
            mem.request("alice", "createTransport", id=new_id(), direction="send", options={}, dtlsParameters=dtls), code
        )
        assert mem.sent(mark) == [(0, "transport.createWebRtc"), (0, "transport.setRemoteDtls"), (0, "transport.close")]


async def test_create_plain_transport(mem: MemoryRoom) -> None:
    await mem.join("alice")
    mark = mem.mark()
    tid = new_id()
    answer = await mem.request(
        "alice", "createTransport", id=tid, direction="send", plainRtpParameters={"ip": "127.0.0.1", "port": 5004}
    )
    (command,) = mem.commands(mark)
    assert isinstance(command, c.TransportCreatePlain)
    assert (command.remoteIp, command.remotePort, command.comedia) == ("127.0.0.1", 5004, False)
    port = mem.services.workers[0].transports[command.transportId].port
    assert answer == {"plainRtpParameters": {"ip": "127.0.0.1", "port": port}}
    (entry,) = mem.dump()["peers"][0]["transports"]
    assert entry["type"] == "PlainRtpTransport"
    assert entry["remote"] == {"ip": "127.0.0.1", "port": 5004} and entry["local"] == {"ip": "127.0.0.1", "port": port}
    # comedia: no remote yet, the worker latches it.
    mark = mem.mark()
    await mem.request("alice", "createTransport", id=new_id(), direction="send", plainRtpParameters={"comedia": True})
    (command,) = mem.commands(mark)
    assert isinstance(command, c.TransportCreatePlain) and command.comedia and command.remoteIp is None


async def test_create_transport_refusals(mem: MemoryRoom) -> None:
    await mem.join("alice")
    await mem.join("bob")
    tid = await mem.webrtc("alice", "send")

    def create(peer: str = "alice", **data: Any) -> Any:
        return mem.request(peer, "createTransport", **{"id": new_id(), "direction": "send", "options": {}, **data})

    await mem.refused(create(id=tid), "duplicate", f"id {tid} is already used")
    await mem.refused(create("bob", id=tid), "duplicate", "already used in room")  # ids are room-wide
    await mem.refused(create(id="7"), "bad_request", "id")
    await mem.refused(create(id=True), "bad_request", "id")
    await mem.refused(create(id=-1), "bad_request", "id")
    await mem.refused(create(direction="both"), "bad_request", "direction")
    await mem.refused(create(direction=None), "bad_request", "direction")
    await mem.refused(create(options=[]), "bad_request", "options")
    await mem.refused(create(options={"udp": "yes"}), "bad_request", "udp")
    await mem.refused(create(options={"udp": False, "tcp": False}), "bad_request", "at least one of udp and tcp")
    await mem.refused(create(dtlsParameters="x"), "bad_request", "dtlsParameters")
    await mem.refused(create(plainRtpParameters={"ip": "127.0.0.1"}), "bad_request", "both ip and port")
    await mem.refused(create(plainRtpParameters={"port": 5004}), "bad_request", "both ip and port")
    await mem.refused(create(plainRtpParameters={}), "bad_request", "ip and port (or comedia")
    await mem.refused(create(plainRtpParameters={"ip": "localhost", "port": 5004}), "bad_request", "not an IP address")
    await mem.refused(create(plainRtpParameters={"ip": "127.0.0.1", "port": 0}), "bad_request", "port")
    await mem.refused(create(plainRtpParameters={"ip": "127.0.0.1", "port": 70000}), "bad_request", "port")
    # The contract takes IPv4 only: the command is refused before it reaches a worker.
    mark = mem.mark()
    await mem.refused(create(plainRtpParameters={"ip": "::1", "port": 5004}), "bad_request", "IPv4")
    assert mem.sent(mark) == []


async def test_create_transport_quota_says_limit() -> None:
    mem = MemoryRoom(quotas=Quotas(transports_per_peer=2))
    await mem.join("alice")
    await mem.webrtc("alice", "send")
    await mem.webrtc("alice", "recv")
    await mem.refused(
        mem.request("alice", "createTransport", id=new_id(), direction="send", options={}),
        "limit", "2 transports", "max_transports_per_peer",
    )  # fmt: skip
    await mem.close()


async def test_create_transport_waits_for_a_worker_then_says_unavailable(mem: MemoryRoom) -> None:
    await mem.join("alice")
    mem.services.no_worker = True
    mark = mem.mark()
    await mem.refused(
        mem.request("alice", "createTransport", id=new_id(), direction="send", options={}),
        "unavailable", "no worker is running", "retry",
    )  # fmt: skip
    assert mem.sent(mark) == []


async def test_create_transport_is_placed_again_when_its_worker_dies_under_it() -> None:
    mem = MemoryRoom(workers=2)
    await mem.join("alice")
    first = await mem.webrtc("alice", "send")  # on worker 0: alice's worker
    original = mem.services.worker_request
    tried: list[int] = []

    async def dying(index: int, command: c.Command) -> Any:
        tried.append(index)
        if index == 0 and isinstance(command, c.TransportCreateWebRtc):
            mem.services.kill(0)  # the worker dies under the request
            raise ProtocolError("unavailable", "worker 0 died")
        return await original(index, command)

    mem.services.worker_request = dying  # type: ignore[method-assign]
    mark = mem.mark()
    tid = await mem.webrtc("alice", "recv")
    assert tried == [0, 1] and mem.sent(mark) == [(1, "transport.createWebRtc")]
    (alice,) = mem.dump()["peers"]
    assert alice["worker"] == 1 and [(t["id"], t["worker"]) for t in alice["transports"]] == [(first, 0), (tid, 1)]
    await mem.close()


async def test_an_unavailable_worker_that_is_still_alive_fails_the_request(mem: MemoryRoom) -> None:
    await mem.join("alice")
    await mem.webrtc("alice", "send")
    mem.services.fail_next(c.TransportCreateWebRtc, ProtocolError("unavailable", "no free port in rtc_min_port..rtc_max_port"))
    mark = mem.mark()
    await mem.refused(mem.webrtc("alice", "recv"), "unavailable", "no free port")
    assert mem.sent(mark) == [(0, "transport.createWebRtc")]  # not placed again: the worker is up


async def test_a_failed_first_create_transport_leaves_the_peer_unplaced(mem: MemoryRoom) -> None:
    await mem.join("alice")
    mem.services.fail_next(c.TransportCreateWebRtc, ProtocolError("unavailable", "no free port"))
    await mem.refused(mem.webrtc("alice", "recv"), "unavailable", "no free port")


# ------------------------------------------------------------------ restartTransport


async def test_restart_transport_answers_new_ice_parameters(mem: MemoryRoom) -> None:
    await mem.join("alice")
    tid = await mem.webrtc("alice", "send")
    gid = mem.worker_id("alice", "transports", tid)
    before = mem.services.workers[0].transports[gid].ufrag
    mark = mem.mark()
    answer = await mem.request("alice", "restartTransport", id=tid)
    assert mem.commands(mark) == [c.TransportRestartIce(transportId=gid)]
    fake = mem.services.workers[0].transports[gid]
    assert fake.ufrag != before
    assert answer == {"iceParameters": {"usernameFragment": fake.ufrag, "password": fake.password, "iceLite": True}}


async def test_restart_transport_refusals(mem: MemoryRoom) -> None:
    await mem.join("alice")
    await mem.join("bob")
    plain = await mem.plain("alice", "send")
    bobs = await mem.webrtc("bob", "recv")
    await mem.refused(mem.request("alice", "restartTransport", id=new_id()), "not_found", "has no transport")
    await mem.refused(mem.request("alice", "restartTransport", id=bobs), "not_found", "peer 'alice' has no transport")
    await mem.refused(mem.request("alice", "restartTransport", id="1"), "bad_request", "id")
    await mem.refused(mem.request("alice", "restartTransport"), "bad_request", "id")
    await mem.refused(mem.request("alice", "restartTransport", id=plain), "invalid_state", "PlainRtpTransport")


# ------------------------------------------------------------------ createProducer


async def test_create_producer_makes_it_on_the_worker_and_a_consumer_for_every_other_peer(mem: MemoryRoom) -> None:
    await mem.join("alice")
    await mem.join("bob")
    await mem.join("eve", spy=True)
    send = await mem.webrtc("alice", "send")
    mark = mem.mark()
    pid = await mem.produce("alice", send, "video", appData={"cam": 1})
    (command,) = mem.commands(mark)
    assert isinstance(command, c.ProducerCreate)
    assert command.kind == "video" and command.transportId == mem.worker_id("alice", "transports", send)
    assert command.payloadTypes == [(96, 101), (97, 102)]  # the client's VP8 and RTX PTs -> the room's
    assert command.streams == [c.StreamSpec(ssrc=10_000 + 10 * pid, rtxSsrc=10_000 + 10 * pid + 1, profile="default")]
    assert [x.mimeType for x in command.codecs] == ["video/VP8"]
    assert command.codecs[0].rtxPayloadType == 102
    assert (command.room, command.peer, command.clientId) == ("r1", "alice", pid)
    fake = mem.services.workers[0].producers[command.producerId]
    assert fake.paused is False and fake.transport == command.transportId
    news = mem.notified(mark)
    assert [(n["to"], n["method"]) for n in news] == [("bob", "newConsumer"), ("eve", "newConsumer")]
    for note in news:
        assert note["id"] == mem.consumer_of(note["to"], pid)
        assert note["kind"] == "video" and note["peerName"] == "alice" and note["appData"] == {"cam": 1}
        assert [x["mimeType"] for x in note["rtpParameters"]["codecs"]] == ["video/VP8", "video/rtx"]


async def test_create_producer_paused_tells_the_worker(mem: MemoryRoom) -> None:
    await mem.join("alice")
    send = await mem.webrtc("alice", "send")
    pid = await mem.produce("alice", send, paused=True)
    assert mem.services.workers[0].producers[mem.worker_id("alice", "producers", pid)].paused is True


async def test_create_producer_refusals(mem: MemoryRoom) -> None:
    await mem.join("alice")
    await mem.join("bob")
    await mem.join("eve", spy=True)
    send = await mem.webrtc("alice", "send")
    recv = await mem.webrtc("alice", "recv")
    bobs = await mem.webrtc("bob", "send")
    eves = await mem.webrtc("eve", "send")
    pid = await mem.produce("alice", send)

    def produce(peer: str = "alice", **data: Any) -> Any:
        message = {"id": new_id(), "kind": "audio", "transportId": send, "rtpParameters": audio_parameters(new_id()), "paused": False, **data}
        return mem.request(peer, "createProducer", **message)

    await mem.refused(produce(id=pid), "duplicate", "duplicated Producer")
    await mem.refused(produce(id=None), "bad_request", "id")
    await mem.refused(produce(kind="data"), "unsupported", "invalid Producer kind")
    await mem.refused(produce(kind=None), "bad_request", "kind")
    await mem.refused(produce("eve", transportId=eves), "invalid_state", "spy")
    await mem.refused(produce(transportId=new_id()), "not_found", "has no transport")
    await mem.refused(produce(transportId=bobs), "not_found", "peer 'alice' has no transport")
    await mem.refused(produce(transportId=recv), "invalid_state", "recv transport")
    await mem.refused(produce(rtpParameters=None), "bad_request", "rtpParameters")
    await mem.refused(produce(paused="no"), "bad_request", "paused")
    # Bad rtpParameters: no encodings, a codec the room lacks, a kind mismatch, a taken SSRC.
    no_encodings = {**audio_parameters(1), "encodings": []}
    await mem.refused(produce(rtpParameters=no_encodings), "bad_request")
    foreign = audio_parameters(new_id())
    foreign["codecs"][0] |= {"name": "G722", "mimeType": "audio/G722", "clockRate": 8000}
    await mem.refused(produce(rtpParameters=foreign), "unsupported")
    await mem.refused(produce(kind="video"), "bad_request", "does not fit a video codec")
    taken = audio_parameters(10_000 + 10 * pid)
    await mem.refused(produce(rtpParameters=taken), "bad_request", "SSRC", "already used")
    bad_ssrc = audio_parameters(1 << 32)
    await mem.refused(produce(rtpParameters=bad_ssrc), "bad_request", "ssrc")


async def test_create_producer_quotas_say_limit() -> None:
    mem = MemoryRoom(quotas=Quotas(producers_per_peer=1, consumers_per_peer=1))
    await mem.join("alice")
    await mem.join("bob")
    send = await mem.webrtc("alice", "send")
    bobs = await mem.webrtc("bob", "send")
    await mem.produce("bob", bobs)  # alice now receives one consumer: her most
    await mem.produce("alice", send)
    await mem.refused(mem.produce("alice", send), "limit", "1 producers", "max_producers_per_peer")
    mem2 = MemoryRoom(quotas=Quotas(consumers_per_peer=1))
    await mem2.join("alice")
    await mem2.join("bob")
    send = await mem2.webrtc("alice", "send")
    await mem2.produce("alice", send)
    await mem2.refused(mem2.produce("alice", send), "limit", "peer 'bob' already receives 1", "max_consumers_per_peer")
    await mem.close()
    await mem2.close()


async def test_a_producer_the_worker_refuses_is_not_created(mem: MemoryRoom) -> None:
    await mem.join("alice")
    await mem.join("bob")
    send = await mem.webrtc("alice", "send")
    mem.services.fail_next(c.ProducerCreate, ProtocolError("unavailable", "worker 0 is busy"))
    await mem.refused(mem.produce("alice", send), "unavailable", "busy")


# ------------------------------------------------------------------ enableConsumer


async def test_enable_consumer_creates_it_on_the_receivers_worker(mem: MemoryRoom) -> None:
    await mem.join("alice")
    await mem.join("bob")
    send = await mem.webrtc("alice", "send")
    recv = await mem.webrtc("bob", "recv")
    pid = await mem.produce("alice", send, "video")
    cid = mem.consumer_of("bob", pid)
    mark = mem.mark()
    answer = await mem.request("bob", "enableConsumer", id=cid, transportId=recv, paused=True, preferredProfile="low")
    assert answer == {"paused": False, "preferredProfile": "low", "effectiveProfile": None}
    (command,) = mem.commands(mark)
    assert isinstance(command, c.ConsumerCreate)
    note = [x for x in mem.room.dump()["peers"] if x["name"] == "bob"][0]["consumers"][0]
    assert command.consumerId == note["workerId"] and command.producerId == mem.worker_id("alice", "producers", pid)
    assert command.transportId == mem.worker_id("bob", "transports", recv)
    assert (command.kind, command.paused, command.preferredProfile) == ("video", True, "low")
    assert command.cname == shapes.RTCP["cname"] and command.rtxSsrc is not None
    assert (command.room, command.peer, command.clientId) == ("r1", "bob", cid)
    assert mem.notified(mark) == []


async def test_enable_consumer_of_a_paused_producer_answers_paused(mem: MemoryRoom) -> None:
    await mem.join("alice")
    await mem.join("bob")
    send = await mem.webrtc("alice", "send")
    recv = await mem.webrtc("bob", "recv")
    pid = await mem.produce("alice", send, paused=True)
    answer = await mem.request("bob", "enableConsumer", id=mem.consumer_of("bob", pid), transportId=recv, paused=False)
    assert answer == {"paused": True, "preferredProfile": "default", "effectiveProfile": None}


async def test_enable_consumer_refusals(mem: MemoryRoom) -> None:
    await mem.join("alice")
    await mem.join("bob")
    send = await mem.webrtc("alice", "send")
    recv = await mem.webrtc("bob", "recv")
    bob_send = await mem.webrtc("bob", "send")
    alice_recv = await mem.webrtc("alice", "recv")
    pid = await mem.produce("alice", send)
    bpid = await mem.produce("bob", bob_send)
    cid = mem.consumer_of("bob", pid)
    alices = mem.consumer_of("alice", bpid)

    def enable(**data: Any) -> Any:
        return mem.request("bob", "enableConsumer", **{"id": cid, "transportId": recv, "paused": False, **data})

    await mem.refused(enable(transportId=new_id()), "not_found", "has no transport")
    await mem.refused(enable(transportId=alice_recv), "not_found", "peer 'bob' has no transport")
    await mem.refused(enable(id=new_id()), "not_found", "has no consumer")
    await mem.refused(enable(id=alices), "not_found", "peer 'bob' has no consumer")
    await mem.refused(enable(id="x"), "bad_request", "id")
    await mem.refused(enable(transportId=bob_send), "invalid_state", "send transport")
    await mem.refused(enable(paused=1), "bad_request", "paused")
    await mem.refused(enable(preferredProfile="ultra"), "bad_request", "preferredProfile")
    await enable()
    await mem.refused(enable(), "invalid_state", "already enabled")


async def test_enable_consumer_a_peer_cannot_receive_is_unsupported(mem: MemoryRoom) -> None:
    await mem.join("alice")
    caps = copy.deepcopy(shapes.JOIN_CAPS)
    caps["codecs"] = [x for x in caps["codecs"] if x["kind"] == "audio"]
    await mem.join("bob", caps=caps)
    send = await mem.webrtc("alice", "send")
    recv = await mem.webrtc("bob", "recv")
    pid = await mem.produce("alice", send, "video")
    await mem.refused(
        mem.request("bob", "enableConsumer", id=mem.consumer_of("bob", pid), transportId=recv, paused=False),
        "unsupported", "share no codec",
    )  # fmt: skip


async def test_enable_consumer_on_another_worker_pipes_the_producer_once() -> None:
    mem = MemoryRoom(workers=2)
    await mem.join("alice")
    await mem.join("bob")
    await mem.join("carol")
    send = await mem.webrtc("alice", "send")  # worker 0
    mem.services.placement = 1
    recv_b = await mem.webrtc("bob", "recv")
    recv_c = await mem.webrtc("carol", "recv")
    pid = await mem.produce("alice", send, "video")
    gid = mem.worker_id("alice", "producers", pid)
    mark = mem.mark()
    await mem.request("bob", "enableConsumer", id=mem.consumer_of("bob", pid), transportId=recv_b, paused=False)
    assert mem.sent(mark) == [(1, "producer.create"), (0, "pipe.open"), (1, "consumer.create")]
    piped = mem.commands(mark)[0]
    assert isinstance(piped, c.ProducerCreate) and piped.transportId is None and piped.producerId == gid
    assert mem.services.workers[0].producers[gid].pipes == {1}
    mark = mem.mark()
    await mem.request("carol", "enableConsumer", id=mem.consumer_of("carol", pid), transportId=recv_c, paused=False)
    assert mem.sent(mark) == [(1, "consumer.create")]  # the pipe is there already
    # The last consumer on worker 1 goes: the pipe closes with it.
    mark = mem.mark()
    await mem.notify("bob", "closeTransport", id=recv_b)
    assert mem.sent(mark) == [(1, "consumer.close"), (1, "transport.close")]
    mark = mem.mark()
    await mem.notify("carol", "closeTransport", id=recv_c)
    assert mem.sent(mark) == [(1, "consumer.close"), (0, "pipe.close"), (1, "producer.close"), (1, "transport.close")]
    assert mem.services.workers[1].empty() and mem.services.workers[0].producers[gid].pipes == set()
    await mem.close()
    assert all(w.empty() for w in mem.services.workers.values())


async def test_a_pipe_the_origin_refuses_undoes_the_piped_producer() -> None:
    mem = MemoryRoom(workers=2)
    await mem.join("alice")
    await mem.join("bob")
    send = await mem.webrtc("alice", "send")
    mem.services.placement = 1
    recv = await mem.webrtc("bob", "recv")
    pid = await mem.produce("alice", send, "video")
    mem.services.fail_next(c.PipeOpen, ProtocolError("unavailable", "pipe socket failed"))
    mark = mem.mark()
    await mem.refused(
        mem.request("bob", "enableConsumer", id=mem.consumer_of("bob", pid), transportId=recv, paused=False),
        "unavailable", "pipe socket failed",
    )  # fmt: skip
    assert mem.sent(mark) == [(1, "producer.create"), (0, "pipe.open"), (1, "producer.close")]
    await mem.close()


async def test_simulcast_producer_streams_and_consumer_profile(mem: MemoryRoom) -> None:
    await mem.join("alice")
    await mem.join("bob")
    send = await mem.webrtc("alice", "send")
    recv = await mem.webrtc("bob", "recv")
    mark = mem.mark()
    pid = new_id()
    await mem.request("alice", "createProducer", id=pid, kind="video", transportId=send,
                      rtpParameters=simulcast_parameters(5000), paused=False)  # fmt: skip
    (command,) = mem.commands(mark)
    assert isinstance(command, c.ProducerCreate)
    assert [(s.ssrc, s.rtxSsrc, s.profile) for s in command.streams] == [
        (5000, 5001, "low"), (5002, 5003, "medium"), (5004, 5005, "high"),
    ]  # fmt: skip
    answer = await mem.request(
        "bob", "enableConsumer", id=mem.consumer_of("bob", pid), transportId=recv, paused=False, preferredProfile="high"
    )
    assert answer["preferredProfile"] == "high"


async def test_video_without_rtx_and_parameters_of_an_unknown_shape(mem: MemoryRoom) -> None:
    await mem.join("alice")
    send = await mem.webrtc("alice", "send")
    await mem.produce("alice", send, "video", rtpParameters=video_parameters(777))
    broken = video_parameters(778)
    broken["codecs"] = "VP8"
    await mem.refused(mem.produce("alice", send, "video", rtpParameters=broken), "bad_request", "codecs")
