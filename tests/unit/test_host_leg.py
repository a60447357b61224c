"""Host legs (workers/transport/host_leg.py) between two real workers in this process, over
real UDP sockets on 127.0.0.1: the origin receives a plain-RTP producer, the gateway has its
piped copy and a consumer; the test's sockets are the sender, the receiver, and (for the
refusals and repair) a stranger or a fake far end that speaks the leg's framing itself."""

from __future__ import annotations

import asyncio
import ctypes
import errno
import os
import socket
import struct
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from fuzz.in_process import InProcessWorker
from tureen.shared import contract as c
from tureen.shared.errors import ProtocolError
from tureen.workers.rtp import rtcp
from tureen.workers.sendbatch import _sendmmsg
from tureen.workers.transport.host_leg import HEADER, OVERHEAD, PROFILE, SLOT, LegOut, LegSlots
from tureen.workers.transport.srtp import MAX_PACKET_SIZE, SrtpContext

pytestmark = pytest.mark.timeout(30)

SSRC = 0x1234_5678
CONSUMER_SSRC = 0x0BAD_CAFE
VP8 = [c.CodecSpec(payloadType=101, mimeType="video/VP8", clockRate=90000, nack=True)]
LEG = 77


def udp() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    return sock


def rtp(seq: int, payload: bytes = b"\x10" + bytes(99)) -> bytes:
    """A VP8 packet (the descriptor's S bit set, so a key-frame check would pass it)."""
    return struct.pack("!BBHII", 0x80, 0x80 | 96, seq, 1000 + seq * 3000, SSRC) + payload


async def recv(sock: socket.socket, timeout: float = 2.0) -> bytes | None:
    """One datagram, or None after `timeout` s."""
    loop = asyncio.get_running_loop()
    try:
        return await asyncio.wait_for(loop.sock_recv(sock, 4096), timeout)
    except TimeoutError:
        return None


async def drain(sock: socket.socket, want: int, timeout: float = 3.0) -> list[bytes]:
    got: list[bytes] = []
    end = time.monotonic() + timeout
    while len(got) < want and (left := end - time.monotonic()) > 0:
        data = await recv(sock, left)
        if data is None:
            break
        got.append(data)
    return got


class Pair:
    """Origin (worker 0: producer 20 on plain transport 1) and gateway (worker 1: its piped
    copy, consumer 30 on plain transport 11), joined by leg LEG."""

    def __init__(self, key: str, batched: bool = True) -> None:
        loop = asyncio.get_running_loop()
        self.key = key
        self.origin = InProcessWorker(loop, 0)
        self.gateway = InProcessWorker(loop, 1)
        for w in (self.origin, self.gateway):  # the hubs bind at the first leg command
            w.worker.legs._batched = batched
        self.sender = udp()
        self.receiver = udp()

    async def o(self, command: c.Command) -> Any:
        return await self.origin.worker_request(0, command)

    async def g(self, command: c.Command) -> Any:
        return await self.gateway.worker_request(1, command)

    async def build(self, *, send: bool = True) -> None:
        sender = self.sender.getsockname()
        created = await self.o(c.TransportCreatePlain(transportId=1, remoteIp=sender[0], remotePort=sender[1]))
        self.origin_rtp = (created["ip"], created["port"])
        await self.o(c.ProducerCreate(producerId=20, kind="video", transportId=1, streams=[c.StreamSpec(ssrc=SSRC)],
                                      payloadTypes=[(96, 101)], codecs=VP8))  # fmt: skip
        await self.g(c.ProducerCreate(producerId=20, kind="video", transportId=None, streams=[c.StreamSpec(ssrc=SSRC)],
                                      codecs=VP8))  # fmt: skip
        receiver = self.receiver.getsockname()
        await self.g(c.TransportCreatePlain(transportId=11, remoteIp=receiver[0], remotePort=receiver[1]))
        await self.g(c.ConsumerCreate(consumerId=30, producerId=20, transportId=11, kind="video", ssrc=CONSUMER_SSRC))
        self.origin_leg = await self.o(c.LegAddress())
        self.gateway_leg = await self.g(c.LegReceive(legId=LEG, producerId=20, key=self.key,
                                                     ip=self.origin_leg["ip"], port=self.origin_leg["port"]))  # fmt: skip
        if send:
            await self.o(c.LegSend(legId=LEG, producerId=20, key=self.key,
                                   ip=self.gateway_leg["ip"], port=self.gateway_leg["port"]))  # fmt: skip

    def send(self, packet: bytes) -> None:
        self.sender.sendto(packet, self.origin_rtp)

    def dump(self, which: InProcessWorker) -> dict[str, Any]:
        """worker.dump's legs and producers (the rest needs the worker's pipe hub)."""
        worker = which.worker
        return {"legs": worker.legs.dump(), "producers": [p.dump() for p in worker.router.producers.values()]}

    def close(self) -> None:
        for w in (self.origin, self.gateway):
            for transport in list(w.worker.router.transports.values()):
                w.worker._drop_transport(transport)
            w.worker.legs.close()
        self.sender.close()
        self.receiver.close()


