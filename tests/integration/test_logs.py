"""Logs of a real `tureen serve` (issue 13, "Logs"): `--log-format json` lines from the
supervisor and its workers, and the level changed at run time (server.setLogLevel, `tureen
log-level`) in the supervisor and in every worker."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import zmq
from support import MEDIA_CODECS, ServerProcess, running_server
from test_plain_session import Session
from tureen.shared.client import TureenClient

JSON_KEYS = {"ts", "level", "process", "logger", "message"}


def request(server: ServerProcess, method: str, request_id: str, **params: Any) -> dict[str, Any]:
    """One control request over a plain DEALER socket; the whole reply."""
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, 10_000)
    try:
        sock.connect(server.endpoint)
        sock.send(orjson.dumps({"id": request_id, "method": method, **params}))
        return orjson.loads(sock.recv())
    finally:
        sock.close()


def wait_for(server: ServerProcess, pattern: str, count: int = 1, timeout: float = 10.0) -> str:
    """The server's log once `pattern` (a regex) matches `count` of its lines."""
    deadline = time.monotonic() + timeout
    while True:
        text = server.log()
        if len(re.findall(pattern, text, re.MULTILINE)) >= count:
            return text
        if time.monotonic() > deadline:
            raise AssertionError(f"no {count} lines matching {pattern!r} within {timeout} s:\n{text[-4000:]}")
        time.sleep(0.1)


def tureen(server: ServerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tureen.supervisor.cli", *args, "--control", server.endpoint],
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_json_lines_from_supervisor_and_workers(tmp_path: Path) -> None:
    with running_server(tmp_path, workers=2, extra=["--log-format", "json", "--log-level", "info"]) as server:
        assert not request(server, "no.such", "bad-1")["ok"]  # a line with a request id in it
        wait_for(server, r"rejected request 'bad-1'")
    text = server.log_path.read_text()
    entries = []
    for line in text.splitlines():
        if line.strip():
            entry = json.loads(line)  # every line, of every process, is one JSON object
            assert JSON_KEYS <= set(entry), line
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", entry["ts"]), line
            entries.append(entry)
    processes = {e["process"] for e in entries}
    assert {"supervisor", "worker[0]", "worker[1]"} <= processes, processes
    assert any(e["process"] == "worker[1]" and "ready" in e["message"] for e in entries)
    assert {e["level"] for e in entries} <= {"debug", "info", "warning", "error", "critical"}
    assert not any(e["level"] == "debug" for e in entries)  # --log-level info


# The debug line each accepted control request makes in the supervisor, and each command in
# the worker that runs it.
SUPERVISOR_DEBUG = r"supervisor tureen\.control\S*: control: worker\.dump request '{}' accepted"
WORKER_DEBUG = r"worker\[{0}\] \S+: worker {0}: request \S+: worker\.dump$"
SET_TO = r"{} \S+: (worker \d+: )?log level of {} set to {}$"


def test_log_level_changes_at_run_time(tmp_path: Path) -> None:
    with running_server(tmp_path, workers=2, extra=["--log-level", "info"]) as server:
        # At info: the rejection of a bad request is logged; debug lines are not.
        assert not request(server, "no.such", "info-1")["ok"]
        wait_for(server, r"control: rejected request 'info-1'")
        assert request(server, "worker.dump", "dump-1", index=0)["ok"]
        assert request(server, "worker.dump", "dump-1b", index=1)["ok"]

        # debug, everywhere.
        result = tureen(server, "log-level", "debug")
        assert result.returncode == 0, result.stderr
        assert "set to debug" in result.stdout and "[0, 1]" in result.stdout
        for process in ("supervisor", r"worker\[0\]", r"worker\[1\]"):
            wait_for(server, SET_TO.format(process, "everything", "debug"))
        for index in (0, 1):
            assert request(server, "worker.dump", f"dump-2-{index}", index=index)["ok"]
            wait_for(server, SUPERVISOR_DEBUG.format(f"dump-2-{index}"))
            text = wait_for(server, WORKER_DEBUG.format(index))
        # Nothing at debug was logged before the change.
        assert "'dump-1' accepted" not in text and "'dump-1b' accepted" not in text
        assert len(re.findall(WORKER_DEBUG.format(0), text, re.MULTILINE)) == 1

        # warning: the same bad request no longer makes an info line.
        result = tureen(server, "log-level", "warning", "--json")
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout) == {"level": "warning", "logger": None, "workers": [0, 1], "failed": []}
        assert not request(server, "no.such", "warn-1")["ok"]
        assert request(server, "worker.dump", "dump-3", index=0)["ok"]
        # A second change (logged at warning) marks that both requests were handled before it.
        assert request(server, "server.setLogLevel", "sync", level="warning")["ok"]
        for process in ("supervisor", r"worker\[0\]"):
            text = wait_for(server, SET_TO.format(process, "everything", "warning"), count=2)
        assert "'warn-1'" not in text and "'dump-3'" not in text
        assert len(re.findall(WORKER_DEBUG.format(0), text, re.MULTILINE)) == 1

        # One area only: the workers' loggers at debug, the supervisor's control log not.
        assert request(server, "server.setLogLevel", "area", level="debug", logger="tureen.workers")["ok"]
        assert request(server, "worker.dump", "dump-4", index=0)["ok"]
        text = wait_for(server, WORKER_DEBUG.format(0), count=2)
        assert "'dump-4' accepted" not in text


