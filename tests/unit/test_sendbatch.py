"""The batched fan-outs, Python (workers/sendbatch.py) and native (workers/_native.c), under
one contract: per-consumer headers and order through real sendmmsg on loopback, real send
errors (ECONNREFUSED, EBADF), buffers filling up in the middle of a fan-out, SRTP copies that
the receiver's context decrypts; for SendBatch also partial sendmmsg returns through a fake
sendmmsg, and lane overflow and growth.

The native tests skip where the extension was not built, except under TUREEN_REQUIRE_NATIVE=1
(set by `make test`), where a missing build fails them."""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import struct

import pytest
from tureen.workers import native, sendbatch
from tureen.workers.rtp.consumer import ConsumerRewrite
from tureen.workers.sendbatch import LANE, SendBatch, _Iovec, _Mmsghdr
from tureen.workers.transport.srtp import AEAD_AES_128_GCM, AES128_CM_SHA1_80, SrtpContext

pytestmark = pytest.mark.skipif(not sendbatch.available(), reason="no sendmmsg (not Linux)")


class FakeForwarder:
    """The counters a flush's failures correct (Forwarder.after_drain)."""

    def __init__(self) -> None:
        self.rtp_out = 0
        self.send_errors = 0


CORES = ["python", "native", "native-sendmmsg"]  # native: io_uring where the kernel allows


def _need_native() -> None:
    if not native.available():
        if os.environ.get("TUREEN_REQUIRE_NATIVE") == "1":
            pytest.fail(native.WHY_NOT)
        pytest.skip(native.WHY_NOT)


@pytest.fixture(params=CORES)
def core(request) -> str:
    if request.param.startswith("native"):
        _need_native()
    return request.param


def make_batch(core: str):
    if core == "python":
        return SendBatch()
    return native.make_fanout("native", uring=core == "native")


def queued(c: ConsumerRewrite, core: str) -> int:
    return c.queued if core == "python" else c.native_queued


def flush(batch, fwd: FakeForwarder) -> None:
    """What Forwarder.after_drain does with a flush's failures."""
    failed = batch.flush()
    fwd.rtp_out -= failed
    fwd.send_errors += failed


HDR = struct.Struct("!BBHII")


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


def use_srtp(c: ConsumerRewrite, ctx: SrtpContext) -> None:
    """What the router sets for a consumer on an SRTP transport (both cores' fields)."""
    c.protect = ctx.protect_rtp_at
    c.srtp_tx = ctx.tx_address


def packet(seq: int, ts: int, payload: bytes, pt: int = 96, marker: bool = False) -> bytearray:
    buf = bytearray(65536)
    HDR.pack_into(buf, 0, 0x80, (0x80 if marker else 0) | pt, seq, ts, 0x11111111)
    buf[12 : 12 + len(payload)] = payload
    return buf


def padded_packet(seq: int, ts: int, payload: bytes, pad: int) -> tuple[bytearray, int]:
    """A packet with one CSRC, a one-byte-header extension (one word) and `pad` bytes of
    padding: (buffer, length). Its payload for RFC 3550's octet count is `payload` alone."""
    buf = bytearray(65536)
    HDR.pack_into(buf, 0, 0x80 | 0x20 | 0x10 | 1, 96, seq, ts, 0x11111111)
    head = struct.pack("!I", 0x2222) + struct.pack("!HH", 0xBEDE, 1) + bytes([0x10, 0x7F, 0, 0])
    body = head + payload + bytes(pad - 1) + bytes([pad])
    buf[12 : 12 + len(body)] = body
    return buf, 12 + len(body)


def feed(batch, fwd: FakeForwarder, fan, seq: int, ts: int, payload: bytes, marker=False, pad: int = 0) -> int:
    if pad:
        buf, n = padded_packet(seq, ts, payload, pad)
        sent = batch.fanout(tuple(fan), buf, memoryview(buf)[:n], seq, ts, n)
        fwd.rtp_out += sent
        return sent
    buf = packet(seq, ts, payload, marker=marker)
    n = 12 + len(payload)
    sent = batch.fanout(tuple(fan), buf, memoryview(buf)[:n], seq, ts, n)
    fwd.rtp_out += sent
    return sent


