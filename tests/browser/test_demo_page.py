"""The demo page as a user sees it: screenshots under test-output/ (look at them)."""

from __future__ import annotations

import pytest

from .harness import TEST_MEDIA, wait_until

pytestmark = pytest.mark.timeout(180)
UI_MEDIA = {"width": TEST_MEDIA["width"], "height": TEST_MEDIA["height"], "fps": TEST_MEDIA["frameRate"]}


def test_the_demo_page_loads_mediasoup_client_and_offers_to_join(open_page, output_dir) -> None:
    page = open_page("visitor")
    device = page.js("window.tureenDemo.device")
    assert device["supported"], device
    assert device["handler"] == "Chrome70" and device["flag"] == "chrome", device
    assert page.js("document.querySelector('#room').value") == page.room
    assert page.js("document.querySelector('#name').value") == "visitor"
    assert page.js("document.querySelector('#join-form').hidden") is False
    assert "handler Chrome70" in page.js("document.querySelector('#device').textContent")
    page.browser.screenshot(page.page, output_dir / "demo-page.png")


def test_two_pages_joined_with_the_join_button_show_each_others_video(open_page, output_dir) -> None:
    alice = open_page("alice", **UI_MEDIA)
    bob = open_page("bob", **UI_MEDIA)
    for page in (alice, bob):
        page.browser.click(page.page, "#join")
        page.browser.wait_for(page.page, "window.tureenDemo.state() && window.tureenDemo.state().joined", timeout=20)
        page.wait_produced()
    for me, other in ((alice, bob), (bob, alice)):
        shown = me.wait_video_playing(other.name)
        assert (shown["videoWidth"], shown["videoHeight"]) == (320, 240), shown
        assert other.name in shown["caption"] and not shown["noVideo"], shown
        # The tile's live figure (from getStats) names the codec, the size and a bitrate.
        figures = wait_until(lambda m=me, o=other: m.video_element(o.name)["figures"],
                             lambda text: "VP8 320×240" in text and "kb/s" in text and "audio" in text and "pkts" in text,
                             10, f"{me.name}'s figures for {other.name}")
        assert "pkts" in figures
        assert sorted(me.tiles()) == ["alice", "bob"]
        assert me.js("document.querySelector('#controls').hidden") is False
    for page in (alice, bob):
        page.browser.screenshot(page.page, output_dir / f"demo-two-peers-{page.name}.png")

    # The camera button pauses alice's video; bob's tile says so.
    alice.browser.click(alice.page, "#toggle-cam")
    wait_until(lambda: bob.video_element("alice"), lambda v: "camera off" in v["caption"] and v["noVideo"], 10,
               "bob's tile of alice to show 'camera off'")
    wait_until(lambda: bob.video_element("alice")["figures"], lambda text: "video paused" in text, 5,
               "bob's figures for alice to say 'video paused'")
    bob.browser.screenshot(bob.page, output_dir / "demo-camera-off-bob.png")
    alice.browser.click(alice.page, "#toggle-cam")
    wait_until(lambda: bob.video_element("alice"), lambda v: "camera off" not in v["caption"] and not v["noVideo"], 10,
               "bob's tile of alice to show video again")

    # Leave: bob's page drops alice's tile.
    alice.browser.click(alice.page, "#leave")
    wait_until(bob.tiles, lambda tiles: tiles == ["bob"], 10, "alice's tile to go from bob's page")
    assert alice.js("document.querySelector('#join-form').hidden") is False
