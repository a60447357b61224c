"""Bounds on what a client sends, against a real `tureen serve` with its default limits.

Issue 12, findings 1, 4, 7 and 8: nested or huge input must be refused with a reply (and
change nothing), every request gets a reply, the default quotas stop one peer from taking
every port and one app from filling memory with appData, a join cannot impersonate another
peer than the envelope names, request ids round-trip, and errors name the field the app sent.
"""

from __future__ import annotations

import asyncio
import itertools
import json
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

_ids = itertools.count(20_000_001)
# A reply the server never sends shows up as this client-side timeout (code unavailable).
SHORT = 3.0


def new_id() -> int:
    return next(_ids)


def nested(levels: int) -> Any:
    """A JSON value `levels` arrays deep: [[[...]]] (encodable up to about 254 levels)."""
    value: Any = []
    for _ in range(levels - 1):
        value = [value]
    return value


def with_deep(message: dict[str, Any], levels: int) -> bytes:
    """`message` as a frame whose "DEEP" string is replaced by arrays `levels` deep (orjson
    decodes up to 1023 levels but cannot encode past about 254, so the frame is spliced)."""
    return orjson.dumps(message).replace(b'"DEEP"', b"[" * levels + b"]" * levels)


async def expect_error(coro: Any, code: str, text: str = "") -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        await coro
    assert info.value.code == code, info.value.message
    assert text.lower() in info.value.message.lower(), info.value.message
    return info.value


async def raw_request(endpoint: str, frame: bytes) -> dict[str, Any]:
    """One frame on a fresh DEALER, its reply parsed (bounded wait)."""
    sock = zmq.asyncio.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    try:
        await sock.send(frame)
        return orjson.loads(await asyncio.wait_for(sock.recv(), 5))
    finally:
        sock.close()


async def plain_transport(room: RoomDriver, peer: str, direction: str) -> int:
    tid = new_id()
    await room.req(peer, "createTransport", id=tid, direction=direction, options={},
                   plainRtpParameters={"ip": "127.0.0.1", "port": 5004})
    return tid


# ------------------------------------------------------------------ finding 1: nested input


async def test_deep_app_data_in_join_is_refused_and_the_room_keeps_answering(room: RoomDriver) -> None:
    await room.join("alice")
    request = {"method": "join", "target": "room", "peerName": "mallory",
               "rtpCapabilities": room.peer_caps, "appData": "DEEP"}
    frame = with_deep({"id": 1, "method": "room.request", "roomId": room.id, "request": request}, 300)
    reply = await raw_request(room.client.endpoint, frame)
    assert reply["id"] == 1 and reply["error"]["code"] == "bad_request", reply
    assert "deep" in reply["error"]["message"]
    # Nothing was committed, and everything in the room still answers.
    dump = await asyncio.wait_for(room.client.dump_room(room.id), SHORT)
    assert [p["name"] for p in dump["peers"]] == ["alice"]
    await asyncio.wait_for(room.join("bob"), SHORT)
    note = await room.client.next_notification("alice", "newPeer")
    assert note["name"] == "bob"


async def test_app_data_nested_past_its_own_bound_is_refused(room: RoomDriver) -> None:
    # 20 levels decode fine (the message bound is 32) but appData may only be 16 deep.
    await expect_error(room.join("alice", app_data=nested(20)), "bad_request", "appData")
    await room.join("alice", app_data=nested(16))
    # The deepest that is let in still fits in every message that carries it back: the
    # join response (peers[].consumers[].appData), notifications, the room's dump.
    send = await plain_transport(room, "alice", "send")
    await room.req("alice", "createProducer", id=new_id(), kind="audio", transportId=send,
                   rtpParameters=opus_parameters(7002), paused=False, appData=nested(16))
    joined = await room.join("bob", app_data=nested(16))
    assert joined["peers"][0]["consumers"][0]["appData"] == nested(16)
    note = await room.client.next_notification("alice", "newPeer")
    assert note["appData"] == nested(16)
    dump = await room.client.dump_room(room.id)
    assert dump["peers"][0]["appData"] == nested(16)
    assert dump["peers"][0]["producers"][0]["appData"] == nested(16)


