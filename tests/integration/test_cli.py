"""The operator's CLI against a real server: status, rooms, workers list/dump."""

from __future__ import annotations

import json
import subprocess
import sys

from support import ServerProcess


def tureen(server: ServerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tureen.supervisor.cli", *args, "--control", server.endpoint],
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_status_rooms_and_workers(server: ServerProcess) -> None:
    status = tureen(server, "status", "--json")
    assert status.returncode == 0, status.stderr
    info = json.loads(status.stdout)
    assert len(info["workers"]) == 2 and info["rooms"] >= 0 and info["ready"] is True
    rooms = tureen(server, "rooms", "--json")
    assert rooms.returncode == 0 and isinstance(json.loads(rooms.stdout), list)
    listing = tureen(server, "workers", "list")
    assert [w["index"] for w in json.loads(listing.stdout)] == [0, 1]
    text = tureen(server, "status")
    assert text.returncode == 0 and text.stdout.count("worker ") == 2 and "fan-out" in text.stdout
    assert "ready" in text.stdout.splitlines()[0] and "not ready" not in text.stdout


def test_workers_dump_shows_the_data_path_and_refuses_unknown_workers(server: ServerProcess) -> None:
    dump = tureen(server, "workers", "dump", "1")
    assert dump.returncode == 0, dump.stderr
    state = json.loads(dump.stdout)
    assert state["index"] == 1 and {"transports", "producers", "consumers", "counters"} <= set(state)
    missing = tureen(server, "workers", "dump", "9")
    assert missing.returncode == 1
    assert "worker 9 does not exist" in missing.stderr
