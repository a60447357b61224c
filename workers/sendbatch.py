"""Batched fan-out: queue every rewritten copy of a drain, send them with one sendmmsg per socket.

docs/benchmarks.md found 91% of a loaded worker's samples on the per-consumer `send` at 1->100,
and the per-datagram syscall overhead that sendmmsg removes was measured at ~0.6 µs of a
~3.6 µs output. This module is that batching, in pure Python over libc through ctypes.

sendmmsg sends on ONE socket, and every consumer sends from its own transport's connected
socket (the receiver checks the source address), so the batch is organised per consumer:

    lane     a run of LANE consecutive mmsghdr slots that belongs to one consumer until the
             next flush (the consumer's `lane` slot is the index of its first mmsghdr,
             `queued` how many it filled). One sendmmsg(fd, &msgs[lane], queued) per
             consumer per flush; its packets go out in the order they were queued.
    slot s   mmsghdr s -> iovec[2s] (12-byte header at hdrs[16 s], constant; the 4 unsent
             bytes after it keep the copy's payload length and, for SRTP, its plaintext
             length) and
             iovec[2s+1] (the rest of the packet: written per copy).
    payload  once per input packet, buf[12:n] is copied into `ring` (the receive buffer is
             overwritten by the next datagram of the drain); every plain copy of that packet
             points its second iovec at that one copy: N headers, one payload.
    SRTP     a consumer with an SRTP context protects its own copy in `sring` (encryption
             differs per consumer) and its second iovec points there (header excluded: SRTP
             leaves the header in clear, so the slot's header iovec is the same bytes).

Everything is preallocated; per copy the loop does two `Struct.pack_into` (header, iovec)
and, for SRTP, one payload copy and one cffi call. A flush happens at the end of every drain
(`Forwarder.after_drain`), and early when a lane, the lanes or a ring are full (then the
lanes grow for the next drain, up to MAX_LANES). Per-consumer order holds across early flushes:
a flush sends everything queued so far.

Errors: sendmmsg returns how many went out; when it fails on the first message (-1, errno:
ENOBUFS, EAGAIN, ECONNREFUSED from an earlier ICMP, EBADF when the socket closed within the
drain) that one message is dropped and counted on its consumer (`send_errors`) and on the
forwarder, and the rest are retried. Counters are bumped when a copy is queued and corrected
at the flush.

Where sendmmsg is not available (not Linux, no libc) `available()` is False and the
forwarder keeps forward.fanout's send per copy.

Also here, for the same libc calls elsewhere: `RecvBatch` (recvmmsg: the connected
sockets' drains, and with `names=True` the host legs' unconnected socket, sources kept) and
`SendSlots` (sendmmsg of whole datagrams to one address: a host leg's flush).
"""

from __future__ import annotations

import ctypes
import errno as _errno
import socket
import struct
import sys
from typing import TYPE_CHECKING

from tureen.shared.rtp.packet import payload_length

if TYPE_CHECKING:
    from tureen.workers.rtp.consumer import ConsumerRewrite

LANE = 64  # copies per consumer per flush (a drain is up to 64 datagrams: udp.DRAIN)
START_LANES = 128
MAX_LANES = 2048  # 2048 x 64 slots: ~14 MiB of mmsghdr/iovec, reached only at N>=2048
RING = 256 * 1024  # plaintext payload copies of one flush
SRING_SLOT = 1536  # one protected copy: MAX_PACKET_SIZE plus the tag, rounded up
SRING_SLOTS = 1024
SRTP_MAX = 1500  # srtp.MAX_PACKET_SIZE: what the per-copy path protects too

_RETRY = (_errno.EINTR,)


