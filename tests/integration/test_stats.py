"""enable/disable{Transport,Producer,Consumer}Stats with real WebRTC peers (aiortc driven as
mediasoup-client v2 drives Chrome) through a real `tureen serve`: the periodic notifications
come with the shapes of docs/protocol/messages.md, their counters grow, and disabling stops them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiortc.mediastreams import AudioStreamTrack, VideoStreamTrack
from msclient import MsPeer
from stats_shapes import check_consumer_stats, check_producer_stats, check_transport_stats
from support import MEDIA_CODECS, running_server
from tureen.shared.client import TureenClient

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(params=[1, 2], ids=["one-worker", "two-workers"])
def server(request: pytest.FixtureRequest, tmp_path: Path):
    with running_server(tmp_path, workers=request.param) as srv:
        yield srv


@pytest.fixture
async def room(server) -> AsyncIterator[tuple[TureenClient, str]]:
    async with TureenClient(server.endpoint) as client:
        await client.create_room(MEDIA_CODECS, room_id="stats")
        yield client, "stats"
        await client.close_room("stats")


def _notes(peer: MsPeer, method: str, obj_id: int) -> list[dict[str, Any]]:
    return [n for n in peer.notifications if n.get("method") == method and n.get("id") == obj_id]


async def _wait_count(peer: MsPeer, method: str, obj_id: int, count: int, timeout: float = 15) -> list[dict[str, Any]]:
    return await peer.wait_for(
        lambda: (found := _notes(peer, method, obj_id)) and len(found) >= count and found,
        f"{count} {method} for {obj_id}",
        timeout,
    )


async def test_stats_of_all_three_kinds_flow_with_documented_shapes_then_stop(room) -> None:
    alice, bob = MsPeer(raise_notify_errors=True), MsPeer(raise_notify_errors=True)
    try:
        await alice.join(room, "alice")
        await bob.join(room, "bob")
        await alice.produce(AudioStreamTrack())
        video = await alice.produce(VideoStreamTrack())
        bob_video = await bob.consume(await bob.next_consumer(kind="video", peer_name="alice"))
        await bob_video.wait_frames(5, timeout=20)

        await alice.notify("enableTransportStats", id=alice.send_transport_id, interval=1000)
        await alice.notify("enableProducerStats", id=video.id, interval=500)  # raised to 1000
        await bob.notify("enableTransportStats", id=bob.recv_transport_id)  # default 1000
        await bob.notify("enableConsumerStats", id=bob_video.id, interval=1000)
        # Re-enabling is a no-op: no second timer, no extra reports.
        await bob.notify("enableConsumerStats", id=bob_video.id, interval=1000)

        send_t = await _wait_count(alice, "transportStats", alice.send_transport_id, 3)
        prod = await _wait_count(alice, "producerStats", video.id, 3)
        recv_t = await _wait_count(bob, "transportStats", bob.recv_transport_id, 3)
        cons = await _wait_count(bob, "consumerStats", bob_video.id, 3)

        for note in send_t:
            check_transport_stats(note, alice.send_transport_id)
        for note in recv_t:
            check_transport_stats(note, bob.recv_transport_id)
        for note in prod:
            check_producer_stats(note, video.id, alice.send_transport_id, "video", streams=1)
        for note in cons:
            check_consumer_stats(note, bob_video.id, "alice", bob.recv_transport_id, "video")

        # Media flows: a selected tuple, connected states, counters and timestamps growing.
        for notes, key in ((send_t, "bytesReceived"), (recv_t, "bytesSent")):
            first, last = notes[0]["stats"][0], notes[-1]["stats"][0]
            assert last["iceConnectionState"] in ("connected", "completed")
            assert last["dtlsState"] == "connected"
            assert last["iceSelectedTuple"]["protocol"] == "udp"
            assert last[key] > first[key] > 0
            assert last["timestamp"] > first["timestamp"]
        # Alice's send transport REMBs her video.
        assert send_t[-1]["stats"][0]["localAvailableSendBw"]["ssrcs"]

        p_first, p_last = prod[0]["stats"][0], prod[-1]["stats"][0]
        assert p_last["packetCount"] > p_first["packetCount"] > 0
        assert p_last["byteCount"] > p_first["byteCount"]
        assert p_last["bitrate"] > 0 and p_last["mimeType"] == "video/VP8"
        assert p_last["ssrc"] == video.rtp_parameters["encodings"][0]["ssrc"]
        assert p_last["id"] == p_first["id"]  # stable per stream

        c_last = cons[-1]["stats"]
        assert len(c_last) == 2, "the consumer is fed: inbound + outbound entries"
        inbound, outbound = c_last
        assert inbound["id"] == p_last["id"]  # the producer's stream, same entry id
        assert outbound["packetCount"] > cons[0]["stats"][-1]["packetCount"] > 0
        assert outbound["bitrate"] > 0
        assert outbound["ssrc"] == bob_video.rtp_parameters["encodings"][0]["ssrc"]
        # One timer despite the second enable: about one report per second, not two.
        span = (cons[-1]["stats"][-1]["timestamp"] - cons[0]["stats"][-1]["timestamp"]) / 1000
        assert len(_notes(bob, "consumerStats", bob_video.id)) <= span + 2.5

        await alice.notify("disableTransportStats", id=alice.send_transport_id)
        await alice.notify("disableProducerStats", id=video.id)
        await bob.notify("disableTransportStats", id=bob.recv_transport_id)
        await bob.notify("disableConsumerStats", id=bob_video.id)
        await asyncio.sleep(0.3)  # a report already in flight may still land
        counts = [
            len(_notes(alice, "transportStats", alice.send_transport_id)),
            len(_notes(alice, "producerStats", video.id)),
            len(_notes(bob, "transportStats", bob.recv_transport_id)),
            len(_notes(bob, "consumerStats", bob_video.id)),
        ]
        await asyncio.sleep(2.5)
        assert counts == [
            len(_notes(alice, "transportStats", alice.send_transport_id)),
            len(_notes(alice, "producerStats", video.id)),
            len(_notes(bob, "transportStats", bob.recv_transport_id)),
            len(_notes(bob, "consumerStats", bob_video.id)),
        ]
        assert not alice.notify_errors and not bob.notify_errors
    finally:
        await alice.close()
        await bob.close()


async def test_closing_the_producer_or_pausing_stops_its_stats(room) -> None:
    alice, bob = MsPeer(raise_notify_errors=True), MsPeer(raise_notify_errors=True)
    try:
        await alice.join(room, "alice")
        await bob.join(room, "bob")
        video = await alice.produce(VideoStreamTrack())
        bob_video = await bob.consume(await bob.next_consumer(kind="video", peer_name="alice"))
        await bob_video.wait_frames(3, timeout=20)
        await alice.notify("enableProducerStats", id=video.id)
        await bob.notify("enableConsumerStats", id=bob_video.id)
        await _wait_count(alice, "producerStats", video.id, 1)
        await _wait_count(bob, "consumerStats", bob_video.id, 1)

        # Paused by the client: no consumerStats (v2), back after resume.
        await bob.pause_consumer(bob_video)
        await asyncio.sleep(0.3)
        paused_at = len(_notes(bob, "consumerStats", bob_video.id))
        await asyncio.sleep(1.5)
        assert len(_notes(bob, "consumerStats", bob_video.id)) == paused_at
        await bob.resume_consumer(bob_video)
        await _wait_count(bob, "consumerStats", bob_video.id, paused_at + 1)

        await alice.close_producer(video)
        await bob.wait_notification("consumerClosed", id=bob_video.id)
        await asyncio.sleep(0.3)
        counts = (len(_notes(alice, "producerStats", video.id)), len(_notes(bob, "consumerStats", bob_video.id)))
        await asyncio.sleep(1.5)
        assert counts == (len(_notes(alice, "producerStats", video.id)), len(_notes(bob, "consumerStats", bob_video.id)))
    finally:
        await alice.close()
        await bob.close()
