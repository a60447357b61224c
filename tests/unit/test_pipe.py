"""The cross-worker pipe (workers/transport/pipe.py) over its real Unix sockets, both ends in
this process: framing, splitting, drops that never block, reconnection. The forwarder on
each end is a recorder of what the pipe hands it (its contract: `buf`, `receive(producer,
n)`, `after_drain()`, `dirty`, the pipe counters); tests/integration/test_worker.py runs the
pipe between real worker processes."""

from __future__ import annotations

import asyncio
import select
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from tureen.workers.transport import pipe
from tureen.workers.transport.pipe import LEN_PREFIX, MAX_MESSAGE, PipeHub, pipe_path

PRODUCER = 10


@dataclass
class Piped:
    """What the router's lookup returns for a piped producer."""

    id: int
    piped: bool = True


@dataclass
class RecordingForwarder:
    buf: bytearray = field(default_factory=lambda: bytearray(65536))
    dirty: list = field(default_factory=list)
    got: list[bytes] = field(default_factory=list)
    drains: int = 0
    pipe_packets_out: int = 0
    pipe_messages_out: int = 0
    pipe_dropped: int = 0
    pipe_packets_in: int = 0
    pipe_unknown_producer: int = 0

    def receive(self, source: Piped, n: int) -> None:
        assert source.id == PRODUCER
        self.got.append(bytes(self.buf[:n]))

    def after_drain(self) -> None:
        self.drains += 1


class Ends:
    """Worker 0 (origin) and worker 1 (destination), one loop, one run dir."""

    def __init__(self, loop: asyncio.AbstractEventLoop, run_dir: Path, bind_dest: bool = True) -> None:
        self.loop = loop
        self.run_dir = str(run_dir)
        self.fwd0, self.fwd1 = RecordingForwarder(), RecordingForwarder()
        self.discontinuities: list[int] = []
        self.hub0 = self._hub(0, self.fwd0)
        self.hub1 = self._hub(1, self.fwd1) if bind_dest else None

    def _hub(self, index: int, fwd: RecordingForwarder) -> PipeHub:
        return PipeHub(self.loop, self.run_dir, index, fwd,  # type: ignore[arg-type]
                       lookup=lambda pid: Piped(pid) if pid == PRODUCER else None,
                       on_discontinuity=lambda p: self.discontinuities.append(p.id))

    def append(self, batch: pipe.PipeBatch, packet: bytes) -> None:
        """What forward.py does per packet for a pipe batch."""
        if not batch.count:
            self.fwd0.dirty.append(batch)
        batch.out += LEN_PREFIX[len(packet)]
        batch.out += packet
        batch.count += 1

    def flush(self) -> None:
        for batch in self.fwd0.dirty:
            batch.flush(self.fwd0)  # type: ignore[arg-type]
        self.fwd0.dirty.clear()

    async def until(self, check, timeout: float = 5.0) -> None:
        deadline = self.loop.time() + timeout
        while not check():
            assert self.loop.time() < deadline, "timed out"
            await asyncio.sleep(0.005)

    def close(self) -> None:
        self.hub0.close()
        if self.hub1 is not None:
            self.hub1.close()


@pytest.fixture
def run(tmp_path: Path) -> Iterator:
    """Run `body(ends)` on a fresh loop; both hubs closed after."""
    def runner(body, bind_dest: bool = True):
        async def main():
            ends = Ends(asyncio.get_running_loop(), tmp_path, bind_dest)
            try:
                return await body(ends)
            finally:
                ends.close()
        return asyncio.run(asyncio.wait_for(main(), 20))
    yield runner


def packets(count: int, size: int = 1200) -> list[bytes]:
    return [bytes([0x80, 96]) + i.to_bytes(2, "big") + bytes([i & 0xFF]) * (size - 4) for i in range(count)]


def test_a_drain_arrives_whole_in_order_as_one_datagram(run) -> None:
    async def body(e: Ends) -> None:
        batch = e.hub0.open(PRODUCER, 1)
        sent = packets(20) + [b"\x80\x60" + b"x" * 98]  # sizes differ: records, not slots
        for p in sent:
            e.append(batch, p)
        e.flush()
        await e.until(lambda: len(e.fwd1.got) == len(sent))
        assert e.fwd1.got == sent
        assert (e.fwd0.pipe_packets_out, e.fwd0.pipe_messages_out, e.fwd0.pipe_dropped) == (21, 1, 0)
        assert e.fwd1.pipe_packets_in == 21 and e.fwd1.drains >= 1
        assert e.hub0.dump()["destinations"] == {"1": 1} and e.hub1.dump()["origins"] == 1
    run(body)


def test_the_datagram_is_at_the_destination_when_flush_returns(run) -> None:
    """The regression test of the pipe hop's latency (docs/benchmarks.md, "The pipe hop"):
    through ZeroMQ a message still had to cross two I/O threads after the send returned (three
    wake-ups per hop on a shared core); now the origin's own send puts it in the
    destination's socket, so the destination's event loop is the only thing left to wake."""
    async def body(e: Ends) -> None:
        batch = e.hub0.open(PRODUCER, 1)
        await e.until(lambda: e.hub1.dump()["origins"] == 1)  # accepted
        conn = next(iter(e.hub1._conns.values()))
        e.append(batch, packets(1)[0])
        e.flush()
        readable, _, _ = select.select([conn], [], [], 0)  # no waiting: nothing else must run
        assert readable == [conn]
    run(body)


