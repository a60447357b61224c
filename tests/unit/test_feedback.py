"""workers/rtp/feedback.py: what the worker does about RTCP, decided without I/O.

Real parts around the decisions: a Router with real plain transports connected to loopback
sockets, the real Forwarder (per-copy core) putting RTP packets into the stream's store and
out to the consumer's receiver, whose packets the tests capture to learn the consumer's
numbering. The decisions come back as actions, read here without being performed (except
where a test performs one to check the counters it reports back).
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Iterator
from typing import Any

import pytest
from tureen.shared import contract as c
from tureen.shared.rtp.packet import RtpPacket
from tureen.workers.forward import Forwarder
from tureen.workers.router import Consumer, Producer, Router
from tureen.workers.rtp import rtcp
from tureen.workers.rtp.feedback import (
    KEY_FRAME_REQUEST_INTERVAL,
    SR_HISTORY,
    Feedback,
    Resend,
    SendRtcp,
)
from tureen.workers.rtp.nack_generator import NackGenerator
from tureen.workers.transport.plain import PlainRtpTransport

SOURCE_SSRC = 0x1111
SOURCE_PT = 96  # the sender's payload type
ROOM_PT = 101  # the room's, after the ingest rewrite
ROOM_RTX_PT = 102
CONSUMER_SSRC = 0x2222
CONSUMER_RTX_SSRC = 0x3333
RTCP_SSRC = 0x4444
CNAME = "tureen-test"
MAX_BITRATE = 1_500_000


def rtp(seq: int, ssrc: int = SOURCE_SSRC, ts: int | None = None, payload: bytes = b"\x90frame") -> bytes:
    ts = seq * 3000 if ts is None else ts
    return struct.pack("!BBHII", 0x80, SOURCE_PT, seq, ts, ssrc) + payload


class Listener:
    """The worker's side of the transports: readiness goes to the router, as in the worker."""

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
    """One video producer on a plain transport (its sender a loopback socket) and one
    consumer of it on another (its receiver a loopback socket)."""

    def __init__(self, rtx: bool = True, piped: bool = False, kind: str = "video") -> None:
        self.loop = asyncio.new_event_loop()
        self.fwd = Forwarder(batched=False)
        self.router = Router()
        # As in the worker: video consumers start at a start point (here every packet: the
        # producer has no codec checks), which the forwarder reports to the router.
        self.fwd.on_switch = self.router.complete_switch
        listener = Listener(self.router)
        self.sockets: list[socket.socket] = []
        self.sender = self._socket()
        self.receiver = self._socket()
        self.producer_transport = PlainRtpTransport(1, listener, self.loop, self.fwd, "127.0.0.1", 20000, 59999)
        self.producer_transport.connect(*self.sender.getsockname())
        self.consumer_transport = PlainRtpTransport(2, listener, self.loop, self.fwd, "127.0.0.1", 20000, 59999)
        self.consumer_transport.connect(*self.receiver.getsockname())
        self.router.add_transport(self.producer_transport)
        self.router.add_transport(self.consumer_transport)
        self.producer = Producer(
            10,
            kind,
            None if piped else self.producer_transport,
            False,
            [(SOURCE_SSRC, None, "default")],
            [(SOURCE_PT, ROOM_PT)],
            [],
            90000 if kind == "video" else 48000,
            [(ROOM_PT, ROOM_RTX_PT)],
        )
        self.router.add_producer(self.producer)
        self.consumer = Consumer(
            20,
            kind,
            self.producer,
            self.consumer_transport,
            CONSUMER_SSRC,
            CONSUMER_RTX_SSRC if rtx else None,
            False,
            "default",
            None,
        )
        self.router.add_consumer(self.consumer)
        self.stream = self.producer.streams[0]
        self.feedback = Feedback(RTCP_SSRC, CNAME, self.fwd, self.router.consumer_by_ssrc, MAX_BITRATE)

    def _socket(self) -> socket.socket:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        s.settimeout(2.0)
        self.sockets.append(s)
        return s

    def feed(self, seqs: list[int], received: bool = True) -> list[RtpPacket]:
        """Packets `seqs` from the sender through the forwarder; returns what the
        consumer's receiver got (its numbering), nothing when not `received`."""
        source = self.producer if self.producer.transport is None else self.producer_transport
        for seq in seqs:
            packet = rtp(seq)
            self.fwd.buf[: len(packet)] = packet
            self.fwd.receive(source, len(packet))
        self.fwd.after_drain()
        return [RtpPacket.parse(self.receiver.recv(2048)) for _ in seqs] if received else []

    def gap(self, seqs: list[int]) -> None:
        """The consumer misses `seqs` (paused meanwhile): its numbering goes on without
        them, so it differs from the sender's from here on."""
        self.router.set_consumer_paused(self.consumer, True)
        self.feed(seqs, received=False)
        self.router.set_consumer_paused(self.consumer, False)

    def close(self) -> None:
        for transport in (self.producer_transport, self.consumer_transport):
            transport.close()
        for s in self.sockets:
            s.close()
        self.loop.close()


