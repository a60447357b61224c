"""`python -m benchmarks.memory [--count 1000] [--profile gcm]`: a worker's memory per
transport and per consumer, as RSS deltas over COUNT of them.

One `tureen serve --workers 1`, driven through the control API only, and one producer on a
connected WebRtcTransport per room of 250 peers (the server's quota is 500 per room). Then, reading the worker's RSS (and its anonymous part, from
/proc/<pid>/smaps_rollup) after each step, COUNT spy peers:

  join             the peers (the supervisor's state; the worker should not move)
  transports       one WebRtcTransport each, created, not reached: UDP socket, ICE-lite
                   state, the DTLS endpoint (an OpenSSL SSL object before its handshake)
  connected        ICE + the DTLS handshake on each (the harness is the browser, as in the
                   SRTP rows of benchmarks.run): the finished SSL object and two libsrtp
                   sessions per transport
  consumers        one enabled consumer each of the producer's video: the consumer's state
                   in the worker (rewrite, retransmission buffer, counters)

and the same with plain RTP transports in a second server (`plain transports`, `plain
consumers`). Prints KiB per item for each step. Then, in this process (`--items`, on by
default), the two big parts of a connected WebRTC transport alone, COUNT of each, RSS delta:
a DtlsEndpoint pair through a full handshake in memory (÷ 2: OpenSSL's SSL object, client and
server alike) and an SrtpContext (its two libsrtp sessions) per profile. Bounded: COUNT <= 2000, every handshake
15 s, only 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
from tureen.shared.client import TureenClient

from . import cpus
from .load import udp_socket
from .scenarios import RoomDriver, _consumer_keys, _gather_chunked, port_of
from .srtp import PROFILE_NAMES
from .tureen_server import TureenServer
from .webrtc import HANDSHAKES_AT_ONCE, Browser, WebRtcRoom, _keepalive

MAX_COUNT = 2000
SETTLE_S = 0.5
PEERS_PER_ROOM = 250


def memory(pid: int) -> tuple[int, int]:
    """(RSS, anonymous RSS) of one process, bytes."""
    rss = psutil.Process(pid).memory_info().rss
    anon = 0
    with contextlib.suppress(OSError), open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Anonymous:"):
                anon = int(line.split()[1]) * 1024
    return rss, anon


class Steps:
    """The worker's memory after each step, and the per-item delta from the step before."""

    def __init__(self, pid: int, count: int) -> None:
        self.pid = pid
        self.count = count
        self.rows: list[tuple[str, int, int]] = []
        self.last = memory(pid)

    async def mark(self, step: str) -> None:
        await asyncio.sleep(SETTLE_S)  # let replies, events and frees land
        now = memory(self.pid)
        self.rows.append((step, now[0] - self.last[0], now[1] - self.last[1]))
        self.last = now
        kib = (now[0] - self.rows[-1][1]) / 1024
        print(f"  {step:<17} RSS {now[0] / 2**20:8.1f} MiB  +{self.rows[-1][1] / 1024 / self.count:7.1f} KiB "
              f"each (anon +{self.rows[-1][2] / 1024 / self.count:7.1f})  [was {kib / 1024:.1f} MiB]", flush=True)


def _rooms(count: int) -> list[list[str]]:
    """Peer names per room: rooms hold at most PEERS_PER_ROOM (the server's quota is 500)."""
    names = [f"c{i}" for i in range(count)]
    return [names[i : i + PEERS_PER_ROOM] for i in range(0, count, PEERS_PER_ROOM)]


