"""`tureen host`: a remote host's side of the host link (supervisor/hosts.py has the protocol).

The host starts its own pinned workers as `tureen serve` does (the same WorkerLink: ipc://
channels in its own run dir, CPU pinning, heartbeats, kill of a hung worker), connects a
DEALER to the supervisor's hosts endpoint with CURVE, registers the workers and then proxies:
requests from the supervisor to a worker (the relative `budget` becomes this machine's
deadline when the request arrives), replies and events back. A worker that dies is reported
(`exited`), restarted and registered again. When the supervisor is silent for HOST_TIMEOUT s,
or answers that it does not know this host (it restarted), the host stops every worker (their
media ends with them) and starts over: fresh workers, registered with whichever supervisor
answers next.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path
from typing import Any

import orjson
import zmq
import zmq.asyncio
from tureen.shared.config import Config
from tureen.shared.contract import Event, WorkerInfo, decode_command
from tureen.shared.curve import ClientKeys
from tureen.shared.errors import UNAVAILABLE, ProtocolError
from tureen.supervisor import run_dir, sd_notify
from tureen.supervisor.hosts import HOST_PING, HOST_TIMEOUT, drop_error
from tureen.supervisor.worker_link import WorkerLink
from tureen.supervisor.worker_pool import RESTART_BACKOFF

log = logging.getLogger("tureen.host")

REGISTER_EVERY = 1.0  # s between two registrations while the supervisor does not answer


def check_registered(message: dict[str, Any]) -> dict[int, int]:
    """A `registered`'s indexes as {our local index: the supervisor's index}, all checked
    before any is used; ValueError saying what is wrong otherwise."""
    indexes = message.get("indexes")
    if not isinstance(indexes, dict):
        raise ValueError(f"'indexes' must be an object, got {type(indexes).__name__}")
    out: dict[int, int] = {}
    for local, index in indexes.items():
        if not (isinstance(local, str) and local.isascii() and local.isdigit() and len(local) <= 10):
            raise ValueError(f"local index {local!r} is not a decimal integer")
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < 1 << 31:
            raise ValueError(f"index of local worker {local} must be an integer 0..2**31-1, got {index!r}")
        out[int(local)] = index
    if len(set(out.values())) != len(out):
        raise ValueError("two local workers have the same index")
    return out


class HostAgent:
    def __init__(self, config: Config, connect: str, name: str, count: int, keys: ClientKeys) -> None:
        self.config = config
        self.connect = connect
        self.name = name
        self.count = count
        self.keys = keys
        self._run_dir = run_dir.claim(config.run_dir)
        self.run_dir: Path = self._run_dir.path
        self._ctx = zmq.asyncio.Context()
        self._socket: zmq.asyncio.Socket | None = None
        self.links: dict[int, WorkerLink] = {}
        self.local_of: dict[int, int] = {}  # the supervisor's worker index -> ours
        self._heard = 0.0
        self._registered = asyncio.Event()
        self._lost = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._failures: dict[int, int] = {}

    # ------------------------------------------------------------------ lifecycle

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until `stop`; every lost supervisor starts a fresh session."""
        try:
            while not stop.is_set():
                await self._session(stop)
        finally:
            for task in list(self._tasks):  # requests in flight, worker restarts
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self._stop_workers()
            self._close_socket()
            self._ctx.destroy(linger=0)
            self._run_dir.release()

    async def _session(self, stop: asyncio.Event) -> None:
        self._registered.clear()
        self._lost.clear()
        self.local_of.clear()
        await asyncio.gather(*(self._start_worker(i) for i in range(self.count)))
        # systemd (Type=notify): up once the workers are; STATUS tells whether registered.
        sd_notify.notify(f"READY=1\nSTATUS={len(self.links)} workers; registering with the supervisor at {self.connect}")
        self._open_socket()
        session = [
            self._spawn(self._read(), "host link reader"),
            self._spawn(self._register_until_answered(), "host register"),
            self._spawn(self._beat(), "host link heartbeat"),
        ]
        stopping = asyncio.ensure_future(stop.wait())
        lost = asyncio.ensure_future(self._lost.wait())
        try:
            await asyncio.wait((stopping, lost), return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            lost.cancel()
            for task in session:
                task.cancel()
            for task in session:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            self._close_socket()
            await self._stop_workers()
        if not stop.is_set():
            log.warning("supervisor lost; workers stopped, registering afresh")
            sd_notify.notify(f"STATUS=supervisor at {self.connect} lost; workers stopped, starting afresh")

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _open_socket(self) -> None:
        sock = self._ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        # Nothing queues for a supervisor that is not there: a new session starts clean.
        sock.setsockopt(zmq.IMMEDIATE, 1)
        self.keys.apply(sock)
        sock.connect(self.connect)
        self._socket = sock
        self._heard = time.monotonic()

    def _close_socket(self) -> None:
        if self._socket is not None:
            self._socket.close(linger=0)
            self._socket = None

    async def _start_worker(self, index: int) -> WorkerLink:
        link = WorkerLink(index, self.config, self.run_dir, self._ctx, self._on_event, self._on_exit)
        await link.start()  # raises (after stopping it) when the worker does not come up
        self.links[index] = link
        return link

    async def _stop_workers(self) -> None:
        links, self.links = list(self.links.values()), {}
        await asyncio.gather(*(link.stop(timeout=2.0) for link in links), return_exceptions=True)

    # ------------------------------------------------------------------ the link

    def _post(self, message: dict[str, Any]) -> None:
        if self._socket is None:
            return
        # Never waits: a message the link cannot take now (no supervisor) is dropped, and
        # the heartbeat and the registration retry tell what matters again.
        sent = self._socket.send(orjson.dumps(message), flags=zmq.NOBLOCK)
        sent.add_done_callback(drop_error)

    def _workers_entry(self, indexes: list[int]) -> list[dict[str, Any]]:
        return [
            {"local": i, "pid": self.links[i].pid, "cpu": self.links[i].cpu}
            for i in indexes
            if i in self.links and self.links[i].alive
        ]

    async def _register_until_answered(self) -> None:
        while not self._registered.is_set():
            self._post({"type": "register", "name": self.name, "workers": self._workers_entry(sorted(self.links))})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._registered.wait(), REGISTER_EVERY)

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(HOST_PING)
            if self._registered.is_set() and time.monotonic() - self._heard > HOST_TIMEOUT:
                log.error("the supervisor sent nothing for %.1f s", HOST_TIMEOUT)
                self._lost.set()
                return
            if self._registered.is_set():
                self._post({"type": "ping"})

    async def _read(self) -> None:
        assert self._socket is not None
        while True:
            try:
                payload = await self._socket.recv()
            except (zmq.ZMQError, asyncio.CancelledError):
                return
            try:
                message = orjson.loads(payload)
                if not isinstance(message, dict):
                    raise ValueError("not an object")
            except ValueError as exc:
                log.warning("host link: dropped a bad message (%s)", exc)
                continue
            self._heard = time.monotonic()
            self._on_message(message)

    def _on_message(self, message: dict[str, Any]) -> None:
        """One message of the supervisor; a bad one is logged and changes nothing."""
        kind = message.get("type")
        if kind == "ping":
            self._post({"type": "pong"})
        elif kind == "registered":
            try:
                indexes = check_registered(message)
            except ValueError as exc:
                log.warning("host link: dropped a bad 'registered' (%s); registering again", exc)
                return
            for local, index in indexes.items():
                self.local_of[index] = local
            log.info("registered with the supervisor as host %s: workers %s", self.name, indexes)
            if not self._registered.is_set():
                sd_notify.notify(f"STATUS=registered as host {self.name} with the supervisor at {self.connect}: workers {sorted(indexes.values())}")
            self._registered.set()
        elif kind == "request":
            self._spawn(self._serve(message), "host request")
        elif kind == "unknown" and self._registered.is_set():
            log.warning("the supervisor does not know this host (it restarted)")
            self._lost.set()
        elif kind == "refused":
            reason = message.get("reason")
            log.error("the supervisor refused the registration: %s", reason)
            sd_notify.notify(f"STATUS=the supervisor refused the registration: {str(reason)[:200]}")

    async def _serve(self, message: dict[str, Any]) -> None:
        local = message.get("worker")
        request_id = message.get("id")
        if not isinstance(request_id, int) or isinstance(request_id, bool) or not isinstance(local, int) or isinstance(local, bool):
            # No reply can find its request: the supervisor's requests always carry both.
            log.warning("host link: dropped a request without an integer id and worker (%r, %r)", request_id, local)
            return
        try:
            data = await self._execute(local, message)
            reply: dict[str, Any] = {"id": request_id, "ok": True, "data": data}
        except ProtocolError as exc:
            reply = {"id": request_id, "ok": False, "error": exc.to_wire()}
        except Exception as exc:  # a malformed request is refused, never unanswered
            log.warning("host link: refused a malformed request %d: %r", request_id, exc)
            reply = {"id": request_id, "ok": False, "error": {"code": "bad_request", "message": f"malformed host request: {exc}"}}
        self._post({"type": "reply", "worker": local, "message": reply})

    async def _execute(self, local: Any, message: dict[str, Any]) -> Any:
        link = self.links.get(local) if isinstance(local, int) else None
        if link is None:
            raise ProtocolError(UNAVAILABLE, f"host {self.name} has no worker {local!r}")
        budget = message.get("budget")
        if isinstance(budget, bool) or not isinstance(budget, int | float) or budget <= 0:
            raise ProtocolError(UNAVAILABLE, f"request reached host {self.name} with no budget left; not executed")
        wire = message.get("command")
        if not isinstance(wire, dict):
            raise ProtocolError("bad_request", "request without a command")
        if "workerIndex" in wire:
            # Pipes join workers of this host; the supervisor names them by its indexes.
            index = wire["workerIndex"]
            if not isinstance(index, int) or isinstance(index, bool) or index not in self.local_of:
                raise ProtocolError(UNAVAILABLE, f"worker {index!r} is not a worker of host {self.name}")
            wire = {**wire, "workerIndex": self.local_of[index]}
        command = decode_command(wire)
        if isinstance(command, WorkerInfo):
            await link.refresh_info()  # adds the worker's cpuPercent, measured here
            return link.info
        # The budget starts now, on this machine's clock: the worker refuses it once passed.
        return await link.request(command, timeout=float(budget))

    def _on_event(self, index: int, event: Event) -> None:
        self._post({"type": "event", "worker": index, "message": event.to_wire()})

    def _on_exit(self, index: int, code: int | None) -> None:
        self._post({"type": "exited", "worker": index})
        self._spawn(self._restart(index), f"restart worker {index}")

    async def _restart(self, index: int) -> None:
        old = self.links.get(index)
        if old is not None:
            await old.stop(timeout=1.0)
        while self.links.get(index) is old and not self._lost.is_set():
            failures = self._failures.get(index, 0)
            await asyncio.sleep(RESTART_BACKOFF[min(failures, len(RESTART_BACKOFF) - 1)])
            if self.links.get(index) is not old or self._lost.is_set():
                return
            try:
                await self._start_worker(index)
            except ProtocolError as exc:
                self._failures[index] = failures + 1
                log.error("worker %d restart failed (%s); retrying in a while", index, exc.message)
                continue
            self._failures[index] = failures + 1
            log.info("worker %d restarted", index)
            self._post({"type": "register", "name": self.name, "workers": self._workers_entry([index])})
