"""Which packets of a received stream to ask its sender for again (RFC 4585 generic NACK).

Sans-I/O, one `NackGenerator` per producer stream whose codec negotiated `nack` (mediasoup
v2's rule): the forwarder tells it about received sequence numbers (`on_packet`), the worker's
NACK timer asks it for retries (`on_timer`); both return the sequence numbers to put in a
NACK now, and the worker sends it (workers/rtp/feedback.py builds the RTCP). Time is passed
in (seconds, one monotonic clock); nothing here reads a clock or touches a socket.

The behaviour, after mediasoup v2's NackGenerator (its figures), with Tureen's own rules where
noted:

- A packet newer than the newest seen by more than one opens a gap: each sequence number in
  between is NACKed at once, then again every `RETRY_INTERVAL` (v2's default RTT) while it is
  missing, at most `MAX_NACKS` times in all; then it is given up (`expired`).
- A packet older than the newest (reordered, or the retransmission on the same SSRC, or the
  sender's RTX unwrapped by the forwarder) that is in the list cancels its entry (`recovered`);
  other old packets and duplicates change nothing.
- Bounded: entries more than `MAX_AGE` sequence numbers behind the newest are dropped (at the
  next timer run, counted as `expired`); a gap
  that would take the list over `MAX_PENDING` entries is not NACKed at all: the list is
  cleared and `wants_key_frame` is set (v2 asks for a key frame then; so does the worker).
  This is also what a very large forward jump (a sender that restarted its numbering) does.
  A packet far behind the newest (more than `MAX_AGE`) twice in a row, consecutive, is a
  restart downwards (RFC 3550 A.1's "bad sequence" rule): the generator starts over there.
- A key frame makes older packets useless to every decoder (Tureen's rule, stricter than v2's,
  which waits for a second key frame): when a packet that begins a key frame arrives, entries
  older than the newest frame end received before it (the last packet with the RTP marker bit)
  are cancelled. Entries after that frame end are kept: they may be the key frame's own first
  packets (an H264 SPS/PPS sent ahead of the IDR slice).

The forwarder calls `on_packet` only when a packet is not the next expected one or entries
are pending; otherwise it just advances `expected` (the fast path costs one compare).
"""

from __future__ import annotations

# s between two NACKs of one packet: mediasoup v2's default RTT (it never measured one).
RETRY_INTERVAL = 0.1
# NACKs per missing packet at most (v2: MaxNackRetries 8 counts the attempt that drops it).
MAX_NACKS = 7
# Sequence numbers: an entry this far behind the newest packet is dropped (v2: MaxPacketAge).
MAX_AGE = 5000
# Entries at most; a gap that would exceed it resets the list (v2: MaxNackPackets).
MAX_PENDING = 1000
# s between two runs of the worker's NACK timer while entries are pending (v2: 50 ms).
TIMER_INTERVAL = 0.05

_MASK = 0xFFFF
_HALF = 0x8000


