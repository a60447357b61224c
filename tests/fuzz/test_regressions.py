"""Every failure the fuzz targets found, as a test of its own (docs/fuzzing.md: how a crash
becomes a test). Each input also sits in tests/fuzz/corpus/<target>/crash-*, replayed by
test_fuzz.py; the tests here check the behaviour at the level of the fix, through the real
parts where the fix lives."""

from __future__ import annotations

import asyncio

import orjson
import pytest
import zmq
import zmq.asyncio
from conftest import RoomDriver
from support import ServerProcess, fake_worker_link

from . import shapes
from .harness import corpus_files, json_text
from .room import fuzz_one as room_fuzz_one

pytestmark = pytest.mark.timeout(60)


def _deep(levels: int) -> object:
    value: object = "x"
    for _ in range(levels):
        value = [value]
    return value


async def _raw_request(endpoint: str, text: bytes) -> dict:
    """One control request sent as raw JSON text (TureenClient cannot encode what orjson
    cannot: a client in another language can), its reply within 10 s."""
    ctx = zmq.asyncio.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.linger = 0
    try:
        sock.connect(endpoint)
        await sock.send(text)
        return orjson.loads(await asyncio.wait_for(sock.recv(), 10.0))
    finally:
        sock.close()
        ctx.term()


async def _worker_transports(room: RoomDriver) -> int:
    info = await room.client.server_info()
    dumps = [await room.client.dump_worker(w["index"]) for w in info["workers"]]
    return sum(len(d["transports"]) for d in dumps)


async def test_transport_whose_dtls_parameters_cannot_reach_the_worker_is_refused_and_not_left_behind(
    server: ServerProcess, room: RoomDriver
) -> None:
    """Found by the room target (crash-createTransport-deep-dtlsParameters): createTransport
    with dtlsParameters nested deeper than orjson encodes (254 levels; it decodes 1024) made
    the worker create the transport, then the worker link failed to encode setRemoteDtls
    with a TypeError the room's undo (`except ProtocolError`) did not catch: an `internal`
    reply, and the transport with its UDP port left on the worker, unknown to the supervisor
    (one leaked port per request). The control API now refuses such a message at the door
    (wire.MAX_DEPTH); this holds the whole path to it, and the test below the link itself."""
    await room.join("alice")
    before = await _worker_transports(room)
    request = {
        "method": "createTransport", "target": "peer", "id": 4321, "direction": "send",
        "options": {"tcp": False},
        "dtlsParameters": {**shapes.DTLS_PARAMETERS, "x": _deep(300)},
    }  # fmt: skip
    text = json_text({"id": 7, "method": "room.request", "roomId": room.id, "peerName": "alice", "request": request})
    reply = await _raw_request(server.endpoint, text)
    assert reply["ok"] is False and reply["error"]["code"] == "bad_request", reply
    assert "nested" in reply["error"]["message"], reply
    assert await _worker_transports(room) == before
    dump = await room.action("room.dump")
    (alice,) = dump["peers"]
    assert alice["transports"] == []


@pytest.mark.parametrize(
    "path", [p for p in corpus_files("room") if p.name.startswith("crash-")], ids=lambda p: p.name
)
def test_room_crash_input(path) -> None:
    """The room target's crash inputs, one test each (test_fuzz.py replays them too)."""
    room_fuzz_one(path.read_bytes())


@pytest.mark.parametrize("profile", ["cm", "gcm"])
def test_failed_srtp_copies_are_taken_back_off_the_octets_they_added(profile: str) -> None:
    """Found by the demux target (crash-srtp-consumer-send-refused), then by the fanout
    target's refused-srtp consumers: when sendmmsg refused an SRTP copy, SendBatch took the
    protected length (the SRTP tag included) back off the consumer's octets, which had been
    counted with the plaintext length: octets drifted down by the tag per lost copy and, with
    the native build (unsigned counters), went below zero with an OverflowError out of the
    forwarder's after_drain. The native core takes back what it counted; both must agree."""
    from tureen.workers import native

    from .fanout import plan, run

    if not native.available():
        pytest.skip(native.WHY_NOT)
    kind = fanout_kinds().index(f"refused-{profile}")
    # One consumer of that kind; two drains of two 200-byte packets each (plan()'s layout:
    # size - 12 as u16, b0, b1, seq, ts, payload). The first flush goes out and draws the
    # ICMP port unreachable; the kernel refuses the next flush's copies.
    packet = (188).to_bytes(2, "big") + bytes((0x80, 96, 0, 1)) + bytes(4) + bytes(188)
    drain = bytes((0, 1)) + packet * 2
    data = bytes((0, kind)) + bytes(7) + bytes((1,)) + drain * 2
    session = plan(data)
    assert session["consumers"][0]["kind"] == f"refused-{profile}"
    python = run("python", session)
    packets, octets, errors, *_ = python[("counters", 0)]
    assert errors >= 1 and octets == 200 * packets, python[("counters", 0)]
    assert run("native-sendmmsg", session)[("counters", 0)] == python[("counters", 0)]


