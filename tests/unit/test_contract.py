"""The supervisor <-> worker contract (shared/contract.py): every command and event goes to
the wire and back unchanged; a missing, renamed or mistyped field fails decoding with a
ProtocolError naming it; the worker's dispatch table and the contract list the same
commands, so the two processes cannot drift apart unnoticed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import orjson
import pytest
from tureen.shared import contract as c
from tureen.shared import wire
from tureen.shared.config import Config
from tureen.shared.errors import ProtocolError

DTLS = {"role": "client", "fingerprints": [{"algorithm": "sha-256", "value": "AB:CD"}]}

# One of each, every field given a value other than its default (so a field the wire form
# loses shows up as a difference).
EXAMPLES: dict[str, c.Command | c.Event] = {
    x.name(): x
    for x in (
        c.WorkerPing(),
        c.WorkerInfo(),
        c.WorkerDump(),
        c.WorkerClose(),
        c.WorkerSetLogLevel(level="debug", logger="tureen.worker"),
        c.StatsGet(transportIds=[1, 2], producerIds=[3], consumerIds=[4, 5, 6]),
        c.TransportCreatePlain(
            transportId=7, remoteIp="127.0.0.1", remotePort=5004, comedia=True, room="r1", peer="alice", clientId=3
        ),
        c.TransportConnectPlain(transportId=7, remoteIp="10.0.0.2", remotePort=5006),
        c.TransportCreateWebRtc(
            transportId=8,
            udp=False,
            tcp=True,
            preferIPv4=True,
            preferIPv6=True,
            preferUdp=True,
            preferTcp=True,
            dtlsParameters=DTLS,
            room="r1",
            peer="bob",
            clientId=4,
        ),
        c.TransportSetRemoteDtls(transportId=8, dtlsParameters=DTLS),
        c.TransportRestartIce(transportId=8),
        c.TransportClose(transportId=8),
        c.ProducerCreate(
            producerId=9,
            kind="video",
            transportId=8,
            streams=[
                c.StreamSpec(ssrc=1111, rtxSsrc=1112, profile="low"),
                c.StreamSpec(ssrc=2222, rtxSsrc=2223, profile="high"),
            ],
            paused=True,
            payloadTypes=[(96, 101), (97, 102)],
            headerExtensionIds=[(3, 5)],
            codecs=[c.CodecSpec(payloadType=101, mimeType="video/VP8", clockRate=90000, rtxPayloadType=102, nack=True)],
            room="r1",
            peer="alice",
            clientId=5,
        ),
        c.ProducerUpdate(
            producerId=9,
            kind="audio",
            transportId=None,
            streams=[c.StreamSpec(ssrc=3333, rtxSsrc=None, profile="medium")],
            paused=True,
            payloadTypes=[(111, 100)],
            headerExtensionIds=[(1, 1)],
            codecs=[c.CodecSpec(payloadType=100, mimeType="audio/opus", clockRate=48000)],
            room="r2",
            peer="carol",
            clientId=8,
        ),
        c.ProducerPause(producerId=9),
        c.ProducerResume(producerId=9),
        c.ProducerClose(producerId=9),
        c.ProducerRequestKeyFrame(producerId=9, ssrc=1111),
        c.ProducerNack(producerId=9, ssrc=1111, seqs=[1, 2, 65535]),
        c.ProducerGetAudioLevels(producerIds=[9, 12]),
        c.TransportSetMaxBitrate(transportId=8, bitrate=300_000),
        c.ConsumerRequestKeyFrame(consumerId=10),
        c.ConsumerCreate(
            consumerId=10,
            producerId=9,
            transportId=8,
            kind="video",
            ssrc=4444,
            rtxSsrc=4445,
            paused=True,
            preferredProfile="medium",
            cname="alice-cname",
            room="r1",
            peer="bob",
            clientId=6,
        ),
        c.ConsumerPause(consumerId=10),
        c.ConsumerResume(consumerId=10),
        c.ConsumerClose(consumerId=10),
        c.ConsumerSetPreferredProfile(consumerId=10, profile="low"),
        c.PipeOpen(producerId=9, workerIndex=2),
        c.PipeClose(producerId=9, workerIndex=2),
        c.PipeCloseTo(workerIndex=2),
        c.LegAddress(),
        c.LegReceive(legId=5, producerId=9, key="ab" * 28, ip="192.0.2.10", port=40000),
        c.LegSend(legId=5, producerId=9, key="ab" * 28, ip="192.0.2.11", port=40002),
        c.LegClose(legId=5),
        c.ProducerInterrupt(producerId=9),
        c.WorkerReady(index=3, pid=4242),
        c.TransportClosed(transportId=8, reason="ICE disconnected"),
        c.TransportIceState(transportId=8, state="completed"),
        c.TransportDtlsState(transportId=8, state="connected"),
        c.ConsumerKeyFrameRequest(consumerId=10, producerId=9, ssrc=1111),
        c.ConsumerNack(consumerId=10, producerId=9, ssrc=1111, seqs=[7, 8]),
        c.ConsumerEffectiveProfile(consumerId=10, profile="high"),
    )
}
COMMAND_EXAMPLES = [x for x in EXAMPLES.values() if isinstance(x, c.Command)]
EVENT_EXAMPLES = [x for x in EXAMPLES.values() if isinstance(x, c.Event)]


def through_wire(message: c.Command | c.Event, **envelope: Any) -> dict[str, Any]:
    """What the other process reads: the bytes of the wire form, parsed again."""
    return wire.decode(wire.encode({**envelope, **message.to_wire()}))


def decode(message: c.Command | c.Event, fields: dict[str, Any]) -> Any:
    if isinstance(message, c.Command):
        return c.decode_command(fields)
    return c.decode_event(fields)


def wrong_type(value: Any) -> Any:
    """A JSON value of another type than `value`'s."""
    if value is None:  # a nullable field: null is fine, a string is not
        return "null"
    if isinstance(value, bool):
        return "yes"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return 7
    if isinstance(value, list):
        return "not a list"
    if isinstance(value, dict):
        return [1]
    raise AssertionError(f"no wrong type for {value!r}")


