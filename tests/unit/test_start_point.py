"""Where a consumer starts (workers/router.py, forward.py `_maybe_switch`): at a packet a
decoder can start on, never before it, whatever made it start (new, resumed, its producer
resumed), with packets recorded from ffmpeg.

Real parts: the Router and the Forwarder (per-copy core) with real plain transports on
loopback sockets; what the consumer's receiver gets is read from its socket.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Iterator
from typing import Any

import pytest
from rtp_captures import (
    VPX_INTER_START,
    VPX_KEY_START,
    VPX_KEY_TAIL,
    X264_FU_IDR_END,
    X264_FU_IDR_START,
    X264_GLOBAL_FU_IDR_END,
    X264_GLOBAL_FU_IDR_START,
    X264_GLOBAL_SEI,
    X264_P_SLICE,
    X264_STAP_SPS_PPS,
    X264_STAP_SPS_PPS_SEI,
)
from tureen.workers.forward import Forwarder
from tureen.workers.router import Consumer, Producer, Router, Stream
from tureen.workers.rtp.codecs import start_check
from tureen.workers.transport.plain import PlainRtpTransport

SOURCE_SSRC = 0x1111
SOURCE_PT = 96
ROOM_PT = 101


class Listener:
    def __init__(self, router: Router) -> None:
        self.router = router

    def transport_ready(self, transport: Any) -> None:
        self.router.transport_ready(transport)

    def transport_event(self, transport: Any, event: Any) -> None:
        pass

    def transport_rtcp(self, transport: Any, packet: bytes) -> None:
        pass

    def transport_failed(self, transport: Any, reason: str) -> None:
        pass


class Setup:
    """A producer of `mime` on a plain transport; consumers added on demand, each on its own
    plain transport towards its own loopback receiver."""

    def __init__(self, mime: str, kind: str = "video") -> None:
        self.loop = asyncio.new_event_loop()
        self.fwd = Forwarder(batched=False)
        self.asked: list[Stream] = []  # key frames asked for (the worker sends a PLI)
        self.router = Router(on_key_frame_needed=lambda consumer, stream: self.asked.append(stream))
        self.fwd.on_switch = self.router.complete_switch
        self.listener = Listener(self.router)
        self.sockets: list[socket.socket] = []
        self.transports: list[PlainRtpTransport] = []
        sender = self._socket()
        self.producer_transport = self._transport(1, sender)
        self.producer = Producer(
            10, kind, self.producer_transport, False, [(SOURCE_SSRC, None, "default")],
            [(SOURCE_PT, ROOM_PT)], [], 90000 if kind == "video" else 48000,
        )
        self.producer.key_checks = {ROOM_PT: start_check(mime)}
        self.router.add_producer(self.producer)
        self.stream = self.producer.streams[0]
        self.receivers: dict[int, socket.socket] = {}
        self.consumers: dict[int, Consumer] = {}

    def _socket(self) -> socket.socket:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        s.setblocking(False)
        self.sockets.append(s)
        return s

    def _transport(self, tid: int, peer: socket.socket) -> PlainRtpTransport:
        transport = PlainRtpTransport(tid, self.listener, self.loop, self.fwd, "127.0.0.1", 20000, 59999)
        transport.connect(*peer.getsockname())
        self.router.add_transport(transport)
        self.transports.append(transport)
        return transport

    def add_consumer(self, cid: int) -> Consumer:
        receiver = self._socket()
        transport = self._transport(100 + cid, receiver)
        consumer = Consumer(cid, self.producer.kind, self.producer, transport, 0x2000 + cid, None, False, "default", None)
        self.router.add_consumer(consumer)
        self.receivers[cid] = receiver
        self.consumers[cid] = consumer
        return consumer

    def feed(self, packets: list[tuple[int, int, bytes]]) -> None:
        """(seq, timestamp, payload) from the sender through the forwarder."""
        for seq, ts, payload in packets:
            data = struct.pack("!BBHII", 0x80, SOURCE_PT, seq, ts, SOURCE_SSRC) + payload
            self.fwd.buf[: len(data)] = data
            self.fwd.receive(self.producer_transport, len(data))
        self.fwd.after_drain()

    def got(self, cid: int) -> list[tuple[int, bytes]]:
        """(output seq, payload) of every packet consumer `cid`'s receiver got so far."""
        out = []
        while True:
            try:
                data = self.receivers[cid].recv(2048)
            except BlockingIOError:
                return out
            out.append((struct.unpack_from("!H", data, 2)[0], data[12:]))

    def close(self) -> None:
        for transport in self.transports:
            transport.close()
        for s in self.sockets:
            s.close()
        self.loop.close()


