"""RoomServices over one real `Worker` of workers/worker.py in this process: its command
handlers and real UDP/TCP sockets on 127.0.0.1, no ZeroMQ, every request and reply through
the wire encoding as the worker link does. The room fuzz target (room.py) runs its Room on it;
tests/unit/test_fake_worker.py holds the unit tier's fake worker to what it answers."""

from __future__ import annotations

import asyncio
import itertools
import tempfile
from typing import Any

from tureen.shared import contract, wire
from tureen.shared.config import Config
from tureen.supervisor.room import Room
from tureen.workers.worker import Worker


class _Events:
    """The worker's channel to the supervisor: events are counted, not delivered (the
    room under test sees replies only, as a room whose events are still in flight)."""

    def __init__(self) -> None:
        self.sent = 0
        self.last: Any = None

    def send(self, frame: Any) -> None:
        self.sent += 1
        self.last = frame


class InProcessWorker:
    """RoomServices over one real Worker's command handlers, with the worker link's wire
    round trip: a request the link could not encode fails the same way here."""

    def __init__(self, loop: asyncio.AbstractEventLoop, index: int = 0) -> None:
        config = Config(rtc_ipv4="127.0.0.1", fanout="python")
        # run() is never called: no control channel, no pipe hub, so nothing is bound in
        # the run directory (and nothing is left behind when libFuzzer exits).
        self.worker = Worker(index, tempfile.gettempdir(), config, parent_pid=1)
        self.worker.loop = loop
        self.worker.channel = _Events()  # type: ignore[assignment]
        self._gids = itertools.count(1)
        self.owners: dict[int, Room] = {}
        self.events: list[dict[str, Any]] = []

    def new_gid(self) -> int:
        return next(self._gids)

    def register(self, gid: int, room: Room) -> None:
        self.owners[gid] = room

    def unregister(self, gid: int) -> None:
        self.owners.pop(gid, None)

    # Its one worker is always there: no request ever waits for one.
    worker_wait = 1.0

    def pick_worker(self, near: Any = ()) -> int:
        return 0

    def worker_changed(self) -> asyncio.Future[None]:
        return asyncio.get_running_loop().create_future()  # never: the worker never changes

    def worker_alive(self, index: int) -> bool:
        return index == 0

    def worker_host(self, index: int) -> str | None:
        return None  # one worker, the supervisor's own

    async def worker_request(self, index: int, command: contract.Command) -> Any:
        params = command.to_wire()  # as supervisor/worker_link.py, then the worker's _on_frame
        method = params.pop("method")
        message = wire.decode(wire.encode_request(1, method, params))
        kind = contract.command_type(message["method"])
        data = self.worker._handlers[kind](kind.from_wire(message))  # ProtocolError passes
        reply = wire.decode(wire.encode(wire.reply_ok(1, {} if data is None else data)))
        return reply["data"]

    def emit(self, room_id: str, event: dict[str, Any]) -> None:
        if len(self.events) < 1000:
            self.events.append(event)

    def worker_state(self) -> tuple[list[int], list[int], list[int]]:
        r = self.worker.router
        return sorted(r.transports), sorted(r.producers), sorted(r.consumers)
