"""The systemd unit and its notify protocol.

- `systemd-analyze verify` and `security --offline=true` on systemd/tureen.service: no error,
  exposure 2.5 ("OK") or lower; the sysusers.d and sysctl.d files do what docs/operations.md
  says (as far as a machine without systemd as init allows: sysusers into a scratch root).
- A real `tureen serve` with a real unix datagram socket as NOTIFY_SOCKET: READY=1 once the
  workers are up and the control API answers, WATCHDOG=1 while it runs, STOPPING=1 on SIGTERM.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support import ServerProcess, notification, notify_listener

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "systemd" / "tureen.service"
HOST_UNIT = ROOT / "systemd" / "tureen-host.service"
MAX_EXPOSURE = 2.5

analyze = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(
    analyze is None, reason="systemd-analyze is missing: `make test` installs it (scripts/install-test-deps.sh)"
)


def unit_with_exec(tmp_path: Path, text: str | None = None, unit_file: Path = UNIT) -> Path:
    """The unit with ExecStart pointing at this checkout's `tureen` (verify checks that the
    binary exists; /opt/tureen/venv is where docs/operations.md installs it)."""
    tureen = Path(sys.executable).parent / "tureen"
    unit = tmp_path / unit_file.name
    unit.write_text((text or unit_file.read_text()).replace("/opt/tureen/venv/bin/tureen", str(tureen)))
    return unit


@needs_analyze
def test_unit_verifies(tmp_path: Path) -> None:
    result = subprocess.run([analyze, "verify", str(unit_with_exec(tmp_path))], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "tureen.service" not in result.stderr, result.stderr
    # The check has teeth: a misspelt directive is reported.
    bad = unit_with_exec(tmp_path, UNIT.read_text().replace("ProtectSystem=", "ProtectSytem="))
    result = subprocess.run([analyze, "verify", str(bad)], capture_output=True, text=True, timeout=60)
    assert "ProtectSytem" in result.stderr


@needs_analyze
def test_unit_exposure_is_ok() -> None:
    result = subprocess.run(
        [analyze, "security", "--offline=true", "--no-pager", str(UNIT)], capture_output=True, text=True, timeout=60
    )
    found = re.search(r"Overall exposure level for tureen\.service: ([0-9.]+) (\w+)", result.stdout)
    assert found, result.stdout + result.stderr
    exposure = float(found.group(1))
    failing = [line for line in result.stdout.splitlines() if line.startswith("✗")]
    assert exposure <= MAX_EXPOSURE, f"exposure {exposure} > {MAX_EXPOSURE}:\n" + "\n".join(failing)


def test_unit_keeps_what_tureen_needs() -> None:
    """The hardening must not take away what the service uses (see the unit's comments)."""
    text = UNIT.read_text()
    settings = dict(line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#"))
    assert settings["Type"] == "notify" and int(settings["WatchdogSec"]) > 0
    assert settings["RuntimeDirectory"] == "tureen" and "TUREEN_RUN_DIR=/run/tureen" in settings["Environment"]
    assert set(settings["RestrictAddressFamilies"].split()) >= {"AF_UNIX", "AF_INET", "AF_INET6"}
    filters = [line.split("=", 1)[1] for line in text.splitlines() if line.startswith("SystemCallFilter=")]
    assert any({"io_uring_setup", "io_uring_enter"} <= set(f.split()) for f in filters), filters
    assert not any("@resources" in f for f in filters if f.startswith("~")), "pinning needs sched_setaffinity"


@needs_analyze
def test_host_unit_verifies_and_its_exposure_is_ok(tmp_path: Path) -> None:
    """systemd/tureen-host.service (`tureen host` on a remote machine): as tureen.service."""
    unit = unit_with_exec(tmp_path, unit_file=HOST_UNIT)
    result = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "tureen-host.service" not in result.stderr, result.stderr
    bad = unit_with_exec(tmp_path, HOST_UNIT.read_text().replace("NotifyAccess=", "NotifyAcess="), unit_file=HOST_UNIT)
    result = subprocess.run([analyze, "verify", str(bad)], capture_output=True, text=True, timeout=60)
    assert "NotifyAcess" in result.stderr
    result = subprocess.run(
        [analyze, "security", "--offline=true", "--no-pager", str(HOST_UNIT)], capture_output=True, text=True, timeout=60
    )
    found = re.search(r"Overall exposure level for tureen-host\.service: ([0-9.]+) (\w+)", result.stdout)
    assert found, result.stdout + result.stderr
    assert float(found.group(1)) <= MAX_EXPOSURE, result.stdout


def test_host_unit_keeps_what_tureen_needs_and_runs_tureen_host() -> None:
    text = HOST_UNIT.read_text()
    settings = dict(line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith(("#", " ")))
    assert settings["Type"] == "notify" and int(settings["WatchdogSec"]) > 0
    assert settings["RuntimeDirectory"] == "tureen-host" and settings["KillMode"] == "mixed"
    # Same hardening as the supervisor's unit: every hardening line of tureen.service is here.
    hardening = [line for line in UNIT.read_text().split("# Hardening.", 1)[1].splitlines()[1:] if line and line[0] != "#"]
    lines = set(text.splitlines())
    assert [line for line in hardening if line not in lines] == []
    command = text.split("ExecStart=", 1)[1].split("\n# ", 1)[0].replace("\\\n", " ")
    flags = {word for word in command.split() if word.startswith("--")}
    assert {"--connect", "--name", "--curve-cert", "--curve-server-key", "--run-dir", "--rtc-ipv4"} <= flags
    assert "/opt/tureen/venv/bin/tureen host " in command
    # Every flag it gives is one `tureen host` has.
    help_text = subprocess.run(
        [sys.executable, "-m", "tureen.supervisor.cli", "host", "--help"], capture_output=True, text=True, timeout=60,
        env={**os.environ, "COLUMNS": "250"},
    ).stdout
    assert all(flag in help_text for flag in flags), (flags, help_text)


# A worker's DTLS context (a cffi callback in it) built in a process refused W+X memory, as
# MemoryDenyWriteExecute=true does: prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN), Linux >= 6.3.
MDWE_PROBE = """
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(65, 1, 0, 0, 0) != 0:
    sys.exit(77)  # no PR_SET_MDWE on this kernel
from tureen.workers.transport.dtls import LocalCertificate
try:
    LocalCertificate().ssl_context()
except MemoryError as exc:
    print(exc)
    sys.exit(1)
"""


def test_memory_deny_write_execute_only_where_dtls_works_under_it() -> None:
    probe = subprocess.run([sys.executable, "-c", MDWE_PROBE], capture_output=True, text=True, timeout=60)
    if probe.returncode == 77:
        pytest.skip("this kernel has no PR_SET_MDWE (Linux >= 6.3) to try W^X with")
    mdwe = "\nMemoryDenyWriteExecute=true" in UNIT.read_text()
    if mdwe:
        assert probe.returncode == 0, f"the unit sets MemoryDenyWriteExecute but DTLS needs W+X: {probe.stdout}"
    else:
        # Today's reason for leaving it off still holds (if not: turn it on in the unit).
        assert probe.returncode == 1 and "write+execute" in probe.stdout, probe.stdout + probe.stderr


@pytest.mark.skipif(shutil.which("systemd-sysusers") is None, reason="systemd-sysusers is missing (package systemd)")
def test_sysusers_creates_the_tureen_user(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    conf = ROOT / "systemd" / "tureen.sysusers.conf"
    result = subprocess.run(
        ["systemd-sysusers", f"--root={root}", str(conf)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    passwd = (root / "etc" / "passwd").read_text()
    user = next(line for line in passwd.splitlines() if line.startswith("tureen:"))
    assert user.split(":")[6] in ("/usr/sbin/nologin", "/sbin/nologin", "/bin/false"), user
    assert "tureen:" in (root / "etc" / "group").read_text()


def test_sysctl_file_raises_the_socket_buffer_ceilings() -> None:
    settings = {}
    for line in (ROOT / "systemd" / "tureen-sysctl.conf").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, value = (part.strip() for part in line.split("=", 1))
            settings[key] = int(value)
    # At least the 1 MiB each worker socket asks for (workers/transport/udp.py, SO_BUFFER).
    from tureen.workers.transport.udp import SO_BUFFER

    assert settings["net.core.rmem_max"] >= SO_BUFFER and settings["net.core.wmem_max"] >= SO_BUFFER


# ---------------------------------------------------------------------- sd_notify with a real server


def test_ready_watchdog_and_stopping(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    notify = tmp_path / "notify"
    listener = notify_listener(notify)
    monkeypatch.setenv("NOTIFY_SOCKET", str(notify))
    monkeypatch.setenv("WATCHDOG_USEC", "400000")  # a ping every 0.2 s
    server = ServerProcess(tmp_path, workers=2)
    try:
        first = notification(listener, time.monotonic() + 30)
        assert first.startswith("READY=1\n") and "STATUS=2 workers" in first, first
        # At READY the control API answers and every worker is up.
        info = server.info(timeout=5)
        assert info["ready"] and len(info["workers"]) == 2 and all(w["alive"] for w in info["workers"])
        server.worker_pids = [w["pid"] for w in info["workers"]]
        pings = [notification(listener, time.monotonic() + 10) for _ in range(3)]
        assert pings == ["WATCHDOG=1"] * 3
        server.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        while (message := notification(listener, deadline)) == "WATCHDOG=1":
            pass
        assert message == "STOPPING=1"
        assert server.process.wait(15) == 0
    finally:
        server.stop()
        listener.close()
