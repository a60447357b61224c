"""`tureen serve --hosts-listen` and `tureen host`: bad settings stop them at once with a
sentence that says what to give (exit code 2), before anything runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from support import running_server
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


def test_hosts_on_a_server_without_a_host_link(tmp_path: Path) -> None:
    with running_server(tmp_path, workers=1) as server:
        table = tureen("hosts", "--control", server.endpoint)
        assert table.returncode == 0, table.stderr
        assert "accepts no hosts" in table.stdout
        listing = tureen("hosts", "--json", "--control", server.endpoint)
        assert listing.returncode == 0, listing.stderr
        assert '"hosts": []' in listing.stdout and '"listening": null' in listing.stdout
