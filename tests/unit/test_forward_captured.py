"""workers/forward.py with captured packets (tests/vectors/rtp: ffmpeg's VP8, H264, opus): the
ingest rewrite, the per-consumer header rewrite (sequence number, timestamp, SSRC, payload
type) and its continuity across pauses and the 16-bit wrap, each drop and its counter, and
the RTCP demux; on every fan-out core this machine has (captured.CORES)."""

from __future__ import annotations

import struct
from collections.abc import Iterator

import pytest
from captured import CORES, ROOM_PT, Header, Rig, load, with_header
from tureen.workers.forward import COUNTERS
from tureen.workers.rtp.consumer import ConsumerRewrite
from tureen.workers.rtp.retransmit import rtx_packet

pytestmark = pytest.mark.timeout(30)


@pytest.fixture(params=CORES)
def rig(request: pytest.FixtureRequest) -> Iterator[Rig]:
    r = Rig(request.param)
    yield r
    r.close()


def test_the_captures_are_what_their_readme_says() -> None:
    for codec, pt in (("vp8", 96), ("h264", 103), ("opus", 111)):
        packets = load(codec)
        assert len(packets) == 40
        headers = [Header.of(p) for p in packets]
        assert {h.pt for h in headers} == {pt} and len({h.ssrc for h in headers}) == 1
        # In order, no gap: consecutive sequence numbers (mod 2^16).
        assert all((b.seq - a.seq) & 0xFFFF == 1 for a, b in zip(headers, headers[1:], strict=False))
        assert all(p[0] >> 6 == 2 for p in packets)


@pytest.mark.parametrize("codec", ["vp8", "h264", "opus"])
def test_each_consumer_gets_every_packet_rewritten_into_its_own_stream(rig: Rig, codec: str) -> None:
    packets = load(codec)
    producer = rig.producer(codec)
    a = rig.consumer(producer, 0xA0A0A0A0)
    b = rig.consumer(producer, 0xB0B0B0B0)
    rig.feed(packets[:20])
    rig.feed(packets[20:])
    for consumer in (a, b):
        got = rig.received(consumer, len(packets))
        for sent, out in zip(packets, got, strict=True):
            h_in, h_out = Header.of(sent), Header.of(out)
            assert h_out.ssrc == consumer.ssrc and h_out.pt == ROOM_PT[codec] and h_out.marker == h_in.marker
            assert h_out.seq == consumer.rewrite.out_seq(h_in.seq) and h_out.ts == consumer.rewrite.out_ts(h_in.ts)
            assert out[12:] == sent[12:] and out[0] == sent[0]  # payload and first byte untouched
        assert rig.nothing_for(consumer)
        assert (consumer.rewrite.packets, consumer.rewrite.octets) == (40, sum(map(len, packets)))
        assert consumer.rewrite.payload_octets == sum(len(p) - 12 for p in packets)
    fwd = rig.fwd
    assert (fwd.rtp_in, fwd.rtp_out, fwd.send_errors) == (40, 80, 0)
    stream = producer.streams[0]
    assert stream.packets == 40 and stream.expected() == 40 and stream.max_seq == Header.of(packets[-1]).seq


def test_video_packets_are_kept_for_retransmission_audio_not(rig: Rig) -> None:
    vp8, opus = load("vp8"), load("opus")
    video = rig.producer("vp8")
    audio = rig.producer("opus")
    rig.feed(vp8 + opus)
    store = video.streams[0].store
    assert store is not None and audio.streams[0].store is None
    for packet in vp8:
        kept = store[Header.of(packet).seq % len(store)]
        assert kept is not None and kept[12:] == packet[12:] and kept[1] & 0x7F == ROOM_PT["vp8"]


def test_sequence_numbers_and_timestamps_wrap_and_the_stream_counts_cycles(rig: Rig) -> None:
    """The capture renumbered to cross 65535 -> 0 and 2^32 -> 0 (payloads as recorded)."""
    packets = [with_header(p, seq=65520 + i, ts=0xFFFFFFFF - 3000 * 5 + 3000 * i) for i, p in enumerate(load("vp8"))]
    producer = rig.producer("vp8")
    consumer = rig.consumer(producer, 0xC0C0C0C0)
    rig.feed(packets)
    out = [Header.of(p) for p in rig.received(consumer, len(packets))]
    assert [h.seq for h in out] == [(65520 + i) & 0xFFFF for i in range(40)]
    assert [h.ts for h in out] == [(0xFFFFFFFF - 15000 + 3000 * i) & 0xFFFFFFFF for i in range(40)]
    stream = producer.streams[0]
    assert stream.cycles == 0x10000 and stream.expected() == 40  # RFC 3550 A.1 extended seq