def test_headers_payload_and_order_per_consumer(pairs, core):
    fwd = FakeForwarder()
    batch = make_batch(core)
    a = pairs(0xAAAA0001, seq_offset=1000, ts_offset=5)
    b = pairs(0xBBBB0002, seq_offset=0xFFFE, ts_offset=0xFFFFFFFF)
    for i in range(5):
        assert (
            feed(
                batch,
                fwd,
                [a.c, b.c],
                100 + i,
                9000 + 3000 * i,
                bytes([i]) * (50 + i),
                marker=i == 4,
            )
            == 2
        )
    assert queued(a.c, core) == 5 and queued(b.c, core) == 5  # nothing sent before the flush
    flush(batch, fwd)
    for p in (a, b):
        got = p.receive(5)
        for i, data in enumerate(got):
            b0, b1, seq, ts, ssrc = HDR.unpack_from(data)
            assert (b0, b1 & 0x7F, bool(b1 & 0x80)) == (0x80, 96, i == 4)
            assert ssrc == p.c.ssrc
            assert seq == (100 + i + p.c.seq_offset) & 0xFFFF
            assert ts == (9000 + 3000 * i + p.c.ts_offset) & 0xFFFFFFFF
            assert data[12:] == bytes([i]) * (50 + i)
        assert p.c.packets == 5 and queued(p.c, core) == 0
    assert fwd.rtp_out == 10 and fwd.send_errors == 0
    # One sendmmsg per consumer, or one io_uring_enter for both.
    assert batch.dump()["sendmmsgCalls"] == (1 if batch.dump().get("send") == "io_uring" else 2)


def test_more_than_a_lane_and_more_consumers_than_lanes(pairs):
    fwd = FakeForwarder()
    batch = SendBatch(lanes=2)
    made = [pairs(0x100 + i) for i in range(3)]  # 3 consumers, 2 lanes: flush + grow
    fan = [p.c for p in made]
    count = LANE + 10  # a lane fills up: flush in the middle of a packet's fan-out
    for i in range(count):
        feed(batch, fwd, fan, i, 90 * i, struct.pack("!I", i) * 10)
    flush(batch, fwd)
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
    fake = FakeSendmmsg(
        [2, ("e", errno.ENOBUFS), 5, ("e", errno.EINTR), ("e", errno.ECONNREFUSED), 1, 1, 1, 1]
    )
    batch = SendBatch(sendmmsg=fake)
    a = ConsumerRewrite(1, 0xA)
    b = ConsumerRewrite(2, 0xB)
    for c, fd in ((a, 1001), (b, 1002)):
        c.fd = fd
        c.sync = False
        c.started = True
    for i in range(5):
        feed(batch, fwd, [a, b], i, i, bytes([i]) * 20)
    assert fwd.rtp_out == 10
    flush(batch, fwd)
    seqs = {fd: [HDR.unpack_from(d)[2] for d in data] for fd, data in fake.sent.items()}
    assert seqs == {1001: [0, 1, 3, 4], 1002: [1, 2, 3, 4]}  # in order, the failed one skipped
    assert all(
        d[12:] == bytes([HDR.unpack_from(d)[2]]) * 20 for data in fake.sent.values() for d in data
    )
    assert (a.send_errors, a.packets, a.octets, a.payload_octets) == (1, 4, 4 * 32, 4 * 20)
    assert (b.send_errors, b.packets, b.octets, b.payload_octets) == (1, 4, 4 * 32, 4 * 20)
    assert (fwd.rtp_out, fwd.send_errors) == (8, 2)


