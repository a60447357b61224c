"""The fan-out cores, differential: workers/_native.c (through workers/native.py's FanOut) and
workers/sendbatch.py's SendBatch, fed the same session, must send the same bytes.

The input is a plan (harness.Draw): up to 6 consumers (plain, SRTP AES-CM or AES-GCM with
fixed keys, or per-copy like an ICE-TCP one; input-chosen sequence/timestamp offsets and
whether they start in sync), then up to 8 drains, each a subset of the consumers fed up to
12 packets of input-chosen first two bytes, seq, ts, marker and size (12..1600 bytes: past
the 1500 bytes SRTP copies may have), then a flush. A packet whose header the forwarder
would refuse (lengths that do not add up) is left out, as the forwarder drops it before the
fan-out. A consumer whose sink is closed
before the session has its copies refused by the kernel (the error accounting). The plan runs once through each core
(native with io_uring where the kernel allows it, and with sendmmsg), on real connected
loopback UDP sockets. Properties: per consumer the same datagrams in the same order, the same
counters (packets, octets, payload octets, send errors, sequence/timestamp offsets, sync), the same return
value of every fanout() and flush() (io_uring against a refusing sink: see fuzz_one). Skipped (returns) where the native core is not built.
"""

from __future__ import annotations

import socket
from typing import Any

from tureen.shared.rtp.packet import header_length
from tureen.workers import native, sendbatch
from tureen.workers.rtp.consumer import ConsumerRewrite
from tureen.workers.sendbatch import SendBatch
from tureen.workers.transport.srtp import AEAD_AES_128_GCM, AES128_CM_SHA1_80, SrtpContext

from .harness import Draw

# refused-*: the sink is closed before the session, so the kernel refuses copies
# (ECONNREFUSED after the first ICMP port unreachable): the cores' error accounting.
KINDS = ("plain", "plain", "cm", "gcm", "per-copy", "refused-plain", "refused-cm", "refused-gcm")
KEY_LENGTH = {"cm": 30, "gcm": 28}
PROFILE = {"cm": AES128_CM_SHA1_80, "gcm": AEAD_AES_128_GCM}


def plan(data: bytes) -> dict[str, Any]:
    draw = Draw(data)
    consumers = [
        {
            "kind": draw.choice(KINDS),
            "seq_offset": draw.u16(),
            "ts_offset": draw.u32(),
            "sync": draw.u8() < 64,
        }
        for _ in range(draw.below(6) + 1)
    ]
    drains = []
    for _ in range(draw.below(8) + 1):
        fan = [i for i in range(len(consumers)) if draw.u8() < 200]
        packets = []
        for _ in range(draw.below(12) + 1):
            size = 12 + draw.below(1589)
            packets.append((draw.u8(), draw.u8(), draw.u16(), draw.u32(), size, draw.take(size - 12)))
        drains.append((fan, packets))
    return {"consumers": consumers, "drains": drains}


def run(core: str, session: dict[str, Any]) -> dict[str, Any]:
    """One session through one core; what each sink got and every counter."""
    if core == "python":
        batch: Any = SendBatch()
    else:
        batch = native.make_fanout("native", uring=core == "native")
    sockets: list[socket.socket] = []
    contexts = []
    try:
        consumers, sinks = [], []
        for i, spec in enumerate(session["consumers"]):
            sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sink.bind(("127.0.0.1", 0))
            sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
            sink.setblocking(False)
            out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            out.bind(("127.0.0.1", 0))
            out.connect(sink.getsockname())
            sink.connect(out.getsockname())  # hears its consumer only, no stray datagram
            sockets += (sink, out)
            c = ConsumerRewrite(i, 0x5000 + i)
            c.fd = -1 if spec["kind"] == "per-copy" else out.fileno()
            c.send = out.send
            c.seq_offset, c.ts_offset = spec["seq_offset"], spec["ts_offset"]
            c.sync = spec["sync"]
            c.started = True
            profile = spec["kind"].removeprefix("refused-")
            if profile in PROFILE:
                key = bytes([i + 1]) * KEY_LENGTH[profile]
                ctx = SrtpContext(PROFILE[profile], key, key)
                c.protect, c.srtp_tx = ctx.protect_rtp_at, ctx.tx_address
                contexts.append(ctx)
            consumers.append(c)
            sinks.append(sink)
            if spec["kind"].startswith("refused-"):
                sink.close()
        returns = []
        buf = bytearray(65536)
        for fan_index, packets in session["drains"]:
            fan = tuple(consumers[i] for i in fan_index)
            for b0, b1, seq, ts, size, payload in packets:
                buf[0:12] = bytes((b0, b1)) + seq.to_bytes(2, "big") + ts.to_bytes(4, "big") + bytes(4)
                buf[12:size] = payload.ljust(size - 12, b"\0")
                try:
                    header_length(buf, size)
                except ValueError:
                    continue  # the forwarder drops it (drop_malformed): never fanned out
                returns.append(batch.fanout(fan, buf, memoryview(buf)[:size], seq, ts, size))
            returns.append(("flush", batch.flush()))
        got: dict[Any, Any] = {"returns": returns}
        for c, sink in zip(consumers, sinks, strict=True):
            datagrams = []
            while sink.fileno() >= 0:
                try:
                    datagrams.append(sink.recv(4096))
                except BlockingIOError:
                    break
            got[c.consumer_id] = datagrams
            got[("counters", c.consumer_id)] = (
                c.packets, c.octets, c.payload_octets, c.send_errors, c.seq_offset, c.ts_offset, c.sync
            )  # fmt: skip
        return got
    finally:
        for s in sockets:
            s.close()


def fuzz_one(data: bytes) -> None:
    if not native.available() or not sendbatch.available():
        return
    session = plan(data)
    python = run("python", session)
    refused = {i for i, spec in enumerate(session["consumers"]) if spec["kind"].startswith("refused-")}
    for core in ("native", "native-sendmmsg"):
        other = run(core, session)
        assert other.keys() == python.keys()
        for key in python:
            if core == "native" and refused and (key == "returns" or key in {("counters", i) for i in refused}):
                # io_uring sends a flush's copies as separate operations, so the kernel
                # refuses the ones after the first ICMP port unreachable at once, where
                # sendmmsg reports the refusal on its next call: other copies fail, but each
                # copy is still counted once, as sent or as an error.
                if key != "returns":
                    # (packets, octets, payload octets, send errors, offsets..., sync)
                    p_packets, _, _, p_errors, *p_rest = python[key]
                    o_packets, _, _, o_errors, *o_rest = other[key]
                    assert o_packets + o_errors == p_packets + p_errors and o_rest == p_rest, key
                continue
            assert other[key] == python[key], f"{core} differs from python at {key!r}"
