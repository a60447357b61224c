"""The operator's CLI against a real server: status, rooms, room, peer kick, workers."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import os
import subprocess
import sys
from pathlib import Path

from aiortc.mediastreams import VideoStreamTrack
from msclient import MsPeer
from support import MEDIA_CODECS, ServerProcess, free_tcp_port
from test_plain_session import PRODUCER_SSRC, Session
from tureen.shared import __version__
from tureen.shared.client import TureenClient


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


# ---------------------------------------------------------------------- issue 13: the operator's CLI


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`tureen ARGS` as the operator types it (no --control added), piped (no terminal)."""
    return subprocess.run(
        [sys.executable, "-m", "tureen.supervisor.cli", *args],
        capture_output=True, text=True, timeout=30,
        env={k: v for k, v in os.environ.items() if not k.startswith("TUREEN_")} | (env or {}),
    )


def test_version() -> None:
    result = run_cli("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"tureen {__version__}"


def test_endpoint_from_flag_environment_or_config_file(server: ServerProcess, tmp_path: Path) -> None:
    config = tmp_path / "tureen.toml"
    config.write_text(f'control_endpoint = "{server.endpoint}"\n')
    for args, env in (
        (["--control", server.endpoint], {}),
        ([], {"TUREEN_CONTROL": server.endpoint}),
        (["--config", str(config)], {}),
        # The flag wins over the environment, the environment over the file.
        (["--control", server.endpoint], {"TUREEN_CONTROL": "tcp://127.0.0.1:1"}),
        (["--config", str(tmp_path / "absent.toml")], {"TUREEN_CONTROL": server.endpoint}),
    ):
        result = run_cli("status", "--json", *args, env=env)
        assert result.returncode == 0, (args, env, result.stderr)
        assert json.loads(result.stdout)["pid"] == server.process.pid


def test_errors_are_one_line_that_say_what_to_do(tmp_path: Path) -> None:
    silent = f"tcp://127.0.0.1:{free_tcp_port()}"
    result = run_cli("rooms", "--control", silent)
    assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
    assert f"no answer to room.list from {silent} within 5 s" in result.stderr
    assert "is `tureen serve` running there?" in result.stderr and "--control" in result.stderr
    assert "Traceback" not in result.stderr
    # A misspelt endpoint and a config file with a wrong value: exit 2, naming the problem.
    bad = run_cli("workers", "--control", "tcp://127.0.0.1:4477}")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "--control" in bad.stderr, bad.stderr
    config = tmp_path / "bad.toml"
    config.write_text('fanout = "fast"\n')
    bad = run_cli("status", "--config", str(config))
    assert bad.returncode == 2 and "fanout must be one of" in bad.stderr and "Traceback" not in bad.stderr
    unknown = run_cli("room", "open", "r1", "--control", silent)
    assert unknown.returncode == 2 and "tureen room close ROOM" in unknown.stderr


def test_workers_table_and_json(server: ServerProcess) -> None:
    table = tureen(server, "workers")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].strip() == "2 workers" and "pid" in lines[1] and "fan-out" in lines[1]
    info = server.info()
    for w in info["workers"]:
        assert any(line.split()[:2] == [str(w["index"]), str(w["pid"])] for line in lines), table.stdout
    as_json = tureen(server, "workers", "--json")
    assert [w["pid"] for w in json.loads(as_json.stdout)] == [w["pid"] for w in info["workers"]]


