"""The mediasoup v2 protocol through the control API of a real server: semantics and errors.

Each test uses a fresh room; plain transports stand in where a transport is needed (the
WebRTC ones have their own tests). Error checks also assert that nothing changed.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from conftest import RoomDriver
from support import opus_parameters, udp_socket, vp8_parameters
from tureen.shared.errors import ProtocolError

pytestmark = pytest.mark.timeout(60)

_ids = itertools.count(10_000_001)


def new_id() -> int:
    return next(_ids)


async def plain_transport(room: RoomDriver, peer: str, direction: str) -> int:
    tid = new_id()
    sock = udp_socket()
    port = sock.getsockname()[1]
    sock.close()
    await room.req(
        peer, "createTransport", id=tid, direction=direction, options={},
        plainRtpParameters={"ip": "127.0.0.1", "port": port},
    )
    return tid


async def produce(room: RoomDriver, peer: str, transport: int, kind: str = "audio", **extra: Any) -> int:
    pid = new_id()
    ssrc = new_id()
    params = opus_parameters(ssrc) if kind == "audio" else vp8_parameters(ssrc, ssrc + 1)
    await room.req(peer, "createProducer", id=pid, kind=kind, transportId=transport,
                   rtpParameters=params, paused=False, **extra)
    return pid


async def expect_error(coro: Any, code: str, text: str = "") -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        await coro
    assert info.value.code == code, info.value.message
    assert text.lower() in info.value.message.lower(), info.value.message
    return info.value


async def test_query_room_returns_capabilities_and_empty_mandatory_list(room: RoomDriver) -> None:
    answer = await room.req(None, "queryRoom")
    assert answer["mandatoryCodecPayloadTypes"] == []
    mimes = [c["mimeType"] for c in answer["rtpCapabilities"]["codecs"]]
    assert mimes == ["audio/opus", "video/VP8", "video/rtx", "video/H264", "video/rtx"]


async def test_join_lists_earlier_peers_with_their_consumers_and_announces_the_newcomer(room: RoomDriver) -> None:
    await room.join("alice", app_data={"role": "host"})
    t = await plain_transport(room, "alice", "send")
    await produce(room, "alice", t, "audio", appData={"src": "mic"})
    joined = await room.join("bob")
    assert len(joined["peers"]) == 1
    alice = joined["peers"][0]
    assert alice["name"] == "alice" and alice["appData"] == {"role": "host"}
    (consumer,) = alice["consumers"]
    assert consumer["peerName"] == "alice" and consumer["kind"] == "audio"
    assert consumer["appData"] == {"src": "mic"} and consumer["paused"] is False
    assert 10_000_000 <= consumer["id"] <= 99_999_999
    new_peer = await room.client.next_notification("alice", "newPeer")
    assert new_peer["name"] == "bob" and new_peer["consumers"] == []
    # The newcomer got no newConsumer for what already existed.
    with pytest.raises(TimeoutError):
        await room.client.next_notification("bob", "newConsumer", timeout=0.3)


async def test_join_rejects_empty_and_duplicate_names_and_foreign_payload_types(room: RoomDriver) -> None:
    await room.join("alice")
    await expect_error(room.join("alice"), "duplicate", "duplicated Peer")
    await expect_error(room.join(""), "bad_request", "peerName")
    bad_caps = {**room.peer_caps, "codecs": [dict(room.peer_caps["codecs"][0], preferredPayloadType=111)]}
    with pytest.raises(ProtocolError) as info:
        await room.req(None, "join", peerName="carol", rtpCapabilities=bad_caps)
    assert "opus" in info.value.message.lower(), info.value.message
    dump = await room.client.dump_room(room.id)
    assert [p["name"] for p in dump["peers"]] == ["alice"]


async def test_spy_is_invisible_and_cannot_produce_but_gets_consumers(room: RoomDriver) -> None:
    await room.join("alice")
    joined = await room.join("spy", spy=True)
    assert [p["name"] for p in joined["peers"]] == ["alice"]
    with pytest.raises(TimeoutError):
        await room.client.next_notification("alice", "newPeer", timeout=0.3)
    bob = await room.join("bob")
    assert [p["name"] for p in bob["peers"]] == ["alice"]
    await room.client.next_notification("spy", "newPeer", name="bob")
    t = await plain_transport(room, "spy", "send")
    await expect_error(
        room.req("spy", "createProducer", id=new_id(), kind="audio", transportId=t,
                 rtpParameters=opus_parameters(5555), paused=False),
        "invalid_state", "spy",
    )
    ta = await plain_transport(room, "alice", "send")
    await produce(room, "alice", ta)
    await room.client.next_notification("spy", "newConsumer")
    await room.notify("spy", "leave")
    with pytest.raises(TimeoutError):
        await room.client.next_notification("alice", "peerClosed", timeout=0.3)


async def test_messages_of_the_wrong_type_or_target_are_rejected(room: RoomDriver) -> None:
    await room.join("alice")
    await expect_error(
        room.client.peer_request(room.id, "alice", {"method": "leave", "target": "peer"}),
        "bad_request", "room.notify",
    )
    await expect_error(
        room.client.peer_notify(room.id, "alice", {"method": "createTransport", "target": "peer"}),
        "bad_request", "room.request",
    )
    await expect_error(
        room.client.peer_request(room.id, None, {"method": "queryRoom", "target": "peer"}),
        "bad_request", "target",
    )
    await expect_error(
        room.client.peer_request(room.id, "alice", {"method": "fly", "target": "peer"}),
        "unknown_method", "fly",
    )
    await expect_error(
        room.client.peer_request(room.id, "nobody", {"method": "createTransport", "target": "peer"}),
        "not_found", "nobody",
    )
    await expect_error(
        room.client.peer_request("no-such-room", "alice", {"method": "queryRoom", "target": "room"}),
        "not_found", "no-such-room",
    )


async def test_create_transport_validates_ids_types_and_addresses(room: RoomDriver) -> None:
    await room.join("alice")
    tid = await plain_transport(room, "alice", "send")
    await expect_error(
        room.req("alice", "createTransport", id=tid, direction="send", options={},
                 plainRtpParameters={"ip": "127.0.0.1", "port": 5000}),
        "duplicate", str(tid),
    )
    await expect_error(
        room.req("alice", "createTransport", id="7", direction="send", options={},
                 plainRtpParameters={"ip": "127.0.0.1", "port": 5000}),
        "bad_request", "integer",
    )
    await expect_error(
        room.req("alice", "createTransport", id=new_id(), direction="sideways", options={}),
        "bad_request", "direction",
    )
    await expect_error(
        room.req("alice", "createTransport", id=new_id(), direction="send", options={},
                 plainRtpParameters={"ip": "not-an-ip", "port": 5000}),
        "bad_request", "IP address",
    )
    await expect_error(
        room.req("alice", "createTransport", id=new_id(), direction="send", options={},
                 plainRtpParameters={"ip": "127.0.0.1", "port": 70000}),
        "bad_request", "port",
    )
    await expect_error(room.req("alice", "restartTransport", id=tid), "invalid_state", "Plain")
    await expect_error(room.req("alice", "restartTransport", id=1), "not_found", "Transport not found")
    dump = await room.client.dump_room(room.id)
    assert [t["id"] for t in dump["peers"][0]["transports"]] == [tid]


async def test_create_producer_checks_transport_direction_parameters_and_ssrcs(room: RoomDriver) -> None:
    await room.join("alice")
    send = await plain_transport(room, "alice", "send")
    recv = await plain_transport(room, "alice", "recv")
    await expect_error(
        room.req("alice", "createProducer", id=new_id(), kind="audio", transportId=recv,
                 rtpParameters=opus_parameters(4242), paused=False),
        "invalid_state", "recv",
    )
    await expect_error(
        room.req("alice", "createProducer", id=new_id(), kind="audio", transportId=999,
                 rtpParameters=opus_parameters(4242), paused=False),
        "not_found", "Transport not found",
    )
    with pytest.raises(ProtocolError) as info:
        await room.req("alice", "createProducer", id=new_id(), kind="video", transportId=send,
                       rtpParameters=opus_parameters(4242), paused=False)
    assert "wrong RTP parameters" in info.value.message
    with pytest.raises(ProtocolError) as info:
        await room.req("alice", "createProducer", id=new_id(), kind="audio", transportId=send,
                       rtpParameters={"codecs": [], "encodings": []}, paused=False)
    assert "wrong RTP parameters" in info.value.message
    pid = new_id()
    await room.req("alice", "createProducer", id=pid, kind="audio", transportId=send,
                   rtpParameters=opus_parameters(4242), paused=False)
    await expect_error(
        room.req("alice", "createProducer", id=pid, kind="audio", transportId=send,
                 rtpParameters=opus_parameters(4343), paused=False),
        "duplicate", str(pid),
    )
    with pytest.raises(ProtocolError) as info:
        await room.req("alice", "createProducer", id=new_id(), kind="audio", transportId=send,
                       rtpParameters=opus_parameters(4242), paused=False)
    assert "4242" in info.value.message
    await expect_error(
        room.req("alice", "createProducer", id=new_id(), kind="depth", transportId=send,
                 rtpParameters=opus_parameters(4444), paused=False),
        "unsupported", "kind",
    )
    dump = await room.client.dump_room(room.id)
    assert [p["id"] for p in dump["peers"][0]["producers"]] == [pid]


async def test_enable_consumer_checks_ownership_state_and_answers_pause_and_profiles(room: RoomDriver) -> None:
    await room.join("alice")
    await room.join("bob")
    send = await plain_transport(room, "alice", "send")
    alice_recv = await plain_transport(room, "alice", "recv")
    bob_recv = await plain_transport(room, "bob", "recv")
    pid = await produce(room, "alice", send)
    consumer = await room.client.next_notification("bob", "newConsumer")
    assert consumer["preferredProfile"] == "default" and consumer["effectiveProfile"] is None
    await expect_error(
        room.req("bob", "enableConsumer", id=consumer["id"], transportId=alice_recv, paused=False),
        "not_found", "Transport not found",
    )
    await expect_error(
        room.req("bob", "enableConsumer", id=12345678, transportId=bob_recv, paused=False),
        "not_found", "Consumer not found",
    )
    await expect_error(
        room.req("bob", "enableConsumer", id=consumer["id"], transportId=bob_recv, paused=False,
                 preferredProfile="ultra"),
        "bad_request", "preferredProfile",
    )
    await room.notify("alice", "pauseProducer", id=pid)
    answer = await room.req("bob", "enableConsumer", id=consumer["id"], transportId=bob_recv,
                            paused=True, preferredProfile="low")
    assert answer == {"paused": True, "preferredProfile": "low", "effectiveProfile": None}
    await expect_error(
        room.req("bob", "enableConsumer", id=consumer["id"], transportId=bob_recv, paused=False),
        "invalid_state", "already enabled",
    )


async def test_close_transport_closes_its_producers_and_tells_the_consumers(room: RoomDriver) -> None:
    await room.join("alice")
    await room.join("bob")
    send = await plain_transport(room, "alice", "send")
    await produce(room, "alice", send)
    consumer = await room.client.next_notification("bob", "newConsumer")
    await room.notify("alice", "closeTransport", id=send)
    closed = await room.client.next_notification("bob", "consumerClosed")
    assert closed["id"] == consumer["id"] and closed["peerName"] == "alice"
    with pytest.raises(TimeoutError):
        await room.client.next_notification("alice", "transportClosed", timeout=0.3)
    dump = await room.client.dump_room(room.id)
    assert all(not p["transports"] or p["name"] == "bob" for p in dump["peers"])
    # The id is free again: a send transport is re-created with the same id after a close.
    await room.req("alice", "createTransport", id=send, direction="send", options={},
                   plainRtpParameters={"ip": "127.0.0.1", "port": 5004})


async def test_bad_notifications_are_reported_and_change_nothing(room: RoomDriver) -> None:
    await room.join("alice")
    send = await plain_transport(room, "alice", "send")
    pid = await produce(room, "alice", send)
    await expect_error(room.notify("alice", "closeProducer", id=1), "not_found", "Producer not found")
    await expect_error(room.notify("alice", "pauseConsumer", id=1), "not_found", "Consumer not found")
    await expect_error(room.notify("alice", "pauseProducer", id="x"), "bad_request", "integer")
    await expect_error(room.notify("alice", "enableTransportStats", id=2, interval=10), "not_found", "")
    await expect_error(
        room.notify("alice", "setConsumerPreferredProfile", id=1, profile="high"), "not_found", ""
    )
    await room.notify("alice", "enableProducerStats", id=pid, interval=10)
    dump = await room.client.dump_room(room.id)
    producer = dump["peers"][0]["producers"][0]
    assert producer["paused"] is False and producer["statsInterval"] == 1000


async def test_server_app_actions_notify_the_right_peers(room: RoomDriver) -> None:
    await room.join("alice")
    await room.join("bob")
    send = await plain_transport(room, "alice", "send")
    recv = await plain_transport(room, "bob", "recv")
    pid = await produce(room, "alice", send)
    consumer = await room.client.next_notification("bob", "newConsumer")
    await room.req("bob", "enableConsumer", id=consumer["id"], transportId=recv, paused=False)

    await room.action("producer.pause", peerName="alice", producerId=pid, appData={"why": "mod"})
    note = await room.client.next_notification("alice", "producerPaused")
    assert note["id"] == pid and note["appData"] == {"why": "mod"}
    await room.client.next_notification("bob", "consumerPaused", id=consumer["id"])
    await room.action("producer.resume", peerName="alice", producerId=pid)
    await room.client.next_notification("alice", "producerResumed", id=pid)
    await room.client.next_notification("bob", "consumerResumed", id=consumer["id"])

    await room.action("consumer.pause", peerName="bob", consumerId=consumer["id"], appData=7)
    note = await room.client.next_notification("bob", "consumerPaused", id=consumer["id"])
    assert note["peerName"] == "alice" and note["appData"] == 7
    await room.action("consumer.setPreferredProfile", peerName="bob", consumerId=consumer["id"], profile="low")
    note = await room.client.next_notification("bob", "consumerPreferredProfileSet")
    assert note == {"method": "consumerPreferredProfileSet", "target": "peer", "notification": True,
                    "id": consumer["id"], "peerName": "alice", "profile": "low"}

    await room.action("transport.close", peerName="bob", transportId=recv, appData={"x": 1})
    note = await room.client.next_notification("bob", "transportClosed")
    assert note["id"] == recv and note["appData"] == {"x": 1}

    await room.action("producer.close", peerName="alice", producerId=pid)
    await room.client.next_notification("alice", "producerClosed", id=pid)
    await room.client.next_notification("bob", "consumerClosed", id=consumer["id"])

    await room.action("peer.close", peerName="bob", appData={"kicked": True})
    note = await room.client.next_notification("bob", "closed")
    assert note["appData"] == {"kicked": True}
    note = await room.client.next_notification("alice", "peerClosed")
    assert note["name"] == "bob"
    await expect_error(room.action("peer.close", peerName="bob"), "not_found", "bob")


async def test_room_close_tells_every_peer_in_order(room: RoomDriver) -> None:
    await room.join("alice")
    await room.join("bob")
    await room.client.close_room(room.id)
    await room.client.next_notification("alice", "closed")
    await room.client.next_notification("bob", "peerClosed", name="alice")
    await room.client.next_notification("bob", "closed")
    await room.client.next_event(lambda e: e.get("event") == "room.closed", timeout=2)
    assert room.id not in [r["roomId"] for r in await room.client.list_rooms()]


async def test_update_producer_is_applied_and_validated(room: RoomDriver) -> None:
    await room.join("alice")
    send = await plain_transport(room, "alice", "send")
    pid = await produce(room, "alice", send, "video")
    await room.notify("alice", "updateProducer", id=pid, rtpParameters=vp8_parameters(777, 778))
    dump = await room.client.dump_room(room.id)
    assert dump["peers"][0]["producers"][0]["rtpParameters"]["encodings"][0]["ssrc"] == 777
    with pytest.raises(ProtocolError):
        await room.notify("alice", "updateProducer", id=pid, rtpParameters={"codecs": "x"})