class NackGenerator:
    """The NACK list of one received RTP stream (16-bit sequence numbers, wrap included)."""

    __slots__ = (
        "expected",
        "pending",
        "frame_end",
        "bad_seq",
        "wants_key_frame",
        "requested",
        "recovered",
        "expired",
        "resets",
    )

    def __init__(self) -> None:
        # Next sequence number in order; -1 until the first packet.
        self.expected = -1
        # seq -> [time of the last NACK, NACKs sent], oldest first (insertion order).
        self.pending: dict[int, list[float]] = {}
        # Newest received packet with the marker bit (a frame's last), or -1.
        self.frame_end = -1
        # After a packet far behind the newest: the one that would confirm a restart there.
        self.bad_seq = -1
        # A gap too large to repair was seen: the caller should ask for a key frame (and
        # clear this).
        self.wants_key_frame = False
        # Counters (worker.dump): sequence numbers NACKed (every retry counts), missing
        # packets that arrived after all, entries given up after MAX_NACKS, list resets.
        self.requested = 0
        self.recovered = 0
        self.expired = 0
        self.resets = 0

    @property
    def newest(self) -> int:
        """The newest sequence number received (-1 before the first packet)."""
        return -1 if self.expected < 0 else (self.expected - 1) & _MASK

    def on_packet(self, seq: int, is_keyframe: bool, now: float, marker: bool = False) -> list[int]:
        """A packet `seq` arrived at `now` (`is_keyframe`: it begins a key frame; `marker`:
        its RTP marker bit, a frame's last packet). Returns the sequence numbers to NACK now:
        those of a gap it opened."""
        seq &= _MASK
        if seq == self.expected:  # in order while entries are pending: the common slow case
            self.expected = (seq + 1) & _MASK
            if is_keyframe and self.pending and self.frame_end >= 0:
                self._drop_older_than(self.frame_end, seq)
            if marker:
                self.frame_end = seq
            return []
        if self.expected < 0:
            self.expected = (seq + 1) & _MASK
            if marker:
                self.frame_end = seq
            return []
        newest = (self.expected - 1) & _MASK
        ahead = (seq - newest) & _MASK
        if ahead == 0:  # a duplicate of the newest
            return []
        if ahead >= _HALF:  # older than the newest
            return self._old(seq, newest, marker)
        self.bad_seq = -1
        out: list[int] = []
        pending = self.pending
        if ahead > 1:
            missing = ahead - 1
            if len(pending) + missing > MAX_PENDING:
                self._reset(seq)
                return []
            self.requested += missing
            entry_at = now
            for i in range(1, ahead):
                s = (newest + i) & _MASK
                pending[s] = [entry_at, 1.0]
                out.append(s)
        self.expected = (seq + 1) & _MASK
        if pending and is_keyframe and self.frame_end >= 0:
            self._drop_older_than(self.frame_end, seq)
        if marker:
            self.frame_end = seq
        return out

    def _old(self, seq: int, newest: int, marker: bool) -> list[int]:
        """A packet older than the newest: a repair, a reordered one, or a restart below."""
        if self.pending.pop(seq, None) is not None:
            self.recovered += 1
        elif (newest - seq) & _MASK > MAX_AGE:
            # RFC 3550 A.1: two consecutive packets far behind are a sender that restarted.
            if seq == self.bad_seq:
                self._reset(seq)
                return []
            self.bad_seq = (seq + 1) & _MASK
            return []
        if marker and (self.frame_end < 0 or 0 < (seq - self.frame_end) & _MASK < _HALF):
            self.frame_end = seq
        return []

    def _reset(self, seq: int) -> None:
        """Start over at `seq`: forget every entry and ask for a key frame instead."""
        self.pending.clear()
        self.expected = (seq + 1) & _MASK
        self.frame_end = -1
        self.bad_seq = -1
        self.wants_key_frame = True
        self.resets += 1

    def _drop_older_than(self, limit: int, newest: int) -> None:
        """Cancel the entries older than `limit` (both seen from `newest`)."""
        pending = self.pending
        horizon = (newest - limit) & _MASK
        if horizon >= _HALF:  # limit is ahead of newest: nothing is older in a usable sense
            return
        while pending:
            first = next(iter(pending))
            if (newest - first) & _MASK <= horizon:
                break
            del pending[first]

    def on_timer(self, now: float) -> list[int]:
        """The worker's NACK timer at `now`: entries whose last NACK is `RETRY_INTERVAL` old
        are NACKed again, or given up once they were NACKed `MAX_NACKS` times."""
        out: list[int] = []
        pending = self.pending
        if pending and self.expected >= 0:  # the age bound, checked here rather than per packet
            newest = (self.expected - 1) & _MASK
            before = len(pending)
            self._drop_older_than((newest - MAX_AGE) & _MASK, newest)
            self.expired += before - len(pending)
        due = now - RETRY_INTERVAL
        gone: list[int] = []
        for seq, entry in pending.items():
            if entry[0] > due:
                continue
            if entry[1] >= MAX_NACKS:
                gone.append(seq)
                continue
            entry[0] = now
            entry[1] += 1
            out.append(seq)
        for seq in gone:
            del pending[seq]
        self.expired += len(gone)
        self.requested += len(out)
        return out

    def reset(self) -> None:
        """Forget the stream (its producer paused: packets it drops are not lost)."""
        self.pending.clear()
        self.expected = -1
        self.frame_end = -1
        self.bad_seq = -1
        self.wants_key_frame = False

    def dump(self) -> dict[str, int]:
        """Counters for worker.dump."""
        return {
            "pending": len(self.pending),
            "requested": self.requested,
            "recovered": self.recovered,
            "expired": self.expired,
            "resets": self.resets,
        }
