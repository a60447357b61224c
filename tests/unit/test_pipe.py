"""The cross-worker pipe (workers/transport/pipe.py) over its real Unix sockets, both ends in
this process: framing, splitting, drops that never block, reconnection. The forwarder on
each end is a recorder of what the pipe hands it (its contract: `buf`, `receive(producer,
n)`, `after_drain()`, `dirty`, the pipe counters); tests/integration/test_worker.py runs the
pipe between real worker processes."""

from __future__ import annotations

import asyncio
import select
import socket
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from captured import Header, Rig, load, with_header
from test_native_rx import drain, snapshot
from tureen.workers import native
from tureen.workers.router import Producer
from tureen.workers.transport import pipe
from tureen.workers.transport.host_leg import LegOut
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


# -- the pipe's native ends (workers/_native_pipe.c) against the Python ones ---------------
#
# The real data path (tests/unit/captured.py's Rig: Forwarder, Router, plain transports,
# loopback receivers) with a PipeHub on it, once with the Python receive and drain and once
# with the native ones, on the same packets and datagrams: the same datagrams out of the
# origin, the same packets to the destination's consumers, the same counters.

needs_native = pytest.mark.skipif(not native.available(), reason="the native core is not built")
LEG_KEY = bytes(28)  # host_leg.PROFILE's key and salt: what any leg's SrtpContext takes


def _pipe_read(sock: socket.socket) -> list[bytes]:
    """Every datagram queued at a raw SEQPACKET end, without waiting (the origin's send
    returned: they are there)."""
    got = []
    while len(got) < 10_000:
        try:
            got.append(sock.recv(MAX_MESSAGE + 1, socket.MSG_DONTWAIT))
        except BlockingIOError:
            return got
    return got


def _rig_snapshot(rig: Rig) -> dict[str, Any]:
    out = snapshot(rig)
    for streams in out["streams"].values():
        streams.pop("store")  # a video store: compared by the consumers' output already
    return out


def _origin(core: str, tmp_path: Path, scenario: Callable[[Rig, PipeHub], None]) -> tuple[list[bytes], dict[str, Any], tuple[int, int] | None]:
    """Run `scenario(rig, hub)` on an origin whose hub has a raw destination listening at
    worker 1's pipe: (the datagrams that arrived there, the rig's snapshot, the native
    receive's (fast, slow) or None)."""
    run_dir = tmp_path / core
    run_dir.mkdir()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    listener.bind(pipe_path(str(run_dir), 1))
    listener.listen(1)
    rig = Rig(core)
    hub = PipeHub(rig.loop, str(run_dir), 0, rig.fwd, lookup=rig.router.producers.get,
                  on_discontinuity=rig.router.interrupt_producer)
    conn = None
    try:
        def connect() -> socket.socket:
            nonlocal conn
            if conn is None:
                conn, _ = listener.accept()
            return conn

        scenario(rig, hub)
        got = _pipe_read(connect()) if hub.dump()["destinations"] else []
        rx = rig.fwd.rx
        return got, _rig_snapshot(rig), (rx.fast, rx.slow) if rx is not None else None
    finally:
        if conn is not None:
            conn.close()
        hub.close()
        rig.close()
        listener.close()