def test_every_command_and_event_has_an_example() -> None:
    assert set(EXAMPLES) == set(c.COMMANDS) | set(c.EVENTS)
    assert not set(c.COMMANDS) & set(c.EVENTS)


def test_every_example_sets_every_optional_field() -> None:
    """So a field added to the contract needs an example value (and so gets round-tripped)."""
    # udp and tcp cannot both be off; the example turns udp off.
    exempt = {("transport.createWebRtc", "tcp")}
    for name, message in EXAMPLES.items():
        for info in msgspec.structs.fields(message):
            if info.required or (name, info.name) in exempt:
                continue
            default = info.default_factory() if info.default is msgspec.NODEFAULT else info.default
            assert getattr(message, info.name) != default, f"{name}: give {info.name} a non-default value"


@pytest.mark.parametrize("message", COMMAND_EXAMPLES, ids=lambda x: x.name())
def test_command_round_trips(message: c.Command) -> None:
    frame = through_wire(message, id=12, deadline=123.5)
    assert frame["method"] == message.name()
    assert c.decode_command(frame) == message
    assert type(message).from_wire(frame) == message


@pytest.mark.parametrize("message", EVENT_EXAMPLES, ids=lambda x: x.name())
def test_event_round_trips(message: c.Event) -> None:
    frame = through_wire(message)
    assert frame["event"] == message.name()
    assert c.decode_event(frame) == message


def field_cases() -> list[tuple[c.Command | c.Event, str]]:
    return [(x, f) for x in EXAMPLES.values() for f in x.__struct_fields__]


