"""Remote hosts, supervisor side: the CURVE-protected link that hosts register their workers on.

`tureen serve --hosts-listen tcp://ADDR:PORT` binds a ROUTER (a CURVE server with the
supervisor's key pair; ZAP admits only the public keys in the hosts folder). A `tureen host`
(supervisor/host_agent.py) connects a DEALER, starts its own workers and registers them; each
becomes a `RemoteWorkerLink` in the pool under a fresh global index, so placement, requests
and events treat it as any worker. The host proxies its workers' channels over its one link
(docs/operations.md and docs/security.md, "Hosts" and "The host link"):

    host -> supervisor   {"type": "register", "name": N, "workers": [{"local": i, "pid": P, "cpu": C}]}
                         {"type": "reply" | "event", "worker": i, "message": {...worker's message...}}
                         {"type": "exited", "worker": i}          a worker of the host died
                         {"type": "ping"} / {"type": "pong"}
    supervisor -> host   {"type": "registered", "indexes": {"i": GLOBAL}}
                         {"type": "request", "worker": i, "id": R, "budget": S, "command": {...}}
                         {"type": "ping"} / {"type": "pong"}

Every message is checked whole before anything changes (`check_register`, `_handle`): a bad
one is logged and dropped (a bad `register` is answered `refused`, with the reason). A host
registers under the name of its key's file in the hosts folder (hosts/h1.key: "h1"), so one
host's key cannot take over another's name; `register` for workers already registered
(same local index and pid) keeps their indexes and their peers.

A request carries a relative `budget` (seconds left) instead of the local workers' absolute
CLOCK_MONOTONIC deadline, which means nothing on another machine; the host turns it into its
own monotonic deadline when the request arrives. Both sides ping every HOST_PING s; a side
that hears nothing for HOST_TIMEOUT s declares the other gone: here every worker of the host
dies as a crashed worker does (its peers are told), there the host stops its workers and
registers afresh with new ones once a supervisor answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
import zmq
import zmq.asyncio
from tureen.shared import wire
from tureen.shared.contract import Command, WorkerInfo
from tureen.supervisor.curve_auth import AllowedKeys, ControlAuthenticator, make_curve_server
from tureen.supervisor.worker_link import WorkerLink

if TYPE_CHECKING:
    from tureen.supervisor.worker_pool import WorkerPool

log = logging.getLogger("tureen.hosts")

HOST_PING = 0.25  # s between two pings, each way
HOST_TIMEOUT = 1.5  # s of silence after which the other side is gone (detected within 2 s)
HOSTS_ZAP_DOMAIN = b"tureen-hosts"
MAX_HOST_NAME = 64
MAX_HOST_WORKERS = 1024
MAX_INDEX = (1 << 31) - 1


def _is_int(value: Any, minimum: int = 0) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and minimum <= value <= MAX_INDEX


def check_register(message: dict[str, Any]) -> tuple[str, list[tuple[int, int | None, int | None]]]:
    """The name and (local, pid, cpu) workers of a `register`, all checked before anything
    changes; ValueError saying what is wrong otherwise."""
    name = message.get("name")
    workers = message.get("workers")
    if not isinstance(name, str) or not 0 < len(name) <= MAX_HOST_NAME:
        raise ValueError(f"register needs a name of 1..{MAX_HOST_NAME} characters")
    if not isinstance(workers, list) or not 0 < len(workers) <= MAX_HOST_WORKERS:
        raise ValueError(f"register needs a list of 1..{MAX_HOST_WORKERS} workers")
    entries: list[tuple[int, int | None, int | None]] = []
    for n, entry in enumerate(workers):
        if not isinstance(entry, dict):
            raise ValueError(f"workers[{n}] is not an object")
        local, pid, cpu = entry.get("local"), entry.get("pid"), entry.get("cpu")
        if not _is_int(local):
            raise ValueError(f"workers[{n}].local must be an integer 0..{MAX_INDEX}, got {local!r}")
        for key, value in (("pid", pid), ("cpu", cpu)):
            if value is not None and not _is_int(value):
                raise ValueError(f"workers[{n}].{key} must be an integer 0..{MAX_INDEX} or null, got {value!r}")
        entries.append((local, pid, cpu))
    locals_ = [local for local, _, _ in entries]
    if len(set(locals_)) != len(locals_):
        raise ValueError("workers lists a local index twice")
    return name, entries


def drop_error(sent: asyncio.Future[Any]) -> None:
    """Done-callback of a non-blocking send: a message the link could not take is dropped
    (zmq.Again), not an error to log."""
    if not sent.cancelled():
        sent.exception()


@dataclass
class HostSession:
    """One registered host: its link identity, name, workers and liveness."""

    name: str
    identity: bytes
    send: Callable[[bytes, dict[str, Any]], None]
    last_seen: float = field(default_factory=time.monotonic)
    lost: bool = False
    # local worker index on the host -> its link here
    links: dict[int, RemoteWorkerLink] = field(default_factory=dict)

    def post(self, message: dict[str, Any]) -> None:
        if not self.lost:
            self.send(self.identity, message)

    def describe(self) -> dict[str, Any]:
        live = [link for link in self.links.values() if link.alive]
        return {
            "name": self.name,
            "state": "lost" if self.lost else "up",
            "workers": sorted(link.index for link in live),
            "transports": sum(int(link.info.get("transports", 0) or 0) for link in live),
            "cpuPercent": round(sum(float(link.info.get("cpuPercent", 0.0) or 0.0) for link in live), 1),
        }


class RemoteWorkerLink(WorkerLink):
    """A worker of a remote host, driven through that host's link. The host owns the
    process; this side only sends requests and hears replies and events (`handle`)."""

    def __init__(self, index: int, pool: WorkerPool, session: HostSession, local: int, pid: int | None, cpu: int | None) -> None:
        super().__init__(index, pool.config, pool.run_dir, pool._ctx, pool._on_event, pool._exited)
        self.session = session
        self.local = local
        self.pid = pid
        self.cpu = cpu
        self.endpoint = f"host {session.name} worker {local}"

    remote = True

    @property  # type: ignore[override]
    def host(self) -> str:
        return self.session.name

    def activate(self) -> None:
        # Registered means ready: the host reported the worker after its `worker.ready`.
        self.alive = True
        self.started_at = self._last_seen = time.monotonic()
        log.info("worker %d is worker %d of host %s (pid %s there)", self.index, self.local, self.host, self.pid)

    def _connected(self) -> bool:
        return not self.session.lost

    async def _send(self, request_id: int, command: Command, deadline: float, budget: float) -> None:
        params = command.to_wire()
        try:
            self.session.post(
                {
                    "type": "request",
                    "worker": self.local,
                    "id": request_id,
                    # What is left of the budget: the host's clock is not ours.
                    "budget": round(max(0.0, deadline - time.monotonic()), 3),
                    "command": params,
                }
            )
        except orjson.JSONEncodeError as exc:
            # Refused as on a local link (bad_request, which the callers' undo paths
            # handle), not as a TypeError out of the host link.
            raise wire.cannot_encode(params["method"], exc) from None

    async def refresh_info(self) -> None:
        info = await self.request(WorkerInfo(), timeout=5.0)
        if isinstance(info, dict):
            self.info = info  # the host added the worker's cpuPercent
            self.placed_since_report = 0

    def lost(self, reason: str) -> None:
        """The worker or its whole host is gone: pending requests fail, the pool is told."""
        self._declare_dead(reason, None)

    async def stop(self, timeout: float = 5.0) -> None:
        """Forget the worker here; its host stops it (when the host goes or the link does)."""
        self.stopping = True
        self.alive = False
        self._fail_pending(f"worker {self.index} (host {self.host}) stopped")

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "host": self.host}


class HostListener:
    """The supervisor's end of every host link (one ROUTER socket)."""

    def __init__(self, pool: WorkerPool, endpoint: str, server_cert: str, hosts_dir: str) -> None:
        self.pool = pool
        self.endpoint = endpoint
        self._server_cert = server_cert
        self._hosts_dir = hosts_dir
        self.sessions: dict[bytes, HostSession] = {}
        # The allowed hosts' keys and the names they may register (the ZAP handler's, once
        # started: one reading of the folder for both).
        self.allowed = AllowedKeys(hosts_dir)
        self._socket: zmq.asyncio.Socket | None = None
        self._auth: ControlAuthenticator | None = None
        self._ctx: zmq.asyncio.Context | None = None
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        # A context of its own: a context has one ZAP handler (inproc://zeromq.zap.01), and
        # the control API's may be there already, with other keys.
        self._ctx = ctx = zmq.asyncio.Context()
        self._auth = ControlAuthenticator(ctx, self._hosts_dir, domain=HOSTS_ZAP_DOMAIN.decode(), what="host")
        self._auth.start()
        self.allowed = self._auth.allowed
        sock = ctx.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 0)
        make_curve_server(sock, self._server_cert, domain=HOSTS_ZAP_DOMAIN)
        sock.bind(self.endpoint)
        self._auth.watch(sock)
        self._socket = sock
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._read(), name="hosts reader"),
            loop.create_task(self._beat(), name="hosts heartbeat"),
        ]
        log.info("accepting hosts on %s (CURVE, keys in %s)", self.endpoint, self._hosts_dir)

    def _send(self, identity: bytes, message: dict[str, Any]) -> None:
        if self._socket is None:
            return
        # Never waits: ROUTER drops what is for an unknown or gone identity, and a full
        # queue (a stalled host) drops too; the heartbeat tells a gone host.
        sent = self._socket.send_multipart([identity, orjson.dumps(message)], flags=zmq.NOBLOCK)
        sent.add_done_callback(drop_error)

    async def _read(self) -> None:
        assert self._socket is not None
        while True:
            try:
                frames = await self._socket.recv_multipart(copy=False)
            except (zmq.ZMQError, asyncio.CancelledError):
                return
            if len(frames) != 2:
                continue  # not [identity, message]: not one of our hosts
            identity, payload = frames[0].bytes, frames[1]
            try:
                # The ZAP handler's User-Id: the host's Z85 public key (CURVE checked it).
                key = payload.get("User-Id")
            except zmq.ZMQError:
                key = None
            try:
                message = orjson.loads(payload.bytes)
                if not isinstance(message, dict):
                    raise ValueError("not an object")
                self._handle(identity, message, key)
            except Exception as exc:  # a bad message must not end the link
                log.warning("host link: dropped a bad message (%s)", exc)

    def _handle(self, identity: bytes, message: dict[str, Any], key: str | None) -> None:
        """One message of a host; `key`: its Z85 public key (None: unknown, then a register
        is refused)."""
        kind = message.get("type")
        session = self.sessions.get(identity)
        if kind == "register":
            self._register(identity, message, key)
            return
        if session is None or session.lost:
            if kind != "pong":
                # Unknown (e.g. registered with our predecessor): ask it to register afresh.
                self._send(identity, {"type": "unknown"})
            return
        session.last_seen = time.monotonic()
        if kind == "ping":
            session.post({"type": "pong"})
        elif kind in ("reply", "event", "exited"):
            local = message.get("worker")
            link = session.links.get(local) if _is_int(local) else None  # type: ignore[arg-type]
            if link is None:
                log.warning("host %s: dropped a %s for worker %r, which it has not registered", session.name, kind, local)
            elif not link.alive:
                log.debug("host %s: dropped a %s for its worker %d, gone here", session.name, kind, link.local)
            elif kind != "exited":
                if isinstance(message.get("message"), dict):
                    link.handle(message["message"])
                else:
                    log.warning("host %s: dropped a %s without a message object", session.name, kind)
            else:
                log.error("host %s: its worker %d (our %d) exited", session.name, link.local, link.index)
                link.lost(f"worker {link.index} of host {session.name} exited")

    def _refuse(self, identity: bytes, reason: str) -> None:
        log.warning("host link: refused a registration: %s", reason)
        self._send(identity, {"type": "refused", "reason": reason})

    def _register(self, identity: bytes, message: dict[str, Any], key: str | None) -> None:
        """Add the host's workers (or confirm those registered already): nothing changes
        unless the whole message is right and the name is the key's."""
        try:
            name, entries = check_register(message)
        except ValueError as exc:
            self._refuse(identity, str(exc))
            return
        if name == self.pool.config.host_name:
            self._refuse(identity, f"{name!r} is the supervisor's own host name (host_name): give this host another --name")
            return
        names = self.allowed.names_of(key.encode()) if key else frozenset()
        if name not in names:
            self._refuse(
                identity,
                f"this host's key may register as {' or '.join(sorted(map(repr, names))) or 'no host'}, not {name!r}: "
                f"a host's name is the name of its key file in the supervisor's hosts folder ({name}.key)",
            )
            return
        session = self.sessions.get(identity)
        if session is None or session.lost or session.name != name:
            # A host that comes back (new link, same name) replaces its old session.
            for old in [s for s in self.sessions.values() if s.name == name and not s.lost]:
                self._lose(old, f"host {name} registered again")
            session = HostSession(name=name, identity=identity, send=self._send)
            self.sessions[identity] = session
        session.last_seen = time.monotonic()
        indexes: dict[str, int] = {}
        added = []
        for local, pid, cpu in entries:
            old_link = session.links.get(local)
            if old_link is not None and old_link.alive and self.pool.links.get(old_link.index) is old_link:
                if old_link.pid == pid:
                    indexes[str(local)] = old_link.index  # already registered: the same index
                    continue
                old_link.lost(f"worker {old_link.index} of host {name} was replaced")
            link = self.pool.add_remote(
                lambda index, local=local, pid=pid, cpu=cpu: RemoteWorkerLink(index, self.pool, session, local, pid, cpu)  # type: ignore[misc]
            )
            session.links[local] = link  # type: ignore[assignment]
            indexes[str(local)] = link.index
            added.append(link.index)
        log.info("host %s registered %d workers: %s (new: %s)", name, len(indexes), sorted(indexes.values()), added or "none")
        session.post({"type": "registered", "indexes": indexes})

    def _lose(self, session: HostSession, reason: str) -> None:
        if session.lost:
            return
        log.error("host %s lost (%s): its peers are told as for a crashed worker", session.name, reason)
        session.lost = True
        for link in session.links.values():
            link.lost(f"worker {link.index} of host {session.name}: {reason}")

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(HOST_PING)
            now = time.monotonic()
            for identity, session in list(self.sessions.items()):
                if session.lost:
                    # Kept (as "lost" in hosts.list, refused by peer.place) until the pool
                    # has forgotten its workers and the host is back under a new session;
                    # names are bound to keys, so there is one such record per key at most.
                    forgotten = not any(self.pool.links.get(link.index) is link for link in session.links.values())
                    if forgotten and any(s.name == session.name and s is not session for s in self.sessions.values()):
                        del self.sessions[identity]
                    continue
                if now - session.last_seen > HOST_TIMEOUT:
                    self._lose(session, f"no message for {HOST_TIMEOUT:g} s")
                else:
                    session.post({"type": "ping"})

    def current(self) -> dict[str, HostSession]:
        """Each known host's session by name: its live one, else its last lost one."""
        by_name: dict[str, HostSession] = {}
        for session in self.sessions.values():
            if session.name not in by_name or by_name[session.name].lost:
                by_name[session.name] = session
        return by_name

    def describe(self) -> list[dict[str, Any]]:
        """hosts.list: every remote host the supervisor knows, by name."""
        return [session.describe() for _, session in sorted(self.current().items())]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self._auth is not None:
            self._auth.stop()
            self._auth = None
        if self._socket is not None:
            self._socket.close(linger=0)
            self._socket = None
        if self._ctx is not None:
            self._ctx.destroy(linger=0)
            self._ctx = None