def test_payload_octets_count_the_payload_only(pairs, core):
    """RFC 3550's SR octet count: header, CSRCs, extension and padding excluded; per-copy
    (ICE-TCP) consumers count the same."""
    fwd = FakeForwarder()
    batch = make_batch(core)
    batched = pairs(0xA1)
    per_copy = pairs(0xA2)
    per_copy.c.fd = -1
    per_copy.c.send = per_copy.out.send
    fan = (batched.c, per_copy.c)
    feed(batch, fwd, fan, 1, 100, b"x" * 20)
    feed(batch, fwd, fan, 2, 200, b"y" * 33, pad=3)
    flush(batch, fwd)
    for c in fan:
        assert (c.packets, c.payload_octets) == (2, 20 + 33)
        assert c.octets == 32 + (12 + 4 + 8 + 33 + 3)


def test_unbatchable_consumer_sends_per_copy(pairs, core):
    fwd = FakeForwarder()
    batch = make_batch(core)
    a = pairs(0xA)
    b = pairs(0xB)
    b.c.fd = -1  # e.g. ICE-TCP: its own send, right away
    feed(batch, fwd, [a.c, b.c], 7, 70, b"x" * 30)
    assert HDR.unpack_from(b.sink.recv(2048))[2:] == (7, 70, 0xB)
    flush(batch, fwd)
    assert HDR.unpack_from(a.sink.recv(2048))[2:] == (7, 70, 0xA)


@pytest.mark.parametrize("profile", [AEAD_AES_128_GCM, AES128_CM_SHA1_80])
def test_srtp_copies_decrypt(pairs, profile, core):
    fwd = FakeForwarder()
    batch = make_batch(core)
    keys = []
    fan = []
    for i in range(2):
        local = os.urandom(28 if profile == AEAD_AES_128_GCM else 30)
        remote = os.urandom(len(local))
        p = pairs(0xC0 + i, seq_offset=10 * i)
        use_srtp(p.c, SrtpContext(profile, local, remote))
        keys.append((p, SrtpContext(profile, remote, local)))  # the receiver's view
        fan.append(p.c)
    plain = pairs(0xD0)  # a plain consumer in the same fan: its payload is the shared copy
    fan.append(plain.c)
    for i in range(4):
        feed(batch, fwd, fan, 500 + i, 1000 * i, bytes([i + 1]) * 1000)
    flush(batch, fwd)
    for p, rx in keys:
        for i, data in enumerate(p.receive(4)):
            rtp = rx.unprotect_rtp(data)
            assert HDR.unpack_from(rtp)[2:] == (
                (500 + i + p.c.seq_offset) & 0xFFFF,
                1000 * i,
                p.c.ssrc,
            )
            assert rtp[12:] == bytes([i + 1]) * 1000
    for i, data in enumerate(plain.receive(4)):
        assert data[12:] == bytes([i + 1]) * 1000


