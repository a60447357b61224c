"""A Room in memory on fake workers (fake_worker.py), driven through its public entry points
only: the constructor, start/submit (the mailbox), handle_client_message, app_action,
on_worker_event, submit_worker_death, close and dump, which is what supervisor/server.py
calls. Every message goes through the mailbox as the server submits it.

`refused(...)` is the property every error test checks: the message fails with the given
code and words, and the room (dump()), every fake worker's tables and the notifications are
as they were.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
from typing import Any

import pytest
from fake_worker import FakeWorkers
from fuzz import shapes
from tureen.shared import contract as c
from tureen.shared.errors import ProtocolError
from tureen.supervisor.quotas import Quotas
from tureen.supervisor.room import Room

ROOM_TARGET = ("queryRoom", "join")
_ids = itertools.count(1)


def new_id() -> int:
    return next(_ids)


def audio_parameters(ssrc: int) -> dict[str, Any]:
    return {**copy.deepcopy(shapes.AUDIO_PRODUCER), "encodings": [{"ssrc": ssrc}]}


def video_parameters(ssrc: int, rtx: int | None = None) -> dict[str, Any]:
    encoding: dict[str, Any] = {"ssrc": ssrc}
    if rtx is not None:
        encoding["rtx"] = {"ssrc": rtx}
    return {**copy.deepcopy(shapes.VIDEO_PRODUCER), "encodings": [encoding]}


def simulcast_parameters(base: int) -> dict[str, Any]:
    encodings = [
        {"ssrc": base + 2 * i, "rtx": {"ssrc": base + 2 * i + 1}, "profile": p}
        for i, p in enumerate(("low", "medium", "high"))
    ]
    return {**copy.deepcopy(shapes.VIDEO_PRODUCER), "encodings": encodings}


class MemoryRoom:
    """One Room on FakeWorkers, and the calls a test makes on it."""

    def __init__(
        self, workers: int = 1, quotas: Quotas | None = None, app_data: Any = None, services: FakeWorkers | None = None
    ) -> None:
        self.services = services or FakeWorkers(workers)
        self.room = Room("r1", copy.deepcopy(shapes.MEDIA_CODECS), self.services, app_data=app_data, quotas=quotas)
        self.room.start()

    # -- entry points, through the mailbox ---------------------------------------------------

    async def request(self, peer: str | None, method: str, **data: Any) -> Any:
        return await self.send(peer, method, data, notification=False)

    async def notify(self, peer: str | None, method: str, **data: Any) -> None:
        await self.send(peer, method, data, notification=True)

    async def send(self, peer: Any, method: str, data: dict[str, Any], *, notification: bool) -> Any:
        message: dict[str, Any] = {"method": method, "target": "room" if method in ROOM_TARGET else "peer", **data}
        if notification:
            message["notification"] = True
        return await self.raw(peer, message, notification=notification)

    async def raw(self, peer: Any, message: Any, *, notification: bool) -> Any:
        room = self.room
        return await asyncio.wait_for(
            room.submit(lambda: room.handle_client_message(peer, message, notification=notification)), 5
        )

    async def action(self, action: str, **msg: Any) -> Any:
        room = self.room
        return await asyncio.wait_for(room.submit(lambda: room.app_action(action, msg)), 5)

    async def event(self, event: c.Event) -> None:
        """A worker's event, over the wire and into the mailbox as the server routes it."""
        room, decoded = self.room, self.services.event_through_wire(event)
        assert self.services.owners.get(decoded.subject() or -1) in (room, None)
        await asyncio.wait_for(room.submit(lambda: room.on_worker_event(decoded)), 5)

    async def worker_died(self, index: int) -> None:
        self.services.kill(index)
        await asyncio.wait_for(self.room.submit_worker_death(index), 5)

    async def close(self) -> None:
        room = self.room
        if room.closed:
            return
        await asyncio.wait_for(room.submit(room.close), 5)

    def dump(self) -> dict[str, Any]:
        return copy.deepcopy(self.room.dump())

    # -- the common steps --------------------------------------------------------------------

    async def join(self, name: str, *, spy: bool = False, app_data: Any = None, caps: Any = None) -> Any:
        return await self.request(
            None, "join", peerName=name, rtpCapabilities=caps or shapes.JOIN_CAPS, spy=spy, appData=app_data
        )

    async def webrtc(self, peer: str, direction: str, *, dtls: bool = False, **extra: Any) -> int:
        tid = new_id()
        data: dict[str, Any] = {"id": tid, "direction": direction, "options": {}, **extra}
        if dtls:
            data["dtlsParameters"] = shapes.DTLS_PARAMETERS
        await self.request(peer, "createTransport", **data)
        return tid

    async def plain(self, peer: str, direction: str, port: int = 5004) -> int:
        tid = new_id()
        await self.request(
            peer, "createTransport", id=tid, direction=direction, options={},
            plainRtpParameters={"ip": "127.0.0.1", "port": port},
        )  # fmt: skip
        return tid

    async def produce(self, peer: str, transport: int, kind: str = "audio", *, paused: bool = False, **extra: Any) -> int:
        pid = new_id()
        ssrc = 10_000 + 10 * pid
        params = audio_parameters(ssrc) if kind == "audio" else video_parameters(ssrc, ssrc + 1)
        extra.setdefault("rtpParameters", params)
        await self.request(peer, "createProducer", id=pid, kind=kind, transportId=transport, paused=paused, **extra)
        return pid

    def consumer_of(self, peer: str, producer: int) -> int:
        """The id of `peer`'s consumer of `producer` (from the room's dump)."""
        (entry,) = [x for p in self.room.dump()["peers"] if p["name"] == peer for x in p["consumers"] if x["producerId"] == producer]
        return int(entry["id"])

    def worker_id(self, peer: str, kind: str, oid: int) -> int:
        """The worker-global id of `peer`'s transport / producer / consumer `oid`."""
        (peer_dump,) = [p for p in self.room.dump()["peers"] if p["name"] == peer]
        (entry,) = [x for x in peer_dump[kind] if x["id"] == oid]
        return int(entry["workerId"])

    # -- what happened -----------------------------------------------------------------------

    def mark(self) -> tuple[int, int]:
        return len(self.services.commands), len(self.services.emitted)

    def sent(self, mark: tuple[int, int]) -> list[tuple[int, str]]:
        return self.services.sent(mark[0])

    def commands(self, mark: tuple[int, int]) -> list[c.Command]:
        return [cmd for _, cmd in self.services.commands[mark[0] :]]

    def notified(self, mark: tuple[int, int], peer: str | None = None) -> list[dict[str, Any]]:
        return self.services.notifications(peer, mark[1])

    def lifecycle(self, mark: tuple[int, int]) -> list[dict[str, Any]]:
        return [e for e in self.services.emitted[mark[1] :] if e.get("event") != "notification"]

    async def refused(self, call: Any, code: str, *words: str) -> ProtocolError:
        """`call` (a coroutine) fails with `code`, its message says each of `words`, and
        nothing changed: room, workers' tables, notifications."""
        before, tables, emitted = self.dump(), self.services.tables(), len(self.services.emitted)
        with pytest.raises(ProtocolError) as info:
            await call
        error = info.value
        assert error.code == code, f"{error.code}: {error.message}"
        for word in words:
            assert word.lower() in error.message.lower(), error.message
        assert self.dump() == before, f"{error.message!r} changed the room"
        assert self.services.tables() == tables, f"{error.message!r} changed a worker"
        assert self.services.emitted[emitted:] == [], f"{error.message!r} notified"
        return error


def methods(notes: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(n["to"], n["method"]) for n in notes]


class Call:
    """alice sends video on `send` (producer `pid`), bob receives it on `recv` (consumer
    `cid`, enabled), carol joined and has consumer `carol_cid` (not enabled)."""

    def __init__(self, mem: MemoryRoom) -> None:
        self.mem = mem

    async def setup(self) -> Call:
        mem = self.mem
        await mem.join("alice")
        await mem.join("bob")
        await mem.join("carol")
        self.send = await mem.webrtc("alice", "send")
        self.recv = await mem.webrtc("bob", "recv")
        self.bob_send = await mem.webrtc("bob", "send")
        self.pid = await mem.produce("alice", self.send, "video")
        self.cid = mem.consumer_of("bob", self.pid)
        self.carol_cid = mem.consumer_of("carol", self.pid)
        await mem.request("bob", "enableConsumer", id=self.cid, transportId=self.recv, paused=False)
        self.gid = mem.worker_id("alice", "producers", self.pid)
        self.cgid = mem.worker_id("bob", "consumers", self.cid)
        return self

    @property
    def worker(self) -> Any:
        return self.mem.services.workers[0]
