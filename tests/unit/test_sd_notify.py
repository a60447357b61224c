"""supervisor/sd_notify.py against real unix datagram sockets (path and abstract namespace)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from tureen.supervisor import sd_notify


def test_notify_sends_to_a_socket_path(tmp_path: Path) -> None:
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(path)
        listener.settimeout(5)
        assert sd_notify.notify("READY=1\nSTATUS=up", env={"NOTIFY_SOCKET": path})
        assert listener.recv(4096) == b"READY=1\nSTATUS=up"


def test_notify_sends_to_an_abstract_socket() -> None:
    name = f"tureen-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind("\0" + name)
        listener.settimeout(5)
        assert sd_notify.notify("WATCHDOG=1", env={"NOTIFY_SOCKET": "@" + name})
        assert listener.recv(4096) == b"WATCHDOG=1"


def test_notify_without_systemd_does_nothing(tmp_path: Path) -> None:
    assert sd_notify.notify("READY=1", env={}) is False
    assert sd_notify.notify("READY=1", env={"NOTIFY_SOCKET": "vsock:2:1234"}) is False
    # Nobody listening there: logged, reported, never raised.
    assert sd_notify.notify("READY=1", env={"NOTIFY_SOCKET": str(tmp_path / "gone")}) is False


def test_watchdog_interval_is_half_of_watchdog_usec() -> None:
    assert sd_notify.watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 15.0
    assert sd_notify.watchdog_interval({"WATCHDOG_USEC": "400000", "WATCHDOG_PID": str(os.getpid())}) == 0.2
    assert sd_notify.watchdog_interval({"WATCHDOG_USEC": "400000", "WATCHDOG_PID": "1"}) is None  # not ours
    assert sd_notify.watchdog_interval({}) is None
    assert sd_notify.watchdog_interval({"WATCHDOG_USEC": "soon"}) is None