@pytest.mark.parametrize("message,field", field_cases(), ids=lambda v: v if isinstance(v, str) else v.name())
def test_a_renamed_or_mistyped_field_fails_naming_it(message: c.Command | c.Event, field: str) -> None:
    frame = through_wire(message)
    value = frame[field]
    # Renamed (a typo on one side): the unknown name is refused, a required one is missing.
    renamed = {k if k != field else field + "Typo": v for k, v in frame.items()}
    with pytest.raises(ProtocolError) as info:
        decode(message, renamed)
    assert info.value.code == "bad_request"
    assert message.name() in info.value.message
    assert field in info.value.message, info.value.message
    # Mistyped.
    with pytest.raises(ProtocolError) as info:
        decode(message, {**frame, field: wrong_type(value)})
    assert info.value.code == "bad_request"
    assert field in info.value.message, info.value.message


def required_fields(cls: type[msgspec.Struct]) -> tuple[str, ...]:
    return tuple(info.name for info in msgspec.structs.fields(cls) if info.required)


def test_a_missing_required_field_fails_naming_it() -> None:
    checked = 0
    for message in EXAMPLES.values():
        for field in required_fields(type(message)):
            frame = through_wire(message)
            del frame[field]
            with pytest.raises(ProtocolError) as info:
                decode(message, frame)
            assert info.value.code == "bad_request"
            assert f"`{field}`" in info.value.message, info.value.message
            checked += 1
    assert checked >= 30
    # Required and nullable: producer.create's transportId (null = a piped copy).
    assert "transportId" in required_fields(c.ProducerCreate)


def test_defaults_are_what_the_docs_say() -> None:
    webrtc = c.decode_command({"method": "transport.createWebRtc", "transportId": 1})
    assert webrtc.options() == c.WEBRTC_OPTIONS
    plain = c.decode_command({"method": "transport.createPlain", "transportId": 1})
    assert (plain.remoteIp, plain.remotePort, plain.comedia) == (None, None, False)
    consumer = c.decode_command(
        {"method": "consumer.create", "consumerId": 1, "producerId": 2, "transportId": 3, "kind": "audio", "ssrc": 5}
    )
    assert (consumer.rtxSsrc, consumer.paused, consumer.preferredProfile) == (None, False, "default")
    update = c.decode_command(
        {"method": "producer.update", "producerId": 1, "kind": "audio", "transportId": None, "streams": [{"ssrc": 5}]}
    )
    assert update.paused is None  # absent: the producer's pause stays as it is
    assert c.decode_command({"method": "stats.get"}) == c.StatsGet(transportIds=[], producerIds=[], consumerIds=[])


def producer(**over: Any) -> dict[str, Any]:
    return {**through_wire(EXAMPLES["producer.create"]), **over}


