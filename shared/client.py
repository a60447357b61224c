"""Python client of Tureen's control API (docs/control-api.md), on asyncio and pyzmq.

    async with TureenClient("tcp://127.0.0.1:4477") as client:
        room = await client.create_room(MEDIA_CODECS)
        caps = await client.peer_request(room["roomId"], None, {"method": "queryRoom", "target": "room"})
        event = await client.next_event(lambda e: e.get("event") == "notification", timeout=5)

With a CURVE server (docs/security.md) give the client's secret certificate and the server's
public key: `TureenClient(endpoint, curve_cert="app.key_secret", curve_server_key="server.key")`.

Replies are matched to requests by id; events (no id) are queued and read with
`next_event` (which can pick one event out of order by a predicate) or `on_event` callbacks.
This is the only module of tureen.shared that does network I/O.

It covers every control method and event the Node client (clients/node, `@tureen/client`)
does, with the same reconnection rule: ZeroMQ reconnects by itself, and after a reconnection
the client subscribes again to the rooms it created or subscribed to (and to the server's
events if it had), since the server sees a new connection. What happens to the connection is
reported as client events in the same queue and callbacks (docs/control-api.md, "Clients"):
`client.disconnected`, `client.reconnected`, `client.resubscribed {roomId}` (roomId None for the
server-wide subscription), `client.roomLost {roomId}` (a room the server no longer has, after
it restarted: create it again) and `client.resubscribeError {roomId, code, message}`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
from collections import deque
from collections.abc import Callable
from typing import Any

import zmq
import zmq.asyncio
from tureen.shared import wire
from tureen.shared.curve import load_client_keys
from tureen.shared.errors import BAD_REQUEST, NOT_FOUND, UNAVAILABLE, ProtocolError
from zmq.utils.monitor import parse_monitor_message

DEFAULT_ENDPOINT = "tcp://127.0.0.1:4477"
Event = dict[str, Any]
HANDSHAKE_EVENTS = (
    zmq.EVENT_HANDSHAKE_SUCCEEDED
    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_AUTH
    | zmq.EVENT_DISCONNECTED
)
PROFILES = ("default", "low", "medium", "high")
LOG_LEVELS = ("debug", "info", "warning", "error")


def _handshake_problem(event: int, value: int, curve: bool) -> str | None:
    """What a ZeroMQ handshake event says about this client's setup (None: all is well)."""
    if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
        return None
    if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
        return (
            "the server refused this client's CURVE key: copy its public certificate (NAME.key) "
            "into the server's curve_clients_dir"
        )
    if event == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL and value == zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH:
        if curve:
            return "the server does not use CURVE: connect without --curve-cert/--curve-server-key"
        return (
            "the server requires CURVE: give --curve-cert and --curve-server-key "
            "(TUREEN_CURVE_CERT, TUREEN_CURVE_SERVER_KEY; docs/security.md)"
        )
    return _VAGUE[curve]


# What a failed handshake without detail says, for a CURVE client and for a plain one.
_VAGUE = {
    True: "the CURVE handshake failed: is --curve-server-key the public key of this server?",
    False: "the ZeroMQ handshake with the server failed",
}


