"""Issue 3's proof: WebRTC transports (ICE-lite, DTLS, SRTP) in real workers, with real
WebRTC peers (aiortc, driven as mediasoup-client v2 drives Chrome: tests/msclient.py).

Frames are asserted decoded by the receiving RTCPeerConnection, not just bytes received.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiortc.mediastreams import AudioStreamTrack, VideoStreamTrack
from msclient import MsPeer
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
        await client.create_room(MEDIA_CODECS, room_id="webrtc")
        yield client, "webrtc"
        await client.close_room("webrtc")


async def test_two_peers_see_and_hear_each_other(room) -> None:
    alice, bob = MsPeer(), MsPeer()
    try:
        await alice.join(room, "alice")
        await bob.join(room, "bob")
        await alice.produce(AudioStreamTrack())
        await alice.produce(VideoStreamTrack())
        await bob.produce(VideoStreamTrack())

        bob_video = await bob.consume(await bob.next_consumer(kind="video", peer_name="alice"))
        bob_audio = await bob.consume(await bob.next_consumer(kind="audio", peer_name="alice"))
        alice_video = await alice.consume(await alice.next_consumer(kind="video", peer_name="bob"))
        await asyncio.gather(
            bob_video.wait_frames(10, timeout=20),
            bob_audio.wait_frames(20, timeout=20),
            alice_video.wait_frames(10, timeout=20),
        )
        assert bob_video.last_frame.width == 640
    finally:
        await alice.close()
        await bob.close()