@pytest.mark.parametrize(
    "fields,words",
    [
        ({"method": "transport.createPlain", "transportId": True}, "transportId"),
        ({"method": "transport.createPlain", "transportId": -1}, "transportId"),
        ({"method": "transport.createPlain", "transportId": 1 << 32}, "transportId"),
        ({"method": "transport.createPlain", "transportId": 1.0}, "transportId"),
        ({"method": "transport.createPlain", "transportId": 1, "remoteIp": "127.0.0.1"}, "remotePort"),
        ({"method": "transport.createPlain", "transportId": 1, "remotePort": 5}, "remoteIp"),
        ({"method": "transport.createPlain", "transportId": 1, "remoteIp": "::1", "remotePort": 5}, "remoteIp"),
        ({"method": "transport.createPlain", "transportId": 1, "remoteIp": "1.2.3.4", "remotePort": 0}, "remotePort"),
        ({"method": "transport.connectPlain", "transportId": 1, "remoteIp": "nowhere", "remotePort": 5}, "remoteIp"),
        ({"method": "transport.createWebRtc", "transportId": 1, "udp": False, "tcp": False}, "udp and tcp"),
        ({"method": "transport.createWebRtc", "transportId": 1, "udp": None}, "udp"),
        ({"method": "transport.setRemoteDtls", "transportId": 1, "dtlsParameters": None}, "dtlsParameters"),
        (producer(kind="data"), "kind"),
        (producer(streams=[]), "streams"),
        (producer(streams=[{"ssrc": 1}, {"ssrc": 1, "profile": "low"}]), "ssrc 1 appears twice"),
        (producer(streams=[{"ssrc": 1, "rtxSsrc": 1}]), "ssrc 1 appears twice"),
        (producer(streams=[{"ssrc": 1}, {"ssrc": 2}]), "profile 'default' appears twice"),
        (producer(streams=[{"ssrc": 1, "profile": "best"}]), "streams[0].profile"),
        (producer(streams=[{"ssrc": 1, "layer": 2}]), "layer"),
        (producer(payloadTypes=[]), "payloadTypes"),
        (producer(payloadTypes=[[100, 200]]), "payloadTypes[0][1]"),
        (producer(payloadTypes=[[100]]), "payloadTypes[0]"),
        (producer(payloadTypes=[[100, 101], [100, 102]]), "payloadTypes maps 100 twice"),
        (producer(headerExtensionIds=[[0, 1]]), "headerExtensionIds[0][0]"),
        (producer(codecs=[{"payloadType": 1, "mimeType": "video/VP8"}]), "clockRate"),
        (producer(codecs=[{"payloadType": 1, "mimeType": 5, "clockRate": 90000}]), "codecs[0].mimeType"),
        ({"method": "producer.nack", "producerId": 1, "ssrc": 2, "seqs": []}, "seqs"),
        ({"method": "producer.nack", "producerId": 1, "ssrc": 2, "seqs": [70000]}, "seqs[0]"),
        ({"method": "producer.nack", "producerId": 1, "ssrc": 2, "seqs": list(range(c.MAX_NACK_SEQS + 1))}, "seqs"),
        (
            {"method": "consumer.create", "consumerId": 1, "producerId": 2, "transportId": 3, "kind": "video", "ssrc": 5, "rtxSsrc": 5},
            "rtxSsrc equals ssrc",
        ),
        (
            {"method": "consumer.create", "consumerId": 1, "producerId": 2, "transportId": 3, "kind": "video", "ssrc": 5, "cname": ""},
            "cname",
        ),
        (
            {"method": "consumer.create", "consumerId": 1, "producerId": 2, "transportId": 3, "kind": "video", "ssrc": 5, "cname": "é" * 128},
            "cname",
        ),
        ({"method": "consumer.setPreferredProfile", "consumerId": 1, "profile": "ultra"}, "profile"),
        ({"method": "pipe.open", "producerId": 1, "workerIndex": 70000}, "workerIndex"),
        ({"method": "stats.get", "consumerIds": [True]}, "consumerIds[0]"),
        ({"method": "stats.get", "producerIds": list(range(c.MAX_STATS_IDS + 1))}, "producerIds"),
    ],
)
def test_bad_values_fail_with_what_is_wrong(fields: dict[str, Any], words: str) -> None:
    with pytest.raises(ProtocolError) as info:
        c.decode_command(fields)
    assert info.value.code == "bad_request"
    assert words in info.value.message, info.value.message


def test_unknown_or_missing_method_and_event() -> None:
    with pytest.raises(ProtocolError) as info:
        c.decode_command({"method": "transport.teleport", "transportId": 1})
    assert info.value.code == "unknown_method"
    for method in (None, 7):
        with pytest.raises(ProtocolError) as info:
            c.decode_command({"method": method})
        assert info.value.code == "bad_request"
    with pytest.raises(ProtocolError) as info:
        c.decode_event({"event": "transport.teleported", "transportId": 1})
    assert info.value.code == "bad_request" and "transport.teleported" in info.value.message
    # A frame of one type read as another: the name must match.
    with pytest.raises(ProtocolError):
        c.ProducerCreate.from_wire(through_wire(EXAMPLES["producer.update"]))


