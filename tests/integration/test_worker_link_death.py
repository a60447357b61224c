"""A request sent while its worker is dying ends with the death, not after its timeout.

Between a worker's death and the supervisor noticing it, the DEALER to it has no peer and a
send waits. When the death was then declared, the pending request's future failed but the
request itself kept waiting in the send for its whole timeout (10 s by default): the room
that sent it stalled that long, the error said "did not answer" instead of what happened, and
the failed future's exception was never retrieved (logged by asyncio). Found by the load test
(tests/integration/test_load_faults.py) killing a worker in the middle of a churn wave.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from support import fake_worker_link
from tureen.shared.contract import TransportCreatePlain
from tureen.shared.errors import ProtocolError


async def test_a_request_blocked_in_its_send_fails_when_the_worker_is_declared_dead(
    tmp_path: Path,
) -> None:
    exits: list[int | None] = []
    # Bound, but no worker at the other end: a send waits.
    async with fake_worker_link(tmp_path, on_exit=lambda index, code: exits.append(code), worker_end=False) as (link, _):
        request = asyncio.ensure_future(
            link.request(TransportCreatePlain(transportId=1), timeout=60.0)
        )
        await asyncio.sleep(0.2)  # it is in its send now
        assert not request.done()
        link._declare_dead("worker 0 exited (code -9)", -9)
        with pytest.raises(ProtocolError) as err:
            await asyncio.wait_for(request, 10)  # far below the request's own 60 s
        assert err.value.code == "unavailable"
        assert "exited (code -9)" in err.value.message
        assert exits == [-9]