def test_srtp_copies_go_as_io_uring_send_and_match_sendmsg(pairs):
    """With io_uring, a whole protected copy goes as IORING_OP_SEND (no msghdr for the kernel
    to copy, docs/benchmarks.md "round three: the SRTP copy"), plain copies stay sendmsg: the
    datagrams are byte for byte those of the sendmsg path, in order, and a copy that fails
    as a send is counted like one that fails as a sendmsg."""
    _need_native()
    batches = {v: native._native.FanOut(native.srtp_protect_address(), sendbatch.send_one, uring_send=v)
               for v in (True, False)}
    if batches[True].dump()["send"] != "io_uring":
        pytest.skip("no io_uring here: the sendmmsg path sends every copy")
    local, remote = os.urandom(28), os.urandom(28)
    srtp = pairs(0xE0, seq_offset=5)
    use_srtp(srtp.c, SrtpContext(AEAD_AES_128_GCM, local, remote))
    plain = pairs(0xE1)
    gone = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    bad = ConsumerRewrite(3, 0xE2)  # an SRTP consumer whose socket is closed: EBADF per copy
    bad.fd = gone.fileno()
    bad.sync = False
    bad.started = True
    use_srtp(bad, SrtpContext(AEAD_AES_128_GCM, local, remote))
    gone.close()
    fan = [srtp.c, plain.c, bad]
    got = {}
    for v, batch in batches.items():
        fwd = FakeForwarder()
        for i in range(3):  # the same packets through each path (allow_repeat_tx: same bytes)
            assert feed(batch, fwd, fan, 700 + i, 90 * i, bytes([i + 7]) * 900) == 3
        flush(batch, fwd)
        got[v] = (srtp.receive(3), plain.receive(3))
        assert (fwd.rtp_out, fwd.send_errors) == (6, 3)
    assert batches[True].dump()["uringSends"] == 6  # 3 good + 3 failed SRTP copies
    assert batches[False].dump()["uringSends"] == 0
    assert got[True] == got[False]
    rx = SrtpContext(AEAD_AES_128_GCM, remote, local)
    for i, data in enumerate(got[True][0]):
        rtp = rx.unprotect_rtp(data)
        assert HDR.unpack_from(rtp)[2:] == (705 + i, 90 * i, 0xE0)
        assert rtp[12:] == bytes([i + 7]) * 900
    assert (bad.send_errors, bad.packets, bad.octets) == (6, 0, 0)
    assert (srtp.c.packets, plain.c.packets) == (6, 6)


def test_real_send_errors_are_counted_and_the_rest_still_go(pairs, core):
    fwd = FakeForwarder()
    batch = make_batch(core)
    good = pairs(0x60)
    # A socket connected to a port nobody listens on: the ICMP answer to a first datagram
    # makes the next send fail once with ECONNREFUSED, then sends go out (to nobody) again.
    refused = pairs(0x61)
    port = refused.sink.getsockname()
    refused.sink.close()
    refused.out.connect(port)
    refused.out.send(b"x" * 20)
    # A closed socket: every copy fails with EBADF.
    gone = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    bad = ConsumerRewrite(3, 0x62)
    bad.fd = gone.fileno()
    bad.sync = False
    bad.started = True
    gone.close()
    for i in range(3):
        assert feed(batch, fwd, [refused.c, bad, good.c], i, i, b"p" * 20) == 3
    flush(batch, fwd)
    # At least the first copy is refused; each copy that goes out draws another ICMP answer,
    # which the kernel may report on a later copy of the same flush (io_uring, sendmmsg and
    # the retries see that at different moments): every copy is either sent or counted.
    errors = refused.c.send_errors
    assert errors >= 1 and (refused.c.packets, refused.c.octets) == (3 - errors, 32 * (3 - errors))
    assert (bad.send_errors, bad.packets, bad.octets) == (3, 0, 0)
    assert (good.c.send_errors, good.c.packets) == (0, 3)
    assert [HDR.unpack_from(d)[2] for d in good.receive(3)] == [0, 1, 2]
    assert (fwd.rtp_out, fwd.send_errors) == (6 - errors, 3 + errors)
    assert batch.flush() == 0  # failures are reported once


def test_payload_ring_full_in_the_middle_of_a_drain(pairs, core):
    """More payload than one ring holds between flushes: the batch sends what it has in the
    middle of the drain and goes on; every consumer still gets every packet, in order."""
    fwd = FakeForwarder()
    batch = make_batch(core)
    made = [pairs(0x70 + i) for i in range(2)]
    count = 240  # x 1188 bytes of payload: more than the 256 KiB ring
    got: dict[int, list[bytes]] = {p.c.ssrc: [] for p in made}
    for i in range(count):
        feed(batch, fwd, [p.c for p in made], i, 10 * i, struct.pack("!H", i) * 594)
    for p in made:  # what the early flush sent, before the sinks fill up
        p.sink.setblocking(False)
        while True:
            try:
                got[p.c.ssrc].append(p.sink.recv(2048))
            except BlockingIOError:
                break
        p.sink.settimeout(2.0)
    assert all(0 < len(v) < count for v in got.values())
    flush(batch, fwd)
    for p in made:
        got[p.c.ssrc] += p.receive(count - len(got[p.c.ssrc]))
        assert [HDR.unpack_from(d)[2] for d in got[p.c.ssrc]] == list(range(count))
        assert all(d[12:] == struct.pack("!H", i) * 594 for i, d in enumerate(got[p.c.ssrc]))
    assert (fwd.rtp_out, fwd.send_errors) == (2 * count, 0)


