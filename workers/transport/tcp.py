"""ICE-TCP passive candidates: RFC 4571 framing, a listening server and its connections.

A WebRtcTransport whose options ask for TCP listens on one TCP port (RFC 6544 passive
candidate). Browsers that cannot use UDP connect to it and send every STUN, DTLS, SRTP and
SRTCP packet as an RFC 4571 frame: a 2-byte big-endian length, then the packet.

Layers, as in udp.py's spirit (readers on the worker's loop, no asyncio streams or tasks):

- `Deframer` / `frame()`: the pure, sans-I/O RFC 4571 codec. A frame longer than
  `MAX_FRAME` is a protocol error (the connection is closed), so the deframer's buffer never
  holds more than one maximal frame plus its header.
- `TcpConnection`: one accepted non-blocking socket. Reads on `add_reader`, hands each frame
  to the owner's `on_frame(conn, frame)`; sends whole frames, queueing what the kernel does
  not take (bounded: past `MAX_SEND_QUEUE` a frame is dropped whole, never cut, so the
  stream stays in sync). A connection must prove itself with a valid STUN check within
  `STUN_TIMEOUT` (the owner calls `validate()`), otherwise it is closed.
- `TcpServer`: the listening socket. It accepts at most `MAX_PENDING` connections that are
  not yet validated and `MAX_CONNECTIONS` in all; extra ones are accepted and closed at once
  (so they do not sit in the backlog) and counted.

Nothing here knows ICE: the transport (webrtc.py) decides what a frame means.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import random
import socket
from collections.abc import Callable

from tureen.workers.transport.udp import NoFreePort

log = logging.getLogger("tureen.workers.tcp")

# The largest packet a peer may frame: an MTU-sized SRTP packet (MAX_PACKET_SIZE of srtp.py)
# plus the longest SRTP trailer. DTLS flights are cut to 1200 bytes, STUN checks are small.
# mediasoup accepts up to 64 KiB, but nothing legitimate here is larger than a datagram.
MAX_FRAME = 1500 + 32
_HEADER = 2
# A connection that sends no valid STUN check within this time is closed (a stranger, a
# port scanner, or a browser that gave up on this candidate).
STUN_TIMEOUT = 10.0
# Per transport: connections not yet validated, and connections in all. A browser opens one
# connection per TCP candidate pair it checks: a handful.
MAX_PENDING = 8
MAX_CONNECTIONS = 16
# Bytes a connection may queue in user space when the kernel's send buffer is full (a slow
# or stalled reader). Media is better dropped than delivered late.
MAX_SEND_QUEUE = 256 * 1024
RECV_SIZE = 65536
BACKLOG = 16


class FramingError(ValueError):
    """The byte stream is not valid RFC 4571 for us (a frame longer than MAX_FRAME)."""


def frame(packet: bytes | bytearray | memoryview) -> bytes:
    """One RFC 4571 frame: the 2-byte big-endian length, then the packet."""
    n = len(packet)
    if n > 0xFFFF:
        raise ValueError(f"packet of {n} bytes cannot be framed (RFC 4571 allows 65535)")
    return n.to_bytes(2, "big") + bytes(packet)


class Deframer:
    """RFC 4571 deframer, sans-I/O: `feed(bytes)` -> the complete frames, in order.

    Zero-length frames are legal framing but carry nothing: they are skipped and counted.
    A length above `max_frame` raises FramingError; the deframer is then unusable (the stream
    cannot be resynchronised) and the caller closes the connection.
    """

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self.max_frame = max_frame
        self._buf = bytearray()
        self.empty_frames = 0
        self.broken = False

    @property
    def pending(self) -> int:
        """Bytes held for an incomplete frame (at most max_frame + 2)."""
        return len(self._buf)

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        if self.broken:
            raise FramingError("stream already broken")
        buf = self._buf
        buf += data
        frames: list[bytes] = []
        pos = 0
        end = len(buf)
        while end - pos >= _HEADER:
            length = (buf[pos] << 8) | buf[pos + 1]
            if length > self.max_frame:
                self.broken = True
                self._buf = bytearray()
                raise FramingError(f"frame of {length} bytes (max {self.max_frame})")
            if end - pos - _HEADER < length:
                break
            start = pos + _HEADER
            pos = start + length
            if length == 0:
                self.empty_frames += 1
            else:
                frames.append(bytes(buf[start:pos]))
        del buf[:pos]
        return frames


def bind_tcp(ip: str, min_port: int, max_port: int, preferred: int | None = None, tries: int = 32) -> socket.socket:
    """A non-blocking listening TCP socket on ip and `preferred` if free, else any port of the
    range (random ports first, then a scan, as bind_udp)."""
    span = max_port - min_port + 1
    candidates = [preferred] if preferred is not None else []
    candidates += [random.randint(min_port, max_port) for _ in range(min(tries, span))]
    start = random.randrange(span)
    candidates += [min_port + (start + i) % span for i in range(span)]
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    for port in candidates:
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            # A restarted server must reuse ports whose old connections sit in TIME_WAIT;
            # Linux still refuses a second listener on the same port.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((ip, port))
            sock.listen(BACKLOG)
        except OSError:
            sock.close()
            continue
        sock.setblocking(False)
        return sock
    raise NoFreePort(f"no free TCP port on {ip} in {min_port}-{max_port}")


class TcpConnection:
    """One accepted ICE-TCP connection (passive side)."""

    def __init__(
        self,
        server: TcpServer,
        sock: socket.socket,
        peer: tuple,
    ) -> None:
        self.server = server
        self._loop = server.loop
        self._sock = sock
        # The ICE tuple of this connection: the protocol makes it differ from a UDP tuple
        # of the same ip:port (ice_lite.py only reads [0] and [1]).
        self.addr: tuple[str, int, str] = (peer[0], peer[1], "tcp")
        self._deframer = Deframer()
        self._out = bytearray()
        self._writing = False
        self.validated = False
        self.closed = False
        self.frames_in = 0
        self.octets_in = 0
        self.frames_out = 0
        self.frames_dropped = 0
        self._timer: asyncio.TimerHandle | None = self._loop.call_later(STUN_TIMEOUT, self._on_stun_timeout)
        self._loop.add_reader(sock.fileno(), self._on_readable)

    # -- receiving ----------------------------------------------------------------------

    def _on_readable(self) -> None:
        try:
            data = self._sock.recv(RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self.close(f"recv failed: {exc}")
            return
        if not data:
            self.close("closed by the remote")
            return
        self.octets_in += len(data)
        try:
            frames = self._deframer.feed(data)
        except FramingError as exc:
            self.server.framing_errors += 1
            self.close(f"bad framing: {exc}")
            return
        on_frame = self.server.on_frame
        for packet in frames:
            self.frames_in += 1
            on_frame(self, packet)
            if self.closed:  # the handler closed us (or the whole transport)
                return
        self.server.after_frames()

    def validate(self) -> None:
        """A valid STUN check arrived on this connection: it may stay open."""
        if not self.validated:
            self.validated = True
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

    def _on_stun_timeout(self) -> None:
        self._timer = None
        if not self.validated:
            self.server.timeouts += 1
            self.close(f"no valid STUN check within {STUN_TIMEOUT:.0f} s")

    # -- sending ------------------------------------------------------------------------

    def send(self, packet: bytes | bytearray | memoryview) -> None:
        """Send one packet as a frame. Raises OSError if it cannot (closed, queue full).

        Never calls back into the owner synchronously (a failed socket is closed soon).
        """
        if self.closed:
            raise OSError(errno.ENOTCONN, "TCP connection closed")
        data = frame(packet)
        if self._out:
            self._queue(data)
            return
        try:
            sent = self._sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError as exc:
            # Not closed here: send() runs inside the forwarder's fan-out, and closing
            # re-selects ICE tuples and rebuilds the router's tables. Soon, from the loop.
            self._loop.call_soon(self.close, f"send failed: {exc}")
            raise
        self.frames_out += 1
        if sent < len(data):
            # The rest of this frame must follow whatever else we send: queue it even past
            # the limit (at most one frame over), or the stream would lose sync.
            self._out += data[sent:]
            self._start_writing()

    def _queue(self, data: bytes) -> None:
        if len(self._out) + len(data) > MAX_SEND_QUEUE:
            self.frames_dropped += 1
            raise OSError(errno.ENOBUFS, "TCP send queue full")
        self._out += data
        self.frames_out += 1

    def _start_writing(self) -> None:
        if not self._writing:
            self._writing = True
            self._loop.add_writer(self._sock.fileno(), self._on_writable)

    def _on_writable(self) -> None:
        try:
            sent = self._sock.send(self._out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self.close(f"send failed: {exc}")
            return
        del self._out[:sent]
        if not self._out:
            self._loop.remove_writer(self._sock.fileno())
            self._writing = False

    # -- end ----------------------------------------------------------------------------

    def close(self, reason: str = "closed") -> None:
        """Close the socket and tell the server (which tells the transport). Idempotent."""
        if self.closed:
            return
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        fd = self._sock.fileno()
        if fd >= 0:
            self._loop.remove_reader(fd)
            if self._writing:
                self._loop.remove_writer(fd)
            self._sock.close()
        self._writing = False
        log.debug("%s: TCP connection from %s:%d closed: %s", self.server.name, self.addr[0], self.addr[1], reason)
        self.server._connection_closed(self)

    def dump(self) -> dict:
        return {
            "remote": [self.addr[0], self.addr[1]],
            "validated": self.validated,
            "framesIn": self.frames_in,
            "octetsIn": self.octets_in,
            "framesOut": self.frames_out,
            "framesDropped": self.frames_dropped,
            "sendQueue": len(self._out),
        }


class TcpServer:
    """The listening socket of one transport's TCP candidate and its connections.

    `on_frame(conn, packet)` gets every non-empty frame; `after_frames()` runs after each
    read's frames (the forwarder flushes its pipe batches); `on_closed(conn)` runs once per
    connection that goes away, for whatever reason (not for those refused at accept).
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        ip: str,
        min_port: int,
        max_port: int,
        on_frame: Callable[[TcpConnection, bytes], None],
        on_closed: Callable[[TcpConnection], None],
        after_frames: Callable[[], None],
        preferred_port: int | None = None,
        name: str = "tcp",
    ) -> None:
        self.loop = loop
        self.on_frame = on_frame
        self.on_closed = on_closed
        self.after_frames = after_frames
        self.name = name
        self._sock = bind_tcp(ip, min_port, max_port, preferred_port)
        self.local: tuple[str, int] = self._sock.getsockname()[:2]
        self.connections: dict[tuple, TcpConnection] = {}
        self.closed = False
        # Counters (dump).
        self.accepted = 0
        self.refused = 0
        self.timeouts = 0
        self.framing_errors = 0
        self.octets_in_closed = 0  # stats: bytes of connections gone (live ones count their own)
        loop.add_reader(self._sock.fileno(), self._on_accept)

    def _on_accept(self) -> None:
        for _ in range(BACKLOG):
            try:
                sock, peer = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EMFILE, ECONNABORTED...: try again on the next wake-up
                log.warning("%s: accept failed: %s", self.name, exc)
                return
            pending = sum(1 for c in self.connections.values() if not c.validated)
            if pending >= MAX_PENDING or len(self.connections) >= MAX_CONNECTIONS:
                self.refused += 1
                sock.close()
                continue
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # media: no Nagle delay
            conn = TcpConnection(self, sock, peer)
            self.accepted += 1
            self.connections[conn.addr] = conn

    def _connection_closed(self, conn: TcpConnection) -> None:
        self.octets_in_closed += conn.octets_in
        if self.connections.get(conn.addr) is conn:
            del self.connections[conn.addr]
        if not self.closed:
            self.on_closed(conn)

    def close(self) -> None:
        """Stop listening and close every connection (no on_closed callbacks then)."""
        if self.closed:
            return
        self.closed = True
        for conn in list(self.connections.values()):
            conn.close("transport closed")
        self.connections.clear()
        if self._sock.fileno() >= 0:
            self.loop.remove_reader(self._sock.fileno())
            self._sock.close()

    def dump(self) -> dict:
        return {
            "tcpLocal": list(self.local),
            "tcpConnections": [c.dump() for c in self.connections.values()],
            "tcpAccepted": self.accepted,
            "tcpRefused": self.refused,
            "tcpStunTimeouts": self.timeouts,
            "tcpFramingErrors": self.framing_errors,
        }
