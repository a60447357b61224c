"""The JSON Schemas of shared/schemas: complete (every control method, event and protocol
message has one), valid JSON Schema, true to what mediasoup 2.6.19 sends, and wired into
the test suite's checks (tests/schema_check.py)."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest
from jsonschema import Draft202012Validator
from schema_check import MessageChecker
from tureen.shared import schemas
from tureen.supervisor.room import NOTIFICATIONS, REQUESTS
from tureen.supervisor.server import APP_ACTIONS, Server

RECORDED = Path(__file__).parents[1] / "protocol" / "v2_recorded" / "session.json"
# The server->client notifications: the seed list's 15 and consumerClosed (docs/protocol/messages.md).
SERVER_NOTIFICATIONS = {
    "closed", "transportClosed", "transportStats", "producerPaused", "producerResumed",
    "producerClosed", "producerStats", "newPeer", "peerClosed", "newConsumer", "consumerPaused",
    "consumerResumed", "consumerPreferredProfileSet", "consumerEffectiveProfileChanged",
    "consumerStats", "consumerClosed",
}  # fmt: skip
# The newer server-app methods (docs/protocol/control.md): schema'd before the server has them all.
NEW_API = {
    "transport.setMaxBitrate", "consumer.requestKeyFrame", "producer.getStats", "consumer.getStats",
    "transport.getStats", "peer.dump", "rtpStreamer.create", "rtpStreamer.close", "room.setAudioLevels",
}  # fmt: skip
EVENTS = {
    "notification", "room.created", "peer.joined", "peer.closed", "transport.closed",
    "transport.iceState", "transport.dtlsState", "room.closed",
    "room.audioLevels", "room.activeSpeaker", "rtpStreamer.closed",
}  # fmt: skip


@pytest.mark.parametrize("name", ["control", "protocol"])
def test_each_document_is_a_valid_json_schema(name: str) -> None:
    document = schemas.load(name)
    Draft202012Validator.check_schema(document)
    for definition in document["$defs"].values():
        Draft202012Validator.check_schema(definition)


def test_every_method_of_the_servers_dispatch_table_has_a_schema() -> None:
    served = set(Server._methods) | set(APP_ACTIONS)
    assert served - schemas.control_methods() == set()
    # Nothing schema'd that nobody serves, but the agreed additions.
    assert schemas.control_methods() - served <= NEW_API


def test_every_event_has_a_schema() -> None:
    assert schemas.control_events() == EVENTS


def test_every_protocol_message_has_a_schema() -> None:
    assert schemas.protocol_messages("request") == set(REQUESTS)
    assert schemas.protocol_messages("response") == set(REQUESTS)
    assert schemas.protocol_messages("notification") == set(NOTIFICATIONS) | SERVER_NOTIFICATIONS


def test_every_message_of_the_recorded_v2_session_matches_the_protocol_schema() -> None:
    """What the real mediasoup 2.6.19 sent (tests/protocol/v2_recorded) is what the schema
    describes: the schema is v2's, not only Tureen's."""
    checker = MessageChecker()
    steps = json.loads(RECORDED.read_text())["steps"]
    problems: list[str] = []
    checked = 0
    for step in steps:
        message = step.get("message")
        if message is not None:
            kind = "notification" if message.get("notification") else "request"
            problems += checker.errors("protocol", f"{message['method']}.{kind}", message)
            if kind == "request" and "error" not in step:
                response = {} if step.get("responseUndefined") else step["response"]
                problems += checker.errors("protocol", f"{message['method']}.response", response)
        for item in step["notifications"]:
            note = item["notification"]
            problems += checker.errors("protocol", f"{note['method']}.notification", note)
            checked += 1
    assert checked > 30
    assert problems == []


def test_the_checks_refuse_what_the_reference_does_not_describe() -> None:
    """The schemas are strict where it matters: absent vs null, {} vs null, extra keys."""
    checker = MessageChecker()
    note = {"method": "closed", "target": "peer", "notification": True}
    assert checker.errors("protocol", "closed.notification", note) == []
    assert checker.errors("protocol", "closed.notification", {**note, "appData": None}) == []  # any JSON
    assert checker.errors("protocol", "closed.notification", {**note, "extra": 1})
    assert checker.errors("protocol", "createProducer.response", {}) == []
    assert checker.errors("protocol", "createProducer.response", None)
    assert checker.errors("protocol", "enableConsumer.response", {"paused": False, "preferredProfile": "default"})
    assert checker.errors("control", "reply", {"id": 1, "ok": False, "error": {"code": "nope", "message": ""}})
    assert checker.errors("control", "no.such.params", {}) == ["no schema 'no.such.params' in control.json"]


def test_the_suite_hook_flags_a_reply_that_does_not_match() -> None:
    """tests/schema_check.py: an accepted request the schema refuses, and a reply whose data
    does not match, are both recorded as violations (and fail the test that saw them)."""
    import schema_check

    class FakeClient:
        def send(self, request_id: int, method: str, params: dict) -> bytes:
            return schema_check._encode_request(request_id, method, params)

        def receive(self, frame: bytes) -> dict:
            return schema_check._decode(frame)

    fake = FakeClient()
    fake.send(1, "server.ping", {})
    fake.receive(orjson.dumps({"id": 1, "ok": True, "data": {"pong": "yes"}}))
    fake.send(2, "room.close", {})  # no roomId: the schema refuses it
    fake.receive(orjson.dumps({"id": 2, "ok": True, "data": None}))
    fake.receive(orjson.dumps({"event": "room.closed"}))  # no roomId
    found = list(schema_check.violations)
    schema_check.violations.clear()
    assert len(found) == 3, found
    assert "server.ping.data" in found[0]
    assert "accepted a room.close request that the schema refuses" in found[1]
    assert "event.room.closed" in found[2]


@pytest.mark.parametrize(
    ("change", "where"),
    [
        (lambda p: p["encodings"][0].pop("ssrc"), "an encoding without its ssrc"),
        (lambda p: p["encodings"][0].update(ssrc=0), "ssrc 0"),
        (lambda p: p["codecs"][0].pop("name"), "a codec without its name"),
        (lambda p: p["codecs"][0].update(payloadType=128), "payload type 128"),
        (lambda p: None, "nothing changed"),
        (lambda p: p["encodings"][0].update(rtx={}), "an rtx without its ssrc (v2: optional)"),
        (lambda p: p["encodings"][0].update(rtx={"ssrc": None}), "an rtx ssrc null"),
        (lambda p: p["encodings"][0].update(rtx={"ssrc": 2222}), "an rtx ssrc"),
        (lambda p: p["encodings"][0].update(rtx={"ssrc": 0}), "rtx ssrc 0"),
        (lambda p: p["encodings"][0].update(rtx={"ssrc": "2222"}), "rtx ssrc a string"),
        (lambda p: p["encodings"][0].update(rtx=[]), "rtx not an object"),
    ],
)
def test_producer_rtp_parameters_the_schema_accepts_are_what_the_server_accepts(change, where: str) -> None:
    """The reference's table of producerRtpParameters comes from the schema: a key the server
    requires must not read "optional" there (`encodings[].ssrc`, `codecs[].name` did)."""
    from tureen.shared.errors import ProtocolError
    from tureen.shared.rtp.capabilities import producer_mapping, room_rtp_capabilities

    room = room_rtp_capabilities([{"kind": "video", "name": "VP8", "clockRate": 90000}])
    params = {
        "codecs": [{"name": "VP8", "mimeType": "video/VP8", "clockRate": 90000, "payloadType": 96}],
        "encodings": [{"ssrc": 1111}],
    }
    change(params)
    schema_ok = MessageChecker().errors("protocol", "producerRtpParameters", params) == []
    try:
        producer_mapping(room, "video", params)
        server_ok = True
    except ProtocolError:
        server_ok = False
    assert schema_ok == server_ok, f"{where}: schema {'accepts' if schema_ok else 'refuses'}, server does not agree"