def test_srtp_slots_full_in_the_middle_of_a_fanout(pairs, core):
    """More protected copies than SRTP slots between flushes (1024): an early flush, and
    every copy still decrypts, in order."""
    fwd = FakeForwarder()
    batch = make_batch(core)
    count = 3
    made = []
    for i in range(400):  # 400 consumers x 3 packets = 1200 protected copies
        local, remote = os.urandom(28), os.urandom(28)
        c = ConsumerRewrite(i, 0x1000 + i)
        c.sync = False
        c.started = True
        use_srtp(c, SrtpContext(AEAD_AES_128_GCM, local, remote))
        made.append((c, SrtpContext(AEAD_AES_128_GCM, remote, local)))
    sink = pairs(0x80)  # every consumer sends on one connected socket to one sink
    for c, _ in made:
        c.fd = sink.out.fileno()
    for i in range(count):
        assert feed(batch, fwd, [c for c, _ in made], i, i, bytes([i]) * 200) == 400
    flush(batch, fwd)
    rx = {c.ssrc: (c, ctx) for c, ctx in made}
    seen: dict[int, list[int]] = {}
    for data in sink.receive(400 * count):
        c, ctx = rx[HDR.unpack_from(data)[4]]
        rtp = ctx.unprotect_rtp(data)
        seen.setdefault(c.ssrc, []).append(HDR.unpack_from(rtp)[2])
        assert rtp[12:] == bytes([HDR.unpack_from(rtp)[2]]) * 200
    assert len(seen) == 400 and all(v == list(range(count)) for v in seen.values())
    assert (fwd.rtp_out, fwd.send_errors) == (1200, 0)


def test_srtp_copy_too_large_is_counted_not_sent(pairs, core):
    batch = make_batch(core)
    p = pairs(0x90)
    local, remote = os.urandom(28), os.urandom(28)
    use_srtp(p.c, SrtpContext(AEAD_AES_128_GCM, local, remote))
    buf = packet(1, 1, b"z" * 1489)  # 1501 bytes: more than libsrtp takes
    assert batch.fanout((p.c,), buf, memoryview(buf)[:1501], 1, 1, 1501) == 0
    assert batch.flush() == 0
    assert (p.c.send_errors, p.c.packets) == (1, 0)


def test_resync_runs_before_the_first_copy_after_a_break(pairs, core):
    fwd = FakeForwarder()
    batch = make_batch(core)
    p = pairs(0xA0)
    p.c.last_seq, p.c.last_ts = 999, 5000
    p.c.sync = True  # started, interrupted: continues at last_seq + 1
    feed(batch, fwd, [p.c], 40, 7000, b"r" * 20)
    feed(batch, fwd, [p.c], 41, 7100, b"r" * 20)
    flush(batch, fwd)
    assert [HDR.unpack_from(d)[2] for d in p.receive(2)] == [1000, 1001]
    assert p.c.sync is False


