"""The batched fan-out (workers/sendbatch.py): per-consumer headers and order through real
sendmmsg on loopback, partial sendmmsg returns and errors through a fake sendmmsg, lane
overflow and growth, and SRTP copies that the receiver's context decrypts."""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import struct

import pytest
from tureen.workers import sendbatch
from tureen.workers.rtp.consumer import ConsumerRewrite
from tureen.workers.sendbatch import LANE, SendBatch, _Iovec, _Mmsghdr
from tureen.workers.transport.srtp import AEAD_AES_128_GCM, AES128_CM_SHA1_80, SrtpContext

pytestmark = pytest.mark.skipif(not sendbatch.available(), reason="no sendmmsg (not Linux)")

HDR = struct.Struct("!BBHII")


class FakeForwarder:
    """What SendBatch corrects at a flush."""

    def __init__(self) -> None:
        self.rtp_out = 0
        self.send_errors = 0


class Pair:
    """A sink socket and a consumer whose fd is a socket connected to it."""

    def __init__(self, ssrc: int, seq_offset: int = 0, ts_offset: int = 0) -> None:
        self.sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sink.bind(("127.0.0.1", 0))
        self.sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.sink.settimeout(2.0)
        self.out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.out.connect(self.sink.getsockname())
        self.c = ConsumerRewrite(1, ssrc)
        self.c.fd = self.out.fileno()
        self.c.send = self.out.send
        self.c.sync = False
        self.c.started = True
        self.c.seq_offset = seq_offset
        self.c.ts_offset = ts_offset

    def receive(self, count: int) -> list[bytes]:
        return [self.sink.recv(2048) for _ in range(count)]

    def close(self) -> None:
        self.sink.close()
        self.out.close()


@pytest.fixture
def pairs():
    made: list[Pair] = []

    def make(*args, **kw) -> Pair:
        p = Pair(*args, **kw)
        made.append(p)
        return p

    yield make
    for p in made:
        p.close()


def packet(seq: int, ts: int, payload: bytes, pt: int = 96, marker: bool = False) -> bytearray:
    buf = bytearray(65536)
    HDR.pack_into(buf, 0, 0x80, (0x80 if marker else 0) | pt, seq, ts, 0x11111111)
    buf[12 : 12 + len(payload)] = payload
    return buf


def feed(batch: SendBatch, fwd: FakeForwarder, fan, seq: int, ts: int, payload: bytes, marker=False) -> int:
    buf = packet(seq, ts, payload, marker=marker)
    n = 12 + len(payload)
    sent = batch.fanout(tuple(fan), buf, memoryview(buf)[:n], seq, ts, n)
    fwd.rtp_out += sent
    return sent


def test_headers_payload_and_order_per_consumer(pairs):
    fwd = FakeForwarder()
    batch = SendBatch(fwd)
    a = pairs(0xAAAA0001, seq_offset=1000, ts_offset=5)
    b = pairs(0xBBBB0002, seq_offset=0xFFFE, ts_offset=0xFFFFFFFF)
    for i in range(5):
        assert feed(batch, fwd, [a.c, b.c], 100 + i, 9000 + 3000 * i, bytes([i]) * (50 + i), marker=i == 4) == 2
    assert a.c.queued == 5 and b.c.queued == 5  # nothing sent before the flush
    batch.flush()
    for p in (a, b):
        got = p.receive(5)
        for i, data in enumerate(got):
            b0, b1, seq, ts, ssrc = HDR.unpack_from(data)
            assert (b0, b1 & 0x7F, bool(b1 & 0x80)) == (0x80, 96, i == 4)
            assert ssrc == p.c.ssrc
            assert seq == (100 + i + p.c.seq_offset) & 0xFFFF
            assert ts == (9000 + 3000 * i + p.c.ts_offset) & 0xFFFFFFFF
            assert data[12:] == bytes([i]) * (50 + i)
        assert p.c.packets == 5 and p.c.queued == 0
    assert fwd.rtp_out == 10 and fwd.send_errors == 0
    assert batch.calls == 2  # one sendmmsg per consumer


def test_more_than_a_lane_and_more_consumers_than_lanes(pairs):
    fwd = FakeForwarder()
    batch = SendBatch(fwd, lanes=2)
    made = [pairs(0x100 + i) for i in range(3)]  # 3 consumers, 2 lanes: flush + grow
    fan = [p.c for p in made]
    count = LANE + 10  # a lane fills up: flush in the middle of a packet's fan-out
    for i in range(count):
        feed(batch, fwd, fan, i, 90 * i, struct.pack("!I", i) * 10)
    batch.flush()
    assert batch.lanes == 4  # grew after running out
    for p in made:
        got = p.receive(count)
        assert [HDR.unpack_from(d)[2] for d in got] == list(range(count))
        assert [d[12:] for d in got] == [struct.pack("!I", i) * 10 for i in range(count)]
    assert fwd.rtp_out == 3 * count and fwd.send_errors == 0


def _sent_bytes(msgs_addr: int, index: int) -> bytes:
    """What the fake sendmmsg reads: the datagram of mmsghdr `index` (all its iovecs)."""
    m = _Mmsghdr.from_address(msgs_addr + index * ctypes.sizeof(_Mmsghdr)).msg_hdr
    iovs = (_Iovec * m.msg_iovlen).from_address(m.msg_iov)
    return b"".join(ctypes.string_at(v.iov_base, v.iov_len) for v in iovs)


