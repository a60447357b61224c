"""A worker dies under a live page: the page is told, the other page drops its media, and the
page recovers the mediasoup-client way (its next producer re-creates the send transport)."""

from __future__ import annotations

import os
import signal

import pytest

from .harness import control, wait_until
from .test_media import grows, join_all

pytestmark = pytest.mark.timeout(180)

RESEND_VIDEO_JS = """(async () => {
    const session = window.tureenDemo.session;
    session.producers.get('video').close();
    const producer = session.room.createProducer(session.stream.getVideoTracks()[0], {}, { source: 'video' });
    session.producers.set('video', producer);
    await producer.send(session.sendTransport);
    return producer.id;
})()"""


def test_a_page_whose_worker_dies_is_told_and_sends_again_through_the_restarted_worker(open_page, stack, room) -> None:
    alice, bob = open_page("alice"), open_page("bob")
    join_all(alice, bob)
    grows(bob, "alice", "video", "framesDecoded", 10)
    dump = control(stack, "room.dump", roomId=room)
    placement = {p["name"]: {t["worker"] for t in p["transports"]} for p in dump["peers"]}
    (worker,) = placement["alice"]
    if placement["bob"] == {worker}:
        pytest.fail(f"alice and bob share worker {worker}: placement spreads peers (room.dump: {placement})")
    pid = next(w["pid"] for w in control(stack, "server.info")["workers"] if w["index"] == worker)

    os.kill(pid, signal.SIGKILL)
    alice_transports = {t["id"] for t in alice.state()["transports"]}
    told = wait_until(
        lambda: {e["id"] for e in alice.events("notification") if e["method"] == "transportClosed"},
        lambda ids: ids == alice_transports, 15, "alice to get transportClosed for both her transports")
    assert told == alice_transports
    closed = wait_until(lambda: bob.events("consumerClosed"), lambda c: len(c) == 2, 15,
                        "bob's consumers of alice to close")
    assert sorted((e["kind"], e["peerName"]) for e in closed) == [("audio", "alice"), ("video", "alice")]
    wait_until(lambda: control(stack, "server.info")["workers"],
               lambda ws: all(w["alive"] for w in ws) and pid not in [w["pid"] for w in ws], 20,
               f"worker {worker} to be restarted")

    alice.js(RESEND_VIDEO_JS, timeout=30)
    requests = [e["method"] for e in alice.state()["signaling"]][-2:]
    assert requests == ["createTransport", "createProducer"], requests
    video = grows(bob, "alice", "video", "framesDecoded", 30)
    assert video["frameWidth"] == 320, video
