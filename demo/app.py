"""The demo's signaling app: an HTTP page and a WebSocket relay between browsers and Tureen.

Each browser tab opens `GET /ws?room=ROOM&peer=NAME` and speaks a tiny JSON protocol:

    browser -> app   {"type": "request", "id": 7, "request": {...mediasoup-client request...}}
                     {"type": "notify", "notification": {...mediasoup-client notification...}}
    app -> browser   {"type": "response", "id": 7, "ok": true, "data": {...}}
                     {"type": "response", "id": 7, "ok": false, "error": "why", "code": "not_found"}
                     {"type": "notification", "notification": {...for room.receiveNotification...}}
                     {"type": "error", "message": "why"}   (then the socket closes)

The app relays requests with `TureenClient.peer_request` and notifications with
`TureenClient.peer_notify`, and pushes every control-API `notification` event to the socket of
the peer it names. It creates a room on first use, sends `leave` for a peer whose socket
closes, and closes a room when its last peer is gone. That is the whole integration: nothing
here knows about workers, transports or media.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web
from tureen.shared.client import TureenClient
from tureen.shared.errors import ProtocolError

log = logging.getLogger("tureen.demo")

STATIC_DIR = Path(__file__).parent / "static"
BUNDLE = STATIC_DIR / "bundle.js"

# The room's codecs: opus, VP8 and H264 (packetization-mode 1), as the issue asks.
MEDIA_CODECS: list[dict[str, Any]] = [
    {"kind": "audio", "name": "opus", "clockRate": 48000, "channels": 2},
    {"kind": "video", "name": "VP8", "clockRate": 90000},
    {
        "kind": "video",
        "name": "H264",
        "clockRate": 90000,
        "parameters": {"packetization-mode": 1, "profile-level-id": "42e01f", "level-asymmetry-allowed": 1},
    },
]

MAX_NAME = 64
LEAVE = {"method": "leave", "target": "peer", "notification": True}


@dataclass(eq=False)
class PeerSocket:
    """One browser tab: its WebSocket and the (room, peer) it speaks for."""

    room_id: str
    peer_name: str
    ws: web.WebSocketResponse
    outbox: asyncio.Queue[dict[str, Any] | None] = field(default_factory=asyncio.Queue)
    joined: bool = False
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def send(self, message: dict[str, Any]) -> None:
        """Queue a message; one writer task sends them in order."""
        self.outbox.put_nowait(message)

    async def writer(self) -> None:
        while (message := await self.outbox.get()) is not None:
            if self.ws.closed:
                return
            try:
                await self.ws.send_str(json.dumps(message))
            except (ConnectionError, RuntimeError):
                return


class Relay:
    """Relays between browsers (WebSockets) and Tureen (one TureenClient)."""

    def __init__(self, client: TureenClient) -> None:
        self.client = client
        self.sockets: dict[tuple[str, str], PeerSocket] = {}
        self.rooms: set[str] = set()
        self._members: dict[str, set[str]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        client.on_event(self._on_event)

    # ------------------------------------------------------------------ Tureen -> browsers

    def _on_event(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == "notification":
            key = (event.get("roomId"), event.get("peerName"))
            note = event.get("notification") or {}
            peer = self.sockets.get(key)  # type: ignore[arg-type]
            if peer is None:
                log.debug("notification %s for unknown peer %s dropped", note.get("method"), key)
                return
            log.debug("room %r: -> %r %s", key[0], key[1], note.get("method"))
            if note.get("method") == "closed":  # Tureen closed this peer (room closed, worker died...)
                peer.joined = False
            peer.send({"type": "notification", "notification": note})
        elif kind == "room.closed":
            self.rooms.discard(event.get("roomId"))  # type: ignore[arg-type]
        elif kind in ("peer.joined", "peer.closed"):
            log.info("room %r: %s %r", event.get("roomId"), kind, event.get("peerName"))
        else:
            log.debug("event %s", event)

    # ------------------------------------------------------------------ rooms

    def _lock(self, room_id: str) -> asyncio.Lock:
        return self._locks.setdefault(room_id, asyncio.Lock())

    async def _ensure_room(self, room_id: str) -> None:
        """Create the room on first use (called with the room's lock held)."""
        if room_id in self.rooms:
            return
        try:
            await self.client.create_room(MEDIA_CODECS, room_id=room_id, app_data={"demo": True})
            log.info("room %r created", room_id)
        except ProtocolError as exc:
            if exc.code != "duplicate":
                raise
            # Left over by an earlier run of this app: take its events over.
            await self.client.subscribe(room_id)
            log.info("room %r already existed; subscribed to it", room_id)
        self.rooms.add(room_id)

    # ------------------------------------------------------------------ browsers -> Tureen

    async def _request(self, peer: PeerSocket, request: dict[str, Any]) -> Any:
        method = request.get("method")
        if method not in ("queryRoom", "join"):
            return await self.client.peer_request(peer.room_id, peer.peer_name, request)
        async with self._lock(peer.room_id):
            await self._ensure_room(peer.room_id)
            if method == "queryRoom":
                return await self.client.peer_request(peer.room_id, None, request)
            if request.get("peerName") != peer.peer_name:
                raise ProtocolError(
                    "bad_request",
                    f"join as {request.get('peerName')!r} on the socket of {peer.peer_name!r}",
                )
            members = self._members.setdefault(peer.room_id, set())
            members.add(peer.peer_name)
            try:
                data = await self.client.peer_request(peer.room_id, None, request)
            except BaseException:
                members.discard(peer.peer_name)
                raise
            peer.joined = True
            log.info("room %r: %r joined", peer.room_id, peer.peer_name)
            return data

    async def _handle(self, peer: PeerSocket, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "request":
            request_id = message.get("id")
            request = message.get("request")
            try:
                if not isinstance(request, dict):
                    raise ProtocolError("bad_request", "request must be an object")
                data = await self._request(peer, request)
                peer.send({"type": "response", "id": request_id, "ok": True, "data": data})
            except ProtocolError as exc:
                log.info(
                    "room %r: %r %s failed: %s",
                    peer.room_id, peer.peer_name, (request or {}).get("method"), exc.message,
                )
                peer.send({"type": "response", "id": request_id, "ok": False, "error": exc.message, "code": exc.code})
        elif kind == "notify":
            notification = message.get("notification")
            if not isinstance(notification, dict):
                return
            if notification.get("method") == "leave":
                peer.joined = False
            try:
                await self.client.peer_notify(peer.room_id, peer.peer_name, notification)
            except ProtocolError as exc:  # the client expects nothing back (mediasoup v2 only logs)
                log.info(
                    "room %r: %r notification %s failed: %s",
                    peer.room_id, peer.peer_name, notification.get("method"), exc.message,
                )
        else:
            log.debug("unknown message from %r: %s", peer.peer_name, message)

    async def _cleanup(self, peer: PeerSocket) -> None:
        """The socket closed: make Tureen forget the peer; close the room when it empties."""
        async with self._lock(peer.room_id):
            if peer.joined:
                peer.joined = False
                with contextlib.suppress(ProtocolError):
                    await self.client.peer_notify(peer.room_id, peer.peer_name, dict(LEAVE))
                log.info("room %r: %r left (socket closed)", peer.room_id, peer.peer_name)
            members = self._members.get(peer.room_id, set())
            members.discard(peer.peer_name)
            if not members and peer.room_id in self.rooms:
                self.rooms.discard(peer.room_id)
                self._members.pop(peer.room_id, None)
                with contextlib.suppress(ProtocolError):
                    await self.client.close_room(peer.room_id)
                log.info("room %r closed (empty)", peer.room_id)

    # ------------------------------------------------------------------ HTTP handlers

    async def websocket(self, request: web.Request) -> web.WebSocketResponse:
        room_id = request.query.get("room", "").strip()
        peer_name = request.query.get("peer", "").strip()
        ws = web.WebSocketResponse(heartbeat=20.0, max_msg_size=1 << 20)
        await ws.prepare(request)
        problem = None
        if not room_id or not peer_name or len(room_id) > MAX_NAME or len(peer_name) > MAX_NAME:
            problem = f"room and peer name must be 1 to {MAX_NAME} characters"
        elif (room_id, peer_name) in self.sockets:
            problem = f"the name {peer_name!r} is already taken in room {room_id!r}"
        if problem:
            await ws.send_str(json.dumps({"type": "error", "message": problem}))
            await ws.close()
            return ws

        peer = PeerSocket(room_id, peer_name, ws)
        self.sockets[(room_id, peer_name)] = peer
        writer = asyncio.create_task(peer.writer(), name=f"ws writer {peer_name}")
        log.info("room %r: socket for %r opened from %s", room_id, peer_name, request.remote)
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                try:
                    message = json.loads(msg.data)
                except ValueError:
                    continue
                if not isinstance(message, dict):
                    continue
                # One task per message, started in arrival order: each one hands its message
                # to Tureen in its first step, so Tureen sees them in the browser's order while
                # a slow request does not hold up the notifications behind it.
                task = asyncio.create_task(self._handle(peer, message))
                peer.tasks.add(task)
                task.add_done_callback(peer.tasks.discard)
        finally:
            for task in list(peer.tasks):
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(asyncio.shield(task), 5.0)
            self.sockets.pop((room_id, peer_name), None)
            peer.outbox.put_nowait(None)
            await self._cleanup(peer)
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
        return ws

    async def health(self, _request: web.Request) -> web.Response:
        try:
            info = await self.client.request("server.ping", timeout=3.0)
        except ProtocolError as exc:
            return web.json_response({"ok": False, "error": exc.message}, status=503)
        return web.json_response({"ok": bool(info), "rooms": sorted(self.rooms), "endpoint": self.client.endpoint})


async def _index(_request: web.Request) -> web.StreamResponse:
    return web.FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})