@pytest.fixture
def setup() -> Iterator[Any]:
    made: list[Setup] = []

    def make(**kw: Any) -> Setup:
        made.append(Setup(**kw))
        return made[-1]

    yield make
    for s in made:
        s.close()


def only(actions: list[Any], kind: type) -> list[Any]:
    return [a for a in actions if isinstance(a, kind)]


# -- NACK service -----------------------------------------------------------------------


def test_nack_is_served_from_the_store_on_rtx_where_negotiated(setup) -> None:
    s = setup(rtx=True)
    s.feed([80, 81])
    s.gap(list(range(82, 100)))
    out = s.feed([100, 101, 102, 103])
    assert out[0].sequence_number != 100, "the consumer's numbering is its own"
    lost = [out[1].sequence_number, out[3].sequence_number]
    rtx_seq = s.consumer.rtx_seq
    actions = s.feedback.nacks.on_nack(s.consumer, lost)
    assert [type(a) for a in actions] == [Resend, Resend]
    for action, original, expected_rtx_seq in zip(actions, (out[1], out[3]), (rtx_seq, rtx_seq + 1), strict=True):
        assert action.rtx and action.consumer is s.consumer
        assert action.send == s.consumer_transport.sender()
        packet = RtpPacket.parse(bytes(action.packet))
        assert packet.ssrc == CONSUMER_RTX_SSRC
        assert packet.payload_type == ROOM_RTX_PT
        assert packet.sequence_number == expected_rtx_seq & 0xFFFF
        assert packet.timestamp == original.timestamp
        # RFC 4588: the original sequence number, then the original payload.
        assert packet.payload[:2] == original.sequence_number.to_bytes(2, "big")
        assert packet.payload[2:] == original.payload
    assert s.consumer.rtx_seq == (rtx_seq + 2) & 0xFFFF
    # Counted only once the worker reports them sent.
    assert s.consumer.nack_served == 0
    for action in actions:
        s.feedback.nacks.sent(action)
    assert s.consumer.nack_served == 2 and s.fwd.nack_served == 2
    assert s.consumer.rtx_packets == 2
    assert s.consumer.rtx_octets == sum(len(a.packet) for a in actions)
    assert s.consumer.resent_packets == 0, "RTX is not on the consumer's SSRC: its SR does not count it"


def test_nack_without_rtx_resends_on_the_consumers_ssrc_and_its_sr_counts_it(setup) -> None:
    s = setup(rtx=False)
    out = s.feed([7, 8, 9])
    (action,) = s.feedback.nacks.on_nack(s.consumer, [out[0].sequence_number])
    assert isinstance(action, Resend) and not action.rtx
    packet = RtpPacket.parse(bytes(action.packet))
    assert packet.ssrc == CONSUMER_SSRC
    assert packet.sequence_number == out[0].sequence_number
    assert packet.timestamp == out[0].timestamp
    assert packet.payload_type == ROOM_PT
    assert packet.payload == out[0].payload
    s.feedback.nacks.sent(action)
    assert s.consumer.resent_packets == 1
    assert s.consumer.resent_payload == len(out[0].payload)


def test_a_failed_resend_counts_as_missed(setup) -> None:
    s = setup()
    out = s.feed([1, 2])
    (action,) = s.feedback.nacks.on_nack(s.consumer, [out[0].sequence_number])
    s.feedback.nacks.failed(action)
    assert s.consumer.nack_missed == 1
    assert s.consumer.nack_served == 0 and s.fwd.nack_served == 0


