"""Micro-benchmark: what the NACK generator towards senders adds to the forwarder per packet.

    .venv/bin/python scripts/bench_nack.py [--count 100000] [--reps 5] [--cpu 0]

One worker's real parts in one process: a Router, a video producer on a plain transport, one
consumer on another plain transport connected to a sink that is never read (the kernel drops
each copy at its queue), the Forwarder with the per-copy core. 1200-byte VP8-like packets, a
frame end (marker) every 4th, go through `Forwarder.receive` with and without a
NackGenerator on the stream, in order and with one packet in 50 missing (never repaired and no
retry timer: every packet then takes the generator's slow path, the worst case). Prints the
CPU time of this thread per input packet (median and best of --reps, the four cases
interleaved). The send syscall is in every figure; the differences are what the generator
costs. Bounded: at most 1,000,000 packets per run; loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import struct
import time
from typing import Any

from tureen.workers.forward import Forwarder
from tureen.workers.router import Consumer, Producer, Router
from tureen.workers.rtp.nack_generator import NackGenerator
from tureen.workers.transport.plain import PlainRtpTransport

MAX_COUNT = 1_000_000
SSRC, PT, ROOM_PT = 0x1111, 96, 101


class _Listener:
    def __init__(self, router: Router) -> None:
        self.router = router

    def transport_ready(self, transport: Any) -> None:
        self.router.transport_ready(transport)

    def transport_event(self, transport: Any, event: Any) -> None:
        pass

    def transport_rtcp(self, transport: Any, packet: bytes) -> None:
        pass

    def transport_failed(self, transport: Any, reason: str) -> None:
        pass


def packets(count: int, start: int, lossy: bool) -> list[bytes]:
    out = []
    for i in range(count):
        if lossy and i % 50 == 25:
            continue
        seq = (start + i) & 0xFFFF
        marker = 0x80 if i % 4 == 3 else 0
        out.append(struct.pack("!BBHII", 0x80, marker | PT, seq, (i // 4) * 3000, SSRC) + b"\x10\x01" + b"\x00" * 1186)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--cpu", type=int, default=None, help="pin to this CPU")
    args = parser.parse_args()
    if not 1 <= args.count <= MAX_COUNT:
        parser.error(f"--count must be 1..{MAX_COUNT}")
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    loop = asyncio.new_event_loop()
    fwd = Forwarder(batched=False)
    fwd.on_nack = lambda stream, seqs: None
    router = Router()
    listener = _Listener(router)
    sender, sink = socket.socket(type=socket.SOCK_DGRAM), socket.socket(type=socket.SOCK_DGRAM)
    for s in (sender, sink):
        s.bind(("127.0.0.1", 0))
    sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)
    t_in = PlainRtpTransport(1, listener, loop, fwd, "127.0.0.1", 20000, 59999)
    t_in.connect(*sender.getsockname())
    t_out = PlainRtpTransport(2, listener, loop, fwd, "127.0.0.1", 20000, 59999)
    t_out.connect(*sink.getsockname())
    router.add_transport(t_in)
    router.add_transport(t_out)
    producer = Producer(10, "video", t_in, False, [(SSRC, None, "default")], [(PT, ROOM_PT)], [], 90000)
    router.add_producer(producer)
    router.add_consumer(Consumer(20, "video", producer, t_out, 0x2222, None, False, "default", None))
    stream = producer.streams[0]
    buf = fwd.buf
    results: dict[tuple[bool, bool], list[float]] = {}
    try:
        for rep in range(args.reps):
            for gen in (False, True):
                for lossy in (False, True):
                    stream.nack = NackGenerator() if gen else None
                    batch = packets(args.count, rep * 7919, lossy)
                    t0 = time.thread_time()
                    for p in batch:
                        n = len(p)
                        buf[:n] = p
                        fwd.receive(t_in, n)
                    results.setdefault((gen, lossy), []).append((time.thread_time() - t0) / len(batch) * 1e6)
    finally:
        t_in.close()
        t_out.close()
        sender.close()
        sink.close()
        loop.close()
    print(f"load average {os.getloadavg()[0]:.2f}; {args.count} packets x {args.reps} reps; us per input packet")
    for (gen, lossy), values in results.items():
        print(
            f"  generator {'on ' if gen else 'off'}  loss {'1/50' if lossy else 'none'}: "
            f"median {statistics.median(values):.3f}  best {min(values):.3f}"
        )


if __name__ == "__main__":
    main()
