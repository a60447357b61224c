"""RFC 4571 framing (sans-I/O) and the TcpServer/TcpConnection wrappers on a real loop."""

from __future__ import annotations

import asyncio
import random
import socket
import time

import pytest
from tureen.workers.transport import tcp
from tureen.workers.transport.tcp import MAX_FRAME, Deframer, FramingError, TcpServer, frame

# -- framing --------------------------------------------------------------------------------


def test_frame_prefixes_the_big_endian_length() -> None:
    assert frame(b"abc") == b"\x00\x03abc"
    assert frame(b"") == b"\x00\x00"
    assert frame(bytes(300))[:2] == b"\x01\x2c"
    with pytest.raises(ValueError):
        frame(bytes(65536))


def test_coalesced_frames_come_out_in_order() -> None:
    packets = [b"\x00\x01stun", b"\x16dtls" * 10, b"\x80" + bytes(1200)]
    d = Deframer()
    assert d.feed(b"".join(frame(p) for p in packets)) == packets
    assert d.pending == 0


def test_frames_split_at_every_byte_are_reassembled() -> None:
    packets = [bytes([128 + i]) * (i * 37 + 1) for i in range(10)]
    stream = b"".join(frame(p) for p in packets)
    d = Deframer()
    out: list[bytes] = []
    for i in range(len(stream)):
        out += d.feed(stream[i : i + 1])
    assert out == packets and d.pending == 0


def test_random_chunking_round_trips() -> None:
    rng = random.Random(4571)
    packets = [rng.randbytes(rng.randrange(1, MAX_FRAME + 1)) for _ in range(200)]
    stream = b"".join(frame(p) for p in packets)
    d = Deframer()
    out: list[bytes] = []
    pos = 0
    while pos < len(stream):
        step = rng.randrange(1, 4000)
        out += d.feed(memoryview(stream)[pos : pos + step])
        pos += step
        assert d.pending <= MAX_FRAME + 2  # bounded buffer
    assert out == packets


def test_zero_length_frames_are_skipped_and_counted() -> None:
    d = Deframer()
    assert d.feed(b"\x00\x00\x00\x00" + frame(b"x") + b"\x00\x00") == [b"x"]
    assert d.empty_frames == 3


def test_oversize_length_breaks_the_stream() -> None:
    d = Deframer()
    assert d.feed(frame(bytes(MAX_FRAME))) == [bytes(MAX_FRAME)]
    with pytest.raises(FramingError):
        d.feed(frame(b"ok") + (MAX_FRAME + 1).to_bytes(2, "big"))
    assert d.broken and d.pending == 0
    with pytest.raises(FramingError):
        d.feed(frame(b"again"))


def test_oversize_length_is_detected_from_the_header_alone() -> None:
    # No need to wait for (and buffer) 65535 bytes to know the frame is refused.
    with pytest.raises(FramingError):
        Deframer().feed(b"\xff\xff")


def test_garbage_never_raises_anything_but_framing_error() -> None:
    rng = random.Random(6544)
    for _ in range(500):
        d = Deframer()
        try:
            for _ in range(5):
                for packet in d.feed(rng.randbytes(rng.randrange(0, 3000))):
                    assert 0 < len(packet) <= MAX_FRAME
                assert d.pending <= MAX_FRAME + 2
        except FramingError:
            assert d.broken


# -- server and connections on a real loop ---------------------------------------------------


