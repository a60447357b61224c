"""The Room actor: one asyncio task, one mailbox, and the dispatch of the mediasoup v2
protocol to its handlers.

Theory
------
Everything that touches a room runs inside its task, in the order it was submitted: client
messages (room.request / room.notify), server-app actions, worker events and worker deaths.
So no locks, and a handler may await its workers without another message seeing half a change.

Every handler follows the same three steps, which is what makes "a bad message changes
nothing" hold:
  1. validate the message completely (types, ids, references, state) -> ProtocolError;
  2. do the worker side (create/close on the worker), undoing it if a later step fails;
  3. commit the state change and emit notifications.
Closing is best effort on the worker side (a dead worker must not stop a peer from leaving),
never on the state side. The state objects (peer.py, transport.py, producer.py, consumer.py)
change state only through their one checked setter (states.py).

Notifications go out through `RoomServices.emit`, tagged with the peer they are for; the
control server forwards them to every app connection subscribed to the room. The supervisor never sees
a packet: only worker-global ids and commands cross to the workers.

Where things are (docs/internals.md has the map and the walk of one request):
- this module: the mailbox, the tables below, and what every handler uses of the room
  (`request`, `notify`, the lookups `transport_of`/`producer_of`/`consumer_of`, `register`);
- the protocol handlers, by the object they act on: peer_handlers.py, transport_handlers.py,
  producer_handlers.py, consumer_handlers.py; the stats switches and reports: stats.py;
- the server app's actions: app_actions.py (`ACTIONS`); worker events and deaths:
  worker_events.py (`HANDLERS`); pipe policy: pipes.py.

Adding a client->server protocol message: a handler `async def x(room, peer, msg)` in the
module of its object, a row in `PEER_HANDLERS` (or `ROOM_HANDLERS` for target 'room'), and
its name in `REQUESTS` when it is a request (a notification otherwise).
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Awaitable, Callable, Collection
from typing import Any, Protocol

from tureen.shared import contract
from tureen.shared.errors import UNAVAILABLE, ProtocolError, bad_request, not_found
from tureen.shared.protocol.validate import get_id, get_str
from tureen.shared.rtp import capabilities as caps
from tureen.supervisor import (
    app_actions,
    consumer_handlers,
    peer_handlers,
    producer_handlers,
    stats,
    transport_handlers,
    worker_events,
)
from tureen.supervisor.audio_levels import AudioLevels
from tureen.supervisor.consumer import Consumer
from tureen.supervisor.peer import Peer
from tureen.supervisor.producer import Producer
from tureen.supervisor.quotas import Quotas
from tureen.supervisor.rtp_streamer import RtpStreamers
from tureen.supervisor.transport import Transport

log = logging.getLogger("tureen.room")

RoomHandler = Callable[["Room", dict[str, Any]], Awaitable[Any]]
PeerHandler = Callable[["Room", Peer, dict[str, Any]], Awaitable[Any]]

# ---------------------------------------------------------------------- the protocol table
# Messages with target 'room' (no peer yet) and with target 'peer' (sent by a joined peer).
ROOM_HANDLERS: dict[str, RoomHandler] = {
    "queryRoom": peer_handlers.query_room,
    "join": peer_handlers.join,
}
PEER_HANDLERS: dict[str, PeerHandler] = {
    "leave": peer_handlers.leave,
    "createTransport": transport_handlers.create_transport,
    "updateTransport": transport_handlers.update_transport,
    "restartTransport": transport_handlers.restart_transport,
    "closeTransport": transport_handlers.close_transport_msg,
    "enableTransportStats": stats.switch(lambda r, p, m: r.transport_of(p, m), enable=True),
    "disableTransportStats": stats.switch(lambda r, p, m: r.transport_of(p, m), enable=False),
    "createProducer": producer_handlers.create_producer,
    "updateProducer": producer_handlers.update_producer,
    "pauseProducer": producer_handlers.pause_producer,
    "resumeProducer": producer_handlers.resume_producer,
    "closeProducer": producer_handlers.close_producer_msg,
    "enableProducerStats": stats.switch(lambda r, p, m: r.producer_of(p, m), enable=True),
    "disableProducerStats": stats.switch(lambda r, p, m: r.producer_of(p, m), enable=False),
    "enableConsumer": consumer_handlers.enable_consumer,
    "pauseConsumer": consumer_handlers.pause_consumer,
    "resumeConsumer": consumer_handlers.resume_consumer,
    "setConsumerPreferredProfile": consumer_handlers.set_preferred_profile,
    "enableConsumerStats": stats.switch(lambda r, p, m: r.consumer_of(p, m), enable=True),
    "disableConsumerStats": stats.switch(lambda r, p, m: r.consumer_of(p, m), enable=False),
}
# Which messages are requests (room.request, answered); every other one is a notification.
REQUESTS = frozenset(
    {"queryRoom", "join", "createTransport", "restartTransport", "createProducer", "enableConsumer"}
)
NOTIFICATIONS = frozenset(ROOM_HANDLERS.keys() | PEER_HANDLERS.keys()) - REQUESTS
ROOM_TARGET = frozenset(ROOM_HANDLERS)


class RoomServices(Protocol):
    """What a room needs from the server around it (narrow on purpose: a room
    reaches workers and subscribers only through these)."""

    def new_gid(self) -> int: ...
    def register(self, gid: int, room: Room) -> None: ...
    def unregister(self, gid: int) -> None: ...
    def pick_worker(self, near: Collection[int] = ()) -> int | None: ...
    def worker_changed(self) -> asyncio.Future[None]: ...
    @property
    def worker_wait(self) -> float: ...
    def worker_alive(self, index: int) -> bool: ...
    def worker_host(self, index: int) -> str | None: ...
    def place_worker(self, host: str | None, worker: int | None) -> int: ...
    async def worker_request(self, index: int, command: contract.Command) -> Any: ...
    def emit(self, room_id: str, event: dict[str, Any]) -> None: ...


class Room:
    """One room: its codecs, peers and their objects, behind a mailbox."""

    def __init__(
        self,
        room_id: str,
        media_codecs: list[Any],
        services: RoomServices,
        app_data: Any = None,
        quotas: Quotas | None = None,
    ) -> None:
        self.id = room_id
        self.quotas = quotas or Quotas()
        self.media_codecs = media_codecs
        self.rtp_capabilities = caps.room_rtp_capabilities(media_codecs)
        self.app_data = app_data
        self.peers: dict[str, Peer] = {}
        self.closed = False
        self.services = services
        # Room-wide id sets (duplicates are rejected room-wide: `duplicate`,
        # docs/protocol/messages.md).
        self.transports: dict[int, Transport] = {}
        self.producers: dict[int, Producer] = {}
        self.consumers: dict[int, Consumer] = {}
        # gid -> object, for worker events.
        self._by_gid: dict[int, Transport | Producer | Consumer] = {}
        self._mailbox: asyncio.Queue[tuple[Callable[[], Awaitable[Any]], asyncio.Future[Any]]] = (
            asyncio.Queue()
        )
        self._task: asyncio.Task[None] | None = None
        # Worker deaths not yet handled (submit_worker_death): run in mailbox order, or
        # earlier by a handler waiting for a worker (_wait_for_worker), which sets the event.
        self._deaths: collections.deque[tuple[int, asyncio.Future[None]]] = collections.deque()
        self._death_signal = asyncio.Event()
        # Periodic transportStats / producerStats / consumerStats (supervisor/stats.py).
        self.stats = stats.StatsTimers(f"room {room_id!r}", lambda obj: stats.report(self, obj))
        # room.audioLevels / room.activeSpeaker, and RtpStreamers (room_methods.py).
        self.audio_levels = AudioLevels(self, getattr(getattr(services, "config", None), "audio_levels_interval", 0))
        self.streamers = RtpStreamers(self)

    def names(self, peer: str | None = None, **ids: int) -> dict[str, Any]:
        """A log line's `extra=`: this room, the peer and protocol ids it is about (the
        keys of `--log-format json`, shared/logs.py)."""
        return {"room": self.id, "peer": peer, "ids": ids or None}

    # ------------------------------------------------------------------ actor plumbing

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"room {self.id}")
        self.audio_levels.start()

    def submit(self, job: Callable[[], Awaitable[Any]]) -> asyncio.Future[Any]:
        """Queue a job; it runs after everything submitted before it. Never blocks."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self.closed and self._task is None:
            future.set_exception(not_found(f"room {self.id!r} is closed"))
            return future
        self._mailbox.put_nowait((job, future))
        return future

    def submit_worker_death(self, index: int) -> asyncio.Future[None]:
        """Queue `on_worker_died(index)`; done when it ran. It runs in mailbox order, or
        sooner: a handler that waits for a worker (none is alive: this death may be why)
        runs it while it waits, as if the death had come first. The worker's replacement
        starts only once every room handled the death, so waiting for it behind the death
        in the mailbox would wait out the whole worker_timeout."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._deaths.append((index, future))
        self._death_signal.set()
        marker = self.submit(self._run_deaths)

        def settle(job: asyncio.Future[Any]) -> None:
            if not job.cancelled():
                job.exception()  # retrieved: a closed room's refusal is no error here
            if not future.done():  # the room closed first: nothing of it is left to close
                future.set_result(None)

        marker.add_done_callback(settle)
        return future

    async def _run_deaths(self) -> None:
        while self._deaths:
            index, future = self._deaths.popleft()
            try:
                await self.on_worker_died(index)
            except Exception:  # a bug: the other deaths still run, the pool goes on
                log.exception("room %r: handling the death of worker %d failed", self.id, index)
            if not future.done():
                future.set_result(None)

    async def _run(self) -> None:
        while True:
            job, future = await self._mailbox.get()
            if future.cancelled():
                continue
            try:
                result = await job()
            except ProtocolError as exc:
                if not future.done():
                    future.set_exception(exc)
            except Exception as exc:  # a bug: report it, keep the room alive
                log.exception("room %r: internal error", self.id)
                if not future.done():
                    future.set_exception(exc)
            else:
                if not future.done():
                    future.set_result(result)
            # One loop turn, so that the control server's task awaiting `future` sends the
            # reply before the next job emits events: apps relay in wire order, and a join
            # reply behind the peerClosed of a peer it lists leaves a ghost peer in the client.
            await asyncio.sleep(0)
            if self.closed:
                self._drain_closed()
                return

    def _drain_closed(self) -> None:
        while not self._mailbox.empty():
            _, future = self._mailbox.get_nowait()
            if not future.done():
                future.set_exception(not_found(f"room {self.id!r} is closed"))
        self._task = None

    # ------------------------------------------------------------------ entry points

    async def handle_client_message(
        self, peer_name: str | None, message: Any, *, notification: bool
    ) -> Any:
        """A client->server protocol message. Returns the response (None for notifications)."""
        if self.closed:
            raise not_found(f"room {self.id!r} is closed")
        if not isinstance(message, dict):
            raise bad_request("the protocol message must be a JSON object")
        method = get_str(message, "method", max_length=64)
        if method not in REQUESTS and method not in NOTIFICATIONS:
            raise ProtocolError("unknown_method", f"unknown protocol method {method!r}")
        if notification and method in REQUESTS:
            raise bad_request(f"{method} is a request: send it with room.request")
        if not notification and method in NOTIFICATIONS:
            raise bad_request(f"{method} is a notification: send it with room.notify")
        expected_target = "room" if method in ROOM_TARGET else "peer"
        target = message.get("target", expected_target)
        if target != expected_target:
            raise bad_request(f"{method} must have target {expected_target!r}, got {target!r}")
        if method == "join" and peer_name is not None and message.get("peerName") != peer_name:
            # An app that names the sender in the envelope trusts that name: the join must not
            # create somebody else (issue 12: "mallory" joining as "alice").
            raise bad_request(
                f"join for peer {message.get('peerName')!r} sent as peer {peer_name!r}: the "
                "envelope's peerName and the join's must agree (or leave the envelope's out)"
            )
        if method in ROOM_HANDLERS:
            result = await ROOM_HANDLERS[method](self, message)
        else:
            if not isinstance(peer_name, str) or not peer_name:
                raise bad_request(f"{method} is a peer message: give the peerName that sent it")
            peer = self.peers.get(peer_name)
            if peer is None:
                raise not_found(f"peer {peer_name!r} not found in room {self.id!r}")
            result = await PEER_HANDLERS[method](self, peer, message)
        return None if notification else result

    async def app_action(self, action: str, msg: dict[str, Any]) -> Any:
        """A server-app action (app_actions.ACTIONS); each tells the client of the peer it acts on."""
        if self.closed:
            raise not_found(f"room {self.id!r} is closed")
        handler = app_actions.ACTIONS.get(action)
        if handler is None:
            raise ProtocolError("unknown_method", f"unknown action {action!r}")
        return await handler(self, msg)

    async def on_worker_event(self, event: contract.Event) -> None:
        """A worker's event (decoded by the server) about one of this room's objects."""
        obj = self._by_gid.get(event.subject() or -1)
        kind, handler = worker_events.HANDLERS.get(type(event), (None, None))
        if handler is not None and isinstance(obj, kind):  # type: ignore[arg-type]
            await handler(self, obj, event)

    async def on_worker_died(self, index: int) -> None:
        """Everything hosted on worker `index` is gone (worker_events.on_worker_died)."""
        await worker_events.on_worker_died(self, index)

    async def close(self) -> None:
        """Every peer gets `closed`; later ones first hear peerClosed for earlier ones."""
        if self.closed:
            return
        for peer in list(self.peers.values()):
            await peer_handlers.close_peer(self, peer, None, notify_peer=True)
        self.closed = True
        self.stats.stop_all()
        self.audio_levels.stop()
        log.info("room %r closed", self.id, extra=self.names())
        self.lifecycle("room.closed")

    def dump(self) -> dict[str, Any]:
        return {
            "roomId": self.id,
            "closed": self.closed,
            "appData": self.app_data,
            "rtpCapabilities": self.rtp_capabilities,
            "peers": [p.dump() for p in self.peers.values()],
        }

    def summary(self, peer_names: bool = False) -> dict[str, Any]:
        """room.list's entry: counts, and the peers' names when asked (`peer_names`). appData
        is in dump(): a list of every room stays small whatever the apps keep in their rooms."""
        entry: dict[str, Any] = {
            "roomId": self.id,
            "peers": len(self.peers),
            "transports": len(self.transports),
            "producers": len(self.producers),
            "consumers": len(self.consumers),
        }
        if peer_names:
            entry["peerNames"] = list(self.peers)
        return entry

    # Operations that were Room methods before the handlers moved out (kept for callers).

    async def close_peer(self, peer: Peer, app_data: Any, *, notify_peer: bool) -> None:
        await peer_handlers.close_peer(self, peer, app_data, notify_peer=notify_peer)

    async def set_producer_paused(self, producer: Producer, paused: bool) -> bool:
        return await producer_handlers.set_producer_paused(self, producer, paused)

    async def apply_preferred_profile(self, consumer: Consumer, profile: str) -> None:
        await consumer_handlers.apply_preferred_profile(self, consumer, profile)

    # ------------------------------------------------------------------ for the handlers

    def notify(self, peer: Peer, method: str, **data: Any) -> None:
        """A server->client notification to `peer` (nothing once it closed)."""
        if peer.closed:
            return
        # An appData nobody gave is absent, not null, as v2's JSON drops an undefined one.
        if "appData" in data and data["appData"] is None:
            del data["appData"]
        self.services.emit(
            self.id,
            {
                "event": "notification",
                "roomId": self.id,
                "peerName": peer.name,
                "notification": {"method": method, "target": "peer", "notification": True, **data},
            },
        )

    def lifecycle(self, name: str, **fields: Any) -> None:
        """An event for the room's subscribed apps (peer.joined, transport.closed ...)."""
        self.services.emit(self.id, {"event": name, "roomId": self.id, **fields})

    def app_peer(self, msg: dict[str, Any]) -> Peer:
        """The peer an app action names (`peerName`)."""
        name = msg.get("peerName")
        if not isinstance(name, str):
            raise bad_request("field 'peerName' must be a string")
        peer = self.peers.get(name)
        if peer is None:
            raise not_found(f"peer {name!r} not found in room {self.id!r}")
        return peer

    def transport_of(
        self, peer: Peer, msg: dict[str, Any], key: str = "id", what: str = "Transport"
    ) -> Transport:
        """`what` names it in the error as v2 does (createProducer: 'WebRtcTransport')."""
        tid = get_id(msg, key)
        transport = peer.transports.get(tid)
        if transport is None:
            raise not_found(f"{what} not found: {peer.describe()} has no transport {tid}")
        return transport

    def producer_of(self, peer: Peer, msg: dict[str, Any], key: str = "id") -> Producer:
        pid = get_id(msg, key)
        producer = peer.producers.get(pid)
        if producer is None:
            raise not_found(f"Producer not found: {peer.describe()} has no producer {pid}")
        return producer

    def consumer_of(self, peer: Peer, msg: dict[str, Any], key: str = "id") -> Consumer:
        cid = get_id(msg, key)
        consumer = peer.consumers.get(cid)
        if consumer is None:
            raise not_found(f"Consumer not found: {peer.describe()} has no consumer {cid}")
        return consumer

    def new_gid(self) -> int:
        """A worker-global id for a new transport, producer or consumer."""
        return self.services.new_gid()

    def register(self, obj: Transport | Producer | Consumer) -> None:
        """`obj` exists: its worker's events reach this room."""
        self._by_gid[obj.gid] = obj
        self.services.register(obj.gid, self)

    def begin_close(self, obj: Transport | Producer | Consumer) -> bool:
        """First step of closing `obj`: CLOSED, its stats stopped. False: it was closed already."""
        if obj.closed:
            return False
        obj.close()
        self.stats.stop(obj)
        return True

    def unregister(self, obj: Transport | Producer | Consumer) -> None:
        self._by_gid.pop(obj.gid, None)
        self.services.unregister(obj.gid)

    # ------------------------------------------------------------------ workers

    async def request(self, index: int, command: contract.Command) -> Any:
        """`command` to worker `index`; its reply's data, or the ProtocolError it raised."""
        return await self.services.worker_request(index, command)

    async def request_quiet(self, index: int, command: contract.Command) -> None:
        """Best effort, for closing: the state change goes ahead whatever the worker says."""
        if not self.services.worker_alive(index):
            return
        try:
            await self.services.worker_request(index, command)
        except ProtocolError as exc:
            method = command.name()
            if exc.code == "not_found":
                # Already gone there: the worker closed it first (the browser's DTLS
                # close_notify after it heard `closed`, a failed transport). Done either way.
                log.debug("room %r: worker %d %s: %s", self.id, index, method, exc.message)
                return
            log.warning("room %r: worker %d %s failed: %s", self.id, index, method, exc.message)

    async def worker_for(self, peer: Peer, deadline: float) -> int:
        """The worker hosting `peer`'s transports: its own while alive, else a new one,
        waited for until `deadline` (loop time) when none is ready."""
        if peer.worker is None or not self.services.worker_alive(peer.worker):
            peer.worker = await self._wait_for_worker(deadline)
        return peer.worker

    async def _wait_for_worker(self, deadline: float) -> int:
        """A worker for new objects; while none is ready (the server is starting, or every
        worker is being replaced) wait for one until `deadline`, running the room's worker
        deaths meanwhile (submit_worker_death). Nothing was changed before: the caller
        validated only, and a death removes objects, so what it checked still holds."""
        loop = asyncio.get_running_loop()
        while True:
            self._death_signal.clear()
            await self._run_deaths()
            index = self.services.pick_worker([p.worker for p in self.peers.values() if p.worker is not None])
            if index is not None:
                return index
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise ProtocolError(
                    UNAVAILABLE,
                    f"no worker is running: none came up within worker_timeout "
                    f"({self.services.worker_wait:g} s); check the supervisor log and retry",
                )
            changed = self.services.worker_changed()
            death = loop.create_task(self._death_signal.wait())
            try:
                await asyncio.wait((changed, death), timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
            finally:
                death.cancel()
                changed.cancel()
