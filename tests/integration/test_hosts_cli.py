"""`tureen serve --hosts-listen` and `tureen host`: bad settings stop them at once with a
sentence that says what to give (exit code 2), before anything runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support import free_tcp_port, notification, notify_listener, running_server
from tureen.shared.curve import generate_keys

pytestmark = pytest.mark.timeout(60)


def tureen(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tureen.supervisor.cli", *args], capture_output=True, text=True, timeout=30)


def test_serve_refuses_a_host_link_without_curve(tmp_path: Path) -> None:
    result = tureen("serve", "--hosts-listen", "tcp://127.0.0.1:4478", "--run-dir", str(tmp_path / "run"))
    assert result.returncode == 2, result.stderr
    assert "hosts_listen (--hosts-listen) needs CURVE" in result.stderr


def test_serve_refuses_a_host_link_that_is_not_tcp(tmp_path: Path) -> None:
    result = tureen("serve", "--hosts-listen", f"ipc://{tmp_path}/hosts.ipc", "--run-dir", str(tmp_path / "run"))
    assert result.returncode == 2
    assert "hosts_listen" in result.stderr and "tcp://" in result.stderr


def test_host_refuses_bad_options(tmp_path: Path) -> None:
    generate_keys(tmp_path, "h1")
    generate_keys(tmp_path, "server")
    keys = ["--curve-cert", str(tmp_path / "h1.key_secret"), "--curve-server-key", str(tmp_path / "server.key")]
    cases = [
        (["--connect", "ipc:///tmp/x", "--name", "h1", *keys], "--connect"),
        (["--connect", "tcp://127.0.0.1:4478", "--name", "x" * 65, *keys], "--name must be 1..64"),
        (["--connect", "tcp://127.0.0.1:4478", "--name", "h1", "--curve-cert", str(tmp_path / "h1.key"),
          "--curve-server-key", str(tmp_path / "server.key")], "holds only a public key"),
        (["--connect", "tcp://127.0.0.1:4478", "--name", "h1", *keys, "--rtc-ipv4", "not-an-ip"], "rtc_ipv4"),
    ]
    for args, message in cases:
        result = tureen("host", *args)
        assert result.returncode == 2, (args, result.stderr)
        assert message in result.stderr, (args, result.stderr)


def test_host_without_its_required_options_says_which(tmp_path: Path) -> None:
    result = tureen("host", "--connect", "tcp://127.0.0.1:4478")
    assert result.returncode == 2
    assert "missing --name, --curve-cert, --curve-server-key" in result.stderr


def test_hosts_drain_and_undrain_on_a_server_without_a_host_link(tmp_path: Path) -> None:
    """The supervisor's own machine is a host ("local", config host_name) even without a
    host link: listed, drained and undrained by name."""
    with running_server(tmp_path, workers=1) as server:
        table = tureen("hosts", "--control", server.endpoint)
        assert table.returncode == 0, table.stderr
        assert "accepting no remote hosts" in table.stdout
        row = next(line.split() for line in table.stdout.splitlines() if line.strip().startswith("local"))
        assert row[:4] == ["local", "(this)", "up", "0"], row
        listing = json.loads(tureen("hosts", "--json", "--control", server.endpoint).stdout)
        assert listing["listening"] is None
        assert [(h["name"], h["state"], h["local"]) for h in listing["hosts"]] == [("local", "up", True)]

        drained = tureen("host", "drain", "local", "--control", server.endpoint)
        assert drained.returncode == 0, drained.stderr
        assert "host local is draining: no new peers go there" in drained.stdout
        listing = json.loads(tureen("hosts", "--json", "--control", server.endpoint).stdout)
        assert listing["hosts"][0]["state"] == "draining"
        undrained = tureen("host", "undrain", "local", "--json", "--control", server.endpoint)
        assert undrained.returncode == 0, undrained.stderr
        assert json.loads(undrained.stdout)["state"] == "up"

        unknown = tureen("host", "drain", "h9", "--control", server.endpoint)
        assert unknown.returncode != 0
        assert "no host named 'h9'; the hosts are: local" in unknown.stderr


def test_host_notifies_systemd_ready_status_watchdog_and_stopping(tmp_path: Path) -> None:
    """`tureen host` under a real unix datagram NOTIFY_SOCKET (systemd/tureen-host.service is
    Type=notify): READY once its workers are up, with a STATUS that says it is registering
    (no supervisor listens at --connect, a loopback port nobody uses), WATCHDOG pings, and
    STOPPING on SIGTERM, after which it exits 0."""
    generate_keys(tmp_path, "h1")
    generate_keys(tmp_path, "server")
    notify = tmp_path / "notify"
    listener = notify_listener(notify)
    env = {**os.environ, "NOTIFY_SOCKET": str(notify), "WATCHDOG_USEC": "400000"}
    process = subprocess.Popen(
        [sys.executable, "-m", "tureen.supervisor.cli", "host", "--connect", f"tcp://127.0.0.1:{free_tcp_port()}",
         "--name", "h1", "--workers", "1", "--no-pin", "--run-dir", str(tmp_path / "run"),
         "--curve-cert", str(tmp_path / "h1.key_secret"), "--curve-server-key", str(tmp_path / "server.key")],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while (first := notification(listener, deadline)) == "WATCHDOG=1":
            pass
        assert first.startswith("READY=1\n") and "STATUS=1 workers; registering with the supervisor" in first, first
        pings = [notification(listener, time.monotonic() + 10) for _ in range(3)]
        assert pings == ["WATCHDOG=1"] * 3
        process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        while (message := notification(listener, deadline)) == "WATCHDOG=1":
            pass
        assert message == "STOPPING=1"
        assert process.wait(15) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        assert process.stderr is not None
        process.stderr.close()
        listener.close()
