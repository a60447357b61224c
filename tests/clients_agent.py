"""The peers of a multi-host test, run inside the clients' network namespace (tests/cluster.py).

The hosts' media addresses exist only in the test network's namespaces, so the peers that
talk to them must live there too: this script runs there (`ip netns exec`), reaches the
supervisor's control API over ipc:// (a socket file: the file system is shared, the network is
not), subscribes to one room and plays its peers, on orders read from stdin:

    {"op": "plain", "peer": NAME, "place": {"worker": I} | {"host": H} | {}}
        joins, pins the peer (peer.place), sends opus-like RTP (50 packets/s) from a real
        UDP socket over a plain send transport and receives every other peer's producers
        over a plain recv transport (consumers enabled as they are announced)
    {"op": "webrtc", "peer": NAME, "place": ...}
        the same as an aiortc peer driven like mediasoup-client (tests/msclient.py): sends
        opus and small VP8, receives and decodes every other peer's producers
    {"op": "counts"}
        {"counts": {receiver: {"SENDER/KIND": n}}, "problems": [...]}: RTP packets received
        (plain peers) or frames decoded (WebRTC peers), per producer; and every step that
        failed (a refused enableConsumer, say), as text
    {"op": "exit"}

Each order is answered with one JSON line ({"ok": ...} or {"error": "..."}). The script
ends at `exit`, at end of input, or when its parent is gone; every wait inside is bounded.

    python tests/clients_agent.py CONTROL CURVE_CERT SERVER_KEY ROOM ADDRESS
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import struct
import sys
import traceback
from collections import Counter
from typing import Any

import orjson
from aiortc.mediastreams import AudioStreamTrack, VideoStreamTrack
from av import VideoFrame
from msclient import MsPeer
from support import opus_parameters, peer_capabilities
from tureen.shared.client import TureenClient

SEND_INTERVAL = 0.02  # plain peers: one 20 ms opus-like packet
WIDTH, HEIGHT = 160, 120  # small frames: many VP8 encoders and decoders share two busy cores


class SmallVideo(VideoStreamTrack):
    """aiortc's test pattern track at 160x120 (its default 640x480 costs far more CPU)."""

    async def recv(self) -> VideoFrame:
        pts, time_base = await self.next_timestamp()
        frame = VideoFrame(width=WIDTH, height=HEIGHT)
        for plane in frame.planes:
            plane.update(bytes(plane.buffer_size))
        frame.pts = pts
        frame.time_base = time_base
        return frame


class PlainPeer:
    """A peer with two plain RTP transports whose far ends are this process's UDP sockets."""

    def __init__(self, agent: Agent, name: str, ssrc: int) -> None:
        self.agent = agent
        self.name = name
        self.ssrc = ssrc
        self.send_sock = self._socket()
        self.recv_sock = self._socket()
        self.send_tid = 0
        self.recv_tid = 0
        self.sources: dict[int, str] = {}  # consumer SSRC -> "SENDER/KIND"
        self.counts: Counter[str] = Counter()
        self._enabling: set[int] = set()
        self._tasks: list[asyncio.Task[Any]] = []

    def _socket(self) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((self.agent.address, 0))
        sock.setblocking(False)
        return sock

    async def req(self, method: str, **data: Any) -> Any:
        target = "room" if method in ("queryRoom", "join") else "peer"
        peer = None if target == "room" else self.name
        return await self.agent.client.peer_request(self.agent.room, peer, {"method": method, "target": target, **data})

    async def start(self, place: dict[str, Any]) -> None:
        settings = await self.req("queryRoom")
        self.agent.client.on_event(self._on_event)
        joined = await self.req("join", peerName=self.name, rtpCapabilities=peer_capabilities(settings["rtpCapabilities"]))
        await self.agent.place(self.name, place)
        self.send_tid, self.recv_tid = self.agent.ids(), self.agent.ids()
        sent = await self.req("createTransport", id=self.send_tid, direction="send", options={},
                              plainRtpParameters={"ip": self.agent.address, "port": self.send_sock.getsockname()[1]})
        await self.req("createTransport", id=self.recv_tid, direction="recv", options={},
                       plainRtpParameters={"ip": self.agent.address, "port": self.recv_sock.getsockname()[1]})
        loop = asyncio.get_running_loop()
        loop.add_reader(self.recv_sock.fileno(), self._receive)
        await self.req("createProducer", id=self.agent.ids(), kind="audio", transportId=self.send_tid,
                       rtpParameters=opus_parameters(self.ssrc), paused=False)
        answer = sent["plainRtpParameters"]
        self._tasks.append(loop.create_task(self._send((answer["ip"], answer["port"]))))
        for peer in joined.get("peers") or []:
            for consumer in peer.get("consumers") or []:
                self._enable({**consumer, "peerName": peer["name"]})

    def _on_event(self, event: dict[str, Any]) -> None:
        note = event.get("notification") or {}
        if (event.get("event") == "notification" and event.get("roomId") == self.agent.room
                and event.get("peerName") == self.name and note.get("method") == "newConsumer"):
            self._enable(note)

    def _enable(self, consumer: dict[str, Any]) -> None:
        if consumer["id"] in self._enabling:
            return
        self._enabling.add(consumer["id"])
        ssrc = consumer["rtpParameters"]["encodings"][0]["ssrc"]
        self.sources[ssrc] = f"{consumer['peerName']}/{consumer['kind']}"

        async def enable() -> None:
            try:
                await self.req("enableConsumer", id=consumer["id"], transportId=self.recv_tid, paused=False,
                               preferredProfile="default")
            except Exception as exc:  # reported through `counts`, and on stderr for the log
                self.agent.problems.append(f"{self.name}: enableConsumer {consumer['id']} "
                                           f"({self.sources[ssrc]}): {exc!r}")
                print(self.agent.problems[-1], file=sys.stderr, flush=True)

        self._tasks.append(asyncio.get_running_loop().create_task(enable()))

    def _receive(self) -> None:
        while True:
            try:
                data = self.recv_sock.recv(2048)
            except BlockingIOError:
                return
            if len(data) >= 12 and not 72 <= data[1] & 0x7F <= 79:  # RTP, not RTCP
                source = self.sources.get(struct.unpack_from("!I", data, 8)[0])
                if source is not None:
                    self.counts[source] += 1

    async def _send(self, dest: tuple[str, int]) -> None:
        seq, ts = 1, 5000
        while True:
            packet = struct.pack("!BBHII", 0x80, 111, seq & 0xFFFF, ts & 0xFFFFFFFF, self.ssrc) + bytes(160)
            with contextlib.suppress(OSError):  # a host whose link is cut: ENETUNREACH and the like
                self.send_sock.sendto(packet, dest)
            seq, ts = seq + 1, ts + 960
            await asyncio.sleep(SEND_INTERVAL)

    def report(self) -> dict[str, int]:
        return dict(self.counts)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            asyncio.get_running_loop().remove_reader(self.recv_sock.fileno())
        for task in self._tasks:
            task.cancel()
        self.send_sock.close()
        self.recv_sock.close()