def test_what_the_store_lacks_is_nacked_to_the_sender(setup) -> None:
    s = setup()
    out = s.feed([500, 501, 502])
    offset = (out[0].sequence_number - 500) & 0xFFFF
    never = [(600 + offset) & 0xFFFF, (601 + offset) & 0xFFFF]
    actions = s.feedback.nacks.on_nack(s.consumer, [out[2].sequence_number, *never])
    assert [type(a) for a in actions] == [Resend, SendRtcp]
    nack = actions[1]
    assert nack.transport is s.producer_transport
    fb = rtcp.parse(nack.packet)
    assert fb.nacks == [(SOURCE_SSRC, [600, 601])], "in the sender's numbering"
    assert rtcp.sdes_cnames(nack.packet) == [(RTCP_SSRC, CNAME)]
    assert s.stream.nack_count == 1
    assert s.consumer.nack_forwarded == 2 and s.fwd.nack_forwarded == 2


def test_nack_for_a_piped_producer_becomes_an_event(setup) -> None:
    s = setup(piped=True)
    out = s.feed([40, 41])
    offset = (out[0].sequence_number - 40) & 0xFFFF
    actions = s.feedback.nacks.on_nack(s.consumer, [(45 + offset) & 0xFFFF, out[1].sequence_number])
    assert [type(a) for a in actions] == [Resend, c.ConsumerNack]
    assert actions[1] == c.ConsumerNack(consumerId=20, producerId=10, ssrc=SOURCE_SSRC, seqs=[45])
    assert s.consumer.nack_forwarded == 1
    assert s.stream.nack_count == 0, "no NACK packet went to a sender from here"


def test_audio_and_unsendable_consumers_are_not_repaired(setup) -> None:
    audio = setup(kind="audio")
    out = audio.feed([1, 2])
    assert audio.feedback.nacks.on_nack(audio.consumer, [out[0].sequence_number]) == []
    video = setup()
    video.feed([1])
    video.consumer_transport.close()  # no sender any more
    assert video.feedback.nacks.on_nack(video.consumer, [1, 2, 3]) == []
    assert video.consumer.nack_forwarded == 0


def test_producer_nack_from_another_worker_goes_to_the_sender(setup) -> None:
    s = setup()
    action = s.feedback.nacks.nack_sender(s.producer, s.stream, [9, 10])
    assert action.transport is s.producer_transport
    assert rtcp.parse(action.packet).nacks == [(SOURCE_SSRC, [9, 10])]


# -- key frames -------------------------------------------------------------------------


def test_key_frame_requests_are_throttled_per_stream(setup) -> None:
    s = setup()
    other = setup()
    requests = s.feedback.key_frames
    (first,) = requests.request(s.stream, s.consumer, 100.0)
    assert isinstance(first, SendRtcp) and first.transport is s.producer_transport
    assert rtcp.parse(first.packet).key_frame_requests == [(SOURCE_SSRC, rtcp.PSFB_PLI)]
    assert requests.request(s.stream, s.consumer, 100.0 + KEY_FRAME_REQUEST_INTERVAL / 2) == []
    assert requests.request(s.stream, None, 100.0 + KEY_FRAME_REQUEST_INTERVAL * 0.99) == []
    # Another stream has its own budget.
    assert len(requests.request(other.stream, other.consumer, 100.1)) == 1
    assert len(requests.request(s.stream, s.consumer, 100.0 + KEY_FRAME_REQUEST_INTERVAL + 0.001)) == 1
    assert s.stream.pli_count == 2 and other.stream.pli_count == 1
    assert s.fwd.key_frame_requests == 3


def test_key_frame_request_for_a_piped_producer_becomes_an_event(setup) -> None:
    s = setup(piped=True)
    (event,) = s.feedback.key_frames.request(s.stream, s.consumer, 5.0)
    assert event == c.ConsumerKeyFrameRequest(consumerId=20, producerId=10, ssrc=SOURCE_SSRC)
    # Without a consumer to name (a resumed producer) there is no one to ask.
    assert s.feedback.key_frames.request(s.stream, None, 10.0) == []
    assert s.stream.pli_count == 0


# -- received RTCP ----------------------------------------------------------------------


