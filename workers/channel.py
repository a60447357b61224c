"""ZeroMQ sockets on the worker's asyncio loop, without zmq.asyncio and without per-message
futures: a reader callback on the socket's FD that drains with NOBLOCK.

The ZMQ_FD of a socket is edge-like: it signals that *something* changed, and any operation
on the socket (a send included) may consume that signal while messages wait. So a reader
drains until EAGAIN; when it stops early (fairness limit) it reschedules itself; and after a
send on a socket that is also read, `poke()` checks ZMQ_EVENTS and reschedules the reader if
input is pending. The worker's housekeeping timer pokes every reader too, as a last resort.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import zmq
from tureen.shared import wire

log = logging.getLogger("tureen.workers.channel")


class ZmqReader:
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: zmq.Socket,
        on_message: Callable[[list[bytes]], None],
        limit: int = 64,
        after_drain: Callable[[], None] | None = None,
    ) -> None:
        self._loop = loop
        self._sock = sock
        self._on_message = on_message
        self._limit = limit
        self._after_drain = after_drain
        self._scheduled = False
        self._fd = sock.getsockopt(zmq.FD)
        loop.add_reader(self._fd, self._drain)

    def _drain(self) -> None:
        self._scheduled = False
        sock = self._sock
        if sock.closed:
            return
        recv = sock.recv_multipart
        handle = self._on_message
        for _ in range(self._limit):
            try:
                frames = recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            handle(frames)
            if sock.closed:
                return
        else:
            self._schedule()
        if self._after_drain is not None:
            self._after_drain()

    def _schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._drain)

    def poke(self) -> None:
        """Reschedule the reader if input waits (call after sending on the same socket)."""
        if not self._sock.closed and self._sock.getsockopt(zmq.EVENTS) & zmq.POLLIN:
            self._schedule()

    def close(self) -> None:
        self._loop.remove_reader(self._fd)


class SupervisorChannel:
    """The worker's DEALER to the supervisor: JSON requests in, replies and events out."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        ctx: zmq.Context,
        endpoint: str,
        on_frame: Callable[[bytes], None],
    ) -> None:
        self.endpoint = endpoint
        self.sock = ctx.socket(zmq.DEALER)
        # Replies and events must not be dropped while the supervisor is busy; if it is gone
        # for good the worker exits by itself (parent check), so memory stays bounded.
        self.sock.setsockopt(zmq.SNDHWM, 100_000)
        self.sock.setsockopt(zmq.LINGER, 2000)
        self.sock.connect(endpoint)
        self._on_frame = on_frame
        self.reader = ZmqReader(loop, self.sock, self._on_message)
        self.send_failures = 0

    def _on_message(self, frames: list[bytes]) -> None:
        for frame in frames:  # one JSON object per frame
            self._on_frame(frame)

    def send(self, message: dict) -> None:
        try:
            self.sock.send(wire.encode(message), zmq.NOBLOCK)
        except zmq.Again:
            self.send_failures += 1
            log.error("channel %s is full; dropped %s", self.endpoint, message.get("event") or message.get("id"))
        except zmq.ZMQError as exc:
            self.send_failures += 1
            log.error("channel %s: send failed: %s", self.endpoint, exc)
        self.reader.poke()

    def close(self) -> None:
        self.reader.close()
        self.sock.close()
