"""Host legs: one producer's packets to a worker of another host, over UDP, SRTP-protected,
repaired on the link (docs/internals.md, "The host leg").

A leg joins the producer's worker (the origin) and ONE worker of another host (the gateway)
for one producer: whatever the number of consumers on that host, its packets cross once,
and the gateway's local pipes fan them out there. Each worker has one UDP socket for all its
legs (`LegHub`), bound at the worker's start (retried at the first leg command if that
failed) to its rtc_ipv4 and a port of its rtc port range (so one firewall rule covers the
media and the legs). Every datagram is

    bytes 0-3   the leg id (the supervisor's, unique while the leg lives), big-endian
    then        one SRTP packet (origin -> gateway: the producer's RTP, ingest-rewritten:
                exactly what a local pipe carries) or one SRTCP packet (gateway -> origin:
                a generic NACK)

One RTP packet per datagram, never several in one (the system calls batch, the datagrams
not): between machines a datagram over the path MTU is fragmented, and one lost fragment
loses all it holds. The key is the leg's own
(AEAD_AES_128_GCM master key and salt, made by the supervisor with os.urandom and handed to
both ends over the CURVE-encrypted host link); both directions use it (RTP flows one way,
SRTCP the other: libsrtp derives separate keys for the two).

Refusals, each counted in the hub's dump and never touching another leg: shorter than the
header plus an RTP header (`badDatagrams`), an unknown leg id (`unknownLeg`), a source
address other than the leg's far end (`strangers`), SRTP/SRTCP that fails authentication or
replays a packet already taken (`srtpFailed`).

Repair: the gateway's piped copy of a video producer gets a NACK generator per stream
(rtp/nack_generator.py, as a transport's producer has); what it misses goes back over the
leg as SRTCP NACK, and the origin answers from the stream's store (`Stream.store`, the same
bytes it sent: SRTP protects them again to the same bytes, and the gateway's replay window
drops a copy that arrives twice). So a loss between hosts is repaired once, on the link.

The origin end is a pipe batch to the forwarder (forward.py appends each packet of the
drain to `out` and flushes after the drain): `LegOut.flush` sends the drain's packets one
datagram each, with one sendmmsg on Linux (`LegSlots`: each slot a datagram, protected in
place); the gateway reads its socket with one recvmmsg per drain (sendbatch.RecvBatch, the
sources kept) and checks each datagram as one read alone would be. What a pipe's 4-byte discontinuity mark does cannot ride a datagram that may
be lost: the supervisor sends `producer.interrupt` to the gateway over the host link.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from typing import TYPE_CHECKING, Any

from tureen.workers.rtp import rtcp
from tureen.workers.rtp.retransmit import stored
from tureen.workers.sendbatch import NAME_SLOT, RecvBatch, SendSlots, recv_available, sockaddr
from tureen.workers.sendbatch import available as sendmmsg_available
from tureen.workers.transport.srtp import (
    AEAD_AES_128_GCM,
    MAX_PACKET_SIZE,
    SrtpContext,
    buffer_pointer,
)
from tureen.workers.transport.udp import bind_udp

if TYPE_CHECKING:
    from tureen.workers.forward import Forwarder
    from tureen.workers.router import Producer

log = logging.getLogger("tureen.workers.host_leg")

PROFILE = AEAD_AES_128_GCM
HEADER = 4  # the leg id
TRAILER = 16  # the GCM tag SRTP appends
# Bytes a packet gains on the leg: the header and the tag (SRTCP adds its index too).
OVERHEAD = HEADER + TRAILER
# The longest leg datagram: the leg id, an RTP packet of MAX_PACKET_SIZE (the most any
# transport takes in) and the tag. The SRTP packet itself may so be MAX_PACKET_SIZE +
# TRAILER: the gateway unprotects up to that (a limit of MAX_PACKET_SIZE lost every RTP
# packet over 1484 bytes on the leg, and its NACKed repair again).
MAX_SRTP = MAX_PACKET_SIZE + TRAILER
MAX_DATAGRAM = HEADER + MAX_SRTP
DRAIN = 64  # datagrams per wake-up before the reader yields to the loop
# One datagram's room in the batches: the largest a gateway takes is MAX_DATAGRAM (a longer
# one is refused either way: truncated to this, it is counted in badDatagrams).
SLOT = 1536
_RECORD = 2  # the pipe batch's length prefix of each packet (pipe.py)
_unpack_id = struct.Struct("!I").unpack_from


class _End:
    """What both ends of a leg have: the id, the producer, the far end and the SRTP session."""

    __slots__ = ("leg_id", "producer", "addr", "name", "source", "srtp", "packets", "octets")

    def __init__(self, leg_id: int, producer: Producer, key: bytes, addr: tuple[str, int]) -> None:
        self.leg_id = leg_id
        self.producer = producer
        self.addr = addr
        # The far end as the kernel writes it (sockaddr_in): what the batched send sends to
        # and the batched receive compares the source with. None if `addr` is not IPv4 (the
        # contract's legs are): then the per-datagram calls, which take any address.
        try:
            self.name: bytes | None = sockaddr(socket.AF_INET, addr)
        except (OSError, ValueError):
            self.name = None
        self.source = self.name[2:8] if self.name is not None else None  # port, address
        self.srtp = SrtpContext(PROFILE, key, key)
        self.packets = 0  # RTP packets sent (origin) or taken (gateway)
        self.octets = 0  # their bytes on the wire, header and tag included

    def dump(self) -> dict[str, Any]:
        return {
            "legId": self.leg_id,
            "producerId": self.producer.id,
            "remote": f"{self.addr[0]}:{self.addr[1]}",
            "packets": self.packets,
            "octets": self.octets,
        }


class LegSlots(SendSlots):
    """The hub's send slots (one sendmmsg per flush of a leg; sendbatch.SendSlots): each
    slot a datagram, the leg id then the packet, with a cffi pointer to the packet for
    SRTP's in-place protect."""

    def __init__(self, count: int = DRAIN, sendmmsg=None) -> None:
        super().__init__(count, SLOT, socket.AF_INET, sendmmsg)
        base = buffer_pointer(self.slots)  # keeps the slots exported: never resized
        self.ptrs = [base + SLOT * i + HEADER for i in range(count)]  # each packet, after the leg id