def _renumbered(codec: str, count: int, first: int = 0xFFF0) -> list[bytes]:
    """`count` packets of a capture, its packets over and over, numbered on from `first`."""
    cap = load(codec)
    return [with_header(cap[i % len(cap)], seq=first + i, ts=Header.of(cap[i % len(cap)]).ts + 960 * (i // len(cap)) * len(cap))
            for i in range(count)]


@needs_native
def test_the_origin_appends_piped_packets_natively_as_python_does(tmp_path: Path) -> None:
    """Opus to two consumers and piped to worker 1: every packet natively (it was Python's
    before), the same datagrams (framing, order, one per drain) and the same counters."""
    packets = _renumbered("opus", 90)

    def scenario(rig: Rig, hub: PipeHub) -> None:
        producer = rig.producer("opus")
        rig.consumer(producer, 0xA1)
        rig.consumer(producer, 0xA2)
        rig.router.add_pipe(producer, 1, hub.open(producer.id, 1))
        rig.feed(packets[:30])
        rig.feed(packets[30:31])
        rig.feed(packets[31:])

    py_out, python, _ = _origin("native-pyrx", tmp_path, scenario)
    nat_out, nat, counts = _origin("native", tmp_path, scenario)
    assert nat_out == py_out and nat == python
    assert len(nat_out) == 3 and nat["forwarder"]["pipePacketsOut"] == 90
    header = (100).to_bytes(4, "big")
    assert nat_out[1][:4] == header and nat_out[1][4:6] == len(packets[30]).to_bytes(2, "big")
    assert counts == (90, 0)  # all native


@needs_native
def test_a_drain_past_one_datagram_is_split_the_same(tmp_path: Path) -> None:
    """A drain of video bigger than MAX_MESSAGE: the native receive appends while the batch
    holds one datagram, the Python path takes the rest, the flush splits: the same datagrams."""
    packets = [p for p in _renumbered("vp8", 400) if len(p) > 1000][:130]
    assert sum(len(p) + 2 for p in packets) > MAX_MESSAGE

    def scenario(rig: Rig, hub: PipeHub) -> None:
        producer = rig.producer("vp8")
        rig.router.add_pipe(producer, 1, hub.open(producer.id, 1))
        rig.feed(packets)

    py_out, python, _ = _origin("native-pyrx", tmp_path, scenario)
    nat_out, nat, (fast, slow) = _origin("native", tmp_path, scenario)
    assert nat_out == py_out and nat == python
    assert len(nat_out) == 2 and nat["forwarder"]["pipeMessagesOut"] == 2
    assert fast > 0 and slow > 0 and fast + slow == len(packets)


@needs_native
def test_a_host_leg_in_the_pipes_sends_the_packet_to_python(tmp_path: Path) -> None:
    """A producer piped to worker 1 and on a host leg (LegOut, one datagram per packet):
    the Python path takes its packets, and the pipe's datagrams are the same."""
    packets = _renumbered("opus", 20)
    gateway = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    gateway.bind(("127.0.0.1", 0))
    legs = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    legs.bind(("127.0.0.1", 0))
    legs.setblocking(False)

    def scenario(rig: Rig, hub: PipeHub) -> None:
        producer = rig.producer("opus")
        rig.consumer(producer, 0xA1)
        rig.router.add_pipe(producer, 1, hub.open(producer.id, 1))
        rig.router.add_leg(producer, LegOut(legs, 5, producer, LEG_KEY, gateway.getsockname()))
        rig.feed(packets)

    try:
        py_out, python, _ = _origin("native-pyrx", tmp_path, scenario)
        nat_out, nat, counts = _origin("native", tmp_path, scenario)
        leg_datagrams = drain(gateway)
    finally:
        gateway.close()
        legs.close()
    assert nat_out == py_out and nat == python and len(nat_out) == 1
    assert counts == (0, len(packets))
    assert len(leg_datagrams) == 2 * len(packets)  # both runs' packets reached the leg


def _destination(core: str, native_drain: bool, tmp_path: Path, datagrams: list[bytes]) -> dict[str, Any]:
    """The `datagrams` sent by a raw origin into worker 1's PipeHub on a rig with a piped
    opus producer (id 100, two consumers) and a producer received here (id 101, not piped),
    drained by the hub; what came out and every counter."""
    run_dir = tmp_path / f"{core}-{native_drain}"
    run_dir.mkdir()
    rig = Rig(core)
    marks: list[int] = []

    def on_discontinuity(producer: Producer) -> None:
        marks.append(producer.id)
        rig.router.interrupt_producer(producer)

    hub = PipeHub(rig.loop, str(run_dir), 1, rig.fwd, lookup=rig.router.producers.get, on_discontinuity=on_discontinuity)
    origin = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        assert (hub.native_drain is not None) == (core == "native")
        if not native_drain:
            hub.native_drain = None
        piped = rig.producer("opus", piped=True)
        rig.producer("opus", [(0x5EED, None, "default")])
        assert piped.id == 100
        for ssrc in (0xA1, 0xA2):
            rig.consumer(piped, ssrc)
        origin.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 22)
        origin.connect(hub.path)
        hub._accept()
        (conn,) = hub._conns.values()
        for d in datagrams:
            origin.send(d)
        for _ in range(len(datagrams) // pipe.DRAIN + 2):  # bounded: DRAIN datagrams a call
            hub._drain(conn)
        origin.close()
        hub._drain(conn)  # the origin's end closed: the connection is dropped
        rx = rig.fwd.rx
        return {"rig": _rig_snapshot(rig), "bad": hub.bad_messages, "marks": marks, "origins": hub.dump()["origins"],
                "rx": None if rx is None else (rx.fast, rx.slow)}
    finally:
        origin.close()
        hub.close()
        rig.close()


def _dgram(producer_id: int, *packets: bytes) -> bytes:
    return producer_id.to_bytes(4, "big") + b"".join(LEN_PREFIX[len(p)] + p for p in packets)


@needs_native
def test_the_destination_drains_natively_as_python_does(tmp_path: Path) -> None:
    """Good datagrams, a discontinuity between packets (a jump in the numbering after it),
    a late packet and RTCP (handed to Python in order), torn and short datagrams, a
    producer unknown or not piped here, a datagram longer than any origin sends: the native
    drain forwards and counts exactly what the Python drain does, and reads nothing past a
    datagram's end."""
    opus = _renumbered("opus", 60)
    jumped = _renumbered("opus", 20, first=0x4000)
    rtcp = struct.pack("!BBHI", 0x80, 201, 1, Header.of(opus[0]).ssrc)
    datagrams = [
        _dgram(100, *opus[:10]),
        _dgram(100, *opus[10:12]),
        b"\x00\x00",  # shorter than the header
        _dgram(100, opus[12]) + b"\x00",  # a length cut by the end: counted after the packet
        _dgram(100, opus[13]) + LEN_PREFIX[200] + b"t" * 50,  # a record torn by the end
        _dgram(100, opus[14])[:-1],  # the only record torn
        _dgram(99, *opus[15:17]),  # unknown producer
        _dgram(101, *opus[15:17]),  # received here, not piped
        _dgram(100, opus[17], opus[15], rtcp, opus[18]),  # a late packet and RTCP in between
        _dgram(100),  # discontinuity
        _dgram(100, *jumped[:10]),
        _dgram(100, *opus[19:20]) + b"\xff" * MAX_MESSAGE,  # longer than rbuf: cut, never parsed
        _dgram(100, *jumped[10:]),
    ]
    python = _destination("native-pyrx", False, tmp_path, datagrams)
    py_drain = _destination("native", False, tmp_path, datagrams)
    nat = _destination("native", True, tmp_path, datagrams)
    assert nat["rig"] == python["rig"] == py_drain["rig"]
    assert nat["bad"] == python["bad"] == py_drain["bad"] == 5
    assert nat["marks"] == python["marks"] == [100]
    assert nat["origins"] == python["origins"] == 0
    counters = nat["rig"]["forwarder"]
    assert counters["pipeUnknownProducer"] == 2 and counters["pipePacketsIn"] == 38
    assert counters["rtcpIn"] == 1
    fast, slow = nat["rx"]
    assert (fast, slow) == (36, 2)  # the late packet and the RTCP: Python's
    assert nat["rx"] == py_drain["rx"]  # the same packets natively, whoever parsed them


@needs_native
def test_a_callback_that_raises_keeps_the_counts_of_the_datagrams_before(tmp_path: Path) -> None:
    """An exception from Python code the native drain calls (here on_discontinuity) leaves
    the drain as it does the Python one: raised, with what came before counted."""
    rig = Rig("native")
    hub = PipeHub(rig.loop, str(tmp_path), 1, rig.fwd, lookup=rig.router.producers.get,
                  on_discontinuity=lambda p: 1 / 0)
    origin = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        piped = rig.producer("opus", piped=True)
        rig.consumer(piped, 0xA1)
        origin.connect(hub.path)
        hub._accept()
        (conn,) = hub._conns.values()
        opus = _renumbered("opus", 3)
        for d in (_dgram(100, *opus[:2]), b"\x00", _dgram(100), _dgram(100, opus[2])):
            origin.send(d)
        with pytest.raises(ZeroDivisionError):
            hub._drain(conn)
        assert rig.fwd.pipe_packets_in == 2 and hub.bad_messages == 1
        hub._drain(conn)  # the rest is still there
        assert rig.fwd.pipe_packets_in == 3
    finally:
        origin.close()
        hub.close()
        rig.close()
