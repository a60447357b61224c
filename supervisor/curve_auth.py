"""CURVE authentication of the control API: the server's keys and the ZAP handler.

The control ROUTER becomes a CURVE server; libzmq asks the ZAP handler (pyzmq's
AsyncioAuthenticator, on the supervisor's event loop) about every new connection, and the
handler accepts a client only when its public key is in the clients folder. The folder is
re-read when it changed, checked on each new connection: adding or removing a NAME.key file
takes effect for the next connection, without a restart or a signal (docs/security.md).
Connections that were accepted stay until they close.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import time
from pathlib import Path
from typing import Any

import zmq
import zmq.asyncio
from tureen.shared.curve import key_prefix, load_key_pair
from zmq.auth.asyncio import AsyncioAuthenticator
from zmq.utils.monitor import parse_monitor_message

log = logging.getLogger("tureen.auth")

ZAP_DOMAIN = b"tureen-control"
HANGUP_ERRNOS = (errno.EPIPE, errno.ECONNRESET)  # a handshake that failed because the peer left


def handshake_refusal(event: dict[str, Any]) -> tuple[str, str]:
    """(kind, log line) for a failed handshake the socket monitor reported (libzmq tells no
    address for these). A client without CURVE sees our greeting's mechanism and closes,
    often before we read its own greeting: then we see only EPIPE or ECONNRESET, not the
    mismatch. Each case has its own kind, so one never hides another's line."""
    value = event.get("value")
    if value == zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH:
        return "no-curve", "CURVE: refused a client that does not use CURVE"
    if event.get("event") == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL and value in HANGUP_ERRNOS:
        return "hangup", "CURVE: a client hung up during the handshake (one that does not use CURVE leaves so)"
    return "handshake", f"CURVE: a client's handshake failed (a wrong server key, or not ZeroMQ; code {value})"


class RateLimitedWarning:
    """Per `window` seconds: one warning per kind (e.g. per client key; a refused client
    retries every 100 ms) and at most `burst` in all; the rest are counted and summed up in one
    line when the next window opens, so a flood of bad clients cannot flood the log."""

    def __init__(self, burst: int = 10, window: float = 60.0) -> None:
        self.burst = burst
        self.window = window
        self._window_start = -window
        self._kinds: set[str] = set()
        self.suppressed = 0

    def warning(self, kind: str, message: str, *args: Any) -> None:
        now = time.monotonic()
        if now - self._window_start >= self.window:
            if self.suppressed:
                log.warning("%d more refused connections in the last %.0f s were not logged", self.suppressed, self.window)
            self._window_start, self.suppressed = now, 0
            self._kinds.clear()
        if kind not in self._kinds and len(self._kinds) < self.burst:
            self._kinds.add(kind)
            log.warning(message, *args)
        else:
            self.suppressed += 1