@pytest.fixture
async def pair() -> AsyncIterator[Pair]:
    p = Pair(os.urandom(c.LEG_KEY_BYTES).hex())
    yield p
    p.close()


@pytest.fixture(params=["batched", "per-datagram"])
async def either(request: pytest.FixtureRequest) -> AsyncIterator[Pair]:
    """A pair with the hubs' sendmmsg/recvmmsg (Linux, what workers run) or without them."""
    p = Pair(os.urandom(c.LEG_KEY_BYTES).hex(), batched=request.param == "batched")
    yield p
    p.close()


def media(data: list[bytes]) -> list[int]:
    """Sequence numbers of the RTP packets among `data` (RTCP left out)."""
    return [struct.unpack_from("!H", d, 2)[0] for d in data if len(d) >= 12 and not 192 <= d[1] <= 223]


async def test_a_producer_crosses_the_leg_to_the_consumer_on_the_gateway(either: Pair) -> None:
    pair = either
    await pair.build()
    for seq in range(100, 110):
        pair.send(rtp(seq))
        await asyncio.sleep(0.005)
    got = await drain(pair.receiver, 10)
    seqs = media(got)
    assert len(seqs) == 10 and all((b - a) & 0xFFFF == 1 for a, b in zip(seqs, seqs[1:], strict=False))
    assert {struct.unpack_from("!I", d, 8)[0] for d in got if not 192 <= d[1] <= 223} == {CONSUMER_SSRC}
    origin_leg = pair.dump(pair.origin)["legs"]["legs"][0]
    gateway_leg = pair.dump(pair.gateway)["legs"]["legs"][0]
    assert origin_leg["packets"] == gateway_leg["packets"] == 10
    # One datagram per packet: the packet, the leg id and the GCM tag.
    assert origin_leg["octets"] == 10 * (len(rtp(0)) + OVERHEAD) == gateway_leg["octets"]
    producer = next(p for p in pair.dump(pair.origin)["producers"] if p["producerId"] == 20)
    assert producer["legs"] == [LEG]
    # worker.info's totals outlive the legs.
    await pair.o(c.LegClose(legId=LEG))
    await pair.g(c.LegClose(legId=LEG))
    sent = (await pair.o(c.WorkerInfo()))["legs"]
    taken = (await pair.g(c.WorkerInfo()))["legs"]
    assert (sent["packetsOut"], sent["octetsOut"]) == (10, origin_leg["octets"]) == (taken["packetsIn"], taken["octetsIn"])


async def test_the_largest_rtp_packet_a_transport_takes_crosses_the_leg(either: Pair) -> None:
    """A 1500-byte RTP packet (MAX_PACKET_SIZE, what any transport takes in) is 1520 bytes on
    the leg with its id and tag: the gateway used to refuse every leg datagram over 1504
    bytes, so RTP over 1484 bytes was lost on the leg (and its repair, again)."""
    pair = either
    await pair.build()
    big = rtp(7, b"\x10" + bytes(MAX_PACKET_SIZE - 13))
    assert len(big) == MAX_PACKET_SIZE
    pair.send(big)
    got = await drain(pair.receiver, 1)
    assert media(got) == [7] and len(got[0]) == MAX_PACKET_SIZE
    legs = pair.dump(pair.gateway)["legs"]
    assert (legs["badDatagrams"], legs["srtpFailed"]) == (0, 0)
    assert legs["legs"][0]["octets"] == MAX_PACKET_SIZE + OVERHEAD