class FakeSendmmsg:
    """sendmmsg that follows a script of results: an int k > 0 sends min(k, vlen) messages,
    an errno value fails the first one (-1). Records what went out per fd."""

    def __init__(self, script: list) -> None:
        self.script = list(script)
        self.sent: dict[int, list[bytes]] = {}

    def __call__(self, fd: int, addr: int, vlen: int, flags: int) -> int:
        step = self.script.pop(0) if self.script else vlen
        if isinstance(step, tuple):  # ("errno", code)
            ctypes.set_errno(step[1])
            return -1
        k = min(step, vlen)
        self.sent.setdefault(fd, []).extend(_sent_bytes(addr, i) for i in range(k))
        return k


def test_partial_returns_and_errors_are_counted_per_consumer():
    fwd = FakeForwarder()
    # Consumer a (fd 1001): 2 sent, then ENOBUFS on the 3rd, then the rest (2).
    # Consumer b (fd 1002): EINTR (retried), then ECONNREFUSED on its 1st, then 1 by 1.
    fake = FakeSendmmsg([2, ("e", errno.ENOBUFS), 5, ("e", errno.EINTR), ("e", errno.ECONNREFUSED), 1, 1, 1, 1])
    batch = SendBatch(fwd, sendmmsg=fake)
    a = ConsumerRewrite(1, 0xA)
    b = ConsumerRewrite(2, 0xB)
    for c, fd in ((a, 1001), (b, 1002)):
        c.fd = fd
        c.sync = False
        c.started = True
    for i in range(5):
        feed(batch, fwd, [a, b], i, i, bytes([i]) * 20)
    assert fwd.rtp_out == 10
    batch.flush()
    seqs = {fd: [HDR.unpack_from(d)[2] for d in data] for fd, data in fake.sent.items()}
    assert seqs == {1001: [0, 1, 3, 4], 1002: [1, 2, 3, 4]}  # in order, the failed one skipped
    assert all(d[12:] == bytes([HDR.unpack_from(d)[2]]) * 20 for data in fake.sent.values() for d in data)
    assert (a.send_errors, a.packets, a.octets) == (1, 4, 4 * 32)
    assert (b.send_errors, b.packets, b.octets) == (1, 4, 4 * 32)
    assert (fwd.rtp_out, fwd.send_errors) == (8, 2)


def test_unbatchable_consumer_sends_per_copy(pairs):
    fwd = FakeForwarder()
    batch = SendBatch(fwd)
    a = pairs(0xA)
    b = pairs(0xB)
    b.c.fd = -1  # e.g. ICE-TCP: its own send, right away
    feed(batch, fwd, [a.c, b.c], 7, 70, b"x" * 30)
    assert HDR.unpack_from(b.sink.recv(2048))[2:] == (7, 70, 0xB)
    batch.flush()
    assert HDR.unpack_from(a.sink.recv(2048))[2:] == (7, 70, 0xA)


@pytest.mark.parametrize("profile", [AEAD_AES_128_GCM, AES128_CM_SHA1_80])
def test_srtp_copies_decrypt(pairs, profile):
    fwd = FakeForwarder()
    batch = SendBatch(fwd)
    keys = []
    fan = []
    for i in range(2):
        local = os.urandom(28 if profile == AEAD_AES_128_GCM else 30)
        remote = os.urandom(len(local))
        p = pairs(0xC0 + i, seq_offset=10 * i)
        p.c.protect = SrtpContext(profile, local, remote).protect_rtp_at
        keys.append((p, SrtpContext(profile, remote, local)))  # the receiver's view
        fan.append(p.c)
    plain = pairs(0xD0)  # a plain consumer in the same fan: its payload is the shared copy
    fan.append(plain.c)
    for i in range(4):
        feed(batch, fwd, fan, 500 + i, 1000 * i, bytes([i + 1]) * 1000)
    batch.flush()
    for p, rx in keys:
        for i, data in enumerate(p.receive(4)):
            rtp = rx.unprotect_rtp(data)
            assert HDR.unpack_from(rtp)[2:] == ((500 + i + p.c.seq_offset) & 0xFFFF, 1000 * i, p.c.ssrc)
            assert rtp[12:] == bytes([i + 1]) * 1000
    for i, data in enumerate(plain.receive(4)):
        assert data[12:] == bytes([i + 1]) * 1000


def test_recv_batch_reads_a_drain_in_one_call_and_flags_truncation():
    rb = sendbatch.RecvBatch(8)
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        rx.bind(("127.0.0.1", 0))
        tx.connect(rx.getsockname())
        assert rb.recv(rx.fileno()) == 0  # nothing waiting: 0, no exception
        sizes = [12, 1200, sendbatch.RECV_SLOT + 1, 160]
        for i, size in enumerate(sizes):
            tx.send(bytes([i]) * size)
        k = rb.recv(rx.fileno())
        assert k == len(sizes)
        assert [rb.length(i) for i in range(k)] == [12, 1200, -1, 160]
        for i in (0, 1, 3):
            start = i * sendbatch.RECV_SLOT
            assert rb.view[start : start + sizes[i]] == bytes([i]) * sizes[i]
    finally:
        rx.close()
        tx.close()