def test_a_drain_bigger_than_a_datagram_is_split_at_packet_boundaries(run) -> None:
    async def body(e: Ends) -> None:
        batch = e.hub0.open(PRODUCER, 1)
        sent = packets(MAX_MESSAGE // 1202 * 2 + 7)  # a bit over two datagrams' worth
        for p in sent:
            e.append(batch, p)
        assert len(batch.out) > 2 * MAX_MESSAGE
        e.flush()
        await e.until(lambda: len(e.fwd1.got) == len(sent))
        assert e.fwd1.got == sent
        assert e.fwd0.pipe_messages_out == 3 and e.fwd0.pipe_packets_out == len(sent)
        assert e.hub1.bad_messages == 0
        assert bytes(batch.out) == PRODUCER.to_bytes(4, "big")  # reset for the next drain
    run(body)


def test_a_discontinuity_mark_follows_the_queued_packets(run) -> None:
    async def body(e: Ends) -> None:
        batch = e.hub0.open(PRODUCER, 1)
        e.append(batch, packets(1)[0])
        batch.mark_discontinuity(e.fwd0)  # type: ignore[arg-type]
        assert e.fwd0.dirty == []
        await e.until(lambda: e.discontinuities == [PRODUCER])
        assert len(e.fwd1.got) == 1
    run(body)


def test_a_destination_that_does_not_read_costs_drops_never_a_block(run) -> None:
    async def body(e: Ends) -> None:
        e.loop.remove_reader(e.hub1.listener.fileno())  # it accepts, then never reads
        batch = e.hub0.open(PRODUCER, 1)
        conn, _ = e.hub1.listener.accept()
        try:
            rounds = 0
            while not e.fwd0.pipe_dropped:  # bounded: the send buffer fills within MiBs
                rounds += 1
                assert rounds < 20_000, "the pipe never reported a full destination"
                for p in packets(8):
                    e.append(batch, p)
                e.flush()
            assert e.fwd0.pipe_dropped == 8  # that whole drain, counted
            assert e.fwd0.pipe_packets_out == 8 * (rounds - 1)
        finally:
            conn.close()
    run(body)


def test_a_destination_not_there_yet_is_dropped_then_connected_later(run, monkeypatch) -> None:
    monkeypatch.setattr(pipe, "RECONNECT_S", 0.05)

    async def body(e: Ends) -> None:
        batch = e.hub0.open(PRODUCER, 1)  # nothing listens at pipe-1 yet
        assert e.hub0.dump()["connected"] == {"1": False}
        e.append(batch, packets(1)[0])
        e.flush()
        assert (e.fwd0.pipe_dropped, e.fwd0.pipe_packets_out) == (1, 0)
        e.hub1 = e._hub(1, e.fwd1)
        await asyncio.sleep(0.06)
        e.append(batch, packets(2)[1])
        e.flush()
        await e.until(lambda: len(e.fwd1.got) == 1)
        assert e.fwd1.got == [packets(2)[1]] and e.hub0.dump()["connected"] == {"1": True}
    run(body, bind_dest=False)


def test_a_destination_that_went_away_is_counted_and_reconnected(run, monkeypatch) -> None:
    monkeypatch.setattr(pipe, "RECONNECT_S", 0.05)

    async def body(e: Ends) -> None:
        batch = e.hub0.open(PRODUCER, 1)
        e.append(batch, packets(1)[0])
        e.flush()
        await e.until(lambda: len(e.fwd1.got) == 1)
        e.hub1.close()  # the destination worker died
        e.append(batch, packets(1)[0])
        e.flush()  # EPIPE / ECONNRESET: dropped and counted, no exception
        assert e.fwd0.pipe_dropped == 1
        e.fwd1.got.clear()
        e.hub1 = e._hub(1, e.fwd1)  # its replacement, same index
        await asyncio.sleep(0.06)
        e.append(batch, packets(3)[2])
        e.flush()
        await e.until(lambda: len(e.fwd1.got) == 1)
        assert e.fwd1.got == [packets(3)[2]]
    run(body)


def test_torn_and_unknown_datagrams_are_counted_not_forwarded(run) -> None:
    async def body(e: Ends) -> None:
        with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as raw:
            raw.connect(pipe_path(e.run_dir, 1))
            head = PRODUCER.to_bytes(4, "big")
            raw.send(b"\x00\x01")  # shorter than the header
            raw.send(head + b"\x04\xb0" + b"x" * 10)  # a record longer than the datagram
            raw.send((99).to_bytes(4, "big") + LEN_PREFIX[12] + b"y" * 12)  # not piped here
            raw.send(head + LEN_PREFIX[12] + b"z" * 12)  # a good one, last
            await e.until(lambda: len(e.fwd1.got) == 1)
        assert e.fwd1.got == [b"z" * 12]
        assert e.hub1.bad_messages == 2 and e.fwd1.pipe_unknown_producer == 1
    run(body)


def test_closing_a_hub_removes_its_socket_file(run) -> None:
    async def body(e: Ends) -> None:
        assert Path(pipe_path(e.run_dir, 1)).exists()
        e.hub1.close()
        e.hub1 = None
        assert not Path(pipe_path(e.run_dir, 1)).exists()
    run(body)
