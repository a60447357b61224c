"""Scenarios built on a real Tureen through its public control API only (docs/control-api.md).

Each builder joins peers, creates plain RTP transports whose remote ends are the harness's
own sockets, produces and enables consumers exactly as an application would, and returns the
`Topology` the load tool drives plus the server ports whose drops mean "the forwarder could
not keep up". Nothing here reaches into the server's internals; `room.dump` says where
placement put each peer.
"""

from __future__ import annotations

import asyncio
import itertools
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tureen.shared.client import TureenClient

from .load import AUDIO_SIZE, VIDEO_SIZE, Expect, Stream, Topology, port_of, udp_socket

MEDIA_CODECS: list[dict[str, Any]] = [
    {"kind": "audio", "name": "opus", "clockRate": 48000, "channels": 2},
    {"kind": "video", "name": "VP8", "clockRate": 90000},
]
VIDEO_PT = 96  # what the sender uses; the room maps it to its own (consumers see the room's)
AUDIO_PT = 111
AUDIO_SHARE = 0.2  # audio packets per video packet in a meeting (50 pps next to 250 pps)
CHUNK = 50  # requests in flight at once while building a room


@dataclass
class Built:
    """What a builder made: the load topology and everything that must be closed after."""

    topology: Topology
    input_ports: list[int]
    consumers: int
    workers_used: dict[str, int] = field(default_factory=dict)
    sockets: list[socket.socket] = field(default_factory=list)
    on_close: list[Callable[[], object]] = field(default_factory=list)  # e.g. stop keepalives

    def close_sockets(self) -> None:
        for stop in self.on_close:
            stop()
        for sock in self.sockets:
            sock.close()


def _peer_capabilities(room_caps: dict[str, Any]) -> dict[str, Any]:
    """What mediasoup-client sends in `join`: the room's codecs and header extensions."""
    return {
        "codecs": list(room_caps["codecs"]),
        "headerExtensions": [
            {"kind": e["kind"], "uri": e["uri"], "preferredId": e["preferredId"]}
            for e in room_caps["headerExtensions"]
        ],
        "fecMechanisms": [],
    }


def _rtp_parameters(kind: str, ssrc: int) -> dict[str, Any]:
    if kind == "audio":
        codec = {"name": "opus", "mimeType": "audio/opus", "payloadType": AUDIO_PT,
                 "clockRate": 48000, "channels": 2}
    else:
        # As mediasoup-client sends it: nack listed, so the worker runs its NACK generator.
        codec = {"name": "VP8", "mimeType": "video/VP8", "payloadType": VIDEO_PT, "clockRate": 90000,
                 "rtcpFeedback": [{"type": "nack"}, {"type": "nack", "parameter": "pli"}]}
    return {
        "muxId": "0" if kind == "audio" else "1",
        "codecs": [codec],
        "headerExtensions": [],
        "encodings": [{"ssrc": ssrc}],
        "rtcp": {"cname": "tureen-bench", "reducedSize": True, "mux": True},
    }


def _consumer_keys(data: dict[str, Any]) -> tuple[int, int, int]:
    """(consumer id, its SSRC, its PT) from a newConsumer / join consumer entry."""
    params = data["rtpParameters"]
    return data["id"], params["encodings"][0]["ssrc"], params["codecs"][0]["payloadType"]


class RoomDriver:
    """Protocol messages for one room, as an app relays them for its browsers."""

    def __init__(self, client: TureenClient, room_id: str) -> None:
        self.client = client
        self.room_id = room_id
        self._ids = itertools.count(1000)
        self.caps: dict[str, Any] = {}
        self.ip = "127.0.0.1"  # where our sockets are (benchmarks/hosts.py: a TEST-NET-2 address)

    async def create(self) -> None:
        room = await self.client.create_room(MEDIA_CODECS, room_id=self.room_id)
        self.caps = _peer_capabilities(room["rtpCapabilities"])

    async def req(self, peer: str | None, method: str, **data: Any) -> Any:
        target = "room" if method in ("queryRoom", "join") else "peer"
        return await self.client.peer_request(self.room_id, peer, {"method": method, "target": target, **data})

    async def join(self, name: str, spy: bool = False) -> dict[str, Any]:
        return await self.req(None, "join", peerName=name, rtpCapabilities=self.caps, spy=spy)

    async def plain_transport(self, peer: str, direction: str, remote_port: int) -> tuple[int, int]:
        """(transport id, server port) of a plain transport whose remote is our socket."""
        tid = next(self._ids)
        answer = await self.req(
            peer, "createTransport", id=tid, direction=direction, options={},
            plainRtpParameters={"ip": self.ip, "port": remote_port},
        )
        return tid, answer["plainRtpParameters"]["port"]

    async def produce(self, peer: str, transport_id: int, kind: str, ssrc: int) -> None:
        await self.req(peer, "createProducer", id=next(self._ids), kind=kind, transportId=transport_id,
                       rtpParameters=_rtp_parameters(kind, ssrc), paused=False)

    async def enable(self, peer: str, consumer_id: int, transport_id: int) -> None:
        await self.req(peer, "enableConsumer", id=consumer_id, transportId=transport_id,
                       paused=False, preferredProfile="default")

    async def workers(self) -> dict[str, int]:
        dump = await self.client.dump_room(self.room_id)
        return {p["name"]: p["worker"] for p in dump["peers"]}


