"""The native loop (workers/native_loop.py, workers/_native_loop.c) under a real asyncio loop
with real loopback sockets: the connected sockets of plain transports are drained in C by the
selector while asyncio's timers, signals, call_soon_threadsafe and Python fds keep working; a
handler that raises is reported and the loop goes on; a transport closed by a handler in the
middle of a batch is not drained again; many sockets at once; counters and forwarded packets
as udp.py's drain gives them (test_native_drain.py compares every scenario in detail).

Every wait is bounded (asyncio.wait_for, socket timeouts, the flood threads' caps)."""

from __future__ import annotations

import asyncio
import os
import select
import selectors
import signal
import socket
import struct
import threading
import time
from typing import Any

import pytest
from captured import Header, Rig, load, with_header
from test_pipe import _destination, _dgram, _pipe_read, _renumbered, _rig_snapshot
from tureen.workers import native, native_loop
from tureen.workers.transport import pipe
from tureen.workers.transport.pipe import LEN_PREFIX, PipeHub

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(not native_loop.available(), reason="the native core is not built"),
]


@pytest.fixture
def rig() -> Any:
    loop = native_loop.new_event_loop()
    errors: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    r = Rig("native", loop=loop)
    r.errors = errors  # type: ignore[attr-defined]
    try:
        yield r
    finally:
        r.close()
        loop.close()


def run(rig: Rig, coro: Any, timeout: float = 10.0) -> Any:
    return rig.loop.run_until_complete(asyncio.wait_for(coro, timeout))


