"""enable/disable{Transport,Producer,Consumer}Stats through the control API of a real server,
with plain RTP standing in for media: validation (nothing changes on a bad message), the
plain-transport no-op, producer/consumer reports, pause, re-enable and leave.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator
from typing import Any

import pytest
from conftest import RoomDriver
from stats_shapes import check_consumer_stats, check_producer_stats
from support import opus_parameters, rtp_packet, udp_socket
from tureen.shared.errors import ProtocolError

pytestmark = pytest.mark.timeout(60)

_ids = itertools.count(20_000_001)
SSRC = 44_556_677


async def expect_error(coro: Any, code: str, text: str = "") -> None:
    with pytest.raises(ProtocolError) as info:
        await coro
    assert info.value.code == code, info.value.message
    assert text.lower() in info.value.message.lower(), info.value.message


async def drain(room: RoomDriver, peer: str, method: str) -> None:
    """Forget the queued `method` notifications of `peer` (reports already on their way)."""
    with contextlib.suppress(TimeoutError):
        while True:
            await room.client.next_notification(peer, method, timeout=0)


async def no_notification(room: RoomDriver, peer: str, method: str, timeout: float = 1.5) -> None:
    with pytest.raises(TimeoutError):
        await room.client.next_notification(peer, method, timeout=timeout)


class Session:
    """alice sends opus over a plain transport; bob receives it on a plain one."""

    def __init__(self, room: RoomDriver) -> None:
        self.room = room
        self.sock = udp_socket()
        self.bob_sock = udp_socket()
        self.send_id, self.recv_id, self.producer_id = next(_ids), next(_ids), next(_ids)
        self.consumer_id = 0
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        room = self.room
        await room.join("alice")
        await room.join("bob")
        answer = await room.req(
            "alice", "createTransport", id=self.send_id, direction="send", options={},
            plainRtpParameters={"ip": "127.0.0.1", "port": self.sock.getsockname()[1]},
        )
        self.server = (answer["plainRtpParameters"]["ip"], answer["plainRtpParameters"]["port"])
        await room.req(
            "bob", "createTransport", id=self.recv_id, direction="recv", options={},
            plainRtpParameters={"ip": "127.0.0.1", "port": self.bob_sock.getsockname()[1]},
        )
        await room.req("alice", "createProducer", id=self.producer_id, kind="audio",
                       transportId=self.send_id, rtpParameters=opus_parameters(SSRC), paused=False)
        consumer = await room.client.next_notification("bob", "newConsumer")
        self.consumer_id = consumer["id"]
        await room.req("bob", "enableConsumer", id=self.consumer_id, transportId=self.recv_id, paused=False)
        self._task = asyncio.get_running_loop().create_task(self._send())

    async def _send(self) -> None:
        for seq in itertools.count(1):
            self.sock.sendto(rtp_packet(seq & 0xFFFF, seq * 960, SSRC, 111), self.server)
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.sock.close()
        self.bob_sock.close()

    async def dump(self) -> dict[str, Any]:
        dump = await self.room.client.dump_room(self.room.id)
        return {p["name"]: p for p in dump["peers"]}


@pytest.fixture
async def session(room: RoomDriver) -> AsyncIterator[Session]:
    s = Session(room)
    await s.start()
    yield s
    await s.stop()


async def test_bad_stats_messages_are_refused_and_change_nothing(room: RoomDriver, session: Session) -> None:
    pid, cid = session.producer_id, session.consumer_id
    await expect_error(room.notify("alice", "enableProducerStats", id=pid, interval="1s"), "bad_request", "interval")
    await expect_error(room.notify("alice", "enableProducerStats", id=pid, interval=None), "bad_request", "interval")
    await expect_error(room.notify("alice", "enableProducerStats", id=12345678), "not_found", "Producer not found")
    await expect_error(room.notify("alice", "enableConsumerStats", id=12345678), "not_found", "Consumer not found")
    await expect_error(room.notify("alice", "enableTransportStats", id=12345678), "not_found", "Transport not found")
    await expect_error(room.notify("alice", "disableProducerStats", id="x"), "bad_request", "")
    # The wrong peer: bob names alice's producer and transport, alice names bob's consumer.
    await expect_error(room.notify("bob", "enableProducerStats", id=pid), "not_found", "Producer not found")
    await expect_error(room.notify("bob", "enableTransportStats", id=session.send_id), "not_found", "Transport")
    await expect_error(room.notify("alice", "enableConsumerStats", id=cid), "not_found", "Consumer not found")
    await expect_error(room.notify("carol", "enableProducerStats", id=pid), "not_found", "carol")
    peers = await session.dump()
    assert peers["alice"]["producers"][0]["statsInterval"] is None
    assert peers["bob"]["consumers"][0]["statsInterval"] is None
    assert all(t["statsInterval"] is None for p in peers.values() for t in p["transports"])
    for peer, method in (("alice", "producerStats"), ("bob", "producerStats"), ("alice", "consumerStats"),
                         ("bob", "consumerStats"), ("alice", "transportStats")):
        await no_notification(room, peer, method, timeout=0.3)


async def test_plain_transports_have_no_stats_as_in_v2(room: RoomDriver, session: Session) -> None:
    await room.notify("alice", "enableTransportStats", id=session.send_id, interval=1000)
    await no_notification(room, "alice", "transportStats")
    peers = await session.dump()
    assert peers["alice"]["transports"][0]["statsInterval"] is None
    await room.notify("alice", "disableTransportStats", id=session.send_id)


async def test_producer_and_consumer_stats_flow_pause_and_stop(room: RoomDriver, session: Session) -> None:
    pid, cid = session.producer_id, session.consumer_id
    await room.notify("alice", "enableProducerStats", id=pid, interval=1000)
    await room.notify("alice", "enableProducerStats", id=pid, interval=5000)  # no-op
    await room.notify("bob", "enableConsumerStats", id=cid)
    first = await room.client.next_notification("alice", "producerStats", id=pid)
    second = await room.client.next_notification("alice", "producerStats", id=pid, timeout=3)
    for note in (first, second):
        check_producer_stats(note, pid, session.send_id, "audio", streams=1)
    assert second["stats"][0]["packetCount"] > first["stats"][0]["packetCount"] >= 0
    assert second["stats"][0]["ssrc"] == SSRC and second["stats"][0]["mimeType"] == "audio/opus"
    assert second["stats"][0]["bitrate"] > 0
    c1 = await room.client.next_notification("bob", "consumerStats", id=cid)
    c2 = await room.client.next_notification("bob", "consumerStats", id=cid, timeout=3)
    for note in (c1, c2):
        check_consumer_stats(note, cid, "alice", session.recv_id, "audio")
    assert c2["stats"][-1]["packetCount"] > c1["stats"][-1]["packetCount"] >= 0
    peers = await session.dump()
    assert peers["alice"]["producers"][0]["statsInterval"] == 1000

    # A paused producer reports nothing, nor do its consumers (v2).
    await room.notify("alice", "pauseProducer", id=pid)
    await asyncio.sleep(0.2)
    await drain(room, "alice", "producerStats")
    await drain(room, "bob", "consumerStats")
    await no_notification(room, "alice", "producerStats")
    await no_notification(room, "bob", "consumerStats", timeout=0.5)
    await room.notify("alice", "resumeProducer", id=pid)
    await room.client.next_notification("alice", "producerStats", id=pid, timeout=3)

    await room.notify("alice", "disableProducerStats", id=pid)
    await room.notify("alice", "disableProducerStats", id=pid)  # twice: harmless
    await asyncio.sleep(0.2)
    await drain(room, "alice", "producerStats")
    await no_notification(room, "alice", "producerStats")
    # bob leaving stops his consumer's timer; alice's room stays quiet and healthy.
    await room.notify("bob", "leave")
    await drain(room, "bob", "consumerStats")
    await no_notification(room, "bob", "consumerStats")
    peers = await session.dump()
    assert "bob" not in peers
