"""Tureen's messages against what the real mediasoup 2.6.19 sent for the same session.

tests/protocol/v2_recorded/session.json is a recording of the real v2 server API (how it was
made: the README beside it). Here the same client messages and server-app actions go through
Tureen's control API, and every response, rejection and notification is compared with v2's:
key sets, absent keys vs null, `{}` vs null, where `rtcpFeedback` appears, the types of ids,
and each peer's order of notifications. Values v2 chooses at random (server ids, SSRCs, ICE
credentials, ports, fingerprints) are compared by type only; stats reports by shape.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from conftest import RoomDriver
from support import opus_parameters
from tureen.shared.client import TureenClient
from tureen.shared.errors import ProtocolError

pytestmark = pytest.mark.timeout(90)

RECORDED = Path(__file__).parent / "v2_recorded"
SESSION: dict[str, Any] = json.loads((RECORDED / "session.json").read_text())
INPUT: dict[str, Any] = json.loads((RECORDED / "input.json").read_text())
STATS = {"transportStats", "producerStats", "consumerStats"}
# Keys whose values v2 draws at random (compared by type).
RANDOM_KEYS = {"ssrc", "usernameFragment", "password", "port", "value", "priority"}


def client_ids(steps: list[dict[str, Any]]) -> set[int]:
    """The ids the client (or the scenario) chose: every integer of the templates."""
    found: set[int] = set()

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            if "$consumer" not in value:
                for item in value.values():
                    walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)
        elif isinstance(value, int) and not isinstance(value, bool):
            found.add(value)

    for step in steps:
        walk(step.get("template"))
    return found


CLIENT_IDS = client_ids(SESSION["steps"])


def normalize(value: Any, key: str = "") -> Any:
    """`value` with what the server draws at random replaced by its type."""
    if isinstance(value, dict):
        return {k: normalize(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [normalize(v, key) for v in value]
    if key in RANDOM_KEYS or key == "ssrcs":
        return f"<{type(value).__name__}>"
    if isinstance(value, int) and not isinstance(value, bool) and value >= 10_000_000 and value not in CLIENT_IDS:
        assert value <= 99_999_999, f"server id {value} outside v2's 10000000..99999999"
        return "<server id>"
    return value


def shape(value: Any) -> Any:
    """Keys and types only (stats reports: their numbers change with every run)."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        return sorted({json.dumps(shape(v), sort_keys=True) for v in value})
    return "number" if isinstance(value, int | float) and not isinstance(value, bool) else type(value).__name__


def comparable(notification: dict[str, Any]) -> Any:
    if notification.get("method") in STATS:
        return shape(notification)
    return normalize(notification)


