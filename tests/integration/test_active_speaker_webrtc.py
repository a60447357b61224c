"""room.audioLevels and room.activeSpeaker with real WebRTC senders (issue 11, item 6):
two aiortc peers, driven as mediasoup-client drives a browser, send opus of a sine tone at
different loudness; aiortc writes each packet's RFC 6465 level into the ssrc-audio-level
extension (RFC 6464) as browsers do. The louder one must be the active speaker, and after
the two swap loudness the other must take over only once it was the loudest in four
consecutive reports (v2's hysteresis).
"""

from __future__ import annotations

import asyncio
import fractions
import math
from pathlib import Path
from typing import Any

import pytest
from aiortc.mediastreams import AudioStreamTrack
from av import AudioFrame
from msclient import MsPeer
from support import MEDIA_CODECS, running_server
from tureen.shared.client import TureenClient

pytestmark = pytest.mark.timeout(120)

RATE = 48000
SAMPLES = 960  # 20 ms
LOUD, QUIET = 16000, 300  # peak amplitudes: about -9 and -44 dBov


def expected_dbov(amplitude: int) -> float:
    """RFC 6465 level of a full-scale-relative sine: its RMS is peak / sqrt(2)."""
    return 20 * math.log10(amplitude / math.sqrt(2) / 32767)


class SineTrack(AudioStreamTrack):
    """A 440 Hz tone whose loudness a test may change while it plays."""

    def __init__(self, amplitude: int) -> None:
        super().__init__()
        self.amplitude = amplitude
        self._n = 0

    async def recv(self) -> AudioFrame:
        base = await super().recv()  # keeps aiortc's real-time pacing
        frame = AudioFrame(format="s16", layout="mono", samples=SAMPLES)
        start = self._n
        self._n += SAMPLES
        samples = b"".join(
            int(self.amplitude * math.sin(2 * math.pi * 440 * (start + i) / RATE)).to_bytes(2, "little", signed=True)
            for i in range(SAMPLES)
        )
        frame.planes[0].update(samples)
        frame.pts = start
        frame.sample_rate = RATE
        frame.time_base = fractions.Fraction(1, RATE)
        del base
        return frame


def room_events(client: TureenClient, room_id: str):
    names = ("room.audioLevels", "room.activeSpeaker")
    return lambda e: e.get("event") in names and e.get("roomId") == room_id


async def test_the_louder_webrtc_sender_is_the_speaker_and_a_swap_needs_four_reports(tmp_path: Path) -> None:
    with running_server(tmp_path, workers=2) as server:
        async with TureenClient(server.endpoint) as client:
            await client.create_room(MEDIA_CODECS, room_id="talk")
            room = (client, "talk")
            alice, bob = MsPeer(), MsPeer()
            alice_track, bob_track = SineTrack(LOUD), SineTrack(QUIET)
            try:
                await alice.join(room, "alice")
                await bob.join(room, "bob")
                producers = {"alice": await alice.produce(alice_track), "bob": await bob.produce(bob_track)}
                # Both streams flow before the levels start: otherwise a first report with bob
                # alone would make him the speaker at once (no speaker yet), as v2 would.
                for _ in range(100):
                    counts = [
                        (await client.request("producer.getStats", roomId="talk", peerName=name,
                                              producerId=p.id) or [{}])[0].get("packetCount", 0)
                        for name, p in producers.items()
                    ]
                    if all(counts):
                        break
                    await asyncio.sleep(0.1)
                await client.request("room.setAudioLevels", roomId="talk", interval=250)
                seen: list[dict[str, Any]] = []
                while True:
                    event = await client.next_event(room_events(client, "talk"), timeout=20)
                    seen.append(event)
                    if event["event"] == "room.activeSpeaker":
                        break
                assert event["peerName"] == "alice", seen
                # Both are reported once both streams run, at the level of their tone.
                while True:
                    event = await client.next_event(room_events(client, "talk"), timeout=20)
                    if event["event"] == "room.audioLevels" and len(event["levels"]) == 2:
                        break
                levels = {x["peerName"]: x["audioLevel"] for x in event["levels"]}
                assert [x["peerName"] for x in event["levels"]] == ["alice", "bob"]
                assert abs(levels["alice"] - expected_dbov(LOUD)) <= 2, levels
                assert abs(levels["bob"] - expected_dbov(QUIET)) <= 2, levels
                # Swap: bob speaks up, alice goes quiet.
                alice_track.amplitude, bob_track.amplitude = QUIET, LOUD
                reports: list[list[dict[str, Any]]] = []
                while True:
                    event = await client.next_event(room_events(client, "talk"), timeout=20)
                    if event["event"] == "room.activeSpeaker":
                        break
                    reports.append(event["levels"])
                assert event["peerName"] == "bob" and event["producerId"] is not None
                loudest = [r[0]["peerName"] if r else None for r in reports]
                assert loudest[-4:] == ["bob"] * 4, loudest
                assert len(loudest) < 5 or loudest[-5] != "bob", loudest  # not later than the fourth
                print(
                    f"\nlevels alice {levels['alice']} bob {levels['bob']} dBov (tones: "
                    f"{expected_dbov(LOUD):.1f}, {expected_dbov(QUIET):.1f}); after the swap, loudest per "
                    f"report until bob took over: {loudest}"
                )
            finally:
                await alice.close()
                await bob.close()
