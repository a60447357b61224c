"""systemd's notify protocol (sd_notify(3)) for `Type=notify` units: READY, WATCHDOG, STOPPING.

A datagram of `KEY=VALUE` lines to the unix socket named by $NOTIFY_SOCKET (a leading `@`
means Linux's abstract namespace). Without $NOTIFY_SOCKET (not under systemd, or a unit of
another type) every call does nothing. A failed send is logged and never stops the server:
systemd then sees no READY (start times out) or no WATCHDOG (restart), which is the right
outcome for a supervisor that cannot talk to it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket

log = logging.getLogger("tureen.systemd")


def _address(env: dict[str, str] | os._Environ[str]) -> str | None:
    path = env.get("NOTIFY_SOCKET", "")
    if path.startswith("@"):
        return "\0" + path[1:]
    if path.startswith("/"):
        return path
    if path:  # vsock:... and other forms: not for a local service
        log.warning("NOTIFY_SOCKET=%r is not a unix socket path; systemd notifications are off", path)
    return None


def notify(state: str, env: dict[str, str] | None = None) -> bool:
    """Send `state` (e.g. "READY=1\\nSTATUS=...") to systemd; False when not under systemd
    or the send failed."""
    address = _address(os.environ if env is None else env)
    if address is None:
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(state.encode())
    except OSError as exc:
        log.warning("cannot notify systemd (%s): %s", state.split("\n", 1)[0], exc)
        return False
    return True


def watchdog_interval(env: dict[str, str] | None = None) -> float | None:
    """Seconds between WATCHDOG=1 pings: half of $WATCHDOG_USEC (sd_watchdog_enabled(3));
    None when the unit has no WatchdogSec or the watchdog is meant for another process."""
    env = dict(os.environ) if env is None else env
    try:
        usec = int(env.get("WATCHDOG_USEC", "0"))
        pid = int(env.get("WATCHDOG_PID", "0"))
    except ValueError:
        return None
    if usec <= 0 or (pid and pid != os.getpid()):
        return None
    return usec / 2 / 1_000_000


async def watchdog(interval: float) -> None:
    """Ping systemd every `interval` s from the event loop: a loop that is stuck (a handler
    that never yields) stops the pings, and systemd restarts the service."""
    while True:
        notify("WATCHDOG=1")
        await asyncio.sleep(interval)
