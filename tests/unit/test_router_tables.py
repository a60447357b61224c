"""workers/router.py's tables with captured packets (tests/vectors/rtp): SSRC demux of several
producers on one transport, consumers added and removed, pauses, producer updates, transport
removal, and a simulcast switch that waits for a captured key frame."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from captured import Header, Rig, load, with_header

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def rig() -> Iterator[Rig]:
    r = Rig()
    yield r
    r.close()


def test_one_transport_demuxes_its_producers_by_ssrc(rig: Rig) -> None:
    vp8, opus = load("vp8"), load("opus")
    video = rig.producer("vp8")
    audio = rig.producer("opus")
    t = rig.send_transport
    assert set(t.ssrc_table) == {Header.of(vp8[0]).ssrc, Header.of(opus[0]).ssrc}
    assert t.ssrc_table[Header.of(vp8[0]).ssrc] is video.streams[0]
    sees_video = rig.consumer(video, 0x11)
    sees_audio = rig.consumer(audio, 0x22)
    mixed = [p for pair in zip(vp8[:20], opus[:20], strict=True) for p in pair]
    rig.feed(mixed)
    assert [p[12:] for p in rig.received(sees_video, 20)] == [p[12:] for p in vp8[:20]]
    assert [p[12:] for p in rig.received(sees_audio, 20)] == [p[12:] for p in opus[:20]]
    assert rig.nothing_for(sees_video) and rig.nothing_for(sees_audio)


def test_consumers_come_and_go_from_the_fan(rig: Rig) -> None:
    packets = load("opus")
    producer = rig.producer("opus")
    stream = producer.streams[0]
    a = rig.consumer(producer, 0x31)
    b = rig.consumer(producer, 0x32)
    assert stream.fan == (a.rewrite, b.rewrite) and set(stream.consumers) == {a.id, b.id}
    rig.feed(packets[:5])
    rig.router.remove_consumer(a)
    assert stream.fan == (b.rewrite,) and a.id not in rig.router.consumers and a.id not in producer.consumers
    assert a.transport.consumers == {} and a.transport.octets_out_closed == a.wire_octets() > 0
    rig.feed(packets[5:10])
    assert len(rig.received(a, 5)) == 5 and rig.nothing_for(a)
    assert len(rig.received(b, 10)) == 10


def test_pausing_a_consumer_takes_it_out_of_the_fan(rig: Rig) -> None:
    producer = rig.producer("opus")
    consumer = rig.consumer(producer, 0x41, paused=True)
    stream = producer.streams[0]
    assert stream.fan == () and consumer.stream is stream
    rig.router.set_consumer_paused(consumer, False)
    assert stream.fan == (consumer.rewrite,)
    rig.router.set_consumer_paused(consumer, True)
    assert stream.fan == ()


def test_a_video_consumer_that_starts_asks_for_a_key_frame(rig: Rig) -> None:
    video = rig.producer("vp8")
    consumer = rig.consumer(video, 0x51, paused=True)
    assert rig.key_frames_asked == []
    rig.router.set_consumer_paused(consumer, False)
    assert rig.key_frames_asked == [(consumer.id, video.streams[0].ssrc)]
    audio = rig.producer("opus")
    rig.consumer(audio, 0x52)
    assert len(rig.key_frames_asked) == 1  # audio needs none


def test_an_update_moves_the_consumers_to_the_new_ssrc_and_keeps_their_numbering(rig: Rig) -> None:
    packets = load("vp8")
    producer = rig.producer("vp8")
    consumer = rig.consumer(producer, 0x61)
    old = Header.of(packets[0]).ssrc
    rig.feed(packets[:10])
    last = Header.of(rig.received(consumer, 10)[-1])
    new = old ^ 0xFFFF
    rig.router.update_producer(producer, [(new, None, "default")], [(96, 101)], [], 90000)
    assert set(rig.send_transport.ssrc_table) == {new}
    renumbered = [with_header(p, ssrc=new, seq=7000 + i) for i, p in enumerate(packets[10:20])]
    rig.feed(packets[10:12])  # the old SSRC is unknown now
    assert rig.fwd.drop_unknown_ssrc == 2
    rig.feed(renumbered)  # the consumer moved to a new stream: it starts at its key frame (18)
    out = [Header.of(p) for p in rig.received(consumer, 2)]
    assert rig.nothing_for(consumer)
    rig.feed([with_header(p, ssrc=new, seq=7010 + i) for i, p in enumerate(packets[20:28])])
    out += [Header.of(p) for p in rig.received(consumer, 8)]
    assert [h.seq for h in out] == [(last.seq + 1 + i) & 0xFFFF for i in range(10)]
    assert {h.ssrc for h in out} == {0x61}


def test_removing_a_transport_removes_its_producers_and_their_consumers(rig: Rig) -> None:
    video = rig.producer("vp8")
    audio = rig.producer("opus")
    consumer = rig.consumer(video, 0x71)
    closed = rig.router.remove_transport(rig.send_transport)
    assert closed == [video.id, audio.id]
    assert rig.router.producers == {} and rig.router.consumers == {} and consumer.id not in consumer.transport.consumers
    assert rig.send_transport.id not in rig.router.transports and rig.send_transport.ssrc_table == {}


def test_a_piped_producer_is_its_own_ssrc_table(rig: Rig) -> None:
    packets = load("vp8")
    # Packets that come down a pipe were rewritten on ingest already: the room's PT.
    piped = rig.producer("vp8", piped=True)
    consumer = rig.consumer(piped, 0x81)
    assert piped.piped and rig.send_transport.ssrc_table == {}
    room_packets = [bytes([p[0], (p[1] & 0x80) | 101]) + p[2:] for p in packets[:5]]
    rig.feed(room_packets, source=piped)
    assert [Header.of(p).pt for p in rig.received(consumer, 5)] == [101] * 5


def test_simulcast_switches_up_only_at_a_captured_key_frame(rig: Rig) -> None:
    """Two streams of one producer: the VP8 capture as "low" (SSRC L) and again as "high"
    (SSRC H, from its second packet: no key frame until the capture's next one, which the
    test makes by feeding packet 0 again). The consumer prefers high."""
    vp8 = load("vp8")
    low_ssrc, high_ssrc = 0x1000, 0x2000
    producer = rig.producer("vp8", [(low_ssrc, None, "low"), (high_ssrc, None, "high")])
    low, high = producer.streams
    # Both active in the last ticks (as workers/worker.py's housekeeping would find).
    rig.feed([with_header(vp8[0], ssrc=low_ssrc, seq=Header.of(vp8[0]).seq - 1)])
    consumer = rig.consumer(producer, 0x91, profile="high")
    rig.router.tick_activity()  # only low had packets: the consumer moves to low ...
    assert consumer.stream is low and low.waiting == [consumer]
    rig.feed([with_header(vp8[0], ssrc=low_ssrc)])  # ... and starts at its next key frame
    both = [with_header(p, ssrc=x) for p in vp8[1:5] for x in (low_ssrc, high_ssrc)]
    rig.feed(both)
    rig.router.tick_activity()  # high is active now: switch at its next key frame
    assert consumer.pending is high and high.waiting == [consumer] and consumer.stream is low
    rig.feed([with_header(p, ssrc=x) for p in vp8[5:8] for x in (low_ssrc, high_ssrc)])  # no key frame
    assert consumer.stream is low
    key = with_header(vp8[0], ssrc=high_ssrc, seq=Header.of(vp8[8]).seq)
    rig.feed([key])
    assert consumer.stream is high and consumer.pending is None and high.waiting == []
    got = rig.received(consumer, 9)
    assert [p[12:] for p in got[:8]] == [p[12:] for p in vp8[0:8]]  # low until the switch
    assert got[-1][12:] == vp8[0][12:]  # the key frame is the first packet fed from high
    seqs = [Header.of(p).seq for p in got]
    assert seqs == [(seqs[0] + i) & 0xFFFF for i in range(9)]  # continuous across the switch
    assert consumer.rewrite.profile == "high" and rig.nothing_for(consumer)