async def test_refusals_are_counted_and_touch_nothing(either: Pair) -> None:
    pair = either
    await pair.build(send=False)
    gateway = (pair.gateway_leg["ip"], pair.gateway_leg["port"])
    # The origin's leg socket is the only address the gateway takes leg LEG from; the test
    # speaks for the origin through a socket bound to... a stranger's address first.
    stranger = udp()
    good = SrtpContext(PROFILE, bytes.fromhex(pair.key), bytes.fromhex(pair.key))
    wrong = SrtpContext(PROFILE, os.urandom(c.LEG_KEY_BYTES), os.urandom(c.LEG_KEY_BYTES))
    header = LEG.to_bytes(HEADER, "big")
    stranger.sendto(header + good.protect_rtp(rtp(1)), gateway)  # right key, wrong address
    stranger.sendto(b"\x00\x01", gateway)  # truncated
    stranger.sendto(os.urandom(300), gateway)  # garbage (an unknown leg id, almost surely)
    stranger.sendto((LEG + 1).to_bytes(HEADER, "big") + good.protect_rtp(rtp(2)), gateway)  # unknown leg
    origin_sock = pair.origin.worker.legs.sock
    assert origin_sock is not None
    origin_sock.sendto(header + wrong.protect_rtp(rtp(3)), gateway)  # from the origin, wrong key
    origin_sock.sendto(header + good.protect_rtp(rtp(4))[:-3], gateway)  # torn tag
    await asyncio.sleep(0.3)
    legs = pair.dump(pair.gateway)["legs"]
    assert (legs["strangers"], legs["badDatagrams"], legs["unknownLeg"], legs["srtpFailed"]) == (1, 1, 2, 2)
    assert legs["legs"][0]["packets"] == 0
    assert await recv(pair.receiver, 0.2) is None
    # The leg itself still works: a good packet from the origin's socket goes through.
    origin_sock.sendto(header + good.protect_rtp(rtp(5)), gateway)
    assert media([d for d in [await recv(pair.receiver)] if d]) == [5]
    # The same packet again is a replay: dropped and counted.
    origin_sock.sendto(header + good.protect_rtp(rtp(5)), gateway)
    await asyncio.sleep(0.2)
    assert pair.dump(pair.gateway)["legs"]["srtpFailed"] == 3
    stranger.close()


async def test_the_origin_answers_a_nack_on_the_leg_from_the_store(pair: Pair) -> None:
    """A fake gateway (the test's socket) NACKs over the leg: the origin sends the stored
    packets again, protected, and counts what it no longer has."""
    await pair.build(send=False)
    far = udp()
    ip, port = far.getsockname()
    key = bytes.fromhex(pair.key)
    await pair.o(c.LegSend(legId=LEG + 1, producerId=20, key=pair.key, ip=ip, port=port))
    ctx = SrtpContext(PROFILE, key, key)
    for seq in range(500, 505):
        pair.send(rtp(seq))
    sent = await drain(far, 5)
    assert [int.from_bytes(d[:HEADER], "big") for d in sent] == [LEG + 1] * 5
    assert media([ctx.unprotect_rtp(d[HEADER:]) for d in sent]) == list(range(500, 505))
    origin = (pair.origin_leg["ip"], pair.origin_leg["port"])
    nack = ctx.protect_rtcp(rtcp.nack(0x4242, SSRC, [501, 503, 9000]))
    far.sendto((LEG + 1).to_bytes(HEADER, "big") + nack, origin)
    again = await drain(far, 2)
    # Each resent packet protects to the bytes it had: the gateway's replay window takes
    # only the first copy that arrives.
    fresh = SrtpContext(PROFILE, key, key)  # `ctx` saw them once: its replay window says no
    room_pt = [bytes([p[0], 0x80 | 101]) + p[2:] for p in (rtp(501), rtp(503))]  # ingest: PT 96 -> 101
    assert [fresh.unprotect_rtp(d[HEADER:]) for d in again] == room_pt
    assert again == [sent[1], sent[3]]
    leg = next(x for x in pair.dump(pair.origin)["legs"]["legs"] if x["legId"] == LEG + 1)
    assert (leg["nacksIn"], leg["resent"], leg["missed"]) == (1, 2, 1)
    far.close()