async def _gather_chunked(coros: list, chunk: int = CHUNK) -> list:
    results: list = []
    for i in range(0, len(coros), chunk):
        results += await asyncio.gather(*coros[i : i + chunk])
    return results


async def fanout(client: TureenClient, room_id: str, n: int, *, kind: str = "video",
                 away_from_producer: bool = False) -> Built:
    """One producer peer, n spy peers each consuming it over its own plain transport.

    Spies, because they are not announced to each other: n ordinary peers would cost n^2
    newPeer notifications to set up. With `away_from_producer`, consumers are kept only
    when placement put them on another worker than the producer (the cross-worker
    scenario); the others stay joined as idle decoys (no enabled consumer, nothing sent),
    which also steers the next placements away from the producer's worker.
    """
    room = RoomDriver(client, room_id)
    await room.create()
    source = udp_socket()
    sockets = [source]
    ssrc = 0x1000_0001
    await room.join("src")
    send_tid, server_port = await room.plain_transport("src", "send", port_of(source))
    await room.produce("src", send_tid, kind, ssrc)
    producer_worker = (await room.workers())["src"]
    stream = Stream(source, server_port, ssrc, VIDEO_PT if kind == "video" else AUDIO_PT,
                    VIDEO_SIZE if kind == "video" else AUDIO_SIZE, ts_step=3000 if kind == "video" else 960)
    expects: list[Expect] = []
    names = (f"c{i}" for i in itertools.count())
    budget = 4 * n + 20  # bounded: placement that never obliges ends the build with an error
    consumer_workers: set[int] = set()
    while len(expects) < n:
        want = n - len(expects)
        batch = [next(names) for _ in range(want if not away_from_producer else max(want, 4))]
        budget -= len(batch)
        if budget < 0:
            raise RuntimeError(f"placement put no more consumers away from worker {producer_worker}")
        joined = await _gather_chunked([room.join(name, spy=True) for name in batch])
        sinks = [udp_socket() for _ in batch]
        sockets += sinks
        tids = await _gather_chunked(
            [room.plain_transport(name, "recv", port_of(sink)) for name, sink in zip(batch, sinks, strict=True)]
        )
        placed = await room.workers() if away_from_producer else {}
        enables = []
        for name, answer, sink, (tid, _) in zip(batch, joined, sinks, tids, strict=True):
            if away_from_producer and placed[name] == producer_worker:
                continue  # a decoy: joined, placed, never enabled
            if len(expects) == n:
                break
            consumer = answer["peers"][0]["consumers"][0]
            cid, cssrc, cpt = _consumer_keys(consumer)
            enables.append(room.enable(name, cid, tid))
            expects.append(Expect(sink, cssrc, cpt, 0))
            if placed:
                consumer_workers.add(placed[name])
        await _gather_chunked(enables)
    return Built(
        topology=Topology([stream], expects),
        input_ports=[server_port],
        consumers=n,
        workers_used={"producer": producer_worker, "consumers": sorted(consumer_workers)},  # type: ignore[dict-item]
        sockets=sockets,
    )


async def meeting(client: TureenClient, room_id: str, p: int) -> Built:
    """p peers, each sending audio + video over one plain transport and receiving the other
    peers' 2(p-1) streams over another; placement spreads them over the workers."""
    room = RoomDriver(client, room_id)
    await room.create()
    names = [f"p{i}" for i in range(p)]
    sources = [udp_socket() for _ in names]
    sinks = [udp_socket() for _ in names]
    for name in names:  # in order: a join is announced to the peers already there
        await room.join(name)
    sends = await _gather_chunked(
        [room.plain_transport(n, "send", port_of(s)) for n, s in zip(names, sources, strict=True)]
    )
    recvs = await _gather_chunked(
        [room.plain_transport(n, "recv", port_of(s)) for n, s in zip(names, sinks, strict=True)]
    )
    streams: list[Stream] = []
    stream_of: dict[tuple[str, str], int] = {}
    for i, name in enumerate(names):
        for kind in ("audio", "video"):
            ssrc = 0x2000_0000 + 2 * i + (kind == "video")
            await room.produce(name, sends[i][0], kind, ssrc)
            stream_of[(name, kind)] = len(streams)
            if kind == "audio":
                streams.append(Stream(sources[i], sends[i][1], ssrc, AUDIO_PT, AUDIO_SIZE,
                                      rate_share=AUDIO_SHARE, ts_step=960))
            else:
                streams.append(Stream(sources[i], sends[i][1], ssrc, VIDEO_PT, VIDEO_SIZE, ts_step=3000))
    expects: list[Expect] = []
    enables = []
    for j, name in enumerate(names):
        for _ in range(2 * (p - 1)):
            note = await client.next_notification(name, "newConsumer", timeout=10.0)
            cid, cssrc, cpt = _consumer_keys(note)
            enables.append(room.enable(name, cid, recvs[j][0]))
            expects.append(Expect(sinks[j], cssrc, cpt, stream_of[(note["peerName"], note["kind"])]))
    await _gather_chunked(enables)
    placed = await room.workers()
    return Built(
        topology=Topology(streams, expects),
        input_ports=[port for _, port in sends],
        consumers=len(expects),
        workers_used={name: placed[name] for name in names},
        sockets=sources + sinks,
    )
