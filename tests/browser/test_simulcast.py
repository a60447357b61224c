"""A simulcast producer (mediasoup-client's legacy SSRC simulcast) from Chromium through Tureen.

What Chromium 156 really sends for `createProducer(track, {simulcast: true})` with 2.4.12: the
three SSRCs are signalled (a=ssrc-group:SIM, three encodings with profiles low/medium/high);
media starts on the first one, the second follows once the bandwidth estimate allows, the third
stays silent at 640x480 (see docs/browser.md). These tests pin that down and what a consumer
gets from it.
"""

from __future__ import annotations

import pytest

from .harness import DemoPage, wait_until
from .test_media import grows

pytestmark = pytest.mark.timeout(180)
SIMULCAST = {"width": 640, "height": 480, "frameRate": 15, "simulcast": True}


def simulcast_pair(open_page) -> tuple[DemoPage, DemoPage]:
    alice, bob = open_page("alice"), open_page("bob")
    alice.join(**SIMULCAST)
    bob.join(video=False)
    assert {e["kind"] for e in alice.wait_produced() if e["type"] == "producing"} == {"audio", "video"}
    wait_until(lambda: bob.consumer_stats("alice", "video"), bool, 15, "bob's video consumer of alice")
    return alice, bob


def sent_video_ssrcs(page: DemoPage) -> dict[int, int]:
    return {o["ssrc"]: o["packetsSent"] for o in page.rtp()["outbound"] if o["kind"] == "video"}


def test_chromium_signals_three_simulcast_ssrcs_and_a_consumer_preferring_low_gets_video(open_page) -> None:
    alice, bob = simulcast_pair(open_page)
    sent = wait_until(lambda: sent_video_ssrcs(alice), lambda s: len(s) == 3 and max(s.values()) > 50, 15,
                      "alice to send simulcast video")
    first = min(sent)
    assert sorted(sent) == [first, first + 1, first + 2], sent  # consecutive, as the library computes them
    assert sent[first] > 50, f"the first (low) SSRC carries the video: {sent}"
    bob.js("[...window.tureenDemo.session.consumers.values()].find((c) => c.kind === 'video').setPreferredProfile('low')")
    video = grows(bob, "alice", "video", "framesDecoded", 30)
    assert video["frameWidth"] > 0, video


def test_a_consumer_with_the_default_profile_gets_the_simulcast_video(open_page) -> None:
    """Tureen follows the best active stream: the silent 'medium'/'high' SSRCs are skipped."""
    alice, bob = simulcast_pair(open_page)
    video = grows(bob, "alice", "video", "framesDecoded", 30, timeout=15)
    assert video["frameWidth"] > 0, video


VIDEO_CONSUMER = "[...window.tureenDemo.session.consumers.values()].find((c) => c.kind === 'video')"


def test_the_effective_profile_follows_chromium_layers_and_the_preferred_profile(open_page) -> None:
    """Chromium starts its second layer once its bandwidth estimate allows (REMB and receiver
    reports from Tureen); a 'default' consumer climbs to it at a key frame, and back down to
    'low' when the receiving page prefers it, decoding all along."""
    alice, bob = simulcast_pair(open_page)
    wait_until(
        lambda: sent_video_ssrcs(alice),
        lambda s: sum(1 for v in s.values() if v > 100) >= 2,
        40,
        "alice to send two simulcast layers",
    )
    wait_until(
        lambda: bob.js(f"{VIDEO_CONSUMER}.effectiveProfile"),
        lambda p: p in ("medium", "high"),
        20,
        "bob's consumer to climb above 'low'",
    )
    grows(bob, "alice", "video", "framesDecoded", 20)
    bob.js(f"{VIDEO_CONSUMER}.setPreferredProfile('low')")
    wait_until(
        lambda: bob.js(f"{VIDEO_CONSUMER}.effectiveProfile"), lambda p: p == "low", 20, "bob's consumer to go to 'low'"
    )
    low = grows(bob, "alice", "video", "framesDecoded", 20)
    assert low["frameWidth"] > 0, low