def test_receivers_feedback_is_dispatched_by_consumer_ssrc(setup) -> None:
    s = setup()
    out = s.feed([10, 11, 12])
    block = (CONSUMER_SSRC, 64, 3, 0, 0, 0, 0)
    packet = rtcp.compound(
        rtcp.rr(0x9999, [block]),
        0x9999,
        "receiver",
        rtcp.pli(0x9999, CONSUMER_SSRC),
        rtcp.fir(0x9999, CONSUMER_SSRC, 1),
        rtcp.nack(0x9999, CONSUMER_SSRC, [out[1].sequence_number]),
        rtcp.pli(0x9999, 0xDEAD),  # nobody's: ignored
        rtcp.remb(0x9999, 250_000, [CONSUMER_SSRC]),
    )
    actions = s.feedback.on_rtcp(s.consumer_transport, rtcp.parse(packet), 50.0)
    # One PLI upstream (the FIR right after it is throttled), then the repair.
    assert [type(a) for a in actions] == [SendRtcp, Resend]
    assert rtcp.parse(actions[0].packet).key_frame_requests == [(SOURCE_SSRC, rtcp.PSFB_PLI)]
    assert RtpPacket.parse(bytes(actions[1].packet)).payload[:2] == out[1].sequence_number.to_bytes(2, "big")
    assert (s.consumer.pli_count, s.consumer.fir_count, s.consumer.nack_count) == (1, 1, 1)
    assert (s.consumer.rr_fraction_lost, s.consumer.rr_packets_lost) == (64, 3)
    assert s.consumer_transport.remote_remb == (250_000, [CONSUMER_SSRC])


def test_senders_sr_is_kept_for_the_receiver_reports(setup) -> None:
    s = setup()
    s.feed([1])
    ntp = rtcp.ntp_now(1_700_000_000.25)
    packet = rtcp.compound(rtcp.sr(SOURCE_SSRC, ntp, 1234, 1, 100), SOURCE_SSRC, "sender")
    assert s.feedback.on_rtcp(s.producer_transport, rtcp.parse(packet), 7.0) == []
    assert s.stream.last_sr == (ntp, 1234, 7.0)


# -- reports ----------------------------------------------------------------------------


def test_receiver_report_and_remb_to_the_sender(setup) -> None:
    s = setup()
    s.feed([1000, 1001, 1003, 1004])  # 1002 lost
    ntp = rtcp.ntp_now(1_700_000_000.5)
    s.feedback.reports.on_sender_report(s.stream, ntp, 0, 20.0)
    (action,) = s.feedback.reports.receiver_reports([s.producer_transport, s.consumer_transport], 20.5)
    assert action.transport is s.producer_transport
    fb = rtcp.parse(action.packet)
    ((ssrc, fraction, lost, ext_seq, _jitter, lsr, dlsr),) = fb.report_blocks
    assert (ssrc, lost, ext_seq) == (SOURCE_SSRC, 1, 1004)
    assert fraction == (1 << 8) // 5
    assert lsr == (ntp >> 16) & 0xFFFFFFFF
    assert dlsr == 65536 // 2
    assert fb.rembs == [(MAX_BITRATE, [SOURCE_SSRC])]
    assert rtcp.sdes_cnames(action.packet) == [(RTCP_SSRC, CNAME)]
    assert s.producer_transport.last_remb == (MAX_BITRATE, [SOURCE_SSRC])
    # The next interval starts from here: nothing new lost.
    (again,) = s.feedback.reports.receiver_reports([s.producer_transport], 21.0)
    assert rtcp.parse(again.packet).report_blocks[0][1] == 0


def test_no_receiver_report_before_packets(setup) -> None:
    s = setup()
    assert s.feedback.reports.receiver_reports([s.producer_transport], 1.0) == []


def test_sender_report_per_fed_consumer_and_rtt_from_its_echo(setup) -> None:
    s = setup(rtx=False)
    out = s.feed([1, 2, 3])
    (resend,) = s.feedback.nacks.on_nack(s.consumer, [out[0].sequence_number])
    s.feedback.nacks.sent(resend)
    ntp = rtcp.ntp_now(1_700_000_001.0)
    now = s.stream.max_at + 0.5
    (action,) = s.feedback.reports.sender_reports(s.router.consumers.values(), ntp, now, 30.0)
    assert action.transport is s.consumer_transport
    fb = rtcp.parse(action.packet)
    assert fb.sender_reports == [(CONSUMER_SSRC, ntp, (out[-1].timestamp + 45000) & 0xFFFFFFFF)]
    packets, octets = struct.unpack_from("!II", action.packet, 20)
    assert packets == 4, "three forwarded and one resent on its SSRC"
    assert octets == 4 * len(out[0].payload)
    assert rtcp.sdes_cnames(action.packet) == [(CONSUMER_SSRC, CNAME)]
    # The receiver echoes it 100 ms later, having held it 20 ms: RTT 80 ms.
    lsr = (ntp >> 16) & 0xFFFFFFFF
    s.feedback.reports.on_receiver_report(s.consumer, (CONSUMER_SSRC, 0, 0, 0, 0, lsr, int(0.02 * 65536)), 30.1)
    assert s.consumer.rtt_ms == pytest.approx(80, abs=0.1)


