"""workers/transport/pipe.py with captured packets: the framing on the wire (one datagram
per (producer, drain): the producer id, then length-prefixed packets), the discontinuity
mark, and a destination that feeds its consumers and counts what it cannot read. Real Unix
SOCK_SEQPACKET sockets in a temporary run directory, in this process; the destination is
driven by the event loop as in a worker (bounded waits). tests/unit/test_pipe.py covers the
socket's own behaviour (splitting, drops, reconnection) with synthetic packets."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from captured import ROOM_PT, Header, Rig, load
from tureen.workers.transport.pipe import PipeHub, pipe_path

pytestmark = pytest.mark.timeout(30)


def hub(rig: Rig, run_dir: Path, index: int) -> PipeHub:
    return PipeHub(
        rig.loop, str(run_dir), index, rig.fwd,
        lookup=rig.router.producers.get, on_discontinuity=rig.router.interrupt_producer,
    )  # fmt: skip


def records(frame: bytes) -> list[bytes]:
    out, off = [], 0
    while off < len(frame):
        (n,) = struct.unpack_from("!H", frame, off)
        out.append(frame[off + 2 : off + 2 + n])
        off += 2 + n
    assert off == len(frame)
    return out


class Pair:
    """Worker 0 (origin: a producer on its send transport, piped to 1) and worker 1
    (destination: the piped producer, a consumer), each a Rig with its PipeHub."""

    def __init__(self, run_dir: Path, loop: asyncio.AbstractEventLoop) -> None:
        self.origin, self.dest = Rig("per-copy", loop), Rig("per-copy", loop)
        self.origin_hub = hub(self.origin, run_dir, 0)
        self.dest_hub = hub(self.dest, run_dir, 1)
        self.producer = self.origin.producer("vp8")
        self.piped = self.dest.producer("vp8", piped=True)
        assert self.piped.id == self.producer.id
        self.consumer = self.dest.consumer(self.piped, 0x5151)
        self.origin.router.add_pipe(self.producer, 1, self.origin_hub.open(self.producer.id, 1))

    async def arrived(self, count: int) -> None:
        """Wait (bounded) until worker 1 took `count` packets off the pipe."""
        for _ in range(400):
            if self.dest.fwd.pipe_packets_in >= count:
                return
            await asyncio.sleep(0.005)
        raise AssertionError(f"{self.dest.fwd.pipe_packets_in} of {count} packets came through the pipe")

    def close(self) -> None:
        for h in (self.origin_hub, self.dest_hub):
            h.close()
        self.origin.close()
        self.dest.close()


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[Pair]:
    p = Pair(tmp_path, asyncio.get_running_loop())
    yield p
    p.close()


def read(listener: socket.socket, conns: list[socket.socket]) -> bytes:
    """The next datagram at worker 1's raw end (bounded wait)."""
    if not conns:
        listener.settimeout(2)
        conn, _ = listener.accept()
        conn.settimeout(2)
        conns.append(conn)
    return conns[0].recv(1 << 17)


async def test_one_message_per_drain_carries_the_ingest_rewritten_packets(tmp_path: Path) -> None:
    rig = Rig("per-copy", asyncio.get_running_loop())
    origin = hub(rig, tmp_path, 0)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)  # worker 1's end, read raw
    listener.bind(pipe_path(str(tmp_path), 1))
    listener.listen(1)
    conns: list[socket.socket] = []
    try:
        packets = load("vp8")
        producer = rig.producer("vp8")
        rig.router.add_pipe(producer, 1, origin.open(producer.id, 1))
        rig.feed(packets[:25])
        rig.feed(packets[25:])
        first = read(listener, conns)
        second = read(listener, conns)
        for message, sent in ((first, packets[:25]), (second, packets[25:])):
            head, body = message[:4], message[4:]
            assert head == producer.id.to_bytes(4, "big")
            got = records(body)
            assert [p[12:] for p in got] == [p[12:] for p in sent]
            assert {Header.of(p).pt for p in got} == {ROOM_PT["vp8"]}  # rewritten once, at the origin
            assert [Header.of(p).seq for p in got] == [Header.of(p).seq for p in sent]  # sender's numbering
        assert (rig.fwd.pipe_packets_out, rig.fwd.pipe_messages_out, rig.fwd.pipe_dropped) == (40, 2, 0)
        # Pausing the producer at the origin marks a discontinuity: the producer id alone.
        rig.router.set_producer_paused(producer, True)
        producer.pipes[1].mark_discontinuity(rig.fwd)
        assert read(listener, conns) == producer.id.to_bytes(4, "big")
        conns[0].setblocking(False)
        with pytest.raises(BlockingIOError):  # nothing more
            conns[0].recv(1 << 17)
    finally:
        for conn in conns:
            conn.close()
        listener.close()
        origin.close()
        rig.close()