class LegOut(_End):
    """The origin's end: a pipe batch to the forwarder (`out` starts with the 4-byte header,
    records are appended inline, `flush` after the drain), one datagram per packet, the
    drain's datagrams with one sendmmsg (`slots`: the hub's SendSlots) where there is one."""

    __slots__ = ("sock", "slots", "header", "out", "count", "_dgram", "_at", "dropped", "nacks", "resent", "missed")

    def __init__(
        self,
        sock: socket.socket,
        leg_id: int,
        producer: Producer,
        key: bytes,
        addr: tuple[str, int],
        slots: LegSlots | None = None,
    ) -> None:
        super().__init__(leg_id, producer, key, addr)
        self.sock = sock  # the hub's (no reference back to the hub: no cycle to collect)
        self.slots = slots if self.name is not None else None  # the hub's, shared by its legs
        self.header = leg_id.to_bytes(HEADER, "big")
        self.out = bytearray(self.header)
        self.count = 0
        # The datagram is built here: the header, then the packet, protected in place
        # through a cffi pointer past the header (kept: it keeps the bytearray exported,
        # which only forbids resizing it; it never is).
        self._dgram = bytearray(self.header) + bytearray(MAX_PACKET_SIZE + TRAILER)
        self._at = buffer_pointer(self._dgram) + HEADER
        self.dropped = 0  # packets not sent (socket full, too big to protect)
        self.nacks = 0  # NACK packets from the gateway
        self.resent = 0  # packets sent again from the store
        self.missed = 0  # NACKed packets the store no longer had

    @property
    def pending(self) -> bool:
        return self.count > 0

    def flush(self, fwd: Forwarder) -> None:
        """Send the drain's packets, one datagram each (forward.py's after_drain): with one
        sendmmsg per DRAIN packets where the hub has the slots (Linux), else, and for a
        drain's lone packet, one sendto each."""
        many = self.count > 1  # one packet: one sendto, as fast as it gets
        self.count = 0
        out = self.out
        try:
            with memoryview(out) as view:  # released before `out` shrinks below
                if many and self.slots is not None:
                    self._flush_batched(self.slots, out, view)
                    return
                off, end = HEADER, len(out)
                while off + _RECORD <= end:
                    n = (out[off] << 8) | out[off + 1]
                    off += _RECORD
                    self.send(view, off, n)
                    off += n
        finally:
            del out[HEADER:]

    def _flush_batched(self, slots: LegSlots, out: bytearray, view: memoryview) -> None:
        """Each packet of `out` copied into a slot after the leg id and protected there, in
        place; the slots go with one sendmmsg, again each time they are full (a lone packet
        with one sendto: fewer steps for the same one syscall). Packets that cannot be
        protected or sent are counted in `dropped`."""
        buf = slots.slots
        ptrs = slots.ptrs
        size = slots.slot
        count = slots.count
        set_length = slots.set_length
        protect = self.srtp.protect_rtp_at
        header = self.header
        k = 0
        octets = 0
        dropped = 0
        off, end = HEADER, len(out)
        while off + _RECORD <= end:
            n = (out[off] << 8) | out[off + 1]
            off += _RECORD
            if n > MAX_PACKET_SIZE or n < 12:
                dropped += 1
                off += n
                continue
            at = k * size
            buf[at : at + HEADER] = header
            buf[at + HEADER : at + HEADER + n] = view[off : off + n]
            off += n
            try:
                m = protect(ptrs[k], n) + HEADER
            except ValueError:
                dropped += 1
                continue
            set_length(k, m)
            octets += m
            k += 1
            if k == count:
                octets -= self._send_slots(slots, k)
                k = 0
        if k:
            octets -= self._send_slots(slots, k)
        self.dropped += dropped
        self.octets += octets

    def _send_slots(self, slots: LegSlots, k: int) -> int:
        """Send slots 0..k-1 and count them; returns the bytes of those lost (the caller
        counted them all in `octets`)."""
        if k == 1:
            m = slots.length(0)
            try:
                self.sock.sendto(slots.view[:m], self.addr)
            except OSError:  # full socket buffer, unreachable: the gateway NACKs
                self.dropped += 1
                return m
            self.packets += 1
            return 0
        assert self.name is not None  # no slots without it (__init__)
        lost = slots.send(self.sock.fileno(), self.name, k)
        self.packets += k - len(lost)
        if not lost:
            return 0
        self.dropped += len(lost)  # full socket buffer, unreachable: the gateway NACKs
        return sum(slots.length(i) for i in lost)

    def send(self, data: bytes | memoryview, off: int, n: int) -> bool:
        """Protect the RTP packet data[off:off+n] and send it to the gateway."""
        if n > MAX_PACKET_SIZE or n < 12:
            self.dropped += 1
            return False
        dgram = self._dgram
        dgram[HEADER : HEADER + n] = data[off : off + n]  # same length: never resizes it
        try:
            size = self.srtp.protect_rtp_at(self._at, n) + HEADER
            self.sock.sendto(dgram[:size], self.addr)
        except (ValueError, OSError):  # full socket buffer, unreachable: the gateway NACKs
            self.dropped += 1
            return False
        self.packets += 1
        self.octets += size
        return True

    def mark_discontinuity(self, fwd: Forwarder) -> None:
        """The producer paused: what is queued goes first (the mark itself travels over the
        host link: `producer.interrupt`)."""
        if self.count:
            self.flush(fwd)
            fwd.dirty.remove(self)

    def on_rtcp(self, packet: bytes) -> None:
        """SRTCP from the gateway (already unprotected): answer its NACKs from the store."""
        fb = rtcp.parse(packet)
        for ssrc, seqs in fb.nacks:
            self.nacks += 1
            stream = self.producer.ssrc_table.get(ssrc)
            store = stream.store if stream is not None else None
            for seq in seqs:
                data = stored(store, seq) if store is not None else None
                if data is None:
                    self.missed += 1
                elif self.send(data, 0, len(data)):
                    self.resent += 1

    def dump(self) -> dict[str, Any]:
        return {
            **super().dump(),
            "end": "origin",
            "dropped": self.dropped,
            "nacksIn": self.nacks,
            "resent": self.resent,
            "missed": self.missed,
        }