@pytest.fixture
def setup() -> Iterator[Any]:
    made: list[Setup] = []

    def make(mime: str, kind: str = "video") -> Setup:
        made.append(Setup(mime, kind))
        return made[-1]

    yield make
    for s in made:
        s.close()


# libx264 with its defaults, as ffmpeg packetizes it: (seq, ts, payload) per packet.
X264 = [
    (1, 0, X264_STAP_SPS_PPS_SEI), (2, 0, X264_FU_IDR_START), (3, 0, X264_FU_IDR_END),  # key frame
    (4, 3000, X264_P_SLICE), (5, 6000, X264_P_SLICE),
    (6, 9000, X264_STAP_SPS_PPS), (7, 9000, X264_FU_IDR_START), (8, 9000, X264_FU_IDR_END),  # key frame
    (9, 12000, X264_P_SLICE),
]
# The same encoder with -flags +global_header: no SPS/PPS in band (only in the SDP).
X264_GLOBAL = [
    (1, 0, X264_GLOBAL_SEI), (2, 0, X264_GLOBAL_FU_IDR_START), (3, 0, X264_GLOBAL_FU_IDR_END),
    (4, 3000, X264_P_SLICE),
    (5, 6000, X264_GLOBAL_FU_IDR_START), (6, 6000, X264_GLOBAL_FU_IDR_END),
    (7, 9000, X264_P_SLICE),
]


def payloads(got: list[tuple[int, bytes]]) -> list[bytes]:
    return [p for _, p in got]


def test_h264_late_joiner_starts_on_the_stap_a_with_the_parameter_sets(setup) -> None:
    s = setup("video/H264")
    s.feed(X264[:1])  # the key frame's STAP-A went by before the consumer came
    s.add_consumer(1)
    assert s.asked == [s.stream]  # it asked for a key frame at once
    s.feed(X264[1:])
    got = s.got(1)
    assert payloads(got) == [p for _, _, p in X264[5:]]  # not the IDR's FU-A, not P slices
    assert [q for q, _ in got] == [6, 7, 8, 9]
    assert s.stream.waiting == [] and s.consumers[1].fed


def test_h264_consumer_there_from_the_start_gets_everything(setup) -> None:
    s = setup("video/H264")
    s.add_consumer(1)
    s.feed(X264)
    assert payloads(s.got(1)) == [p for _, _, p in X264]


def test_h264_resume_waits_for_the_next_key_frame_with_continuous_numbering(setup) -> None:
    s = setup("video/H264")
    consumer = s.add_consumer(1)
    s.feed(X264[:4])
    s.router.set_consumer_paused(consumer, True)
    s.feed(X264[4:6])
    s.router.set_consumer_paused(consumer, False)
    s.feed(X264[6:])  # resumed in the middle of the key frame: its FU-A is not a start
    s.feed([(10, 15000, X264_P_SLICE), (11, 18000, X264_STAP_SPS_PPS), (12, 18000, X264_FU_IDR_START)])
    got = s.got(1)
    assert payloads(got) == [p for _, _, p in X264[:4]] + [X264_STAP_SPS_PPS, X264_FU_IDR_START]
    assert [q for q, _ in got] == [1, 2, 3, 4, 5, 6]  # continuous across the gap


