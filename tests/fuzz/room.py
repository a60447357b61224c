"""The Room's handling of arbitrary client messages: supervisor/room.py handle_client_message.

A Room runs in-process on a persistent event loop, its worker requests answered by a real
`Worker` object of workers/worker.py in the same process (its command handlers, real UDP/TCP
sockets on 127.0.0.1; no ZeroMQ), every request and reply passed through the wire encoding
as the worker link does (wire.encode/decode). Each input gets a fresh room with two peers
("alice" sends video on transport 1, has recv transport 2; "bob" has recv transport 3 and a
consumer of alice's producer), then replays up to 8 messages: a valid message of an
input-chosen method edited by the input (harness.mutate), sent as request or notification,
from alice, bob, a stranger or no one. Properties:
- every message either succeeds or raises ProtocolError; nothing else escapes;
- a message that raises ProtocolError leaves room.dump() unchanged, and the worker's
  transports, producers and consumers too; the one exception is v2's rule that a failed
  updateTransport closes the transport it names (then exactly that transport is gone);
- after room.close() the worker holds nothing of the room.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from typing import Any

from tureen.shared.errors import ProtocolError
from tureen.supervisor.room import NOTIFICATIONS, REQUESTS, Room

from . import shapes
from .harness import Draw, mutate, over_the_wire
from .in_process import InProcessWorker

# The Room and Worker log every refusal; thousands of them per second are noise here.
for _name in ("tureen", "tureen.room", "tureen.workers"):
    logging.getLogger(_name).setLevel(logging.CRITICAL)


_LOOP = asyncio.new_event_loop()
_SERVICES = InProcessWorker(_LOOP)


async def _setup(room: Room) -> dict[str, Any]:
    """The two peers of every run; returns the ids a valid message may name."""

    async def req(peer: str | None, method: str, **data: Any) -> Any:
        message = {"method": method, "target": "room" if method in ("join", "queryRoom") else "peer", **data}
        return await room.handle_client_message(peer, message, notification=False)

    await req(None, "join", peerName="alice", rtpCapabilities=shapes.JOIN_CAPS, appData={"n": 1})
    await req("alice", "createTransport", id=1, direction="send", options={"tcp": False},
              dtlsParameters=shapes.DTLS_PARAMETERS)  # fmt: skip
    await req("alice", "createTransport", id=2, direction="recv", options={"tcp": False})
    await req("alice", "createProducer", id=10, kind="video", transportId=1,
              rtpParameters=shapes.VIDEO_PRODUCER, paused=False, appData={"m": "cam"})  # fmt: skip
    await req(None, "join", peerName="bob", rtpCapabilities=shapes.JOIN_CAPS)
    await req("bob", "createTransport", id=3, direction="recv", options={"tcp": False})
    (consumer,) = room.peers["bob"].consumers
    return {"consumer": consumer}


def _templates(ids: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """One valid message per method, naming the objects _setup made."""
    cid = ids["consumer"]
    audio = copy.deepcopy(shapes.AUDIO_PRODUCER)
    return {
        "queryRoom": {},
        "join": {"peerName": "carol", "rtpCapabilities": shapes.JOIN_CAPS, "spy": False, "appData": {}},
        "leave": {"appData": {}},
        "createTransport": {"id": 4, "direction": "send", "options": {"tcp": False, "udp": True},
                            "dtlsParameters": shapes.DTLS_PARAMETERS, "appData": None},
        "updateTransport": {"id": 2, "dtlsParameters": shapes.DTLS_PARAMETERS},
        "restartTransport": {"id": 1},
        "closeTransport": {"id": 2, "appData": None},
        "enableTransportStats": {"id": 1, "interval": 1},
        "disableTransportStats": {"id": 1},
        "createProducer": {"id": 11, "kind": "audio", "transportId": 1, "rtpParameters": audio,
                           "paused": False, "appData": {}},
        "updateProducer": {"id": 10, "rtpParameters": shapes.SIMULCAST_PRODUCER},
        "pauseProducer": {"id": 10, "appData": None},
        "resumeProducer": {"id": 10, "appData": None},
        "closeProducer": {"id": 10, "appData": None},
        "enableProducerStats": {"id": 10, "interval": 1},
        "disableProducerStats": {"id": 10},
        "enableConsumer": {"id": cid, "transportId": 3, "paused": False, "preferredProfile": "high"},
        "pauseConsumer": {"id": cid, "appData": None},
        "resumeConsumer": {"id": cid, "appData": None},
        "setConsumerPreferredProfile": {"id": cid, "profile": "low"},
        "enableConsumerStats": {"id": cid, "interval": 1},
        "disableConsumerStats": {"id": cid},
    }  # fmt: skip


METHODS = sorted(REQUESTS | NOTIFICATIONS)


def _message(draw: Draw, templates: dict[str, dict[str, Any]]) -> tuple[Any, Any, bool]:
    method = draw.choice(METHODS)
    notification = method in NOTIFICATIONS
    if draw.u8() < 12:
        notification = not notification
    peer = draw.choice(("alice", "alice", "bob", "bob", "carol", None, 7))
    target = "room" if method in ("join", "queryRoom") else "peer"
    message: Any = {"method": method, "target": target, **templates[method]}
    if draw.u8() < 224:
        try:
            message = over_the_wire(mutate(message, draw, steps=3))
        except ValueError:  # deeper than the control server decodes: refused there
            message = None
    else:
        message = draw.choice((None, [], "join", 1, {"method": 5}, {"method": "x" * 100}))
    return peer, message, notification


def _transport_ids(dump: dict[str, Any]) -> set[tuple[str, int]]:
    return {(p["name"], t["id"]) for p in dump["peers"] for t in p["transports"]}


async def _run(data: bytes) -> None:
    draw = Draw(data)
    services = _SERVICES
    room = Room("fuzz", shapes.MEDIA_CODECS, services)
    room.start()
    try:
        ids = await room.submit(lambda: _setup(room))
        templates = _templates(ids)
        for _ in range(draw.below(8) + 1):
            if not draw.remaining:
                break
            peer, message, notification = _message(draw, templates)
            before, worker_before = room.dump(), services.worker_state()
            try:
                await room.submit(
                    lambda p=peer, m=message, n=notification: room.handle_client_message(p, m, notification=n)
                )
            except ProtocolError as exc:
                assert exc.code and exc.message
                after = room.dump()
                if after != before:
                    method = message.get("method") if isinstance(message, dict) else None
                    gone = _transport_ids(before) - _transport_ids(after)
                    assert method == "updateTransport" and len(gone) == 1, (
                        f"{exc!r} changed the room: {message!r:.300}"
                    )
                else:
                    assert services.worker_state() == worker_before, (
                        f"{exc!r} changed the worker: {message!r:.300}"
                    )
    finally:
        await room.submit(room.close)
        leftover = services.worker_state()
        # Leave the worker empty for the next input whatever happened, then check.
        for tid in list(services.worker.router.transports):
            services.worker._drop_transport(services.worker.router.transports[tid])
        assert leftover == ([], [], []), f"the closed room left {leftover} on the worker"
        services.events.clear()


def fuzz_one(data: bytes) -> None:
    _LOOP.run_until_complete(_run(data))
