"""The optional native fan-out core (workers/_native.c), or its pure-Python stand-ins.

`setup.py` builds `tureen.workers._native` at install time when a C compiler and the Python
headers are there (`optional=True`: without them the install still succeeds). This module is
the one place that knows whether it was built:

- `RewriteCore`: the base class of rtp/consumer.ConsumerRewrite. Native: a C type holding the
  fields the fan-out reads and writes (fd, ssrc, offsets, sync, srtp_tx, counters) in a C
  struct, so the C loop reads them without attribute lookups and Python sees the same values.
  Without the build: a Python class with the same slots. Python code cannot tell them apart.
- `make_fanout(mode)`: the forwarder's batch for the worker's `fanout` setting ("auto",
  "native", "python"): the native `FanOut`, or None (the forwarder then picks SendBatch).
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)

try:
    from tureen.workers import _native  # type: ignore[attr-defined]
except ImportError as exc:  # not built (no compiler at install), or built for another Python
    _native = None
    WHY_NOT = f"tureen.workers._native is not built ({exc}); reinstall with a C compiler"
else:
    WHY_NOT = ""


if _native is not None:
    RewriteCore: Any = _native.RewriteCore
else:

    class RewriteCore:  # type: ignore[no-redef]
        """The fields the fan-out reads and writes (see workers/_native.c's RewriteCore)."""

        __slots__ = (
            "fd",
            "ssrc",
            "seq_offset",
            "ts_offset",
            "sync",
            "srtp_tx",
            "packets",
            "octets",
            "payload_octets",
            "send_errors",
        )

        def __init__(self) -> None:
            self.fd = -1
            self.sync = True


def available() -> bool:
    return _native is not None


def _libsrtp_address(name: str) -> int:
    """Address of libsrtp's `name` inside pylibsrtp's cffi module (0: not callable as
    `int name(srtp_t, void *, int *)`, i.e. a libsrtp other than 2.x)."""
    from pylibsrtp._binding import ffi, lib

    if ffi.getctype(ffi.typeof(getattr(lib, name))) != "srtp_err_status_t(*)(struct srtp_ctx_t_ *, void *, int *)":
        return 0
    return int(ffi.cast("uintptr_t", ffi.addressof(lib, name)))


def srtp_protect_address() -> int:
    """Address of libsrtp's srtp_protect (the native fan-out's SRTP copies), 0: not libsrtp 2's."""
    return _libsrtp_address("srtp_protect")


def srtp_unprotect_address() -> int:
    """Address of libsrtp's srtp_unprotect (the native drain's), 0: not libsrtp 2's."""
    return _libsrtp_address("srtp_unprotect")


def make_fanout(mode: str, uring: bool = True) -> Any | None:
    """The native FanOut for `mode` "auto"/"native" when built, None for "python" or when it
    is missing in "auto". "native" without the build raises RuntimeError (the worker exits
    with that message). `uring`: send each flush with io_uring (one system call for every
    consumer's copies) where the kernel allows it, else one sendmmsg per consumer."""
    if mode == "python":
        return None
    if _native is None:
        if mode == "native":
            raise RuntimeError(f"fanout = native, but {WHY_NOT}")
        return None
    from tureen.workers.sendbatch import send_one

    protect = srtp_protect_address()
    if protect == 0:  # the native core could not protect SRTP copies: run the Python core
        if mode == "native":
            raise RuntimeError("fanout = native, but pylibsrtp's srtp_protect is not libsrtp 2's")
        log.warning("pylibsrtp's srtp_protect is not libsrtp 2's: the Python fan-out core runs")
        return None
    return _native.FanOut(protect, send_one, uring=uring)


def make_receiver(fanout: Any, forwarder: Any, fallback: Any, store_mask: int, drain: int) -> Any:
    """The native receive of `forwarder` (workers/_native_rx.c, Receiver) around the native
    `fanout`: its `receive(source, n)` forwards the common case in C and hands every other
    packet to `fallback(source, n)` (Forwarder.receive_python); its `drain(source, secure,
    fd, handler)` reads up to `drain` datagrams of a socket with one recvmmsg and takes each
    the same way, SRTP unprotected in C for a secure source."""
    if _native is None:  # pragma: no cover - the caller checks the core first
        raise RuntimeError(WHY_NOT)
    return _native.Receiver(fanout, forwarder, fallback, store_mask, unprotect_address=srtp_unprotect_address(), drain=drain)