def test_producer_resume_restarts_its_video_consumers_at_a_key_frame(setup) -> None:
    s = setup("video/H264")
    s.add_consumer(1)
    s.feed(X264[:2])
    s.router.set_producer_paused(s.producer, True)
    assert s.consumers[1] in s.stream.waiting
    s.feed(X264[2:4])  # dropped: paused
    s.router.set_producer_paused(s.producer, False)
    s.feed(X264[4:])
    assert payloads(s.got(1)) == [p for _, _, p in X264[:2] + X264[5:]]


def test_a_late_or_retransmitted_key_frame_packet_is_no_start(setup) -> None:
    s = setup("video/H264")
    s.feed(X264[:5])
    s.add_consumer(1)
    s.feed([X264[0]])  # seq 1 again (a retransmission): the frames after it went by
    s.feed(X264[5:])
    assert payloads(s.got(1)) == [p for _, _, p in X264[5:]]


def test_h264_without_in_band_parameter_sets_starts_on_a_whole_idr(setup) -> None:
    """The parameter sets are in the SDP only: the first IDR whose access unit the wait saw
    from its start is a start; one whose beginning went by before is not."""
    s = setup("video/H264")
    s.feed(X264_GLOBAL[:1])
    s.add_consumer(1)
    s.feed(X264_GLOBAL[1:])  # the IDR at seq 2 belongs to an access unit begun before
    assert payloads(s.got(1)) == [p for _, _, p in X264_GLOBAL[4:]]
    assert not s.stream.key_frame_seen


def test_h264_in_band_sender_never_starts_on_a_bare_idr(setup) -> None:
    """A stream that showed an SPS sends its parameter sets in band: when the SPS packet of a
    key frame is lost, the consumer waits for the next one rather than start on the IDR."""
    s = setup("video/H264")
    s.add_consumer(1)
    s.feed(X264[:4])
    assert s.stream.key_frame_seen
    s.add_consumer(2)
    s.feed(X264[4:5] + X264[6:])  # the STAP-A at seq 6 is lost
    assert s.got(2) == []
    s.feed([(10, 15000, X264_STAP_SPS_PPS), (11, 15000, X264_FU_IDR_START)])
    assert payloads(s.got(2)) == [X264_STAP_SPS_PPS, X264_FU_IDR_START]


def test_vp8_starts_on_the_first_packet_of_a_key_frame_never_on_its_tail(setup) -> None:
    s = setup("video/VP8")
    key = [(1, 0, VPX_KEY_START), (2, 0, VPX_KEY_TAIL), (3, 0, VPX_KEY_TAIL)]
    s.feed(key[:1])
    s.add_consumer(1)
    s.feed(key[1:] + [(4, 3600, VPX_INTER_START), (5, 7200, VPX_KEY_START), (6, 7200, VPX_KEY_TAIL)])
    got = s.got(1)
    assert payloads(got) == [VPX_KEY_START, VPX_KEY_TAIL]
    assert [q for q, _ in got] == [5, 6]


def test_audio_starts_on_the_next_packet_without_waiting(setup) -> None:
    s = setup("audio/opus", kind="audio")
    s.feed([(1, 0, b"\xfc\x01\x02")])
    s.add_consumer(1)
    assert s.stream.waiting == [] and s.asked == []
    s.feed([(2, 960, b"\xfc\x03\x04"), (3, 1920, b"\xfc\x05\x06")])
    assert [q for q, _ in s.got(1)] == [2, 3]


def test_waiting_consumers_ask_again_once_a_second_and_not_while_paused(setup) -> None:
    s = setup("video/H264")
    s.add_consumer(1)
    assert len(s.asked) == 1
    s.stream.last_key_request = 100.0  # the worker's feedback records when it asked
    s.router.tick_activity(100.5)
    assert len(s.asked) == 1
    s.router.tick_activity(101.0)
    assert len(s.asked) == 2
    s.router.set_producer_paused(s.producer, True)
    s.router.tick_activity(105.0)
    assert len(s.asked) == 2
    s.feed(X264[:1])  # paused: dropped, no start
    s.router.set_producer_paused(s.producer, False)
    s.feed(X264[:1])
    assert len(s.got(1)) == 1 and s.stream.waiting == []
    s.router.tick_activity(110.0)
    assert len(s.asked) == 2  # nobody waits any more
