"""Issue 3's proof: WebRTC transports (ICE-lite, DTLS, SRTP) in real workers, with real
WebRTC peers (aiortc, driven as mediasoup-client v2 drives Chrome: tests/msclient.py).

Frames are asserted decoded by the receiving RTCPeerConnection, not just bytes received.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
from pathlib import Path

import msclient
import pytest
from aiortc.codecs import get_encoder
from aiortc.mediastreams import AudioStreamTrack, VideoStreamTrack
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from msclient import MsPeer
from support import (
    MEDIA_CODECS,
    drain,
    parse_rtp,
    peer_capabilities,
    rtp_packet,
    running_server,
    stun_answer,
    stun_check,
    udp_socket,
    vp8_parameters,
)
from tureen.shared.client import TureenClient
from tureen.shared.errors import ProtocolError

pytestmark = pytest.mark.timeout(120)


async def test_two_peers_see_and_hear_each_other(media_room) -> None:
    alice, bob = MsPeer(), MsPeer()
    try:
        await alice.join(media_room, "alice")
        await bob.join(media_room, "bob")
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
        client, _ = media_room
        workers = (await client.server_info())["workers"]
        fanouts = [(await client.dump_worker(w["index"]))["fanout"] for w in workers]
        if all("nativeRx" in f for f in fanouts):  # the native receive: aiortc's SRTP in its drain
            assert sum(f["nativeSrtp"] for f in fanouts) > 0, fanouts
            assert sum(f["nativeRx"] for f in fanouts) > 0, fanouts
            # the native loop (native_loop, default on) drains the browsers' sockets in C
            assert sum(f["nativeLoopSockets"] for f in fanouts) >= 2, fanouts
    finally:
        await alice.close()
        await bob.close()


# ---------------------------------------------------------------------------------------
# Mixed: WebRTC in, plain RTP out, and the reverse
# ---------------------------------------------------------------------------------------


async def join_plain(
    client: TureenClient, room_id: str, name: str, sock, direction: str
) -> tuple[int, tuple[str, int]]:
    """Join `name` through the raw protocol with a plain transport towards `sock`."""
    settings = await client.peer_request(room_id, None, {"method": "queryRoom", "target": "room"})
    await client.peer_request(
        room_id,
        None,
        {
            "method": "join",
            "target": "room",
            "peerName": name,
            "rtpCapabilities": peer_capabilities(settings["rtpCapabilities"]),
            "spy": False,
        },
    )
    transport_id = 5000 + len(name)
    answer = await client.peer_request(
        room_id,
        name,
        {
            "method": "createTransport",
            "target": "peer",
            "id": transport_id,
            "direction": direction,
            "options": {},
            "plainRtpParameters": {"ip": "127.0.0.1", "port": sock.getsockname()[1]},
        },
    )
    return transport_id, (answer["plainRtpParameters"]["ip"], answer["plainRtpParameters"]["port"])


async def test_webrtc_producer_reaches_a_plain_consumer(media_room) -> None:
    client, room_id = media_room
    alice = MsPeer()
    sock = udp_socket()
    try:
        await alice.join(media_room, "alice")
        transport_id, _ = await join_plain(client, room_id, "bob", sock, "recv")
        await alice.produce(VideoStreamTrack())
        consumer = await client.next_notification("bob", "newConsumer")
        await client.peer_request(
            room_id,
            "bob",
            {"method": "enableConsumer", "target": "peer", "id": consumer["id"],
             "transportId": transport_id, "paused": False},
        )
        ssrc = consumer["rtpParameters"]["encodings"][0]["ssrc"]
        datagrams = await asyncio.to_thread(drain, sock, 10.0, 50)
        packets = [d for d in datagrams if not 192 <= d[1] <= 223]
        assert len(packets) >= 40, f"bob's plain socket got {len(packets)} RTP packets"
        got = {parse_rtp(p)[3] for p in packets}, {parse_rtp(p)[0] for p in packets}
        assert got == ({ssrc}, {consumer["rtpParameters"]["codecs"][0]["payloadType"]})
        # aiortc's sender reports come through as this consumer's (lip sync for receivers).
        more = await asyncio.to_thread(drain, sock, 6.0)
        reports = [d for d in datagrams + more if d[1] == 200]
        assert reports and {int.from_bytes(r[4:8], "big") for r in reports} == {ssrc}
    finally:
        sock.close()
        await alice.close()


async def send_vp8(sock, dest: tuple[str, int], ssrc: int, stop: asyncio.Event) -> int:
    """Encode aiortc's test pattern with VP8 and send it as plain RTP (PT 96) until `stop`;
    a key frame every 15 frames so a consumer that starts late decodes soon."""
    encoder = get_encoder(RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96))
    track = VideoStreamTrack()
    seq = 4000
    frames = 0
    while not stop.is_set() and frames < 600:
        frame = await track.recv()
        payloads, timestamp = encoder.encode(frame, force_keyframe=frames % 15 == 0)
        for i, payload in enumerate(payloads):
            sock.sendto(rtp_packet(seq, timestamp, ssrc, 96, payload, marker=i == len(payloads) - 1), dest)
            seq += 1
        frames += 1
    return frames


async def test_plain_producer_is_decoded_by_a_webrtc_consumer(media_room) -> None:
    client, room_id = media_room
    sock = udp_socket()
    bob = MsPeer()
    stop = asyncio.Event()
    try:
        transport_id, server_addr = await join_plain(client, room_id, "alice", sock, "send")
        await client.peer_request(
            room_id,
            "alice",
            {"method": "createProducer", "target": "peer", "id": 777, "kind": "video",
             "transportId": transport_id, "rtpParameters": vp8_parameters(3_333_333, 3_333_334),
             "paused": False},
        )
        sender = asyncio.get_running_loop().create_task(send_vp8(sock, server_addr, 3_333_333, stop))
        await bob.join(media_room, "bob")
        video = await bob.consume(await bob.next_consumer(kind="video", peer_name="alice"))
        await video.wait_frames(10, timeout=20)
        assert (video.last_frame.width, video.last_frame.height) == (640, 480)
        stop.set()
        assert await sender > 0
    finally:
        stop.set()
        sock.close()
        await bob.close()


# ---------------------------------------------------------------------------------------
# Failure paths
# ---------------------------------------------------------------------------------------


async def create_webrtc_transport(client: TureenClient, room_id: str, name: str) -> dict:
    settings = await client.peer_request(room_id, None, {"method": "queryRoom", "target": "room"})
    await client.peer_request(
        room_id,
        None,
        {"method": "join", "target": "room", "peerName": name,
         "rtpCapabilities": peer_capabilities(settings["rtpCapabilities"]), "spy": False},
    )
    return await client.peer_request(
        room_id,
        name,
        {"method": "createTransport", "target": "peer", "id": 4242, "direction": "recv",
         "options": {"udp": True, "tcp": False}},
    )


async def transport_state(client: TureenClient, room_id: str, name: str) -> dict:
    dump = await client.dump_room(room_id)
    peer = next(p for p in dump["peers"] if p["name"] == name)
    return peer["transports"][0]


async def test_ice_checks_need_the_right_password_and_restart_replaces_it(media_room) -> None:
    client, room_id = media_room
    answer = await create_webrtc_transport(client, room_id, "carol")
    ice = answer["iceParameters"]
    assert ice["iceLite"] is True and len(ice["usernameFragment"]) >= 4 and len(ice["password"]) >= 22
    candidate = answer["iceCandidates"][0]
    assert candidate["protocol"] == "udp" and candidate["type"] == "host"
    assert {f["algorithm"] for f in answer["dtlsParameters"]["fingerprints"]} >= {"sha-256"}
    dest = (candidate["ip"], candidate["port"])
    sock = udp_socket()
    try:
        wrong = await asyncio.to_thread(
            stun_answer, sock, stun_check(ice["usernameFragment"], "x" * 32, use_candidate=True), dest
        )
        assert wrong.error_code == 401
        assert (await transport_state(client, room_id, "carol"))["iceState"] in (None, "new")

        ok = await asyncio.to_thread(
            stun_answer, sock, stun_check(ice["usernameFragment"], ice["password"], use_candidate=True), dest
        )
        assert ok.message_class.name == "RESPONSE"
        assert ok.attributes["XOR-MAPPED-ADDRESS"] == sock.getsockname()
        await client.next_event(lambda e: e.get("event") == "transport.iceState" and e.get("state") == "completed")

        restarted = await client.peer_request(
            room_id, "carol", {"method": "restartTransport", "target": "peer", "id": 4242}
        )
        new = restarted["iceParameters"]
        assert new["usernameFragment"] != ice["usernameFragment"] and new["password"] != ice["password"]
        old = await asyncio.to_thread(
            stun_answer, sock, stun_check(ice["usernameFragment"], ice["password"]), dest
        )
        assert old.error_code == 401
        fresh = await asyncio.to_thread(
            stun_answer, sock, stun_check(new["usernameFragment"], new["password"]), dest
        )
        assert fresh.message_class.name == "RESPONSE"
    finally:
        sock.close()


async def test_wrong_dtls_fingerprint_fails_and_closes_the_transport(media_room, monkeypatch) -> None:
    client, room_id = media_room

    def tampered(sdp: str, **kwargs):
        params = real_extract(sdp, **kwargs)
        value = params["fingerprints"][0]["value"]
        params["fingerprints"][0]["value"] = ("00" if not value.startswith("00") else "11") + value[2:]
        return params

    real_extract = msclient.extract_dtls_parameters
    monkeypatch.setattr(msclient, "extract_dtls_parameters", tampered)
    alice = MsPeer()
    try:
        await alice.join(media_room, "alice")
        with contextlib.suppress(ProtocolError):  # createProducer may race the failure
            await alice.produce(VideoStreamTrack())
        closed = await alice.wait_notification("transportClosed", timeout=20)
        assert closed["id"] == alice.send_transport_id
        event = await client.next_event(lambda e: e.get("event") == "transport.closed", timeout=5)
        assert "DTLS" in event["reason"] and "fingerprint" in event["reason"].lower()
        dump = await client.dump_room(room_id)
        assert [p["transports"] for p in dump["peers"] if p["name"] == "alice"] == [[]]
    finally:
        await alice.close()


async def test_strangers_and_garbage_on_the_port_are_dropped_and_counted(media_room) -> None:
    client, room_id = media_room
    alice, bob = MsPeer(), MsPeer()
    stranger = udp_socket()
    try:
        await alice.join(media_room, "alice")
        await bob.join(media_room, "bob")
        producer = await alice.produce(VideoStreamTrack())
        video = await bob.consume(await bob.next_consumer(kind="video"))
        await video.wait_frames(5, timeout=20)

        candidate = alice.send_transport["iceCandidates"][0]
        dest = (candidate["ip"], candidate["port"])
        ssrc = producer.rtp_parameters["encodings"][0]["ssrc"]
        rng = random.Random(7)
        for i in range(100):
            stranger.sendto(rtp_packet(i, i * 3000, ssrc, 101, rng.randbytes(200)), dest)
            first = rng.choice([0, 1, 22, 70, 128, 200, 255])
            stranger.sendto(bytes([first]) + rng.randbytes(rng.randrange(0, 300)), dest)
        before = video.frames
        await video.wait_frames(before + 10, timeout=20)  # media goes on

        dump = await client.dump_room(room_id)
        worker = next(p["transports"][0]["worker"] for p in dump["peers"] if p["name"] == "alice")
        state = await client.dump_worker(worker)
        transport = next(t for t in state["transports"] if t["kind"] == "webrtc" and t["producerIds"])
        assert transport["strangers"] >= 100
        assert transport["dtlsState"] == "connected" and transport["iceState"] == "completed"
        assert all(w["alive"] for w in (await client.server_info())["workers"])
    finally:
        stranger.close()
        await alice.close()
        await bob.close()


async def test_close_transport_mid_stream_closes_the_consumers_of_others(media_room) -> None:
    alice, bob = MsPeer(), MsPeer()
    try:
        await alice.join(media_room, "alice")
        await bob.join(media_room, "bob")
        await alice.produce(VideoStreamTrack())
        video = await bob.consume(await bob.next_consumer(kind="video"))
        await video.wait_frames(5, timeout=20)

        await alice.notify("closeTransport", id=alice.send_transport_id)
        closed = await bob.wait_notification("consumerClosed", id=video.id, timeout=10)
        assert closed["peerName"] == "alice"
        await asyncio.sleep(0.5)  # what was in flight
        frames = video.frames
        await asyncio.sleep(1.0)
        assert video.frames == frames, "frames still arrive after the producer's transport closed"
    finally:
        await alice.close()
        await bob.close()


# ---------------------------------------------------------------------------------------
# Repair under loss
# ---------------------------------------------------------------------------------------


async def worker_states(client: TureenClient) -> list[dict]:
    """worker.dump of every worker of the server."""
    return [await client.dump_worker(w["index"]) for w in (await client.server_info())["workers"]]


class LossyRelay(asyncio.DatagramProtocol):
    """A UDP relay between one client and a Tureen port that drops `loss` of the RTP going
    to the client (`towards='client'`: a receiver on a bad network) or to Tureen
    (`towards='server'`: a sender on one); never STUN, DTLS or RTCP."""

    def __init__(self, server: tuple[str, int], loss: float, seed: int = 5, towards: str = "client") -> None:
        self.server = server
        self.loss = loss
        self.towards = towards
        self.rng = random.Random(seed)
        self.client: tuple[str, int] | None = None
        self.dropped = 0
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport) -> None:  # type: ignore[override]
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:  # type: ignore[override]
        assert self.transport is not None
        from_server = addr == self.server
        if from_server == (self.towards == "client"):
            is_rtp = len(data) > 1 and 128 <= data[0] <= 191 and not 192 <= data[1] <= 223
            if is_rtp and self.rng.random() < self.loss:
                self.dropped += 1
                return
        if from_server:
            if self.client is not None:
                self.transport.sendto(data, self.client)
        else:
            self.client = addr
            self.transport.sendto(data, self.server)


class RelayedPeer(MsPeer):
    """An MsPeer whose receiving (or sending) transport goes through a LossyRelay."""

    def __init__(self, loss: float, direction: str = "recv") -> None:
        super().__init__(timeout=20)
        self.loss = loss
        self.direction = direction
        self.relay: LossyRelay | None = None
        self._relay_transport: asyncio.DatagramTransport | None = None

    async def request(self, method: str, **data):
        response = await super().request(method, **data)
        if method == "createTransport" and data.get("direction") == self.direction:
            candidate = response["iceCandidates"][0]
            towards = "client" if self.direction == "recv" else "server"
            loop = asyncio.get_running_loop()
            self._relay_transport, self.relay = await loop.create_datagram_endpoint(
                lambda: LossyRelay((candidate["ip"], candidate["port"]), self.loss, towards=towards),
                local_addr=("127.0.0.1", 0),
            )
            port = self._relay_transport.get_extra_info("sockname")[1]
            response = {**response, "iceCandidates": [{**candidate, "port": port}]}
        return response

    async def close(self) -> None:
        await super().close()
        if self._relay_transport is not None:
            self._relay_transport.close()


async def test_nacks_are_served_from_tureens_buffer_at_5_percent_loss(media_room) -> None:
    client, room_id = media_room
    alice, bob = MsPeer(), RelayedPeer(loss=0.05)
    try:
        await alice.join(media_room, "alice")
        await bob.join(media_room, "bob")
        await alice.produce(VideoStreamTrack())
        video = await bob.consume(await bob.next_consumer(kind="video"))
        await video.wait_frames(60, timeout=40)
        assert bob.relay is not None and bob.relay.dropped > 0
        served = sum(c["nackServed"] for state in await worker_states(client) for c in state["consumers"])
        print(
            f"receiver-side 5% loss: relay dropped {bob.relay.dropped} RTP packets; Tureen served "
            f"{served} NACKed packets; {video.frames} frames decoded, longest gap {video.max_gap * 1000:.0f} ms"
        )
        assert served > 0, "the receiver's NACKs were not answered from Tureen's store"
    finally:
        await alice.close()
        await bob.close()


async def test_sender_side_loss_is_repaired_by_the_sender_through_tureen(media_room) -> None:
    """5% loss between the sender and Tureen: Tureen NACKs the sender itself for what it
    misses (its NACK generator; a receiver's NACK for what Tureen lacks goes on too), and
    forwards the RTX retransmissions it unwraps."""
    client, room_id = media_room
    alice, bob = RelayedPeer(loss=0.05, direction="send"), MsPeer()
    try:
        await alice.join(media_room, "alice")
        await bob.join(media_room, "bob")
        await alice.produce(VideoStreamTrack())
        video = await bob.consume(await bob.next_consumer(kind="video"))
        await video.wait_frames(60, timeout=40)
        assert alice.relay is not None and alice.relay.dropped > 0
        states = await worker_states(client)
        counters = [state["counters"] for state in states]
        forwarded = sum(c["nackForwarded"] for c in counters)
        rtx_in = sum(c["rtxIn"] for c in counters)
        nacks = [st["nack"] for state in states for p in state["producers"] for st in p["streams"] if st["nack"]]
        asked = sum(n["requested"] for n in nacks)
        recovered = sum(n["recovered"] for n in nacks)
        print(
            f"sender-side 5% loss: relay dropped {alice.relay.dropped}; Tureen NACKed the sender for "
            f"{asked} (receivers' NACKs passed on: {forwarded}); {recovered} recovered; RTX unwrapped "
            f"{rtx_in}; {video.frames} frames decoded, longest gap {video.max_gap * 1000:.0f} ms"
        )
        assert asked > 0 and recovered > 0 and rtx_in > 0
    finally:
        await alice.close()
        await bob.close()


# ---------------------------------------------------------------------------------------
# IPv6
# ---------------------------------------------------------------------------------------


class Ipv6OnlyPeer(MsPeer):
    """An MsPeer that keeps only the server's IPv6 candidates (a browser on an IPv6-only
    network): every packet then goes over ::1."""

    async def request(self, method: str, **data):
        response = await super().request(method, **data)
        if method == "createTransport":
            response = {**response, "iceCandidates": [c for c in response["iceCandidates"] if c["family"] == "ipv6"]}
        return response


async def test_ipv6_candidates_carry_ice_dtls_and_media(tmp_path: Path) -> None:
    with running_server(tmp_path, workers=1, extra=["--rtc-ipv6", "::1"]) as server:
        async with TureenClient(server.endpoint) as client:
            await client.create_room(MEDIA_CODECS, room_id="v6")
            answer = await create_webrtc_transport(client, "v6", "carol")
            families = sorted((c["family"], c["protocol"]) for c in answer["iceCandidates"])
            assert families == [("ipv4", "udp"), ("ipv6", "udp")]  # tcp: false in that request
            v6 = next(c for c in answer["iceCandidates"] if c["family"] == "ipv6")
            assert v6["ip"] == "::1"
            sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
            sock.bind(("::1", 0))
            sock.setblocking(False)
            try:
                ice = answer["iceParameters"]
                ok = await asyncio.to_thread(
                    stun_answer, sock, stun_check(ice["usernameFragment"], ice["password"]), ("::1", v6["port"])
                )
                assert ok.attributes["XOR-MAPPED-ADDRESS"] == sock.getsockname()[:2]
            finally:
                sock.close()

            alice, bob = Ipv6OnlyPeer(), Ipv6OnlyPeer()
            try:
                await alice.join((client, "v6"), "alice")
                await bob.join((client, "v6"), "bob")
                await alice.produce(VideoStreamTrack())
                video = await bob.consume(await bob.next_consumer(kind="video"))
                await video.wait_frames(10, timeout=20)
                state = await client.dump_worker(0)
                selected = [t["iceSelectedTuple"] for t in state["transports"] if t.get("iceSelectedTuple")]
                assert selected and all(":" in t[0] for t in selected), selected
            finally:
                await alice.close()
                await bob.close()
            await client.close_room("v6")
