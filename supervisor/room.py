"""The Room actor: one asyncio task, one mailbox, the whole mediasoup v2 protocol state machine.

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
never on the state side.

Notifications go out through `RoomServices.emit`, tagged with the peer they are for; the
control server forwards them to every app connection subscribed to the room. The supervisor never sees
a packet: only worker-global ids and commands cross to the workers.
"""

from __future__ import annotations

import asyncio
import collections
import ipaddress
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from tureen.shared import contract
from tureen.shared.contract import MAX_NACK_SEQS, PROFILES, WEBRTC_OPTIONS
from tureen.shared.errors import (
    BAD_REQUEST,
    UNAVAILABLE,
    ProtocolError,
    bad_request,
    duplicate,
    invalid_state,
    limit,
    not_found,
    unsupported,
)
from tureen.shared.protocol.validate import get_bool, get_id, get_int, get_obj, get_str
from tureen.shared.rtp import capabilities as caps
from tureen.supervisor.consumer import Consumer
from tureen.supervisor.peer import Peer
from tureen.supervisor.producer import Producer
from tureen.supervisor.quotas import Quotas
from tureen.supervisor.stats import (
    StatsTimers,
    consumer_entries,
    parse_interval,
    producer_entries,
    transport_entry,
)
from tureen.supervisor.transport import Transport

log = logging.getLogger("tureen.room")

REQUESTS = frozenset(
    {"queryRoom", "join", "createTransport", "restartTransport", "createProducer", "enableConsumer"}
)
NOTIFICATIONS = frozenset(
    {
        "leave",
        "updateTransport",
        "closeTransport",
        "enableTransportStats",
        "disableTransportStats",
        "updateProducer",
        "pauseProducer",
        "resumeProducer",
        "closeProducer",
        "enableProducerStats",
        "disableProducerStats",
        "pauseConsumer",
        "resumeConsumer",
        "setConsumerPreferredProfile",
        "enableConsumerStats",
        "disableConsumerStats",
    }
)
ROOM_TARGET = frozenset({"queryRoom", "join"})


class RoomServices(Protocol):
    """What a room needs from the server around it (narrow on purpose: STYLE.md §10)."""

    def new_gid(self) -> int: ...
    def register(self, gid: int, room: Room) -> None: ...
    def unregister(self, gid: int) -> None: ...
    def pick_worker(self) -> int | None: ...
    def worker_changed(self) -> asyncio.Future[None]: ...
    @property
    def worker_wait(self) -> float: ...
    def worker_alive(self, index: int) -> bool: ...
    async def worker_request(self, index: int, command: contract.Command) -> Any: ...
    def emit(self, room_id: str, event: dict[str, Any]) -> None: ...


def _random_id(taken: Callable[[int], bool]) -> int:
    """A protocol id in mediasoup's range (10000000-99999999) not yet used in the room."""
    while True:
        value = 10_000_000 + secrets.randbelow(90_000_000)
        if not taken(value):
            return value