def make_app(relay: Relay) -> web.Application:
    app = web.Application()
    app.router.add_get("/", _index)
    app.router.add_get("/ws", relay.websocket)
    app.router.add_get("/healthz", relay.health)
    app.router.add_static("/static/", STATIC_DIR, show_index=False, append_version=False)
    return app


# ---------------------------------------------------------------------- running it


def free_tcp_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(endpoint: str, workers: int, serve_args: list[str]) -> subprocess.Popen[bytes]:
    """A child `tureen serve` (its log goes to this process's stderr)."""
    args = [sys.executable, "-m", "tureen.supervisor.cli", "serve", "--control", endpoint,
            "--workers", str(workers), *serve_args]
    log.info("starting %s", " ".join(args[1:]))
    return subprocess.Popen(args)


async def wait_ready(
    endpoint: str, timeout: float, process: subprocess.Popen[bytes] | None, **curve: str | None
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"tureen serve exited with {process.returncode}")
        try:
            async with TureenClient(endpoint, timeout=1.0, **curve) as probe:
                info = await probe.server_info()
            if info["workers"] and all(w["alive"] for w in info["workers"]):
                return info
        except ProtocolError as exc:
            last = exc
        await asyncio.sleep(0.2)
    raise RuntimeError(f"Tureen at {endpoint} not ready within {timeout:.0f} s ({last})")


