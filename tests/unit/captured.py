"""Captured RTP (tests/vectors/rtp: VP8, H264 and opus from ffmpeg) and a small data path to
feed them through: the real Forwarder, Router and plain transports of workers/, with a
loopback UDP socket as each sender and each receiver.

`Rig.feed` puts packets in the forwarder's buffer and calls `receive` then `after_drain`,
exactly what a transport's socket drain does (workers/transport/udp.py), without waiting for
the event loop; what the receivers got is read from their sockets (bounded by a timeout).
"""

from __future__ import annotations

import asyncio
import socket
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tureen.workers import native
from tureen.workers.forward import Forwarder
from tureen.workers.router import Consumer, Producer, Router
from tureen.workers.rtp.codecs import start_check
from tureen.workers.transport.plain import PlainRtpTransport

VECTORS = Path(__file__).resolve().parent.parent / "vectors" / "rtp"
# What ffmpeg sent (record.py): codec -> (mime type, its payload type, clock rate).
CODECS = {
    "vp8": ("video/VP8", 96, 90000),
    "h264": ("video/H264", 103, 90000),
    "opus": ("audio/opus", 111, 48000),
}
# The room's payload types the rig maps them to (the ingest rewrite changes the PT).
ROOM_PT = {"vp8": 101, "h264": 107, "opus": 100}
# The forwarder's fan-out cores this machine has (docs/internals.md "The fan-out cores"):
# "native" also takes the common receive path in C (the native receive), "native-pyrx" is the
# native fan-out behind the Python receive path (`native_rx = false`).
CORES = ["per-copy", "python"] + (["native", "native-pyrx"] if native.available() else [])


def load(codec: str) -> list[bytes]:
    return [bytes.fromhex(line) for line in (VECTORS / f"{codec}.hex").read_text().split()]


@dataclass(frozen=True)
class Header:
    marker: bool
    pt: int
    seq: int
    ts: int
    ssrc: int

    @classmethod
    def of(cls, packet: bytes) -> Header:
        b0, b1, seq, ts, ssrc = struct.unpack_from("!BBHII", packet)
        return cls(bool(b1 & 0x80), b1 & 0x7F, seq, ts, ssrc)


def with_header(packet: bytes, *, seq: int | None = None, ts: int | None = None, ssrc: int | None = None) -> bytes:
    """The captured packet with some header fields replaced (the payload untouched)."""
    h = Header.of(packet)
    out = bytearray(packet)
    struct.pack_into(
        "!HII", out, 2, h.seq if seq is None else seq & 0xFFFF, h.ts if ts is None else ts & 0xFFFFFFFF, h.ssrc if ssrc is None else ssrc
    )
    return bytes(out)


class Listener:
    """The worker's side of the transports (workers/worker.py): readiness to the router;
    RTCP and failures recorded."""

    def __init__(self, router: Router) -> None:
        self.router = router
        self.rtcp: list[bytes] = []
        self.failed: list[str] = []

    def transport_ready(self, transport: Any) -> None:
        self.router.transport_ready(transport)

    def transport_event(self, transport: Any, event: Any) -> None:
        pass

    def transport_rtcp(self, transport: Any, packet: bytes) -> None:
        self.rtcp.append(packet)

    def transport_failed(self, transport: Any, reason: str) -> None:
        self.failed.append(reason)


class Rig:
    """Producers on send transport 1, each consumer on a transport of its own, every remote
    a loopback socket. Ids: transports 1.., producers 100.., consumers 200.."""

    def __init__(self, core: str = "per-copy", loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.own_loop = loop is None
        self.loop = loop or asyncio.new_event_loop()
        if core == "per-copy":
            self.fwd = Forwarder(batched=False)
        elif core == "native-pyrx":
            self.fwd = Forwarder(core="native", native_rx=False)
        else:
            self.fwd = Forwarder(core=core)
        self.key_frames_asked: list[tuple[int, int]] = []
        self.router = Router(on_key_frame_needed=lambda c, s: self.key_frames_asked.append((c.id, s.ssrc)))
        self.fwd.on_switch = self.router.complete_switch
        self.listener = Listener(self.router)
        self.sockets: list[socket.socket] = []
        self.transports: list[PlainRtpTransport] = []
        self.sender = self.socket()
        self.send_transport = self.transport(self.sender)
        self.receivers: dict[int, socket.socket] = {}

    def socket(self) -> socket.socket:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        s.settimeout(2.0)
        self.sockets.append(s)
        return s

    def transport(self, remote: socket.socket | None) -> PlainRtpTransport:
        tid = len(self.transports) + 1
        transport = PlainRtpTransport(tid, self.listener, self.loop, self.fwd, "127.0.0.1", 20000, 59999)
        if remote is not None:
            transport.connect(*remote.getsockname())
        self.router.add_transport(transport)
        self.transports.append(transport)
        return transport

    def producer(
        self,
        codec: str,
        ssrcs: list[tuple[int, int | None, str]] | None = None,
        *,
        paused: bool = False,
        piped: bool = False,
        rtx: tuple[int, int] | None = None,
    ) -> Producer:
        """A producer of the capture `codec`; `rtx`: (the sender's RTX PT, the room's)."""
        mime, pt, clock = CODECS[codec]
        room_pt = ROOM_PT[codec]
        kind = mime.split("/")[0]
        ssrc = Header.of(load(codec)[0]).ssrc
        pt_pairs = [] if piped else [(pt, room_pt)] + ([rtx] if rtx else [])
        producer = Producer(
            100 + len(self.router.producers), kind, None if piped else self.send_transport, paused,
            ssrcs or [(ssrc, None, "default")], pt_pairs, [], clock, [(room_pt, rtx[1])] if rtx else [],
        )  # fmt: skip
        producer.key_checks = {room_pt: start_check(mime)}
        self.router.add_producer(producer)
        return producer

    def consumer(self, producer: Producer, ssrc: int, *, paused: bool = False, profile: str = "default", connected: bool = True) -> Consumer:
        receiver = self.socket()
        transport = self.transport(receiver if connected else None)
        consumer = Consumer(200 + len(self.router.consumers), producer.kind, producer, transport, ssrc, None, paused, profile, None)
        self.router.add_consumer(consumer)
        self.receivers[consumer.id] = receiver
        return consumer

    def feed(self, packets: list[bytes], source: Any = None) -> None:
        """One socket drain of `packets` on the send transport (or a piped producer)."""
        fwd = self.fwd
        for packet in packets:
            fwd.buf[: len(packet)] = packet
            fwd.receive(source or self.send_transport, len(packet))
        fwd.after_drain()

    def received(self, consumer: Consumer, count: int) -> list[bytes]:
        sock = self.receivers[consumer.id]
        return [sock.recv(4096) for _ in range(count)]

    def nothing_for(self, consumer: Consumer) -> bool:
        sock = self.receivers[consumer.id]
        sock.setblocking(False)
        try:
            sock.recv(4096)
        except BlockingIOError:
            return True
        finally:
            sock.settimeout(2.0)
        return False

    def close(self) -> None:
        for transport in self.transports:
            transport.close()
        for s in self.sockets:
            s.close()
        if self.own_loop:
            self.loop.close()