class _Iovec(ctypes.Structure):
    _fields_ = (("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t))


class _Msghdr(ctypes.Structure):
    _fields_ = (
        ("msg_name", ctypes.c_void_p),
        ("msg_namelen", ctypes.c_uint32),
        ("msg_iov", ctypes.c_void_p),
        ("msg_iovlen", ctypes.c_size_t),
        ("msg_control", ctypes.c_void_p),
        ("msg_controllen", ctypes.c_size_t),
        ("msg_flags", ctypes.c_int),
    )


class _Mmsghdr(ctypes.Structure):
    _fields_ = (("msg_hdr", _Msghdr), ("msg_len", ctypes.c_uint))


MSG_SIZE = ctypes.sizeof(_Mmsghdr)
IOV_SIZE = ctypes.sizeof(_Iovec)
assert IOV_SIZE == 16, "the iovec packing below assumes 64-bit pointers"

_pack_hdr = struct.Struct("!BBHII").pack_into  # b0, b1, seq, ts, ssrc: the whole fixed header
# The same, then the payload length in 2 of the 4 unsent bytes after the header (a UDP
# datagram's lengths fit in 16 bits).
_pack_hdr_pl = struct.Struct("!BBHIIH").pack_into
_unpack_pl = struct.Struct("!H").unpack_from
_pack_iov = struct.Struct("@PN").pack_into  # iov_base, iov_len (native)
_unpack_len = struct.Struct("@N").unpack_from
# An SRTP copy's plaintext length, in the other 2 unsent bytes (offset 14 of its slot): its
# iovec holds the protected length, but its consumer's octets counted the plaintext.
_pack_plain = struct.Struct("!H").pack_into
_unpack_plain = struct.Struct("!H").unpack_from


def _load_sendmmsg() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    """libc's sendmmsg, called with the GIL held (PyDLL): the worker has no other Python
    thread, and releasing/re-taking the GIL per call costs more than a non-blocking send."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.PyDLL(None, use_errno=True)
        fn = libc.sendmmsg
    except (OSError, AttributeError):
        return None
    fn.argtypes = (ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int)
    fn.restype = ctypes.c_int
    return fn


_sendmmsg = _load_sendmmsg()


def available() -> bool:
    return _sendmmsg is not None


def _address(buf: bytearray) -> int:
    """Address of a bytearray's storage. The ctypes view exports the buffer, so the
    bytearray can never be resized (and moved) while the batch holds the view."""
    return ctypes.addressof((ctypes.c_char * len(buf)).from_buffer(buf))


class SendBatch:
    """The queue of one worker's forwarder (one per Forwarder; the loop is single-threaded)."""

    def __init__(self, lanes: int = START_LANES, sendmmsg=None) -> None:
        self._sendmmsg = sendmmsg or _sendmmsg
        if self._sendmmsg is None:
            raise OSError("sendmmsg is not available")
        self.ring = bytearray(RING)
        self.ring_addr = _address(self.ring)
        self.sring = bytearray(SRING_SLOT * SRING_SLOTS)
        self.sring_addr = _address(self.sring)
        self.sring_ptr: object = None  # cffi pointer, made on first SRTP use (srtp.py)
        self.active: list[ConsumerRewrite] = []
        self.ring_used = 0
        self.sring_next = 0
        self.grow = False
        # Copies that failed at a flush since the last flush() (Forwarder.after_drain).
        self.failed = 0
        # Flushes and sendmmsg calls made, for worker.dump (how well batching batches).
        self.flushes = 0
        self.calls = 0
        self._alloc(lanes)

    def _alloc(self, lanes: int) -> None:
        slots = lanes * LANE
        self.lanes = lanes
        self.free_lane = 0
        self.hdrs = bytearray(16 * slots)
        self.iovs = bytearray(2 * IOV_SIZE * slots)
        self.msgs = (_Mmsghdr * slots)()
        self.hdrs_addr = _address(self.hdrs)
        iovs = (_Iovec * (2 * slots)).from_buffer(self.iovs)
        self._iovs_view = iovs  # keeps the export (see _address)
        iovs_addr = ctypes.addressof(iovs)
        for s in range(slots):  # constant parts, once: header iovec, msghdr -> its iovec pair
            iovs[2 * s].iov_base = self.hdrs_addr + 16 * s
            iovs[2 * s].iov_len = 12
            m = self.msgs[s].msg_hdr
            m.msg_iov = iovs_addr + 2 * IOV_SIZE * s
            m.msg_iovlen = 2
        self.msgs_addr = ctypes.addressof(self.msgs)

    # -- queueing (the hot loop) ---------------------------------------------------------

    def fanout(self, fan: tuple[ConsumerRewrite, ...], buf: bytearray, view: memoryview, seq: int, ts: int, n: int) -> int:
        """forward.fanout's contract, batched: returns the copies queued or sent (failures
        found at the flush are taken back off the counters then)."""
        plen = n - 12
        used = self.ring_used
        if used + plen > RING:
            self._send_all()
            used = 0
        ring_off = used
        self.ring[used : used + plen] = view[12:]
        self.ring_used = used + plen
        payload = self.ring_addr + ring_off
        b0 = buf[0]
        pl = n - 12 if not b0 & 0x3F else payload_length(buf, n)  # the SR octet count's share
        b1 = buf[1]
        hdrs = self.hdrs
        iovs = self.iovs
        sent = 0
        for c in fan:
            if c.sync:
                c.resync(seq, ts)
            if c.fd < 0:  # not batchable (ICE-TCP): the plain per-copy send
                sent += send_one(c, buf, view, seq, ts, n)
                continue
            q = c.queued
            protect = c.protect
            if q == 0 or q == LANE or (protect is not None and self.sring_next == SRING_SLOTS):
                if q == LANE or self.free_lane == self.lanes or (protect is not None and self.sring_next == SRING_SLOTS):
                    # Something is full: send everything queued so far (every consumer's
                    # order holds), then carry on with this packet from empty queues.
                    if q == 0 and self.free_lane == self.lanes:
                        self.grow = True  # more consumers than lanes: grow after the flush
                    payload = self._flush_mid(view, plen)
                    hdrs = self.hdrs
                    iovs = self.iovs
                    q = 0
                lane = self.free_lane
                self.free_lane = lane + 1
                c.lane = lane * LANE
                self.active.append(c)
            s = c.lane + q
            c.queued = q + 1
            out_seq = (seq + c.seq_offset) & 0xFFFF
            out_ts = (ts + c.ts_offset) & 0xFFFFFFFF
            # The slot's 4 bytes after the header (never sent) keep the payload length (and,
            # for SRTP, the plaintext length), for taking a failed copy back off
            # payload_octets and octets at the flush.
            _pack_hdr_pl(hdrs, s << 4, b0, b1, out_seq, out_ts, c.ssrc, pl)
            if protect is None:
                _pack_iov(iovs, (s << 5) + 16, payload, plen)
            else:
                m = self._protect(c, protect, buf, view, b0, b1, out_seq, out_ts, n)
                if m < 0:
                    c.queued = q  # not queued: slot s is free again
                    continue
                _pack_iov(iovs, (s << 5) + 16, self.sring_addr + m, self._last_len)
                _pack_plain(hdrs, (s << 4) + 14, n)
            c.packets += 1
            c.octets += n
            c.payload_octets += pl
            sent += 1
        return sent

    def _protect(self, c: ConsumerRewrite, protect, buf, view, b0, b1, out_seq, out_ts, n) -> int:
        """Protect this consumer's copy into the next sring slot; returns the offset of its
        encrypted part (after the 12-byte header), -1 when it cannot be protected."""
        if n > SRTP_MAX:
            c.send_errors += 1
            return -1
        k = self.sring_next  # < SRING_SLOTS: fanout() flushed if it was full
        self.sring_next = k + 1
        off = k * SRING_SLOT
        sring = self.sring
        _pack_hdr(sring, off, b0, b1, out_seq, out_ts, c.ssrc)
        sring[off + 12 : off + n] = view[12:]
        if self.sring_ptr is None:
            from tureen.workers.transport.srtp import buffer_pointer

            self.sring_ptr = buffer_pointer(sring)
        try:
            m = protect(self.sring_ptr + off, n)
        except ValueError:  # counted here; the forwarder counts the copy not sent
            c.send_errors += 1
            return -1
        self._last_len = m - 12
        return off + 12

    _last_len = 0

    def _flush_mid(self, view: memoryview, plen: int) -> int:
        """Flush in the middle of a packet's fan-out; the packet's payload moves to the
        start of the emptied ring for the consumers still to come. Returns its address."""
        self._send_all()
        self.ring[0:plen] = view[12:]
        self.ring_used = plen
        return self.ring_addr

    # -- flush -----------------------------------------------------------------------------

    def flush(self) -> int:
        """Send everything queued: one sendmmsg per consumer (more if some fail). Returns
        the copies that failed since the last flush() (the forwarder takes them back off
        its counters), including flushes made early because something was full."""
        self._send_all()
        failed = self.failed
        self.failed = 0
        return failed

    def _send_all(self) -> None:
        active = self.active
        if not active:
            self.ring_used = 0
            self.sring_next = 0
            return
        sendmmsg = self._sendmmsg
        base = self.msgs_addr
        errors = 0
        calls = 0
        for c in active:
            k = c.queued
            c.queued = 0
            first = c.lane
            done = 0
            while done < k:
                calls += 1
                r = sendmmsg(c.fd, base + (first + done) * MSG_SIZE, k - done, 0)
                if r > 0:
                    done += r
                    continue
                if r < 0 and ctypes.get_errno() in _RETRY:
                    continue
                # The message at `done` failed (ENOBUFS, EAGAIN, ECONNREFUSED...): lost.
                s = first + done
                c.send_errors += 1
                c.packets -= 1
                c.payload_octets -= _unpack_pl(self.hdrs, (s << 4) + 12)[0]
                if c.protect is None:
                    c.octets -= 12 + _unpack_len(self.iovs, (s << 5) + 24)[0]
                else:  # what fanout() counted: the plaintext, not the protected length
                    c.octets -= _unpack_plain(self.hdrs, (s << 4) + 14)[0]
                errors += 1
                done += 1
        active.clear()
        self.free_lane = 0
        self.ring_used = 0
        self.sring_next = 0
        self.flushes += 1
        self.calls += calls
        self.failed += errors
        if self.grow:
            self.grow = False
            if self.lanes < MAX_LANES:
                self._alloc(min(MAX_LANES, self.lanes * 2))

    def dump(self) -> dict[str, object]:
        return {"core": "python", "lanes": self.lanes, "flushes": self.flushes, "sendmmsgCalls": self.calls}


def send_one(c: ConsumerRewrite, buf: bytearray, view: memoryview, seq: int, ts: int, n: int) -> int:
    """forward.fanout's per-copy path for one consumer that cannot be batched (ICE-TCP);
    the native core calls it too."""
    _pack_out(buf, 2, (seq + c.seq_offset) & 0xFFFF, (ts + c.ts_offset) & 0xFFFFFFFF, c.ssrc)
    try:
        c.send(view)
    except OSError:
        c.send_errors += 1
        return 0
    c.packets += 1
    c.octets += n
    c.payload_octets += n - 12 if not buf[0] & 0x3F else payload_length(buf, n)
    return 1


_pack_out = struct.Struct("!HII").pack_into


# -- batched receive ------------------------------------------------------------------------

RECV_SLOT = 4096  # larger than any RTP datagram a transport takes (bigger: MSG_TRUNC, counted)
NAME_SLOT = 32  # a source address: sockaddr_in (16 bytes) or sockaddr_in6 (28)
_MSG_DONTWAIT = 0x40
_MSG_TRUNC = 0x20
_AGAIN = (_errno.EAGAIN, _errno.EWOULDBLOCK)
_unpack_flags_len = struct.Struct("@i4xI").unpack_from  # msg_hdr.msg_flags, msg_len
_FLAGS_OFF = _Mmsghdr.msg_hdr.offset + _Msghdr.msg_flags.offset
assert _Mmsghdr.msg_len.offset == _FLAGS_OFF + 8, "msg_flags and msg_len layout"


def _load_recvmmsg() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.PyDLL(None, use_errno=True).recvmmsg
    except (OSError, AttributeError):
        return None
    fn.argtypes = (ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int, ctypes.c_void_p)
    fn.restype = ctypes.c_int
    return fn


_recvmmsg = _load_recvmmsg()


class RecvBatch:
    """recvmmsg for the connected sockets' drains: one syscall reads up to `count` datagrams
    into preallocated slots (no EAGAIN exception per drain, no syscall per packet); the
    reader copies each into the forwarder's buffer before handing it over (`receive`'s
    contract: the packet is in Forwarder.buf). One per worker: drains never overlap.

    `slot`: bytes per datagram (a longer one is truncated: `length` says -1). `names`: keep
    each datagram's source address (the raw sockaddr at `names[i * NAME_SLOT]`), for an
    unconnected socket (the host legs' hub). The kernel writes back the length of the
    address it stored, which a socket's family fixes: one socket family per RecvBatch."""

    def __init__(self, count: int, slot: int = RECV_SLOT, names: bool = False) -> None:
        if _recvmmsg is None:
            raise OSError("recvmmsg is not available")
        self.count = count
        self.slot = slot
        self.slots = bytearray(slot * count)
        self.view = memoryview(self.slots)
        slots_addr = _address(self.slots)
        self.iovs = (_Iovec * count)()
        self.raw = bytearray(MSG_SIZE * count)
        self.msgs = (_Mmsghdr * count).from_buffer(self.raw)
        self.names = bytearray(NAME_SLOT * count) if names else None
        names_addr = _address(self.names) if self.names is not None else 0
        for i in range(count):
            self.iovs[i].iov_base = slots_addr + slot * i
            self.iovs[i].iov_len = slot
            m = self.msgs[i].msg_hdr
            m.msg_iov = ctypes.addressof(self.iovs) + IOV_SIZE * i
            m.msg_iovlen = 1
            if names_addr:
                m.msg_name = names_addr + NAME_SLOT * i
                m.msg_namelen = NAME_SLOT
        self.msgs_addr = ctypes.addressof(self.msgs)

    def recv(self, fd: int) -> int:
        """Datagrams now in the slots (0: none waiting), or -errno."""
        k = _recvmmsg(fd, self.msgs_addr, self.count, _MSG_DONTWAIT, None)
        if k < 0:
            err = ctypes.get_errno()
            return 0 if err in _AGAIN else -err
        return k

    def length(self, i: int) -> int:
        """Length of datagram i, -1 if it was truncated (larger than a slot)."""
        flags, n = _unpack_flags_len(self.raw, i * MSG_SIZE + _FLAGS_OFF)
        return -1 if flags & _MSG_TRUNC else n

    def lengths(self, k: int) -> list[int]:
        """`length(i)` of datagrams 0..k-1, in one go."""
        raw = self.raw
        return [
            -1 if flags & _MSG_TRUNC else n
            for flags, n in (_unpack_flags_len(raw, i * MSG_SIZE + _FLAGS_OFF) for i in range(k))
        ]


def recv_available() -> bool:
    return _recvmmsg is not None


# -- datagrams to one address -----------------------------------------------------------------


def sockaddr(family: int, addr: tuple[str, int]) -> bytes:
    """The sockaddr_in / sockaddr_in6 of (ip, port) as the kernel reads and writes it
    (msg_name): what a SendSlots sends to, and what RecvBatch(names=True) stores per datagram.
    OSError (socket.inet_pton's) for an address that is not of `family`."""
    ip, port = addr[0], addr[1]
    head = struct.pack("=H", family) + port.to_bytes(2, "big")
    if family == socket.AF_INET:
        return head + socket.inet_pton(family, ip) + bytes(8)
    return head + bytes(4) + socket.inet_pton(family, ip) + bytes(4)  # flowinfo, scope id 0


_pack_len = struct.Struct("@N").pack_into


class SendSlots:
    """sendmmsg of datagrams that all go to one address (the host legs' origin: a drain's
    packets of one leg, each its own datagram; docs/internals.md, "The host leg"). The
    caller writes datagram i into slot i (`slots[i * slot:]`), sets its length with
    `set_length(i, n)`, then `send(fd, name, k)` sends slots 0..k-1, in order, with one
    sendmmsg. No per-datagram syscall or object; one per worker (a send never overlaps
    another: the loop is single-threaded).

    Errors as SendBatch's: when sendmmsg fails on its first message, that datagram is lost
    (EAGAIN/ENOBUFS: the socket is full, never waited for; EHOSTUNREACH...) and the rest
    are tried again; `send` returns the indices lost."""

    def __init__(self, count: int, slot: int, family: int = socket.AF_INET, sendmmsg=None) -> None:
        self._sendmmsg = sendmmsg or _sendmmsg
        if self._sendmmsg is None:
            raise OSError("sendmmsg is not available")
        self.count = count
        self.slot = slot
        self.namelen = 16 if family == socket.AF_INET else 28
        self.slots = bytearray(slot * count)
        self.view = memoryview(self.slots)
        slots_addr = _address(self.slots)
        # The address every message of a send goes to (the last `send`'s, kept while the
        # next is the same).
        self.name = bytearray(NAME_SLOT)
        self._to = b""
        name_addr = _address(self.name)
        # One iovec per message, its length written per datagram (`set_length`).
        self.iovs = bytearray(IOV_SIZE * count)
        iovs = (_Iovec * count).from_buffer(self.iovs)
        self._iovs_view = iovs  # keeps the export (see _address)
        iovs_addr = ctypes.addressof(iovs)
        self.msgs = (_Mmsghdr * count)()
        for i in range(count):
            iovs[i].iov_base = slots_addr + slot * i
            m = self.msgs[i].msg_hdr
            m.msg_name = name_addr
            m.msg_namelen = self.namelen
            m.msg_iov = iovs_addr + IOV_SIZE * i
            m.msg_iovlen = 1
        self.msgs_addr = ctypes.addressof(self.msgs)
        self.calls = 0  # sendmmsg calls made (a dump's: how well the sends batch)

    def set_length(self, i: int, n: int) -> None:
        _pack_len(self.iovs, IOV_SIZE * i + 8, n)

    def length(self, i: int) -> int:
        """Slot i's datagram length, as set."""
        return _unpack_len(self.iovs, IOV_SIZE * i + 8)[0]

    def send(self, fd: int, name: bytes, k: int) -> list[int]:
        """Send slots 0..k-1 to `name` (a `sockaddr()` of this family; ValueError for
        another length); returns the indices of those that could not be sent."""
        if name != self._to:
            if len(name) != self.namelen:
                raise ValueError(f"a {self.namelen}-byte address (sockaddr()), not {len(name)} bytes")
            self.name[: self.namelen] = name
            self._to = name
        sendmmsg = self._sendmmsg
        base = self.msgs_addr
        lost = _NONE_LOST
        done = 0
        while done < k:
            self.calls += 1
            r = sendmmsg(fd, base + done * MSG_SIZE, k - done, 0)
            if r > 0:
                done += r
            elif r < 0 and ctypes.get_errno() in _RETRY:
                continue
            else:  # the message at `done` failed: lost, the rest tried again
                if lost is _NONE_LOST:
                    lost = []
                lost.append(done)
                done += 1
        return lost


_NONE_LOST: list[int] = []  # send()'s answer when all went (never appended to)