def test_the_address_is_normalised_once_and_both_sides_build_the_same_check() -> None:
    # Built by the supervisor or decoded by the worker: the same __post_init__ runs.
    with pytest.raises(ProtocolError) as info:
        c.TransportCreatePlain(transportId=1, remoteIp="::1", remotePort=5)
    assert info.value.code == "bad_request" and "IPv4" in info.value.message
    with pytest.raises(ProtocolError):
        c.TransportCreateWebRtc(transportId=1, udp=False, tcp=False)


def test_undo_of_each_create_closes_what_it_made() -> None:
    undone = {
        name: x.undo() for name, x in EXAMPLES.items() if isinstance(x, c.Command) and x.undo() is not None
    }
    assert undone == {
        "transport.createPlain": c.TransportClose(transportId=7),
        "transport.createWebRtc": c.TransportClose(transportId=8),
        "producer.create": c.ProducerClose(producerId=9),
        "consumer.create": c.ConsumerClose(consumerId=10),
        "pipe.open": c.PipeClose(producerId=9, workerIndex=2),
        "leg.receive": c.LegClose(legId=5),
        "leg.send": c.LegClose(legId=5),
    }


@pytest.mark.parametrize(
    "fields",
    [
        {"key": "AB" * 28},  # upper case: one spelling only
        {"key": "ab" * 27},  # too short for AES-128-GCM key + salt
        {"ip": "::1"},
        {"ip": "not-an-ip"},
        {"legId": 0},
        {"port": 0},
    ],
)
def test_a_bad_leg_command_is_refused_naming_the_field(fields: dict[str, Any]) -> None:
    wire_form = {**c.LegSend(legId=5, producerId=9, key="ab" * 28, ip="192.0.2.11", port=40002).to_wire(), **fields}
    with pytest.raises(ProtocolError) as info:
        c.decode_command(wire_form)
    assert info.value.code == "bad_request" and next(iter(fields)) in info.value.message


def test_events_name_the_object_they_are_about() -> None:
    subjects = {name: x.subject() for name, x in EXAMPLES.items() if isinstance(x, c.Event)}
    assert subjects == {
        "worker.ready": None,
        "transport.closed": 8,
        "transport.iceState": 8,
        "transport.dtlsState": 8,
        "consumer.keyFrameRequest": 10,
        "consumer.nack": 10,
        "consumer.effectiveProfile": 10,
    }


def test_the_worker_handles_exactly_the_contract_commands(tmp_path: Path) -> None:
    from tureen.workers.worker import Worker

    worker = Worker(0, str(tmp_path), Config(), parent_pid=1)
    handled = set(worker._handlers)
    assert handled == set(c.COMMANDS.values())
    assert len(handled) == len(c.COMMANDS)


def test_constants_have_one_home() -> None:
    from tureen.supervisor import consumer, consumer_handlers, transport_handlers, worker_link
    from tureen.workers import router, worker

    assert not hasattr(router, "PROFILES") and not hasattr(worker, "WEBRTC_OPTIONS")
    assert not hasattr(consumer, "PROFILES") and not hasattr(worker_link, "UNDO")
    # The supervisor's users of them (room.py's handlers, moved out of it).
    assert consumer_handlers.PROFILES is c.PROFILES and transport_handlers.WEBRTC_OPTIONS is c.WEBRTC_OPTIONS
    assert worker.control_path is c.control_path
    assert c.control_path("/run/x", 3) == "/run/x/worker-3.ipc"


def test_wire_form_is_plain_json() -> None:
    for message in EXAMPLES.values():
        assert orjson.loads(orjson.dumps(message.to_wire())) == msgspec.json.decode(msgspec.json.encode(message))