async def test_the_gateway_nacks_what_the_leg_lost_and_takes_the_repair(pair: Pair) -> None:
    """The test speaks for the origin from the origin's leg socket address... by using that
    socket: packets 0-9 without 4 and 6; the gateway NACKs them to the origin's socket and
    forwards the repair once."""
    await pair.build(send=False)
    key = bytes.fromhex(pair.key)
    ctx = SrtpContext(PROFILE, key, key)
    origin_sock = pair.origin.worker.legs.sock
    assert origin_sock is not None
    gateway = (pair.gateway_leg["ip"], pair.gateway_leg["port"])
    header = LEG.to_bytes(HEADER, "big")
    protected = {seq: header + ctx.protect_rtp(rtp(seq)) for seq in range(10)}
    # The origin's own reader would take the NACK; read it here instead.
    pair.origin.worker.legs._loop.remove_reader(origin_sock.fileno())  # type: ignore[union-attr]
    for seq in range(10):
        if seq not in (4, 6):
            origin_sock.sendto(protected[seq], gateway)
            await asyncio.sleep(0.002)
    nacked: set[int] = set()
    while nacked != {4, 6}:  # one NACK per gap found, as packets come
        nack = await recv(origin_sock)
        assert nack is not None and nack[:HEADER] == header, f"NACKs for {sorted(nacked)} only"
        for ssrc, seqs in rtcp.parse(ctx.unprotect_rtcp(nack[HEADER:])).nacks:
            assert ssrc == SSRC
            nacked.update(seqs)
    for seq in (4, 6, 6):  # the repair, and a copy that arrives twice
        origin_sock.sendto(protected[seq], gateway)
    got = media(await drain(pair.receiver, 10))
    assert sorted(got) == list(range(10))  # every packet once
    dump = pair.dump(pair.gateway)
    assert dump["legs"]["legs"][0]["nacksOut"] >= 1
    stream = next(p for p in dump["producers"] if p["producerId"] == 20)["streams"][0]
    assert stream["nack"]["recovered"] == 2


async def test_leg_commands_refuse_what_does_not_fit(pair: Pair) -> None:
    await pair.build()
    with pytest.raises(ProtocolError) as err:  # a leg feeds a piped copy only
        await pair.o(c.LegReceive(legId=5, producerId=20, key=pair.key, ip="127.0.0.1", port=9))
    assert err.value.code == "bad_request"
    with pytest.raises(ProtocolError) as err:
        await pair.g(c.LegReceive(legId=6, producerId=20, key=pair.key, ip="127.0.0.1", port=9))
    assert err.value.code == "duplicate" and "fed by leg" in err.value.message
    with pytest.raises(ProtocolError) as err:
        await pair.o(c.LegClose(legId=999))
    assert err.value.code == "not_found"
    # Closing the producer at the origin takes its leg; at the gateway, the leg's end.
    await pair.o(c.ProducerClose(producerId=20))
    await pair.g(c.ProducerClose(producerId=20))
    assert pair.dump(pair.origin)["legs"]["legs"] == pair.dump(pair.gateway)["legs"]["legs"] == []


async def test_a_wildcard_bind_needs_an_announced_address_for_legs(tmp_path: Any) -> None:
    from tureen.shared.config import Config
    from tureen.workers.worker import Worker

    for announced, want in (("", None), ("198.51.100.7", "198.51.100.7")):
        worker = Worker(5, str(tmp_path), Config(rtc_ipv4="0.0.0.0", rtc_announced_ipv4=announced), parent_pid=1)
        try:
            if want is None:
                with pytest.raises(ProtocolError) as err:
                    worker._leg_address(c.LegAddress())
                assert err.value.code == "unavailable" and "rtc_announced_ipv4" in err.value.message
            else:
                assert worker._leg_address(c.LegAddress())["ip"] == want
        finally:
            worker.legs.close()


