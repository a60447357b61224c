"""One worker process and the ZeroMQ channel to it (docs/internals.md).

The supervisor binds a DEALER at ipc://{run_dir}/worker-{index}.ipc, starts the worker,
pins it to its CPU, and then talks request/reply with it. Every request is bounded by
`worker_timeout`; a worker that does not answer fails the request with code `unavailable`.

Faults: a worker is dead when its process exits or when it answers no heartbeat
(`worker.ping`, every HEARTBEAT_INTERVAL) within `worker_heartbeat_timeout`; a hung one is
killed (SIGKILL: it is our child). Either way its pending requests fail at once and the pool
is told (`on_exit`). A request carries its deadline, so a worker that was stopped and resumes
does not execute what the supervisor gave up on; a create whose reply comes after the
supervisor gave up anyway (the margin between the worker's check and the reply) is undone.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import psutil
import zmq
import zmq.asyncio
from tureen.shared import wire
from tureen.shared.config import Config
from tureen.shared.contract import (
    Command,
    Event,
    WorkerClose,
    WorkerInfo,
    WorkerPing,
    WorkerReady,
    control_path,
    decode_event,
)
from tureen.shared.errors import UNAVAILABLE, ProtocolError

log = logging.getLogger("tureen.worker_link")

READY_TIMEOUT = 30.0
HEARTBEAT_INTERVAL = 1.0  # s between two pings of a live worker
# A create whose success reply comes after the request timed out is undone with the
# command's `undo()` (shared/contract.py: the matching close).
MAX_EXPIRED = 10_000  # timed-out creates remembered per worker (oldest forgotten first)


class WorkerLink:
    # A worker of this machine; hosts.py's RemoteWorkerLink says otherwise.
    remote = False
    host: str | None = None  # the remote host's name; None: the supervisor's own
    def __init__(
        self,
        index: int,
        config: Config,
        run_dir: Path,
        ctx: zmq.asyncio.Context,
        on_event: Callable[[int, Event], None],
        on_exit: Callable[[int, int | None], None],
    ) -> None:
        self.index = index
        self.config = config
        self.run_dir = run_dir
        self.endpoint = f"ipc://{control_path(run_dir, index)}"
        self._ctx = ctx
        self._on_event = on_event
        self._on_exit = on_exit
        self._socket: zmq.asyncio.Socket | None = None
        self._process: asyncio.subprocess.Process | None = None
        self._pending: dict[int, asyncio.Future[Any]] = {}
        # Creates that timed out, by request id: undone if their success reply still comes.
        self._expired: dict[int, Command] = {}
        self._last_seen = 0.0  # monotonic time of the worker's last message
        self._dead = False  # the death was handled (reported once, whatever found it)
        self._ids = itertools.count(1)
        self._ready: asyncio.Future[WorkerReady] | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self.pid: int | None = None
        self.cpu: int | None = None
        self.alive = False
        self.stopping = False
        self.started_at = 0.0
        self.info: dict[str, Any] = {}
        self.placed_since_report = 0

    def activate(self) -> None:
        """For links whose worker is started elsewhere (RemoteWorkerLink)."""
        raise NotImplementedError("a local worker is started with start()")

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._socket = self._ctx.socket(zmq.DEALER)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.bind(self.endpoint)
        self._ready = loop.create_future()
        self._tasks.append(loop.create_task(self._read(), name=f"worker {self.index} reader"))
        config_json = orjson.dumps(self.config.to_dict()).decode()
        self._process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tureen.workers.main",
            "--index",
            str(self.index),
            "--run-dir",
            str(self.run_dir),
            "--config",
            config_json,
            "--parent-pid",
            str(os.getpid()),
            stdin=asyncio.subprocess.DEVNULL,
        )
        self.pid = self._process.pid
        self._tasks.append(loop.create_task(self._watch(), name=f"worker {self.index} watch"))
        try:
            await asyncio.wait_for(asyncio.shield(self._ready), READY_TIMEOUT)
        except TimeoutError:
            await self.stop()
            raise ProtocolError(
                UNAVAILABLE,
                f"worker {self.index} did not report ready within {READY_TIMEOUT:.0f} s; "
                "see its log lines above",
            ) from None
        except ProtocolError:
            await self.stop()
            raise
        self.alive = True
        self.started_at = self._last_seen = time.monotonic()
        self._tasks.append(loop.create_task(self._heartbeat(), name=f"worker {self.index} heartbeat"))
        self._pin()
        log.info("worker %d started (pid %d, cpu %s)", self.index, self.pid, self.cpu)

    def _pin(self) -> None:
        if not self.config.pin_workers or self.pid is None:
            return
        cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
        choices = sorted(cpus) if cpus else list(range(os.cpu_count() or 1))
        cpu = choices[self.index % len(choices)]
        try:
            psutil.Process(self.pid).cpu_affinity([cpu])
            self.cpu = cpu
        except (psutil.Error, AttributeError, OSError) as exc:
            log.warning("worker %d: could not pin to cpu %d (%s); running unpinned", self.index, cpu, exc)

    async def _read(self) -> None:
        assert self._socket is not None
        while True:
            try:
                frames = await self._socket.recv_multipart()
            except (zmq.ZMQError, asyncio.CancelledError):
                return
            try:
                message = wire.decode(frames[-1])
            except ProtocolError as exc:
                self._last_seen = time.monotonic()
                log.error("worker %d sent an unreadable message: %s", self.index, exc.message)
                continue
            self.handle(message)

    def handle(self, message: dict[str, Any]) -> None:
        """One decoded message of the worker: an event, or the reply to a request."""
        self._last_seen = time.monotonic()
        if "event" in message:
            try:
                event = decode_event(message)
            except ProtocolError as exc:
                log.error("worker %d sent an event that is not in the contract: %s", self.index, exc.message)
                return
            if isinstance(event, WorkerReady) and self._ready and not self._ready.done():
                self._ready.set_result(event)
                return
            try:
                self._on_event(self.index, event)
            except Exception:
                log.exception("worker %d: event handler failed for %r", self.index, event)
            return
        future = self._pending.pop(message.get("id"), None)
        if future is None or future.done():
            self._late_reply(message)
            return
        if message.get("ok"):
            future.set_result(message.get("data"))
        else:
            future.set_exception(ProtocolError.from_wire(message.get("error")))

    async def _watch(self) -> None:
        assert self._process is not None
        code = await self._process.wait()
        if self.stopping or self._dead:
            self.alive = False
            self._fail_pending(f"worker {self.index} exited (code {code})")
            return
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(
                ProtocolError(UNAVAILABLE, f"worker {self.index} exited with code {code} at start")
            )
            return
        log.error("worker %d (pid %s) exited unexpectedly with code %s", self.index, self.pid, code)
        self._declare_dead(f"worker {self.index} exited (code {code})", code)

    def _declare_dead(self, reason: str, code: int | None) -> None:
        """Once per worker: no more requests, the pending ones fail now, the pool is told."""
        was_alive = self.alive
        self.alive = False
        self._fail_pending(reason)
        if self._dead or not was_alive or self.stopping:
            return
        self._dead = True
        self._on_exit(self.index, code)

    async def _heartbeat(self) -> None:
        """Ping every HEARTBEAT_INTERVAL; kill the worker when no answer comes in time."""
        bound = self.config.worker_heartbeat_timeout
        while True:
            await asyncio.sleep(HEARTBEAT_INTERVAL)
            if not self.alive or self.stopping:
                return
            sent = time.monotonic()
            try:
                await self.request(WorkerPing(), timeout=bound)
                continue
            except ProtocolError:
                if not self.alive or self.stopping:
                    return  # it died meanwhile: _watch reports that
            # The slow one may have been this process (a long blocking call): give the
            # reader one turn before blaming the worker.
            await asyncio.sleep(0.05)
            if self._last_seen >= sent or not self.alive or self.stopping:
                continue
            self._kill_hung(bound)
            return

    def _kill_hung(self, bound: float) -> None:
        state = "unknown"
        with contextlib.suppress(psutil.Error):
            state = psutil.Process(self.pid).status()
        log.error(
            "worker %d (pid %s, process state %s) answered no heartbeat for %.1f s; "
            "killing it and starting another",
            self.index,
            self.pid,
            state,
            bound,
        )
        if self._process is not None and self._process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._process.kill()  # SIGKILL also ends a stopped (SIGSTOP) process
        self._declare_dead(f"worker {self.index} hung (no heartbeat for {bound:.1f} s) and was killed", None)

    def _late_reply(self, message: dict[str, Any]) -> None:
        """A reply to a request that already failed with a timeout: undo what it created."""
        expired = self._expired.pop(message.get("id"), None)  # type: ignore[arg-type]
        if expired is None:
            return
        if not message.get("ok"):
            return  # it created nothing
        undo = expired.undo()
        assert undo is not None  # only commands with an undo are remembered
        log.warning(
            "worker %d: %s answered after the request timed out; undoing it with %s",
            self.index,
            expired.name(),
            undo.name(),
        )
        task = asyncio.get_running_loop().create_task(self._quiet(undo), name=f"worker {self.index} undo")
        self._tasks.append(task)
        task.add_done_callback(lambda t: self._tasks.remove(t) if t in self._tasks else None)

    async def _quiet(self, command: Command) -> None:
        try:
            await self.request(command)
        except ProtocolError as exc:
            log.warning("worker %d: %s failed: %s", self.index, command.name(), exc.message)

    def _fail_pending(self, reason: str) -> None:
        for future in self._pending.values():
            if not future.done():
                future.set_exception(ProtocolError(UNAVAILABLE, reason))
        self._pending.clear()

    async def request(self, command: Command, timeout: float | None = None) -> Any:
        """Send `command`, return the reply's data; ProtocolError for an error reply, and
        `unavailable` when the worker is gone or does not answer within the timeout."""
        if not self.alive or not self._connected():
            raise ProtocolError(UNAVAILABLE, f"worker {self.index} is not running")
        budget = timeout or self.config.worker_timeout
        request_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        # The worker refuses the request once this has passed (CLOCK_MONOTONIC: one clock
        # for all processes of the host), so nothing is created after we gave up.
        deadline = time.monotonic() + budget
        try:
            # Bounded too: a DEALER whose worker just died has no peer, and its send would
            # wait for one forever (seen when SIGINT reaches the workers and the supervisor
            # together, and the supervisor asks them to close before it notices they are gone).
            # encode_request: parameters orjson cannot write are a ProtocolError, which the
            # callers' undo paths handle (a TypeError would leave half-made objects behind).
            send = asyncio.ensure_future(self._send(request_id, command, deadline, budget))
            # A death noticed meanwhile fails `future` (_fail_pending): stop waiting for the
            # send then, or a request to a killed worker would hold its room for `budget`.
            await asyncio.wait((send, future), timeout=budget, return_when=asyncio.FIRST_COMPLETED)
            if not send.done():
                send.cancel()
                if not future.done():
                    raise TimeoutError
            elif not future.done() and isinstance(refused := send.exception(), ProtocolError):
                raise refused  # unencodable parameters: nothing was sent
            return await asyncio.wait_for(future, max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            if command.undo() is not None and self.alive:
                self._expired[request_id] = command
                if len(self._expired) > MAX_EXPIRED:
                    del self._expired[next(iter(self._expired))]
            raise ProtocolError(
                UNAVAILABLE,
                f"worker {self.index} did not answer {command.name()} within {budget:.0f} s",
            ) from None
        finally:
            self._pending.pop(request_id, None)

    def _connected(self) -> bool:
        return self._socket is not None

    async def _send(self, request_id: int, command: Command, deadline: float, budget: float) -> None:
        """Put one request on the channel. A local worker gets the absolute `deadline`:
        CLOCK_MONOTONIC is one clock for every process of this machine."""
        assert self._socket is not None
        params = command.to_wire()
        method = params.pop("method")
        await self._socket.send(wire.encode_request(request_id, method, {"deadline": deadline, **params}))

    async def refresh_info(self) -> None:
        info = await self.request(WorkerInfo(), timeout=5.0)
        if isinstance(info, dict):
            try:
                info["cpuPercent"] = psutil.Process(self.pid).cpu_percent(None)
            except psutil.Error:
                pass
            self.info = info
            self.placed_since_report = 0

    async def stop(self, timeout: float = 5.0) -> None:
        """Ask the worker to exit, then terminate, then kill: never leave an orphan."""
        self.stopping = True
        process = self._process
        if process is not None and process.returncode is None:
            if self.alive:
                with contextlib.suppress(ProtocolError):
                    await self.request(WorkerClose(), timeout=2.0)
            for action in (None, process.terminate, process.kill):
                if action is not None:
                    with contextlib.suppress(ProcessLookupError):
                        action()
                try:
                    await asyncio.wait_for(process.wait(), timeout / 2)
                    break
                except TimeoutError:
                    continue
        self.alive = False
        self._fail_pending(f"worker {self.index} stopped")
        tasks, self._tasks = self._tasks, []
        current = asyncio.current_task()
        for task in tasks:
            if task is not current:
                task.cancel()
        for task in tasks:
            if task is not current:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if self._socket is not None:
            self._socket.close(linger=0)
            self._socket = None
        with contextlib.suppress(OSError):
            os.unlink(control_path(self.run_dir, self.index))

    def describe(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "pid": self.pid,
            "cpu": self.cpu,
            "alive": self.alive,
            "uptime": round(time.monotonic() - self.started_at, 1) if self.alive else 0,
            "load": self.info,
        }
