"""Media through Tureen between real Chromium pages running mediasoup-client 2.4.12.

Every page is the demo page, driven through `window.tureenDemo`; every figure asserted on is the
receiving page's own getStats() (RTCRtpReceiver of the consumer's track) or its <video> element.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from .harness import DemoPage, control, wait_until

pytestmark = pytest.mark.timeout(240)


def grows(page: DemoPage, peer: str, kind: str, field: str, by: int, timeout: float = 20.0) -> dict[str, Any]:
    """Wait until `page`'s consumer of `peer`'s `kind` has `field` grown by `by` from now."""
    start = (page.consumer_stats(peer, kind) or {}).get(field) or 0
    return wait_until(
        lambda: page.consumer_stats(peer, kind) or {},
        lambda s: (s.get(field) or 0) >= start + by,
        timeout,
        f"{page.name}'s {kind} consumer of {peer}: {field} to grow by {by} from {start}",
    )


def still(page: DemoPage, peer: str, kind: str, fields: tuple[str, ...], settle: float = 1.5, window: float = 2.5) -> None:
    """Assert that after `settle` s the consumer's `fields` do not move for `window` s."""
    time.sleep(settle)
    before = page.consumer_stats(peer, kind) or {}
    time.sleep(window)
    after = page.consumer_stats(peer, kind) or {}
    for field in fields:
        assert after.get(field) == before.get(field), (
            f"{page.name}'s {kind} consumer of {peer}: {field} moved from {before.get(field)} "
            f"to {after.get(field)} in {window} s although the producer is paused"
        )


def join_all(*pages: DemoPage) -> None:
    for page in pages:
        page.join()
    for page in pages:
        outcomes = page.wait_produced()
        failed = [e for e in outcomes if e["type"] == "produceFailed"]
        assert not failed, f"{page.name} could not produce: {failed}"


def test_two_pages_see_and_hear_each_other(open_page) -> None:
    alice, bob = open_page("alice"), open_page("bob")
    join_all(alice, bob)
    for me, other in ((alice, bob), (bob, alice)):
        video = grows(me, other.name, "video", "framesDecoded", 31)
        assert video["frameWidth"] == 320 and video["frameHeight"] == 240, video
        assert video["codec"] == "video/VP8", video
        audio = grows(me, other.name, "audio", "packetsReceived", 100)
        assert audio["codec"] == "audio/opus", audio
        played = grows(me, other.name, "audio", "totalSamplesReceived", 48000)
        assert played["totalAudioEnergy"] > 0, f"{me.name} hears only silence from {other.name}: {played}"
        shown = me.wait_video_playing(other.name)
        assert (shown["videoWidth"], shown["videoHeight"]) == (320, 240), shown
    transports = {t["direction"]: t["state"] for t in alice.state()["transports"]}
    assert transports == {"send": "connected", "recv": "connected"}, transports


def test_pausing_a_producer_stops_its_media_on_the_other_page_and_resuming_restarts_it(open_page) -> None:
    alice, bob = open_page("alice"), open_page("bob")
    join_all(alice, bob)
    grows(bob, "alice", "video", "framesDecoded", 10)
    grows(bob, "alice", "audio", "packetsReceived", 50)

    alice.set_paused("video", True)
    wait_until(lambda: bob.events("consumerPaused"), bool, 10, "bob's video consumer of alice to be paused")
    assert [(e["kind"], e["peerName"], e["originator"]) for e in bob.events("consumerPaused")] == [("video", "alice", "remote")]
    assert "camera off" in bob.video_element("alice")["caption"]
    still(bob, "alice", "video", ("framesDecoded", "packetsReceived"))
    grows(bob, "alice", "audio", "packetsReceived", 50)  # audio is not paused

    alice.set_paused("video", False)
    wait_until(lambda: bob.events("consumerResumed"), bool, 10, "bob's video consumer of alice to be resumed")
    grows(bob, "alice", "video", "framesDecoded", 30)
    bob.wait_video_playing("alice")

    alice.set_paused("audio", True)
    still(bob, "alice", "audio", ("packetsReceived",))
    alice.set_paused("audio", False)
    grows(bob, "alice", "audio", "packetsReceived", 50)


def test_a_page_that_leaves_disappears_from_the_others(open_page, stack, room) -> None:
    alice, bob, carol = open_page("alice"), open_page("bob"), open_page("carol")
    join_all(alice, bob, carol)
    for page in (bob, carol):
        grows(page, "alice", "video", "framesDecoded", 10)
        assert len([c for c in page.stats()["consumers"] if c["peerName"] == "alice"]) == 2

    alice.leave()  # the Leave button: room.leave() and the socket closes
    for page in (bob, carol):
        closed = wait_until(lambda p=page: p.events("peerClosed"), bool, 10, f"{page.name} to get peerClosed")
        assert [e["peerName"] for e in closed] == ["alice"]
        wait_until(page.tiles, lambda t: "alice" not in t and len(t) == 2,
                   10, f"alice's tile to go from {page.name}")
        assert [c for c in page.stats()["consumers"] if c["peerName"] == "alice"] == []
        assert "alice" not in [p["name"] for p in page.state()["peers"]]
    dump = control(stack, "room.dump", roomId=room)
    assert sorted(p["name"] for p in dump["peers"]) == ["bob", "carol"]
    for peer in dump["peers"]:
        assert [c for c in peer["consumers"] if c["producerPeerName"] == "alice"] == []

    carol.close()  # the tab goes away without a Leave: the app sends leave when the socket closes
    closed = wait_until(lambda: [e for e in bob.events("peerClosed") if e["peerName"] == "carol"], bool, 10,
                        "bob to get peerClosed for carol")
    assert closed
    wait_until(bob.tiles, lambda t: t == ["bob"], 10, "carol's tile to go from bob")
    # bob still receives nothing and still sends: his own producers are untouched
    assert {p["kind"] for p in bob.state()["producers"]} == {"audio", "video"}
