"""Two real Chromium pages join one room through mediasoup-client 2.4.12 and the demo app."""

from __future__ import annotations

from .harness import wait_until


def test_two_pages_join_see_each_other_and_leave(open_page) -> None:
    alice = open_page("alice")
    bob = open_page("bob")
    device = alice.js("window.tureenDemo.device")
    assert device["supported"] and device["handler"] == "Chrome70", device
    assert alice.join(audio=False, video=False) == {"peers": []}
    assert bob.join(audio=False, video=False) == {"peers": ["alice"]}
    wait_until(lambda: alice.events("newPeer"), bool, 10, "alice to get newPeer for bob")
    assert [e["peerName"] for e in alice.events("newPeer")] == ["bob"]
    assert sorted(alice.tiles()) == ["alice", "bob"]
    bob.leave()
    closed = wait_until(lambda: alice.events("peerClosed"), bool, 10, "alice to get peerClosed for bob")
    assert closed[0]["peerName"] == "bob"
    assert wait_until(alice.tiles, lambda t: t == ["alice"], 5, "bob's tile to go")
