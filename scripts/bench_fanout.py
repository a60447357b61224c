"""Micro-benchmark: the worker's fan-out cores in one process, without the network harness.

    .venv/bin/python scripts/bench_fanout.py [--n 10,100,500] [--srtp none,gcm,cm]
        [--per-drain 1,8] [--copies 200000] [--reps 3] [--cpu 0] [--audio | --rx | --drain]

Builds N consumers exactly as the worker does (a ConsumerRewrite per consumer, each with its
own UDP socket connected to a sink, and for SRTP its own outbound libsrtp session), then feeds
1200-byte RTP packets through `fanout()` + `flush()` of each core, `per-drain` packets between
two flushes (what one socket drain holds), and prints the CPU time of this thread per output
copy (best of --reps), for the pure-Python core (SendBatch) and the native one (FanOut), and
the ratio. The kernel's loopback delivery runs in the sending thread's softirq, so it is in
the figure, as it is in a worker's. The sinks are never read and have the smallest receive
buffer the kernel allows, so every copy crosses loopback and is dropped at the sink's queue:
the same kernel work for every run whatever the machine's other load (a reader that falls
behind would otherwise make the sends cheaper at random). The absolute figures therefore
leave out the enqueue at the sink; the ratios between cores are what it is for. Another
caveat: loopback delivery that the kernel defers to ksoftirqd is not charged to this thread,
so a run that sends faster can look cheaper per copy than it is (seen: native SRTP-GCM at
N=100 measuring below native plain RTP); compare the two cores on the same row, not rows.

`--audio` measures the input side of one audio packet instead: `Forwarder.receive` (demux,
ingest rewrite of two header extensions, the RFC 6464 level read for room.audioLevels)
plus its fan-out to N plain consumers with the native core, per input packet, with the
level read on (the producer has ssrc-audio-level) and off (the same packets, level_id 0);
on a tree without audio levels (before they existed) only the `off` column is measured.

`--rx` measures the receive path of a plain 1200-byte video packet (no header extension):
`Forwarder.receive` + its fan-out to N plain consumers + flush, per input packet, with the
native receive (workers/_native.c, Receiver) and with the Python receive path
(`native_rx = false`), both on the native fan-out core, alternated within each rep.

`--drain` measures a real transport's connected-socket drain (udp.py), per input packet:
1200-byte video packets sent from a loopback socket to a plain transport (`--srtp none`) or
a WebRTC transport with SRTP (`gcm`, `cm`), `per-drain` at a time, then one drain (recvmmsg,
SRTP unprotect, receive, fan-out to N plain consumers, flush), timed alone (the sends are
not). Three ways, alternated within each rep: `python` (`native_rx = false`), `native-rx`
(the native receive behind udp.py's Python drain and pylibsrtp's unprotect: before the
native drain) and `native-drain` (Receiver.drain: all of it in one C call). Two more take
the whole wake-up of the worker's event loop instead of the drain alone: one iteration of
the asyncio loop (`_run_once`: its select, which returns at once as the datagrams are queued,
the reader's Handle, udp.py's `_drain_connected`, the native drain, the counters and
`Forwarder.after_drain`) as `loop-asyncio` (`native_loop = false`), and one turn of the native
loop's wait as it runs under traffic (workers/native_loop.py: `NativeLoop.select(0)`: epoll,
drain and flush in C) as `loop-native`.

Except for --drain it measures no input side (no recvmmsg, demux, SRTP unprotect, event
loop), so it isolates what the fan-out core changes; `make bench` gives the whole worker.
Bounded: at most --copies output copies per measurement (<= 2,000,000), loopback only.
"""

from __future__ import annotations

import argparse
import os
import socket
import struct
import sys
import time
from functools import partial

from tureen.workers import native
from tureen.workers.rtp.consumer import ConsumerRewrite
from tureen.workers.sendbatch import SendBatch
from tureen.workers.transport.srtp import AEAD_AES_128_GCM, AES128_CM_SHA1_80, SrtpContext

MAX_COPIES = 2_000_000
SINKS = 16
PROFILES = {"gcm": (AEAD_AES_128_GCM, 28), "cm": (AES128_CM_SHA1_80, 30)}