class TureenClient:
    """One DEALER connection to a Tureen supervisor."""

    def __init__(
        self,
        endpoint: str = DEFAULT_ENDPOINT,
        *,
        timeout: float = 15.0,
        ctx: zmq.asyncio.Context | None = None,
        max_events: int = 100_000,
        curve_cert: str | os.PathLike[str] | None = None,
        curve_server_key: str | os.PathLike[str] | None = None,
        resubscribe: bool = True,
    ) -> None:
        """`curve_cert`: this client's secret certificate (NAME.key_secret); `curve_server_key`:
        the server's public key, as a certificate file or its 40 Z85 characters. Both or
        neither; a bad one raises ValueError here, not at the first request. `resubscribe`:
        subscribe again to this client's rooms after a reconnection (see the module doc)."""
        self.endpoint = endpoint
        self.curve = load_client_keys(
            os.fspath(curve_cert) if curve_cert else None,
            os.fspath(curve_server_key) if curve_server_key else None,
        )
        self.timeout = timeout
        self._ctx = ctx or zmq.asyncio.Context.instance()
        self._socket: zmq.asyncio.Socket | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._events: deque[Event] = deque(maxlen=max_events)
        self._event_added: asyncio.Event | None = None
        self._callbacks: list[Callable[[Event], None]] = []
        self._reader: asyncio.Task[None] | None = None
        self._monitor: zmq.asyncio.Socket | None = None
        self._watcher: asyncio.Task[None] | None = None
        # Why the last connection attempt failed (CURVE key refused, CURVE on one side only),
        # for the message of a request that gets no answer.
        self.handshake_error: str | None = None
        self.resubscribe = resubscribe
        # Whether a ZeroMQ connection to the server is up now.
        self.connected = False
        self._handshakes = 0
        # Rooms whose events this connection receives (created or subscribed), and whether it
        # is subscribed to the server's events: renewed after a reconnection.
        self._rooms: set[str] = set()
        self._server_subscribed = False
        self._background: set[asyncio.Task[None]] = set()

    async def connect(self) -> TureenClient:
        self._socket = self._ctx.socket(zmq.DEALER)
        self._socket.setsockopt(zmq.LINGER, 0)
        if self.curve is not None:
            self.curve.apply(self._socket)
        self._monitor = self._socket.get_monitor_socket(HANDSHAKE_EVENTS)
        self._socket.connect(self.endpoint)
        self._event_added = asyncio.Event()
        loop = asyncio.get_running_loop()
        self._reader = loop.create_task(self._read(), name="tureen client")
        self._watcher = loop.create_task(self._watch_handshakes(), name="tureen client handshakes")
        return self

    async def _watch_handshakes(self) -> None:
        assert self._monitor is not None
        while True:
            event = parse_monitor_message(await self._monitor.recv_multipart())
            if event["event"] == zmq.EVENT_DISCONNECTED:
                if self.connected:
                    self.connected = False
                    self._client_event({"event": "client.disconnected", "endpoint": self.endpoint})
                continue
            if event["event"] == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self.connected = True
                self._handshakes += 1
                if self._handshakes > 1:
                    self._client_event({"event": "client.reconnected", "endpoint": self.endpoint})
                    if self.resubscribe:
                        task = asyncio.get_running_loop().create_task(self._resubscribe())
                        self._background.add(task)
                        task.add_done_callback(self._background.discard)
            problem = _handshake_problem(event["event"], event["value"], self.curve is not None)
            # ZeroMQ retries: a later attempt may fail without detail (the server just closes
            # the connection); keep the specific diagnosis an earlier attempt gave.
            if problem is None or problem not in _VAGUE.values() or self.handshake_error is None:
                self.handshake_error = problem

    async def _resubscribe(self) -> None:
        """After a reconnection the server sees a new connection: subscribe again. A room the
        server no longer has (it restarted) is reported as `client.roomLost`."""
        if self._server_subscribed:
            try:
                await self.request("server.subscribe")
                self._client_event({"event": "client.resubscribed", "roomId": None})
            except ProtocolError as exc:
                self._client_event(
                    {
                        "event": "client.resubscribeError",
                        "roomId": None,
                        "code": exc.code,
                        "message": exc.message,
                    }
                )
        for room_id in sorted(self._rooms):
            try:
                await self.request("room.subscribe", roomId=room_id)
                self._client_event({"event": "client.resubscribed", "roomId": room_id})
            except ProtocolError as exc:
                if exc.code == NOT_FOUND:
                    self._rooms.discard(room_id)
                    self._client_event({"event": "client.roomLost", "roomId": room_id})
                else:
                    self._client_event(
                        {
                            "event": "client.resubscribeError",
                            "roomId": room_id,
                            "code": exc.code,
                            "message": exc.message,
                        }
                    )

    def _client_event(self, event: Event) -> None:
        """Queue and hand to the callbacks an event about the connection itself."""
        self._deliver(event)

    def _deliver(self, event: Event) -> None:
        assert self._event_added is not None
        self._events.append(event)
        self._event_added.set()
        for callback in list(self._callbacks):
            callback(event)

    async def close(self) -> None:
        for task in (*self._background, self._reader, self._watcher):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._reader = self._watcher = None
        self._background.clear()
        self.connected = False
        for future in self._pending.values():
            if not future.done():
                future.set_exception(ProtocolError(UNAVAILABLE, "client closed"))
        self._pending.clear()
        if self._socket is not None:
            self._socket.disable_monitor()
            self._socket.close(linger=0)
            self._socket = None
        if self._monitor is not None:
            self._monitor.close(linger=0)
            self._monitor = None

    async def __aenter__(self) -> TureenClient:
        return await self.connect()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _read(self) -> None:
        assert self._socket is not None and self._event_added is not None
        while True:
            frame = (await self._socket.recv_multipart())[-1]
            try:
                message = wire.decode(frame)
            except ProtocolError:
                continue
            if "event" in message and "id" not in message:
                if message.get("event") == "room.closed":
                    self._rooms.discard(message.get("roomId"))  # type: ignore[arg-type]
                self._deliver(message)
                continue
            future = self._pending.pop(message.get("id"), None)  # type: ignore[arg-type]
            if future is None or future.done():
                continue
            if message.get("ok"):
                future.set_result(message.get("data"))
            else:
                future.set_exception(ProtocolError.from_wire(message.get("error")))

    # ------------------------------------------------------------------ requests

    async def request(self, method: str, *, timeout: float | None = None, **params: Any) -> Any:
        """Send one control request; return its data or raise ProtocolError."""
        if self._socket is None:
            raise ProtocolError(UNAVAILABLE, "client is not connected: call connect() first")
        request_id = next(self._ids)
        # Encoded before it is pending: parameters JSON cannot hold are a bad_request here,
        # and leave no future behind that nothing would ever resolve.
        frame = wire.encode_request(request_id, method, params)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        socket = self._socket

        async def exchange() -> Any:
            # The send is inside the bound too: a DEALER with no live connection (its CURVE
            # handshake failing and reconnecting) waits to send, and did so past any timeout.
            await socket.send(frame)
            return await future

        try:
            return await asyncio.wait_for(exchange(), timeout or self.timeout)
        except TimeoutError:
            if self.handshake_error is not None:
                hint = self.handshake_error
            elif self.curve is not None:
                hint = "is `tureen serve` running there, and is this client's public key in its curve_clients_dir?"
            else:
                hint = "is `tureen serve` running there?"
            raise ProtocolError(
                UNAVAILABLE,
                f"no answer to {method} from {self.endpoint} within {timeout or self.timeout:.0f} s; {hint}",
            ) from None
        finally:
            self._pending.pop(request_id, None)

    async def create_room(
        self, media_codecs: list[dict[str, Any]], room_id: str | None = None, app_data: Any = None
    ) -> dict[str, Any]:
        params: dict[str, Any] = {"mediaCodecs": media_codecs}
        if room_id is not None:
            params["roomId"] = room_id
        if app_data is not None:
            params["appData"] = app_data
        data = await self.request("room.create", **params)
        self._rooms.add(data["roomId"])
        return data

    async def close_room(self, room_id: str) -> None:
        await self.request("room.close", roomId=room_id)
        self._rooms.discard(room_id)

    async def list_rooms(self) -> list[dict[str, Any]]:
        return await self.request("room.list")

    async def dump_room(self, room_id: str) -> dict[str, Any]:
        return await self.request("room.dump", roomId=room_id)

    async def subscribe(self, room_id: str) -> dict[str, Any]:
        """Receive `room_id`'s events on this connection too (the creator keeps them);
        `{roomId, subscribers}`. Renewed after a reconnection."""
        data = await self.request("room.subscribe", roomId=room_id)
        self._rooms.add(room_id)
        return data

    async def unsubscribe(self, room_id: str) -> dict[str, Any]:
        """Stop receiving `room_id`'s events on this connection; `{roomId, subscribers}`."""
        data = await self.request("room.unsubscribe", roomId=room_id)
        self._rooms.discard(room_id)
        return data

    async def subscribe_server(self) -> dict[str, Any]:
        """Receive every room's lifecycle events on this connection (server.subscribe):
        room.created, peer.joined, peer.closed, transport.*, room.closed; never protocol
        notifications, and never taking a room's events from its own subscribers. Renewed
        after a reconnection."""
        data = await self.request("server.subscribe")
        self._server_subscribed = True
        return data

    async def unsubscribe_server(self) -> dict[str, Any]:
        """Stop receiving every room's lifecycle events (server.unsubscribe)."""
        data = await self.request("server.unsubscribe")
        self._server_subscribed = False
        return data

    async def peer_request(self, room_id: str, peer_name: str | None, request: dict[str, Any]) -> Any:
        """Hand over a client->server protocol request; returns the protocol response."""
        params: dict[str, Any] = {"roomId": room_id, "request": request}
        if peer_name is not None:
            params["peerName"] = peer_name
        return await self.request("room.request", **params)

    async def peer_notify(self, room_id: str, peer_name: str, notification: dict[str, Any]) -> None:
        """Hand over a client->server protocol notification (errors still come back)."""
        await self.request("room.notify", roomId=room_id, peerName=peer_name, notification=notification)

    async def server_info(self) -> dict[str, Any]:
        """server.info: version, pid, ready, workers (docs/control-api.md, "Server")."""
        return await self.request("server.info")

    async def ping(self) -> dict[str, Any]:
        """server.ping: `{"pong": True}`."""
        return await self.request("server.ping")

    async def wait_ready(self, timeout: float = 30.0, interval: float = 0.2) -> dict[str, Any]:
        """Poll server.info until it says `ready` (workers up) and return it; raise
        ProtocolError(unavailable) after `timeout` s. For apps that start Tureen themselves."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        last = "no answer"
        while (left := deadline - loop.time()) > 0:
            try:
                info = await self.request("server.info", timeout=max(0.05, min(left, 1.0)))
                if info.get("ready"):
                    return info
                last = "ready: false"
            except ProtocolError as exc:
                if exc.code != UNAVAILABLE:
                    raise
                last = exc.message
            await asyncio.sleep(max(0.0, min(interval, deadline - loop.time())))
        raise ProtocolError(UNAVAILABLE, f"server at {self.endpoint} not ready within {timeout} s ({last})")

    async def set_log_level(self, level: str, logger: str | None = None) -> dict[str, Any]:
        """server.setLogLevel until restart (`logger`: one area, e.g. "tureen.room");
        `{level, logger, workers, failed}`."""
        if level not in LOG_LEVELS:
            raise ProtocolError(BAD_REQUEST, f"level must be one of {', '.join(LOG_LEVELS)}, not {level!r}")
        params: dict[str, Any] = {"level": level}
        if logger is not None:
            params["logger"] = logger
        return await self.request("server.setLogLevel", **params)

    async def dump_worker(self, index: int) -> dict[str, Any]:
        """One worker's data-path state (worker.dump): transports, counters."""
        return await self.request("worker.dump", index=index)

    async def scale_workers(self, count: int) -> dict[str, Any]:
        return await self.request("workers.scale", count=count, timeout=60.0)

    # ------------------------------------------------------ server-app actions

    async def _action(self, method: str, app_data: Any = None, **params: Any) -> None:
        if app_data is not None:
            params["appData"] = app_data
        await self.request(method, **params)

    async def close_peer(self, room_id: str, peer_name: str, app_data: Any = None) -> None:
        """peer.close: its client gets `closed {appData}`, the others `peerClosed`."""
        await self._action("peer.close", app_data, roomId=room_id, peerName=peer_name)

    async def close_transport(self, room_id: str, peer_name: str, transport_id: int, app_data: Any = None) -> None:
        """transport.close: its client gets `transportClosed {id, appData}`."""
        await self._action("transport.close", app_data, roomId=room_id, peerName=peer_name, transportId=transport_id)

    async def pause_producer(self, room_id: str, peer_name: str, producer_id: int, app_data: Any = None) -> None:
        """producer.pause (`peer_name`: the producer's peer)."""
        await self._action("producer.pause", app_data, roomId=room_id, peerName=peer_name, producerId=producer_id)

    async def resume_producer(self, room_id: str, peer_name: str, producer_id: int, app_data: Any = None) -> None:
        """producer.resume."""
        await self._action("producer.resume", app_data, roomId=room_id, peerName=peer_name, producerId=producer_id)

    async def close_producer(self, room_id: str, peer_name: str, producer_id: int, app_data: Any = None) -> None:
        """producer.close: its consumers close too."""
        await self._action("producer.close", app_data, roomId=room_id, peerName=peer_name, producerId=producer_id)

    async def pause_consumer(self, room_id: str, peer_name: str, consumer_id: int, app_data: Any = None) -> None:
        """consumer.pause (`peer_name`: the receiving peer)."""
        await self._action("consumer.pause", app_data, roomId=room_id, peerName=peer_name, consumerId=consumer_id)

    async def resume_consumer(self, room_id: str, peer_name: str, consumer_id: int, app_data: Any = None) -> None:
        """consumer.resume."""
        await self._action("consumer.resume", app_data, roomId=room_id, peerName=peer_name, consumerId=consumer_id)

    async def set_consumer_preferred_profile(
        self, room_id: str, peer_name: str, consumer_id: int, profile: str
    ) -> None:
        """consumer.setPreferredProfile: "default", "low", "medium" or "high"."""
        if profile not in PROFILES:
            raise ProtocolError(BAD_REQUEST, f"profile must be one of {', '.join(PROFILES)}, not {profile!r}")
        await self._action(
            "consumer.setPreferredProfile",
            roomId=room_id,
            peerName=peer_name,
            consumerId=consumer_id,
            profile=profile,
        )

    async def set_transport_max_bitrate(
        self, room_id: str, peer_name: str, transport_id: int, bitrate: int
    ) -> dict[str, Any]:
        """transport.setMaxBitrate: cap what Tureen's REMB asks the sender for (0: no cap)."""
        return await self.request(
            "transport.setMaxBitrate",
            roomId=room_id,
            peerName=peer_name,
            transportId=transport_id,
            bitrate=bitrate,
        )

    async def request_consumer_key_frame(self, room_id: str, peer_name: str, consumer_id: int) -> None:
        """consumer.requestKeyFrame: a PLI toward the sender of the consumer's producer."""
        await self.request("consumer.requestKeyFrame", roomId=room_id, peerName=peer_name, consumerId=consumer_id)

    async def get_producer_stats(self, room_id: str, peer_name: str, producer_id: int) -> list[dict[str, Any]]:
        """producer.getStats: entries in the shape of the producerStats notification."""
        return await self.request("producer.getStats", roomId=room_id, peerName=peer_name, producerId=producer_id)

    async def get_consumer_stats(self, room_id: str, peer_name: str, consumer_id: int) -> list[dict[str, Any]]:
        """consumer.getStats: entries in the shape of the consumerStats notification."""
        return await self.request("consumer.getStats", roomId=room_id, peerName=peer_name, consumerId=consumer_id)

    async def get_transport_stats(self, room_id: str, peer_name: str, transport_id: int) -> list[dict[str, Any]]:
        """transport.getStats: entries in the shape of the transportStats notification."""
        return await self.request("transport.getStats", roomId=room_id, peerName=peer_name, transportId=transport_id)

    async def list_hosts(self) -> dict[str, Any]:
        """hosts.list: {listening, hosts: [{name, state, local, workers, transports, cpuPercent}]}."""
        return await self.request("hosts.list")

    async def drain_host(self, name: str, drain: bool = True) -> dict[str, Any]:
        """hosts.drain: no new peers go to host `name` (False: they may again); the host's entry."""
        return await self.request("hosts.drain", name=name, drain=drain)

    async def place_peer(
        self, room_id: str, peer_name: str, worker: int | None = None, *, host: str | None = None
    ) -> dict[str, Any]:
        """peer.place: the peer's transports go to worker `worker`, or to the least loaded
        worker of host `host`, or to `worker` of `host` (before its first one): {worker}."""
        params: dict[str, Any] = {"roomId": room_id, "peerName": peer_name}
        if worker is not None:
            params["worker"] = worker
        if host is not None:
            params["host"] = host
        return await self.request("peer.place", **params)

    async def dump_peer(self, room_id: str, peer_name: str) -> dict[str, Any]:
        """peer.dump: the peer's part of room.dump."""
        return await self.request("peer.dump", roomId=room_id, peerName=peer_name)

    async def create_rtp_streamer(
        self,
        room_id: str,
        producer_id: int,
        remote_ip: str,
        remote_port: int,
        local_ip: str | None = None,
        app_data: Any = None,
    ) -> dict[str, Any]:
        """rtpStreamer.create: plain RTP of a producer to remote_ip:remote_port;
        `{streamerId, localIP, localPort, rtpParameters, sdp}`."""
        params: dict[str, Any] = {
            "roomId": room_id,
            "producerId": producer_id,
            "remoteIP": remote_ip,
            "remotePort": remote_port,
        }
        if local_ip is not None:
            params["localIP"] = local_ip
        if app_data is not None:
            params["appData"] = app_data
        return await self.request("rtpStreamer.create", **params)

    async def close_rtp_streamer(self, room_id: str, streamer_id: int) -> None:
        """rtpStreamer.close."""
        await self.request("rtpStreamer.close", roomId=room_id, streamerId=streamer_id)

    async def set_audio_levels(self, room_id: str, interval: int, threshold: float | None = None) -> dict[str, Any]:
        """room.setAudioLevels: `room.audioLevels` events every `interval` ms (0: off) for the
        producers above `threshold` dBov; `{interval, threshold}`."""
        params: dict[str, Any] = {"roomId": room_id, "interval": interval}
        if threshold is not None:
            params["threshold"] = threshold
        return await self.request("room.setAudioLevels", **params)

    # ------------------------------------------------------------------ events

    def on_event(self, callback: Callable[[Event], None]) -> None:
        """Call `callback(event)` for every event as it is read (server events and client.*)."""
        self._callbacks.append(callback)

    def off_event(self, callback: Callable[[Event], None]) -> None:
        """Stop calling `callback` (ValueError if it was not registered)."""
        self._callbacks.remove(callback)

    def pending_events(self) -> list[Event]:
        return list(self._events)

    async def next_event(self, predicate: Callable[[Event], bool] | None = None, timeout: float = 5.0) -> Event:
        """The oldest queued event matching `predicate` (removed from the queue).

        Raises TimeoutError naming what was awaited when none arrives within `timeout`.
        """
        assert self._event_added is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            for event in self._events:
                if predicate is None or predicate(event):
                    self._events.remove(event)
                    return event
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"no matching event within {timeout} s; {len(self._events)} other events queued")
            self._event_added.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._event_added.wait(), remaining)

    async def next_notification(
        self, peer_name: str, method: str, timeout: float = 5.0, **match: Any
    ) -> dict[str, Any]:
        """The next protocol notification `method` addressed to `peer_name` (its payload)."""

        def wanted(event: Event) -> bool:
            note = event.get("notification") or {}
            return (
                event.get("event") == "notification"
                and event.get("peerName") == peer_name
                and note.get("method") == method
                and all(note.get(k) == v for k, v in match.items())
            )

        try:
            event = await self.next_event(wanted, timeout)
        except TimeoutError:
            raise TimeoutError(f"no {method} notification for peer {peer_name!r} within {timeout} s") from None
        return event["notification"]
