"""The pool of worker processes: start, pin, watch, restart, scale, and place peers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Collection
from pathlib import Path
from typing import Any

import zmq.asyncio
from tureen.shared.config import Config
from tureen.shared.contract import Command, Event, PipeCloseTo, PipeOpen
from tureen.shared.errors import UNAVAILABLE, UNSUPPORTED, ProtocolError
from tureen.supervisor.placement import WorkerLoad, choose_worker
from tureen.supervisor.worker_link import WorkerLink

log = logging.getLogger("tureen.worker_pool")

INFO_INTERVAL = 2.0  # s between load reports
RESTART_BACKOFF = (0.5, 1.0, 2.0, 5.0, 10.0)  # s, by consecutive failures


class WorkerPool:
    def __init__(
        self,
        config: Config,
        run_dir: Path,
        ctx: zmq.asyncio.Context,
        on_event: Callable[[int, Event], None],
        on_death: Callable[[int], Awaitable[None]],
    ) -> None:
        self.config = config
        self.run_dir = run_dir
        self._ctx = ctx
        self._on_event = on_event
        self._on_death = on_death
        self.links: dict[int, WorkerLink] = {}
        self._failures: dict[int, int] = {}
        # Workers replaced after a death, per index, since the start (Prometheus counter).
        self.restarts: dict[int, int] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._monitor: asyncio.Task[None] | None = None
        self._closing = False
        self._draining = False
        # start() finished: until then requests that need a worker wait (see `ready`).
        self._started = False
        # Futures of those waiting for the next change of `ready` (changed()).
        self._waiters: list[asyncio.Future[None]] = []
        # Hosts an operator drains (hosts.drain), by name: no new peers go there. By name, so
        # a drained host that registers again (new link, new workers) stays drained.
        self.drained: set[str] = set()

    @property
    def draining(self) -> bool:
        """Shutting down: the rooms close without asking the workers (who all stop next)."""
        return self._draining

    @draining.setter
    def draining(self, value: bool) -> None:
        self._draining = value
        self._pulse()  # those waiting for a worker give up now

    @property
    def ready(self) -> bool:
        """Whether new objects can be placed now: the start finished and at least one worker
        is alive. False while starting, while every worker is being replaced, and while
        shutting down (server.info's `ready`)."""
        return (
            self._started
            and not self._draining
            and any(link.alive and not link.stopping for link in self.links.values())
        )

    def changed(self) -> asyncio.Future[None]:
        """A future done at the next event that may change `ready` (a worker came up, the
        start finished, the shutdown began). Wait on it, then look at `ready` again."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(future)
        return future

    def _pulse(self) -> None:
        waiters, self._waiters = self._waiters, []
        for future in waiters:
            if not future.done():
                future.set_result(None)

    async def start(self, count: int) -> None:
        await asyncio.gather(*(self._start_one(i) for i in range(count)))
        self._started = True
        self._pulse()
        self._monitor = asyncio.get_running_loop().create_task(self._watch_load(), name="pool monitor")

    async def _start_one(self, index: int) -> WorkerLink:
        link = WorkerLink(index, self.config, self.run_dir, self._ctx, self._on_event, self._exited)
        self.links[index] = link
        await link.start()
        with contextlib.suppress(ProtocolError):
            await link.refresh_info()
        self._pulse()  # a replacement (or a new worker) is up: those waiting may go on
        return link

    def _exited(self, index: int, code: int | None) -> None:
        task = asyncio.get_running_loop().create_task(self._recover(index), name=f"recover {index}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def add_remote(self, make: Callable[[int], WorkerLink]) -> WorkerLink:
        """Add a worker of a remote host (supervisor/hosts.py) under a fresh index: `make`
        builds its link for that index. It is placed on like any worker from now on."""
        index = max(self.links, default=-1) + 1
        link = make(index)
        self.links[index] = link
        link.activate()
        self._pulse()
        # Its first load report (placement weighs it by its figures from then on).
        task = asyncio.get_running_loop().create_task(self._first_info(link), name=f"worker {index} info")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return link

    @staticmethod
    async def _first_info(link: WorkerLink) -> None:
        with contextlib.suppress(ProtocolError):
            await link.refresh_info()

    async def _recover(self, index: int) -> None:
        """Tear down what touched the dead worker (pipes towards it on the others, the
        rooms' objects on it), then start a fresh worker at the same index. A remote
        host's worker is only forgotten: its host starts and registers a new one."""
        old = self.links.get(index)
        await self._forget(index)
        if old is not None and old.remote:
            if self.links.get(index) is old:
                del self.links[index]
            self._pulse()
            return
        if old is not None:
            await old.stop(timeout=1.0)
        failures = self._failures.get(index, 0)
        while not self._closing and self.links.get(index) is old:
            delay = RESTART_BACKOFF[min(failures, len(RESTART_BACKOFF) - 1)]
            await asyncio.sleep(delay)
            if self._closing or self.links.get(index) is not old:
                return
            try:
                await self._start_one(index)
                self.restarts[index] = self.restarts.get(index, 0) + 1
                log.info("worker %d restarted", index)
                self._failures[index] = failures + 1
                return
            except ProtocolError as exc:
                failures += 1
                log.error("worker %d restart failed (%s); retrying in a while", index, exc.message)

    async def _forget(self, index: int) -> None:
        """Worker `index` is gone (dead, hung and killed, or retired): the rooms close what
        it hosted and tell the peers, then every other worker closes its pipes towards it.
        Both before a replacement takes the index, which must not get the old streams."""
        try:
            await self._on_death(index)
        except Exception:
            log.exception("cleaning up after worker %d failed", index)
        # Pipes run between the workers of one host only (hosts.py): the others have none to it.
        dead_host = self.links[index].host if index in self.links else None
        survivors = [
            link for link in self.links.values() if link.index != index and link.alive and link.host == dead_host
        ]
        results = await asyncio.gather(
            *(link.request(PipeCloseTo(workerIndex=index)) for link in survivors),
            return_exceptions=True,
        )
        for link, result in zip(survivors, results, strict=True):
            if isinstance(result, BaseException):
                log.warning("worker %d: closing its pipes to worker %d failed: %s", link.index, index, result)

    async def _watch_load(self) -> None:
        while True:
            await asyncio.sleep(INFO_INTERVAL)
            # All at once: one slow (or hung) worker must not hold up the others' reports.
            links = [link for link in self.links.values() if link.alive]
            results = await asyncio.gather(*(link.refresh_info() for link in links), return_exceptions=True)
            for link, result in zip(links, results, strict=True):
                if isinstance(result, ProtocolError):
                    log.warning("worker %d load report failed: %s", link.index, result.message)
                elif isinstance(result, BaseException):
                    log.error("worker %d load report failed: %r", link.index, result)
                elif time.monotonic() - link.started_at > 60:
                    # A worker that stays up a minute is healthy again.
                    self._failures.pop(link.index, None)

    def alive(self, index: int) -> bool:
        link = self.links.get(index)
        return link is not None and link.alive and not link.stopping and not self.draining

    def host_of(self, link: WorkerLink) -> str:
        """The name of the host a worker runs on; the supervisor's own is config host_name."""
        return link.host or self.config.host_name

    def loads(self, *, drained: bool = False) -> list[WorkerLoad]:
        """The running workers that may take new peers (not stopping; `drained`: those of
        draining hosts too), with their last measured figures."""
        return [
            WorkerLoad(
                index=link.index,
                cpu_percent=float(link.info.get("cpuPercent", 0.0) or 0.0),
                transports=int(link.info.get("transports", 0) or 0),
                placed_since_report=link.placed_since_report,
                host=self.host_of(link),
            )
            for link in self.links.values()
            if link.alive and not link.stopping and (drained or self.host_of(link) not in self.drained)
        ]

    def pick(self, near: Collection[int] = ()) -> int:
        """The least loaded running worker of every host but the draining ones. `near`:
        workers of the room's peers; their hosts are preferred while one is not busy
        (supervisor/placement.py)."""
        loads = self.loads()
        if not loads:
            if self.loads(drained=True):
                raise ProtocolError(
                    UNAVAILABLE,
                    f"every host with a running worker is draining ({', '.join(sorted(self.drained))}): "
                    "undrain one (`tureen host undrain NAME`) or add a host",
                )
            raise ProtocolError(UNAVAILABLE, "no worker is running; check the supervisor log")
        room_hosts = {self.host_of(self.links[i]) for i in near if i in self.links}
        index = choose_worker(loads, room_hosts, self.config.host_busy_cpu_percent)
        self.note_placed(index)
        return index

    def note_placed(self, index: int) -> None:
        """A peer goes to worker `index`: counted until its next load report (placement)."""
        link = self.links.get(index)
        if link is not None:
            link.placed_since_report += 1

    def host_load(self, name: str) -> dict[str, Any]:
        """hosts.list's figures of host `name`: its running workers, their transports and CPU."""
        live = [link for link in self.links.values() if link.alive and self.host_of(link) == name]
        return {
            "workers": sorted(link.index for link in live),
            "transports": sum(int(link.info.get("transports", 0) or 0) for link in live),
            "cpuPercent": round(sum(float(link.info.get("cpuPercent", 0.0) or 0.0) for link in live), 1),
        }

    async def request(self, index: int, command: Command) -> Any:
        link = self.links.get(index)
        if link is None:
            raise ProtocolError(UNAVAILABLE, f"worker {index} does not exist")
        if isinstance(command, PipeOpen):
            target = self.links.get(command.workerIndex)
            if target is not None and target.host != link.host:
                raise ProtocolError(
                    UNSUPPORTED,
                    f"worker {index} ({link.host or 'the supervisor'}'s) and worker {command.workerIndex} "
                    f"({target.host or 'the supervisor'}'s) are on different hosts: a pipe joins workers of "
                    "one host; media crosses hosts over a host leg (supervisor/pipes.py)",
                )
        return await link.request(command)

    async def scale(self, count: int) -> list[int]:
        """Grow or shrink to `count` workers; retired workers' peers are told what closed.

        Returns the indexes that were retired (their objects must be closed by the caller
        before this returns: `_on_death` is awaited for each).
        """
        if count < 1:
            raise ProtocolError("bad_request", "the pool needs at least one worker")
        # The supervisor's own workers: remote hosts size their pools themselves.
        current = sorted(i for i, link in self.links.items() if not link.remote)
        retired: list[int] = []
        if count > len(current):
            start = max(self.links, default=-1) + 1
            await asyncio.gather(*(self._start_one(i) for i in range(start, start + count - len(current))))
        else:
            for index in current[count:]:
                link = self.links[index]
                link.stopping = True  # no new placements
                await self._forget(index)
                await link.stop()
                del self.links[index]
                retired.append(index)
        return retired

    def describe(self) -> list[dict[str, Any]]:
        """server.info's workers: each link's description and how often its index was
        replaced after a death (`restarts`)."""
        return [{**self.links[i].describe(), "restarts": self.restarts.get(i, 0)} for i in sorted(self.links)]

    async def stop(self) -> None:
        self._closing = True
        if self._monitor is not None:
            self._monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._monitor
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*(link.stop() for link in self.links.values()), return_exceptions=True)
        self.links.clear()
