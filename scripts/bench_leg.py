"""Micro-benchmark: a host leg's CPU per packet and bytes per packet, both ends in one process.

    .venv/bin/python scripts/bench_leg.py [--per-drain 1,8,32] [--packets 50000] [--reps 3] [--cpu 0]
                                          [--modes batched,per-datagram]

Moves 1200-byte RTP packets from an origin's LegOut to a gateway's LegHub (the real classes
of workers/transport/host_leg.py over real UDP sockets on 127.0.0.1): `per-drain` packets
queued as the forwarder queues them during a drain, then `flush` (SRTP-protect and send each
as its own datagram) and the gateway's `_drain` (receive, check the address, unprotect, hand
to the forwarder). Prints the process CPU time per packet of each end and of both, best of
--reps, beside the local pipe (scripts/bench_pipe.py's `unix` run, the same packets between
two workers of one host), and the bytes each adds per packet on the wire.

Modes: `batched` is what a worker runs on Linux (one sendmmsg per flush, one recvmmsg per
drain), `per-datagram` the hub without them (LegHub(batched=False): one sendto per packet,
one recvmsg per datagram, the code before issue 17's round three). The reps of the modes
alternate, so load changes hit both alike.

The gateway's forwarder here does nothing with a packet (its second demux, the same as for
any piped packet, comes on top; `make bench` has whole workers). One thread does both ends,
so no wake-up is measured: latency is docs/benchmarks.md's. Bounded: at most --packets per
measurement (<= 500,000), loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import struct
import sys
import time

from tureen.workers.transport.host_leg import HEADER, OVERHEAD, LegHub, LegOut
from tureen.workers.transport.pipe import LEN_PREFIX

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_pipe import unix_run  # noqa: E402  (a script beside this one)

MAX_PACKETS = 500_000
SIZE = 1200
LEG = 7
SSRC = 0x11223344


class Sink:
    """The forwarder as a leg sees it; counts what it is handed."""

    def __init__(self) -> None:
        self.buf = bytearray(65536)
        self.dirty: list = []
        self.got = 0
        self.pipe_packets_in = 0

    def receive(self, source: object, n: int) -> None:
        self.got += 1

    def after_drain(self) -> None:
        pass


class Producer:
    """What a leg's end reads of the router's producer."""

    id = 20
    ssrc_table: dict = {}


MODES = ("batched", "per-datagram")


async def leg_run(per_drain: int, packets: int, mode: str = "batched") -> tuple[float, float]:
    """(origin, gateway) process CPU µs per packet over one leg."""
    origin_fwd, gateway_fwd = Sink(), Sink()
    key = os.urandom(28)
    batched = mode == "batched"
    origin = LegHub(origin_fwd, "127.0.0.1", None, 40000, 49999, 1, batched)  # type: ignore[arg-type]
    gateway = LegHub(gateway_fwd, "127.0.0.1", None, 40000, 49999, 2, batched)  # type: ignore[arg-type]
    try:
        out: LegOut = origin.open_out(LEG, Producer(), key, gateway.address())  # type: ignore[arg-type]
        gateway.open_in(LEG, Producer(), key, origin.address())  # type: ignore[arg-type]
        drains = max(1, packets // per_drain)
        seq = 0
        sent = taken = 0
        for _ in range(drains):
            for _ in range(per_drain):  # what forward.py appends (not timed: it is the pipe's too)
                out.out += LEN_PREFIX[SIZE]
                out.out += struct.pack("!BBHII", 0x80, 96, seq & 0xFFFF, seq * 3000, SSRC) + bytes(SIZE - 12)
                seq += 1
            out.count = per_drain
            start = time.process_time_ns()
            out.flush(origin_fwd)  # type: ignore[arg-type]
            mid = time.process_time_ns()
            gateway._drain()
            end = time.process_time_ns()
            sent += mid - start
            taken += end - mid
        total = drains * per_drain
        assert gateway_fwd.got == total, (gateway_fwd.got, total, out.dropped, gateway.dump())
        assert (origin.dump()["batch"] is not None) == batched, origin.dump()
    finally:
        origin.close()
        gateway.close()
    return sent / 1000 / total, taken / 1000 / total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-drain", default="1,8,32", help="packets queued per drain")
    parser.add_argument("--packets", type=int, default=50_000, help="packets per measurement")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--cpu", type=int, default=None, help="pin this process to this CPU")
    parser.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, of {', '.join(MODES)}")
    args = parser.parse_args()
    modes = args.modes.split(",")
    if not modes or any(m not in MODES for m in modes):
        parser.error(f"--modes: {args.modes!r}: give one or more of {', '.join(MODES)}, comma-separated")
    packets = min(args.packets, MAX_PACKETS)
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"bytes per {SIZE}-byte packet on the wire: leg +{OVERHEAD} (leg id {HEADER}, GCM tag "
          f"{OVERHEAD - HEADER}) in its own datagram; pipe +2 (length) and +4 per datagram (producer id)")
    print(f"{'per drain':>9} {'mode':>12} | {'origin µs':>9} {'gateway µs':>10} {'leg µs/pkt':>10} | {'pipe µs/pkt':>11} leg/pipe")
    for per_drain in (int(x) for x in args.per_drain.split(",")):
        for mode in modes:
            asyncio.run(leg_run(per_drain, packets // 10, mode))  # warm-up
        legs: dict[str, list[tuple[float, float]]] = {mode: [] for mode in modes}
        for _ in range(args.reps):  # the modes alternate: a load change hits both
            for mode in modes:
                legs[mode].append(asyncio.run(leg_run(per_drain, packets, mode)))
        pipe = min(unix_run(per_drain, packets) for _ in range(args.reps))
        for mode in modes:
            o, g = min(legs[mode], key=sum)
            print(f"{per_drain:>9} {mode:>12} | {o:>9.2f} {g:>10.2f} {o + g:>10.2f} | {pipe:>11.2f} {(o + g) / pipe:>8.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
