"""Micro-benchmark: a piped packet through both ends of the pipe in the worker's native loop.

    .venv/bin/python scripts/bench_pipe_loop.py [--per-drain 1,8] [--packets 50000] [--reps 3] [--cpu 0]

One process, one NativeSelector loop (workers/native_loop.py) holding both workers' ends:
the origin's connected UDP socket (a native reader: recvmmsg, the native receive appending to
the PipeBatch, the flush) and the destination's PipeHub (its accepted pipe connection, a
native reader with this branch's core, an asyncio reader before). A coroutine sends
`per-drain` 1200-byte RTP packets to the origin's socket and yields (asyncio.sleep(0)) until
the destination's forwarder has them; printed: process CPU µs per packet, best of --reps.
Run it on two builds of the native core to compare them (the sender's and the coroutine's
work is the same in both). Bounded: at most --packets (<= 500,000) per measurement, each
wait for the destination at most 2 s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import struct
import sys
import tempfile
import time

from tureen.workers import native, native_loop

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_pipe import SIZE, forwarder_pair  # noqa: E402  (a script beside this one)

MAX_PACKETS = 500_000


def loop_run(per_drain: int, packets: int) -> tuple[float, bool]:
    """Process CPU µs per packet, both ends of the pipe in one native loop; and whether the
    destination's pipe connection was a native reader."""
    loop = native_loop.new_event_loop()
    selector = native_loop.selector_of(loop)
    ssrc = 0x1234
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with tempfile.TemporaryDirectory(prefix="bench-pipe-loop-") as run_dir:
        origin, dest, source, hubs = forwarder_pair(loop, run_dir, ssrc)
        try:
            rx.bind(("127.0.0.1", 0))
            tx.bind(("127.0.0.1", 0))
            rx.connect(tx.getsockname())
            tx.connect(rx.getsockname())
            rx.setblocking(False)
            selector.add_native(rx.fileno(), origin.rx, source, False, lambda n: None, origin.after_drain)
            template = bytearray(struct.pack("!BBHII", 0x80, 96, 0, 0, ssrc) + bytes(SIZE - 12))
            drains = max(1, packets // per_drain)

            async def scenario() -> float:
                await asyncio.sleep(0.02)  # the destination accepts the origin's connection
                seq = 0
                start = time.process_time_ns()
                for _ in range(drains):
                    for _ in range(per_drain):
                        struct.pack_into("!H", template, 2, seq & 0xFFFF)
                        tx.send(template)
                        seq += 1
                    deadline = time.monotonic() + 2
                    while dest.rtp_in < seq:
                        if time.monotonic() > deadline:
                            raise RuntimeError(f"the destination has {dest.rtp_in} of {seq} packets")
                        await asyncio.sleep(0)
                return (time.process_time_ns() - start) / 1000 / seq

            spent = loop.run_until_complete(scenario())
            return spent, hubs[1].dump().get("nativeOrigins", 0) == 1
        finally:
            selector.remove_native(rx.fileno())
            rx.close()
            tx.close()
            for hub in hubs:
                hub.close()
            loop.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-drain", default="1,8", help="packets per origin drain")
    parser.add_argument("--packets", type=int, default=50_000, help="packets per measurement")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--cpu", type=int, default=None, help="pin this process to this CPU")
    args = parser.parse_args()
    if not native_loop.available():
        print(f"native core missing: {native.WHY_NOT}", file=sys.stderr)
        return 2
    packets = min(args.packets, MAX_PACKETS)
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"{'per drain':>9} | loop µs/pkt | the destination's pipe connection")
    for per_drain in (int(x) for x in args.per_drain.split(",")):
        loop_run(per_drain, packets // 10)  # warm-up
        runs = [loop_run(per_drain, packets) for _ in range(args.reps)]
        best = min(spent for spent, _ in runs)
        reader = "native reader" if runs[0][1] else "asyncio reader"
        print(f"{per_drain:>9} | {best:>11.2f} | {reader}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