class Owner:
    """What a transport does with a TcpServer: collects frames, echoes, validates on b'ok'."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.frames: list[bytes] = []
        self.closed: list[tuple] = []
        self.flushes = 0
        self.server = TcpServer(
            loop, "127.0.0.1", 42000, 42999, self.on_frame, self.on_closed, self.after, name="test"
        )

    def on_frame(self, conn: tcp.TcpConnection, packet: bytes) -> None:
        self.frames.append(packet)
        if packet == b"ok":
            conn.validate()
        conn.send(b"echo:" + packet)

    def on_closed(self, conn: tcp.TcpConnection) -> None:
        self.closed.append(conn.addr)

    def after(self) -> None:
        self.flushes += 1


async def until(predicate, timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 2)


async def read_frame(reader: asyncio.StreamReader) -> bytes:
    header = await asyncio.wait_for(reader.readexactly(2), 2)
    return await asyncio.wait_for(reader.readexactly(int.from_bytes(header, "big")), 2)


async def test_frames_in_and_out_and_close_with_the_server() -> None:
    owner = Owner(asyncio.get_running_loop())
    port = owner.server.local[1]
    assert 42000 <= port <= 42999
    reader, writer = await connect(port)
    writer.write(frame(b"ok") + frame(b"second")[:3])
    await until(lambda: owner.frames == [b"ok"])
    assert await read_frame(reader) == b"echo:ok"
    writer.write(frame(b"second")[3:])
    assert await read_frame(reader) == b"echo:second"
    [conn] = owner.server.connections.values()
    assert conn.validated and conn.addr == (*writer.get_extra_info("sockname")[:2], "tcp")
    owner.server.close()
    assert await asyncio.wait_for(reader.read(), 2) == b""  # EOF: closed with the server
    assert owner.closed == []  # no callbacks into a closing owner
    writer.close()


async def test_preferred_port_is_taken_when_free() -> None:
    loop = asyncio.get_running_loop()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    server = TcpServer(loop, "127.0.0.1", 42000, 42999, print, print, lambda: None, preferred_port=free)
    busy = TcpServer(loop, "127.0.0.1", 42000, 42999, print, print, lambda: None, preferred_port=free)
    try:
        assert server.local[1] == free
        assert busy.local[1] != free and 42000 <= busy.local[1] <= 42999
    finally:
        server.close()
        busy.close()


async def test_bad_framing_closes_the_connection_and_is_counted() -> None:
    owner = Owner(asyncio.get_running_loop())
    try:
        reader, writer = await connect(owner.server.local[1])
        writer.write(b"\xff\xff" + bytes(100))
        assert await asyncio.wait_for(reader.read(), 2) == b""
        await until(lambda: len(owner.closed) == 1)
        assert owner.server.framing_errors == 1 and not owner.server.connections
        writer.close()
    finally:
        owner.server.close()


async def test_silent_connection_is_closed_after_the_stun_timeout(monkeypatch) -> None:
    monkeypatch.setattr(tcp, "STUN_TIMEOUT", 0.2)
    owner = Owner(asyncio.get_running_loop())
    try:
        r1, w1 = await connect(owner.server.local[1])
        r2, w2 = await connect(owner.server.local[1])
        w2.write(frame(b"ok"))
        assert await read_frame(r2) == b"echo:ok"
        assert await asyncio.wait_for(r1.read(), 2) == b""  # the silent one
        await asyncio.sleep(0.3)
        assert owner.server.timeouts == 1 and len(owner.server.connections) == 1
        w1.close()
        w2.close()
        await until(lambda: len(owner.closed) == 2)  # the remote's close is noticed too
    finally:
        owner.server.close()


async def test_pending_connections_are_capped() -> None:
    owner = Owner(asyncio.get_running_loop())
    writers = []
    try:
        for _ in range(tcp.MAX_PENDING + 3):
            _, w = await connect(owner.server.local[1])
            writers.append(w)
        await until(lambda: owner.server.accepted + owner.server.refused == tcp.MAX_PENDING + 3)
        assert owner.server.accepted == tcp.MAX_PENDING and owner.server.refused == 3
    finally:
        for w in writers:
            w.close()
        owner.server.close()


async def test_stalled_reader_fills_a_bounded_queue_then_frames_are_dropped_whole() -> None:
    owner = Owner(asyncio.get_running_loop())
    try:
        reader, writer = await connect(owner.server.local[1])
        writer.write(frame(b"ok"))
        await until(lambda: owner.server.connections and next(iter(owner.server.connections.values())).validated)
        conn = next(iter(owner.server.connections.values()))
        dropped = 0
        for _ in range(5000):  # ~6 MB against a reader that never reads
            try:
                conn.send(bytes(1200))
            except OSError:
                dropped += 1
        assert dropped > 0 and conn.frames_dropped == dropped
        assert len(conn._out) <= tcp.MAX_SEND_QUEUE + 1202
        # The stream is still in sync: every frame read is whole.
        assert await read_frame(reader) == b"echo:ok"
        for _ in range(100):
            assert await read_frame(reader) == bytes(1200)
        writer.close()
    finally:
        owner.server.close()
