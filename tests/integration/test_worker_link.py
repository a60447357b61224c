"""WorkerLink edge cases with real ZeroMQ sockets (no worker process needed)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
import zmq
import zmq.asyncio
from tureen.shared.config import Config
from tureen.shared.errors import ProtocolError
from tureen.supervisor.worker_link import WorkerLink


async def test_a_request_to_a_worker_that_is_gone_fails_in_time(tmp_path: Path) -> None:
    """The worker's end of the channel vanished before the supervisor noticed (SIGINT to the
    whole process group): the DEALER has no peer, and the request must still end."""
    ctx = zmq.asyncio.Context()
    link = WorkerLink(0, Config(), tmp_path, ctx, lambda *a: None, lambda *a: None)
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.bind(f"ipc://{tmp_path}/worker-0.ipc")
    link._socket = sock
    link.alive = True
    started = time.monotonic()
    try:
        with pytest.raises(ProtocolError) as err:
            await asyncio.wait_for(link.request("worker.close", timeout=0.5), 5)
        assert "did not answer worker.close" in err.value.message
        assert time.monotonic() - started < 3
    finally:
        sock.close(linger=0)
        ctx.term()
