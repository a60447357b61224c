"""The NACK generator towards senders (workers/rtp/nack_generator.py), case by case: what a
received stream's sequence numbers (RFC 3550, 16-bit, wrapping) make it ask for (RFC 4585
generic NACK), and when it stops asking. Time is passed in; no clock, no socket."""

from __future__ import annotations

from tureen.workers.rtp.nack_generator import (
    MAX_AGE,
    MAX_NACKS,
    MAX_PENDING,
    RETRY_INTERVAL,
    NackGenerator,
)


def feed(gen: NackGenerator, seqs: list[int], now: float = 0.0) -> list[int]:
    out: list[int] = []
    for seq in seqs:
        out += gen.on_packet(seq, False, now)
    return out


def test_in_order_packets_ask_for_nothing() -> None:
    gen = NackGenerator()
    assert feed(gen, list(range(100, 200))) == []
    assert gen.pending == {} and gen.newest == 199


def test_a_gap_is_nacked_at_once_and_the_packets_cancel_their_entries() -> None:
    gen = NackGenerator()
    assert feed(gen, [10, 11]) == []
    assert gen.on_packet(15, False, 1.0) == [12, 13, 14]
    assert sorted(gen.pending) == [12, 13, 14]
    assert gen.on_packet(13, False, 1.01) == []  # the retransmission (or RTX unwrapped)
    assert sorted(gen.pending) == [12, 14]
    assert gen.recovered == 1 and gen.requested == 3


def test_reordering_is_tolerated() -> None:
    """A packet late by one is NACKed once, then cancelled when it arrives: nothing more."""
    gen = NackGenerator()
    assert feed(gen, [1, 2, 4]) == [3]
    assert gen.on_packet(3, False, 0.01) == []
    assert gen.pending == {}
    assert gen.on_timer(1.0) == []


def test_duplicates_change_nothing() -> None:
    gen = NackGenerator()
    feed(gen, [1, 2, 4])
    for seq in (4, 4, 2, 1):
        assert gen.on_packet(seq, False, 0.02) == []
    assert sorted(gen.pending) == [3] and gen.recovered == 0
    gen.on_packet(3, False, 0.03)
    assert gen.on_packet(3, False, 0.04) == []  # the second copy of a repair
    assert gen.recovered == 1


def test_the_wrap_from_65534_to_1() -> None:
    gen = NackGenerator()
    feed(gen, [65533, 65534])
    assert gen.on_packet(1, False, 0.0) == [65535, 0]
    assert gen.newest == 1
    assert gen.on_packet(0, False, 0.01) == []  # old across the wrap: a repair
    assert list(gen.pending) == [65535]
    assert feed(gen, [2, 3]) == []


def test_retries_every_interval_then_given_up() -> None:
    gen = NackGenerator()
    feed(gen, [1, 3])  # NACK 1 at t=0
    sends = 1
    assert gen.on_timer(RETRY_INTERVAL / 2) == []  # not due yet
    now = 0.0
    while True:
        now += RETRY_INTERVAL
        out = gen.on_timer(now)
        if not out:
            break
        assert out == [2]
        sends += 1
    assert sends == MAX_NACKS
    assert gen.pending == {} and gen.expired == 1 and gen.requested == MAX_NACKS
    assert gen.on_timer(now + 10) == []
    assert gen.on_packet(2, False, now + 10) == []  # arrives after it was given up
    assert gen.recovered == 0


def test_a_key_frame_cancels_entries_of_earlier_frames_only() -> None:
    """Frame A = 10..12 (marker on 12), frame B = 13..15 (marker on 15), key frame K starts
    at 18 with its parameter sets at 16, 17 (one packet each, as ffmpeg sends H264)."""
    gen = NackGenerator()
    gen.on_packet(10, False, 0.0)
    assert gen.on_packet(12, False, 0.0, marker=True) == [11]  # 11 missing (frame A)
    assert gen.on_packet(14, False, 0.0) == [13]  # 13 missing (frame B)
    gen.on_packet(15, False, 0.0, marker=True)
    assert sorted(gen.pending) == [11, 13]
    # The key frame's first packet opens a gap (16, 17) and cancels the entries older than
    # the last frame end before it (15); 16 and 17 (maybe K's parameter sets) stay.
    assert gen.on_packet(18, True, 0.0) == [16, 17]
    assert sorted(gen.pending) == [16, 17]
    gen.on_packet(19, True, 0.01)
    assert sorted(gen.pending) == [16, 17]


def test_a_key_frame_without_a_known_frame_end_keeps_everything() -> None:
    gen = NackGenerator()
    feed(gen, [1, 5])
    gen.on_packet(6, True, 0.0)
    assert sorted(gen.pending) == [2, 3, 4]


def test_a_key_frame_at_the_wrap() -> None:
    gen = NackGenerator()
    gen.on_packet(65530, False, 0.0)
    assert gen.on_packet(65532, False, 0.0, marker=True) == [65531]
    assert gen.on_packet(2, False, 0.0, marker=True) == [65533, 65534, 65535, 0, 1]
    gen.on_packet(3, True, 0.0)
    assert gen.pending == {}  # all before the frame end at 2


def test_a_very_large_jump_is_a_reset_not_a_thousand_nacks() -> None:
    gen = NackGenerator()
    feed(gen, [100, 101])
    assert gen.on_packet(101 + MAX_PENDING + 2, False, 0.0) == []
    assert gen.pending == {} and gen.wants_key_frame and gen.resets == 1
    assert gen.newest == 101 + MAX_PENDING + 2
    # Numbering goes on from there.
    assert gen.on_packet(101 + MAX_PENDING + 4, False, 0.0) == [101 + MAX_PENDING + 3]


def test_a_gap_that_would_overfill_the_list_resets_it() -> None:
    gen = NackGenerator()
    gen.on_packet(0, False, 0.0)
    assert len(gen.on_packet(MAX_PENDING - 9, False, 0.0)) == MAX_PENDING - 10
    assert gen.on_packet(MAX_PENDING + 20, False, 0.0) == []  # 29 more would exceed it
    assert gen.pending == {} and gen.wants_key_frame


def test_a_restart_below_needs_two_consecutive_packets() -> None:
    """RFC 3550 A.1: one packet far behind is ignored; two in a row restart the numbering."""
    gen = NackGenerator()
    feed(gen, [30000, 30001])
    assert gen.on_packet(100, False, 0.0) == []
    assert gen.newest == 30001 and gen.resets == 0
    assert gen.on_packet(101, False, 0.0) == []
    assert gen.newest == 101 and gen.resets == 1
    assert gen.on_packet(103, False, 0.0) == [102]


def test_old_entries_age_out() -> None:
    gen = NackGenerator()
    feed(gen, [0, 2])  # 1 missing
    step = MAX_PENDING // 2  # no gap big enough to reset
    seq = 2
    for _ in range(MAX_AGE // step + 1):
        seq += step
        feed(gen, [seq - step + 1 + i for i in range(step)])  # in order: nothing new
    assert 1 in gen.pending  # checked by the timer, not per packet
    assert gen.on_timer(0.0) == []  # not due for a retry, but too old
    assert gen.pending == {} and gen.expired == 1


def test_reset_forgets_the_stream() -> None:
    gen = NackGenerator()
    feed(gen, [1, 4])
    gen.reset()
    assert gen.pending == {} and gen.expected == -1
    assert feed(gen, [500, 501]) == []
