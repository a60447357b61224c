"""Seeded churn of plain-RTP peers through the control API, shared by the CI load-and-fault
test (tests/integration/test_load_faults.py) and the soak script (scripts/soak.py).

Each simulated peer is what an app relays for a client: it joins a room, creates a recv
transport (and a send transport and an opus producer when it produces), enables every consumer
the room gives it, and leaves. Media is real: every producer sends RTP from its own UDP socket
and every peer counts, per SSRC, the RTP its recv socket gets, so "media flows" is checked by
packets arriving, never assumed.

One rule makes the model simple and is also what a mediasoup-client app does after a worker
dies: `reconcile` brings a peer back to "complete" (transports alive, producer alive when it
produces, every known consumer enabled) whatever closed under it, so the same call builds a new
peer and rebuilds one whose transports were on a dead worker.

Every wait here is bounded; nothing is a timing assertion. All randomness comes from one
seeded `random.Random`, so a failing seed can be replayed (the order of concurrent requests can
still differ between runs; the plan does not).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import random
import signal
import socket
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import psutil
from support import MEDIA_CODECS, opus_parameters, peer_capabilities, rtp_packet, udp_socket
from tureen.shared.client import TureenClient
from tureen.shared.errors import ProtocolError

OPUS_PT = 111
RTCP_FIRST = 192  # second byte of RTCP (PT 192-223 with the marker bit): not RTP media


@dataclass
class SimConsumer:
    """A consumer as the receiving client knows it (from newConsumer or the join response)."""

    id: int
    producer_peer: str
    ssrc: int
    transport: int | None = None  # the recv transport it is enabled on


@dataclass(eq=False)
class SimPeer:
    room: str
    name: str
    producing: bool
    ssrc: int
    recv_sock: socket.socket = field(default_factory=udp_socket)
    send_sock: socket.socket | None = None
    send_addr: tuple[str, int] | None = None  # the server side of its send transport
    send_transport: int | None = None
    recv_transport: int | None = None
    producer: int | None = None
    consumers: dict[int, SimConsumer] = field(default_factory=dict)
    received: Counter[int] = field(default_factory=Counter)  # RTP packets by SSRC
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    joined: bool = False
    left: bool = False
    seq: int = 0
    ts: int = 0
    notes: list[dict[str, Any]] = field(default_factory=list)  # every notification it got
    # What closed, so that a reply read after the event does not bring it back: the client
    # runs event callbacks as it reads them, before the coroutine awaiting an earlier reply
    # resumes (a join reply listing consumers of a peer whose peerClosed came right after).
    gone_peers: set[str] = field(default_factory=set)
    gone_consumers: set[int] = field(default_factory=set)

    def describe(self) -> str:
        idle = sorted(c.id for c in self.consumers.values() if c.transport is None)
        return (
            f"{self.room}/{self.name}: recv transport {self.recv_transport}, send transport "
            f"{self.send_transport}, producer {self.producer}{'' if self.producing else ' (not producing)'}, "
            f"{len(self.consumers)} consumers, not enabled {idle}"
        )

    def complete(self) -> bool:
        """Transports and producer alive, every consumer enabled: nothing for reconcile to do."""
        if self.left or not self.joined or self.recv_transport is None:
            return self.left
        if self.producing and (self.send_transport is None or self.producer is None):
            return False
        return all(c.transport is not None for c in self.consumers.values())


class Churn:
    """Peers across rooms of one `tureen serve`, all driven through one control connection."""

    def __init__(
        self, client: TureenClient, seed: int, *, rate: float = 8.0, concurrency: int = 16
    ) -> None:
        self.client = client
        self.rng = random.Random(seed)
        self.rate = rate  # RTP packets per second per producer
        self.sem = asyncio.Semaphore(concurrency)
        self.rooms: dict[str, dict[str, Any]] = {}  # room id -> rtpCapabilities
        self.peers: dict[tuple[str, str], SimPeer] = {}
        self.joins = 0  # peers that joined, in all
        self.requests = 0  # control requests sent for peers
        self.errors: list[str] = []  # requests that failed where the model says they must not
        self.tolerated: Counter[str] = Counter()  # races the protocol allows (see _enable)
        self._ids = itertools.count(10_000_000)
        self._names = itertools.count(1)
        self._loop = asyncio.get_running_loop()
        self._pump: asyncio.Task[None] | None = None
        client.on_event(self._on_event)

    # ------------------------------------------------------------------ rooms and peers

    async def create_rooms(self, count: int, prefix: str = "load") -> list[str]:
        created = []
        for _ in range(count):
            room_id = f"{prefix}-{next(self._names)}"
            reply = await self.client.create_room(MEDIA_CODECS, room_id=room_id)
            self.rooms[room_id] = reply["rtpCapabilities"]
            created.append(room_id)
        return created

    async def close_rooms(self) -> None:
        for room_id in list(self.rooms):
            await self.client.close_room(room_id)
            del self.rooms[room_id]
        for peer in list(self.peers.values()):
            self._drop(peer)

    def active(self) -> list[SimPeer]:
        return [p for p in self.peers.values() if p.joined and not p.left]

    def new_peer(self, room: str, producing: bool) -> SimPeer:
        name = f"p{next(self._names)}"
        peer = SimPeer(room=room, name=name, producing=producing, ssrc=next(self._ids))
        self._loop.add_reader(peer.recv_sock.fileno(), self._read, peer, peer.recv_sock)
        self.peers[(room, name)] = peer
        return peer

    def _drop(self, peer: SimPeer) -> None:
        """The client side of a peer that is gone: its sockets close."""
        peer.left = True
        for sock in (peer.recv_sock, peer.send_sock):
            if sock is not None and sock.fileno() >= 0:
                self._loop.remove_reader(sock.fileno())
                sock.close()
        self.peers.pop((peer.room, peer.name), None)

    async def _req(self, peer: SimPeer, method: str, **data: Any) -> Any:
        target = "room" if method == "join" else "peer"
        who = None if method == "join" else peer.name
        self.requests += 1
        return await self.client.peer_request(
            peer.room, who, {"method": method, "target": target, **data}
        )

    async def join(self, peer: SimPeer) -> None:
        caps = peer_capabilities(self.rooms[peer.room])
        async with peer.lock:
            reply = await self._req(
                peer, "join", peerName=peer.name, rtpCapabilities=caps, spy=False
            )
            peer.joined = True
            self.joins += 1
            for other in reply["peers"]:
                for data in other["consumers"]:
                    self._add_consumer(peer, data)

    async def leave(self, peer: SimPeer) -> None:
        async with peer.lock:
            if peer.left:
                return
            self.requests += 1
            await self.client.peer_notify(
                peer.room, peer.name, {"method": "leave", "target": "peer", "notification": True}
            )
            self._drop(peer)

    async def reconcile(self, peer: SimPeer) -> None:
        """Bring `peer` back to complete: create what is missing, enable every consumer."""
        async with peer.lock:
            if peer.left or not peer.joined:
                return
            try:
                if peer.recv_transport is None:
                    peer.recv_transport = await self._transport(peer, "recv", peer.recv_sock)
                if peer.producing and peer.send_transport is None:
                    if peer.send_sock is None:
                        peer.send_sock = udp_socket()
                        self._loop.add_reader(
                            peer.send_sock.fileno(), self._read, peer, peer.send_sock
                        )
                    peer.send_transport = await self._transport(peer, "send", peer.send_sock)
                if peer.producing and peer.producer is None:
                    pid = next(self._ids)
                    transport = peer.send_transport
                    await self._req(
                        peer,
                        "createProducer",
                        id=pid,
                        kind="audio",
                        transportId=peer.send_transport,
                        rtpParameters=opus_parameters(peer.ssrc, OPUS_PT),
                        paused=False,
                    )
                    if peer.send_transport == transport:  # else it closed with it meanwhile
                        peer.producer = pid
                for consumer in list(peer.consumers.values()):
                    if consumer.transport is None and peer.recv_transport is not None:
                        await self._enable(peer, consumer)
            except ProtocolError as exc:
                self.errors.append(f"{peer.room}/{peer.name}: {exc.code}: {exc.message}")

    async def _transport(self, peer: SimPeer, direction: str, sock: socket.socket) -> int:
        tid = next(self._ids)
        server = await self._req(
            peer,
            "createTransport",
            id=tid,
            direction=direction,
            options={},
            plainRtpParameters={"ip": "127.0.0.1", "port": sock.getsockname()[1]},
        )
        if direction == "send":
            local = server["plainRtpParameters"]
            peer.send_addr = (local["ip"], local["port"])
        return tid

    async def _enable(self, peer: SimPeer, consumer: SimConsumer) -> None:
        try:
            await self._req(
                peer,
                "enableConsumer",
                id=consumer.id,
                transportId=peer.recv_transport,
                paused=False,
                preferredProfile="default",
            )
        except ProtocolError as exc:
            # The producer's peer left (or its transport closed) after the consumer was
            # announced and before this request was handled: the room told us first (its
            # events precede our reply on the same connection), so the consumer is gone here.
            if exc.code == "not_found" and consumer.id not in peer.consumers:
                self.tolerated["enableConsumer of a consumer closed meanwhile"] += 1
                return
            raise
        if consumer.id in peer.consumers:  # not closed while we waited (a detach left None)
            consumer.transport = peer.recv_transport

    # ------------------------------------------------------------------ bulk steps

    async def bounded(self, coro: Any) -> None:
        async with self.sem:
            await coro

    async def run_all(self, coros: list[Any]) -> None:
        await asyncio.gather(*(self.bounded(c) for c in coros))

    async def join_and_build(self, peer: SimPeer) -> None:
        await self.join(peer)
        await self.reconcile(peer)

    async def churn(self, joins: int, leave_share: float, producing_share: float) -> None:
        """`joins` new peers into random rooms and, interleaved, random leaves of about
        `leave_share` of that number, in a seeded random order, `concurrency` at a time."""
        steps: list[tuple[str, Any]] = []
        for _ in range(joins):
            room = self.rng.choice(sorted(self.rooms))
            steps.append(("join", self.new_peer(room, self.rng.random() < producing_share)))
        steps += [("leave", None)] * round(joins * leave_share)
        self.rng.shuffle(steps)

        async def step(kind: str, peer: SimPeer | None) -> None:
            if kind == "join":
                assert peer is not None
                await self.join_and_build(peer)
                return
            candidates = sorted(self.active(), key=lambda p: (p.room, p.name))
            if candidates:
                await self.leave(self.rng.choice(candidates))

        await self.run_all([step(kind, peer) for kind, peer in steps])

    async def leave_some(self, count: int) -> None:
        victims = self.rng.sample(sorted(self.active(), key=lambda p: (p.room, p.name)), count)
        await self.run_all([self.leave(p) for p in victims])

    async def leave_all(self) -> None:
        peers = sorted(self.active(), key=lambda p: (p.room, p.name))
        self.rng.shuffle(peers)
        await self.run_all([self.leave(p) for p in peers])

    async def settle(self, rounds: int = 20, *, retry_errors: bool = False) -> list[str]:
        """Reconcile until every peer is complete; returns those that never got there.
        Replies come after the events their request caused (one connection, one order), so
        once every reconcile returned and nobody is incomplete, nothing is in flight.
        A round with failed requests ends it unless `retry_errors` (the soak retries)."""
        for _ in range(rounds):
            todo = [p for p in self.active() if not p.complete()]
            if not todo:
                return []
            errors = len(self.errors)
            await self.run_all([self.reconcile(p) for p in todo])
            if len(self.errors) > errors and not retry_errors:
                break
        return [p.describe() for p in self.active() if not p.complete()]

    # ------------------------------------------------------------------ notifications

    def _on_event(self, event: dict[str, Any]) -> None:
        if event.get("event") != "notification":
            return
        peer = self.peers.get((event.get("roomId"), event.get("peerName")))  # type: ignore[arg-type]
        if peer is None:
            return
        note = event["notification"]
        peer.notes.append(note)
        method = note.get("method")
        if method == "newConsumer":
            self._add_consumer(peer, note)
        elif method == "consumerClosed":
            peer.gone_consumers.add(note["id"])
            peer.consumers.pop(note["id"], None)
        elif method == "peerClosed":
            peer.gone_peers.add(note["name"])
            for cid in [c.id for c in peer.consumers.values() if c.producer_peer == note["name"]]:
                del peer.consumers[cid]
        elif method == "transportClosed":
            if note["id"] == peer.send_transport:
                # Its producers closed with it; the owner is told only about the transport.
                peer.send_transport = None
                peer.producer = None
            elif note["id"] == peer.recv_transport:
                peer.recv_transport = None
                for consumer in peer.consumers.values():
                    consumer.transport = None  # detached: enable again on a new transport
        elif method == "closed":
            peer.left = True

    @staticmethod
    def _add_consumer(peer: SimPeer, data: dict[str, Any]) -> None:
        if data["id"] in peer.gone_consumers or data["peerName"] in peer.gone_peers:
            return  # closed already: its closure was read before this (older) reply
        ssrc = data["rtpParameters"]["encodings"][0]["ssrc"]
        peer.consumers[data["id"]] = SimConsumer(data["id"], data["peerName"], ssrc)

    # ------------------------------------------------------------------ media

    def _read(self, peer: SimPeer, sock: socket.socket) -> None:
        while True:
            try:
                data = sock.recv(2048)
            except (BlockingIOError, OSError):
                return
            if len(data) >= 12 and data[1] < RTCP_FIRST:  # RTCP (reports) is read and dropped
                peer.received[int.from_bytes(data[8:12], "big")] += 1

    def start_media(self) -> None:
        self._pump = self._loop.create_task(self._send_media(), name="churn media")

    async def stop_media(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump
            self._pump = None

    async def _send_media(self) -> None:
        """Every producer sends `rate` opus packets per second, in 50 ms ticks."""
        tick = 0.05
        credit = 0.0
        while True:
            await asyncio.sleep(tick)
            credit += self.rate * tick
            count, credit = int(credit), credit - int(credit)
            for peer in list(self.peers.values()):
                addr = peer.send_addr
                if peer.left or peer.producer is None or peer.send_sock is None or addr is None:
                    continue
                for _ in range(count):
                    peer.seq += 1
                    peer.ts += 960
                    with contextlib.suppress(OSError):
                        peer.send_sock.sendto(
                            rtp_packet(peer.seq, peer.ts, peer.ssrc, OPUS_PT, b"\x00" * 40), addr
                        )

    async def check_media(self, packets: int = 3, timeout: float = 20.0) -> list[str]:
        """Every enabled consumer of a live producer receives `packets` new RTP packets on
        its peer's recv socket within `timeout`; returns what did not (empty: all flowed)."""
        producing = {(p.room, p.name) for p in self.active() if p.producer is not None}
        want: dict[tuple[SimPeer, int], int] = {}
        for peer in self.active():
            for consumer in peer.consumers.values():
                if (
                    consumer.transport is not None
                    and (peer.room, consumer.producer_peer) in producing
                ):
                    want[(peer, consumer.ssrc)] = peer.received[consumer.ssrc] + packets
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(peer.received[ssrc] >= goal for (peer, ssrc), goal in want.items()):
                return []
            await asyncio.sleep(0.1)
        return [
            f"{peer.room}/{peer.name}: consumer ssrc {ssrc} got {peer.received[ssrc] - goal + packets} "
            f"of {packets} packets in {timeout:.0f} s"
            for (peer, ssrc), goal in want.items()
            if peer.received[ssrc] < goal
        ]

    def consumers_checked(self, peers: set[tuple[str, str]] | None = None) -> int:
        """How many consumers check_media watches (of `peers`' consumers and producers, when
        given: the peers a worker death touched)."""
        producing = {(p.room, p.name) for p in self.active() if p.producer is not None}
        return sum(
            1
            for p in self.active()
            for c in p.consumers.values()
            if c.transport is not None
            and (p.room, c.producer_peer) in producing
            and (peers is None or (p.room, p.name) in peers or (p.room, c.producer_peer) in peers)
        )

    # ------------------------------------------------------------------ worker death

    async def expected_on_death(self, index: int) -> dict[tuple[str, str], set[tuple[str, int]]]:
        """What each peer must hear when worker `index` dies, from the rooms' own dumps:
        transportClosed for each of its transports there, consumerClosed for each of its
        consumers of a producer there."""
        expected: dict[tuple[str, str], set[tuple[str, int]]] = {}
        for room_id in self.rooms:
            dump = await self.client.dump_room(room_id)
            receiver_of = {c["id"]: p["name"] for p in dump["peers"] for c in p["consumers"]}
            for p in dump["peers"]:
                for t in p["transports"]:
                    if t["worker"] == index:
                        expected.setdefault((room_id, p["name"]), set()).add(
                            ("transportClosed", t["id"])
                        )
                for producer in p["producers"]:
                    if producer["worker"] == index:
                        for cid in producer["consumers"]:
                            expected.setdefault((room_id, receiver_of[cid]), set()).add(
                                ("consumerClosed", cid)
                            )
        return expected

    def closures_since(
        self, marks: dict[tuple[str, str], int]
    ) -> dict[tuple[str, str], set[tuple[str, int]]]:
        got: dict[tuple[str, str], set[tuple[str, int]]] = {}
        for key, peer in self.peers.items():
            for note in peer.notes[marks.get(key, 0) :]:
                if note.get("method") in ("transportClosed", "consumerClosed"):
                    got.setdefault(key, set()).add((note["method"], note["id"]))
        return got

    async def _worker_pid(self, index: int) -> int | None:
        """The pid of worker `index` when it is alive, else None."""
        for w in (await self.client.server_info())["workers"]:
            if w["index"] == index and w["alive"]:
                return w["pid"]
        return None

    async def kill(self, index: int) -> int:
        """kill -9 worker `index` now; returns its pid."""
        pid = await self._worker_pid(index)
        assert pid is not None, f"worker {index} is not running"
        os.kill(pid, signal.SIGKILL)
        return pid

    async def restarted(
        self, server: Any, index: int, old_pid: int, timeout: float = 30.0
    ) -> int | None:
        """The pid of the worker that replaced `old_pid` at `index`, waited for (bounded)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid = await self._worker_pid(index)
            if pid is not None and pid != old_pid:
                if hasattr(server, "worker_pids"):
                    server.worker_pids.append(pid)  # stopped with the others at the end
                return pid
            await asyncio.sleep(0.1)
        return None

    async def kill_worker(self, server: Any, index: int, timeout: float = 30.0) -> dict[str, Any]:
        """kill -9 worker `index` with no request in flight; wait (bounded) for the restarted
        worker and every expected closure notification. Returns {expected, got, oldPid, newPid}."""
        expected = await self.expected_on_death(index)
        marks = {key: len(peer.notes) for key, peer in self.peers.items()}
        old_pid = await self.kill(index)
        new_pid = await self.restarted(server, index, old_pid, timeout)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.closures_since(marks)
            if all(expected[k] <= got.get(k, set()) for k in expected):
                break
            await asyncio.sleep(0.1)
        return {
            "expected": expected,
            "got": self.closures_since(marks),
            "oldPid": old_pid,
            "newPid": new_pid,
        }


# ---------------------------------------------------------------------- leak accounting


def process_figures(pid: int) -> dict[str, int]:
    """Resident memory, open fds and UDP sockets of one process."""
    proc = psutil.Process(pid)
    return {
        "rss": proc.memory_info().rss,
        "fds": proc.num_fds(),
        "udp": len(proc.net_connections(kind="udp")),
    }


async def server_figures(client: TureenClient) -> dict[str, Any]:
    """Supervisor (from server.info: tasks, rss) and each worker (by index: pid, rss, fds, udp)."""
    info = await client.server_info()
    workers = {}
    for w in info["workers"]:
        with contextlib.suppress(psutil.Error):
            workers[w["index"]] = {"pid": w["pid"], **process_figures(w["pid"])}
    return {
        "pid": info["pid"],
        "tasks": info["tasks"],
        "rss": info["rss"],
        "fds": psutil.Process(info["pid"]).num_fds(),
        "workers": workers,
    }


async def leftovers(client: TureenClient) -> list[str]:
    """What is still there after every peer left and every room closed: rooms, and on every
    worker transports, producers, consumers and pipe destinations. Empty when clean."""
    found = []
    rooms = await client.list_rooms()
    if rooms:
        found.append(f"room.list still lists {[r['roomId'] for r in rooms]}")
    for w in (await client.server_info())["workers"]:
        dump = await client.dump_worker(w["index"])
        for key in ("transports", "producers", "consumers"):
            if dump[key]:
                found.append(
                    f"worker {w['index']} still has {len(dump[key])} {key}: {dump[key][:3]}"
                )
        if dump["pipe"]["destinations"]:
            found.append(f"worker {w['index']} still pipes to {dump['pipe']['destinations']}")
    return found


async def disagreements(client: TureenClient, room_ids: list[str]) -> list[str]:
    """Where the supervisor's rooms and the workers' tables differ: transports, producers
    (a piped producer has a copy on each destination worker), pipes and enabled consumers, as
    (worker, worker-side id[, destination]). Only meaningful with no request in flight."""
    ours: dict[str, set[tuple[int, ...]]] = {
        k: set() for k in ("transports", "producers", "pipes", "consumers")
    }
    for room_id in room_ids:
        dump = await client.dump_room(room_id)
        for p in dump["peers"]:
            worker_of = {t["id"]: t["worker"] for t in p["transports"]}
            ours["transports"].update((t["worker"], t["workerId"]) for t in p["transports"])
            for pr in p["producers"]:
                ours["producers"].add((pr["worker"], pr["workerId"]))
                for dest in pr["pipedTo"]:
                    ours["pipes"].add((pr["worker"], pr["workerId"], dest))
                    ours["producers"].add((dest, pr["workerId"]))
            ours["consumers"].update(
                (worker_of[c["transportId"]], c["workerId"]) for c in p["consumers"] if c["enabled"]
            )
    theirs: dict[str, set[tuple[int, ...]]] = {k: set() for k in ours}
    for w in (await client.server_info())["workers"]:
        i = w["index"]
        dump = await client.dump_worker(i)
        theirs["transports"].update((i, t["transportId"]) for t in dump["transports"])
        theirs["producers"].update((i, pr["producerId"]) for pr in dump["producers"])
        theirs["pipes"].update(
            (i, pr["producerId"], d) for pr in dump["producers"] for d in pr["pipeWorkers"]
        )
        theirs["consumers"].update((i, c["consumerId"]) for c in dump["consumers"])
    found = []
    for key in ours:
        if ours[key] - theirs[key]:
            found.append(
                f"{key} the supervisor has but no worker: {sorted(ours[key] - theirs[key])[:10]}"
            )
        if theirs[key] - ours[key]:
            found.append(
                f"{key} on workers the supervisor does not know: {sorted(theirs[key] - ours[key])[:10]}"
            )
    return found


MiB = 1 << 20


def growth_problems(
    before: dict[str, Any], after: dict[str, Any], *, rss_margin: int, fds_margin: int = 0
) -> list[str]:
    """Compare two server_figures: supervisor tasks and every worker's UDP sockets exactly,
    fds within `fds_margin`, RSS within `rss_margin` bytes. A restarted worker (other pid)
    is compared with its index's figures before: a fresh worker holds no more than that."""
    problems = []
    if after["tasks"] > before["tasks"]:
        problems.append(f"supervisor has {after['tasks']} asyncio tasks, {before['tasks']} before")
    if after["rss"] > before["rss"] + rss_margin:
        problems.append(
            f"supervisor RSS {after['rss'] / MiB:.1f} MiB > {before['rss'] / MiB:.1f} MiB + {rss_margin / MiB:.0f} MiB"
        )
    if after["fds"] > before["fds"] + fds_margin:
        problems.append(f"supervisor has {after['fds']} fds, {before['fds']} before")
    for index, b in before["workers"].items():
        a = after["workers"].get(index)
        if a is None:
            problems.append(f"worker {index} is not running")
            continue
        if a["udp"] > b["udp"]:
            problems.append(f"worker {index} has {a['udp']} UDP sockets, {b['udp']} before")
        if a["fds"] > b["fds"] + fds_margin:
            problems.append(f"worker {index} has {a['fds']} fds, {b['fds']} before")
        if a["rss"] > b["rss"] + rss_margin:
            problems.append(
                f"worker {index} RSS {a['rss'] / MiB:.1f} MiB > {b['rss'] / MiB:.1f} MiB + {rss_margin / MiB:.0f} MiB"
            )
    return problems


async def settled_figures(
    client: TureenClient,
    before: dict[str, Any],
    *,
    rss_margin: int,
    fds_margin: int = 0,
    timeout: float = 10.0,
) -> tuple[dict[str, Any], list[str]]:
    """Figures once they are back within bounds (a closed socket or finished reply task can
    take a moment), or the last figures and their problems after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        after = await server_figures(client)
        problems = growth_problems(before, after, rss_margin=rss_margin, fds_margin=fds_margin)
        if not problems or time.monotonic() > deadline:
            return after, problems
        await asyncio.sleep(0.2)
