"""Fixtures shared by the protocol and integration tiers."""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

# Every message the tests send and receive, checked against shared/schemas (a hook and an
# autouse fixture: tests/schema_check.py).
from schema_check import pytest_runtest_call, schema_checked_messages  # noqa: F401
from support import MEDIA_CODECS, ServerProcess, peer_capabilities, running_server
from tureen.shared.client import TureenClient

# The `net` and `cluster` fixtures of the multi-host tests (tests/cluster.py).
pytest_plugins = ["cluster"]

# Every `tureen serve` a test starts (many at once under xdist) would bind the same default
# metrics port: off unless a test asks for one with --metrics-listen (a flag beats the env).
os.environ["TUREEN_METRICS_LISTEN"] = "off"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One real `tureen serve` (2 workers) per test module; its log is printed on failure."""
    proc = ServerProcess(tmp_path_factory.mktemp("tureen"), workers=2)
    try:
        proc.wait_ready()
        yield proc
    finally:
        proc.stop()


@pytest.fixture
async def client(server: ServerProcess) -> AsyncIterator[TureenClient]:
    async with TureenClient(server.endpoint, timeout=10.0) as c:
        yield c


_rooms = itertools.count(1)


class RoomDriver:
    """Sends protocol messages for peers of one room through the control API."""

    def __init__(self, client: TureenClient, room_id: str, caps: dict[str, Any]) -> None:
        self.client = client
        self.id = room_id
        self.caps = caps
        self.peer_caps = peer_capabilities(caps)

    async def req(self, peer: str | None, method: str, **data: Any) -> Any:
        target = "room" if method in ("queryRoom", "join") else "peer"
        return await self.client.peer_request(self.id, peer, {"method": method, "target": target, **data})

    async def notify(self, peer: str, method: str, **data: Any) -> None:
        await self.client.peer_notify(self.id, peer, {"method": method, "target": "peer", "notification": True, **data})

    async def join(self, name: str, spy: bool = False, app_data: Any = None) -> Any:
        return await self.req(None, "join", peerName=name, rtpCapabilities=self.peer_caps, spy=spy, appData=app_data)

    async def action(self, method: str, **params: Any) -> Any:
        return await self.client.request(method, roomId=self.id, **params)


@pytest.fixture
async def room(client: TureenClient) -> AsyncIterator[RoomDriver]:
    room_id = f"room-{next(_rooms)}"
    created = await client.create_room(MEDIA_CODECS, room_id=room_id)
    yield RoomDriver(client, room_id, created["rtpCapabilities"])
    try:
        await client.close_room(room_id)
    except Exception:
        pass


# (workers, fan-out core): the default core (native where built) on one worker and across
# the pipe, and the pure-Python core (workers/sendbatch.py) on one worker.
MEDIA_SERVERS = [(1, "auto"), (2, "auto"), (1, "python")]


@pytest.fixture(params=MEDIA_SERVERS, ids=["one-worker", "two-workers", "python-core"])
def media_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerProcess]:
    """A fresh `tureen serve` per test, with one worker, with two (media tests run both:
    producer and consumer on one worker, and across the pipe) and with the Python core."""
    workers, core = request.param
    with running_server(tmp_path, workers=workers, extra=["--fanout", core]) as srv:
        srv.fanout = core
        yield srv


@pytest.fixture
async def media_room(media_server: ServerProcess) -> AsyncIterator[tuple[TureenClient, str]]:
    """(client, room id) of a room on `media_server`; the client receives its events."""
    async with TureenClient(media_server.endpoint) as client:
        core = (await client.dump_worker(0))["fanout"]["core"]
        if media_server.fanout == "python":
            assert core == "python"
        elif os.environ.get("TUREEN_REQUIRE_NATIVE") == "1":
            assert core == "native"
        await client.create_room(MEDIA_CODECS, room_id="media")
        yield client, "media"
        with contextlib.suppress(Exception):
            await client.close_room("media")
