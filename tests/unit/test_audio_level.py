"""RFC 6464 audio levels on the data path: reading the extension (shared/rtp/packet.py) and
the per-producer mean the worker reports (workers/router.py), as mediasoup v2 computes it."""

from __future__ import annotations

import pytest
from tureen.shared.rtp.capabilities import AUDIO_LEVEL_ID
from tureen.shared.rtp.packet import RtpPacket, read_audio_level, rewrite_extension_ids
from tureen.workers.router import Producer


def packet(elements: list[tuple[int, bytes]], two_byte: bool = False) -> bytearray:
    p = RtpPacket(payload_type=111, sequence_number=1, timestamp=960, ssrc=1234, payload=b"\x01" * 40)
    p.set_extensions(elements, two_byte=two_byte)
    return bytearray(p.serialize())


@pytest.mark.parametrize("two_byte", [False, True])
def test_level_is_read_whether_first_or_later_and_the_voice_bit_is_left_out(two_byte: bool) -> None:
    first = packet([(1, bytes([0x80 | 42])), (3, b"\x00\x01\x02")], two_byte)
    later = packet([(3, b"\x00\x01\x02"), (5, b"a"), (1, bytes([17]))], two_byte)
    assert read_audio_level(first, 1) == 42
    assert read_audio_level(later, 1) == 17
    assert read_audio_level(later, 2) == -1  # absent


def test_level_of_the_wrong_size_or_behind_the_stop_id_is_not_read() -> None:
    assert read_audio_level(packet([(1, b"\x10\x11")]), 1) == -1  # v2 needs exactly 1 byte
    buf = packet([(3, b"\x00")])
    buf[16:18] = bytes([0xF0, (1 << 4)])  # id 15 ends the block (RFC 8285 4.2)
    assert read_audio_level(buf, 1) == -1


def test_level_is_read_under_the_room_id_after_the_ingest_rewrite() -> None:
    buf = packet([(4, b"\x05"), (9, bytes([30]))])  # the browser's id 9 is the room's 1
    id_map = bytearray(256)
    id_map[9] = AUDIO_LEVEL_ID
    rewrite_extension_ids(buf, len(buf), bytes(id_map))
    assert read_audio_level(buf, AUDIO_LEVEL_ID) == 30


def make_producer(kind: str = "audio", ext_pairs: list[tuple[int, int]] | None = None, transport: object = True) -> Producer:
    return Producer(
        9,
        kind,
        object() if transport else None,  # type: ignore[arg-type]
        False,
        [(1111, None, "default")],
        [(111, 100)],
        [(9, AUDIO_LEVEL_ID)] if ext_pairs is None else ext_pairs,
        48000,
    )


def test_only_audio_producers_received_here_with_the_extension_read_levels() -> None:
    assert make_producer().streams[0].level_id == AUDIO_LEVEL_ID
    assert make_producer(kind="video").streams[0].level_id == 0
    assert make_producer(ext_pairs=[(3, 3)]).streams[0].level_id == 0
    assert make_producer(transport=None).streams[0].level_id == 0  # piped: read at its origin


def test_mean_is_v2s_integer_mean_and_each_take_starts_a_new_interval() -> None:
    producer = make_producer()
    assert producer.take_audio_level() is None  # no packet: left out of the report
    stream = producer.streams[0]
    for level in (30, 31):  # -30 and -31 dBov: v2's int16 mean -61 / 2 = -30
        stream.level_sum += level
        stream.level_count += 1
    assert producer.take_audio_level() == -30
    assert producer.take_audio_level() is None
    stream.level_sum, stream.level_count = 127 * 3, 3
    assert producer.take_audio_level() == -127


class _Source:
    def __init__(self, stream) -> None:
        self.ssrc_table = {stream.ssrc: stream}
        self.rtx_ssrcs: set[int] = set()
        self.rtx_table: dict = {}

    def handle_rtcp(self, n: int, buf: bytearray) -> None:
        raise AssertionError("no RTCP here")


def test_the_forwarder_adds_each_packets_level_whichever_way_it_is_written() -> None:
    from tureen.workers.forward import Forwarder

    producer = make_producer()
    stream = producer.streams[0]
    source = _Source(stream)
    forwarder = Forwarder(batched=False)

    def feed(elements: list[tuple[int, bytes]] | None, two_byte: bool = False, seq: int = 1) -> None:
        p = RtpPacket(payload_type=111, sequence_number=seq, timestamp=seq * 960, ssrc=1111, payload=b"\x10" * 40)
        if elements is not None:
            p.set_extensions(elements, two_byte=two_byte)
        data = p.serialize()
        forwarder.buf[: len(data)] = data
        forwarder.receive(source, len(data))

    feed([(9, bytes([0x80 | 10]))])  # first (the fast path), voice bit set
    feed([(3, b"\x01\x02\x03"), (9, bytes([20]))], seq=2)  # later
    feed([(9, bytes([30]))], two_byte=True, seq=3)  # two-byte form
    feed([(3, b"\x01")], seq=4)  # no level: not counted
    feed(None, seq=5)  # no extension at all
    feed([], seq=6)  # an empty block: the payload's first byte is no level
    assert (stream.level_sum, stream.level_count) == (60, 3)
    assert forwarder.rtp_in == 6
    assert producer.take_audio_level() == -20