class WebRtcPeer:
    """An aiortc peer (MsPeer) that sends opus and VP8 and consumes everything announced."""

    def __init__(self, agent: Agent, name: str) -> None:
        self.agent = agent
        self.name = name
        self.peer = MsPeer(timeout=20.0)
        self._consuming: asyncio.Task[None] | None = None

    async def start(self, place: dict[str, Any]) -> None:
        await self.peer.join((self.agent.client, self.agent.room), self.name)
        await self.agent.place(self.name, place)
        await self.peer.produce(AudioStreamTrack())
        await self.peer.produce(SmallVideo())
        self._consuming = asyncio.get_running_loop().create_task(self._consume_all())

    async def _consume_all(self) -> None:
        while True:
            try:
                consumer = await self.peer.next_consumer(timeout=5.0)
            except TimeoutError:
                continue
            try:
                await self.peer.consume(consumer)
            except Exception as exc:
                self.agent.problems.append(f"{self.name}: consume {consumer['id']} "
                                           f"({consumer.get('peerName')}/{consumer['kind']}): {exc!r}")
                print(self.agent.problems[-1], file=sys.stderr, flush=True)

    def report(self) -> dict[str, int]:
        counts: Counter[str] = Counter()
        for consumer in self.peer.consumers.values():
            counts[f"{consumer.peer_name}/{consumer.kind}"] += consumer.frames
        return dict(counts)

    async def close(self) -> None:
        if self._consuming is not None:
            self._consuming.cancel()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.peer.close(), 5)


class Agent:
    """One control connection, one room, the peers of this process."""

    def __init__(self, client: TureenClient, room: str, address: str) -> None:
        self.client = client
        self.room = room
        self.address = address
        self.peers: dict[str, PlainPeer | WebRtcPeer] = {}
        self.problems: list[str] = []
        self._next_id = 100

    def ids(self) -> int:
        self._next_id += 1
        return self._next_id

    async def place(self, peer: str, place: dict[str, Any]) -> None:
        if place:
            await self.client.request("peer.place", roomId=self.room, peerName=peer, **place)

    async def handle(self, order: dict[str, Any]) -> dict[str, Any]:
        op = order.get("op")
        if op in ("plain", "webrtc"):
            name = order["peer"]
            if name in self.peers:
                raise ValueError(f"peer {name!r} exists already")
            peer = PlainPeer(self, name, 0x0A00_0000 + len(self.peers)) if op == "plain" else WebRtcPeer(self, name)
            self.peers[name] = peer
            await peer.start(order.get("place") or {})
            return {"ok": name}
        if op == "counts":
            return {"counts": {name: peer.report() for name, peer in self.peers.items()}, "problems": self.problems}
        raise ValueError(f"unknown op {op!r}: use plain, webrtc, counts or exit")

    async def close(self) -> None:
        for peer in self.peers.values():
            await peer.close()


async def main(control: str, cert: str, server_key: str, room: str, address: str) -> None:
    parent = os.getppid()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    async with TureenClient(control, timeout=15.0, curve_cert=cert, curve_server_key=server_key) as client:
        await client.subscribe(room)
        agent = Agent(client, room, address)
        print(orjson.dumps({"ok": "ready"}).decode(), flush=True)
        try:
            while True:
                try:
                    line = await asyncio.wait_for(reader.readline(), 5.0)
                except TimeoutError:
                    if os.getppid() != parent:  # the test runner is gone: so are we
                        return
                    continue
                if not line:
                    return
                order = orjson.loads(line)
                if order.get("op") == "exit":
                    return
                try:
                    answer = await agent.handle(order)
                except Exception as exc:
                    answer = {"error": f"{exc!r}", "trace": traceback.format_exc()}
                print(orjson.dumps(answer).decode(), flush=True)
        finally:
            await agent.close()


if __name__ == "__main__":
    if len(sys.argv) != 6:
        raise SystemExit(__doc__)
    asyncio.run(main(*sys.argv[1:]))