def test_a_paused_consumer_resumes_with_the_next_sequence_number_and_its_timestamp_offset(rig: Rig) -> None:
    packets = load("opus")
    producer = rig.producer("opus")
    consumer = rig.consumer(producer, 0xD0D0D0D0)
    rig.feed(packets[:10])
    before = [Header.of(p) for p in rig.received(consumer, 10)]
    rig.router.set_consumer_paused(consumer, True)
    rig.feed(packets[10:25])  # missed while paused
    assert rig.nothing_for(consumer)
    rig.router.set_consumer_paused(consumer, False)
    rig.feed(packets[25:])
    after = [Header.of(p) for p in rig.received(consumer, 15)]
    # Continuous numbering (the receiver sees no loss), media time kept (ts offset unchanged).
    assert [h.seq for h in after] == [(before[-1].seq + 1 + i) & 0xFFFF for i in range(15)]
    assert [h.ts - Header.of(p).ts for h, p in zip(after, packets[25:], strict=True)] == [0] * 15


def test_a_paused_producer_drops_at_ingest_and_its_consumers_resync(rig: Rig) -> None:
    packets = load("vp8")
    producer = rig.producer("vp8")
    consumer = rig.consumer(producer, 0xE0E0E0E0)
    rig.feed(packets[:5])
    last = Header.of(rig.received(consumer, 5)[-1])
    rig.router.set_producer_paused(producer, True)
    rig.feed(packets[5:15])
    assert rig.fwd.drop_paused == 10 and rig.nothing_for(consumer)
    rig.router.set_producer_paused(producer, False)
    rig.feed(packets[15:25])  # the consumer starts again at the next key frame (18)
    got = rig.received(consumer, 7)
    assert got[0][12:] == packets[18][12:] and rig.nothing_for(consumer)
    assert [Header.of(p).seq for p in got] == [(last.seq + 1 + i) & 0xFFFF for i in range(7)]


def test_each_drop_has_its_counter_and_sends_nothing(rig: Rig) -> None:
    vp8 = load("vp8")
    producer = rig.producer("vp8")
    consumer = rig.consumer(producer, 0xF0F0F0F0)
    good = vp8[1]
    cases = {
        "drop_truncated": good[:11],
        "drop_not_rtp": b"\x16\xfe\xfd" + good[3:],  # a DTLS record's first bytes (RFC 7983)
        "drop_unknown_ssrc": with_header(good, ssrc=0x12345678),
        "drop_unknown_pt": bytes([good[0], (good[1] & 0x80) | 97]) + good[2:],
        # The X bit set on a packet without an extension block: its "length" overruns.
        "drop_malformed": bytes([good[0] | 0x10]) + good[1:15],
    }
    for counter, packet in cases.items():
        before = rig.fwd.counters()
        rig.feed([packet])
        after = rig.fwd.counters()
        changed = {k for k in after if after[k] != before[k]}
        assert changed == {COUNTERS[counter]}, counter
    assert rig.nothing_for(consumer) and producer.streams[0].packets == 0


def test_rtcp_is_told_apart_by_its_second_byte_and_handed_to_the_transport(rig: Rig) -> None:
    producer = rig.producer("opus")
    consumer = rig.consumer(producer, 0x0A0A0A0A)
    ssrc = Header.of(load("opus")[0]).ssrc
    rr = struct.pack("!BBHI", 0x80, 201, 1, ssrc)  # an RR without report blocks: 8 bytes
    sr = struct.pack("!BBHIIIIII", 0x80, 200, 6, ssrc, 1, 2, 3, 4, 5)
    rig.feed([rr, sr])
    assert rig.fwd.rtcp_in == 2 and rig.fwd.rtp_in == 0
    assert rig.listener.rtcp == [rr, sr]
    assert rig.nothing_for(consumer)