async def test_rtp_parameters_nested_past_the_bound_are_refused(room: RoomDriver) -> None:
    await room.join("alice")
    send = await plain_transport(room, "alice", "send")
    params = opus_parameters(7003)
    params["codecs"][0]["parameters"] = {"x": nested(20)}
    await expect_error(
        room.req("alice", "createProducer", id=new_id(), kind="audio", transportId=send,
                 rtpParameters=params, paused=False),
        "bad_request", "request.rtpParameters.codecs[0].parameters.x",
    )


async def test_deep_app_data_in_create_producer_is_refused(room: RoomDriver) -> None:
    await room.join("alice")
    await room.join("bob")
    send = await plain_transport(room, "alice", "send")
    request = {"method": "createProducer", "target": "peer", "id": new_id(), "kind": "audio",
               "transportId": send, "rtpParameters": opus_parameters(7001), "paused": False,
               "appData": "DEEP"}
    frame = with_deep({"id": 2, "method": "room.request", "roomId": room.id, "peerName": "alice",
                       "request": request}, 300)
    reply = await raw_request(room.client.endpoint, frame)
    assert reply["id"] == 2 and reply["error"]["code"] == "bad_request", reply
    dump = await asyncio.wait_for(room.client.dump_room(room.id), SHORT)
    assert all(not p["producers"] and not p["consumers"] for p in dump["peers"])
    with pytest.raises(TimeoutError):
        await room.client.next_notification("bob", "newConsumer", timeout=0.3)


async def test_deep_room_app_data_is_refused_and_room_list_keeps_answering(client: TureenClient) -> None:
    frame = with_deep({"id": 3, "method": "room.create", "mediaCodecs": MEDIA_CODECS, "roomId": "deep",
                       "appData": "DEEP"}, 300)
    reply = await raw_request(client.endpoint, frame)
    assert reply["id"] == 3 and reply["error"]["code"] == "bad_request", reply
    listed = await client.request("room.list", timeout=SHORT)
    assert "deep" not in [r["roomId"] for r in listed]


async def test_a_too_deep_message_is_answered_with_its_id(server: ServerProcess) -> None:
    frame = orjson.dumps({"id": "deep-1", "method": "server.ping", "x": nested(100)})
    reply = await raw_request(server.endpoint, frame)
    assert reply["id"] == "deep-1" and reply["error"]["code"] == "bad_request"
    assert "32" in reply["error"]["message"], reply


# ------------------------------------------------------------------ sizes and counts


async def test_big_app_data_is_refused_with_limit_and_creates_nothing(client: TureenClient) -> None:
    big = {"blob": "x" * 900_000}
    await expect_error(
        client.request("room.create", mediaCodecs=MEDIA_CODECS, roomId="big", appData=big),
        "limit", "max_app_data_bytes",
    )
    assert "big" not in [r["roomId"] for r in await client.list_rooms()]
    await client.create_room(MEDIA_CODECS, room_id="fits", app_data={"blob": "x" * 10_000})
    try:
        room = await client.dump_room("fits")
        assert room["appData"] == {"blob": "x" * 10_000}
    finally:
        await client.close_room("fits")


async def test_room_list_carries_no_app_data(client: TureenClient) -> None:
    await client.create_room(MEDIA_CODECS, room_id="listed", app_data={"secret": 1})
    try:
        (entry,) = [r for r in await client.list_rooms() if r["roomId"] == "listed"]
        assert "appData" not in entry and entry["peers"] == 0
        assert (await client.dump_room("listed"))["appData"] == {"secret": 1}
    finally:
        await client.close_room("listed")


async def test_counts_of_codecs_encodings_and_extensions_are_bounded(room: RoomDriver) -> None:
    caps = {**room.peer_caps, "codecs": [room.peer_caps["codecs"][0]] * 300}
    await expect_error(
        room.req(None, "join", peerName="alice", rtpCapabilities=caps), "bad_request", "codecs"
    )
    caps = {**room.peer_caps, "headerExtensions": room.peer_caps["headerExtensions"] * 20}
    await expect_error(
        room.req(None, "join", peerName="alice", rtpCapabilities=caps), "bad_request", "headerExtensions"
    )
    await room.join("alice")
    send = await plain_transport(room, "alice", "send")
    params = opus_parameters(7100)
    params["encodings"] = [{"ssrc": 7100 + i} for i in range(100)]
    await expect_error(
        room.req("alice", "createProducer", id=new_id(), kind="audio", transportId=send,
                 rtpParameters=params, paused=False),
        "bad_request", "encodings",
    )
    params = opus_parameters(7200)
    params["codecs"][0]["parameters"] = {f"k{i}": i for i in range(100)}
    await expect_error(
        room.req("alice", "createProducer", id=new_id(), kind="audio", transportId=send,
                 rtpParameters=params, paused=False),
        "bad_request", "parameters",
    )
    await expect_error(
        room.req("alice", "createProducer", id=new_id(), kind="audio", transportId=send,
                 rtpParameters=opus_parameters(7300) | {"junk": "y" * 100_000}, paused=False),
        "bad_request", "junk",
    )
    dump = await room.client.dump_room(room.id)
    assert [p["name"] for p in dump["peers"]] == ["alice"] and not dump["peers"][0]["producers"]