# -- batches: a drain's packets with one sendmmsg at the origin, one recvmmsg at the gateway


def hold_gateway(pair: Pair) -> Any:
    """Stop the gateway's reader (datagrams wait in its socket) and return its hub: the
    test then drains it once, so what the origin sent arrives as one batch."""
    hub = pair.gateway.worker.legs
    assert hub.sock is not None and hub._loop is not None
    hub._loop.remove_reader(hub.sock.fileno())
    return hub


async def until(check: Any, timeout: float = 3.0) -> None:
    """Until check() is true (bounded: the caller asserts what it needs after)."""
    end = time.monotonic() + timeout
    while not check() and time.monotonic() < end:
        await asyncio.sleep(0.01)


def batch(pair: Pair, which: InProcessWorker) -> dict[str, Any]:
    return pair.dump(which)["legs"]["batch"]


async def test_a_drain_crosses_with_one_sendmmsg_and_one_recvmmsg_complete_and_in_order(pair: Pair) -> None:
    await pair.build()
    hub = hold_gateway(pair)
    before = batch(pair, pair.origin)["sendmmsgCalls"], batch(pair, pair.gateway)["recvmmsgCalls"]
    for seq in range(200, 212):  # no await between: the origin takes them in one drain
        pair.send(rtp(seq, b"\x10\x00" + bytes([seq & 0xFF]) * 298))  # a VP8 key frame's start
    origin_leg = lambda: pair.dump(pair.origin)["legs"]["legs"][0]  # noqa: E731
    await until(lambda: origin_leg()["packets"] == 12)
    assert origin_leg()["packets"] == 12 and origin_leg()["dropped"] == 0
    assert batch(pair, pair.origin)["sendmmsgCalls"] == before[0] + 1  # one flush, one call
    await asyncio.sleep(0.05)  # loopback: all there by now
    hub._drain()
    assert batch(pair, pair.gateway)["recvmmsgCalls"] == before[1] + 1
    gateway_leg = pair.dump(pair.gateway)["legs"]["legs"][0]
    assert gateway_leg["packets"] == 12
    assert gateway_leg["octets"] == origin_leg()["octets"] == 12 * (12 + 300 + OVERHEAD)
    got = await drain(pair.receiver, 12)
    assert media(got) == list(range(200, 212))
    assert all(d[-298:] == bytes([struct.unpack_from("!H", d, 2)[0] & 0xFF]) * 298 for d in got)


async def test_a_flush_longer_than_the_slots_goes_in_order_with_a_call_per_64(pair: Pair) -> None:
    """150 packets queued on the origin's leg (as forward.py queues a drain's) go out in
    three sendmmsg calls (64, 64, 22), and arrive complete and in order."""
    await pair.build()
    hub = pair.origin.worker.legs
    leg = hub.legs[LEG]
    assert isinstance(leg, LegOut)
    calls = batch(pair, pair.origin)["sendmmsgCalls"]
    for seq in range(1000, 1150):
        packet = rtp(seq)
        leg.out += len(packet).to_bytes(2, "big") + bytes([packet[0], 0x80 | 101]) + packet[2:]  # PT 101: ingest's
        leg.count += 1
    leg.flush(pair.origin.worker.forwarder)
    assert batch(pair, pair.origin)["sendmmsgCalls"] == calls + 3
    assert (leg.packets, leg.dropped, leg.count, bytes(leg.out)) == (150, 0, 0, LEG.to_bytes(HEADER, "big"))
    assert media(await drain(pair.receiver, 150)) == list(range(1000, 1150))


