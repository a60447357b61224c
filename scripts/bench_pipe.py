"""Micro-benchmark: the cross-worker pipe's CPU per packet, both ends in one process.

    .venv/bin/python scripts/bench_pipe.py [--per-drain 1,8,32] [--packets 100000] [--reps 3] [--cpu 0]

Moves 1200-byte packets from an origin's PipeBatch to a destination's PipeHub (the real
classes of workers/transport/pipe.py over their real Unix socket), `per-drain` packets per
datagram, as a worker does after each socket drain, and prints the CPU time of the whole
process per packet (both ends; with ZeroMQ its I/O threads too), best of --reps, for:

  unix     the pipe as it is (SOCK_SEQPACKET, one datagram per drain)
  zmq      what it was before issue 17, rebuilt here: PUSH/PULL over ipc://, one two-frame
           message per drain, the receiver copying each record into the forwarder's buffer
  copy     one native fan-out copy to one consumer (scripts/bench_fanout.py's setup, N=1):
           the unit the issue's target is stated in ("below one extra consumer")
  fwd      the whole hop through two real Forwarders (the native core): the origin's
           receive of each packet (a producer piped to the destination, no consumer there),
           its flush after the drain, and the destination's drain into its receive (a piped
           producer, no consumer): with the native receive both ends' pipe work is in C
           (workers/_native_pipe.c); run on a build without it, the Python paths

In unix and zmq the destination hands each packet to a forwarder whose `receive` does nothing: a worker's
second demux of a piped packet (Forwarder.receive, the same as for a packet from a socket)
comes on top of these figures; `make bench`'s cross rows include it. One thread does both
ends, so no wake-up is measured here: that is the latency side (docs/benchmarks.md).
Bounded: at most --packets per measurement (<= 1,000,000); Unix sockets in a temporary folder.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import struct
import sys
import tempfile
import time

import zmq
from tureen.workers import native
from tureen.workers.forward import Forwarder
from tureen.workers.router import Producer
from tureen.workers.transport.pipe import LEN_PREFIX, PipeHub

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_fanout import Setup  # noqa: E402  (a script beside this one)
from bench_fanout import run as fanout_run  # noqa: E402

MAX_PACKETS = 1_000_000
SIZE = 1200
PRODUCER = 7


class Sink:
    """The forwarder as the pipe sees it; counts what it is handed."""

    def __init__(self) -> None:
        self.buf = bytearray(65536)
        self.dirty: list = []
        self.got = 0
        for name in ("pipe_packets_out", "pipe_messages_out", "pipe_dropped", "pipe_packets_in",
                     "pipe_unknown_producer"):
            setattr(self, name, 0)

    def receive(self, source: object, n: int) -> None:
        self.got += 1

    def after_drain(self) -> None:
        pass


class Piped:
    piped = True


def unix_run(per_drain: int, packets: int) -> float:
    """Process CPU µs per packet through the Unix-socket pipe."""
    loop = asyncio.new_event_loop()
    with tempfile.TemporaryDirectory(prefix="bench-pipe-") as run_dir:
        origin, dest = Sink(), Sink()
        hubs = [PipeHub(loop, run_dir, i, fwd, lambda pid: Piped() if pid == PRODUCER else None, lambda p: None)
                for i, fwd in ((0, origin), (1, dest))]
        try:
            batch = hubs[0].open(PRODUCER, 1)
            hubs[1]._accept()
            conn = next(iter(hubs[1]._conns.values()))
            record = LEN_PREFIX[SIZE] + bytes(SIZE)
            drains = max(1, packets // per_drain)
            start = time.process_time_ns()
            for _ in range(drains):
                out = batch.out
                for _ in range(per_drain):
                    out += record
                batch.count = per_drain
                batch.flush(origin)  # type: ignore[arg-type]
                hubs[1]._drain(conn)
            spent = time.process_time_ns() - start
            assert dest.got == drains * per_drain, (dest.got, origin.pipe_dropped)
        finally:
            for hub in hubs:
                hub.close()
            loop.close()
    return spent / 1000 / (drains * per_drain)


def forwarder_pair(loop: asyncio.AbstractEventLoop, run_dir: str, ssrc: int) -> tuple[Forwarder, Forwarder, Source, list[PipeHub]]:
    """Two real native Forwarders as two workers: producer PRODUCER (audio, `ssrc`, PT 96 ->
    100) received by the origin's `source` and piped to the destination, each with its
    PipeHub in `run_dir` (the origin's batch opened; the destination still to accept it).
    The caller closes the hubs."""
    origin, dest = Forwarder(core="native"), Forwarder(core="native")
    source = Source()
    sent = Producer(PRODUCER, "audio", source, False, [(ssrc, None, "default")], [(96, 100)], [], 48000)  # type: ignore[arg-type]
    source.ssrc_table = sent.ssrc_table
    piped = Producer(PRODUCER, "audio", None, False, [(ssrc, None, "default")], [], [], 48000)
    hubs = [PipeHub(loop, run_dir, 0, origin, {}.get, lambda p: None),
            PipeHub(loop, run_dir, 1, dest, {PRODUCER: piped}.get, lambda p: None)]
    batch = hubs[0].open(PRODUCER, 1)
    for stream in sent.streams:
        stream.pipes = (batch,)
    return origin, dest, source, hubs


class Source:
    """The origin's transport as the forwarder sees it: the producer's SSRC table."""

    def __init__(self) -> None:
        self.ssrc_table: dict = {}
        self.rtx_ssrcs: set[int] = set()
        self.producers: dict = {}

    def handle_rtcp(self, n: int, buf: bytearray) -> None:
        pass


def fwd_run(per_drain: int, packets: int) -> float:
    """Process CPU µs per packet through two real Forwarders and the pipe between them."""
    loop = asyncio.new_event_loop()
    ssrc = 0x1234
    with tempfile.TemporaryDirectory(prefix="bench-pipe-") as run_dir:
        origin, dest, source, hubs = forwarder_pair(loop, run_dir, ssrc)
        try:
            hubs[1]._accept()
            conn = next(iter(hubs[1]._conns.values()))
            template = struct.pack("!BBHII", 0x80, 96, 0, 0, ssrc) + bytes(SIZE - 12)
            buf, receive, pack_seq = origin.buf, origin.receive, struct.Struct("!H").pack_into
            drains = max(1, packets // per_drain)
            seq = 0
            start = time.process_time_ns()
            for _ in range(drains):
                for _ in range(per_drain):
                    buf[:SIZE] = template
                    pack_seq(buf, 2, seq & 0xFFFF)
                    seq += 1
                    receive(source, SIZE)
                origin.after_drain()
                hubs[1]._drain(conn)
            spent = time.process_time_ns() - start
            assert dest.rtp_in == seq, (dest.rtp_in, seq, origin.pipe_dropped)
        finally:
            for hub in hubs:
                hub.close()
            loop.close()
    return spent / 1000 / seq


def zmq_run(per_drain: int, packets: int) -> float:
    """The same through ZeroMQ PUSH/PULL over ipc:// (the pipe before issue 17)."""
    ctx = zmq.Context()
    with tempfile.TemporaryDirectory(prefix="bench-pipe-") as run_dir:
        pull = ctx.socket(zmq.PULL)
        pull.bind(f"ipc://{run_dir}/p.ipc")
        push = ctx.socket(zmq.PUSH)
        push.connect(f"ipc://{run_dir}/p.ipc")
        push.send_multipart((b"warm", b""))
        pull.recv_multipart()
        dest = Sink()
        header = PRODUCER.to_bytes(4, "big")
        record = LEN_PREFIX[SIZE] + bytes(SIZE)
        out = bytearray()
        buf = dest.buf
        drains = max(1, packets // per_drain)
        start = time.process_time_ns()
        for _ in range(drains):
            for _ in range(per_drain):
                out += record
            push.send_multipart((header, out), zmq.NOBLOCK)
            del out[:]
            frames = pull.recv_multipart()  # waits for the I/O threads (asleep: no CPU)
            data = frames[1]
            mv = memoryview(data)
            off, end = 0, len(data)
            while off < end:
                n = (data[off] << 8) | data[off + 1]
                off += 2
                buf[:n] = mv[off : off + n]
                off += n
                dest.receive(None, n)
        spent = time.process_time_ns() - start
        push.close(0)
        pull.close(0)
    ctx.term()
    return spent / 1000 / (drains * per_drain)


def copy_run(per_drain: int, packets: int) -> float:
    """One native fan-out copy to one consumer (N=1), per packet."""
    setup = Setup(1, "none")
    try:
        batch = native.make_fanout("native")
        return fanout_run(batch, setup.fan, per_drain, packets)
    finally:
        setup.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-drain", default="1,8,32", help="packets per pipe datagram (per drain)")
    parser.add_argument("--packets", type=int, default=100_000, help="packets per measurement")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--cpu", type=int, default=None, help="pin this process (all its threads) to this CPU")
    args = parser.parse_args()
    if not native.available():
        print(f"native core missing: {native.WHY_NOT}", file=sys.stderr)
        return 2
    packets = min(args.packets, MAX_PACKETS)
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})  # before zmq's threads start: they inherit it
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"{'per drain':>9} | {'unix µs/pkt':>11} {'zmq µs/pkt':>10} {'copy µs':>8} {'fwd µs/pkt':>10} | "
          "unix/copy  zmq/copy  fwd/copy")
    for per_drain in (int(x) for x in args.per_drain.split(",")):
        best = {}
        for name, fn in (("unix", unix_run), ("zmq", zmq_run), ("copy", copy_run), ("fwd", fwd_run)):
            fn(per_drain, packets // 10)  # warm-up
            best[name] = min(fn(per_drain, packets) for _ in range(args.reps))
        print(f"{per_drain:>9} | {best['unix']:>11.2f} {best['zmq']:>10.2f} {best['copy']:>8.2f} {best['fwd']:>10.2f} | "
              f"{best['unix'] / best['copy']:>9.2f} {best['zmq'] / best['copy']:>9.2f} {best['fwd'] / best['copy']:>9.2f}",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