async def until(check: Any, timeout: float = 5.0) -> None:
    """Let the loop run until check() is true (bounded)."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.005)


def flood(sock: socket.socket, to: tuple[str, int], packets: list[bytes], stop: threading.Event, cap: float) -> threading.Thread:
    """A thread sending `packets` round and round to `to`, numbered in order (so the receive
    keeps taking them in C), until `stop` or `cap` seconds."""

    def send() -> None:
        deadline = time.monotonic() + cap
        i = 0
        first = Header.of(packets[0]).seq
        while not stop.is_set() and time.monotonic() < deadline:
            p = with_header(packets[i % len(packets)], seq=(first + i) & 0xFFFF, ts=(i * 3000) & 0xFFFFFFFF)
            sock.sendto(p, to)
            i += 1
            if i % 16 == 0:
                time.sleep(0.0005)

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    return thread


def test_the_worker_loop_drains_connected_sockets_natively(rig: Rig) -> None:
    """A connected plain transport's socket is a native reader, not an asyncio reader;
    packets sent to it are forwarded and counted while asyncio waits."""
    selector = native_loop.selector_of(rig.loop)
    assert selector is not None and selector.native_readers() >= 1
    endpoint = rig.send_transport.endpoint
    assert endpoint._reader is not None
    assert endpoint._conn.fileno() not in selector.get_map()  # not Python's
    video = rig.producer("vp8")
    consumer = rig.consumer(video, 0xA1)
    packets = load("vp8")[:20]
    for p in packets:
        rig.sender.sendto(p, endpoint.local)
    run(rig, until(lambda: rig.fwd.rtp_in == 20))
    assert len(rig.received(consumer, 20)) == 20
    assert endpoint.datagrams_in == 20 and endpoint.octets_in == sum(map(len, packets))
    assert endpoint._reader.drains >= 1
    assert rig.fwd.rx.fast + rig.fwd.rx.slow == 20 and rig.fwd.rx.fast >= 19  # the first: a start point


def test_timers_fire_while_native_packets_keep_coming(rig: Rig) -> None:
    """asyncio's timeout is honoured: a call_later fires while a flood of packets is being
    drained in C (which would otherwise wait on forever), and not before its time."""
    video = rig.producer("vp8")
    rig.consumer(video, 0xA2)
    endpoint = rig.send_transport.endpoint
    stop = threading.Event()
    fired: list[float] = []

    async def scenario() -> None:
        await until(lambda: True)
        thread = flood(rig.sender, endpoint.local, load("vp8")[:64], stop, cap=8.0)
        await until(lambda: endpoint._reader.datagrams > 50)
        start = rig.loop.time()
        when = start + 0.05
        done = rig.loop.create_future()
        rig.loop.call_at(when, lambda: (fired.append(rig.loop.time()), done.set_result(None)))
        await done
        assert thread.is_alive(), "the timer waited for the flood to end"
        slow = rig.fwd.rx.slow
        assert slow < 5, "Python ran in the drains (which returns to asyncio anyway)"
        stop.set()
        thread.join(5)
        assert fired[0] >= when

    try:
        run(rig, scenario())
    finally:
        stop.set()
    assert endpoint._reader.datagrams > 50


def test_signals_and_call_soon_threadsafe_wake_the_native_wait(rig: Rig) -> None:
    """A signal handler (asyncio's wakeup fd) and call_soon_threadsafe (the self-pipe) wake a
    loop that waits with no timer, natively, for a socket nobody writes to."""
    got: list[str] = []
    rig.loop.add_signal_handler(signal.SIGUSR1, lambda: got.append("signal"))
    try:

        async def scenario() -> None:
            done = rig.loop.create_future()
            threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGUSR1)).start()
            await until(lambda: got == ["signal"])
            threading.Timer(0.05, rig.loop.call_soon_threadsafe, (done.set_result, "threadsafe")).start()
            got.append(await done)

        run(rig, scenario())
    finally:
        rig.loop.remove_signal_handler(signal.SIGUSR1)
    assert got == ["signal", "threadsafe"]


def test_a_python_fd_is_served_between_native_drains(rig: Rig) -> None:
    """An fd asyncio registers (add_reader on a plain socket) is reported by the native
    selector as the selectors API does, also while native packets flow."""
    a, b = socket.socketpair()
    a.setblocking(False)
    got: list[bytes] = []
    rig.loop.add_reader(a.fileno(), lambda: got.append(a.recv(100)))
    stop = threading.Event()
    rig.producer("vp8")
    endpoint = rig.send_transport.endpoint
    try:

        async def scenario() -> None:
            thread = flood(rig.sender, endpoint.local, load("vp8")[:64], stop, cap=8.0)
            await until(lambda: endpoint._reader.datagrams > 20)
            b.send(b"python")
            await until(lambda: got == [b"python"])
            assert thread.is_alive()

        run(rig, scenario())
    finally:
        stop.set()
        rig.loop.remove_reader(a.fileno())
        a.close()
        b.close()
    key_events = [k.events for k in native_loop.selector_of(rig.loop).get_map().values()]
    assert all(e in (selectors.EVENT_READ, selectors.EVENT_WRITE, selectors.EVENT_READ | selectors.EVENT_WRITE) for e in key_events)


def test_a_handler_that_raises_is_reported_and_the_loop_goes_on(rig: Rig) -> None:
    """An RTCP packet goes to the transport's Python handler; when that raises, the loop's
    exception handler gets it (as asyncio reports a callback's) and later packets are still
    forwarded, the copies queued before the exception flushed."""
    video = rig.producer("vp8")
    consumer = rig.consumer(video, 0xA3)
    transport = rig.send_transport

    def boom(n: int, buf: bytearray) -> None:
        raise ValueError("a handler's bug")

    transport.handle_rtcp = boom  # type: ignore[method-assign]
    rr = struct.pack("!BBHI", 0x80, 201, 1, Header.of(load("vp8")[0]).ssrc)
    packets = load("vp8")[:10]
    for p in packets[:5] + [rr]:
        rig.sender.sendto(p, transport.endpoint.local)
    run(rig, until(lambda: len(rig.errors) == 1))  # type: ignore[attr-defined]
    context = rig.errors[0]  # type: ignore[attr-defined]
    assert isinstance(context["exception"], ValueError) and "native drain" in context["message"]
    for p in packets[5:]:
        rig.sender.sendto(p, transport.endpoint.local)
    run(rig, until(lambda: rig.fwd.rtp_in == 10))
    assert len(rig.received(consumer, 10)) == 10
    assert transport.endpoint.datagrams_in == 11


def test_a_transport_closed_by_a_handler_mid_batch_is_not_drained_again(rig: Rig) -> None:
    """Transport A's handler closes transport B while both sockets are ready in one epoll
    batch: B's reader is gone (its fd may be reused), A and the loop go on, B's counts stay."""
    first, second = rig.socket(), rig.socket()
    a, b = rig.transport(first), rig.transport(second)
    selector = native_loop.selector_of(rig.loop)
    readers = selector.native_readers()
    closed: list[int] = []

    def close_b(n: int, buf: bytearray) -> None:
        if not closed:
            b_reader = b.endpoint._reader
            b.close()
            closed.append(b_reader.drains)

    a.handle_rtcp = close_b  # type: ignore[method-assign]
    b.handle_rtcp = close_b  # type: ignore[method-assign]
    rr = struct.pack("!BBHI", 0x80, 201, 1, 0x1234)
    for _ in range(3):
        second.sendto(rr, b.endpoint.local)
        first.sendto(rr, a.endpoint.local)
    run(rig, until(lambda: closed and a.endpoint.datagrams_in == 3))
    assert selector.native_readers() == readers - 1
    assert b.endpoint._reader is None and b.endpoint._conn is None
    assert b.endpoint.datagrams_in in (0, 3)  # drained before A's handler closed it, or not
    first.sendto(rr, a.endpoint.local)
    run(rig, until(lambda: a.endpoint.datagrams_in == 4))
    assert rig.errors == []  # type: ignore[attr-defined]


def test_many_sockets_each_counted(rig: Rig) -> None:
    """Forty transports, each sent a different number of packets at once: every one drained
    natively, each its own count, the forwarder's total right."""
    opus = load("opus")
    senders = [rig.socket() for _ in range(40)]
    transports = [rig.transport(s) for s in senders]
    selector = native_loop.selector_of(rig.loop)
    assert selector.native_readers() >= 40
    for i, (s, t) in enumerate(zip(senders, transports, strict=True)):
        for p in opus[: i + 1]:
            s.sendto(p, t.endpoint.local)
    total = sum(range(1, 41))
    run(rig, until(lambda: sum(t.endpoint.datagrams_in for t in transports) == total))
    assert [t.endpoint.datagrams_in for t in transports] == list(range(1, 41))
    # no producer on them: unknown SSRCs, every one looked at by the receive
    assert rig.fwd.drop_unknown_ssrc == total


def test_reconnect_and_close_keep_the_counts(rig: Rig) -> None:
    """A connected socket replaced (connect to another remote) and then closed: its native
    reader leaves the selector each time and the endpoint's counters keep what it counted."""
    endpoint = rig.send_transport.endpoint
    selector = native_loop.selector_of(rig.loop)
    opus = load("opus")[:4]
    for p in opus:
        rig.sender.sendto(p, endpoint.local)
    run(rig, until(lambda: endpoint.datagrams_in == 4))
    readers = selector.native_readers()
    other = rig.socket()
    endpoint.connect(other.getsockname())
    assert selector.native_readers() == readers and endpoint._reader.datagrams == 0
    for p in opus[:2]:
        other.sendto(p, endpoint.local)
    run(rig, until(lambda: endpoint.datagrams_in == 6))
    assert endpoint.octets_in == sum(map(len, opus)) + sum(map(len, opus[:2]))
    endpoint.disconnect()
    assert selector.native_readers() == readers - 1
    assert endpoint.datagrams_in == 6


def test_closing_the_loop_drops_its_readers() -> None:
    """Closing the loop closes the selector: its readers are let go (inactive)."""
    loop = native_loop.new_event_loop()
    rig = Rig("native", loop=loop)
    reader = rig.send_transport.endpoint._reader
    assert reader is not None and reader.active
    selector = native_loop.selector_of(loop)
    number = selector.fileno()
    loop.close()
    assert not reader.active
    # The closed epoll's number taken by another epoll: never used as the loop's again.
    other = select.epoll()
    os.dup2(other.fileno(), number)
    try:
        spare = rig.socket()
        with pytest.raises(OSError):
            selector.add_native(spare.fileno(), rig.fwd.rx, rig.send_transport, False, print, print)
        with pytest.raises(OSError):
            selector._native.select(0.0)
    finally:
        os.close(number)
        other.close()
    rig.loop = asyncio.new_event_loop()  # the transports' close needs no selector now
    for transport in rig.transports:
        transport.endpoint._reader = None
        transport.endpoint._conn.close()
        transport.endpoint._conn = None
    rig.close()
    rig.loop.close()


def test_without_the_native_receive_the_loop_keeps_python_readers() -> None:
    """native_rx false: no native drain, so the connected socket is an asyncio reader even
    on the native selector (udp.py's Python drain)."""
    loop = native_loop.new_event_loop()
    rig = Rig("native-pyrx", loop=loop)
    try:
        endpoint = rig.send_transport.endpoint
        assert endpoint._reader is None
        assert endpoint._conn.fileno() in native_loop.selector_of(loop).get_map()
        for p in load("opus")[:3]:
            rig.sender.sendto(p, endpoint.local)
        loop.run_until_complete(asyncio.wait_for(until(lambda: endpoint.datagrams_in == 3), 10))
    finally:
        rig.close()
        loop.close()


def test_bad_arguments_are_refused() -> None:
    """NativeLoop checks what it is given: a clear error, nothing registered."""
    loop = native_loop.new_event_loop()
    try:
        selector = native_loop.selector_of(loop)
        with pytest.raises(TypeError, match="Receiver"):
            selector.add_native(0, object(), None, False, print, print)
        with pytest.raises(ValueError, match="file descriptor"):
            selector.add_native(-1, object(), None, False, print, print)
        with pytest.raises(TypeError, match="on_error"):
            native._native.NativeLoop(selector.fileno(), None)
        assert selector.native_readers() == 0
        assert selector.remove_native(12345) is None
    finally:
        loop.close()


def test_callbacks_a_handler_schedules_run_without_waiting_for_more_traffic(rig: Rig) -> None:
    """A datagram that ran Python (an RTCP packet: the transport's handler) returns the wait
    to asyncio after its batch, so a callback the handler scheduled runs at once. The packet
    comes from another thread and no timer is due, so nothing else would wake asyncio: the
    thread waits (2 s at most) for the callback, then wakes the loop itself either way."""
    transport = rig.send_transport
    rr = struct.pack("!BBHI", 0x80, 201, 1, 0x1234)
    ran = threading.Event()
    verdict: list[bool] = []

    async def scenario() -> None:
        fut = rig.loop.create_future()

        def callback() -> None:
            ran.set()

        def sender() -> None:
            rig.sender.sendto(rr, transport.endpoint.local)
            verdict.append(ran.wait(2.0))
            rig.loop.call_soon_threadsafe(fut.set_result, None)

        transport.handle_rtcp = lambda n, buf: rig.loop.call_soon(callback)  # type: ignore[method-assign]
        threading.Thread(target=sender, daemon=True).start()
        await fut

    run(rig, scenario(), timeout=10.0)
    assert verdict == [True], "the scheduled callback waited for the next Python event"


# -- the pipe in the native loop (issue 17, round three: both ends without asyncio) -------


class _FlushCalls:
    """PipeBatch.flush (the Python flush) wrapped to count its calls: the native loop's flush
    of a pipe batch does not call it."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        python_flush = pipe.PipeBatch.flush

        def counted(batch: pipe.PipeBatch, fwd: Any) -> None:
            self.calls += 1
            python_flush(batch, fwd)

        monkeypatch.setattr(pipe.PipeBatch, "flush", counted)


def _records(datagrams: list[bytes]) -> list[bytes]:
    """The packets of pipe datagrams, in order (each: the 4-byte header, then records)."""
    out = []
    for d in datagrams:
        off = 4
        while off < len(d):
            n = int.from_bytes(d[off : off + 2], "big")
            out.append(d[off + 2 : off + 2 + n])
            off += 2 + n
    return out


def _origin_hub(rig: Rig, run_dir: str, listen: bool = True) -> tuple[PipeHub, socket.socket | None]:
    """Worker 0's hub on the rig's loop, and a raw listener at worker 1's pipe (or none)."""
    listener = None
    if listen:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        listener.bind(pipe.pipe_path(run_dir, 1))
        listener.listen(1)
    hub = PipeHub(rig.loop, run_dir, 0, rig.fwd, lookup=rig.router.producers.get,
                  on_discontinuity=rig.router.interrupt_producer)
    return hub, listener


def _send_spaced(rig: Rig, packets: list[bytes], until_count: Any) -> None:
    """Each packet to the send transport, one at a time (a drain each), the loop running."""
    endpoint = rig.send_transport.endpoint

    async def scenario() -> None:
        for i, p in enumerate(packets):
            rig.sender.sendto(p, endpoint.local)
            await until(lambda i=i: until_count() >= i + 1)

    run(rig, scenario())


def test_the_origin_flushes_its_pipe_batches_in_c(rig: Rig, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A producer piped to worker 1, its packets drained by the native loop: each drain's
    batch goes out from C (PipeBatch.flush is never called), the same records the Python
    flush sends for the same packets (test_pipe.py's origin), counted the same."""
    flushes = _FlushCalls(monkeypatch)
    packets = [with_header(p, seq=0x100 + i) for i, p in enumerate(load("opus")[:30])]
    hub, listener = _origin_hub(rig, str(tmp_path))
    try:
        producer = rig.producer("opus")
        consumer = rig.consumer(producer, 0xA1)
        rig.router.add_pipe(producer, 1, hub.open(producer.id, 1))
        conn, _ = listener.accept()
        _send_spaced(rig, packets, lambda: rig.fwd.pipe_packets_out)
        got = _pipe_read(conn)
        conn.close()
        assert flushes.calls == 0
        assert rig.fwd.pipe_packets_out == 30 and rig.fwd.pipe_dropped == 0
        assert rig.fwd.pipe_messages_out == len(got) == 30  # one datagram per drain
        assert all(d[:4] == producer.id.to_bytes(4, "big") for d in got)
        assert len(rig.received(consumer, 30)) == 30
        assert rig.fwd.dirty == []
        # the Python flush of the same packets, one drain: the same records
        py = Rig("native")
        (tmp_path / "py").mkdir()
        hub_py, listener_py = _origin_hub(py, str(tmp_path / "py"))
        try:
            p2 = py.producer("opus")
            py.router.add_pipe(p2, 1, hub_py.open(p2.id, 1))
            conn_py, _ = listener_py.accept()
            py.feed(packets)
            assert _records(_pipe_read(conn_py)) == _records(got)
            conn_py.close()
        finally:
            hub_py.close()
            listener_py.close()
            py.close()
    finally:
        hub.close()
        listener.close()


def test_a_full_destination_costs_counted_drops_in_c(rig: Rig, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The destination reads nothing and the origin's send buffer is full: the C flush counts
    each batch it cannot send in pipeDropped (EAGAIN), as PipeBatch.flush does, never
    blocks, and sends again once there is room."""
    flushes = _FlushCalls(monkeypatch)
    hub, listener = _origin_hub(rig, str(tmp_path))
    try:
        producer = rig.producer("opus")
        batch = hub.open(producer.id, 1)
        rig.router.add_pipe(producer, 1, batch)
        batch.link.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        conn, _ = listener.accept()
        packets = [with_header(load("opus")[i % 20], seq=0x200 + i) for i in range(120)]
        fwd = rig.fwd
        _send_spaced(rig, packets, lambda: fwd.pipe_packets_out + fwd.pipe_dropped)
        got = _pipe_read(conn)
        assert flushes.calls == 0
        assert fwd.pipe_dropped > 0 and fwd.pipe_packets_out == len(got) == fwd.pipe_messages_out
        assert fwd.pipe_packets_out + fwd.pipe_dropped == 120
        _send_spaced(rig, [with_header(load("opus")[0], seq=0x200 + 120)], lambda: fwd.pipe_packets_out - len(got))
        assert len(_pipe_read(conn)) == 1  # room again: sent
        conn.close()
    finally:
        hub.close()
        listener.close()


def test_a_link_to_reconnect_is_left_to_the_python_flush(rig: Rig, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """No destination yet: the link has no socket, so the loop leaves the batch to the Python
    flush (a drop, counted; reconnect attempts); once the destination listens the Python flush
    reconnects and the following batches go out from C."""
    monkeypatch.setattr(pipe, "RECONNECT_S", 0.0)
    flushes = _FlushCalls(monkeypatch)
    hub, _ = _origin_hub(rig, str(tmp_path), listen=False)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        producer = rig.producer("opus")
        rig.router.add_pipe(producer, 1, hub.open(producer.id, 1))
        fwd = rig.fwd
        packets = [with_header(load("opus")[i], seq=0x300 + i) for i in range(10)]
        _send_spaced(rig, packets[:3], lambda: fwd.pipe_packets_out + fwd.pipe_dropped)
        assert fwd.pipe_dropped == 3 and flushes.calls == 3
        listener.bind(pipe.pipe_path(str(tmp_path), 1))
        listener.listen(1)
        _send_spaced(rig, packets[3:], lambda: fwd.pipe_packets_out + fwd.pipe_dropped - 3)
        conn, _ = listener.accept()
        got = _pipe_read(conn)
        conn.close()
        assert flushes.calls == 4  # the one that reconnected; then C
        assert fwd.pipe_packets_out == 7 == len(got) and fwd.pipe_dropped == 3
    finally:
        hub.close()
        listener.close()


def test_pipe_connections_are_native_readers_with_the_python_drains_results(rig: Rig, tmp_path: Any) -> None:
    """Worker 1's hub on the native loop: an origin's connection is a native reader (not an
    asyncio reader); good, torn, short, unknown and over-long datagrams, a late packet, RTCP
    and a discontinuity mark are forwarded and counted exactly as the Python drain does
    (test_pipe.py's datagrams); the origin closing its end drops the connection and its reader."""
    opus = _renumbered("opus", 60)
    jumped = _renumbered("opus", 20, first=0x4000)
    rtcp = struct.pack("!BBHI", 0x80, 201, 1, Header.of(opus[0]).ssrc)
    datagrams = [
        _dgram(100, *opus[:10]),
        _dgram(100, *opus[10:12]),
        b"\x00\x00",
        _dgram(100, opus[12]) + b"\x00",
        _dgram(100, opus[13]) + LEN_PREFIX[200] + b"t" * 50,
        _dgram(100, opus[14])[:-1],
        _dgram(99, *opus[15:17]),
        _dgram(101, *opus[15:17]),
        _dgram(100, opus[17], opus[15], rtcp, opus[18]),
        _dgram(100),
        _dgram(100, *jumped[:10]),
        _dgram(100, *opus[19:20]) + b"\xff" * pipe.MAX_MESSAGE,
        _dgram(100, *jumped[10:]),
    ]
    python = _destination("native", False, tmp_path, datagrams)
    marks: list[int] = []

    def on_discontinuity(producer: Any) -> None:
        marks.append(producer.id)
        rig.router.interrupt_producer(producer)

    run_dir = tmp_path / "loop"
    run_dir.mkdir()
    selector = native_loop.selector_of(rig.loop)
    hub = PipeHub(rig.loop, str(run_dir), 1, rig.fwd, lookup=rig.router.producers.get, on_discontinuity=on_discontinuity)
    origin = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        piped = rig.producer("opus", piped=True)
        rig.producer("opus", [(0x5EED, None, "default")])
        for ssrc in (0xA1, 0xA2):
            rig.consumer(piped, ssrc)
        readers = selector.native_readers()
        origin.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 22)
        origin.connect(hub.path)
        run(rig, until(lambda: hub.dump()["nativeOrigins"] == 1))
        (fd,) = hub._conns
        assert fd not in selector.get_map() and selector.native_readers() == readers + 1
        for d in datagrams:
            origin.send(d)
        run(rig, until(lambda: rig.fwd.pipe_packets_in == 38 and hub.bad_messages == 5))
        origin.close()
        run(rig, until(lambda: hub.dump()["origins"] == 0))
        assert selector.native_readers() == readers and hub.dump()["nativeOrigins"] == 0
        assert _rig_snapshot(rig) == python["rig"]
        assert marks == python["marks"] == [100]
        assert (rig.fwd.rx.fast, rig.fwd.rx.slow) == python["rx"]
    finally:
        origin.close()
        hub.close()


def test_bad_pipe_reader_arguments_are_refused(rig: Rig) -> None:
    """add_pipe checks what it is given: a clear error, nothing registered."""
    selector = native_loop.selector_of(rig.loop)
    readers = selector.native_readers()
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    rx, fwd = rig.fwd.rx, rig.fwd
    try:
        with pytest.raises(TypeError, match="Receiver"):
            selector.add_pipe(a.fileno(), object(), None, bytearray(8), print, print, 8, print, print)
        with pytest.raises(TypeError, match="rbuf"):
            selector.add_pipe(a.fileno(), rx, None, b"12345678", print, print, 8, print, print)
        with pytest.raises(ValueError, match="limit"):
            selector.add_pipe(a.fileno(), rx, None, bytearray(8), print, print, 0, print, print)
        with pytest.raises(TypeError, match="on_status"):
            selector.add_pipe(a.fileno(), rx, None, bytearray(8), print, print, 8, None, fwd.after_drain)
        with pytest.raises(ValueError, match="already"):
            selector.add_pipe(rig.send_transport.endpoint._conn.fileno(), rx, None, bytearray(8), print, print, 8, print, print)
        assert selector.native_readers() == readers
    finally:
        a.close()
        b.close()


def test_a_pipe_callback_that_raises_is_reported_and_the_connection_drained_on(rig: Rig, tmp_path: Any) -> None:
    """on_discontinuity raising in the native pipe drain: reported through the loop's
    exception handler (as asyncio reports a reader callback's), the datagrams before it
    counted, the ones after it drained on the next readiness; the connection stays."""
    hub = PipeHub(rig.loop, str(tmp_path), 1, rig.fwd, lookup=rig.router.producers.get,
                  on_discontinuity=lambda p: 1 / 0)
    origin = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        piped = rig.producer("opus", piped=True)
        rig.consumer(piped, 0xA1)
        origin.connect(hub.path)
        run(rig, until(lambda: hub.dump()["nativeOrigins"] == 1))
        opus = _renumbered("opus", 3)
        for d in (_dgram(100, *opus[:2]), _dgram(100), _dgram(100, opus[2])):
            origin.send(d)
        run(rig, until(lambda: rig.fwd.pipe_packets_in == 3))
        assert len(rig.errors) == 1 and isinstance(rig.errors[0]["exception"], ZeroDivisionError)
        assert hub.dump()["origins"] == hub.dump()["nativeOrigins"] == 1
    finally:
        origin.close()
        hub.close()