async def test_a_bad_datagram_in_a_batch_is_refused_and_counted_and_the_others_pass(pair: Pair) -> None:
    await pair.build(send=False)
    hub = hold_gateway(pair)
    gateway = (pair.gateway_leg["ip"], pair.gateway_leg["port"])
    key = bytes.fromhex(pair.key)
    good = SrtpContext(PROFILE, key, key)
    wrong = SrtpContext(PROFILE, os.urandom(c.LEG_KEY_BYTES), os.urandom(c.LEG_KEY_BYTES))
    header = LEG.to_bytes(HEADER, "big")
    origin_sock = pair.origin.worker.legs.sock
    assert origin_sock is not None
    stranger = udp()
    origin_sock.sendto(header + good.protect_rtp(rtp(1)), gateway)
    origin_sock.sendto(header + good.protect_rtp(rtp(2)), gateway)
    origin_sock.sendto(header + wrong.protect_rtp(rtp(3)), gateway)  # wrong key
    stranger.sendto(header + good.protect_rtp(rtp(4)), gateway)  # right key, wrong address
    origin_sock.sendto(header + good.protect_rtp(rtp(5)), gateway)
    origin_sock.sendto(header + bytes(SLOT + 100), gateway)  # longer than a slot: truncated
    origin_sock.sendto((LEG + 1).to_bytes(HEADER, "big") + good.protect_rtp(rtp(6)), gateway)  # unknown leg
    origin_sock.sendto(header[:3], gateway)  # too short
    origin_sock.sendto(header + good.protect_rtp(rtp(7)), gateway)
    origin_sock.sendto(header + good.protect_rtp(rtp(2)), gateway)  # a replay
    origin_sock.sendto(header + good.protect_rtp(rtp(8)), gateway)
    await asyncio.sleep(0.05)  # loopback: all there by now
    calls = batch(pair, pair.gateway)["recvmmsgCalls"]
    hub._drain()
    assert batch(pair, pair.gateway)["recvmmsgCalls"] == calls + 1  # the 11 in one call
    legs = pair.dump(pair.gateway)["legs"]
    assert (legs["strangers"], legs["badDatagrams"], legs["unknownLeg"], legs["srtpFailed"]) == (1, 2, 1, 2)
    assert legs["legs"][0]["packets"] == 5
    assert media(await drain(pair.receiver, 5)) == [1, 2, 5, 7, 8]
    stranger.close()


class FullOnce:
    """libc's sendmmsg on the real socket, except that call `at` fails its first message
    with EAGAIN (a full socket buffer: loopback never fills one, so the test says it) and
    call `at - 1` sends at most `first` messages."""

    def __init__(self, at: int, first: int) -> None:
        self.at = at
        self.first = first
        self.calls = 0

    def __call__(self, fd: int, addr: int, vlen: int, flags: int) -> int:
        self.calls += 1
        if self.calls == self.at:
            ctypes.set_errno(errno.EAGAIN)
            return -1
        if self.calls == self.at - 1:
            vlen = min(vlen, self.first)
        assert _sendmmsg is not None
        return _sendmmsg(fd, addr, vlen, flags)


async def test_eagain_at_the_origin_drops_that_packet_counts_it_and_the_gateway_repairs_it(pair: Pair) -> None:
    await pair.build(send=False)
    fake = FullOnce(at=2, first=3)
    pair.origin.worker.legs._slots = LegSlots(sendmmsg=fake)  # the leg opened next uses it
    await pair.o(c.LegSend(legId=LEG, producerId=20, key=pair.key,
                           ip=pair.gateway_leg["ip"], port=pair.gateway_leg["port"]))  # fmt: skip
    for seq in range(300, 308):  # one drain: 3 sent, the 4th refused (EAGAIN), 4 more sent
        pair.send(rtp(seq))
    origin_leg = lambda: next(x for x in pair.dump(pair.origin)["legs"]["legs"] if x["legId"] == LEG)  # noqa: E731
    await until(lambda: origin_leg()["dropped"] == 1)
    assert fake.calls == 3  # 3 sent, 1 lost, the rest: no call per packet after the error
    # The gateway saw 303 missing and NACKed it; the origin resent it from its store (one
    # sendto: a resend is not a drain's batch).
    got = media(await drain(pair.receiver, 8))
    assert got[:7] == [300, 301, 302, 304, 305, 306, 307] and sorted(got) == list(range(300, 308))
    await until(lambda: origin_leg()["resent"] == 1)
    leg = origin_leg()
    assert (leg["dropped"], leg["resent"], leg["packets"]) == (1, 1, 8)  # 7 of the batch, 1 resent
    assert leg["octets"] == 8 * (len(rtp(0)) + OVERHEAD)  # what went: the lost one not counted
    assert fake.calls == 3