def stop_server(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


async def serve_demo(
    host: str = "127.0.0.1",
    port: int = 8080,
    connect: str | None = None,
    workers: int = 2,
    serve_args: list[str] | None = None,
    ready_file: Path | None = None,
    curve_cert: str | None = None,
    curve_server_key: str | None = None,
) -> None:
    """Run the demo until SIGINT/SIGTERM: a child `tureen serve` (unless `connect` names a
    running one) and the signaling app on http://host:port/. `curve_cert` and
    `curve_server_key` are the TureenClient's CURVE keys for a server that requires them."""
    curve = {"curve_cert": curve_cert, "curve_server_key": curve_server_key}
    if not BUNDLE.exists():
        log.warning(
            "%s is missing: the page cannot load mediasoup-client. Build it with "
            "`scripts/install-browser-deps.sh --no-chromium` (or `make run`).", BUNDLE
        )
    process = None
    endpoint = connect
    if endpoint is None:
        endpoint = f"tcp://127.0.0.1:{free_tcp_port()}"
        process = start_server(endpoint, workers, serve_args or [])
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    runner: web.AppRunner | None = None
    try:
        info = await wait_ready(endpoint, 30.0, process, **curve)
        log.info("Tureen %s at %s: %d workers", info["version"], endpoint, len(info["workers"]))
        async with TureenClient(endpoint, timeout=15.0, **curve) as client:
            relay = Relay(client)
            runner = web.AppRunner(make_app(relay), access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, host, port)
            await site.start()
            url = f"http://{host}:{port}/?room=demo"
            log.info("demo ready: open %s in two browser tabs", url)
            # On stdout, apart from the log lines (stderr): what a newcomer's `make run` is for.
            print(
                f"\n    Tureen demo: open {url} in two browser tabs, allow camera and microphone,"
                " press Join in each (Ctrl-C stops it)\n",
                flush=True,
            )
            if ready_file is not None:
                ready_file.write_text(url)
            while not stop.is_set():
                if process is not None and process.poll() is not None:
                    raise RuntimeError(f"tureen serve exited with {process.returncode}")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 1.0)
            log.info("demo stopping")
            await runner.cleanup()
            runner = None
    finally:
        if runner is not None:
            await runner.cleanup()
        if process is not None:
            await asyncio.to_thread(stop_server, process)