async def webrtc_steps(client: TureenClient, pid: int, count: int, profile: str) -> Steps:
    groups = _rooms(count)
    rooms = [WebRtcRoom(client, f"mem{i}", profile) for i in range(len(groups))]
    browsers: list[Browser] = []
    # ICE consent for every connected transport (ICE-lite drops a tuple after 30 s without a
    # check, and a loaded machine takes longer than that for 1,000 handshakes).
    keepalives: list[asyncio.Task] = []
    loop = asyncio.get_running_loop()
    try:
        for room in rooms:  # one connected producer per room, before the first reading
            await room.create()
            await room.join("src")
            send_tid, source = await room.webrtc_transport("src", "send")
            browsers.append(source)
            keepalives.append(loop.create_task(_keepalive([source])))
            await room.produce("src", send_tid, "video", 0x1000_0001)
        steps = Steps(pid, count)
        joined = [await _gather_chunked([room.join(name, spy=True) for name in names])
                  for room, names in zip(rooms, groups, strict=True)]
        await steps.mark("join")
        made: list[list] = []
        for room, names in zip(rooms, groups, strict=True):
            made.append([])
            for start in range(0, len(names), HANDSHAKES_AT_ONCE):
                made[-1] += await asyncio.gather(*(room.unconnected_transport(name, "recv")
                                                   for name in names[start : start + HANDSHAKES_AT_ONCE]))
            browsers += [b for _, b, _ in made[-1]]
        await steps.mark("transports")
        for room, room_made in zip(rooms, made, strict=True):
            for start in range(0, len(room_made), HANDSHAKES_AT_ONCE):
                batch = room_made[start : start + HANDSHAKES_AT_ONCE]
                await asyncio.gather(*(room.connect_transport(*m) for m in batch))
                keepalives.append(loop.create_task(_keepalive([b for _, b, _ in batch])))
        await steps.mark("connected")
        for room, names, answers, room_made in zip(rooms, groups, joined, made, strict=True):
            await _gather_chunked([room.enable(name, _consumer_keys(answer["peers"][0]["consumers"][0])[0], tid)
                                   for name, answer, (tid, _, _) in zip(names, answers, room_made, strict=True)])
        await steps.mark("consumers")
        return steps
    finally:
        for task in keepalives:
            task.cancel()
        for b in browsers:
            b.sock.close()


async def plain_steps(client: TureenClient, pid: int, count: int) -> Steps:
    groups = _rooms(count)
    rooms = [RoomDriver(client, f"mem-plain{i}") for i in range(len(groups))]
    sources = [udp_socket() for _ in rooms]
    sinks = [[udp_socket() for _ in names] for names in groups]
    try:
        for room, source in zip(rooms, sources, strict=True):
            await room.create()
            await room.join("src")
            send_tid, _ = await room.plain_transport("src", "send", port_of(source))
            await room.produce("src", send_tid, "video", 0x1000_0001)
        steps = Steps(pid, count)
        joined = [await _gather_chunked([room.join(name, spy=True) for name in names])
                  for room, names in zip(rooms, groups, strict=True)]
        await steps.mark("plain join")
        tids = [await _gather_chunked([room.plain_transport(name, "recv", port_of(sink))
                                       for name, sink in zip(names, room_sinks, strict=True)])
                for room, names, room_sinks in zip(rooms, groups, sinks, strict=True)]
        await steps.mark("plain transports")
        for room, names, answers, room_tids in zip(rooms, groups, joined, tids, strict=True):
            await _gather_chunked([room.enable(name, _consumer_keys(answer["peers"][0]["consumers"][0])[0], tid)
                                   for name, answer, (tid, _) in zip(names, answers, room_tids, strict=True)])
        await steps.mark("plain consumers")
        return steps
    finally:
        for s in (*sources, *(x for room_sinks in sinks for x in room_sinks)):
            s.close()


def _pair(cert: Any) -> tuple[Any, Any]:
    """A server and a client DtlsEndpoint that know each other's fingerprints."""
    from tureen.workers.transport.dtls import DtlsEndpoint

    server = DtlsEndpoint(cert)
    client = DtlsEndpoint(cert, srtp_profiles=[PROFILE_NAMES["gcm"]])

    def sha256(end: Any, role: str) -> dict[str, Any]:
        return {"role": role, "fingerprints": [f for f in end.local_parameters()["fingerprints"]
                                               if f["algorithm"] == "sha-256"]}
    client.set_remote(sha256(server, "server"))
    server.set_remote(sha256(client, "client"))
    return server, client