def test_native_fanout_rejects_bad_arguments(pairs):
    _need_native()
    batch = make_batch("native")
    p = pairs(0xB0)
    buf = packet(1, 1, b"q" * 20)
    view = memoryview(buf)[:32]
    with pytest.raises(TypeError):
        batch.fanout((p.c, object()), buf, view, 1, 1, 32)
    with pytest.raises(TypeError):
        batch.fanout([p.c], buf, view, 1, 1, 32)
    with pytest.raises(TypeError):
        batch.fanout((p.c,), bytes(buf), view, 1, 1, 32)
    for n in (11, len(buf) + 1):
        with pytest.raises(ValueError):
            batch.fanout((p.c,), buf, view, 1, 1, n)
    with pytest.raises(TypeError):
        batch.fanout((p.c,), buf, view, 1, 1)
    # The consumer before the bad entry was queued; the batch still works and sends it.
    assert batch.flush() == 0
    assert HDR.unpack_from(p.sink.recv(2048))[2] == 1


def test_a_consumer_queued_in_one_native_batch_is_refused_by_another(pairs):
    _need_native()
    first, second = make_batch("native"), make_batch("native")
    p = pairs(0xC0)
    buf = packet(1, 1, b"o" * 20)
    assert first.fanout((p.c,), buf, memoryview(buf)[:32], 1, 1, 32) == 1
    with pytest.raises(RuntimeError, match="another FanOut"):
        second.fanout((p.c,), buf, memoryview(buf)[:32], 1, 1, 32)
    assert first.flush() == 0
    assert second.fanout((p.c,), buf, memoryview(buf)[:32], 1, 1, 32) == 1  # free again
    assert second.flush() == 0
    assert [HDR.unpack_from(p.sink.recv(2048))[2] for _ in range(2)] == [1, 1]


FALLBACK = """
import socket, struct, sys
sys.modules["tureen.workers._native"] = None  # as if the extension was never built
from tureen.workers import native
from tureen.workers.forward import Forwarder
from tureen.workers.rtp.consumer import ConsumerRewrite
assert not native.available() and native.RewriteCore.__module__ == "tureen.workers.native"
fwd = Forwarder()
assert fwd.core() == "python", fwd.core()
sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sink.bind(("127.0.0.1", 0))
sink.settimeout(2.0)
out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
out.connect(sink.getsockname())
c = ConsumerRewrite(1, 0xABC)
c.fd, c.send = out.fileno(), out.send
buf = fwd.buf
struct.pack_into("!BBHII", buf, 0, 0x80, 96, 7, 700, 0x1111)
n = fwd.fanout((c,), buf, fwd.mv[:40], 7, 700, 40)
fwd.after_drain()
data = sink.recv(2048)
assert (n, c.packets, c.octets, c.sync) == (1, 1, 40, False), (n, c.packets, c.octets, c.sync)
assert struct.unpack_from("!HII", data, 2) == (7, 700, 0xABC)
print("fallback ok")
"""


