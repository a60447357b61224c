"""Wrap-around arithmetic for RTP sequence numbers (16 bits) and timestamps (32 bits).

RTP counters wrap: 65535 + 1 = 0. "Newer" follows serial-number arithmetic (RFC 1982, as
mediasoup's SeqManager::IsSeqHigherThan): a is newer than b when it is ahead by less than
half the space. Exactly half the space apart is ambiguous; like mediasoup we call the larger
raw value newer, so that is_newer(a, b) and is_newer(b, a) are never both true.

Pure functions, no I/O; workers/rtp/consumer.py and the tests use them.
"""

from __future__ import annotations

SEQ_BITS = 16
SEQ_MOD = 1 << SEQ_BITS
SEQ_MASK = SEQ_MOD - 1
SEQ_HALF = SEQ_MOD >> 1

TS_BITS = 32
TS_MOD = 1 << TS_BITS
TS_MASK = TS_MOD - 1
TS_HALF = TS_MOD >> 1


def seq_add(seq: int, delta: int) -> int:
    """seq + delta modulo 2^16 (delta may be negative)."""
    return (seq + delta) & SEQ_MASK


def seq_diff(a: int, b: int) -> int:
    """Signed distance from b to a, in [-32768, 32767]: seq_add(b, seq_diff(a, b)) == a."""
    d = (a - b) & SEQ_MASK
    return d - SEQ_MOD if d >= SEQ_HALF else d


def seq_newer(a: int, b: int) -> bool:
    """True when a comes after b in sequence order (wrap-aware)."""
    d = (a - b) & SEQ_MASK
    if d == SEQ_HALF:
        return a > b
    return 0 < d < SEQ_HALF


def ts_add(ts: int, delta: int) -> int:
    """ts + delta modulo 2^32 (delta may be negative)."""
    return (ts + delta) & TS_MASK


def ts_diff(a: int, b: int) -> int:
    """Signed distance from b to a, in [-2^31, 2^31 - 1]."""
    d = (a - b) & TS_MASK
    return d - TS_MOD if d >= TS_HALF else d


def ts_newer(a: int, b: int) -> bool:
    """True when timestamp a comes after b (wrap-aware)."""
    d = (a - b) & TS_MASK
    if d == TS_HALF:
        return a > b
    return 0 < d < TS_HALF


class SeqUnwrapper:
    """Extends 16-bit sequence numbers to a monotonic-ish 64-bit count ("ext" seq).

    Each input is placed at the unwrapped value nearest to the highest one seen so far,
    so reordered packets around a wrap land before it, not 65536 later.
    """

    __slots__ = ("_highest",)

    def __init__(self) -> None:
        self._highest: int | None = None

    @property
    def highest(self) -> int | None:
        return self._highest

    def unwrap(self, seq: int) -> int:
        if not 0 <= seq <= SEQ_MASK:
            raise ValueError(f"sequence number {seq} is outside 0..65535")
        if self._highest is None:
            self._highest = seq
            return seq
        ext = self._highest + seq_diff(seq, self._highest & SEQ_MASK)
        if ext > self._highest:
            self._highest = ext
        return ext