# ------------------------------------------------------------------ finding 4: default quotas


async def test_one_peer_cannot_take_every_port(room: RoomDriver) -> None:
    """The abuse of issue 12: createTransport in a loop. The default quota stops it at 8."""
    await room.join("alice")
    created, refused = [], None
    for _ in range(30):  # bounded: the quota is 8
        tid = new_id()
        try:
            await room.req("alice", "createTransport", id=tid, direction="send", options={})
        except ProtocolError as exc:
            refused = exc
            break
        created.append(tid)
    assert refused is not None and refused.code == "limit", refused
    assert "max_transports_per_peer" in refused.message
    assert len(created) == 8
    dump = await room.client.dump_room(room.id)
    assert len(dump["peers"][0]["transports"]) == 8
    # Closing one frees a place.
    await room.notify("alice", "closeTransport", id=created[0])
    await room.req("alice", "createTransport", id=new_id(), direction="recv", options={})


# ------------------------------------------------------------------ finding 7: impersonation


async def test_join_peer_name_must_match_the_envelope(room: RoomDriver) -> None:
    request = {"method": "join", "target": "room", "peerName": "alice", "rtpCapabilities": room.peer_caps}
    await expect_error(room.client.peer_request(room.id, "mallory", request), "bad_request", "mallory")
    dump = await room.client.dump_room(room.id)
    assert dump["peers"] == []
    # Matching names, or no envelope name (the app vouches for the join's), both join.
    await room.client.peer_request(room.id, "alice", request)
    await room.client.peer_request(room.id, None, {**request, "peerName": "bob"})
    dump = await room.client.dump_room(room.id)
    assert [p["name"] for p in dump["peers"]] == ["alice", "bob"]


# ------------------------------------------------------------------ finding 8: ids and fields


@pytest.mark.parametrize(
    "request_id, echoed",
    [
        (2**64, None),  # orjson reads it as a float: it would not come back as sent
        (2**63, None),
        (-(2**63) - 1, None),
        (1.5, None),
        ("x" * 300, None),
        (2**63 - 1, 2**63 - 1),
        (-(2**63), -(2**63)),
        ("x" * 256, "x" * 256),
    ],
    ids=["2^64", "2^63", "-2^63-1", "float", "long-string", "max-int", "min-int", "string-256"],
)
async def test_request_ids_round_trip_or_are_refused(server: ServerProcess, request_id: Any, echoed: Any) -> None:
    # json, not orjson: orjson refuses to write integers past 64 bits.
    frame = b'{"id": %s, "method": "server.ping"}' % json.dumps(request_id).encode()
    reply = await raw_request(server.endpoint, frame)
    if echoed is None:
        assert reply["id"] is None and reply["ok"] is False, reply
        assert reply["error"]["code"] == "bad_request" and "id" in reply["error"]["message"]
    else:
        assert reply == {"id": echoed, "ok": True, "data": {"pong": True}}


async def test_app_action_errors_name_the_field_the_app_sent(room: RoomDriver) -> None:
    await room.join("alice")
    for action, field in (
        ("producer.close", "producerId"),
        ("producer.pause", "producerId"),
        ("consumer.pause", "consumerId"),
        ("consumer.setPreferredProfile", "consumerId"),
        ("transport.close", "transportId"),
    ):
        error = await expect_error(room.action(action, peerName="alice", **{field: "x"}, profile="low"),
                                   "bad_request", field)
        assert "'id'" not in error.message, error.message
        await expect_error(room.action(action, peerName="alice", profile="low"), "bad_request", field)
