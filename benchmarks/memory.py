"""`python -m benchmarks.memory [--count 1000] [--profile gcm]`: a worker's memory per
transport and per consumer, as RSS deltas over COUNT of them.

One `tureen serve --workers 1`, driven through the control API only, and one producer on a
connected WebRtcTransport per room of 250 peers (the server's quota is 500 per room). Then, reading the worker's RSS (and its anonymous part, from
/proc/<pid>/smaps_rollup) after each step, COUNT spy peers:

  join             the peers (the supervisor's state; the worker should not move)
  transports       one WebRtcTransport each, created, not reached: UDP socket, ICE-lite
                   state, the DTLS endpoint (an OpenSSL SSL object before its handshake)
  connected        ICE + the DTLS handshake on each (the harness is the browser, as in the
                   SRTP rows of benchmarks.run): two libsrtp sessions per transport, the
                   DTLS record keys (the SSL object is freed after the handshake), the
                   connected socket
  consumers        one enabled consumer each of the producer's video: the consumer's state
                   in the worker (rewrite, retransmission buffer, counters)

and the same with plain RTP transports in a second server (`plain transports`, `plain
consumers`). Prints KiB per item for each step. Then, in this process (`--items`, on by
default), the two big parts of a connected WebRTC transport alone, COUNT of each, RSS delta:
a DtlsEndpoint pair through a full handshake in memory (÷ 2: what an endpoint keeps once
connected, client and server alike) and an SrtpContext (its two libsrtp sessions) per profile.
Bounded: COUNT <= 2000, every handshake 15 s, only 127.0.0.1.

`--consumers N` (the 10,000-consumer check, issue 17; N <= 10,000) runs instead: one worker,
rooms of CHECK_PEERS spy peers, each room with one source peer sending CHECK_PRODUCERS audio
producers (160-byte packets) on one plain transport, and each spy consuming all of them on
one plain recv transport (N / CHECK_PRODUCERS transports: two sockets each once connected,
so N = 10,000 needs ~10,000 descriptors of the worker's 20,000). The C load tool
(benchmarks/ctools/rtpload.c) sends `--rate` packets/s per producer for `--seconds` and checks
every copy at one sink socket per CHECK_PEERS_PER_SINK spies; the worker's RSS is read after each step. Prints the
loss (target < 0.1 %) and KiB per consumer (with its share of a transport). Quotas raised for
this server only (peers per room, the control connection's request rate), and its media ports
moved below the ephemeral range, away from other servers on the machine.
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
from .ctools import build_tools
from .load import AUDIO_SIZE, Expect, Stream, Timing, Topology, run_load, udp_socket
from .netstat import udp_drops
from .scenarios import (
    AUDIO_PT,
    RoomDriver,
    _consumer_keys,
    _gather_chunked,
    _rtp_parameters,
    port_of,
)
from .srtp import PROFILE_NAMES
from .tureen_server import TureenServer
from .webrtc import HANDSHAKES_AT_ONCE, Browser, WebRtcRoom, _keepalive

MAX_COUNT = 2000
SETTLE_S = 0.5
PEERS_PER_ROOM = 250
MAX_CONSUMERS = 10_000  # two sockets per plain transport: the worker's descriptor limit
CHECK_PEERS = 1000  # spy peers per room in the consumers check (BENCH_MAX_PEERS allows 2000)
CHECK_PRODUCERS = 2  # producers per room: consumers per spy's transport
# Spies per sink socket: an input packet's copies to one room leave the worker in one burst;
# 1,000 of them into one socket would test the sink's buffer, not the worker.
CHECK_PEERS_PER_SINK = 50
LOSS_TARGET = 0.001
# After the window: copies of the window's last packets still in flight count when they arrive
# within this (a worker on a shared core can run a burst of 1,000 copies late).
CHECK_DRAIN = 2.0
CHECK_IDLE_S = 3.0  # the worker's CPU with its consumers and no media, measured over this
# The check's server: what it needs above the defaults (docs/configuration.md), this server only.
CHECK_ENV = {
    "TUREEN_MAX_REQUESTS_PER_SECOND": "20000",
    "TUREEN_MAX_REQUESTS_BURST": "20000",
    # 12,000 ports for 5,000 transports, below the ephemeral range (32768-) and away from the
    # default 40000-49999 that other servers on the machine use.
    "TUREEN_RTC_MIN_PORT": "20000",
    "TUREEN_RTC_MAX_PORT": "32000",
}


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
          "(the record keys and final flight; OpenSSL's SSL object is freed)", flush=True)
    keep.clear()


async def consumers_check(client: TureenClient, pid: int, n: int, rate: int, seconds: float, rtpload: Path,
                          tools_cpu: int) -> dict[str, Any]:
    """N plain consumers (see the module's docstring); returns the load tool's report, with
    the memory steps under "steps"."""
    rooms = [RoomDriver(client, f"mem-check{i}") for i in range(-(-n // (CHECK_PEERS * CHECK_PRODUCERS)))]
    sockets = []
    streams: list[Stream] = []
    expects: list[Expect] = []
    try:
        for i, room in enumerate(rooms):
            await room.create()
            await room.join("src")
            source = udp_socket()
            sockets.append(source)
            send_tid, server_port = await room.plain_transport("src", "send", port_of(source))
            for k in range(CHECK_PRODUCERS):
                ssrc = 0x2000_0000 + i * 16 + k
                # A consumer carries its producer's appData (as in v2): how a copy finds its stream.
                await room.req("src", "createProducer", id=900_000 + i * 16 + k, kind="audio", transportId=send_tid,
                               rtpParameters=_rtp_parameters("audio", ssrc), paused=False,
                               appData={"stream": len(streams)})
                streams.append(Stream(source, server_port, ssrc, AUDIO_PT, AUDIO_SIZE, ts_step=960))
        steps = Steps(pid, n)
        left = n
        joined = []
        for room in rooms:
            peers = min(CHECK_PEERS, -(-left // CHECK_PRODUCERS))
            left -= peers * CHECK_PRODUCERS
            names = [f"s{j}" for j in range(peers)]
            joined.append((names, await _gather_chunked([room.join(name, spy=True) for name in names])))
        await steps.mark("check join")
        sinks = []
        for _, (names, _) in zip(rooms, joined, strict=True):
            room_sinks = [udp_socket() for _ in range(0, len(names), CHECK_PEERS_PER_SINK)]
            sockets += room_sinks
            sinks.append([room_sinks[j // CHECK_PEERS_PER_SINK] for j in range(len(names))])
        tids = [await _gather_chunked([room.plain_transport(name, "recv", port_of(sink))
                                       for name, sink in zip(names, room_sinks, strict=True)])
                for room, room_sinks, (names, _) in zip(rooms, sinks, joined, strict=True)]
        await steps.mark("check transports")
        for room, room_sinks, (names, answers), room_tids in zip(rooms, sinks, joined, tids, strict=True):
            enables = []
            for name, sink, answer, (tid, _) in zip(names, room_sinks, answers, room_tids, strict=True):
                for consumer in answer["peers"][0]["consumers"]:
                    if len(expects) < n:
                        cid, cssrc, cpt = _consumer_keys(consumer)
                        enables.append(room.enable(name, cid, tid))
                        expects.append(Expect(sink, cssrc, cpt, consumer["appData"]["stream"]))
            await _gather_chunked(enables)
        await steps.mark("check consumers")
        sink_ports = sorted({port_of(e.sink) for e in expects})
        input_ports = sorted({s.dst_port for s in streams})
        drops = udp_drops(sink_ports), udp_drops(input_ports)
        worker = psutil.Process(pid)
        cpu: list[float] = []

        def sample() -> None:
            times = worker.cpu_times()
            cpu.append(times.user + times.system)

        # What N consumers cost the worker with no media: housekeeping (rate samples, RTCP).
        sample()
        await asyncio.sleep(CHECK_IDLE_S)
        sample()
        idle = (cpu[1] - cpu[0]) / CHECK_IDLE_S
        cpu.clear()
        report = await run_load(rtpload, Topology(streams, expects), rate, Timing(2.0, seconds, CHECK_DRAIN), tools_cpu,
                                sample, sample)
        report["worker_idle_cpu"] = idle
        report["sink_drops"] = udp_drops(sink_ports) - drops[0]
        report["input_drops"] = udp_drops(input_ports) - drops[1]
        report["worker_cpu"] = (cpu[1] - cpu[0]) / report["window_s"] if len(cpu) == 2 else float("nan")
        await steps.mark("check after load")
        report["steps"] = steps.rows
        return report
    finally:
        for sock in sockets:
            sock.close()


async def run_check(n: int, rate: int, seconds: float, out: Path) -> None:
    """The N-consumer check on its own server; prints the figures and the targets."""
    forwarder_cpu, tools_cpu = cpus.layout()
    rtpload = build_tools(out / "bin").rtpload
    saved = {k: os.environ.get(k) for k in CHECK_ENV}
    os.environ.update(CHECK_ENV)  # TureenServer passes this process's environment on
    try:
        server = TureenServer(1, out, forwarder_cpu, tools_cpu)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    try:
        async with TureenClient(server.endpoint, timeout=60.0) as client:
            await server.wait_ready(client)
            pid = server.worker_pids[0]
            print(f"consumers check: {n} plain consumers, {CHECK_PRODUCERS} per transport, "
                  f"{rate} packets/s per producer for {seconds:g} s, worker pid {pid}", flush=True)
            report = await consumers_check(client, pid, n, rate, seconds, rtpload, tools_cpu)
    finally:
        server.stop()
    expected, received = report["expected_window"], report["received_window"]
    loss = 1 - received / expected if expected else 1.0
    per = sum(row[1] for row in report["steps"] if row[0] in ("check transports", "check consumers")) / n / 1024
    print(f"  output {expected / report['window_s']:,.0f} packets/s; {received:,} of {expected:,} copies "
          f"received in the window: loss {100 * loss:.3f} % (target < {100 * LOSS_TARGET:.1f} %: "
          f"{'met' if loss < LOSS_TARGET else 'MISSED'}); silent consumers {report['silent_consumers']}, "
          f"seq errors {report['seq_errors']}, latency p50/p99 {report['latency_us_p50']:.0f}/"
          f"{report['latency_us_p99']:.0f} us")
    print(f"  where: dropped at the sinks' sockets {report['sink_drops']:,}, at the worker's input "
          f"{report['input_drops']:,}; whole run {report['received_total']:,} of {report['expected_total']:,}, "
          f"unexpected {report['unexpected']}, not media (the worker's RTCP) {report['stale']}; worker CPU "
          f"{100 * report['worker_cpu']:.0f} % of a core in the window, {100 * report['worker_idle_cpu']:.0f} % "
          "with no media")
    print(f"  RSS per consumer with its share of a transport {per:.1f} KiB (target <= 8 KiB: "
          f"{'met' if per <= 8 else 'MISSED'})", flush=True)


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
    parser.add_argument("--consumers", type=int, default=0,
                        help=f"run the N-consumer check instead (N <= {MAX_CONSUMERS})")
    parser.add_argument("--rate", type=int, default=5, help="consumers check: packets/s per producer (1..50)")
    parser.add_argument("--seconds", type=float, default=10.0, help="consumers check: measured seconds (1..60)")
    args = parser.parse_args(argv)
    if args.consumers:
        if not 1 <= args.consumers <= MAX_CONSUMERS:
            raise SystemExit(f"--consumers must be 1..{MAX_CONSUMERS}")
        if not (1 <= args.rate <= 50 and 1 <= args.seconds <= 60):
            raise SystemExit("--rate must be 1..50 packets/s and --seconds 1..60")
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="bench-memory-") as logs:
            asyncio.run(run_check(args.consumers, args.rate, args.seconds, Path(logs)))
        print(f"{time.monotonic() - started:.0f} s; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        return 0
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