class AllowedKeys:
    """The public keys in a folder of certificates (*.key, as `tureen keys generate` writes)."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self._signature: object = None
        self.keys: frozenset[bytes] = frozenset()
        # Each key's file names without ".key" (h1.key -> "h1"): a host's name is bound to
        # its key (supervisor/hosts.py). A key copied into two files has both names.
        self.names: dict[bytes, frozenset[str]] = {}

    def _scan(self) -> tuple[tuple[str, int, int, int], ...]:
        entries = []
        with os.scandir(self.directory) as it:
            for entry in it:
                if entry.name.endswith(".key") and entry.is_file():
                    st = entry.stat()
                    entries.append((entry.name, st.st_mtime_ns, st.st_size, st.st_ino))
        return tuple(sorted(entries))

    def refresh(self) -> frozenset[bytes]:
        """Re-read the folder if a *.key file was added, removed or changed; the keys now."""
        try:
            signature: object = self._scan()
        except OSError as exc:
            signature = str(exc)
            if signature != self._signature:
                log.error("cannot read the CURVE clients folder %s (%s): every client is refused", self.directory, exc)
                self._signature, self.keys = signature, frozenset()
            return self.keys
        if signature == self._signature:
            return self.keys
        names: dict[bytes, set[str]] = {}
        for name, *_ in signature:  # type: ignore[attr-defined]
            path = self.directory / name
            try:
                public, _secret = zmq.auth.load_certificate(path)
            except (OSError, ValueError) as exc:
                log.warning("CURVE clients folder: skipped %s: %s", path, exc)
                continue
            names.setdefault(public, set()).add(name.removesuffix(".key"))
        self._signature, self.keys = signature, frozenset(names)
        self.names = {key: frozenset(n) for key, n in names.items()}
        log.info("CURVE: %d client keys allowed (from %s)", len(self.keys), self.directory)
        return self.keys


    def names_of(self, key: bytes) -> frozenset[str]:
        """The names (key file stems) of Z85 public key `key` in the folder as it is now."""
        self.refresh()
        return self.names.get(key, frozenset())


class ControlAuthenticator(AsyncioAuthenticator):
    """pyzmq's asyncio ZAP handler with our policy: CURVE keys from an AllowedKeys folder,
    rejected clients logged (address and key prefix, rate limited). Never raises into libzmq:
    an unexpected error refuses the client."""

    def __init__(
        self,
        context: zmq.asyncio.Context,
        clients_dir: str | os.PathLike[str],
        domain: str = ZAP_DOMAIN.decode(),
        what: str = "client",
    ) -> None:
        """`domain`: the ZAP domain of the sockets it answers for (make_curve_server's);
        `what`: who connects, for the log ("client" of the control API, "host")."""
        # pyzmq logs every ZAP request at debug level, unthrottled and with the whole key: a
        # stranger could fill the log. Our own lines (below) say what matters, rate limited.
        zap_log = logging.getLogger("tureen.auth.zap")
        zap_log.setLevel(max(zap_log.getEffectiveLevel(), logging.INFO))
        super().__init__(context, log=zap_log)
        self.allowed = AllowedKeys(clients_dir)
        self.rejections = RateLimitedWarning()
        self.rejected = 0
        self._address = ""
        self._monitor: zmq.asyncio.Socket | None = None
        self._watcher: asyncio.Task[None] | None = None
        self.what = what
        self.configure_curve_callback(domain, self)

    async def handle_zap_message(self, msg: list[bytes]) -> None:
        # The address is the 4th frame of a ZAP request; remember it for the log of callback().
        self._address = msg[3].decode("utf-8", "replace") if len(msg) > 3 else "?"
        try:
            await super().handle_zap_message(msg)
        except Exception:
            log.exception("ZAP handler failed on a request from %s", self._address)
            if len(msg) > 1:
                self._send_zap_reply(msg[1], b"500", b"internal error")

    def watch(self, sock: zmq.asyncio.Socket) -> None:
        """Also log connections refused before ZAP sees them: clients without CURVE, or with
        a wrong server key (libzmq tells no address for those, only that they failed)."""
        self._monitor = sock.get_monitor_socket(
            zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
        )
        self._watcher = asyncio.get_running_loop().create_task(self._watch(), name="control handshakes")

    async def _watch(self) -> None:
        assert self._monitor is not None
        while True:
            event = parse_monitor_message(await self._monitor.recv_multipart())
            self.rejected += 1
            self.rejections.warning(*handshake_refusal(event))

    def stop(self) -> None:
        """Stop the ZAP handler and the handshake log."""
        if self._watcher is not None:
            self._watcher.cancel()
            self._watcher = None
        if self._monitor is not None:
            with contextlib.suppress(zmq.ZMQError):
                self._monitor.close(linger=0)
            self._monitor = None
        super().stop()

    def callback(self, domain: str, key: bytes) -> bool:
        """pyzmq's credentials-provider hook: is this Z85 public key allowed?"""
        try:
            allowed = key in self.allowed.refresh()
        except Exception:
            log.exception("CURVE: checking a client key failed; refusing it")
            allowed = False
        if not allowed:
            self.rejected += 1
            self.rejections.warning(
                key_prefix(key), "CURVE: refused a %s from %s with unknown key %s... (not in %s)",
                self.what, self._address, key_prefix(key), self.allowed.directory,
            )
        return allowed


def make_curve_server(sock: zmq.Socket, server_cert: str, domain: bytes = ZAP_DOMAIN) -> bytes:  # type: ignore[type-arg]
    """Turn `sock` (not yet bound) into a CURVE server with the key pair in `server_cert`,
    checked by the ZAP handler of `domain`. Returns the server's public key."""
    public, secret = load_key_pair(server_cert)
    mode = os.stat(server_cert).st_mode
    if mode & 0o077:
        log.warning(
            "%s is readable by other users (mode %o): chmod 600 it; anyone who reads it can "
            "impersonate this server", server_cert, mode & 0o777,
        )
    sock.curve_server = True
    sock.curve_publickey = public
    sock.curve_secretkey = secret
    sock.zap_domain = domain
    return public


def check_clients_dir(clients_dir: str) -> None:
    """Refuse to start with a clients folder that is not there (a typo would refuse everyone)."""
    if not Path(clients_dir).is_dir():
        raise ValueError(
            f"CURVE clients folder {clients_dir} does not exist: create it and put the clients' "
            "public certificates (NAME.key) in it"
        )