def _handshake(server: Any, client: Any) -> bool:
    """A full DTLS handshake between two endpoints, in memory; True once the client is
    connected. Bounded: 20 flights."""
    from tureen.workers.transport.dtls import DtlsConnected

    now = time.monotonic()
    to_server = client.start(now)
    to_client: list[bytes] = server.start(now)  # the server's side only arms itself
    for _ in range(20):
        for datagram in to_server:
            to_client += server.handle_datagram(datagram, now)[0]
        to_server = []
        for datagram in to_client:
            out, events = client.handle_datagram(datagram, now)
            to_server += out
            if any(isinstance(e, DtlsConnected) for e in events):
                for datagram in to_server:  # the client's last flight, for the server
                    server.handle_datagram(datagram, now)
                return True
        to_client = []
        if not to_server:
            return False
    return False


def items(count: int) -> None:
    """The big parts of a connected WebRTC transport, COUNT of each, RSS delta in this process."""
    from tureen.workers.transport.dtls import LocalCertificate
    from tureen.workers.transport.srtp import SrtpContext

    me = os.getpid()
    keep: list[Any] = []
    for name in ("gcm", "cm"):
        before = memory(me)[0]
        size = 28 if name == "gcm" else 30  # master key || salt
        keep += [SrtpContext(PROFILE_NAMES[name], os.urandom(size), os.urandom(size)) for _ in range(count)]
        print(f"  SrtpContext {name:<4} (two libsrtp sessions)   +{(memory(me)[0] - before) / 1024 / count:7.1f} KiB each",
              flush=True)
    cert = LocalCertificate()
    before = memory(me)[0]
    pairs = [_pair(cert) for _ in range(count)]
    created = memory(me)[0]
    connected = sum(_handshake(s, c) for s, c in pairs)
    done = memory(me)[0]
    print(f"  DtlsEndpoint created (before its handshake)  +{(created - before) / 2048 / count:7.1f} KiB each")
    print(f"  DtlsEndpoint handshake done ({connected}/{count} pairs) +{(done - created) / 2048 / count:7.1f} KiB each "
          "(OpenSSL's SSL object after a full handshake, MODE_RELEASE_BUFFERS on)", flush=True)
    keep.clear()


async def run(count: int, profile: str, out: Path) -> None:
    forwarder_cpu, tools_cpu = cpus.layout()
    for kind in ("webrtc", "plain"):
        server = TureenServer(1, out, forwarder_cpu, tools_cpu)
        try:
            async with TureenClient(server.endpoint, timeout=60.0) as client:
                await server.wait_ready(client)
                pid = server.worker_pids[0]
                print(f"{kind}: {count} of each, worker pid {pid}", flush=True)
                if kind == "webrtc":
                    await webrtc_steps(client, pid, count, profile)
                else:
                    await plain_steps(client, pid, count)
        finally:
            server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.memory", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=1000, help=f"transports / consumers (<= {MAX_COUNT})")
    parser.add_argument("--profile", default="gcm", choices=sorted(PROFILE_NAMES), help="SRTP profile")
    parser.add_argument("--no-items", dest="items", action="store_false",
                        help="skip the in-process DTLS / SRTP measurement")
    parser.add_argument("--no-servers", dest="servers", action="store_false",
                        help="skip the server runs (items only)")
    args = parser.parse_args(argv)
    if not 1 <= args.count <= MAX_COUNT:
        raise SystemExit(f"--count must be 1..{MAX_COUNT}")
    started = time.monotonic()
    if args.servers:
        with tempfile.TemporaryDirectory(prefix="bench-memory-") as logs:
            asyncio.run(run(args.count, args.profile, Path(logs)))
    if args.items:
        print(f"in this process: {args.count} of each")
        items(args.count)
    print(f"{time.monotonic() - started:.0f} s; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