async def test_the_destination_feeds_its_consumers_in_their_own_numbering(pair: Pair) -> None:
    packets = load("vp8")
    pair.origin.feed(packets)
    await pair.arrived(40)
    out = pair.dest.received(pair.consumer, 40)
    assert [p[12:] for p in out] == [p[12:] for p in packets]
    assert {Header.of(p).ssrc for p in out} == {0x5151} and {Header.of(p).pt for p in out} == {ROOM_PT["vp8"]}
    assert pair.dest.fwd.rtp_in == 40 and pair.piped.streams[0].packets == 40


async def test_a_discontinuity_mark_makes_the_destinations_consumers_resync(pair: Pair) -> None:
    packets = load("vp8")
    pair.origin.feed(packets[:10])
    await pair.arrived(10)
    last = Header.of(pair.dest.received(pair.consumer, 10)[-1]).seq
    batch = pair.producer.pipes[1]
    pair.origin.router.set_producer_paused(pair.producer, True)
    batch.mark_discontinuity(pair.origin.fwd)
    for _ in range(400):  # bounded: the mark reaches worker 1
        if pair.consumer.rewrite.sync:
            break
        await asyncio.sleep(0.005)
    assert pair.consumer.rewrite.sync
    pair.origin.router.set_producer_paused(pair.producer, False)
    # 8 packets later in the sender's numbering, from its next key frame (packet 18): the
    # destination's consumer starts again only at one.
    pair.origin.feed(packets[18:28])
    await pair.arrived(20)
    out = [Header.of(p).seq for p in pair.dest.received(pair.consumer, 10)]
    assert out == [(last + 1 + i) & 0xFFFF for i in range(10)]


async def test_what_the_destination_cannot_read_is_counted_and_skipped(pair: Pair, tmp_path: Path) -> None:
    packets = load("vp8")
    push = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    push.connect(pipe_path(str(tmp_path), 1))
    room = [bytes([p[0], (p[1] & 0x80) | ROOM_PT["vp8"]]) + p[2:] for p in packets[:3]]
    head = pair.producer.id.to_bytes(4, "big")
    try:
        push.send(b"\x00\x01")  # a head that is not 4 bytes
        push.send((999).to_bytes(4, "big") + b"\x00\x01x")  # no such producer
        push.send(head + b"\x00")  # half a length
        body = b"".join(len(p).to_bytes(2, "big") + p for p in room)
        push.send(head + body + b"\x05\xdc" + room[0][:20])  # the last record torn
        for _ in range(400):
            if pair.dest_hub.bad_messages >= 3 and pair.dest.fwd.pipe_packets_in >= 3:
                break
            await asyncio.sleep(0.005)
        assert pair.dest_hub.bad_messages == 3
        assert pair.dest.fwd.pipe_unknown_producer == 1
        assert pair.dest.fwd.pipe_packets_in == 3  # the whole records before the torn one
        assert [p[12:] for p in pair.dest.received(pair.consumer, 3)] == [p[12:] for p in room]
        assert pair.dest_hub.dump()["badMessages"] == 3
    finally:
        push.close()


async def test_closing_the_last_batch_to_a_destination_closes_its_socket(pair: Pair) -> None:
    second = pair.origin.producer("opus")
    pair.origin.router.add_pipe(second, 1, pair.origin_hub.open(second.id, 1))
    assert pair.origin_hub.dump()["destinations"] == {"1": 2}
    fwd = pair.origin.fwd
    for packet in load("opus")[:3]:  # received, but the drain has not ended: queued in the batch
        fwd.buf[: len(packet)] = packet
        fwd.receive(pair.origin.send_transport, len(packet))
    batch = second.pipes[1]
    assert batch.pending and fwd.dirty == [batch]
    pair.origin_hub.close_batch(pair.origin.router.remove_pipe(second, 1))
    assert not batch.pending and fwd.dirty == [] and fwd.pipe_packets_out == 3  # sent before closing
    assert pair.origin_hub.dump()["destinations"] == {"1": 1}
    pair.origin_hub.close_batch(pair.origin.router.remove_pipe(pair.producer, 1))
    assert pair.origin_hub.dump()["destinations"] == {}
    assert pair.producer.streams[0].pipes == () and second.streams[0].pipes == ()
