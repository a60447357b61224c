"""UdpEndpoint: the only owner of a media socket. Readers, not DatagramProtocol: a protocol
gets a new bytes object and an address tuple per datagram; a reader drains many datagrams into
one reused buffer per wake-up, and a connected socket needs no address at all.

One local port, up to two sockets on it:

- the *open* socket, bound to ip:port, receives from anyone. Each datagram goes to
  `on_datagram_from(n, addr)` (a plain transport latches or drops it; a WebRTC transport
  answers STUN from candidate pairs).
- once the remote is known, `connect(remote)` adds a *connected* twin bound to the same
  ip:port (SO_REUSEPORT) and connected to the remote. Linux delivers the remote's datagrams
  to the socket whose 4-tuple matches exactly, so the remote's traffic arrives on the twin
  and goes to `on_datagram(n)` with no address to build or compare, and sends go out with
  `send()` on a connected socket (no per-packet address parsing or route lookup). Datagrams
  from anyone else still land on the open socket, where they can be counted.

The open socket sets SO_REUSEPORT only *after* its bind, so no other socket (another
transport, another worker) can pick the same port by chance: their plain bind fails.

Both readers drain up to DRAIN datagrams into the shared receive buffer per wake-up; the
handler must be done with the buffer when it returns. After each drain `after_drain()` runs
(the forwarder flushes the pipe batches it filled). With the native receive the connected
socket's drain is one native call (`native_drain`, Forwarder.native_drain: recvmmsg, then per
datagram the common receive in C, SRTP unprotect included, or `on_datagram(n)` for the rest,
in order); the open socket's stays Python: a stranger's datagram never reaches the receive.
When the loop runs on the native selector (workers/native_loop.py, `native_loop`), that
connected socket is not an asyncio reader at all: the selector drains it in C and flushes
(a NativeReader, whose counters `datagrams_in`, `octets_in` and `recv_errors` include).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tureen.workers import native_loop
from tureen.workers.sendbatch import RECV_SLOT

if TYPE_CHECKING:
    from tureen.workers.sendbatch import RecvBatch

log = logging.getLogger("tureen.workers.udp")

DRAIN = 64
# Kernel buffers: a burst of a few hundred 1200-byte packets must not overflow.
SO_BUFFER = 1 << 20
HAS_REUSEPORT = hasattr(socket, "SO_REUSEPORT")


class NoFreePort(OSError):
    pass


def bind_udp(ip: str, min_port: int, max_port: int, tries: int = 32) -> socket.socket:
    """A non-blocking UDP socket bound to ip and a free port in [min_port, max_port].

    Random ports first (so ports are not predictable and concurrent workers rarely race),
    then a scan of the whole range from a random start.
    """
    span = max_port - min_port + 1
    candidates = [random.randint(min_port, max_port) for _ in range(min(tries, span))]
    start = random.randrange(span)
    candidates += [min_port + (start + i) % span for i in range(span)]
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    for port in candidates:
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.bind((ip, port))
        except OSError:
            sock.close()
            continue
        _tune(sock)
        return sock
    raise NoFreePort(f"no free UDP port on {ip} in {min_port}-{max_port}")


def _tune(sock: socket.socket) -> None:
    sock.setblocking(False)
    for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        try:
            sock.setsockopt(socket.SOL_SOCKET, opt, SO_BUFFER)
        except OSError:  # pragma: no cover - capped by the kernel, not fatal
            pass


class UdpEndpoint:
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        buf: bytearray,
        ip: str,
        min_port: int,
        max_port: int,
        on_datagram: Callable[[int], None],
        on_datagram_from: Callable[[int, tuple], None],
        after_drain: Callable[[], None],
        name: str = "udp",
        recv_batch: RecvBatch | None = None,
        native_drain: Callable[[int, Callable[[int], None]], tuple[int, int, int]] | None = None,
    ) -> None:
        self._loop = loop
        # recvmmsg for the connected socket (workers/sendbatch.py), None: recv_into per packet.
        self._rbatch = recv_batch
        # The native drain of the connected socket (Forwarder.native_drain: recvmmsg and the
        # common receive in C, the rest to on_datagram), None: the Python drains below.
        self._native_drain = native_drain
        self._buf = buf
        self._on_datagram = on_datagram
        self._on_datagram_from = on_datagram_from
        self._after_drain = after_drain
        self.name = name
        self._open = bind_udp(ip, min_port, max_port)
        if HAS_REUSEPORT:
            self._open.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        self.local: tuple[str, int] = self._open.getsockname()[:2]
        self.ipv6 = self._open.family == socket.AF_INET6
        self._conn: socket.socket | None = None
        self.remote: tuple[str, int] | None = None
        self._datagrams_in = 0
        self._octets_in = 0
        self._recv_errors = 0
        # The connected socket's NativeReader when the native selector drains it, else None.
        self._reader: Any = None
        loop.add_reader(self._open.fileno(), self._drain_open)

    # -- remote -------------------------------------------------------------------------

    def connect(self, remote: tuple[str, int]) -> None:
        """Send to and take the fast receive path from `remote` from now on. On failure
        (OSError) the endpoint keeps its previous remote."""
        if not HAS_REUSEPORT:  # pragma: no cover - Linux has it; elsewhere connect in place
            self._open.connect(remote)
            self.remote = remote
            return
        sock = socket.socket(self._open.family, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind(self.local)
            sock.connect(remote)
            _tune(sock)
        except OSError:
            sock.close()
            raise
        self._close_conn()
        self._conn = sock
        self.remote = remote
        # Between bind and connect the twin was an unconnected member of the port and may
        # have queued a stranger's datagram: sort what is queued by source once.
        self._drain_from(sock)
        if not self._add_native(sock):
            self._loop.add_reader(sock.fileno(), self._drain_connected)

    def _add_native(self, sock: socket.socket) -> bool:
        """Have the native selector drain `sock` in C, if the loop runs on one and this
        endpoint has a native drain (a partial of Receiver.drain with its source and secure:
        Forwarder.native_drain)."""
        drain = self._native_drain
        selector = native_loop.selector_of(self._loop)
        if selector is None or not isinstance(drain, functools.partial) or len(drain.args) != 2:
            return False
        source, secure = drain.args
        self._reader = selector.add_native(
            sock.fileno(), drain.func.__self__, source, secure, self._on_datagram, self._after_drain
        )
        return True

    # -- counters (a NativeReader's included) ---------------------------------------------

    @property
    def datagrams_in(self) -> int:
        r = self._reader
        return self._datagrams_in + (r.datagrams if r is not None else 0)

    @property
    def octets_in(self) -> int:
        r = self._reader
        return self._octets_in + (r.octets if r is not None else 0)

    @property
    def recv_errors(self) -> int:
        r = self._reader
        return self._recv_errors + (r.errors if r is not None else 0)

    def disconnect(self) -> None:
        """Forget the remote: nothing is sent until the next connect()."""
        self._close_conn()

    def _close_conn(self) -> None:
        if self._conn is not None:
            r = self._reader
            if r is not None:  # drained by the native selector: keep its counts
                self._reader = None
                selector = native_loop.selector_of(self._loop)
                if selector is not None:
                    selector.remove_native(self._conn.fileno())
                self._datagrams_in += r.datagrams
                self._octets_in += r.octets
                self._recv_errors += r.errors
            else:
                self._loop.remove_reader(self._conn.fileno())
            self._conn.close()
            self._conn = None
        self.remote = None

    @property
    def send(self) -> Callable[[object], int] | None:
        """The connected socket's send, or None before connect()."""
        if self._conn is not None:
            return self._conn.send
        if self.remote is not None:  # pragma: no cover - no SO_REUSEPORT
            return self._open.send
        return None

    @property
    def send_fd(self) -> int:
        """The connected socket's fd (what `send` sends on), -1 without one."""
        return self._conn.fileno() if self._conn is not None else -1

    def sendto(self, data: bytes, addr: tuple[str, int]) -> None:
        """Send from the local port to any address (STUN answers to candidate pairs)."""
        self._open.sendto(data, addr)

    # -- readers ------------------------------------------------------------------------

    def _drain_connected(self) -> None:
        sock = self._conn
        if sock is None:
            return
        native = self._native_drain
        if native is not None:
            count, octets, errors = native(sock.fileno(), self._on_datagram)
            self._datagrams_in += count
            self._octets_in += octets
            self._recv_errors += errors
            self._after_drain()
            return
        rb = self._rbatch
        if rb is not None:
            self._drain_batched(sock, rb)
            return
        recv_into = sock.recv_into
        buf = self._buf
        handler = self._on_datagram
        count = 0
        octets = 0
        for _ in range(DRAIN):
            try:
                n = recv_into(buf)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:  # ICMP error of an earlier send (ECONNREFUSED...): consumed
                self._recv_errors += 1
                continue
            count += 1
            octets += n
            handler(n)
        self._datagrams_in += count
        self._octets_in += octets
        self._after_drain()

    def _drain_batched(self, sock: socket.socket, rb: RecvBatch) -> None:
        """The connected socket's drain with one recvmmsg (up to DRAIN datagrams)."""
        fd = sock.fileno()
        k = rb.recv(fd)
        tries = 1
        while k < 0 and tries < 4:  # an ICMP error of an earlier send (ECONNREFUSED...): consumed
            self._recv_errors += 1
            k = rb.recv(fd)
            tries += 1
        buf = self._buf
        handler = self._on_datagram
        view = rb.view
        length = rb.length
        octets = 0
        count = 0
        for i in range(k):
            n = length(i)
            if n < 0:  # larger than a slot: not a media packet we take
                self._recv_errors += 1
                continue
            start = i * RECV_SLOT
            buf[:n] = view[start : start + n]
            count += 1
            octets += n
            handler(n)
        self._datagrams_in += count
        self._octets_in += octets
        self._after_drain()

    def _drain_open(self) -> None:
        self._drain_from(self._open)

    def _drain_from(self, sock: socket.socket) -> None:
        recvfrom_into = sock.recvfrom_into
        buf = self._buf
        count = 0
        octets = 0
        for _ in range(DRAIN):
            try:
                n, addr = recvfrom_into(buf)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self._recv_errors += 1
                continue
            count += 1
            octets += n
            if addr == self.remote or (self.ipv6 and addr[:2] == self.remote):  # v6: 4-tuples
                self._on_datagram(n)
            else:
                self._on_datagram_from(n, addr)
            if sock.fileno() < 0:  # the handler closed us
                break
        self._datagrams_in += count
        self._octets_in += octets
        self._after_drain()

    # -- end ----------------------------------------------------------------------------

    def close(self) -> None:
        self._close_conn()
        if self._open.fileno() >= 0:
            self._loop.remove_reader(self._open.fileno())
            self._open.close()

    def dump(self) -> dict:
        return {
            "local": list(self.local),
            "remote": list(self.remote) if self.remote else None,
            "connected": self._conn is not None,
            "datagramsIn": self.datagrams_in,
            "octetsIn": self.octets_in,
            "recvErrors": self.recv_errors,
        }
