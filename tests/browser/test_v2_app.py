"""A mediasoup v2 application server running unchanged on Tureen's Node package.

The app (clients/node/test/app/server.js) is written as mediasoup-demo v2's server is, against
`require('mediasoup')`, which resolves to clients/node; its pages are the demo page
(mediasoup-client 2.4.12). What the app sees through the v2 API comes from its /test/state;
what the pages get, from their own getStats().
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from .harness import ROOT, Stack, wait_until
from .test_media import grows, join_all, still

pytestmark = pytest.mark.timeout(240)

NODE_PACKAGE = ROOT / "clients" / "node"
APP = NODE_PACKAGE / "test" / "app" / "server.js"


class V2AppStack(Stack):
    """`tureen serve` plus the Node v2 app in place of the demo app."""

    def start(self) -> V2AppStack:
        if shutil.which("node") is None or not (NODE_PACKAGE / "node_modules" / "ws").exists():
            pytest.fail("the v2 app needs node and clients/node's packages: cd clients/node && npm ci", pytrace=False)
        self.server.wait_ready()
        self.app = subprocess.Popen(
            ["node", str(APP), "--port", str(self.app_port), "--control", self.server.endpoint],
            stdout=self._app_log, stderr=subprocess.STDOUT, cwd=NODE_PACKAGE,
        )
        deadline = time.monotonic() + 30.0
        while True:
            if self.app.poll() is not None:
                raise RuntimeError(f"v2 app exited with {self.app.returncode}:\n{self.app_log()}")
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=2.0) as reply:
                    if json.loads(reply.read()).get("ok"):
                        return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"v2 app not ready within 30 s:\n{self.app_log()}")
            time.sleep(0.2)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    stack = V2AppStack(tmp_path_factory.mktemp("v2app"), workers=2)
    try:
        yield stack.start()
    finally:
        stack.stop()


def app_state(stack: Stack, room: str) -> dict[str, Any] | None:
    with urllib.request.urlopen(f"{stack.url}/test/state?room={room}", timeout=5.0) as reply:
        return json.loads(reply.read())


def app_action(stack: Stack, room: str, **action: Any) -> Any:
    body = json.dumps({"room": room, **action}).encode()
    request = urllib.request.Request(f"{stack.url}/test/action", data=body, method="POST")
    with urllib.request.urlopen(request, timeout=5.0) as reply:
        return json.loads(reply.read()).get("result")


def events(stack: Stack, room: str, type_: str, **match: Any) -> list[dict[str, Any]]:
    state = app_state(stack, room) or {"events": []}
    return [e for e in state["events"] if e["type"] == type_ and all(e.get(k) == v for k, v in match.items())]


def peer_state(stack: Stack, room: str, name: str) -> dict[str, Any]:
    state = app_state(stack, room) or {"peers": []}
    return next((p for p in state["peers"] if p["name"] == name), {})


def test_join_media_both_ways_profile_pause_and_leave(open_page, stack, room) -> None:
    alice, bob = open_page("alice"), open_page("bob")
    join_all(alice, bob)
    # Media both ways, through the v2 app's relaying.
    for me, other in ((alice, bob), (bob, alice)):
        grows(me, other.name, "video", "framesDecoded", 20)
        grows(me, other.name, "audio", "packetsReceived", 50)

    # What the app sees through the v2 API: its peers, each consumer's source the Producer object.
    state = app_state(stack, room)
    assert state is not None
    assert sorted(p["name"] for p in state["peers"]) == ["alice", "bob"]
    for peer in state["peers"]:
        assert sorted(p["kind"] for p in peer["producers"]) == ["audio", "video"], peer
        assert sorted((c["from"], c["kind"]) for c in peer["consumers"]) == sorted(
            (other, kind) for other in ("alice", "bob") if other != peer["name"] for kind in ("audio", "video")
        ), peer
        assert all(c["sourceIsProducer"] and c["enabled"] for c in peer["consumers"]), peer
    assert all(e["sourceIsProducer"] for e in events(stack, room, "newconsumer"))

    # Profile change. The app prefers 'high' for the active speaker's video and 'low' for the
    # rest (mediasoup-demo v2); with both microphones muted nobody speaks (and the detector
    # leaves the profiles alone). Then the app asks for 'medium' on bob's consumer of alice.
    alice.set_paused("audio", True)
    bob.set_paused("audio", True)
    wait_until(lambda: (app_state(stack, room) or {}).get("activeSpeaker", "?"), lambda v: v is None, 15, "nobody speaking")
    told = len([e for e in bob.events("notification") if e["method"] == "consumerPreferredProfileSet"])
    app_action(stack, room, peer="bob", op="setPreferredProfile", kind="video", **{"from": "alice"}, profile="medium")
    wait_until(
        lambda: [c["preferredProfile"] for c in peer_state(stack, room, "bob")["consumers"] if c["kind"] == "video"],
        lambda p: p == ["medium"],
        10,
        "bob's video consumer to prefer 'medium'",
    )
    wait_until(
        lambda: [e for e in bob.events("notification") if e["method"] == "consumerPreferredProfileSet"],
        lambda e: len(e) > told,
        10,
        "bob's page to be told the profile change",
    )
    grows(bob, "alice", "video", "framesDecoded", 20)
    alice.set_paused("audio", False)
    bob.set_paused("audio", False)
    grows(bob, "alice", "audio", "packetsReceived", 50)

    # alice's page pauses its video: the app sees the producer paused by its client ('remote')
    # and bob's consumer paused by its source; bob's video stops, then resumes.
    alice.set_paused("video", True)
    wait_until(lambda: events(stack, room, "producerpause", peer="alice", kind="video"),
               lambda e: [x["originator"] for x in e] == ["remote"], 10, "the app to see alice's video paused")
    wait_until(lambda: events(stack, room, "consumerpause", peer="bob", kind="video"),
               lambda e: [x["originator"] for x in e] == ["source"], 10, "the app to see bob's consumer paused by its source")
    still(bob, "alice", "video", ("framesDecoded",))
    alice.set_paused("video", False)
    grows(bob, "alice", "video", "framesDecoded", 20)

    # The app pauses bob's audio producer itself ('local'); alice's page is told.
    paused_before = len(alice.events("consumerPaused"))
    app_action(stack, room, peer="bob", op="pauseProducer", kind="audio")
    wait_until(
        lambda: alice.events("consumerPaused"), lambda e: len(e) > paused_before, 10, "alice's consumer of bob's audio to be paused"
    )
    # First by bob's page ('remote', the mute above), now by the app ('local').
    assert [e["originator"] for e in events(stack, room, "producerpause", peer="bob", kind="audio")] == ["remote", "local"]
    app_action(stack, room, peer="bob", op="resumeProducer", kind="audio")
    grows(alice, "bob", "audio", "packetsReceived", 50)

    # bob leaves: the app sees his peer closed by its client, alice's page is told.
    bob.leave()
    wait_until(lambda: events(stack, room, "peerclose", peer="bob"), bool, 10, "the app to see bob leave")
    assert events(stack, room, "peerclose", peer="bob")[0]["originator"] == "remote"
    wait_until(lambda: alice.events("peerClosed"), bool, 10, "alice's page to be told bob left")
    assert [p["name"] for p in app_state(stack, room)["peers"]] == ["alice"]
    assert peer_state(stack, room, "alice")["consumers"] == []


KEY_FRAMES_JS = """(async () => {
    let count = 0;
    for (const pc of window.__tureenTest.peerConnections()) {
        (await pc.getStats()).forEach((s) => {
            if (s.type === 'outbound-rtp' && s.kind === 'video') count += (s.pliCount || 0) + (s.firCount || 0);
        });
    }
    return count;
})()"""


def test_a_key_frame_request_from_the_app_reaches_the_sender(open_page, stack, room) -> None:
    alice, bob = open_page("alice"), open_page("bob")
    join_all(alice, bob)
    grows(bob, "alice", "video", "framesDecoded", 20)
    before = alice.js(KEY_FRAMES_JS)
    app_action(stack, room, peer="bob", op="requestKeyFrame", kind="video", **{"from": "alice"})
    wait_until(lambda: alice.js(KEY_FRAMES_JS), lambda n: n > before, 10, "alice's sender to get a PLI/FIR")
    grows(bob, "alice", "video", "framesDecoded", 20)


def test_the_active_speaker_gets_the_high_profile(open_page, stack, room) -> None:
    alice, bob = open_page("alice"), open_page("bob")
    join_all(alice, bob)
    # Fake audio beeps on both pages: the detector names one of them within a few reports, and
    # the app prefers 'high' for that speaker's video everywhere else.
    change = wait_until(lambda: events(stack, room, "activespeakerchange"), bool, 15, "an active speaker")[-1]
    speaker = change["peer"]
    assert speaker in ("alice", "bob")
    listener = "bob" if speaker == "alice" else "alice"
    wait_until(lambda: [c["preferredProfile"] for c in peer_state(stack, room, listener)["consumers"] if c["kind"] == "video"],
               lambda p: p == ["high"], 10, f"{listener}'s consumer of the speaker to prefer 'high'")


def test_the_app_starts_from_the_package_named_mediasoup() -> None:
    """The app requires 'mediasoup' and gets this package (the one line that changes)."""
    assert "require('mediasoup')" in Path(APP).read_text()
    link = NODE_PACKAGE / "node_modules" / "mediasoup"
    assert link.resolve() == NODE_PACKAGE.resolve(), f"{link} should link to clients/node (npm ci there)"


def test_a_simulcast_consumer_follows_the_profile_the_app_prefers(open_page, stack, room) -> None:
    """mediasoup-demo v2 prefers 'low' for every video consumer but the active speaker's
    ('high'): with a simulcast sender the app sees the consumer's effective profile change
    (effectiveprofilechange) to a layer no higher than the one it prefers, and bob's page is told."""
    alice, bob = open_page("alice"), open_page("bob")
    alice.join(width=640, height=480, frameRate=15, simulcast=True)
    bob.join(video=False)
    assert {e["kind"] for e in alice.wait_produced() if e["type"] == "producing"} == {"audio", "video"}
    grows(bob, "alice", "video", "framesDecoded", 20)
    order = ["low", "medium", "high"]

    def consumer() -> dict[str, Any]:
        return next(c for c in peer_state(stack, room, "bob").get("consumers", []) if c["kind"] == "video")

    settled = wait_until(
        consumer,
        lambda c: c["preferredProfile"] in order and c["effectiveProfile"] in order
        and order.index(c["effectiveProfile"]) <= order.index(c["preferredProfile"]),
        15,
        "bob's simulcast consumer of alice to settle on a layer the app allows",
    )
    changes = events(stack, room, "effectiveprofilechange", peer="bob", kind="video")
    assert changes and changes[-1]["from"] == "alice"
    assert settled["effectiveProfile"] in [c["profile"] for c in changes]
    wait_until(
        lambda: [e for e in bob.events("notification") if e["method"] == "consumerEffectiveProfileChanged"],
        bool,
        10,
        "bob's page to be told the effective profile",
    )