def test_log_level_refuses_bad_input(server: ServerProcess) -> None:
    for params, why in (
        ({"level": "loud"}, "level must be one of debug, info, warning, error"),
        ({}, "level must be one of"),
        ({"level": "info", "logger": "a b"}, "logger must be a logger name"),
        ({"level": "info", "logger": 7}, "logger must be a logger name"),
    ):
        reply = request(server, "server.setLogLevel", "bad", **params)
        assert not reply["ok"] and reply["error"]["code"] == "bad_request", reply
        assert why in reply["error"]["message"], reply
    result = tureen(server, "log-level", "chatty")
    assert result.returncode == 2
    assert result.stderr.strip().startswith("tureen: log-level: level must be one of debug, info, warning, error")
    assert len(result.stderr.strip().splitlines()) == 1


def test_worker_lines_name_room_peer_and_protocol_ids(tmp_path: Path) -> None:
    """The workers' lines about a transport, producer or consumer name its room, its peer and
    the id the peer knows (as the supervisor's lines do), in the text and as JSON keys."""

    async def session(endpoint: str) -> None:
        async with TureenClient(endpoint) as client:
            await client.create_room(MEDIA_CODECS, room_id="r1")
            plain = Session(client, "r1")
            try:
                await plain.setup()  # alice sends on transport 11111111, bob receives
            finally:
                plain.close()

    with running_server(tmp_path, workers=2, extra=["--log-format", "json", "--log-level", "info"]) as server:
        asyncio.run(session(server.endpoint))
        wait_for(server, r"peer 'bob' consumer \d+ \(worker id \d+\): audio of room 'r1' peer 'alice' producer 33333333")
    entries = [json.loads(line) for line in server.log_path.read_text().splitlines() if line.strip()]
    worker = [e for e in entries if e["process"].startswith("worker[")]
    created = {e["message"].split(":")[0]: e for e in worker if "created on" in e["message"]}
    assert set(created) == {
        f"room 'r1' peer 'alice' transport 11111111 (worker id {created_id(created, 'alice')})",
        f"room 'r1' peer 'bob' transport 22222222 (worker id {created_id(created, 'bob')})",
    }, created
    for entry in created.values():
        assert entry["room"] == "r1" and entry["peer"] in ("alice", "bob")
        assert entry["ids"]["transport"] in (11111111, 22222222) and "workerId" in entry["ids"]
    # The supervisor's lines about the same objects carry the same keys and ids.
    supervisor = [e for e in entries if e["process"] == "supervisor" and e.get("room") == "r1"]
    alice = [e for e in supervisor if e.get("peer") == "alice"]
    assert any(e["message"].endswith("peer 'alice' joined") for e in alice), supervisor
    [made] = [e for e in alice if (e.get("ids") or {}).get("transport") == 11111111]
    assert made["ids"]["workerId"] == created_id(created, "alice")
    assert any((e.get("ids") or {}).get("producer") == 33333333 for e in alice)
    # The producer on alice's worker, and its piped copy on bob's (two workers: one each).
    producers = [e for e in worker if e.get("ids", {}).get("producer") == 33333333]
    assert any("on transport" in e["message"] for e in producers), producers
    for entry in producers:
        assert entry["peer"] == "alice" and entry["room"] == "r1", entry
        assert entry["message"].startswith("room 'r1' peer 'alice' producer 33333333 (worker id "), entry


def created_id(created: dict[str, dict[str, Any]], peer: str) -> int:
    """The worker id of `peer`'s transport, from its JSON line's ids."""
    [entry] = [e for e in created.values() if e["peer"] == peer]
    return entry["ids"]["workerId"]