def test_sender_report_uses_the_consumers_cname_and_history_is_bounded(setup) -> None:
    s = setup()
    s.feed([1])
    s.consumer.cname = "alice"
    for i in range(SR_HISTORY + 3):
        (action,) = s.feedback.reports.sender_reports([s.consumer], rtcp.ntp_now(1_700_000_000 + i), 0.0, float(i))
    assert rtcp.sdes_cnames(action.packet) == [(CONSUMER_SSRC, "alice")]
    assert len(s.consumer.sr_sent) == SR_HISTORY


def test_no_sender_report_for_a_paused_or_unfed_consumer(setup) -> None:
    s = setup()
    reports = s.feedback.reports
    assert reports.sender_reports([s.consumer], rtcp.ntp_now(), 0.0, 0.0) == [], "nothing sent yet"
    s.feed([1])
    s.router.set_consumer_paused(s.consumer, True)
    assert reports.sender_reports([s.consumer], rtcp.ntp_now(), 0.0, 0.0) == []
    s.router.set_consumer_paused(s.consumer, False)
    assert reports.sender_reports([s.consumer], rtcp.ntp_now(), 0.0, 0.0) == [], "waiting to resync"


# -- NACKs the worker asks for itself (rtp/nack_generator.py) ---------------------------


def test_the_forwarder_hands_a_streams_gaps_to_its_nack_generator(setup) -> None:
    s = setup()
    s.stream.nack = NackGenerator()
    asked: list[tuple[Any, list[int]]] = []
    s.fwd.on_nack = lambda stream, seqs: asked.append((stream, seqs))
    s.feed([65533, 65534, 65535])
    assert asked == []
    s.feed([2])  # 0 and 1 missing, across the wrap
    assert asked == [(s.stream, [0, 1])]
    s.feed([0])  # the repair: forwarded, and its entry cancelled
    assert list(s.stream.nack.pending) == [1] and s.stream.nack.recovered == 1
    s.feed([3, 4])
    assert len(asked) == 1


def test_generated_nacks_go_to_the_sender_in_packets_that_fit_a_datagram(setup) -> None:
    s = setup()
    seqs = list(range(1000, 1000 + 17 * (c.MAX_NACK_SEQS + 10), 17))  # one PID/BLP entry each
    actions = s.feedback.nacks.generated(s.stream, seqs)
    assert [a.transport for a in actions] == [s.producer_transport] * 2
    got: list[int] = []
    for action in actions:
        assert len(action.packet) < 1200
        fb = rtcp.parse(action.packet)
        assert [ssrc for ssrc, _ in fb.nacks] == [SOURCE_SSRC]
        assert rtcp.sdes_cnames(action.packet) == [(RTCP_SSRC, CNAME)]  # full compound
        got += fb.nacks[0][1]
    assert got == seqs
    assert s.stream.nack_count == 2
    assert s.feedback.nacks.generated(s.stream, []) == []


def test_a_piped_stream_generates_no_nack(setup) -> None:
    """The worker that receives the producer NACKs its sender; a piped copy has none."""
    s = setup(piped=True)
    assert s.feedback.nacks.generated(s.stream, [5]) == []


def test_a_receivers_nack_for_what_the_generator_asks_already_is_not_passed_on(setup) -> None:
    s = setup()
    s.stream.nack = NackGenerator()
    s.fwd.on_nack = lambda stream, seqs: None
    out = s.feed([10, 11, 13])  # 12 missing: the generator NACKed it already
    first = out[0].sequence_number
    s.feed([14])
    # The receiver asks for 12 (and for 9, which the generator never knew about).
    actions = s.feedback.nacks.on_nack(s.consumer, [(first + 2) & 0xFFFF, (first - 1) & 0xFFFF])
    sent = only(actions, SendRtcp)
    assert len(sent) == 1
    assert rtcp.parse(sent[0].packet).nacks == [(SOURCE_SSRC, [9])]
