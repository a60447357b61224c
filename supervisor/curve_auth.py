"""CURVE authentication of the control API: the server's keys and the ZAP handler.

The control ROUTER becomes a CURVE server; libzmq asks the ZAP handler (pyzmq's
AsyncioAuthenticator, on the supervisor's event loop) about every new connection, and the
handler accepts a client only when its public key is in the clients folder. The folder is
re-read when it changed, checked on each new connection: adding or removing a NAME.key file
takes effect for the next connection, without a restart or a signal (docs/security.md).
Connections that were accepted stay until they close.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import zmq
import zmq.asyncio
from zmq.auth.asyncio import AsyncioAuthenticator

from ..shared.curve import key_prefix, load_key_pair

log = logging.getLogger("tureen.auth")

ZAP_DOMAIN = b"tureen-control"


class RateLimitedWarning:
    """At most `burst` warnings per `window` seconds; the rest are counted and summed up in
    one line when the next window opens, so a flood of bad clients cannot flood the log."""

    def __init__(self, burst: int = 10, window: float = 60.0) -> None:
        self.burst = burst
        self.window = window
        self._window_start = -window
        self._logged = 0
        self.suppressed = 0

    def warning(self, message: str, *args: Any) -> None:
        now = time.monotonic()
        if now - self._window_start >= self.window:
            if self.suppressed:
                log.warning("%d more rejected clients in the last %.0f s were not logged", self.suppressed, self.window)
            self._window_start, self._logged, self.suppressed = now, 0, 0
        if self._logged < self.burst:
            self._logged += 1
            log.warning(message, *args)
        else:
            self.suppressed += 1


class AllowedKeys:
    """The public keys in a folder of certificates (*.key, as `tureen keys generate` writes)."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self._signature: object = None
        self.keys: frozenset[bytes] = frozenset()

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
        keys = set()
        for name, *_ in signature:  # type: ignore[attr-defined]
            path = self.directory / name
            try:
                public, _secret = zmq.auth.load_certificate(path)
            except (OSError, ValueError) as exc:
                log.warning("CURVE clients folder: skipped %s: %s", path, exc)
                continue
            keys.add(public)
        self._signature, self.keys = signature, frozenset(keys)
        log.info("CURVE: %d client keys allowed (from %s)", len(self.keys), self.directory)
        return self.keys


class ControlAuthenticator(AsyncioAuthenticator):
    """pyzmq's asyncio ZAP handler with our policy: CURVE keys from an AllowedKeys folder,
    rejected clients logged (address and key prefix, rate limited). Never raises into libzmq:
    an unexpected error refuses the client."""

    def __init__(self, context: zmq.asyncio.Context, clients_dir: str | os.PathLike[str]) -> None:
        # pyzmq logs every ZAP request at debug level, unthrottled and with the whole key: a
        # stranger could fill the log. Our own lines (below) say what matters, rate limited.
        zap_log = logging.getLogger("tureen.auth.zap")
        zap_log.setLevel(max(zap_log.getEffectiveLevel(), logging.INFO))
        super().__init__(context, log=zap_log)
        self.allowed = AllowedKeys(clients_dir)
        self.rejections = RateLimitedWarning()
        self.rejected = 0
        self._address = ""
        self.configure_curve_callback(ZAP_DOMAIN.decode(), self)

    async def handle_zap_message(self, msg: list[bytes]) -> None:
        # The address is the 4th frame of a ZAP request; remember it for the log of callback().
        self._address = msg[3].decode("utf-8", "replace") if len(msg) > 3 else "?"
        try:
            await super().handle_zap_message(msg)
        except Exception:
            log.exception("ZAP handler failed on a request from %s", self._address)
            if len(msg) > 1:
                self._send_zap_reply(msg[1], b"500", b"internal error")

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
                "CURVE: refused a client from %s with unknown key %s... (not in %s)",
                self._address, key_prefix(key), self.allowed.directory,
            )
        return allowed


def make_curve_server(sock: zmq.Socket, server_cert: str) -> bytes:  # type: ignore[type-arg]
    """Turn `sock` (not yet bound) into a CURVE server with the key pair in `server_cert`.
    Returns the server's public key."""
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
    sock.zap_domain = ZAP_DOMAIN
    return public


def check_clients_dir(clients_dir: str) -> None:
    """Refuse to start with a clients folder that is not there (a typo would refuse everyone)."""
    if not Path(clients_dir).is_dir():
        raise ValueError(
            f"CURVE clients folder {clients_dir} does not exist: create it and put the clients' "
            "public certificates (NAME.key) in it"
        )