class Replay:
    """Plays the recorded session's client messages and app actions through Tureen."""

    def __init__(self, client: TureenClient, room_id: str) -> None:
        self.client = client
        self.room_id = room_id

    async def consumer_id(self, peer: str, producer_id: int) -> int:
        dump = await self.client.dump_room(self.room_id)
        for p in dump["peers"]:
            if p["name"] == peer:
                for consumer in p["consumers"]:
                    if consumer["producerId"] == producer_id:
                        return consumer["id"]
        raise AssertionError(f"Tureen has no consumer of {producer_id} for {peer}")

    async def resolve(self, value: Any) -> Any:
        if isinstance(value, dict):
            if "$consumer" in value:
                return await self.consumer_id(*value["$consumer"])
            return {k: await self.resolve(v) for k, v in value.items()}
        if isinstance(value, list):
            return [await self.resolve(v) for v in value]
        return value

    async def step(self, step: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {"index": step["index"]}
        try:
            if "action" in step:
                params = await self.resolve(step["template"])
                if step["action"] == "room.close":
                    await self.client.close_room(self.room_id)
                else:
                    await self.client.request(step["action"], roomId=self.room_id, **params)
            else:
                message = await self.resolve(step["template"])
                peer = None if message["target"] == "room" else step["peer"]
                if message.get("notification"):
                    await self.client.peer_notify(self.room_id, peer, message)
                else:
                    out["response"] = await self.client.peer_request(self.room_id, peer, message)
        except ProtocolError as exc:
            out["error"] = exc.message
        # Events caused by a request come before its reply; a stats report may follow it.
        expected = len(step["notifications"])
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5.0
        while len(self.pending()) < expected and loop.time() < deadline:
            await asyncio.sleep(0.02)
        out["notifications"] = []
        while self.pending():
            event = await self.client.next_event(lambda e: e.get("event") == "notification", timeout=0)
            out["notifications"].append({"peer": event["peerName"], "notification": event["notification"]})
        return out

    def pending(self) -> list[dict[str, Any]]:
        return [e for e in self.client.pending_events() if e.get("event") == "notification"]


@pytest.fixture
async def tureen_session(client: TureenClient) -> list[dict[str, Any]]:
    """Tureen's answers to the recorded session, step by step."""
    room_id = "v2-shapes"
    await client.create_room(INPUT["mediaCodecs"], room_id=room_id)
    replay = Replay(client, room_id)
    steps = []
    try:
        for step in SESSION["steps"]:
            steps.append(await replay.step(step))
    finally:
        try:
            await client.close_room(room_id)
        except ProtocolError:
            pass  # the session's last step closed it
    return steps


def per_peer(notifications: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """Each peer's notifications in order (v2's order across peers is its Maps' order)."""
    out: dict[str, list[Any]] = {}
    for item in notifications:
        out.setdefault(item["peer"], []).append(comparable(item["notification"]))
    return out


def differences(v2: dict[str, Any], ours: dict[str, Any]) -> list[str]:
    where = f"step {v2['index']} ({v2.get('action') or v2['message']['method']})"
    found = []
    if "error" in v2:
        if "error" not in ours:
            found.append(f"{where}: v2 rejects it ({v2['error']!r}), Tureen answers {ours.get('response')!r}")
        elif v2["error"].split("[")[0].strip().lower() not in ours["error"].lower():
            found.append(f"{where}: v2 says {v2['error']!r}, Tureen {ours['error']!r}")
    elif "error" in ours:
        found.append(f"{where}: Tureen rejects it: {ours['error']}")
    elif "message" in v2 and not v2["message"].get("notification"):
        # createProducer resolves with nothing in v2 and goes to the client as `{}`.
        expected = {} if v2.get("responseUndefined") else normalize(v2["response"])
        if normalize(ours.get("response")) != expected:
            found.append(f"{where}: response\n  v2:     {json.dumps(expected)}\n  Tureen: {json.dumps(normalize(ours.get('response')))}")
    theirs, mine = per_peer(v2["notifications"]), per_peer(ours["notifications"])
    for peer in sorted(set(theirs) | set(mine)):
        if theirs.get(peer, []) != mine.get(peer, []):
            found.append(
                f"{where}: notifications to {peer}\n  v2:     {json.dumps(theirs.get(peer, []))}\n"
                f"  Tureen: {json.dumps(mine.get(peer, []))}"
            )
    return found


async def test_tureen_answers_the_recorded_v2_session_as_v2_did(tureen_session: list[dict[str, Any]]) -> None:
    found: list[str] = []
    for v2, ours in zip(SESSION["steps"], tureen_session, strict=True):
        found += differences(v2, ours)
    assert not found, "Tureen differs from mediasoup 2.6.19:\n" + "\n".join(found)


def test_the_recording_is_what_v2_sends() -> None:
    """The facts this file pins, read from the recording itself (so a re-recording that
    changes them is noticed): absent optional fields, `{}` for createProducer, ids."""
    steps = SESSION["steps"]
    assert SESSION["recordedWith"] == "mediasoup 2.6.19"
    by_method: dict[str, list[dict[str, Any]]] = {}
    for step in steps:
        for item in step["notifications"]:
            by_method.setdefault(item["notification"]["method"], []).append(item["notification"])
    # `closed` without appData has no appData key at all; with appData, it is there.
    assert {"appData" in n for n in by_method["closed"]} == {True, False}
    # createProducer resolves with nothing.
    assert all(s.get("responseUndefined") for s in steps if s.get("message", {}).get("method") == "createProducer" and "error" not in s)
    # Ids are integers; consumer ids in v2's range.
    for n in by_method["newConsumer"]:
        assert isinstance(n["id"], int) and 10_000_000 <= n["id"] <= 99_999_999


# ---------------------------------------------------------------- each difference, on its own


async def _two_peers_and_a_producer(room: RoomDriver, app_data: Any = None) -> tuple[int, dict[str, Any]]:
    """alice (no appData) sends VP8 on a plain transport; bob has its newConsumer."""
    from test_room_protocol import plain_transport, produce

    await room.join("alice")
    await room.join("bob")
    send = await plain_transport(room, "alice", "send")
    extra = {} if app_data is None else {"appData": app_data}
    pid = await produce(room, "alice", send, "video", **extra)
    return pid, await room.client.next_notification("bob", "newConsumer")


async def test_create_producer_answers_an_empty_object_not_null(room: RoomDriver) -> None:
    from test_room_protocol import new_id, plain_transport

    await room.join("alice")
    send = await plain_transport(room, "alice", "send")
    answer = await room.req("alice", "createProducer", id=new_id(), kind="audio", transportId=send,
                            rtpParameters=opus_parameters(new_id()), paused=False)
    assert answer == {}


async def test_app_data_not_given_is_absent_not_null(room: RoomDriver) -> None:
    """newPeer, the join response's peers and consumers, newConsumer, closed, peerClosed."""
    await room.join("carol")
    pid, consumer = await _two_peers_and_a_producer(room)
    assert "appData" not in consumer
    new_peer = await room.client.next_notification("carol", "newPeer", name="alice")
    assert "appData" not in new_peer
    joined = await room.join("dave")
    alice = next(p for p in joined["peers"] if p["name"] == "alice")
    assert "appData" not in alice and all("appData" not in c for c in alice["consumers"])
    await room.action("peer.close", peerName="dave")
    closed = await room.client.next_notification("dave", "closed")
    assert closed == {"method": "closed", "target": "peer", "notification": True}
    gone = await room.client.next_notification("alice", "peerClosed", name="dave")
    assert "appData" not in gone
    await room.action("producer.resume", peerName="alice", producerId=pid)  # not paused: nothing
    await room.action("producer.pause", peerName="alice", producerId=pid)
    paused = await room.client.next_notification("alice", "producerPaused")
    assert "appData" not in paused
    await room.action("consumer.pause", peerName="bob", consumerId=consumer["id"])
    assert "appData" not in await room.client.next_notification("bob", "consumerPaused", id=consumer["id"])


async def test_app_actions_on_producers_name_the_producers_peer(room: RoomDriver) -> None:
    """v2's Producer.pause/resume/close(appData) notify {id, peerName, appData}."""
    pid, _ = await _two_peers_and_a_producer(room)
    for action, method in (("producer.pause", "producerPaused"), ("producer.resume", "producerResumed"),
                           ("producer.close", "producerClosed")):
        await room.action(action, peerName="alice", producerId=pid, appData={"by": "app"})
        note = await room.client.next_notification("alice", method)
        assert note == {"method": method, "target": "peer", "notification": True, "id": pid,
                        "peerName": "alice", "appData": {"by": "app"}}


async def test_transport_closed_by_the_app_carries_the_close_app_data(room: RoomDriver) -> None:
    """v2's transport.close(appData): transportClosed {id, appData} with THAT appData, none
    without it (not the transport's own appData)."""
    from test_room_protocol import new_id

    await room.join("alice")
    first, second = new_id(), new_id()
    for tid in (first, second):
        await room.req("alice", "createTransport", id=tid, direction="send", options={},
                       plainRtpParameters={"ip": "127.0.0.1", "port": 9}, appData={"mine": tid})
    await room.action("transport.close", peerName="alice", transportId=first, appData={"why": "kick"})
    note = await room.client.next_notification("alice", "transportClosed", id=first)
    assert note["appData"] == {"why": "kick"}
    await room.action("transport.close", peerName="alice", transportId=second)
    note = await room.client.next_notification("alice", "transportClosed", id=second)
    assert "appData" not in note


async def test_rtx_entries_of_a_consumer_carry_no_rtcp_feedback(room: RoomDriver) -> None:
    """v2 copies the peer's capability codec's rtcpFeedback; RTX capabilities have none."""
    _, consumer = await _two_peers_and_a_producer(room)
    vp8, rtx = consumer["rtpParameters"]["codecs"]
    assert vp8["mimeType"] == "video/VP8" and "rtcpFeedback" in vp8
    assert rtx["mimeType"] == "video/rtx" and "rtcpFeedback" not in rtx


async def test_stats_list_no_stream_before_its_first_packet(room: RoomDriver) -> None:
    """v2 has a producer stream (and a consumer's inbound entry) once a packet came: before
    that producerStats is `[]` and consumerStats holds the outbound entry alone."""
    pid, consumer = await _two_peers_and_a_producer(room)
    await room.notify("alice", "enableProducerStats", id=pid, interval=1000)
    note = await room.client.next_notification("alice", "producerStats")
    assert note["stats"] == []
    from test_room_protocol import plain_transport

    recv = await plain_transport(room, "bob", "recv")
    await room.req("bob", "enableConsumer", id=consumer["id"], transportId=recv, paused=False)
    await room.notify("bob", "enableConsumerStats", id=consumer["id"], interval=1000)
    note = await room.client.next_notification("bob", "consumerStats")
    assert [entry["type"] for entry in note["stats"]] == ["outbound-rtp"]


async def test_create_producer_on_an_unknown_transport_says_webrtc_transport_not_found(room: RoomDriver) -> None:
    from test_room_protocol import expect_error, new_id

    await room.join("alice")
    await expect_error(
        room.req("alice", "createProducer", id=new_id(), kind="audio", transportId=12345678,
                 rtpParameters=opus_parameters(new_id()), paused=False),
        "not_found", "WebRtcTransport not found",
    )
