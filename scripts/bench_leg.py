"""Micro-benchmark: a host leg's CPU per packet and bytes per packet, both ends in one process.

    .venv/bin/python scripts/bench_leg.py [--per-drain 1,8,32] [--packets 50000] [--reps 3] [--cpu 0]
                                          [--modes batched,per-datagram] [--parts]

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

--parts: where a batched leg's time goes at 32 packets per drain, per packet: the whole
origin flush and gateway drain (as above), SRTP protect and unprotect timed alone, the bare
sendmmsg and recvmmsg of 32 prefilled datagrams of the leg's size, and what is left (the
per-packet Python of each end). Bulk timings, so the clock's own cost stays out.

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

from tureen.workers.sendbatch import RecvBatch, SendSlots, sockaddr
from tureen.workers.transport.host_leg import HEADER, OVERHEAD, PROFILE, SLOT, LegHub, LegOut
from tureen.workers.transport.pipe import LEN_PREFIX
from tureen.workers.transport.srtp import SrtpContext, buffer_pointer

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


def srtp_parts(packets: int) -> tuple[float, float]:
    """(protect, unprotect) µs per packet, alone: a loop with the call minus the same loop
    without it (the copies the leg makes too)."""
    key = os.urandom(28)
    tx, rx = SrtpContext(PROFILE, key, key), SrtpContext(PROFILE, key, key)
    buf, rbuf = bytearray(2048), bytearray(2048)
    ptr = buffer_pointer(buf)
    plain = [struct.pack("!BBHII", 0x80, 96, s & 0xFFFF, s * 3000, SSRC) + bytes(SIZE - 12) for s in range(packets)]
    t0 = time.process_time_ns()
    for p in plain:
        buf[:SIZE] = p
    t1 = time.process_time_ns()
    for p in plain:
        buf[:SIZE] = p
        tx.protect_rtp_at(ptr, SIZE)
    t2 = time.process_time_ns()
    tx = SrtpContext(PROFILE, key, key)  # the same packets again, kept for the receive side (not timed)
    sealed = []
    for p in plain:
        buf[:SIZE] = p
        sealed.append(bytes(buf[: tx.protect_rtp_at(ptr, SIZE)]))
    t3 = time.process_time_ns()
    for p in sealed:
        rbuf[: len(p)] = p
    t4 = time.process_time_ns()
    for p in sealed:
        rbuf[: len(p)] = p
        rx.unprotect_rtp_into(rbuf, len(p))
    t5 = time.process_time_ns()
    return ((t2 - t1) - (t1 - t0)) / 1000 / packets, ((t5 - t4) - (t4 - t3)) / 1000 / packets


def call_parts(packets: int, per: int = 32) -> tuple[float, float]:
    """(sendmmsg, recvmmsg) µs per datagram: `per` prefilled leg-sized datagrams per call."""
    import socket

    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        tx.bind(("127.0.0.1", 0))
        rx.bind(("127.0.0.1", 0))
        rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        slots, rb = SendSlots(per, SLOT), RecvBatch(64, SLOT, names=True)
        for i in range(per):
            slots.set_length(i, SIZE + OVERHEAD)
        name = sockaddr(socket.AF_INET, rx.getsockname())
        sent = taken = 0
        for _ in range(max(1, packets // per)):
            t0 = time.process_time_ns()
            lost = slots.send(tx.fileno(), name, per)
            t1 = time.process_time_ns()
            k = rb.recv(rx.fileno())
            t2 = time.process_time_ns()
            assert not lost and k == per, (lost, k)
            sent += t1 - t0
            taken += t2 - t1
    finally:
        tx.close()
        rx.close()
    n = max(1, packets // per) * per
    return sent / 1000 / n, taken / 1000 / n


def parts(packets: int, reps: int) -> None:
    print(f"where the time goes, batched, 32 per drain, µs per packet (--parts; load average {os.getloadavg()[0]:.2f}):")
    print(f"{'':>4} {'origin':>7} {'protect':>7} {'sendmmsg':>8} {'python':>7} | {'gateway':>7} {'unprotect':>9} {'recvmmsg':>8} {'python':>7}")
    for rep in range(reps):
        o, g = asyncio.run(leg_run(32, packets))
        p, u = srtp_parts(packets)
        s, r = call_parts(packets)
        print(f"{rep + 1:>4} {o:>7.2f} {p:>7.2f} {s:>8.2f} {o - p - s:>7.2f} | {g:>7.2f} {u:>9.2f} {r:>8.2f} {g - u - r:>7.2f}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-drain", default="1,8,32", help="packets queued per drain")
    parser.add_argument("--packets", type=int, default=50_000, help="packets per measurement")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--cpu", type=int, default=None, help="pin this process to this CPU")
    parser.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, of {', '.join(MODES)}")
    parser.add_argument("--parts", action="store_true", help="where a batched leg's time goes, instead")
    args = parser.parse_args()
    modes = args.modes.split(",")
    if not modes or any(m not in MODES for m in modes):
        parser.error(f"--modes: {args.modes!r}: give one or more of {', '.join(MODES)}, comma-separated")
    packets = min(args.packets, MAX_PACKETS)
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    if args.parts:
        parts(packets, args.reps)
        return 0
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
