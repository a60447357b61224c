"""Four Chromium pages in one room: everyone receives everyone, across both workers."""

from __future__ import annotations

import pytest

from .harness import control, wait_until

pytestmark = pytest.mark.timeout(240)
TUREEN_WORKERS = 2
NAMES = ("alice", "bob", "carol", "dave")


def test_four_pages_each_receive_the_three_others_across_two_workers(open_page, stack, room, output_dir) -> None:
    pages = [open_page(name) for name in NAMES]
    for page in pages:
        page.join()
    for page in pages:
        assert {e["kind"] for e in page.wait_produced() if e["type"] == "producing"} == {"audio", "video"}

    def decoding(page):
        stats = page.stats()["consumers"]
        return {
            (c["peerName"], c["kind"]): (c.get("framesDecoded") or 0) if c["kind"] == "video" else (c.get("packetsReceived") or 0)
            for c in stats
        }

    for page in pages:
        others = [n for n in NAMES if n != page.name]
        want = {(n, k) for n in others for k in ("audio", "video")}
        figures = wait_until(
            lambda p=page: decoding(p),
            lambda d, want=want: set(d) == want and all(v > (30 if k == "video" else 50) for (_, k), v in d.items()),
            45, f"{page.name} to decode > 30 frames and receive > 50 audio packets from each of {others}",
        )
        assert set(figures) == want
    for page in pages:
        for other in NAMES:
            if other != page.name:
                page.wait_video_playing(other)

    pages[0].browser.screenshot(pages[0].page, output_dir / "demo-four-peers-alice.png")

    dump = control(stack, "room.dump", roomId=room)
    video_consumers = [c for p in dump["peers"] for c in p["consumers"] if c["kind"] == "video" and c["enabled"]]
    assert len(video_consumers) == 12
    workers = {t["worker"] for p in dump["peers"] for t in p["transports"]}
    assert workers == {0, 1}, f"the four peers' transports all landed on worker(s) {workers}"