def _new_ssrc() -> int:
    return 100_000_000 + secrets.randbelow(900_000_000)


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
        self._services = services
        # Room-wide id sets (duplicates are rejected room-wide, PROTOCOL.md).
        self._transports: dict[int, Transport] = {}
        self._producers: dict[int, Producer] = {}
        self._consumers: dict[int, Consumer] = {}
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
        self._stats = StatsTimers(f"room {room_id!r}", self._report_stats)
        self._handlers: dict[str, Callable[[Peer | None, dict[str, Any]], Awaitable[Any]]] = {
            "queryRoom": self._query_room,
            "join": self._join,
            "leave": self._leave,
            "createTransport": self._create_transport,
            "updateTransport": self._update_transport,
            "restartTransport": self._restart_transport,
            "closeTransport": self._close_transport_msg,
            "enableTransportStats": self._enable_stats,
            "disableTransportStats": self._disable_stats,
            "createProducer": self._create_producer,
            "updateProducer": self._update_producer,
            "pauseProducer": self._pause_producer,
            "resumeProducer": self._resume_producer,
            "closeProducer": self._close_producer_msg,
            "enableProducerStats": self._enable_stats,
            "disableProducerStats": self._disable_stats,
            "enableConsumer": self._enable_consumer,
            "pauseConsumer": self._pause_consumer,
            "resumeConsumer": self._resume_consumer,
            "setConsumerPreferredProfile": self._set_preferred_profile,
            "enableConsumerStats": self._enable_stats,
            "disableConsumerStats": self._disable_stats,
        }

    def _names(self, peer: str | None = None, **ids: int) -> dict[str, Any]:
        """A log line's `extra=`: this room, the peer and protocol ids it is about (the
        keys of `--log-format json`, shared/logs.py)."""
        return {"room": self.id, "peer": peer, "ids": ids or None}

    # ------------------------------------------------------------------ actor plumbing

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"room {self.id}")

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
        peer: Peer | None = None
        if method not in ROOM_TARGET:
            if not isinstance(peer_name, str) or not peer_name:
                raise bad_request(f"{method} is a peer message: give the peerName that sent it")
            peer = self.peers.get(peer_name)
            if peer is None:
                raise not_found(f"peer {peer_name!r} not found in room {self.id!r}")
        result = await self._handlers[method](peer, message)
        return None if notification else result

    # ------------------------------------------------------------------ notifications

    def _notify(self, peer: Peer, method: str, **data: Any) -> None:
        if peer.closed:
            return
        self._services.emit(
            self.id,
            {
                "event": "notification",
                "roomId": self.id,
                "peerName": peer.name,
                "notification": {"method": method, "target": "peer", "notification": True, **data},
            },
        )

    def _lifecycle(self, name: str, **fields: Any) -> None:
        self._services.emit(self.id, {"event": name, "roomId": self.id, **fields})

    # ------------------------------------------------------------------ lookups

    def _transport_of(self, peer: Peer, msg: dict[str, Any], key: str = "id") -> Transport:
        tid = get_id(msg, key)
        transport = peer.transports.get(tid)
        if transport is None:
            raise not_found(f"Transport not found: {peer.describe()} has no transport {tid}")
        return transport

    def _producer_of(self, peer: Peer, msg: dict[str, Any], key: str = "id") -> Producer:
        pid = get_id(msg, key)
        producer = peer.producers.get(pid)
        if producer is None:
            raise not_found(f"Producer not found: {peer.describe()} has no producer {pid}")
        return producer

    def _consumer_of(self, peer: Peer, msg: dict[str, Any], key: str = "id") -> Consumer:
        cid = get_id(msg, key)
        consumer = peer.consumers.get(cid)
        if consumer is None:
            raise not_found(f"Consumer not found: {peer.describe()} has no consumer {cid}")
        return consumer

    def _find_by_id(self, method: str, peer: Peer, msg: dict[str, Any]) -> Any:
        """The object a stats message names, from the method's middle word."""
        if "Transport" in method:
            return self._transport_of(peer, msg)
        if "Producer" in method:
            return self._producer_of(peer, msg)
        return self._consumer_of(peer, msg)

    # ------------------------------------------------------------------ worker helpers

    async def _worker(self, index: int, command: contract.Command) -> Any:
        return await self._services.worker_request(index, command)

    async def _worker_quiet(self, index: int, command: contract.Command) -> None:
        """Best effort, for closing: the state change goes ahead whatever the worker says."""
        if not self._services.worker_alive(index):
            return
        try:
            await self._services.worker_request(index, command)
        except ProtocolError as exc:
            method = command.name()
            if exc.code == "not_found":
                # Already gone there: the worker closed it first (the browser's DTLS
                # close_notify after it heard `closed`, a failed transport). Done either way.
                log.debug("room %r: worker %d %s: %s", self.id, index, method, exc.message)
                return
            log.warning("room %r: worker %d %s failed: %s", self.id, index, method, exc.message)

    async def _worker_for(self, peer: Peer, deadline: float) -> int:
        """The worker hosting `peer`'s transports: its own while alive, else a new one,
        waited for until `deadline` (loop time) when none is ready."""
        if peer.worker is None or not self._services.worker_alive(peer.worker):
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
            index = self._services.pick_worker()
            if index is not None:
                return index
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise ProtocolError(
                    UNAVAILABLE,
                    f"no worker is running: none came up within worker_timeout "
                    f"({self._services.worker_wait:g} s); check the supervisor log and retry",
                )
            changed = self._services.worker_changed()
            death = loop.create_task(self._death_signal.wait())
            try:
                await asyncio.wait((changed, death), timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
            finally:
                death.cancel()
                changed.cancel()

    def _register(self, obj: Transport | Producer | Consumer) -> None:
        self._by_gid[obj.gid] = obj
        self._services.register(obj.gid, self)

    def _unregister(self, obj: Transport | Producer | Consumer) -> None:
        self._by_gid.pop(obj.gid, None)
        self._services.unregister(obj.gid)

    # ------------------------------------------------------------------ room level

    async def _query_room(self, peer: Peer | None, msg: dict[str, Any]) -> Any:
        return {"rtpCapabilities": self.rtp_capabilities, "mandatoryCodecPayloadTypes": []}

    async def _join(self, _: Peer | None, msg: dict[str, Any]) -> Any:
        name = get_str(msg, "peerName", max_length=256)
        assert name is not None
        if not name:
            raise bad_request("peerName must not be empty")
        if name in self.peers:
            raise duplicate(f"duplicated Peer: peer {name!r} is already in room {self.id!r}")
        peer_caps = caps.check_peer_capabilities(self.rtp_capabilities, msg.get("rtpCapabilities"))
        spy = get_bool(msg, "spy")
        if len(self.peers) >= self.quotas.peers_per_room:
            raise limit(
                f"room {self.id!r} has {len(self.peers)} peers, the most a room may have "
                "(max_peers_per_room)"
            )
        producers = sum(len(other.producers) for other in self.peers.values())
        if producers > self.quotas.consumers_per_peer:
            raise limit(
                f"room {self.id!r} has {producers} producers: a newcomer would receive more "
                f"than {self.quotas.consumers_per_peer} consumers (max_consumers_per_peer)"
            )
        peer = Peer(name=name, rtp_capabilities=peer_caps, spy=spy, app_data=msg.get("appData"))
        # Commit: the newcomer gets a consumer of every existing producer (no newConsumer).
        for other in self.peers.values():
            for producer in other.producers.values():
                self._create_consumer(peer, producer)
        response_peers = []
        for other in self.peers.values():
            if other.spy:
                continue
            consumers = [
                c.new_consumer_data()
                for c in peer.consumers.values()
                if c.producer.peer_name == other.name
            ]
            response_peers.append({**other.public_data(), "consumers": consumers})
        self.peers[name] = peer
        if not spy:
            for other in self.peers.values():
                if other is not peer:
                    self._notify(other, "newPeer", **peer.public_data(), consumers=[])
        log.info(
            "room %r: %s joined%s", self.id, peer.describe(), " (spy)" if spy else "", extra=self._names(peer.name)
        )
        self._lifecycle("peer.joined", peerName=name, spy=spy, appData=peer.app_data)
        return {"peers": response_peers}

    # ------------------------------------------------------------------ peer close

    async def _leave(self, peer: Peer | None, msg: dict[str, Any]) -> None:
        assert peer is not None
        await self.close_peer(peer, msg.get("appData"), notify_peer=False)

    async def close_peer(self, peer: Peer, app_data: Any, *, notify_peer: bool) -> None:
        """leave, or the server app closing a peer (then the peer itself gets `closed`)."""
        if peer.closed:
            return
        if notify_peer:
            self._notify(peer, "closed", appData=app_data)
        peer.closed = True
        self.peers.pop(peer.name, None)
        # Its producers go away with it; other clients close their consumers themselves
        # on peerClosed, so no consumerClosed (v2).
        for producer in list(peer.producers.values()):
            await self._close_producer(producer, notify_consumers=False)
        for consumer in list(peer.consumers.values()):
            await self._close_consumer(consumer, notify=False)
        for transport in list(peer.transports.values()):
            await self._close_transport(transport, notify_owner=False)
        if not peer.spy:
            for other in self.peers.values():
                self._notify(other, "peerClosed", name=peer.name, appData=app_data)
        log.info("room %r: %s left", self.id, peer.describe(), extra=self._names(peer.name))
        self._lifecycle("peer.closed", peerName=peer.name)

    # ------------------------------------------------------------------ transports

    async def _create_transport(self, peer: Peer | None, msg: dict[str, Any]) -> Any:
        assert peer is not None
        tid = get_id(msg, "id")
        if tid in self._transports:
            raise duplicate(f"duplicated Transport: id {tid} is already used in room {self.id!r}")
        direction = get_str(msg, "direction", choices=("send", "recv"))
        assert direction is not None
        options = get_obj(msg, "options", required=False) or {}
        dtls = get_obj(msg, "dtlsParameters", required=False)
        plain_params = get_obj(msg, "plainRtpParameters", required=False)
        app_data = msg.get("appData")
        if plain_params is not None:
            remote = self._plain_remote(plain_params)
            comedia = get_bool(plain_params, "comedia")
            if remote is None and not comedia:
                raise bad_request("plainRtpParameters needs ip and port (or comedia: true)")
        else:
            flags = {key: get_bool(options, key, default=default) for key, default in WEBRTC_OPTIONS.items()}
            if not flags["udp"] and not flags["tcp"]:
                raise bad_request("options: at least one of udp and tcp must be true")
        if len(peer.transports) >= self.quotas.transports_per_peer:
            raise limit(
                f"{peer.describe()} has {len(peer.transports)} transports, the most a peer may "
                "have (max_transports_per_peer): close one before creating another"
            )
        gid = self._services.new_gid()
        deadline = asyncio.get_running_loop().time() + self._services.worker_wait
        for attempt in range(3):
            worker = await self._worker_for(peer, deadline)
            transport = Transport(
                id=tid,
                gid=gid,
                peer_name=peer.name,
                direction=direction,
                plain=plain_params is not None,
                worker=worker,
                app_data=app_data,
            )
            try:
                if transport.plain:
                    response = await self._create_plain_on_worker(transport, remote, comedia)
                else:
                    response = await self._create_webrtc_on_worker(transport, flags, dtls)
                break
            except ProtocolError as exc:
                # The worker died under the request: nothing exists there any more. Place
                # the transport again (waiting for the replacement if it was the last one).
                if exc.code != UNAVAILABLE or self._services.worker_alive(worker) or attempt == 2:
                    raise
                log.info("room %r: worker %d died while creating a transport; placing it again", self.id, worker)
                if peer.worker == worker:
                    peer.worker = None
        transport.created = response
        peer.transports[tid] = transport
        self._transports[tid] = transport
        self._register(transport)
        log.info(
            "room %r: %s created %s %d (worker id %d) on worker %d",
            self.id,
            peer.describe(),
            transport.kind_name,
            tid,
            transport.gid,
            worker,
            extra=self._names(peer.name, transport=tid, workerId=transport.gid),
        )
        return response

    async def _create_plain_on_worker(
        self, transport: Transport, remote: tuple[str, int] | None, comedia: bool | None
    ) -> dict[str, Any]:
        data = await self._worker(
            transport.worker,
            contract.TransportCreatePlain(
                transportId=transport.gid,
                remoteIp=remote[0] if remote else None,
                remotePort=remote[1] if remote else None,
                comedia=comedia,
                room=self.id,
                peer=transport.peer_name,
                clientId=transport.id,
            ),
        )
        transport.remote = {"ip": remote[0], "port": remote[1]} if remote else None
        transport.local = {"ip": data["ip"], "port": data["port"]}
        return {"plainRtpParameters": dict(transport.local)}

    async def _create_webrtc_on_worker(
        self, transport: Transport, flags: dict[str, bool], dtls: dict[str, Any] | None
    ) -> dict[str, Any]:
        worker = transport.worker
        data = await self._worker(
            worker,
            contract.TransportCreateWebRtc(
                transportId=transport.gid,
                udp=flags["udp"],
                tcp=flags["tcp"],
                preferIPv4=flags["preferIPv4"],
                preferIPv6=flags["preferIPv6"],
                preferUdp=flags["preferUdp"],
                preferTcp=flags["preferTcp"],
                room=self.id,
                peer=transport.peer_name,
                clientId=transport.id,
            ),
        )
        response = {
            "iceParameters": data["iceParameters"],
            "iceCandidates": data["iceCandidates"],
            "dtlsParameters": data["dtlsParameters"],
        }
        if dtls is not None:
            # Applied first; on failure the transport is dropped and the request fails.
            try:
                applied = await self._worker(
                    worker,
                    contract.TransportSetRemoteDtls(transportId=transport.gid, dtlsParameters=dtls),
                )
            except ProtocolError:
                await self._worker_quiet(worker, contract.TransportClose(transportId=transport.gid))
                raise
            response["dtlsParameters"] = applied["dtlsParameters"]
            transport.remote_dtls_set = True
        return response

    @staticmethod
    def _plain_remote(params: dict[str, Any]) -> tuple[str, int] | None:
        ip = get_str(params, "ip", required=False, max_length=64)
        port = get_int(params, "port", required=False, minimum=1, maximum=65535)
        if ip is None and port is None:
            return None
        if ip is None or port is None:
            raise bad_request("plainRtpParameters needs both ip and port")
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            raise bad_request(f"plainRtpParameters.ip {ip!r} is not an IP address") from None
        return ip, port

    async def _update_transport(self, peer: Peer | None, msg: dict[str, Any]) -> None:
        assert peer is not None
        transport = self._transport_of(peer, msg)
        if transport.plain:
            params = get_obj(msg, "plainRtpParameters")
            assert params is not None
            remote = self._plain_remote(params)
            if remote is None:
                raise bad_request("plainRtpParameters needs ip and port")
        else:
            dtls = get_obj(msg, "dtlsParameters")
            assert dtls is not None
            if transport.remote_dtls_set:
                # v2: setting them twice fails, and a failed updateTransport closes it.
                await self._fail_transport(transport, "remote DTLS parameters were already set")
                raise invalid_state(
                    f"{transport.describe()}: remote DTLS parameters were already set; "
                    "the transport was closed"
                )
        try:
            # Built inside: a command the contract refuses fails the update like a worker would.
            command: contract.Command = (
                contract.TransportConnectPlain(transportId=transport.gid, remoteIp=remote[0], remotePort=remote[1])
                if transport.plain
                else contract.TransportSetRemoteDtls(transportId=transport.gid, dtlsParameters=dtls)
            )
            await self._worker(transport.worker, command)
        except ProtocolError as exc:
            await self._fail_transport(transport, exc.message)
            raise ProtocolError(
                exc.code, f"updateTransport failed, {transport.describe()} closed: {exc.message}"
            ) from None
        if transport.plain:
            transport.remote = {"ip": remote[0], "port": remote[1]}
        else:
            transport.remote_dtls_set = True

    async def _fail_transport(self, transport: Transport, reason: str) -> None:
        log.warning(
            "room %r: closing %s: %s",
            self.id,
            transport.describe(),
            reason,
            extra=self._names(transport.peer_name, transport=transport.id, workerId=transport.gid),
        )
        await self._close_transport(transport, notify_owner=True)

    async def _restart_transport(self, peer: Peer | None, msg: dict[str, Any]) -> Any:
        assert peer is not None
        transport = self._transport_of(peer, msg)
        if transport.plain:
            raise invalid_state(f"{transport.describe()} is a PlainRtpTransport: no ICE to restart")
        data = await self._worker(transport.worker, contract.TransportRestartIce(transportId=transport.gid))
        return {"iceParameters": data["iceParameters"]}

    async def _close_transport_msg(self, peer: Peer | None, msg: dict[str, Any]) -> None:
        assert peer is not None
        transport = self._transport_of(peer, msg)
        await self._close_transport(transport, notify_owner=False)

    async def _close_transport(
        self, transport: Transport, *, notify_owner: bool
    ) -> None:
        """Producers on it close (their consumers get consumerClosed); consumers detach."""
        if transport.closed:
            return
        transport.closed = True
        self._stats.stop(transport)
        peer = self.peers.get(transport.peer_name)
        owner_alive = peer is not None and not peer.closed
        if peer is not None:
            for producer in [p for p in peer.producers.values() if p.transport is transport]:
                await self._close_producer(producer, notify_consumers=owner_alive)
            for consumer in [c for c in peer.consumers.values() if c.transport is transport]:
                await self._detach_consumer(consumer)
            peer.transports.pop(transport.id, None)
        self._transports.pop(transport.id, None)
        self._unregister(transport)
        await self._worker_quiet(transport.worker, contract.TransportClose(transportId=transport.gid))
        if notify_owner and peer is not None:
            self._notify(peer, "transportClosed", id=transport.id, appData=transport.app_data)

    # ------------------------------------------------------------------ stats switches

    async def _enable_stats(self, peer: Peer | None, msg: dict[str, Any]) -> None:
        assert peer is not None
        obj = self._find_by_id(msg["method"], peer, msg)
        interval = parse_interval(msg)
        if isinstance(obj, Transport) and obj.plain:
            return  # v2's PlainRtpTransport.enableStats() does nothing: no stats, no error
        if obj.stats_interval is not None:
            return  # re-enable is a no-op (v2), whatever the new interval
        obj.stats_interval = interval
        self._stats.start(obj, interval)

    async def _disable_stats(self, peer: Peer | None, msg: dict[str, Any]) -> None:
        assert peer is not None
        obj = self._find_by_id(msg["method"], peer, msg)
        obj.stats_interval = None
        self._stats.stop(obj)

    async def _report_stats(self, obj: Transport | Producer | Consumer) -> None:
        """One stats tick of `obj` (run by its StatsTimers task, beside the mailbox): ask the
        hosting worker, then emit the notification unless the object closed or paused
        meanwhile. Skipped as v2 does: a paused producer, a consumer not enabled or paused."""
        if isinstance(obj, Transport):
            await self._report_transport_stats(obj)
        elif isinstance(obj, Producer):
            await self._report_producer_stats(obj)
        else:
            await self._report_consumer_stats(obj)

    async def _stats_request(self, index: int, request: contract.StatsGet) -> dict[str, Any] | None:
        if not self._services.worker_alive(index):
            return None
        data = await self._services.worker_request(index, request)
        return data if isinstance(data, dict) else None

    async def _report_transport_stats(self, transport: Transport) -> None:
        if transport.closed:
            return
        data = await self._stats_request(transport.worker, contract.StatsGet(transportIds=[transport.gid]))
        peer = self.peers.get(transport.peer_name)
        if transport.closed or peer is None or not data or not data.get("transports"):
            return
        entry = transport_entry(transport.id, data["transports"][0], data["timestamp"])
        self._notify(peer, "transportStats", id=transport.id, stats=[entry])

    async def _report_producer_stats(self, producer: Producer) -> None:
        if producer.closed or producer.paused:
            return
        data = await self._stats_request(producer.worker, contract.StatsGet(producerIds=[producer.gid]))
        peer = self.peers.get(producer.peer_name)
        if producer.closed or producer.paused or peer is None or not data or not data.get("producers"):
            return
        stats = producer_entries(
            data["producers"][0],
            stats_ids=producer.stats_ids,
            kind=producer.kind,
            mime_type=producer.mime_type,
            timestamp=data["timestamp"],
            transport_id=producer.transport.id,
        )
        self._notify(peer, "producerStats", id=producer.id, stats=stats)

    async def _report_consumer_stats(self, consumer: Consumer) -> None:
        transport = consumer.transport
        if consumer.closed or transport is None or consumer.paused:
            return
        data = await self._stats_request(transport.worker, contract.StatsGet(consumerIds=[consumer.gid]))
        receiver = self.peers.get(consumer.peer_name)
        if (
            consumer.closed
            or consumer.transport is not transport
            or consumer.paused
            or receiver is None
            or not data
            or not data.get("consumers")
        ):
            return
        producer = consumer.producer
        stats = consumer_entries(
            data["consumers"][0],
            stats_id=consumer.stats_id,
            producer_stats_ids=producer.stats_ids,
            kind=consumer.kind,
            mime_type=consumer.mime_type,
            producer_mime_type=producer.mime_type,
            timestamp=data["timestamp"],
            transport_id=transport.id,
        )
        self._notify(receiver, "consumerStats", id=consumer.id, peerName=producer.peer_name, stats=stats)

    # ------------------------------------------------------------------ producers

    async def _create_producer(self, peer: Peer | None, msg: dict[str, Any]) -> Any:
        assert peer is not None
        pid = get_id(msg, "id")
        if pid in self._producers:
            raise duplicate(f"duplicated Producer: id {pid} is already used in room {self.id!r}")
        kind = get_str(msg, "kind", max_length=16)
        if kind not in ("audio", "video"):
            raise unsupported(f"invalid Producer kind {kind!r}: Tureen forwards audio and video")
        if peer.spy:
            raise invalid_state(f"{peer.describe()} is a spy: spies cannot produce")
        transport = self._transport_of(peer, msg, "transportId")
        if transport.direction != "send":
            raise invalid_state(f"{transport.describe()} is a recv transport: produce on a send one")
        rtp_parameters = get_obj(msg, "rtpParameters")
        assert rtp_parameters is not None
        mapping = caps.producer_mapping(self.rtp_capabilities, kind, rtp_parameters)
        self._check_ssrcs_free(transport, mapping, exclude=None)
        self._check_producer_quotas(peer)
        producer = Producer(
            id=pid,
            gid=self._services.new_gid(),
            peer_name=peer.name,
            kind=kind,
            transport=transport,
            rtp_parameters=rtp_parameters,
            mapping=mapping,
            paused=get_bool(msg, "paused"),
            app_data=msg.get("appData"),
        )
        await self._worker(transport.worker, producer.worker_command(transport.gid, room=self.id))
        peer.producers[pid] = producer
        self._producers[pid] = producer
        self._register(producer)
        log.info(
            "room %r: %s created %s producer %d", self.id, peer.describe(), kind, pid, extra=self._names(peer.name, producer=pid)
        )
        for other in self.peers.values():
            if other is not peer and not other.closed:
                consumer = self._create_consumer(other, producer)
                self._notify(other, "newConsumer", **consumer.new_consumer_data())
        return None

    def _check_producer_quotas(self, peer: Peer) -> None:
        """A new producer of `peer` makes a consumer for every other peer: both bounded."""
        if len(peer.producers) >= self.quotas.producers_per_peer:
            raise limit(
                f"{peer.describe()} has {len(peer.producers)} producers, the most a peer may "
                "have (max_producers_per_peer): close one before producing another"
            )
        most = self.quotas.consumers_per_peer
        for other in self.peers.values():
            if other is not peer and not other.closed and len(other.consumers) >= most:
                raise limit(
                    f"{other.describe()} already receives {len(other.consumers)} consumers, the "
                    f"most a peer may (max_consumers_per_peer): room {self.id!r} has too many "
                    "producers for another one"
                )

    def _check_ssrcs_free(
        self, transport: Transport, mapping: dict[str, Any], exclude: Producer | None
    ) -> None:
        peer = self.peers[transport.peer_name]
        used = {
            ssrc
            for p in peer.producers.values()
            if p.transport is transport and p is not exclude
            for ssrc in p.mapping["ssrcs"]
        }
        clash = used.intersection(mapping["ssrcs"])
        if clash:
            raise caps_error(f"SSRC {min(clash)} is already used on {transport.describe()}")

    async def _update_producer(self, peer: Peer | None, msg: dict[str, Any]) -> None:
        """Applied (v2 ignored it): new SSRCs keep forwarding to the same consumers."""
        assert peer is not None
        producer = self._producer_of(peer, msg)
        rtp_parameters = get_obj(msg, "rtpParameters")
        assert rtp_parameters is not None
        mapping = caps.producer_mapping(self.rtp_capabilities, producer.kind, rtp_parameters)
        self._check_ssrcs_free(producer.transport, mapping, exclude=producer)
        await self._worker(producer.worker, producer.worker_command(producer.transport.gid, mapping, update=True, room=self.id))
        for index in producer.piped_to:
            await self._worker_quiet(index, producer.worker_command(None, mapping, update=True, room=self.id))
        producer.rtp_parameters = rtp_parameters
        producer.mapping = mapping

    async def _pause_producer(self, peer: Peer | None, msg: dict[str, Any]) -> None:
        assert peer is not None
        await self.set_producer_paused(self._producer_of(peer, msg), True)

    async def _resume_producer(self, peer: Peer | None, msg: dict[str, Any]) -> None:
        assert peer is not None
        await self.set_producer_paused(self._producer_of(peer, msg), False)

    async def set_producer_paused(self, producer: Producer, paused: bool) -> bool:
        """Returns whether anything changed. Enabled consumers not paused by the app hear it."""
        if producer.paused == paused:
            return False
        await self._worker(
            producer.worker,
            contract.ProducerPause(producerId=producer.gid) if paused else contract.ProducerResume(producerId=producer.gid),
        )
        producer.paused = paused
        method = "consumerPaused" if paused else "consumerResumed"
        for consumer in producer.consumers.values():
            if consumer.enabled and not consumer.paused_by_app:
                receiver = self.peers.get(consumer.peer_name)
                if receiver is not None:
                    self._notify(receiver, method, id=consumer.id, peerName=producer.peer_name)
        return True

    async def _close_producer_msg(self, peer: Peer | None, msg: dict[str, Any]) -> None:
        assert peer is not None
        await self._close_producer(self._producer_of(peer, msg), notify_consumers=True)

    async def _close_producer(self, producer: Producer, *, notify_consumers: bool) -> None:
        if producer.closed:
            return
        producer.closed = True
        self._stats.stop(producer)
        for consumer in list(producer.consumers.values()):
            await self._close_consumer(consumer, notify=notify_consumers)
        peer = self.peers.get(producer.peer_name)
        if peer is not None:
            peer.producers.pop(producer.id, None)
        self._producers.pop(producer.id, None)
        self._unregister(producer)
        for index in list(producer.piped_to):
            await self._worker_quiet(index, contract.ProducerClose(producerId=producer.gid))
        producer.piped_to.clear()
        await self._worker_quiet(producer.worker, contract.ProducerClose(producerId=producer.gid))

    # ------------------------------------------------------------------ consumers

    def _create_consumer(self, peer: Peer, producer: Producer) -> Consumer:
        cid = _random_id(lambda v: v in self._consumers)
        rtp = caps.consumer_rtp_parameters(
            self.rtp_capabilities,
            producer.rtp_parameters,
            producer.mapping,
            peer.rtp_capabilities,
            _new_ssrc,
        )
        consumer = Consumer(
            id=cid,
            gid=self._services.new_gid(),
            peer_name=peer.name,
            producer=producer,
            rtp_parameters=rtp,
            supported=caps.consumer_can_receive(rtp),
        )
        peer.consumers[cid] = consumer
        producer.consumers[cid] = consumer
        self._consumers[cid] = consumer
        self._register(consumer)
        return consumer

    async def _enable_consumer(self, peer: Peer | None, msg: dict[str, Any]) -> Any:
        assert peer is not None
        transport = self._transport_of(peer, msg, "transportId")
        consumer = self._consumer_of(peer, msg)
        if consumer.enabled:
            raise invalid_state(f"Consumer already enabled: {consumer.describe()}")
        if not consumer.supported:
            raise unsupported(
                f"{consumer.describe()} cannot be received: the peer's rtpCapabilities share no "
                f"codec with {consumer.producer.describe()}"
            )
        if transport.direction != "recv":
            raise invalid_state(f"{transport.describe()} is a send transport: consume on a recv one")
        paused = get_bool(msg, "paused")
        profile = get_str(msg, "preferredProfile", required=False, default="default", choices=PROFILES)
        assert profile is not None
        producer = consumer.producer
        await self._ensure_pipe(producer, transport.worker)
        encoding = consumer.rtp_parameters["encodings"][0]
        await self._worker(
            transport.worker,
            contract.ConsumerCreate(
                consumerId=consumer.gid,
                producerId=producer.gid,
                transportId=transport.gid,
                kind=producer.kind,  # type: ignore[arg-type]  # checked at createProducer
                ssrc=encoding["ssrc"],
                rtxSsrc=(encoding.get("rtx") or {}).get("ssrc"),
                paused=paused or consumer.paused_by_app,
                preferredProfile=profile,  # type: ignore[arg-type]  # one of PROFILES
                # Its SRs' SDES CNAME (RFC 3550 6.1): the producer's, copied into the consumer's
                # rtpParameters as v2 does.
                cname=(consumer.rtp_parameters.get("rtcp") or {}).get("cname"),
                room=self.id,
                peer=consumer.peer_name,
                clientId=consumer.id,
            ),
        )
        consumer.transport = transport
        consumer.paused_by_client = paused
        consumer.preferred_profile = profile
        return {
            "paused": producer.paused or consumer.paused_by_app,
            "preferredProfile": profile,
            "effectiveProfile": consumer.effective_profile,
        }

    async def _ensure_pipe(self, producer: Producer, index: int) -> None:
        """Once per (producer, worker): the producer's worker sends its packets to `index`."""
        if index == producer.worker or index in producer.piped_to:
            return
        await self._worker(index, producer.worker_command(None, room=self.id))
        try:
            await self._worker(producer.worker, contract.PipeOpen(producerId=producer.gid, workerIndex=index))
        except ProtocolError:
            await self._worker_quiet(index, contract.ProducerClose(producerId=producer.gid))
            raise
        producer.piped_to.add(index)
        log.info("room %r: piping %s to worker %d", self.id, producer.describe(), index)

    async def _release_pipe(self, producer: Producer, index: int) -> None:
        if index not in producer.piped_to or producer.closed:
            return
        if any(c.transport is not None and c.transport.worker == index for c in producer.consumers.values()):
            return
        producer.piped_to.discard(index)
        await self._worker_quiet(producer.worker, contract.PipeClose(producerId=producer.gid, workerIndex=index))
        await self._worker_quiet(index, contract.ProducerClose(producerId=producer.gid))

    async def _detach_consumer(self, consumer: Consumer) -> None:
        transport = consumer.transport
        if transport is None:
            return
        consumer.transport = None
        consumer.effective_profile = None
        await self._worker_quiet(transport.worker, contract.ConsumerClose(consumerId=consumer.gid))
        await self._release_pipe(consumer.producer, transport.worker)

    async def _close_consumer(self, consumer: Consumer, *, notify: bool) -> None:
        if consumer.closed:
            return
        consumer.closed = True
        self._stats.stop(consumer)
        await self._detach_consumer(consumer)
        consumer.producer.consumers.pop(consumer.id, None)
        self._consumers.pop(consumer.id, None)
        self._unregister(consumer)
        receiver = self.peers.get(consumer.peer_name)
        if receiver is not None:
            receiver.consumers.pop(consumer.id, None)
            if notify and consumer.producer.peer_name in self.peers:
                self._notify(
                    receiver, "consumerClosed", id=consumer.id, peerName=consumer.producer.peer_name
                )

    async def _pause_consumer(self, peer: Peer | None, msg: dict[str, Any]) -> None:
        assert peer is not None
        consumer = self._consumer_of(peer, msg)
        await self._set_consumer_pause(consumer, client=True)

    async def _resume_consumer(self, peer: Peer | None, msg: dict[str, Any]) -> None:
        assert peer is not None
        consumer = self._consumer_of(peer, msg)
        await self._set_consumer_pause(consumer, client=False)

    async def _set_consumer_pause(
        self, consumer: Consumer, *, client: bool | None = None, app: bool | None = None
    ) -> None:
        before = consumer.paused_for_worker
        new_client = consumer.paused_by_client if client is None else client
        new_app = consumer.paused_by_app if app is None else app
        after = new_client or new_app
        if consumer.transport is not None and before != after:
            await self._worker(
                consumer.transport.worker,
                contract.ConsumerPause(consumerId=consumer.gid) if after else contract.ConsumerResume(consumerId=consumer.gid),
            )
        consumer.paused_by_client = new_client
        consumer.paused_by_app = new_app

    async def _set_preferred_profile(self, peer: Peer | None, msg: dict[str, Any]) -> None:
        assert peer is not None
        consumer = self._consumer_of(peer, msg)
        profile = get_str(msg, "profile", choices=PROFILES)
        assert profile is not None
        await self.apply_preferred_profile(consumer, profile)

    async def apply_preferred_profile(self, consumer: Consumer, profile: str) -> None:
        if consumer.transport is not None and profile != consumer.preferred_profile:
            await self._worker(
                consumer.transport.worker,
                contract.ConsumerSetPreferredProfile(consumerId=consumer.gid, profile=profile),  # type: ignore[arg-type]
            )
        consumer.preferred_profile = profile

    # ------------------------------------------------------------------ server-app actions

    def _peer(self, name: Any) -> Peer:
        if not isinstance(name, str):
            raise bad_request("field 'peerName' must be a string")
        peer = self.peers.get(name)
        if peer is None:
            raise not_found(f"peer {name!r} not found in room {self.id!r}")
        return peer

    async def app_action(self, action: str, msg: dict[str, Any]) -> Any:
        """Server-app actions on a peer's objects; each tells that peer's client."""
        if self.closed:
            raise not_found(f"room {self.id!r} is closed")
        peer = self._peer(msg.get("peerName"))
        app_data = msg.get("appData")
        if action == "peer.close":
            await self.close_peer(peer, app_data, notify_peer=True)
        elif action == "transport.close":
            transport = self._transport_of(peer, msg, "transportId")
            await self._close_transport(transport, notify_owner=True)
        elif action in ("producer.pause", "producer.resume"):
            producer = self._producer_of(peer, msg, "producerId")
            paused = action == "producer.pause"
            if await self.set_producer_paused(producer, paused):
                method = "producerPaused" if paused else "producerResumed"
                self._notify(peer, method, id=producer.id, appData=app_data)
        elif action == "producer.close":
            producer = self._producer_of(peer, msg, "producerId")
            self._notify(peer, "producerClosed", id=producer.id, appData=app_data)
            await self._close_producer(producer, notify_consumers=True)
        elif action in ("consumer.pause", "consumer.resume"):
            consumer = self._consumer_of(peer, msg, "consumerId")
            paused = action == "consumer.pause"
            if consumer.paused_by_app != paused:
                await self._set_consumer_pause(consumer, app=paused)
                self._notify(
                    peer,
                    "consumerPaused" if paused else "consumerResumed",
                    id=consumer.id,
                    peerName=consumer.producer.peer_name,
                    appData=app_data,
                )
        elif action == "consumer.setPreferredProfile":
            consumer = self._consumer_of(peer, msg, "consumerId")
            profile = get_str(msg, "profile", choices=PROFILES)
            assert profile is not None
            await self.apply_preferred_profile(consumer, profile)
            self._notify(
                peer,
                "consumerPreferredProfileSet",
                id=consumer.id,
                peerName=consumer.producer.peer_name,
                profile=profile,
            )
        else:
            raise ProtocolError("unknown_method", f"unknown action {action!r}")
        return None

    # ------------------------------------------------------------------ room close, workers

    async def close(self) -> None:
        """Every peer gets `closed`; later ones first hear peerClosed for earlier ones."""
        if self.closed:
            return
        for peer in list(self.peers.values()):
            await self.close_peer(peer, None, notify_peer=True)
        self.closed = True
        self._stats.stop_all()
        log.info("room %r closed", self.id, extra=self._names())
        self._lifecycle("room.closed")

    async def on_worker_event(self, event: contract.Event) -> None:
        """A worker's event (decoded by the server) about one of this room's objects."""
        obj = self._by_gid.get(event.subject() or -1)
        if isinstance(obj, Transport):
            peer = self.peers.get(obj.peer_name)
            if isinstance(event, contract.TransportClosed):
                self._lifecycle(
                    "transport.closed", peerName=obj.peer_name, transportId=obj.id, reason=event.reason
                )
                await self._close_transport(obj, notify_owner=True)
            elif isinstance(event, contract.TransportIceState | contract.TransportDtlsState) and peer is not None:
                state = event.state
                if isinstance(event, contract.TransportIceState):
                    obj.ice_state = state
                else:
                    obj.dtls_state = state
                self._lifecycle(event.name(), peerName=obj.peer_name, transportId=obj.id, state=state)
        elif isinstance(obj, Consumer) and isinstance(event, contract.ConsumerKeyFrameRequest):
            # A consumer fed through a pipe needs a key frame: the producer's worker asks.
            producer = obj.producer
            if not producer.closed and producer.worker is not None:
                await self._worker_quiet(
                    producer.worker, contract.ProducerRequestKeyFrame(producerId=producer.gid, ssrc=event.ssrc)
                )
        elif isinstance(obj, Consumer) and isinstance(event, contract.ConsumerNack):
            # Packets a consumer fed through a pipe misses: the producer's worker asks the sender.
            producer = obj.producer
            if not producer.closed:
                await self._worker_quiet(
                    producer.worker,
                    contract.ProducerNack(producerId=producer.gid, ssrc=event.ssrc, seqs=event.seqs[:MAX_NACK_SEQS]),
                )
        elif isinstance(obj, Consumer) and isinstance(event, contract.ConsumerEffectiveProfile):
            profile = event.profile
            if obj.enabled and profile != obj.effective_profile:
                obj.effective_profile = profile
                receiver = self.peers.get(obj.peer_name)
                if receiver is not None:
                    self._notify(
                        receiver,
                        "consumerEffectiveProfileChanged",
                        id=obj.id,
                        peerName=obj.producer.peer_name,
                        profile=profile,
                    )

    async def on_worker_died(self, index: int) -> None:
        """Everything hosted on that worker is gone: close it and tell the owners.

        Both ends of every pipe that touched it go too: a producer on it takes its piped
        copies and their consumers on the other workers with it (`_close_producer`, by its
        transport); a producer elsewhere piped to it forgets that pipe here, and the pool
        has the producer's worker close it (`pipe.closeTo`, once every room is done, so it
        also catches a pipe a room opened while the death was on its way)."""
        for producer in list(self._producers.values()):
            producer.piped_to.discard(index)
        for peer in list(self.peers.values()):
            for transport in [t for t in peer.transports.values() if t.worker == index]:
                await self._close_transport(transport, notify_owner=True)
            if peer.worker == index:
                peer.worker = None

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
            "transports": len(self._transports),
            "producers": len(self._producers),
            "consumers": len(self._consumers),
        }
        if peer_names:
            entry["peerNames"] = list(self.peers)
        return entry


def caps_error(message: str) -> ProtocolError:
    return ProtocolError(BAD_REQUEST, f"wrong RTP parameters: {message}")

