"""mediasoup v2's server-side API on the control API (issue 11, item 6), against a real
server with plain RTP senders on loopback: room.setAudioLevels with room.audioLevels and
room.activeSpeaker, transport.setMaxBitrate (the REMB the sender gets), consumer.requestKeyFrame
(the PLI the sender gets), *.getStats, peer.dump, and rtpStreamer.create / close.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from conftest import RoomDriver
from stats_shapes import check_consumer_stats, check_producer_stats
from support import opus_parameters, parse_rtp, udp_socket, vp8_parameters
from tureen.shared.errors import ProtocolError
from tureen.shared.rtp.packet import RtpPacket
from tureen.workers.rtp import rtcp

pytestmark = pytest.mark.timeout(90)

_ids = itertools.count(30_000_001)


async def expect_error(coro: Any, code: str, text: str = "") -> None:
    with pytest.raises(ProtocolError) as info:
        await coro
    assert info.value.code == code, info.value.message
    assert text.lower() in info.value.message.lower(), info.value.message


def audio_packet(seq: int, ssrc: int, level: int | None, ext_id: int = 1) -> bytes:
    """An opus-sized RTP packet (PT 111) with an RFC 6464 level of -`level` dBov."""
    p = RtpPacket(payload_type=111, sequence_number=seq & 0xFFFF, timestamp=seq * 960, ssrc=ssrc, payload=b"\x00" * 80)
    if level is not None:
        p.set_extensions([(ext_id, bytes([0x80 | level]))])
    return p.serialize()


class Sender:
    """A peer sending over a plain transport from its own socket (level: -dBov or None)."""

    def __init__(self, room: RoomDriver, name: str) -> None:
        self.room, self.name = room, name
        self.sock = udp_socket()
        self.transport_id, self.producer_id = next(_ids), next(_ids)
        self.ssrc = next(_ids)
        self.level: int | None = 127
        self.server: tuple[str, int] = ("", 0)
        self._task: asyncio.Task[None] | None = None

    async def join(self) -> None:
        await self.room.join(self.name)
        answer = await self.room.req(
            self.name, "createTransport", id=self.transport_id, direction="send", options={},
            plainRtpParameters={"ip": "127.0.0.1", "port": self.sock.getsockname()[1]},
        )
        self.server = (answer["plainRtpParameters"]["ip"], answer["plainRtpParameters"]["port"])

    async def produce_audio(self, level: int | None) -> None:
        self.level = level
        await self.room.req(self.name, "createProducer", id=self.producer_id, kind="audio",
                            transportId=self.transport_id, rtpParameters=opus_parameters(self.ssrc), paused=False)
        self._task = asyncio.get_running_loop().create_task(self._send())

    async def _send(self) -> None:
        for seq in itertools.count(1):
            self.sock.sendto(audio_packet(seq, self.ssrc, self.level), self.server)
            await asyncio.sleep(0.02)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.sock.close()


@pytest.fixture
async def senders(room: RoomDriver) -> AsyncIterator[list[Sender]]:
    made: list[Sender] = []

    async def make(name: str) -> Sender:
        s = Sender(room, name)
        await s.join()
        made.append(s)
        return s

    yield make  # type: ignore[misc]
    for s in made:
        await s.close()


async def next_event(room: RoomDriver, name: str, timeout: float = 5.0) -> dict[str, Any]:
    return await room.client.next_event(lambda e: e.get("event") == name and e.get("roomId") == room.id, timeout=timeout)


async def forget_events(room: RoomDriver, name: str) -> None:
    with contextlib.suppress(TimeoutError):
        while True:
            await next_event(room, name, timeout=0)


# ---------------------------------------------------------------------------------------
# Audio levels and the active speaker
# ---------------------------------------------------------------------------------------


async def test_audio_levels_are_each_producers_mean_loudest_first(room: RoomDriver, senders) -> None:
    alice, bob, carol = await senders("alice"), await senders("bob"), await senders("carol")
    await alice.produce_audio(20)
    await bob.produce_audio(50)
    await carol.produce_audio(None)  # no level extension in its packets: never listed
    assert await room.action("room.setAudioLevels", interval=200) == {"interval": 200, "threshold": -127}
    levels: list[dict[str, Any]] = []
    for _ in range(10):  # the first report may cover the start of only one sender
        levels = (await next_event(room, "room.audioLevels"))["levels"]
        if len(levels) == 2:
            break
    assert levels == [
        {"peerName": "alice", "producerId": alice.producer_id, "audioLevel": -20},
        {"peerName": "bob", "producerId": bob.producer_id, "audioLevel": -50},
    ]
    speaker = await next_event(room, "room.activeSpeaker")
    assert speaker == {"event": "room.activeSpeaker", "roomId": room.id, "peerName": "alice",
                       "producerId": alice.producer_id}
    # A threshold leaves the quiet ones out of the event (not out of the speaker detection).
    assert await room.action("room.setAudioLevels", interval=200, threshold=-30) == {"interval": 200, "threshold": -30}
    await forget_events(room, "room.audioLevels")
    event = await next_event(room, "room.audioLevels")
    assert [x["peerName"] for x in event["levels"]] == ["alice"]
    # Off: no more reports.
    assert await room.action("room.setAudioLevels", interval=0) == {"interval": 0, "threshold": -30}
    await forget_events(room, "room.audioLevels")
    with pytest.raises(TimeoutError):
        await next_event(room, "room.audioLevels", timeout=0.8)


async def test_the_speaker_changes_only_after_four_loudest_reports_and_on_pause(room: RoomDriver, senders) -> None:
    alice, bob = await senders("alice"), await senders("bob")
    await alice.produce_audio(20)
    await bob.produce_audio(60)
    await room.action("room.setAudioLevels", interval=150)
    first = await next_event(room, "room.activeSpeaker")
    assert first["peerName"] == "alice"
    alice.level, bob.level = 60, 10  # bob speaks up, alice goes quiet
    # Every event in the order the room sent it, until bob takes over.
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        event = await room.client.next_event(
            lambda e: e.get("event") in ("room.audioLevels", "room.activeSpeaker") and e.get("roomId") == room.id,
            timeout=5,
        )
        seen.append(event)
        if event["event"] == "room.activeSpeaker":
            break
    assert seen[-1]["event"] == "room.activeSpeaker" and seen[-1]["peerName"] == "bob", seen
    reports = [e["levels"] for e in seen if e["event"] == "room.audioLevels"]
    # Hysteresis: bob was the loudest in the four reports right before the change, and the
    # change came with the fourth one, not earlier.
    loudest = [levels[0]["peerName"] if levels else None for levels in reports]
    assert loudest[-4:] == ["bob"] * 4, loudest
    assert "bob" not in loudest[:-4] or loudest[-5] != "bob", loudest
    # Pausing the speaker hands over at the next report, at once.
    await room.action("producer.pause", peerName="bob", producerId=bob.producer_id)
    speaker = await next_event(room, "room.activeSpeaker")
    assert speaker["peerName"] == "alice" and speaker["producerId"] == alice.producer_id


async def test_bad_audio_level_settings_are_refused_and_change_nothing(room: RoomDriver) -> None:
    await room.action("room.setAudioLevels", interval=500, threshold=-70)
    for params, text in (
        ({"interval": "500"}, "interval"),
        ({"interval": 50}, "100..60000"),
        ({"interval": 500.5}, "interval"),
        ({"interval": True}, "interval"),
        ({}, "interval"),
        ({"interval": 500, "threshold": 3}, "threshold"),
        ({"interval": 500, "threshold": "loud"}, "threshold"),
    ):
        await expect_error(room.action("room.setAudioLevels", **params), "bad_request", text)
    await expect_error(room.client.request("room.setAudioLevels", roomId="nope", interval=500), "not_found", "nope")
    # Unchanged: threshold -70 still applies.
    assert await room.action("room.setAudioLevels", interval=500) == {"interval": 500, "threshold": -70}


# ---------------------------------------------------------------------------------------
# setMaxBitrate, requestKeyFrame, getStats, peer.dump
# ---------------------------------------------------------------------------------------


class VideoSession:
    """alice sends VP8 over plain RTP, bob receives it on a plain transport."""

    def __init__(self, room: RoomDriver) -> None:
        self.room = room
        self.alice, self.bob_sock = Sender(room, "alice"), udp_socket()
        self.recv_id = next(_ids)
        self.consumer_id = 0

    async def start(self) -> None:
        room, alice = self.room, self.alice
        await alice.join()
        await room.join("bob")
        await room.req("bob", "createTransport", id=self.recv_id, direction="recv", options={},
                       plainRtpParameters={"ip": "127.0.0.1", "port": self.bob_sock.getsockname()[1]})
        await room.req("alice", "createProducer", id=alice.producer_id, kind="video", transportId=alice.transport_id,
                       rtpParameters=vp8_parameters(alice.ssrc, alice.ssrc + 1), paused=False)
        consumer = await room.client.next_notification("bob", "newConsumer")
        self.consumer_id = consumer["id"]
        await room.req("bob", "enableConsumer", id=self.consumer_id, transportId=self.recv_id, paused=False)
        alice._task = asyncio.get_running_loop().create_task(self._send())

    async def _send(self) -> None:
        alice = self.alice
        for seq in itertools.count(1):
            payload = (b"\x10\x00\x00\x9d\x01\x2a" if seq % 30 == 1 else b"\x10\x01") + b"\x00" * 200
            p = RtpPacket(payload_type=96, sequence_number=seq & 0xFFFF, timestamp=seq * 3000, ssrc=alice.ssrc,
                          marker=True, payload=payload)
            alice.sock.sendto(p.serialize(), alice.server)
            await asyncio.sleep(0.02)

    async def close(self) -> None:
        await self.alice.close()
        self.bob_sock.close()


@pytest.fixture
async def video(room: RoomDriver) -> AsyncIterator[VideoSession]:
    s = VideoSession(room)
    await s.start()
    yield s
    await s.close()


def sender_feedback(sock: socket.socket, duration: float) -> list[rtcp.Feedback]:
    """The RTCP Tureen sent the sender within `duration` s."""
    out = []
    deadline = time.monotonic() + duration
    while time.monotonic() < deadline:
        try:
            data = sock.recv(65535)
        except BlockingIOError:
            time.sleep(0.005)
            continue
        if 192 <= data[1] <= 223:
            out.append(rtcp.parse(data))
    return out


async def test_set_max_bitrate_caps_the_remb_the_sender_gets(room: RoomDriver, video: VideoSession) -> None:
    alice = video.alice
    assert await room.action("transport.setMaxBitrate", peerName="alice", transportId=alice.transport_id,
                             bitrate=300_000) == {"bitrate": 300_000}
    fb = await asyncio.to_thread(sender_feedback, alice.sock, 2.5)
    rembs = [r for f in fb for r in f.rembs]
    assert rembs and rembs[-1] == (300_000, [alice.ssrc]), rembs
    # v2's floor, and 0 = back to max_incoming_bitrate (2 Mbit/s by default).
    assert (await room.action("transport.setMaxBitrate", peerName="alice", transportId=alice.transport_id,
                              bitrate=5))["bitrate"] == 10_000
    assert (await room.action("transport.setMaxBitrate", peerName="alice", transportId=alice.transport_id,
                              bitrate=0))["bitrate"] == 2_000_000
    fb = await asyncio.to_thread(sender_feedback, alice.sock, 2.5)
    assert [r for f in fb for r in f.rembs][-1][0] == 2_000_000
    stats = await room.action("transport.getStats", peerName="alice", transportId=alice.transport_id)
    assert stats == []  # a plain transport has no transport stats in v2
    await expect_error(room.action("transport.setMaxBitrate", peerName="bob", transportId=video.recv_id,
                                   bitrate=100_000), "invalid_state", "recv transport")
    await expect_error(room.action("transport.setMaxBitrate", peerName="alice", transportId=alice.transport_id,
                                   bitrate=-1), "bad_request", "bitrate")
    await expect_error(room.action("transport.setMaxBitrate", peerName="alice", transportId=1234,
                                   bitrate=1), "not_found", "Transport not found")


async def test_consumer_request_key_frame_sends_the_sender_a_pli(room: RoomDriver, video: VideoSession) -> None:
    alice = video.alice
    await asyncio.sleep(0.5)  # past the start's own PLI and its 300 ms throttle
    await asyncio.to_thread(sender_feedback, alice.sock, 0.1)
    assert await room.action("consumer.requestKeyFrame", peerName="bob", consumerId=video.consumer_id) == {}
    fb = await asyncio.to_thread(sender_feedback, alice.sock, 1.0)
    assert any(f.key_frame_requests for f in fb), fb
    plis = [k for f in fb for k in f.key_frame_requests]
    assert plis[0][0] == alice.ssrc
    await expect_error(room.action("consumer.requestKeyFrame", peerName="alice", consumerId=video.consumer_id),
                       "not_found", "Consumer not found")


async def test_get_stats_and_peer_dump(room: RoomDriver, video: VideoSession) -> None:
    alice = video.alice
    await asyncio.sleep(0.3)
    stats = await room.action("producer.getStats", peerName="alice", producerId=alice.producer_id)
    note = {"method": "producerStats", "target": "peer", "notification": True, "id": alice.producer_id, "stats": stats}
    check_producer_stats(note, alice.producer_id, alice.transport_id, "video", streams=1)
    assert stats[0]["packetCount"] > 0
    stats = await room.action("consumer.getStats", peerName="bob", consumerId=video.consumer_id)
    note = {"method": "consumerStats", "target": "peer", "notification": True, "id": video.consumer_id,
            "peerName": "alice", "stats": stats}
    check_consumer_stats(note, video.consumer_id, "alice", video.recv_id, "video")
    dump = await room.action("peer.dump", peerName="bob")
    full = await room.client.dump_room(room.id)
    assert dump == next(p for p in full["peers"] if p["name"] == "bob")
    await expect_error(room.action("peer.dump", peerName="carol"), "not_found", "carol")
    await expect_error(room.action("producer.getStats", peerName="bob", producerId=alice.producer_id),
                       "not_found", "Producer not found")


# ---------------------------------------------------------------------------------------
# RtpStreamer
# ---------------------------------------------------------------------------------------


async def test_rtp_streamer_sends_the_producer_and_closes_with_it(room: RoomDriver, video: VideoSession) -> None:
    alice = video.alice
    sink = udp_socket()
    try:
        answer = await room.client.request(
            "rtpStreamer.create", roomId=room.id, producerId=alice.producer_id, remoteIP="127.0.0.1",
            remotePort=sink.getsockname()[1], appData={"recording": 1},
        )
        assert set(answer) == {"streamerId", "localIP", "localPort", "rtpParameters", "sdp"}
        codec = answer["rtpParameters"]["codecs"][0]
        ssrc = answer["rtpParameters"]["encodings"][0]["ssrc"]
        assert codec["mimeType"] == "video/VP8" and codec["payloadType"] == 101
        assert f"m=video {sink.getsockname()[1]} RTP/AVP 101" in answer["sdp"]
        assert "a=rtpmap:101 VP8/90000" in answer["sdp"]
        got = await asyncio.to_thread(lambda: [d for d in _drain(sink, 1.5) if not 192 <= d[1] <= 223])
        assert len(got) > 20 and {parse_rtp(d)[3] for d in got} == {ssrc}
        # The streamer is the room's: no peer was told of it.
        with pytest.raises(TimeoutError):
            await room.client.next_notification("bob", "newConsumer", timeout=0.2)
        await room.action("producer.close", peerName="alice", producerId=alice.producer_id)
        closed = await next_event(room, "rtpStreamer.closed")
        assert closed == {"event": "rtpStreamer.closed", "roomId": room.id, "streamerId": answer["streamerId"]}
        await asyncio.to_thread(_drain, sink, 0.3)
        assert await asyncio.to_thread(_drain, sink, 0.5) == []
        await expect_error(room.client.request("rtpStreamer.close", roomId=room.id, streamerId=answer["streamerId"]),
                           "not_found", "rtpStreamer")
    finally:
        sink.close()


async def test_rtp_streamer_close_and_bad_input(room: RoomDriver, video: VideoSession) -> None:
    alice = video.alice
    sink = udp_socket()
    port = sink.getsockname()[1]
    try:
        for params, code, text in (
            ({"producerId": 1234, "remoteIP": "127.0.0.1", "remotePort": port}, "not_found", "Producer not found"),
            ({"producerId": alice.producer_id, "remoteIP": "::1", "remotePort": port}, "bad_request", "IPv4"),
            ({"producerId": alice.producer_id, "remoteIP": "127.0.0.1", "remotePort": 0}, "bad_request", "remotePort"),
            ({"producerId": alice.producer_id, "remotePort": port}, "bad_request", "remoteIP"),
            ({"producerId": alice.producer_id, "remoteIP": "127.0.0.1", "remotePort": port, "localIP": "10.9.9.9"},
             "bad_request", "localIP"),
        ):
            await expect_error(room.client.request("rtpStreamer.create", roomId=room.id, **params), code, text)
        answer = await room.client.request("rtpStreamer.create", roomId=room.id, producerId=alice.producer_id,
                                           remoteIP="127.0.0.1", remotePort=port, localIP="127.0.0.1")
        # A producer has at most max_transports_per_peer (8) streamers: each takes a port.
        more = [await room.client.request("rtpStreamer.create", roomId=room.id, producerId=alice.producer_id,
                                          remoteIP="127.0.0.1", remotePort=9) for _ in range(7)]
        await expect_error(room.client.request("rtpStreamer.create", roomId=room.id, producerId=alice.producer_id,
                                               remoteIP="127.0.0.1", remotePort=9), "limit", "max_transports_per_peer")
        for extra in more:
            await room.client.request("rtpStreamer.close", roomId=room.id, streamerId=extra["streamerId"])
        assert await asyncio.to_thread(_drain, sink, 1.0)
        assert await room.client.request("rtpStreamer.close", roomId=room.id, streamerId=answer["streamerId"]) == {}
        await asyncio.to_thread(_drain, sink, 0.3)
        assert await asyncio.to_thread(_drain, sink, 0.5) == []
    finally:
        sink.close()


def _drain(sock: socket.socket, duration: float) -> list[bytes]:
    out = []
    deadline = time.monotonic() + duration
    while time.monotonic() < deadline:
        try:
            out.append(sock.recv(65535))
        except BlockingIOError:
            time.sleep(0.005)
    return out


async def test_server_wide_monitors_get_the_speaker_but_not_the_levels(room: RoomDriver, senders, server) -> None:
    from tureen.shared.client import TureenClient

    async with TureenClient(server.endpoint, timeout=10.0) as monitor:
        await monitor.subscribe_server()
        alice = await senders("alice")
        await alice.produce_audio(20)
        await room.action("room.setAudioLevels", interval=150)
        await next_event(room, "room.activeSpeaker")
        for _ in range(3):  # the room's own subscriber gets the levels meanwhile
            await next_event(room, "room.audioLevels")
        speaker = await monitor.next_event(lambda e: e.get("event") == "room.activeSpeaker", timeout=5)
        assert speaker["peerName"] == "alice"
        assert not [e for e in monitor.pending_events() if e.get("event") == "room.audioLevels"]


async def test_config_audio_levels_interval_turns_levels_on_in_new_rooms(tmp_path) -> None:
    from support import MEDIA_CODECS, running_server
    from tureen.shared.client import TureenClient

    config = tmp_path / "tureen.toml"
    config.write_text("audio_levels_interval = 200\n")
    with running_server(tmp_path, workers=1, extra=["--config", str(config)]) as server:
        async with TureenClient(server.endpoint, timeout=10.0) as client:
            created = await client.create_room(MEDIA_CODECS, room_id="lvl")
            room = RoomDriver(client, "lvl", created["rtpCapabilities"])
            alice = Sender(room, "alice")
            try:
                await alice.join()
                await alice.produce_audio(33)
                for _ in range(10):
                    levels = (await next_event(room, "room.audioLevels"))["levels"]
                    if levels:
                        break
                assert levels == [{"peerName": "alice", "producerId": alice.producer_id, "audioLevel": -33}]
            finally:
                await alice.close()
    from tureen.shared.config import Config

    # Checked like every other key: 0 (off) or 100..60000 ms.
    assert any("audio_levels_interval" in p for p in Config(audio_levels_interval=50).problems())
    assert not Config(audio_levels_interval=0).problems()