class LegIn(_End):
    """The gateway's end: the origin's datagrams feed the producer's piped copy here."""

    __slots__ = ("nacks",)

    def __init__(self, leg_id: int, producer: Producer, key: bytes, addr: tuple[str, int]) -> None:
        super().__init__(leg_id, producer, key, addr)
        self.nacks = 0  # NACK packets sent to the origin

    def dump(self) -> dict[str, Any]:
        return {**super().dump(), "end": "gateway", "nacksOut": self.nacks}


class LegHub:
    """A worker's leg socket and the ends of its legs, by leg id."""

    def __init__(
        self,
        forwarder: Forwarder,
        ip: str,
        announced: str | None,
        min_port: int,
        max_port: int,
        rtcp_ssrc: int,
        batched: bool = True,
    ) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None  # the running one, at bind
        self._fwd = forwarder
        self._ip = ip
        self._announced = announced or ip
        self._ports = (min_port, max_port)
        self._rtcp_ssrc = rtcp_ssrc
        self.sock: socket.socket | None = None
        self.legs: dict[int, LegOut | LegIn] = {}
        # A datagram is read scattered: the leg id, then the packet straight into the
        # forwarder's buffer, where SRTP unprotects it in place (as a WebRTC transport does).
        self._rhead = bytearray(HEADER)
        self._rbufs = (self._rhead, forwarder.buf)
        # Batched (Linux): the gateway's drain is one recvmmsg (sources kept: the socket is
        # not connected), the origin's flush one sendmmsg per leg; made with the socket.
        self._batched = batched
        self._recv: RecvBatch | None = None
        self._slots: LegSlots | None = None
        self.recv_calls = 0  # recvmmsg calls (the dump's `batch`)
        # Refusals (the module docstring) and totals.
        self.bad_datagrams = 0
        self.unknown_leg = 0
        self.strangers = 0
        self.srtp_failed = 0
        self.rtcp_malformed = 0
        # What the legs closed so far carried (`totals` adds the open ones).
        self._closed = {"packetsOut": 0, "octetsOut": 0, "packetsIn": 0, "octetsIn": 0}

    # -- the socket ---------------------------------------------------------------------

    def address(self) -> tuple[str, int]:
        """(ip, port) another host reaches this worker's leg socket at; binds it the first
        time (OSError when no port of the range is free)."""
        if self.sock is None:
            self._loop = asyncio.get_running_loop()
            self.sock = bind_udp(self._ip, *self._ports)
            if self._batched and self.sock.family == socket.AF_INET:
                if recv_available():
                    self._recv = RecvBatch(DRAIN, SLOT, names=True)
                if sendmmsg_available():
                    self._slots = LegSlots()
            self._loop.add_reader(self.sock.fileno(), self._drain)
            log.info("host legs on %s:%d", *self.sock.getsockname()[:2])
        return self._announced, self.sock.getsockname()[1]

    # -- ends ---------------------------------------------------------------------------

    def open_out(self, leg_id: int, producer: Producer, key: bytes, addr: tuple[str, int]) -> LegOut:
        self.address()
        assert self.sock is not None
        leg = LegOut(self.sock, leg_id, producer, key, addr, self._slots)
        self.legs[leg_id] = leg
        return leg

    def open_in(self, leg_id: int, producer: Producer, key: bytes, addr: tuple[str, int]) -> LegIn:
        self.address()
        leg = LegIn(leg_id, producer, key, addr)
        self.legs[leg_id] = leg
        return leg

    def remove(self, leg_id: int) -> LegOut | LegIn | None:
        """Forget a leg's end; a LegOut's queued packets go out first."""
        leg = self.legs.pop(leg_id, None)
        if isinstance(leg, LegOut) and leg.count:
            leg.flush(self._fwd)
            self._fwd.dirty.remove(leg)
        if leg is not None:
            way = "Out" if isinstance(leg, LegOut) else "In"
            self._closed["packets" + way] += leg.packets
            self._closed["octets" + way] += leg.octets
        return leg

    def totals(self) -> dict[str, int]:
        """RTP packets and their bytes on the wire sent and taken over this worker's legs
        since it started (worker.info: what crossed between hosts here)."""
        out = dict(self._closed)
        for leg in self.legs.values():
            way = "Out" if isinstance(leg, LegOut) else "In"
            out["packets" + way] += leg.packets
            out["octets" + way] += leg.octets
        return out

    def send_nack(self, leg: LegIn, ssrc: int, seqs: list[int]) -> None:
        """An SRTCP NACK for `seqs` of stream `ssrc` to the leg's origin."""
        if self.sock is None or not seqs:
            return
        packet = leg.srtp.protect_rtcp(rtcp.nack(self._rtcp_ssrc, ssrc, seqs))
        try:
            self.sock.sendto(leg.leg_id.to_bytes(HEADER, "big") + packet, leg.addr)
        except OSError:  # full or unreachable: the generator's timer asks again
            return
        leg.nacks += 1

    # -- receiving ----------------------------------------------------------------------

    def _drain(self) -> None:
        sock = self.sock
        if sock is None:
            return
        if self._recv is not None:
            try:
                self._drain_batched(sock, self._recv)
            finally:
                self._fwd.after_drain()
            return
        bufs = self._rbufs
        try:
            for _ in range(DRAIN):
                try:
                    n, _, flags, addr = sock.recvmsg_into(bufs)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:  # an ICMP error of an earlier send (ECONNREFUSED): go on
                    continue
                if flags & socket.MSG_TRUNC:
                    self.bad_datagrams += 1
                    continue
                self.on_datagram(n, addr)
        finally:
            self._fwd.after_drain()

    def _drain_batched(self, sock: socket.socket, rb: RecvBatch) -> None:
        """The drain with one recvmmsg: each datagram checked as `on_datagram` checks it, in
        order, its source compared as the kernel wrote it (sockaddr_in: port and address at
        bytes 2-7) with the leg's."""
        fd = sock.fileno()
        k = rb.recv(fd)
        tries = 1
        while k < 0 and tries < 4:  # an error of an earlier send, consumed: read again
            k = rb.recv(fd)
            tries += 1
        self.recv_calls += tries
        if k <= 0:
            return
        slots = rb.slots
        view = rb.view
        names = rb.names
        assert names is not None
        slot = rb.slot
        legs = self.legs
        fwd = self._fwd
        buf = fwd.buf
        receive = fwd.receive
        taken = 0
        for i, n in enumerate(rb.lengths(k)):
            if n < HEADER + 12 or n > MAX_DATAGRAM:  # truncated: -1
                self.bad_datagrams += 1
                continue
            start = i * slot
            leg = legs.get(_unpack_id(slots, start)[0])
            if leg is None:
                self.unknown_leg += 1
                continue
            at = i * NAME_SLOT
            if names[at + 2 : at + 8] != leg.source:
                self.strangers += 1
                continue
            n -= HEADER
            buf[:n] = view[start + HEADER : start + HEADER + n]
            if leg.__class__ is not LegIn:
                self._take_rtcp(leg, n)  # type: ignore[arg-type]
                continue
            # _take_rtp, inline: the common case, once per packet.
            try:
                m = leg.srtp.unprotect_rtp_into(buf, n, MAX_SRTP)
            except ValueError:
                self.srtp_failed += 1
                continue
            leg.packets += 1
            leg.octets += n + HEADER
            taken += 1
            receive(leg.producer, m)
        fwd.pipe_packets_in += taken

    def on_datagram(self, n: int, addr: tuple[str, int]) -> None:
        """One datagram of `n` bytes from `addr` (its leg id in `_rhead`, the rest in the
        forwarder's buffer): refused and counted, or taken."""
        if n < HEADER + 12 or n > MAX_DATAGRAM:
            self.bad_datagrams += 1
            return
        leg = self.legs.get(_unpack_id(self._rhead)[0])
        if leg is None:
            self.unknown_leg += 1
            return
        if addr[0] != leg.addr[0] or addr[1] != leg.addr[1]:
            self.strangers += 1
            return
        if isinstance(leg, LegIn):
            self._take_rtp(leg, n - HEADER)
        else:
            self._take_rtcp(leg, n - HEADER)

    def _take_rtp(self, leg: LegIn, n: int) -> None:
        fwd = self._fwd
        try:
            m = leg.srtp.unprotect_rtp_into(fwd.buf, n, MAX_SRTP)
        except ValueError:
            self.srtp_failed += 1
            return
        leg.packets += 1
        leg.octets += n + HEADER
        fwd.pipe_packets_in += 1
        fwd.receive(leg.producer, m)

    def _take_rtcp(self, leg: LegOut, n: int) -> None:
        try:
            packet = leg.srtp.unprotect_rtcp(bytes(self._fwd.buf[:n]))
        except ValueError:
            self.srtp_failed += 1
            return
        try:
            leg.on_rtcp(packet)
        except ValueError:
            self.rtcp_malformed += 1

    def dump(self) -> dict[str, Any]:
        local = self.sock.getsockname()[:2] if self.sock is not None else None
        return {
            "local": f"{local[0]}:{local[1]}" if local else None,
            "legs": [leg.dump() for leg in self.legs.values()],
            "totals": self.totals(),
            "badDatagrams": self.bad_datagrams,
            "unknownLeg": self.unknown_leg,
            "strangers": self.strangers,
            "srtpFailed": self.srtp_failed,
            "rtcpMalformed": self.rtcp_malformed,
            # How well the socket's calls batch (None: one call per datagram, not Linux).
            "batch": None
            if self._recv is None and self._slots is None
            else {
                "recvmmsgCalls": self.recv_calls,
                "sendmmsgCalls": self._slots.calls if self._slots is not None else None,
            },
        }

    def close(self) -> None:
        self.legs.clear()
        if self.sock is not None and self._loop is not None:
            self._loop.remove_reader(self.sock.fileno())
            self.sock.close()
            self.sock = None
