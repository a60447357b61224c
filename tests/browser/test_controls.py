"""More of mediasoup-client's API against Tureen, from real pages: closing a producer, pausing a
consumer on the receiving side, ICE restart, and the server app pausing a peer's producer."""

from __future__ import annotations

import pytest

from .harness import control, wait_until
from .test_media import grows, join_all, still

pytestmark = pytest.mark.timeout(240)


def consumer_js(peer: str, kind: str) -> str:
    return (f"[...window.tureenDemo.session.consumers.values()]"
            f".find((c) => c.peer.name === {peer!r} && c.kind === {kind!r})")


def test_closing_a_producer_closes_its_consumer_on_the_other_page(open_page, stack, room) -> None:
    alice, bob = open_page("alice"), open_page("bob")
    join_all(alice, bob)
    grows(bob, "alice", "video", "framesDecoded", 10)
    alice.js("window.tureenDemo.session.producers.get('video').close()")
    closed = wait_until(lambda: bob.events("consumerClosed"), bool, 10, "bob's video consumer of alice to close")
    assert [(e["kind"], e["peerName"]) for e in closed] == [("video", "alice")]
    assert bob.consumer_stats("alice", "video") is None
    assert bob.video_element("alice")["noVideo"]
    grows(bob, "alice", "audio", "packetsReceived", 50)  # the audio consumer lives on
    dump = control(stack, "room.dump", roomId=room)
    bob_dump = next(p for p in dump["peers"] if p["name"] == "bob")
    assert [c["kind"] for c in bob_dump["consumers"]] == ["audio"]


def test_a_consumer_paused_by_its_page_stops_and_resumes(open_page) -> None:
    alice, bob = open_page("alice"), open_page("bob")
    join_all(alice, bob)
    grows(bob, "alice", "video", "framesDecoded", 10)
    assert bob.js(f"{consumer_js('alice', 'video')}.pause()") is True
    still(bob, "alice", "video", ("packetsReceived",))
    grows(alice, "bob", "video", "framesDecoded", 10)  # the other direction is untouched
    assert bob.js(f"{consumer_js('alice', 'video')}.resume()") is True
    grows(bob, "alice", "video", "framesDecoded", 30)


def test_media_keeps_flowing_after_an_ice_restart(open_page, stack) -> None:
    alice, bob = open_page("alice"), open_page("bob")
    join_all(alice, bob)
    grows(bob, "alice", "video", "framesDecoded", 10)
    grows(alice, "bob", "video", "framesDecoded", 10)
    log = stack.server.log_path
    restarted = log.read_text(errors="replace").count("ICE restarted")
    for page in (alice, bob):
        page.js("window.tureenDemo.session.room.restartIce()")
    for page in (alice, bob):
        restarts = wait_until(
            lambda p=page: [e for e in p.state()["signaling"] if e["method"] == "restartTransport"],
            lambda r: len(r) == 2 and all(e.get("ok") is not None for e in r), 10, f"{page.name}'s two restartTransport answers")
        assert all(e.get("ok") for e in restarts), restarts
    grows(bob, "alice", "video", "framesDecoded", 40)
    grows(alice, "bob", "video", "framesDecoded", 40)
    grows(bob, "alice", "audio", "packetsReceived", 100)
    stack.server.log()  # flushes the log file
    assert log.read_text(errors="replace").count("ICE restarted") == restarted + 4  # 2 transports per page


def test_the_server_app_pausing_a_producer_tells_both_pages(open_page, stack, room) -> None:
    alice, bob = open_page("alice"), open_page("bob")
    join_all(alice, bob)
    grows(bob, "alice", "video", "framesDecoded", 10)
    producer_id = next(p["id"] for p in alice.state()["producers"] if p["kind"] == "video")
    control(stack, "producer.pause", roomId=room, peerName="alice", producerId=producer_id)
    wait_until(lambda: alice.js("window.tureenDemo.session.producers.get('video').remotelyPaused"), bool, 10,
               "alice's video producer to be paused by the server")
    wait_until(lambda: bob.events("consumerPaused"), bool, 10, "bob's consumer of alice to be paused")
    still(bob, "alice", "video", ("framesDecoded", "packetsReceived"))
    control(stack, "producer.resume", roomId=room, peerName="alice", producerId=producer_id)
    wait_until(lambda: bob.events("consumerResumed"), bool, 10, "bob's consumer of alice to be resumed")
    grows(bob, "alice", "video", "framesDecoded", 30)




ICE_CANDIDATES_JS = """(async () => {
    const out = { remote: [], pairs: [] };
    for (const pc of window.__tureenTest.peerConnections()) {
        const report = await pc.getStats();
        report.forEach((s) => {
            if (s.type === 'remote-candidate')
                out.remote.push({ protocol: s.protocol, address: s.address, tcpType: s.tcpType });
            if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded')
                out.pairs.push({ remote: report.get(s.remoteCandidateId).protocol });
        });
    }
    return out;
})()"""


def test_media_flows_over_ice_tcp_when_the_client_asks_for_tcp_only(open_page) -> None:
    alice, bob = open_page("alice"), open_page("bob")
    for page in (alice, bob):
        page.join(transportOptions={"udp": False, "tcp": True})
    for page in (alice, bob):
        assert {e["kind"] for e in page.wait_produced() if e["type"] == "producing"} == {"audio", "video"}
    grows(bob, "alice", "video", "framesDecoded", 30)
    grows(alice, "bob", "video", "framesDecoded", 30)
    grows(bob, "alice", "audio", "packetsReceived", 100)
    for page in (alice, bob):
        ice = page.js(ICE_CANDIDATES_JS)
        assert ice["remote"] and all(c["protocol"] == "tcp" and c["tcpType"] == "passive" for c in ice["remote"]), ice
        assert len(ice["pairs"]) >= 2 and all(p["remote"] == "tcp" for p in ice["pairs"]), ice


def test_the_server_app_closing_a_peer_closes_its_room_in_the_page(open_page, stack, room) -> None:
    alice, bob = open_page("alice"), open_page("bob")
    join_all(alice, bob)
    grows(bob, "alice", "video", "framesDecoded", 10)
    control(stack, "peer.close", roomId=room, peerName="alice", appData={"reason": "kicked"})
    closed = wait_until(lambda: alice.events("roomClosed"), bool, 10, "alice's room to close")
    assert closed[0]["originator"] == "remote"
    assert alice.state()["joined"] is False
    assert "Tureen closed this peer" in alice.js("document.querySelector('#status').textContent")
    gone = wait_until(lambda: bob.events("peerClosed"), bool, 10, "bob to get peerClosed for alice")
    assert [e["peerName"] for e in gone] == ["alice"]
    wait_until(bob.tiles, lambda tiles: tiles == ["bob"], 10, "alice's tile to go from bob's page")
