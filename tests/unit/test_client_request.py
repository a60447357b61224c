"""TureenClient.request with parameters JSON cannot hold: a clear error, nothing left pending."""

from __future__ import annotations

import socket

import pytest
from tureen.shared.client import TureenClient
from tureen.shared.errors import ProtocolError


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _deep(levels: int) -> object:
    value: object = {}
    for _ in range(levels):
        value = {"a": value}
    return value


@pytest.mark.parametrize("bad", [_deep(300), 2**70], ids=["nested-300", "int-beyond-64-bits"])
async def test_an_unencodable_request_is_a_bad_request_and_leaves_nothing_pending(bad: object) -> None:
    # Nothing listens there: the request must fail before anything is sent or awaited.
    async with TureenClient(f"tcp://127.0.0.1:{_free_port()}", timeout=2.0) as client:
        with pytest.raises(ProtocolError) as err:
            await client.request("room.create", mediaCodecs=[], appData=bad)
        assert err.value.code == "bad_request" and "room.create" in err.value.message
        assert client._pending == {}