async def test_rooms_room_kick_and_close(server: ServerProcess) -> None:
    """A real plain-RTP session (alice sends opus to bob): the CLI shows it, kicks bob and
    closes the room; the app hears each."""
    async with TureenClient(server.endpoint, timeout=10.0) as client:
        await client.create_room(MEDIA_CODECS, room_id="cli-room")
        session = Session(client, "cli-room")
        try:
            await session.setup()
            alice_port = session.alice_sock.getsockname()[1]
            details = await asyncio.wait_for(_room_while_sending(server, session), 20)
        finally:
            session.close()

        alice, bob = (next(p for p in details["peers"] if p["name"] == name) for name in ("alice", "bob"))
        send, recv = alice["transports"][0], bob["transports"][0]
        assert send["direction"] == "send" and recv["direction"] == "recv"
        assert send["worker"] in (0, 1) and {"iceState", "dtlsState", "iceSelectedTuple"} <= set(send)
        assert send["remote"]["port"] == alice_port
        [producer] = alice["producers"]
        assert [s["ssrc"] for s in producer["streams"]] == [PRODUCER_SSRC] and producer["bitrate"] > 0
        [consumer] = bob["consumers"]
        assert consumer["producerId"] == producer["id"] and consumer["worker"] == recv["worker"]
        assert consumer["preferredProfile"] == "default" and consumer["bitrate"] > 0

        text = await asyncio.to_thread(tureen, server, "room", "cli-room")
        assert text.returncode == 0, text.stderr
        assert text.stdout.startswith("room cli-room: 2 peers, 2 transports, 1 producers, 1 consumers")
        for word in ("PlainRtpTransport", "kbit/s", f"alice/{producer['id']}", "default/default"):
            assert word in text.stdout, text.stdout

        rooms = await asyncio.to_thread(tureen, server, "rooms")
        assert rooms.returncode == 0 and "cli-room" in rooms.stdout and "alice, bob" in rooms.stdout, rooms.stdout

        kick = await asyncio.to_thread(tureen, server, "peer", "kick", "cli-room", "bob")
        assert kick.returncode == 0 and "peer bob of room cli-room closed" in kick.stdout, kick.stderr
        await client.next_notification("bob", "closed")
        await client.next_notification("alice", "peerClosed", name="bob")
        listing = json.loads((await asyncio.to_thread(tureen, server, "rooms", "--json")).stdout)
        assert next(r for r in listing if r["roomId"] == "cli-room")["peerNames"] == ["alice"]
        again = await asyncio.to_thread(tureen, server, "peer", "kick", "cli-room", "bob")
        assert again.returncode == 1 and "`tureen room ROOM` lists its peers" in again.stderr, again.stderr

        closed = await asyncio.to_thread(tureen, server, "room", "close", "cli-room", "--json")
        assert closed.returncode == 0 and json.loads(closed.stdout) == {"roomId": "cli-room", "closed": True}
        await client.next_event(lambda e: e.get("event") == "room.closed" and e["roomId"] == "cli-room")
        gone = await asyncio.to_thread(tureen, server, "room", "cli-room")
        assert gone.returncode == 1 and "`tureen rooms` lists the rooms" in gone.stderr, gone.stderr


async def _room_while_sending(server: ServerProcess, session: Session) -> dict:
    """`tureen room --json` while alice sends, until both bitrates show (each poll bounded)."""
    while True:
        session.send(50)
        result = await asyncio.to_thread(tureen, server, "room", "cli-room", "--json")
        assert result.returncode == 0, result.stderr
        details = json.loads(result.stdout)
        rates = [c.get("bitrate") for p in details["peers"] for c in p["consumers"]]
        rates += [p.get("bitrate") for peer in details["peers"] for p in peer["producers"]]
        if rates and all(rates):
            return details
        await asyncio.sleep(0.2)


async def test_room_shows_webrtc_ice_dtls_and_the_selected_tuple(server: ServerProcess) -> None:
    """Real WebRTC peers (aiortc as mediasoup-client): `tureen room` shows each transport's
    ICE and DTLS state and the tuple ICE selected, from the worker that hosts it."""
    async with TureenClient(server.endpoint, timeout=10.0) as client:
        await client.create_room(MEDIA_CODECS, room_id="cli-webrtc")
        alice, bob = MsPeer(), MsPeer()
        try:
            await alice.join((client, "cli-webrtc"), "alice")
            await bob.join((client, "cli-webrtc"), "bob")
            await alice.produce(VideoStreamTrack())
            video = await bob.consume(await bob.next_consumer(kind="video", peer_name="alice"))
            await video.wait_frames(5, timeout=20)
            result = await asyncio.to_thread(tureen, server, "room", "cli-webrtc", "--json")
            assert result.returncode == 0, result.stderr
            transports = [t for p in json.loads(result.stdout)["peers"] for t in p["transports"]]
            assert len(transports) == 2 and all(t["type"] == "WebRtcTransport" for t in transports)
            for t in transports:
                assert t["iceState"] in ("connected", "completed") and t["dtlsState"] == "connected", t
                ip, port, *_ = t["iceSelectedTuple"]  # the peer's address as the worker sees it
                assert ipaddress.ip_address(ip) and port > 0
            text = await asyncio.to_thread(tureen, server, "room", "cli-webrtc")
            assert "WebRtcTransport" in text.stdout and "connected" in text.stdout, text.stdout
            ip, port, *_ = transports[0]["iceSelectedTuple"]
            assert f"{ip}:{port}" in text.stdout, text.stdout
        finally:
            await alice.close()
            await bob.close()
            with contextlib.suppress(Exception):
                await client.close_room("cli-webrtc")