def test_without_the_native_build_the_python_core_runs_on_plain_slots() -> None:
    """The stand-in RewriteCore (plain slots) with SendBatch, in a process where the
    extension cannot be imported."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", FALLBACK], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "fallback ok" in done.stdout


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


def test_recv_batch_keeps_each_source_and_send_slots_send_to_one_address():
    """RecvBatch(names=True) stores each datagram's sockaddr as sockaddr() builds it; a
    SendSlots sends its slots in order, one datagram each, to one address, in one call."""
    rb = sendbatch.RecvBatch(8, slot=256, names=True)
    rx, a, b = (socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(3))
    try:
        for s in (rx, a, b):
            s.bind(("127.0.0.1", 0))
        slots = sendbatch.SendSlots(4, 256)
        for i, size in enumerate((12, 200, 1)):
            slots.slots[i * 256 : i * 256 + size] = bytes([i + 1]) * size
            slots.set_length(i, size)
        assert slots.send(a.fileno(), sendbatch.sockaddr(socket.AF_INET, rx.getsockname()), 3) == []
        assert slots.calls == 1
        b.sendto(b"from b", rx.getsockname())
        assert rb.recv(rx.fileno()) == 4
        assert [bytes(rb.view[i * 256 : i * 256 + rb.length(i)]) for i in range(4)] == [
            b"\x01" * 12, b"\x02" * 200, b"\x03", b"from b"]  # fmt: skip
        names = [bytes(rb.names[i * sendbatch.NAME_SLOT :][:16]) for i in range(4)]
        assert names == [sendbatch.sockaddr(socket.AF_INET, s.getsockname()) for s in (a, a, a, b)]
        with pytest.raises(ValueError, match="16-byte address"):
            slots.send(a.fileno(), b"short", 1)
    finally:
        for s in (rx, a, b):
            s.close()


def _random_session(core: str, seed: int) -> dict[int, list[bytes]]:
    """One random session through `core`: 24 consumers (plain, SRTP with fixed keys, and
    per-copy ones), packets of random sizes in drains of random length, breaks and resyncs,
    consumers joining and leaving the fan. Returns what each sink received, in order."""
    import random

    rng = random.Random(seed)
    batch = make_batch(core)
    fwd = FakeForwarder()
    sinks, outs, consumers, contexts = [], [], [], []
    try:
        for i in range(24):
            sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sink.bind(("127.0.0.1", 0))
            sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            sink.setblocking(False)
            out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            out.connect(sink.getsockname())
            c = ConsumerRewrite(i, 0x5000 + i)
            c.fd = -1 if i % 6 == 5 else out.fileno()  # every sixth: per-copy (ICE-TCP-like)
            c.send = out.send
            c.seq_offset = rng.randrange(1 << 16)
            c.ts_offset = rng.randrange(1 << 32)
            if i % 3 == 1:  # SRTP with keys fixed per consumer: same ciphertext in both cores
                key = bytes([i]) * 28
                ctx = SrtpContext(AEAD_AES_128_GCM, key, key)
                use_srtp(c, ctx)
                contexts.append(ctx)
            sinks.append(sink)
            outs.append(out)
            consumers.append(c)
        seq, ts = rng.randrange(1 << 16), rng.randrange(1 << 32)
        for _ in range(60):  # drains
            fan = tuple(c for c in consumers if rng.random() < 0.8)
            for c in consumers:
                if c not in fan:
                    c.interrupt(seq, ts)
            for _ in range(rng.choice((1, 1, 2, 5, 40))):
                seq = (seq + rng.choice((1, 1, 1, 2))) & 0xFFFF
                ts = (ts + 3000) & 0xFFFFFFFF
                size = rng.choice((12, 13, 200, 1200, 1400, 1500, 1501))
                payload = bytes(rng.randrange(256) for _ in range(size - 12))
                pad = rng.choice((0, 0, 0, 1, 4)) if size <= 1400 else 0  # CSRC, extension, padding
                feed(batch, fwd, fan, seq, ts, payload, marker=rng.random() < 0.1, pad=pad)
            flush(batch, fwd)
        got: dict[int, list[bytes]] = {}
        for c, sink in zip(consumers, sinks, strict=True):
            got[c.ssrc] = []
            while True:
                try:
                    got[c.ssrc].append(sink.recv(4096))
                except BlockingIOError:
                    break
        counters = [(c.packets, c.octets, c.payload_octets, c.send_errors) for c in consumers]
        got[-1] = [repr((fwd.rtp_out, fwd.send_errors, counters)).encode()]
        return got
    finally:
        for s in (*sinks, *outs):
            s.close()


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("variant", ["native", "native-sendmmsg"])
def test_native_and_python_cores_send_the_same_datagrams(seed, variant):
    """Differential: the same random session through both cores gives byte-identical
    datagrams per consumer, in the same order, and the same counters."""
    _need_native()
    python = _random_session("python", seed)
    native_out = _random_session(variant, seed)
    assert sum(len(v) for v in python.values()) > 1000
    assert python.keys() == native_out.keys()
    for ssrc in python:
        assert python[ssrc] == native_out[ssrc], f"consumer {ssrc:#x} differs"
