"""The worker's event loop with the common drain in C (workers/_native_loop.c).

A worker's asyncio loop runs on a `NativeSelector`: a selectors.EpollSelector whose wait is
`NativeLoop.select` of the native core. Every fd asyncio registers (ZeroMQ's, the pipes', the
open UDP sockets, the self-pipe, the signal wakeup fd) stays Python's, served as before. A
transport's connected socket with a native drain (udp.py) is added with `add_native`
instead of `loop.add_reader`: when it is readable, C runs the drain (recvmmsg, SRTP
unprotect, the common receive, the rest to the transport's handler in order) and the
fan-out's flush, with no Python frame and no asyncio Handle, and keeps waiting until asyncio's
timeout or a Python fd is ready. A drain that ran Python code calls the forwarder's
`after_drain` and returns to asyncio (its callbacks and timers may have changed).

`new_event_loop()` builds such a loop when the native core has it, `selector_of(loop)` finds
it from a transport. Without the native core, or with `native_loop = false`, the worker runs
asyncio's default loop and udp.py's Python readers, unchanged.
"""

from __future__ import annotations

import asyncio
import logging
import selectors
from collections.abc import Callable
from typing import Any

from tureen.workers import native

log = logging.getLogger("tureen.workers.native_loop")

_EPOLLIN = 0x001
_EPOLLOUT = 0x004


def available() -> bool:
    """True when the native core is built and has the NativeLoop."""
    return native._native is not None and hasattr(native._native, "NativeLoop")


class NativeSelector(selectors.EpollSelector):
    """selectors.EpollSelector whose select() is NativeLoop.select: Python's fds as before,
    plus native readers drained in C while it waits."""

    def __init__(self) -> None:
        if not available():
            raise RuntimeError(f"the native loop needs the native core: {native.WHY_NOT}")
        super().__init__()
        # The asyncio loop on this selector, for on_error's report (new_event_loop sets it).
        self.loop: asyncio.AbstractEventLoop | None = None
        self._native = native._native.NativeLoop(self._selector.fileno(), self._on_error)

    def add_native(
        self,
        fd: int,
        receiver: Any,
        source: Any,
        secure: bool,
        handler: Callable[[int], None],
        after_drain: Callable[[], None],
    ) -> Any:
        """Drain the connected socket `fd` of `source` in C (Receiver.drain(source, secure, fd,
        handler), then the flush, or `after_drain()` when Python ran); returns its
        NativeReader (counters: datagrams, octets, errors). Call `remove_native(fd)` before
        closing the socket."""
        return self._native.add(fd, receiver, source, secure, handler, after_drain)

    def has_pipes(self) -> bool:
        """True when this native core drains pipe connections too (add_pipe)."""
        return hasattr(self._native, "add_pipe")

    def add_pipe(
        self,
        fd: int,
        receiver: Any,
        hub: Any,
        rbuf: bytearray,
        lookup: Callable[[int], Any],
        on_discontinuity: Callable[[Any], None],
        limit: int,
        on_status: Callable[[int], None],
        after_drain: Callable[[], None],
    ) -> Any:
        """Drain the pipe connection `fd` (an origin's, accepted by the PipeHub `hub`) in C:
        receiver.pipe_drain(hub, fd, rbuf, lookup, on_discontinuity, limit), then the flush,
        or `after_drain()` when Python ran; `on_status(status)` when the origin closed (-1)
        or the receive failed (its errno): it must remove the reader (`remove_native`)."""
        return self._native.add_pipe(
            fd, receiver, hub, rbuf, lookup, on_discontinuity, limit, on_status, after_drain
        )

    def remove_native(self, fd: int) -> Any:
        """Stop draining `fd`; its NativeReader (final counters), or None."""
        return self._native.remove(fd)

    def native_readers(self) -> int:
        """How many sockets are drained in C."""
        return self._native.readers()

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        wait = -1.0 if timeout is None else max(float(timeout), 0.0)
        ready = []
        for fd, event in self._native.select(wait):
            # as selectors.EpollSelector.select: an error or hang-up wakes both directions
            events = 0
            if event & ~_EPOLLIN:
                events |= selectors.EVENT_WRITE
            if event & ~_EPOLLOUT:
                events |= selectors.EVENT_READ
            key = self._fd_to_key.get(fd)
            if key:
                ready.append((key, events & key.events))
        return ready

    def close(self) -> None:
        self._native.close()
        super().close()

    def _on_error(self, exc: BaseException, reader: Any) -> None:
        """A native reader's drain raised: reported as asyncio reports a callback's
        exception; the loop goes on."""
        context = {
            "message": f"Exception in the native drain of fd {reader.fd}",
            "exception": exc,
        }
        if self.loop is not None:
            self.loop.call_exception_handler(context)
        else:  # pragma: no cover - a selector outside new_event_loop
            log.error(context["message"], exc_info=exc)


def new_event_loop() -> asyncio.AbstractEventLoop:
    """An asyncio loop on a NativeSelector (RuntimeError without the native core)."""
    selector = NativeSelector()
    loop = asyncio.SelectorEventLoop(selector)
    selector.loop = loop
    return loop


def selector_of(loop: asyncio.AbstractEventLoop) -> NativeSelector | None:
    """The NativeSelector `loop` runs on, or None (asyncio's default loop)."""
    selector = getattr(loop, "_selector", None)
    return selector if isinstance(selector, NativeSelector) else None
