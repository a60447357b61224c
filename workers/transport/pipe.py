"""The cross-worker pipe: a producer's packets, after ingest rewrite, to other workers.

Worker I listens on a Unix SOCK_SEQPACKET socket at {run_dir}/pipe-{I}.ipc. `pipe.open
{producerId, workerIndex}` connects one socket per destination worker (shared by all
producers piped there; a `PipeLink`) and adds a PipeBatch for (producer, destination) to the
producer's streams. The forwarder appends one copy of each packet to the batch; after each
socket drain every batch that got packets goes out as ONE datagram:

    bytes 0-3   producerId, big-endian
    then        the drain's packets, each as a 2-byte big-endian length and the packet
                (ingest-rewritten RTP: room PT, room extension ids; never RTCP: each
                worker sends its own consumers their sender reports)

A drain bigger than MAX_MESSAGE is split at packet boundaries. A datagram of the 4 bytes
alone marks a discontinuity: the producer was paused at the origin, so consumers on the
destination resync their sequence numbers before the next packet (extension of
docs/internals.md; a destination that ignores it still forwards correctly).

With the native receive (docs/internals.md "The native receive") both ends run in C
(workers/_native_pipe.c): the origin's receive appends a packet to its PipeBatches (when all
of a stream's pipes are PipeBatch, not a host leg's LegOut), and the destination's drain
(`PipeHub.native_drain`) reads, parses and forwards the datagrams, with the same framing,
bounds checks and counters as the Python code here, which runs without it.

With the native loop as well (workers/native_loop.py, `native_loop`), neither end returns to
asyncio for a packet: the loop's flush after a drain sends the dirty PipeBatches in C
(_native_pipe.c `pipe_flush_dirty`: the same datagram, the same counters as PipeBatch.flush;
a link without a socket, a batch to split or a send failing other than with EAGAIN is left to
the Python flush), and the connections PipeHub accepts are native readers of the loop
(`NativeSelector.add_pipe`), drained by the native pipe drain without a Python frame; an
origin that closes, or a failed receive, calls PipeHub back (`_on_native_status`), which
drops the connection.

Why a Unix socket and not ZeroMQ (it was PUSH/PULL over ipc:// until issue 17): a ZeroMQ
message crosses two I/O threads (the origin's, which writes the ipc socket, and the
destination's, which reads it and wakes the destination's thread through its mailbox), so a
packet waited for three wake-ups instead of one: on a busy or shared core each is a
scheduler slice, and the hop added 2-4 ms at the median (docs/benchmarks.md, "The pipe
hop"). Here the origin's thread writes straight into the destination's socket, and the
destination's event loop reads it: one wake-up, no extra thread.

SEQPACKET rather than DGRAM: connected both ways, so the only limit on what waits for the
destination is the origin's send buffer (PIPE_SNDBUF bytes, capped by net.core.wmem_max),
where an unconnected datagram receiver takes at most net.unix.max_dgram_qlen (10) datagrams.
When the destination does not keep up, the send fails with EAGAIN and the batch is dropped
and counted (pipeDropped): the data path never blocks. A destination that is gone (EPIPE,
ECONNREFUSED, no socket file yet) costs the same drop; the link reconnects on a later
flush, at most every RECONNECT_S.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import socket
import struct
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tureen.workers import native_loop

if TYPE_CHECKING:
    import asyncio

    from tureen.workers.forward import Forwarder
    from tureen.workers.router import Producer

log = logging.getLogger("tureen.workers.pipe")

PIPE_SNDBUF = 4 << 20  # bytes queued per destination before dropping (the kernel caps it)
MAX_MESSAGE = 128 << 10  # bytes per datagram; bigger drains are split at packet boundaries
RECONNECT_S = 0.5  # a link whose destination is gone retries no more often than this
DRAIN = 64  # datagrams per wake-up before the reader yields to the loop
_HEADER = 4  # producerId
_RECORD = 2  # bytes of length before each packet
# The length prefixes of every packet size a UDP datagram of RTP has, made once.
LEN_PREFIX = tuple(n.to_bytes(_RECORD, "big") for n in range(2048))
_SEND_FLAGS = socket.MSG_DONTWAIT | socket.MSG_NOSIGNAL
_unpack_id = struct.Struct("!I").unpack_from


def pipe_path(run_dir: str, index: int) -> str:
    return os.path.join(run_dir, f"pipe-{index}.ipc")


class PipeLink:
    """The origin's connected socket to one destination worker's pipe."""

    __slots__ = ("path", "sock", "retry_at", "users")

    def __init__(self, path: str) -> None:
        self.path = path
        self.sock: socket.socket | None = None
        self.retry_at = 0.0
        self.users = 0
        self._connect()

    def _connect(self) -> socket.socket | None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, PIPE_SNDBUF)
            sock.setblocking(False)  # first: a full listen backlog must not block the worker
            sock.connect(self.path)  # non-blocking Unix connect: done at once, or EAGAIN
        except OSError as exc:
            sock.close()
            self.retry_at = time.monotonic() + RECONNECT_S
            log.warning("pipe %s: cannot connect (%s); retrying every %.1f s while packets come",
                        self.path, exc, RECONNECT_S)
            return None
        self.sock = sock
        return sock

    def send(self, data: bytes | bytearray | memoryview) -> bool:
        """One datagram, never blocking. False: dropped (the destination is behind, or gone)."""
        sock = self.sock
        if sock is None:
            if time.monotonic() < self.retry_at:
                return False
            sock = self._connect()
            if sock is None:
                return False
        try:
            sock.send(data, _SEND_FLAGS)
        except BlockingIOError:  # the destination is not keeping up: its queue is full
            return False
        except OSError as exc:  # EPIPE / ECONNRESET: the destination went away
            log.warning("pipe %s: %s; reconnecting", self.path, exc)
            self.close()
            self.retry_at = time.monotonic() + RECONNECT_S
            return False
        return True

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


class PipeBatch:
    """The packets of one drain for one (producer, destination worker). `out` starts with
    the 4-byte header; the forwarder appends records to it inline (forward.py, or the native
    receive: workers/_native_pipe.c, which needs `out` a bytearray and `count` an int in
    __slots__), and lists the batch in `Forwarder.dirty` when it gets its first one (`count`
    0 -> 1)."""

    __slots__ = ("producer_id", "dest", "header", "out", "count", "link")

    def __init__(self, producer_id: int, dest: int, link: PipeLink) -> None:
        self.producer_id = producer_id
        self.dest = dest
        self.header = producer_id.to_bytes(_HEADER, "big")
        self.out = bytearray(self.header)
        self.count = 0
        self.link = link

    @property
    def pending(self) -> bool:
        return self.count > 0

    def flush(self, fwd: Forwarder) -> None:
        count = self.count
        self.count = 0
        out = self.out
        sock = self.link.sock
        try:
            if sock is not None and len(out) <= MAX_MESSAGE:
                messages = 1
                try:  # the common case inline; PipeLink.send handles a failed link
                    sock.send(out, _SEND_FLAGS)
                    sent = True
                except BlockingIOError:  # the destination is not keeping up
                    sent = False
                except OSError:
                    sent = self.link.send(out)
            elif len(out) <= MAX_MESSAGE:
                sent, messages = self.link.send(out), 1
            else:
                sent, messages = self._send_split()
        finally:
            del out[_HEADER:]
        if not sent:
            fwd.pipe_dropped += count
            return
        fwd.pipe_packets_out += count
        fwd.pipe_messages_out += messages

    def _send_split(self) -> tuple[bool, int]:
        """A drain too big for one datagram: several, each the header and whole records.
        Returns (all sent, datagrams)."""
        out = self.out
        start, off, end, parts, ok = _HEADER, _HEADER, len(out), 0, True
        while off < end:
            n = (out[off] << 8) | out[off + 1]
            if off > start and off + _RECORD + n - start + _HEADER > MAX_MESSAGE:
                ok = self.link.send(self.header + out[start:off]) and ok
                parts += 1
                start = off
            off += _RECORD + n
        ok = self.link.send(self.header + out[start:end]) and ok
        return ok, parts + 1

    def mark_discontinuity(self, fwd: Forwarder) -> None:
        if self.count:  # keep order: queued packets before the mark
            self.flush(fwd)
            fwd.dirty.remove(self)
        self.link.send(self.header)


class PipeHub:
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        run_dir: str,
        index: int,
        forwarder: Forwarder,
        lookup: Callable[[int], Producer | None],
        on_discontinuity: Callable[[Producer], None],
    ) -> None:
        self._loop = loop
        self._run_dir = run_dir
        self.index = index
        self._fwd = forwarder
        self._lookup = lookup
        self._on_discontinuity = on_discontinuity
        self.path = pipe_path(run_dir, index)
        with contextlib.suppress(FileNotFoundError):  # a stale socket file of a dead worker
            os.unlink(self.path)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.listener.setblocking(False)
        self.listener.bind(self.path)
        self.listener.listen(64)
        loop.add_reader(self.listener.fileno(), self._accept)
        self._conns: dict[int, socket.socket] = {}  # fd -> an origin's connection
        self._native_fds: set[int] = set()  # the connections the native loop drains
        self._rbuf = bytearray(MAX_MESSAGE)
        self._rview = memoryview(self._rbuf)
        self._links: dict[int, PipeLink] = {}  # dest -> link
        self.bad_messages = 0
        # The drain in C (workers/_native_pipe.c: the same datagrams, records and counters as
        # `_drain_python`, each packet given to the native receive) when the forwarder has
        # the native receive; None: the Python drain.
        rx = getattr(forwarder, "rx", None)
        self.native_drain: Callable[..., int] | None = getattr(rx, "pipe_drain", None)
        # The loop's native selector, when it has native pipe readers and the drain is native:
        # accepted connections are then drained by the loop in C (no asyncio reader).
        selector = native_loop.selector_of(loop)
        self._selector = (
            selector if selector is not None and self.native_drain is not None and selector.has_pipes()
            else None
        )

    # -- sending side -------------------------------------------------------------------

    def open(self, producer_id: int, dest: int) -> PipeBatch:
        link = self._links.get(dest)
        if link is None:
            link = self._links[dest] = PipeLink(pipe_path(self._run_dir, dest))
            log.info("pipe to worker %d opened", dest)
        link.users += 1
        return PipeBatch(producer_id, dest, link)

    def close_batch(self, batch: PipeBatch) -> None:
        if batch.pending:
            batch.flush(self._fwd)
            self._fwd.dirty.remove(batch)
        link = batch.link
        link.users -= 1
        if link.users > 0:
            return
        if self._links.get(batch.dest) is link:
            del self._links[batch.dest]
        link.close()
        log.info("pipe to worker %d closed", batch.dest)

    # -- receiving side -----------------------------------------------------------------

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except BlockingIOError:
                return
            except OSError as exc:  # ECONNABORTED, EMFILE: the origin retries on its next flush
                log.warning("pipe %s: accept failed: %s", self.path, exc)
                return
            conn.setblocking(False)
            fd = conn.fileno()
            self._conns[fd] = conn
            if self._selector is not None:
                self._selector.add_pipe(
                    fd, self._fwd.rx, self, self._rbuf, self._lookup, self._on_discontinuity,
                    DRAIN, functools.partial(self._on_native_status, conn), self._fwd.after_drain,
                )
                self._native_fds.add(fd)
            else:
                self._loop.add_reader(fd, self._drain, conn)

    def _drain(self, conn: socket.socket) -> None:
        native = self.native_drain
        if native is None:
            self._drain_python(conn)
            return
        try:
            status = native(self, conn.fileno(), self._rbuf, self._lookup, self._on_discontinuity, DRAIN)
        finally:
            self._fwd.after_drain()
        if status:
            self._on_native_status(conn, status)

    def _on_native_status(self, conn: socket.socket, status: int) -> None:
        """A native pipe drain (the loop's, or `_drain`'s) ended on `conn`: -1, the origin
        closed its link; else the errno of a failed receive. The connection is dropped."""
        if status > 0:
            log.info("pipe %s: an origin's connection failed: %s", self.path, os.strerror(status))
        self._drop(conn)

    def _drain_python(self, conn: socket.socket) -> None:
        rbuf, recv = self._rbuf, conn.recv_into
        size = len(rbuf)
        try:
            for _ in range(DRAIN):
                try:
                    n = recv(rbuf, size, socket.MSG_TRUNC)
                except BlockingIOError:
                    break
                except OSError as exc:  # ECONNRESET: the origin died
                    log.info("pipe %s: an origin's connection failed: %s", self.path, exc)
                    self._drop(conn)
                    break
                if n == 0:  # the origin closed its link
                    self._drop(conn)
                    break
                if n > size:  # longer than any origin sends: cut, never parsed
                    self.bad_messages += 1
                    continue
                self._on_message(n)
        finally:
            self._fwd.after_drain()

    def _drop(self, conn: socket.socket) -> None:
        fd = conn.fileno()
        if fd in self._native_fds:
            self._native_fds.discard(fd)
            if self._selector is not None:
                self._selector.remove_native(fd)
        else:
            self._loop.remove_reader(fd)
        self._conns.pop(fd, None)
        conn.close()

    def _on_message(self, end: int) -> None:
        fwd = self._fwd
        data = self._rbuf
        if end < _HEADER:
            self.bad_messages += 1
            return
        producer = self._lookup(_unpack_id(data)[0])
        if producer is None or not producer.piped:
            fwd.pipe_unknown_producer += 1
            return
        if end == _HEADER:
            self._on_discontinuity(producer)
            return
        mv = self._rview
        buf = fwd.buf
        receive = fwd.receive
        off = _HEADER
        count = 0
        while off < end:
            if off + _RECORD > end:
                self.bad_messages += 1
                break
            n = (data[off] << 8) | data[off + 1]
            off += _RECORD
            if off + n > end:  # a torn record: never read past the datagram
                self.bad_messages += 1
                break
            buf[:n] = mv[off : off + n]  # n < 65536 <= len(buf): never resizes it
            off += n
            count += 1
            receive(producer, n)
        fwd.pipe_packets_in += count

    def dump(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "destinations": {str(d): link.users for d, link in self._links.items()},
            "connected": {str(d): link.sock is not None for d, link in self._links.items()},
            "origins": len(self._conns),
            "nativeOrigins": len(self._native_fds),
            "badMessages": self.bad_messages,
        }

    def close(self) -> None:
        self._loop.remove_reader(self.listener.fileno())
        for conn in list(self._conns.values()):
            self._drop(conn)
        for link in self._links.values():
            link.close()
        self._links.clear()
        self.listener.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
