"""The host link's two ends without a network: the supervisor's RemoteWorkerLink sends a
relative budget, the host (HostAgent, with a real worker) turns it into its own deadline,
translates pipe indexes and refuses what it must; the pool keeps pipes on one host."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest
import zmq.asyncio
from tureen.shared.config import Config
from tureen.shared.contract import PipeCloseTo, PipeOpen, TransportSetRemoteDtls, WorkerPing
from tureen.shared.curve import ClientKeys
from tureen.shared.errors import ProtocolError
from tureen.supervisor.host_agent import HostAgent
from tureen.supervisor.hosts import HostSession, RemoteWorkerLink
from tureen.supervisor.worker_pool import WorkerPool

pytestmark = pytest.mark.timeout(60)

KEYS = ClientKeys(b"0" * 40, b"0" * 40, b"0" * 40)  # never used: no link is opened here


def make_pool(tmp: Path) -> WorkerPool:
    async def on_death(index: int) -> None:
        return None

    return WorkerPool(Config(worker_timeout=2.0), tmp, zmq.asyncio.Context.instance(), lambda i, e: None, on_death)


def remote(pool: WorkerPool, name: str, sent: list[dict[str, Any]]) -> RemoteWorkerLink:
    # Encoded as HostsServer._send does, so what it cannot write fails here as there.
    session = HostSession(
        name=name, identity=name.encode(), send=lambda identity, message: sent.append(orjson.loads(orjson.dumps(message)))
    )
    link = pool.add_remote(lambda index: RemoteWorkerLink(index, pool, session, 0, None, None))
    assert isinstance(link, RemoteWorkerLink)
    session.links[0] = link
    return link


async def test_a_remote_request_carries_the_budget_left_not_a_deadline(tmp_path: Path) -> None:
    pool = make_pool(tmp_path)
    sent: list[dict[str, Any]] = []
    link = remote(pool, "h1", sent)
    reply = asyncio.ensure_future(link.request(WorkerPing(), timeout=3.0))
    for _ in range(100):
        if any(m.get("type") == "request" and m["command"]["method"] == "worker.ping" for m in sent):
            break
        await asyncio.sleep(0.01)
    request = next(m for m in sent if m.get("type") == "request" and m["command"]["method"] == "worker.ping")
    assert "deadline" not in request and "deadline" not in request["command"]
    assert 0 < request["budget"] <= 3.0
    assert request["worker"] == 0
    link.handle({"id": request["id"], "ok": True, "data": {"pong": 1}})
    assert await reply == {"pong": 1}
    await pool.stop()


async def test_a_remote_request_it_cannot_encode_is_refused_at_once_and_not_sent(tmp_path: Path) -> None:
    """As on a local link (tests/fuzz/test_regressions.py): bad_request for the callers' undo
    paths, not a request that waits out its budget and says `unavailable`."""
    pool = make_pool(tmp_path)
    sent: list[dict[str, Any]] = []
    link = remote(pool, "h1", sent)
    deep: Any = 1
    for _ in range(300):
        deep = [deep]
    with pytest.raises(ProtocolError) as err:
        await link.request(TransportSetRemoteDtls(transportId=1, dtlsParameters={"role": "client", "x": deep}), timeout=2.0)
    assert err.value.code == "bad_request" and "nested" in err.value.message
    assert not [m for m in sent if m.get("type") == "request" and m["command"]["method"] == "transport.setRemoteDtls"]
    await pool.stop()


async def test_the_pool_keeps_pipes_on_one_host(tmp_path: Path) -> None:
    pool = make_pool(tmp_path)
    a = remote(pool, "h1", [])
    b = remote(pool, "h2", [])
    with pytest.raises(ProtocolError) as err:
        await pool.request(a.index, PipeOpen(producerId=1, workerIndex=b.index))
    assert err.value.code == "unsupported"
    assert "different hosts" in err.value.message
    await pool.stop()


async def test_the_host_turns_the_budget_into_its_deadline_and_checks_indexes(tmp_path: Path) -> None:
    config = Config(run_dir=str(tmp_path / "run"), pin_workers=False)
    agent = HostAgent(config, "tcp://127.0.0.1:1", "h1", 1, KEYS)
    try:
        await agent._start_worker(0)
        ping = {"method": "worker.ping"}
        # A budget that is spent: refused here, the worker never sees it.
        for budget in (0, -1.0, None, "5"):
            with pytest.raises(ProtocolError) as err:
                await agent._execute(0, {"budget": budget, "command": ping})
            assert err.value.code == "unavailable", budget
        assert await agent._execute(0, {"budget": 5.0, "command": ping}) is not None
        with pytest.raises(ProtocolError) as err:
            await agent._execute(7, {"budget": 5.0, "command": ping})
        assert "no worker 7" in err.value.message
        # Pipes: the supervisor's index of one of this host's workers, else refused.
        close_to = PipeCloseTo(workerIndex=12).to_wire()
        with pytest.raises(ProtocolError) as err:
            await agent._execute(0, {"budget": 5.0, "command": close_to})
        assert "not a worker of host h1" in err.value.message
        agent.local_of[12] = 0
        await agent._execute(0, {"budget": 5.0, "command": close_to})
        info = await agent._execute(0, {"budget": 5.0, "command": {"method": "worker.info"}})
        assert "cpuPercent" in info
    finally:
        await agent._stop_workers()
        agent._run_dir.release()
        agent._ctx.destroy(linger=0)
