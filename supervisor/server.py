"""The supervisor's core: rooms, the worker pool, and the control-API methods on top of them.

Each control method validates synchronously and submits its work to the room's mailbox
before anything is awaited, so two requests for one room run in the order they arrived.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Collection
from typing import Any

import psutil
import zmq.asyncio
from tureen.shared import __version__, logs
from tureen.shared.config import Config
from tureen.shared.contract import Command, Event, WorkerDump, WorkerSetLogLevel
from tureen.shared.errors import (
    UNAVAILABLE,
    ProtocolError,
    bad_request,
    duplicate,
    limit,
    not_found,
)
from tureen.shared.protocol.validate import check_message, get_int, get_list, get_obj, get_str
from tureen.supervisor import app_actions, run_dir
from tureen.supervisor.placement import DRAINING, LOST, UP, place_target
from tureen.supervisor.quotas import Quotas
from tureen.supervisor.room import Room
from tureen.supervisor.worker_pool import WorkerPool

log = logging.getLogger("tureen.server")

# Control connections that receive one room's events (the creator and room.subscribe'rs).
MAX_SUBSCRIBERS = 16
# Control connections that receive every room's lifecycle events (server.subscribe: monitors).
MAX_SERVER_SUBSCRIBERS = 16
# The events that are not a lifecycle event: protocol messages for one peer's client, which
# only the app relaying them (the room's subscribers) has any use for.
NOTIFICATION = "notification"
# Events only a room's own subscribers get: protocol notifications (the app relays them) and
# the periodic audio levels (every room's, several a second, would swamp a monitor).
ROOM_ONLY_EVENTS = frozenset({NOTIFICATION, "room.audioLevels"})

EventSink = Callable[[str, dict[str, Any]], None]

# Control methods that a room handles as a server-app action (the table is app_actions.ACTIONS:
# register a new one there).
APP_ACTIONS = frozenset(app_actions.ACTIONS)


class Server:
    def __init__(self, config: Config, ctx: zmq.asyncio.Context | None = None) -> None:
        self.config = config
        self.ctx = ctx or zmq.asyncio.Context.instance()
        self.rooms: dict[str, Room] = {}
        self.quotas = Quotas.from_config(config)
        # Locked for our life, stale sockets (or temp dirs) of a killed supervisor removed;
        # RunDirBusy (a RuntimeError) when another live supervisor has it.
        self._run_dir = run_dir.claim(config.run_dir)
        self.run_dir = self._run_dir.path
        self.closing = False
        self.pool = WorkerPool(config, self.run_dir, self.ctx, self._on_worker_event, self._on_worker_death)
        self._gids = itertools.count(1)
        self._owners: dict[int, Room] = {}
        self._sink: EventSink | None = None
        # room id -> identities of the control connections that receive the room's events,
        # the creator first; every event goes to each (control_server._send_event).
        self.subscriptions: dict[str, list[bytes]] = {}
        # Identities of the connections that receive every room's lifecycle events
        # (server.subscribe), in addition to, never instead of, each room's subscribers.
        self.server_subscribers: list[bytes] = []
        self.started_at = time.monotonic()
        # Remote hosts' link (hosts_listen), started with the pool.
        self.hosts: Any = None

    # ------------------------------------------------------------------ lifecycle

    def set_event_sink(self, sink: EventSink) -> None:
        self._sink = sink

    async def start(self) -> None:
        count = self.config.resolved_workers()
        log.info("starting %d workers (run dir %s)", count, self.run_dir)
        await self.pool.start(count)
        if self.config.hosts_listen:
            from tureen.supervisor.hosts import HostListener

            self.hosts = HostListener(
                self.pool, self.config.hosts_listen, self.config.curve_server_cert, self.config.curve_hosts_dir
            )
            self.hosts.start()

    async def close_rooms(self, timeout: float = 10.0) -> None:
        """Shutdown, first step: refuse new work, close every room (each peer gets `closed`,
        the subscriber `room.closed`), all at once and within `timeout` overall."""
        self.closing = True
        # The workers stop next and take their objects with them: closing each on its
        # worker first would only make the peers of big rooms wait for their `closed`.
        self.pool.draining = True
        rooms = list(self.rooms.values())
        if rooms:
            jobs = [room.submit(room.close) for room in rooms]
            _, pending = await asyncio.wait(jobs, timeout=timeout)
            for job in pending:
                job.cancel()
            if pending:
                log.warning("%d of %d rooms did not close within %.0f s", len(pending), len(rooms), timeout)
        self.rooms.clear()

    async def stop(self) -> None:
        await self.close_rooms()
        if self.hosts is not None:
            await self.hosts.stop()
        await self.pool.stop()
        self._run_dir.release()

    # ------------------------------------------------------------------ RoomServices

    def new_gid(self) -> int:
        return next(self._gids)

    def register(self, gid: int, room: Room) -> None:
        self._owners[gid] = room

    def unregister(self, gid: int) -> None:
        self._owners.pop(gid, None)

    def pick_worker(self, near: Collection[int] = ()) -> int | None:
        """The worker for a peer's next objects, or None while none is ready (the pool is
        starting, or every worker is being replaced): the room then waits (worker_changed).
        `near`: the workers of the room's other peers (WorkerPool.pick)."""
        if self.closing or self.pool.draining:
            raise ProtocolError(UNAVAILABLE, "the server is shutting down; retry on its successor")
        return self.pool.pick(near) if self.pool.ready else None

    def worker_changed(self) -> asyncio.Future[None]:
        return self.pool.changed()

    @property
    def worker_wait(self) -> float:
        """How long a request that needs a worker waits for one (worker_timeout)."""
        return self.config.worker_timeout

    def worker_alive(self, index: int) -> bool:
        return self.pool.alive(index)

    def worker_host(self, index: int) -> str | None:
        """The remote host of worker `index`; None: the supervisor's own (or gone)."""
        link = self.pool.links.get(index)
        return link.host if link is not None else None

    def place_worker(self, host: str | None, worker: int | None) -> int:
        """peer.place's worker: of host `host` (its least loaded), or `worker`, or both
        (placement.place_target says what is refused). Counted as a placement."""
        index = place_target(
            self.host_states(), self.pool.loads(drained=True), host, worker, self.config.host_busy_cpu_percent
        )
        self.pool.note_placed(index)
        return index

    def host_states(self) -> dict[str, str]:
        """Every known host's state by name: the supervisor's own (config host_name), then
        the remote ones; `draining` when an operator drained one that is up."""
        states = {self.config.host_name: UP}
        if self.hosts is not None:
            states.update({name: LOST if s.lost else UP for name, s in self.hosts.current().items()})
        return {name: DRAINING if state == UP and name in self.pool.drained else state for name, state in states.items()}

    async def worker_request(self, index: int, command: Command) -> Any:
        return await self.pool.request(index, command)

    def subscribers(self, room_id: str, event: str | None = None) -> list[bytes]:
        """The identities that receive `room_id`'s `event` (a copy: sends may drop some).

        The room's subscribers get all its events; server-wide subscribers get every event
        but protocol notifications and room.audioLevels (ROOM_ONLY_EVENTS). A connection
        that is both gets each event once."""
        identities = list(self.subscriptions.get(room_id, ()))
        if event not in ROOM_ONLY_EVENTS:
            identities += [i for i in self.server_subscribers if i not in identities]
        return identities

    def drop_subscriber(self, room_id: str, identity: bytes) -> None:
        """Forget a subscriber whose connection is gone (ZeroMQ could not route to it): of
        the room, and server-wide."""
        identities = self.subscriptions.get(room_id)
        if identities and identity in identities:
            identities.remove(identity)
            log.info("room %r: a subscriber's connection is gone; %d subscribers left", room_id, len(identities))
        if identity in self.server_subscribers:
            self.server_subscribers.remove(identity)
            log.info(
                "a server-wide subscriber's connection is gone; %d server-wide subscribers left",
                len(self.server_subscribers),
            )

    def emit(self, room_id: str, event: dict[str, Any]) -> None:
        if self._sink is None:
            return
        try:
            self._sink(room_id, event)
        except Exception:  # an event that cannot go out must not stop the room's handler
            log.exception("room %r: event %r could not be sent", room_id, event.get("event"))

    # ------------------------------------------------------------------ worker events

    def _on_worker_event(self, index: int, event: Event) -> None:
        gid = event.subject()
        room = self._owners.get(gid) if gid is not None else None
        if room is None:
            log.debug("worker %d event for unknown object: %r", index, event)
            return
        room.submit(lambda: room.on_worker_event(event))

    async def _on_worker_death(self, index: int) -> None:
        # submit_worker_death, not submit: a room whose handler waits for a worker runs it
        # from there, or the replacement (started after this) would wait for that handler.
        jobs = [room.submit_worker_death(index) for room in self.rooms.values()]
        await asyncio.gather(*jobs, return_exceptions=True)

    # ------------------------------------------------------------------ control methods

    def dispatch(self, method: str, msg: dict[str, Any], subscriber: bytes) -> Awaitable[Any]:
        """Validate and submit; returns what to await for the reply. Raises ProtocolError."""
        if self.closing:
            raise ProtocolError(UNAVAILABLE, "the server is shutting down; retry on its successor")
        # Every request is bounded before anything looks at it (sizes, counts, appData).
        check_message(msg, max_app_data_bytes=self.config.max_app_data_bytes)
        if method in APP_ACTIONS:
            room = self._room(msg)
            return room.submit(lambda: room.app_action(method, msg))
        handler = self._methods.get(method)
        if handler is None:
            raise ProtocolError("unknown_method", f"unknown control method {method!r}")
        return handler(self, msg, subscriber)

    def _room(self, msg: dict[str, Any]) -> Room:
        room_id = get_str(msg, "roomId", max_length=256)
        room = self.rooms.get(room_id)  # type: ignore[arg-type]
        if room is None or room.closed:
            raise not_found(f"room {room_id!r} not found")
        return room

    def _room_create(self, msg: dict[str, Any], subscriber: bytes) -> Awaitable[Any]:
        media_codecs = get_list(msg, "mediaCodecs")
        room_id = get_str(msg, "roomId", required=False, max_length=256) or uuid.uuid4().hex
        if room_id in self.rooms:
            raise duplicate(f"room {room_id!r} already exists")
        if len(self.rooms) >= self.config.max_rooms:
            raise limit(
                f"this server has {len(self.rooms)} rooms, the most it may have (max_rooms): "
                "close rooms that are done, or raise max_rooms"
            )
        room = Room(room_id, media_codecs or [], self, app_data=msg.get("appData"), quotas=self.quotas)
        self.rooms[room_id] = room
        # Before the room has subscribers: room.created goes to the server-wide ones only
        # (the creator has the reply).
        self.emit(room_id, {"event": "room.created", "roomId": room_id, "appData": room.app_data})
        self.subscriptions[room_id] = [subscriber]
        room.start()
        log.info("room %r created", room_id)
        return _done({"roomId": room_id, "rtpCapabilities": room.rtp_capabilities})

    def _room_close(self, msg: dict[str, Any], subscriber: bytes) -> Awaitable[Any]:
        room = self._room(msg)

        async def close() -> None:
            await room.close()
            self.rooms.pop(room.id, None)
            return None

        # The room's own task finishes the close; the last events still reach the subscriber.
        future = room.submit(close)
        future.add_done_callback(lambda _: self.subscriptions.pop(room.id, None))
        return future

    def _room_list(self, msg: dict[str, Any], subscriber: bytes) -> Awaitable[Any]:
        # `peers: true` adds each room's peer names (`tureen rooms`); counts only by default.
        peers = msg.get("peers", False)
        if not isinstance(peers, bool):
            raise bad_request(f"'peers' must be true or false, got {peers!r}")
        return _done([room.summary(peer_names=peers) for room in self.rooms.values()])

    def _room_dump(self, msg: dict[str, Any], subscriber: bytes) -> Awaitable[Any]:
        room = self._room(msg)

        async def dump() -> Any:
            return room.dump()

        return room.submit(dump)

    def _room_request(self, msg: dict[str, Any], subscriber: bytes) -> Awaitable[Any]:
        room = self._room(msg)
        request = get_obj(msg, "request")
        peer_name = get_str(msg, "peerName", required=False, max_length=256)
        return room.submit(lambda: room.handle_client_message(peer_name, request, notification=False))

    def _room_notify(self, msg: dict[str, Any], subscriber: bytes) -> Awaitable[Any]:
        room = self._room(msg)
        notification = get_obj(msg, "notification")
        peer_name = get_str(msg, "peerName", max_length=256)
        return room.submit(
            lambda: room.handle_client_message(peer_name, notification, notification=True)
        )

    def _room_subscribe(self, msg: dict[str, Any], subscriber: bytes) -> Awaitable[Any]:
        room = self._room(msg)
        identities = self.subscriptions.setdefault(room.id, [])
        if subscriber not in identities:
            if len(identities) >= MAX_SUBSCRIBERS:
                raise limit(
                    f"room {room.id!r} already has {MAX_SUBSCRIBERS} subscribed connections (the most "
                    "allowed): send room.unsubscribe from a connection that no longer needs its events",
                )
            identities.append(subscriber)
        return _done({"roomId": room.id, "subscribers": len(identities)})

    def _room_unsubscribe(self, msg: dict[str, Any], subscriber: bytes) -> Awaitable[Any]:
        room = self._room(msg)
        identities = self.subscriptions.get(room.id, [])
        if subscriber not in identities:
            raise not_found(f"this connection is not subscribed to room {room.id!r}")
        identities.remove(subscriber)
        return _done({"roomId": room.id, "subscribers": len(identities)})

    def _server_subscribe(self, msg: dict[str, Any], subscriber: bytes) -> Awaitable[Any]:
        if subscriber not in self.server_subscribers:
            if len(self.server_subscribers) >= MAX_SERVER_SUBSCRIBERS:
                raise limit(
                    f"this server already has {MAX_SERVER_SUBSCRIBERS} server-wide subscribed connections "
                    "(the most allowed): send server.unsubscribe from a connection that no longer "
                    "needs every room's events, or watch single rooms with room.subscribe"
                )
            self.server_subscribers.append(subscriber)
            log.info("a connection subscribed to every room's events (%d now)", len(self.server_subscribers))
        return _done({"subscribers": len(self.server_subscribers)})

    def _server_unsubscribe(self, msg: dict[str, Any], subscriber: bytes) -> Awaitable[Any]:
        if subscriber not in self.server_subscribers:
            raise not_found("this connection is not subscribed to every room's events (server.subscribe)")
        self.server_subscribers.remove(subscriber)
        return _done({"subscribers": len(self.server_subscribers)})

    def _server_info(self, msg: dict[str, Any], subscriber: bytes) -> Awaitable[Any]:
        return _done(
            {
                "version": __version__,
                "pid": os.getpid(),
                "uptime": round(time.monotonic() - self.started_at, 1),
                "controlEndpoint": self.config.control_endpoint,
                "rooms": len(self.rooms),
                # Requests that need a worker are answered now (true), or wait for one (false:
                # starting, or every worker is being replaced): docs/control-api.md.
                "ready": self.pool.ready,
                # For leak checks (tests/load_churn.py, scripts/soak.py): this process's
                # asyncio tasks (this request's reply task included) and resident memory.
                "tasks": len(asyncio.all_tasks()),
                "rss": psutil.Process().memory_info().rss,
                "workers": self.pool.describe(),
            }
        )

    def _workers_scale(self, msg: dict[str, Any], subscriber: bytes) -> Awaitable[Any]:
        count = get_int(msg, "count", minimum=1, maximum=1024)
        assert count is not None

        async def scale() -> Any:
            retired = await self.pool.scale(count)
            return {"workers": self.pool.describe(), "retired": retired}

        return asyncio.ensure_future(scale())

    def _worker_dump(self, msg: dict[str, Any], subscriber: bytes) -> Awaitable[Any]:
        """One worker's data-path tables and counters (transports with ICE/DTLS state,
        producers, consumers, drop counters): for operators and tests, never for apps' logic."""
        index = get_int(msg, "index", minimum=0, maximum=1024)
        assert index is not None
        if index not in self.pool.links:
            raise ProtocolError("not_found", f"worker {index} does not exist; server.info lists them")
        return asyncio.ensure_future(self.pool.request(index, WorkerDump()))

    def _host_entries(self) -> list[dict[str, Any]]:
        """hosts.list's hosts: this machine's (local: true) and each remote one, by name."""
        return [
            {"name": name, "state": state, "local": name == self.config.host_name, **self.pool.host_load(name)}
            for name, state in sorted(self.host_states().items())
        ]

    def _hosts_list(self, msg: dict[str, Any], subscriber: bytes) -> Awaitable[Any]:
        """The hosts, the supervisor's own included: name, state (up, draining, lost), their
        workers' indexes and load (docs/operations.md, "Hosts")."""
        return _done({"listening": self.config.hosts_listen or None, "hosts": self._host_entries()})

    def _hosts_drain(self, msg: dict[str, Any], subscriber: bytes) -> Awaitable[Any]:
        """Stop (drain: true) or allow again (false) new peers on host `name`; its peers
        stay. By name: a drained host that registers again stays drained."""
        name = get_str(msg, "name", max_length=64)
        assert name is not None  # required
        drain = msg.get("drain")
        if not isinstance(drain, bool):
            raise bad_request(f"'drain' must be true (no new peers there) or false (undrain), got {drain!r}")
        if name not in self.host_states():
            known = ", ".join(sorted(self.host_states()))
            raise not_found(f"no host named {name!r}; the hosts are: {known} (`tureen hosts`)")
        if drain and name not in self.pool.drained:
            log.warning("host %s is draining: no new peers go there; its peers stay", name)
        elif not drain and name in self.pool.drained:
            log.warning("host %s is no longer draining: new peers may go there again", name)
        (self.pool.drained.add if drain else self.pool.drained.discard)(name)
        return _done(next(entry for entry in self._host_entries() if entry["name"] == name))

    def _server_ping(self, msg: dict[str, Any], subscriber: bytes) -> Awaitable[Any]:
        return _done({"pong": True})

    def _server_set_log_level(self, msg: dict[str, Any], subscriber: bytes) -> Awaitable[Any]:
        """Set the log level of the supervisor and of every worker, for everything or for one
        area (`logger`, a logger name prefix such as "tureen.room"): docs/control-api.md."""
        try:
            level, logger = logs.check_level_change(msg.get("level"), msg.get("logger"))
        except ValueError as exc:
            raise bad_request(str(exc)) from None
        logs.set_level(level, logger)
        if logger is None:
            # Workers started later (scale, replacement) start at it too: they get this config.
            self.config.log_level = level
        log.warning("log level of %s set to %s", logger or "everything", level)
        indexes = sorted(self.pool.links)

        async def forward() -> Any:
            results = await asyncio.gather(
                *(self.pool.request(i, WorkerSetLogLevel(level=level, logger=logger)) for i in indexes),  # type: ignore[arg-type]
                return_exceptions=True,
            )
            failed = [i for i, result in zip(indexes, results, strict=True) if isinstance(result, BaseException)]
            for i, result in zip(indexes, results, strict=True):
                if isinstance(result, BaseException):
                    log.warning("worker %d: log level not set: %s", i, result)
            return {"level": level, "logger": logger, "workers": [i for i in indexes if i not in failed], "failed": failed}

        return asyncio.ensure_future(forward())

    _methods: dict[str, Callable[[Server, dict[str, Any], bytes], Awaitable[Any]]] = {
        "room.create": _room_create,
        "room.close": _room_close,
        "room.list": _room_list,
        "room.dump": _room_dump,
        "room.request": _room_request,
        "room.notify": _room_notify,
        "room.subscribe": _room_subscribe,
        "room.unsubscribe": _room_unsubscribe,
        "server.info": _server_info,
        "server.ping": _server_ping,
        "server.subscribe": _server_subscribe,
        "server.unsubscribe": _server_unsubscribe,
        "server.setLogLevel": _server_set_log_level,
        "workers.scale": _workers_scale,
        "worker.dump": _worker_dump,
        "hosts.list": _hosts_list,
        "hosts.drain": _hosts_drain,
    }


def _done(value: Any) -> asyncio.Future[Any]:
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    future.set_result(value)
    return future