class Setup:
    """N consumers on connected sockets towards SINKS sink sockets that are never read."""

    def __init__(self, n: int, srtp: str) -> None:
        self.sinks = []
        for _ in range(min(SINKS, n)):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("127.0.0.1", 0))
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)  # the kernel's minimum
            self.sinks.append(s)
        self.outs = []
        self.fan = []
        self.contexts = []
        for i in range(n):
            out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            out.setblocking(False)
            out.connect(self.sinks[i % len(self.sinks)].getsockname())
            c = ConsumerRewrite(i, 0x10000 + i)
            c.fd = out.fileno()
            c.send = out.send
            c.sync = False
            c.started = True
            if srtp != "none":
                profile, size = PROFILES[srtp]
                ctx = SrtpContext(profile, os.urandom(size), os.urandom(size))
                c.protect = ctx.protect_rtp_at
                c.srtp_tx = ctx.tx_address
                self.contexts.append(ctx)
            self.outs.append(out)
            self.fan.append(c)
        self.fan = tuple(self.fan)

    def close(self) -> None:
        for s in (*self.outs, *self.sinks):
            s.close()


def run(batch, fan: tuple, per_drain: int, copies: int) -> float:
    """CPU µs of this thread per output copy for `copies` copies (rounded up to drains)."""
    buf = bytearray(65536)
    n = 1200
    struct.pack_into("!BBHII", buf, 0, 0x80, 96, 0, 0, 0x1234)
    view = memoryview(buf)[:n]
    drains = max(1, copies // (len(fan) * per_drain))
    seq = ts = 0
    fanout = batch.fanout
    flush = batch.flush
    start = time.thread_time_ns()
    for _ in range(drains):
        for _ in range(per_drain):
            seq = (seq + 1) & 0xFFFF
            ts = (ts + 3000) & 0xFFFFFFFF
            struct.pack_into("!HI", buf, 2, seq, ts)
            fanout(fan, buf, view, seq, ts, n)
        flush()
    spent = time.thread_time_ns() - start
    return spent / 1000 / (drains * per_drain * len(fan))


class _Source:
    """What Forwarder.receive needs of a transport: its SSRC tables, no RTCP."""

    def __init__(self, stream) -> None:
        self.ssrc_table = {stream.ssrc: stream}
        self.rtx_ssrcs: set[int] = set()
        self.rtx_table: dict = {}

    def handle_rtcp(self, n: int, buf: bytearray) -> None:  # pragma: no cover - no RTCP sent
        pass


def audio_packet(seq: int) -> bytes:
    """A 20 ms opus-sized packet as Chrome sends it: ssrc-audio-level (id 1) and abs-send-time
    (id 3) in a one-byte extension block, 80 bytes of payload."""
    ext = bytes([0x10, 0x80 | 40, 0x32, 0x12, 0x34, 0x56, 0, 0])  # padded to 8 bytes
    header = struct.pack("!BBHIIHH", 0x90, 111, seq & 0xFFFF, seq * 960, 0xA0D10, 0xBEDE, len(ext) // 4)
    return header + ext + b"\x00" * 80


_AUDIO_PATHS: dict[bool, tuple[int, int]] = {}


def run_audio(n: int, level: bool, packets: int) -> float:
    """CPU µs of this thread per input audio packet (receive + fan-out to n + flush)."""
    from tureen.workers.forward import Forwarder
    from tureen.workers.router import Producer

    setup = Setup(n, "none")
    try:
        producer = Producer(1, "audio", object(), False, [(0xA0D10, None, "default")], [(111, 100)], [(1, 1), (3, 3)], 48000)
        stream = producer.streams[0]
        has_levels = hasattr(stream, "level_id")
        if has_levels and not level:
            stream.level_id = 0
        elif level and not has_levels:
            return float("nan")
        stream.fan = setup.fan
        forwarder = Forwarder(core="native")
        source = _Source(stream)
        datagrams = [audio_packet(i) for i in range(256)]
        # In order: seq + 1 and ts + 960 per packet (the 256 datagrams repeated as they were
        # made would be late packets after the first 256, which take the Python path).
        pack = struct.Struct("!HI").pack_into
        buf = forwarder.buf
        receive, after = forwarder.receive, forwarder.after_drain
        start = time.thread_time_ns()
        for i in range(packets):
            d = datagrams[i & 255]
            buf[: len(d)] = d
            pack(buf, 2, i & 0xFFFF, (i * 960) & 0xFFFFFFFF)
            receive(source, len(d))
            after()
        spent = time.thread_time_ns() - start
        if level:
            assert stream.level_count == packets, "the level was not read"
        rx = getattr(forwarder, "rx", None)
        if rx is not None:  # which path took them: printed with the figures (main_audio)
            _AUDIO_PATHS[level] = (rx.fast, rx.slow)
        return spent / 1000 / packets
    finally:
        setup.close()


def run_rx(n: int, native_rx: bool, packets: int, per_drain: int) -> float:
    """CPU µs of this thread per input video packet (receive + fan-out to n + flush)."""
    from tureen.workers.forward import Forwarder
    from tureen.workers.router import Producer

    setup = Setup(n, "none")
    try:
        producer = Producer(1, "video", object(), False, [(0x5EED, None, "default")], [(96, 101)], [], 90000)
        stream = producer.streams[0]
        stream.fan = setup.fan
        forwarder = Forwarder(core="native", native_rx=native_rx)
        source = _Source(stream)
        datagram = struct.pack("!BBHII", 0x80, 96, 0, 0, 0x5EED) + bytes(1188)
        size = len(datagram)
        pack = struct.Struct("!HI").pack_into  # in order: seq + 1, ts + 3000 per packet
        buf = forwarder.buf
        receive, after = forwarder.receive, forwarder.after_drain
        start = time.thread_time_ns()
        for i in range(packets):
            buf[:size] = datagram
            pack(buf, 2, i & 0xFFFF, (i * 3000) & 0xFFFFFFFF)
            receive(source, size)
            if i % per_drain == per_drain - 1:
                after()
        after()
        spent = time.thread_time_ns() - start
        assert forwarder.rtp_in == packets and forwarder.rtp_out == packets * n, "not every packet was forwarded"
        if native_rx:
            assert forwarder.rx.fast == packets, "the native receive handed packets on"
        return spent / 1000 / packets
    finally:
        setup.close()


def main_rx(args: argparse.Namespace) -> int:
    packets = min(args.copies, MAX_COPIES) // 4
    print(f"{'N':>4} {'per drain':>9} | {'python rx µs/pkt':>16} {'native rx µs/pkt':>16} | python/native")
    for n in (int(x) for x in args.n.split(",")):
        for per_drain in (int(x) for x in args.per_drain.split(",")):
            times: dict[bool, list[float]] = {False: [], True: []}
            for native_rx in (False, True):
                run_rx(n, native_rx, packets // 10, per_drain)  # warm-up
            for _ in range(args.reps):
                for native_rx in (False, True):
                    times[native_rx].append(run_rx(n, native_rx, packets, per_drain))
            py, nat = min(times[False]), min(times[True])
            print(f"{n:>4} {per_drain:>9} | {py:>16.2f} {nat:>16.2f} | {py / nat:.2f}x", flush=True)
    return 0


class _Listener:
    """The worker's side of a transport, as far as a drain reaches it (nothing happens)."""

    def transport_ready(self, transport) -> None:
        pass

    def transport_rtcp(self, transport, packet: bytes) -> None:  # pragma: no cover - none sent
        pass

    def transport_event(self, transport, event) -> None:  # pragma: no cover
        pass

    def transport_failed(self, transport, reason: str) -> None:  # pragma: no cover
        pass


DRAIN_MODES = ("python", "native-rx", "native-drain", "loop-asyncio", "loop-native")


def drain_datagrams(srtp: str, packets: int) -> tuple[list[bytes], bytes]:
    """`packets` in-order 1200-byte video packets as a sender puts them on the wire (SRTP:
    protected with a fixed key, whose receiving key it returns; b"" for plain)."""
    plain = [struct.pack("!BBHII", 0x80, 96, i & 0xFFFF, (i * 3000) & 0xFFFFFFFF, 0x5EED) + bytes(1188) for i in range(packets)]
    if srtp == "none":
        return plain, b""
    profile, size = PROFILES[srtp]
    key, peer_key = bytes(range(size)), bytes(range(100, 100 + size))
    peer = SrtpContext(profile, peer_key, key)
    out = []
    buf = bytearray(1600)
    for p in plain:
        buf[: len(p)] = p
        out.append(bytes(buf[: peer.protect_rtp_into(buf, len(p))]))
    return out, peer_key


def run_drain(n: int, mode: str, srtp: str, datagrams: list[bytes], peer_key: bytes, per_drain: int) -> float:
    """CPU µs of this thread per input packet in the connected socket's drain of a real
    transport (plain, or WebRTC with SRTP): recvmmsg, unprotect, receive, fan-out to n, flush.
    `mode`: "python" (`native_rx` false), "native-rx" (the native receive behind udp.py's
    Python drain and pylibsrtp's unprotect: before the native drain), "native-drain", and
    "loop-asyncio" / "loop-native": one turn of the event loop around the native drain."""
    import asyncio

    from tureen.workers import native_loop
    from tureen.workers.forward import Forwarder
    from tureen.workers.router import Producer, Router
    from tureen.workers.transport.plain import PlainRtpTransport
    from tureen.workers.transport.webrtc import WebRtcTransport

    setup = Setup(n, "none")
    loop = native_loop.new_event_loop() if mode == "loop-native" else asyncio.new_event_loop()
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.bind(("127.0.0.1", 0))
    transport = None
    try:
        forwarder = Forwarder(core="native", native_rx=mode != "python")
        router = Router(on_key_frame_needed=lambda c, s: None)
        if srtp == "none":
            transport = PlainRtpTransport(1, _Listener(), loop, forwarder, "127.0.0.1", 20000, 59999)
            transport.connect(*sender.getsockname())
        else:
            transport = WebRtcTransport(1, _Listener(), loop, forwarder, [("127.0.0.1", None)], 20000, 59999, {"tcp": False})
            transport.endpoint.connect(sender.getsockname())
            profile, size = PROFILES[srtp]
            transport.srtp = SrtpContext(profile, bytes(range(size)), peer_key)
        router.add_transport(transport)
        producer = Producer(1, "video", transport, False, [(0x5EED, None, "default")], [(96, 101)], [], 90000)
        router.add_producer(producer)
        producer.streams[0].fan = setup.fan
        endpoint = transport.endpoint
        if mode == "native-rx":
            endpoint._native_drain = None
        assert (endpoint._native_drain is not None) == (mode in ("native-drain", "loop-asyncio", "loop-native"))
        assert (endpoint._reader is not None) == (mode == "loop-native")
        drain, sendto, to = endpoint._drain_connected, sender.sendto, endpoint.local
        if mode == "loop-asyncio":
            # One turn of asyncio's loop as when the socket woke it: the datagrams are queued,
            # so its select returns at once (a private method: this measures the loop itself).
            drain = loop._run_once  # type: ignore[attr-defined]
        elif mode == "loop-native":
            # One turn of the native loop's wait as it runs under traffic: epoll_wait (no
            # wait: the datagrams are queued), the drain and the flush, all in C; the worker
            # enters Python only when a Python fd or a timer is due.
            drain = partial(native_loop.selector_of(loop)._native.select, 0.0)
        spent = 0
        for at in range(0, len(datagrams), per_drain):
            for d in datagrams[at : at + per_drain]:
                sendto(d, to)  # on loopback queued at the endpoint within this call
            start = time.thread_time_ns()
            drain()
            spent += time.thread_time_ns() - start
        packets = len(datagrams)
        assert forwarder.rtp_in == packets and forwarder.rtp_out == packets * n, "not every packet was forwarded"
        if mode != "python" and mode != "native-rx":
            assert forwarder.rx.fast == packets, "the native drain handed packets on"
        return spent / 1000 / packets
    finally:
        if transport is not None:
            transport.close()
        sender.close()
        loop.close()
        setup.close()


def main_drain(args: argparse.Namespace) -> int:
    packets = min(args.copies, MAX_COPIES) // 10
    print(f"{'N':>4} {'srtp':>5} {'per drain':>9} | " + " ".join(f"{m + ' µs/pkt':>19}" for m in DRAIN_MODES) + " | python/drain  rx/drain  asyncio/native loop")
    for srtp in args.srtp.split(","):
        datagrams, peer_key = drain_datagrams(srtp, packets)
        for n in (int(x) for x in args.n.split(",")):
            for per_drain in (int(x) for x in args.per_drain.split(",")):
                times: dict[str, list[float]] = {m: [] for m in DRAIN_MODES}
                for mode in DRAIN_MODES:
                    run_drain(n, mode, srtp, datagrams[: packets // 10], peer_key, per_drain)  # warm-up
                for _ in range(args.reps):
                    for mode in DRAIN_MODES:
                        times[mode].append(run_drain(n, mode, srtp, datagrams, peer_key, per_drain))
                best = {m: min(t) for m, t in times.items()}
                cols = " ".join(f"{best[m]:>19.2f}" for m in DRAIN_MODES)
                d = best["native-drain"]
                loops = best["loop-asyncio"] / best["loop-native"]
                print(f"{n:>4} {srtp:>5} {per_drain:>9} | {cols} | {best['python'] / d:>11.2f}x {best['native-rx'] / d:>8.2f}x  loop: {loops:.2f}x", flush=True)
    return 0


def main_audio(args: argparse.Namespace) -> int:
    packets = min(args.copies, MAX_COPIES) // 4
    print(f"{'N':>4} | {'level off µs/pkt':>16} {'level on µs/pkt':>15} | on - off")
    for n in (int(x) for x in args.n.split(",")):
        best = {}
        for level in (False, True):
            run_audio(n, level, packets // 10)  # warm-up
            best[level] = min(run_audio(n, level, packets) for _ in range(args.reps))
        paths = "  ".join(f"level {'on' if k else 'off'}: {v[0]} native, {v[1]} python" for k, v in sorted(_AUDIO_PATHS.items()))
        print(f"{n:>4} | {best[False]:>16.2f} {best[True]:>15.2f} | {best[True] - best[False]:+.2f}   ({paths})", flush=True)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", default="10,100,500", help="consumers per packet (fan-out sizes)")
    parser.add_argument("--srtp", default="none,gcm,cm", help="none, gcm, cm")
    parser.add_argument("--per-drain", default="1,8", help="packets between two flushes")
    parser.add_argument("--copies", type=int, default=200_000, help="output copies per measurement")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--cpu", type=int, default=None, help="pin this process to this CPU")
    parser.add_argument("--audio", action="store_true", help="the input side of an audio packet (audio levels)")
    parser.add_argument("--rx", action="store_true", help="the receive path: native receive against Python's")
    parser.add_argument("--drain", action="store_true", help="a transport's socket drain: Python, native receive, native drain")
    args = parser.parse_args()
    if not native.available():
        print(f"native core missing: {native.WHY_NOT}", file=sys.stderr)
        return 2
    if args.audio or args.rx or args.drain:
        if args.cpu is not None:
            os.sched_setaffinity(0, {args.cpu})
        print(f"load average {os.getloadavg()[0]:.1f}", flush=True)
        if args.drain:
            return main_drain(args)
        return main_rx(args) if args.rx else main_audio(args)
    copies = min(args.copies, MAX_COPIES)
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    print(
        f"{'N':>4} {'srtp':>5} {'per drain':>9} | {'python µs/copy':>14} {'native µs/copy':>14} | python/native"
    )
    for srtp in args.srtp.split(","):
        for n in (int(x) for x in args.n.split(",")):
            setup = Setup(n, srtp)
            try:
                for per_drain in (int(x) for x in args.per_drain.split(",")):
                    best = {}
                    for core in ("python", "native"):
                        batch = SendBatch() if core == "python" else native.make_fanout("native")
                        run(batch, setup.fan, per_drain, copies // 10)  # warm-up
                        best[core] = min(
                            run(batch, setup.fan, per_drain, copies) for _ in range(args.reps)
                        )
                    print(
                        f"{n:>4} {srtp:>5} {per_drain:>9} | {best['python']:>14.2f} {best['native']:>14.2f} |"
                        f" {best['python'] / best['native']:.2f}x",
                        flush=True,
                    )
            finally:
                setup.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