def fanout_kinds() -> tuple[str, ...]:
    from .fanout import KINDS

    return KINDS


def _nested_object(levels: int) -> object:
    value: object = "x"
    for _ in range(levels):
        value = {"a": value}
    return value


async def test_deeply_nested_codec_parameters_and_rtcp_are_refused_and_change_nothing(
    server: ServerProcess, room: RoomDriver
) -> None:
    """Found by the capabilities target (crash-deep-parameters): codec `parameters` or a
    producer's `rtcp` nested ~600 levels (orjson decodes 1024) made the deep copies of
    shared/rtp/capabilities.py raise RecursionError instead of ProtocolError: a join got an
    `internal` reply, and a createProducer was committed halfway (the producer on the worker
    and in the room, the other peers' consumers not made, no reply). The control API now
    refuses such messages first (12 levels outside appData); the capabilities target's
    crash-deep-* inputs hold the library's own bound (capabilities.MAX_NESTING)."""
    await room.join("bob")
    deep = _nested_object(600)
    join_caps = orjson.loads(orjson.dumps(room.peer_caps))
    join_caps["codecs"][0]["parameters"] = {"x": "PLACEHOLDER"}
    text = json_text({"id": 8, "method": "room.request", "roomId": room.id, "peerName": "carol",
                      "request": {"method": "join", "target": "room", "peerName": "carol",
                                  "rtpCapabilities": join_caps}})  # fmt: skip
    text = text.replace(b'"PLACEHOLDER"', json_text(deep))
    reply = await _raw_request(server.endpoint, text)
    assert reply["ok"] is False and reply["error"]["code"] == "bad_request", reply
    assert "nested" in reply["error"]["message"]

    await room.join("alice")
    await room.req("alice", "createTransport", id=77, direction="send", options={},
                   plainRtpParameters={"ip": "127.0.0.1", "port": 9})  # fmt: skip
    before = await room.action("room.dump")
    rtp_parameters = {**shapes.VIDEO_PRODUCER, "rtcp": {"cname": "c", "x": deep}}
    request = {"method": "createProducer", "target": "peer", "id": 78, "kind": "video",
               "transportId": 77, "rtpParameters": rtp_parameters, "paused": False}  # fmt: skip
    text = json_text({"id": 9, "method": "room.request", "roomId": room.id, "peerName": "alice", "request": request})
    reply = await _raw_request(server.endpoint, text)
    assert reply["ok"] is False and reply["error"]["code"] == "bad_request", reply
    assert await room.action("room.dump") == before
    info = await room.client.server_info()
    dumps = [await room.client.dump_worker(w["index"]) for w in info["workers"]]
    assert not any(d["producers"] for d in dumps)


async def test_the_worker_link_refuses_parameters_it_cannot_encode_with_a_protocol_error(tmp_path) -> None:
    """The fix of the createTransport finding, where it lives: since the control API refuses
    messages nested past wire.MAX_DEPTH at the door, no client reaches this any more, but a
    caller of WorkerLink.request (a room's undo path is written for ProtocolError) must get a
    ProtocolError, never orjson's TypeError, and nothing must go to the worker."""
    from tureen.shared.contract import TransportSetRemoteDtls
    from tureen.shared.errors import ProtocolError

    async with fake_worker_link(tmp_path) as (link, worker):
        with pytest.raises(ProtocolError) as err:
            command = TransportSetRemoteDtls(transportId=1, dtlsParameters={"role": "client", "x": _deep(300)})
            await link.request(command, timeout=2.0)
        assert err.value.code == "bad_request" and "nested" in err.value.message
        assert await worker.poll(200) == 0  # nothing was sent
        assert not link._pending
