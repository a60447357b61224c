"""WorkerLink edge cases with real ZeroMQ sockets (no worker process needed)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from support import fake_worker_link
from tureen.shared import wire
from tureen.shared.contract import (
    ConsumerNack,
    Event,
    ProducerCreate,
    ProducerPause,
    StreamSpec,
    TransportCreatePlain,
    WorkerClose,
)
from tureen.shared.errors import ProtocolError


async def test_a_request_to_a_worker_that_is_gone_fails_in_time(tmp_path: Path) -> None:
    """The worker's end of the channel vanished before the supervisor noticed (SIGINT to the
    whole process group): the DEALER has no peer, and the request must still end."""
    async with fake_worker_link(tmp_path, worker_end=False) as (link, _):
        started = time.monotonic()
        with pytest.raises(ProtocolError) as err:
            await asyncio.wait_for(link.request(WorkerClose(), timeout=0.5), 5)
        assert "did not answer worker.close" in err.value.message
        assert time.monotonic() - started < 3


async def test_a_create_answered_after_its_timeout_is_undone(tmp_path: Path) -> None:
    """The worker executed a create just before the deadline the request carried, and its
    reply came after the supervisor gave up: the link closes what was created, so nothing
    lives on the worker that the supervisor does not know."""
    async with fake_worker_link(tmp_path, read=True) as (link, worker):
        with pytest.raises(ProtocolError) as err:
            await link.request(TransportCreatePlain(transportId=77, comedia=True), timeout=0.3)
        assert err.value.code == "unavailable"
        request = wire.decode(await asyncio.wait_for(worker.recv(), 5))
        assert request["method"] == "transport.createPlain"
        assert isinstance(request["deadline"], float) and request["deadline"] <= time.monotonic()
        await worker.send(wire.encode(wire.reply_ok(request["id"], {"ip": "127.0.0.1", "port": 40000})))
        undo = wire.decode(await asyncio.wait_for(worker.recv(), 5))
        assert undo["method"] == "transport.close" and undo["transportId"] == 77
        await worker.send(wire.encode(wire.reply_ok(undo["id"], {})))

        # A create that failed, late, is left alone; so is a late reply to a non-create.
        piped = ProducerCreate(producerId=5, kind="video", transportId=None, streams=[StreamSpec(ssrc=1)])
        for method, command in (("producer.create", piped), ("producer.pause", ProducerPause(producerId=5))):
            with pytest.raises(ProtocolError):
                await link.request(command, timeout=0.2)
            late = wire.decode(await asyncio.wait_for(worker.recv(), 5))
            if method == "producer.create":
                await worker.send(wire.encode(wire.reply_error(late["id"], ProtocolError("duplicate", "x"))))
            else:
                await worker.send(wire.encode(wire.reply_ok(late["id"], {})))
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(worker.recv(), 0.5)


async def test_events_reach_the_pool_typed_and_malformed_ones_are_dropped(tmp_path: Path) -> None:
    """The link decodes each event into its contract type before the server sees it; an
    event with a wrong field, or one the contract does not know, goes no further."""
    received: list[tuple[int, Event]] = []
    on_event = lambda index, event: received.append((index, event))  # noqa: E731
    async with fake_worker_link(tmp_path, index=4, on_event=on_event, read=True) as (_, worker):
        for bad in (
            {"event": "consumer.nack", "consumerId": 3, "producerId": 2, "ssrc": 1, "seqs": "1"},
            {"event": "consumer.nack", "consumerID": 3, "producerId": 2, "ssrc": 1, "seqs": [1]},
            {"event": "transport.teleported", "transportId": 3},
        ):
            await worker.send(wire.encode(bad))
        good = ConsumerNack(consumerId=3, producerId=2, ssrc=1, seqs=[5, 6])
        await worker.send(wire.encode(good.to_wire()))
        deadline = time.monotonic() + 5
        while not received and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        # The bad ones were sent first on the same socket: read (and dropped) before it.
        assert received == [(4, good)]
