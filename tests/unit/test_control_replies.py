"""A reply is always sent (issue 12, finding 1): the real ControlServer on a real ZeroMQ
socket, in process, without workers. A reply that cannot be encoded becomes an `internal`
error with the same id; an event that cannot be encoded is dropped and the sender goes on."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import zmq
import zmq.asyncio
from tureen.shared import wire
from tureen.shared.config import Config
from tureen.supervisor.control_server import ControlServer
from tureen.supervisor.server import Server

pytestmark = pytest.mark.timeout(30)


def nested(levels: int) -> Any:
    value: Any = []
    for _ in range(levels - 1):
        value = [value]
    return value


@pytest.fixture
async def control(tmp_path: Path) -> AsyncIterator[tuple[ControlServer, zmq.asyncio.Socket]]:
    endpoint = f"ipc://{tmp_path}/control.ipc"
    ctx = zmq.asyncio.Context.instance()
    server = Server(Config(control_endpoint=endpoint, run_dir=str(tmp_path / "run")), ctx)
    control = ControlServer(server, endpoint)
    control.start()
    app = ctx.socket(zmq.DEALER)
    app.setsockopt(zmq.LINGER, 0)
    app.setsockopt(zmq.IDENTITY, b"app-1")
    app.connect(endpoint)
    try:
        yield control, app
    finally:
        app.close()
        await control.stop()
        shutil.rmtree(tmp_path / "run", ignore_errors=True)


async def exchange(app: zmq.asyncio.Socket, message: dict[str, Any]) -> dict[str, Any]:
    await app.send(orjson.dumps(message))
    return orjson.loads(await asyncio.wait_for(app.recv(), 5))


async def test_an_unencodable_reply_becomes_an_internal_error_with_its_id(control: Any) -> None:
    server, app = control
    assert await exchange(app, {"id": 1, "method": "server.ping"}) == wire.reply_ok(1, {"pong": True})
    for data in (nested(300), {"n": 2**70}):
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        future.set_result(data)
        await server._reply([b"app-1"], "r-9", "room.dump", future)
        reply = orjson.loads(await asyncio.wait_for(app.recv(), 5))
        assert reply["id"] == "r-9" and reply["ok"] is False, reply
        assert reply["error"]["code"] == "internal" and "JSON" in reply["error"]["message"]
    assert server.unencodable == 2


async def test_an_unencodable_event_is_dropped_and_the_emitter_goes_on(control: Any) -> None:
    server, app = control
    # Connected first: an event for an identity the ROUTER does not know yet is undeliverable
    # (ROUTER_MANDATORY), and its subscriber would be dropped as gone.
    assert await exchange(app, {"id": 1, "method": "server.ping"}) == wire.reply_ok(1, {"pong": True})
    server.server.subscriptions["r1"] = [b"app-1"]
    server.server.emit("r1", {"event": "peer.joined", "appData": nested(300)})  # does not raise
    server.server.emit("r1", {"event": "peer.closed", "peerName": "a"})
    event = orjson.loads(await asyncio.wait_for(app.recv(), 5))
    assert event == {"event": "peer.closed", "peerName": "a"}
    assert server.unencodable == 1
    assert await exchange(app, {"id": 2, "method": "server.ping"}) == wire.reply_ok(2, {"pong": True})
