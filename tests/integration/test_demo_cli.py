"""`tureen demo` on its own: it starts its `tureen serve` child, serves the page, stops both."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
from support import free_tcp_port

ROOT = Path(__file__).resolve().parents[2]


def get(url: str) -> tuple[int, str, bytes]:
    with urllib.request.urlopen(url, timeout=3.0) as reply:
        return reply.status, reply.headers.get("Content-Type", ""), reply.read()


def test_tureen_demo_serves_the_page_and_stops_its_server_child(tmp_path: Path) -> None:
    port = free_tcp_port()
    log = open(tmp_path / "demo.log", "wb")  # noqa: SIM115 - closed below
    out = open(tmp_path / "demo.out", "wb")  # noqa: SIM115 - closed below
    demo = subprocess.Popen(
        [sys.executable, "-m", "tureen.supervisor.cli", "demo", "--port", str(port), "--workers", "1"],
        stdout=out, stderr=log,
    )
    children: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 30
        while True:
            assert demo.poll() is None, (tmp_path / "demo.log").read_text()
            try:
                status, _, body = get(f"http://127.0.0.1:{port}/healthz")
                if status == 200 and json.loads(body)["ok"]:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, f"demo not up in 30 s:\n{(tmp_path / 'demo.log').read_text()}"
            time.sleep(0.2)
        children = psutil.Process(demo.pid).children(recursive=True)
        assert any("serve" in " ".join(c.cmdline()) for c in children), [c.cmdline() for c in children]

        # `make run` is a newcomer's first command: the page's URL is on stdout, apart from
        # the log (stderr), in a line that says what to do with it. Printed before the page
        # answers; bounded wait all the same.
        wanted = f"Tureen demo: open http://127.0.0.1:{port}/?room=demo in two browser tabs"
        deadline = time.monotonic() + 10
        while wanted not in (tmp_path / "demo.out").read_text():
            assert time.monotonic() < deadline, f"no {wanted!r} on stdout:\n{(tmp_path / 'demo.out').read_text()}"
            time.sleep(0.1)
        assert "Tureen demo" not in (tmp_path / "demo.log").read_text()  # not lost among the log lines

        status, kind, body = get(f"http://127.0.0.1:{port}/?room=r1")
        assert status == 200 and kind.startswith("text/html")
        assert b'<script src="/static/bundle.js">' in body and b"tile-template" in body
        status, _, _ = get(f"http://127.0.0.1:{port}/static/style.css")
        assert status == 200
        if (ROOT / "demo" / "static" / "bundle.js").exists():  # built by scripts/install-browser-deps.sh
            status, kind, body = get(f"http://127.0.0.1:{port}/static/bundle.js")
            assert status == 200 and "javascript" in kind and b"mediasoup-client" in body

        demo.send_signal(signal.SIGTERM)
        assert demo.wait(20) == 0, (tmp_path / "demo.log").read_text()
        gone, alive = psutil.wait_procs(children, timeout=10)
        assert not alive, f"tureen demo left {alive} behind"
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait(5)
        for child in children:
            with contextlib.suppress(psutil.Error):
                child.kill()
        log.close()
        out.close()


async def test_the_demo_app_relays_requests_and_refuses_a_taken_name(tmp_path: Path) -> None:
    """The WebSocket protocol of docs/browser.md, spoken by hand against `tureen demo --connect`."""
    import aiohttp
    from support import ServerProcess

    server = ServerProcess(tmp_path, workers=1)
    port = free_tcp_port()
    log = open(tmp_path / "demo.log", "wb")  # noqa: SIM115 - closed below
    demo = None
    try:
        server.wait_ready()
        demo = subprocess.Popen(
            [sys.executable, "-m", "tureen.supervisor.cli", "demo", "--connect", server.endpoint, "--port", str(port)],
            stdout=log, stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
            deadline = time.monotonic() + 30
            while True:
                assert demo.poll() is None, (tmp_path / "demo.log").read_text()
                try:
                    async with http.get(f"{base}/healthz") as reply:
                        if reply.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                assert time.monotonic() < deadline, "demo app not up in 30 s"
                await asyncio.sleep(0.2)

            async with http.ws_connect(f"{base}/ws?room=r1&peer=alice") as alice:
                await alice.send_json({"type": "request", "id": 1, "request": {"method": "queryRoom", "target": "room"}})
                answer = await alice.receive_json(timeout=10)
                assert answer["id"] == 1 and answer["ok"], answer
                codecs = answer["data"]["rtpCapabilities"]["codecs"]
                assert [c["name"] for c in codecs] == ["opus", "VP8", "rtx", "H264", "rtx"]
                join = {"method": "join", "target": "room", "peerName": "mallory",
                        "rtpCapabilities": {"codecs": [], "headerExtensions": []}, "spy": False}
                await alice.send_json({"type": "request", "id": 2, "request": join})
                answer = await alice.receive_json(timeout=10)
                assert answer == {"type": "response", "id": 2, "ok": False, "code": "bad_request",
                                  "error": "join as 'mallory' on the socket of 'alice'"}

                async with http.ws_connect(f"{base}/ws?room=r1&peer=alice") as twin:
                    refused = await twin.receive_json(timeout=10)
                    assert refused == {"type": "error", "message": "the name 'alice' is already taken in room 'r1'"}
                async with http.ws_connect(f"{base}/ws?room=r1") as nameless:
                    refused = await nameless.receive_json(timeout=10)
                    assert refused["type"] == "error" and "1 to 64 characters" in refused["message"]
    finally:
        if demo is not None:
            demo.terminate()
            try:
                demo.wait(15)
            except subprocess.TimeoutExpired:
                demo.kill()
                demo.wait(5)
        log.close()
        server.stop()