def test_header_extension_ids_are_remapped_and_unmapped_ones_padded(rig: Rig) -> None:
    """A captured packet given a one-byte extension block (RFC 8285): ids 1 and 3; the
    producer maps 1 -> 5 and has no mapping for 3."""
    opus = load("opus")
    producer = rig.producer("opus")
    producer.ext_map = bytes([0, 5] + [0] * 254)
    for stream in producer.streams:
        stream.ext_map = producer.ext_map
    consumer = rig.consumer(producer, 0x0B0B0B0B)
    block = bytes([0xBE, 0xDE, 0x00, 0x02, 0x10, 0xAA, 0x31, 0xBB, 0xCC, 0x00, 0x00, 0x00])
    packet = bytes([opus[0][0] | 0x10]) + opus[0][1:12] + block + opus[0][12:]
    rig.feed([packet])
    (out,) = rig.received(consumer, 1)
    assert out[12:24] == bytes([0xBE, 0xDE, 0x00, 0x02, 0x50, 0xAA, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00])
    assert out[24:] == opus[0][12:]


def test_a_consumer_without_a_sender_is_left_out_until_its_transport_is_ready(rig: Rig) -> None:
    packets = load("h264")
    producer = rig.producer("h264")
    consumer = rig.consumer(producer, 0x0C0C0C0C, connected=False)
    rig.feed(packets[:10])
    assert rig.fwd.rtp_out == 0 and consumer.rewrite not in producer.streams[0].fan
    consumer.transport.connect(*rig.receivers[consumer.id].getsockname())
    rig.listener.transport_ready(consumer.transport)
    rig.feed(packets[10:])
    out = [Header.of(p) for p in rig.received(consumer, 20)]
    # Its first packet is the next key frame's (the STAP-A with SPS/PPS at 20), offsets 0.
    assert out[0].seq == Header.of(packets[20]).seq and rig.nothing_for(consumer)


@pytest.mark.parametrize(
    ("last_out", "next_in", "offset"),
    [
        (100, 200, (101 - 200) & 0xFFFF),
        (65535, 7, (0 - 7) & 0xFFFF),  # continues at 0 across the wrap
        (65534, 65535, 0),
        (5, 65530, (6 - 65530) & 0xFFFF),
        (0, 0, 1),
    ],
)
def test_resync_continues_the_consumers_numbering_across_the_wrap(last_out: int, next_in: int, offset: int) -> None:
    rw = ConsumerRewrite(1, 0x1234)
    rw.resync(last_out, 1000)  # the first packet ever: offsets stay 0
    assert (rw.seq_offset, rw.ts_offset, rw.started, rw.sync) == (0, 0, True, False)
    rw.interrupt(last_out, 1000)
    rw.interrupt(last_out + 50, 9000)  # idempotent while interrupted: the first values hold
    rw.resync(next_in, 5000)
    assert rw.seq_offset == offset and rw.out_seq(next_in) == (last_out + 1) & 0xFFFF
    assert rw.ts_offset == 0  # a pause keeps the media clock


def test_the_senders_rtx_is_unwrapped_into_the_packet_it_repairs(rig: Rig) -> None:
    """Packet 5 of the capture is lost on the way in; the sender repairs it with RTX (RFC
    4588, its RTX SSRC and PT 97); a padding-only RTX probe and RTX of an unknown PT drop."""
    packets = load("vp8")
    ssrc, rtx_ssrc = Header.of(packets[0]).ssrc, 0x7777
    producer = rig.producer("vp8", [(ssrc, rtx_ssrc, "default")], rtx=(97, 102))
    consumer = rig.consumer(producer, 0x0D0D0D0D)
    assert rtx_ssrc in rig.send_transport.rtx_ssrcs
    rig.feed(packets[:5] + packets[6:10])
    lost = Header.of(packets[5])
    repair = bytes(rtx_packet(packets[5], lost.seq, lost.ts, rtx_ssrc, 97, 900))
    probe = bytes([repair[0] | 0x20]) + repair[1:12] + bytes(9) + bytes([10])  # 10 bytes, all padding
    unknown_pt = bytes([repair[0], (repair[1] & 0x80) | 98]) + repair[2:]
    rig.feed([repair, probe, unknown_pt])
    got = rig.received(consumer, 10)
    out = Header.of(got[-1])
    assert got[-1][12:] == packets[5][12:] and out.pt == ROOM_PT["vp8"] and out.ssrc == consumer.ssrc
    assert out.seq == consumer.rewrite.out_seq(lost.seq) and out.ts == consumer.rewrite.out_ts(lost.ts)
    assert (rig.fwd.rtx_in, rig.fwd.drop_rtx, rig.fwd.drop_unknown_pt) == (1, 1, 1)
    assert producer.streams[0].repaired == 1 and producer.streams[0].packets == 10
