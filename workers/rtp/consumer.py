"""Per-consumer rewrite state: what forward.py writes into a packet before sending it.

An outgoing packet is the producer's packet with the consumer's SSRC and

    out_seq = (in_seq + seq_offset) mod 2^16
    out_ts  = (in_ts  + ts_offset)  mod 2^32

The offsets stay fixed while the consumer is fed without a break, so gaps and reordering of
the input show through unchanged (the receiver's NACK needs them). When feeding stops
(consumer paused, producer paused, a discontinuity from a pipe, a switch to another stream of
the producer) `interrupt()` records the last sequence number and timestamp sent; the next
packet fed calls `resync()`, which picks new offsets so the output continues at last + 1:
output sequence numbers are continuous per consumer across pause/resume and stream changes.
A late packet (a retransmission from the sender, or reordered) goes out with the same offsets,
so it lands in its place, unless it is older than the packet the consumer (re)started on: its
number there was given to an earlier packet, so the forwarder leaves that consumer out
(`first_seq`, forward._late_fan).
Timestamps keep their offset across a pause (media time went on; the receiver's jitter
buffer expects that) and are rebased across a stream change (another stream has another
random base), advanced by the wall-clock time that passed.

The hot loop reads these slots directly; the control path (worker.py) calls the methods.
The fields the fan-out itself reads and writes (fd, ssrc, offsets, sync, srtp_tx, counters)
live in the base class, `native.RewriteCore`: a C struct when the native core is built
(workers/_native.c reads them there), else plain slots.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from tureen.shared.rtp.seq import SEQ_MASK, TS_MASK
from tureen.workers.native import RewriteCore


def _no_send(data: object) -> None:  # pragma: no cover - never in a fan-out table
    raise OSError("consumer has no transport to send on")


class ConsumerRewrite(RewriteCore):
    __slots__ = (
        "consumer_id",
        "started",
        "last_seq",
        "last_ts",
        "rebase_ts",
        "interrupted_at",
        "clock_rate",
        "profile",
        "reported_profile",
        "send",
        "protect",
        "lane",
        "queued",
        "on_profile",
        "first_seq",
        "sync_packets",
    )

    def __init__(
        self,
        consumer_id: int,
        ssrc: int,
        clock_rate: int = 90000,
        on_profile: Callable[[ConsumerRewrite], None] | None = None,
    ) -> None:
        self.consumer_id = consumer_id
        self.ssrc = ssrc
        self.seq_offset = 0
        self.ts_offset = 0
        # True until the next packet fed re-derives the offsets (first packet, after a break).
        self.sync = True
        # Whether anything was ever sent: before that there is nothing to continue from.
        self.started = False
        self.last_seq = 0
        self.last_ts = 0
        self.rebase_ts = False
        self.interrupted_at = 0.0
        self.clock_rate = clock_rate
        # Profile of the stream feeding the consumer; reported once media flows from it.
        self.profile = "default"
        self.reported_profile: str | None = None
        # Sends one rewritten packet (a bytes-like view) on the consumer's transport.
        self.send: Callable[[object], object] = _no_send
        # The batched paths: the connected socket's fd (-1: use `send` per copy); for SRTP
        # the transport's outbound srtp_t (srtp_tx, the native core) and its protect-at-
        # pointer (SendBatch), 0/None for plain RTP; SendBatch's place of the consumer in the
        # current batch (first mmsghdr slot, copies queued).
        self.fd = -1
        self.srtp_tx = 0
        self.protect: Callable[[object, int], int] | None = None
        self.lane = 0
        self.queued = 0
        self.packets = 0
        self.octets = 0
        # RTP payload bytes sent (RFC 3550's SR octet count: no header, no padding).
        self.payload_octets = 0
        self.send_errors = 0
        self.on_profile = on_profile
        # The input seq the last resync happened at and `packets` then: a late packet older
        # than that is not this consumer's (forward._late_fan).
        self.first_seq = 0
        self.sync_packets = 0

    def interrupt(self, max_seq: int, max_ts: int, rebase_ts: bool = False) -> None:
        """Feeding stops; max_seq/max_ts are the highest input seq/ts of the feeding stream.

        Idempotent while already interrupted: the first call holds the values to continue from.
        """
        if self.sync:
            self.rebase_ts = self.rebase_ts or rebase_ts
            return
        self.sync = True
        self.last_seq = (max_seq + self.seq_offset) & SEQ_MASK
        self.last_ts = (max_ts + self.ts_offset) & TS_MASK
        self.rebase_ts = rebase_ts
        self.interrupted_at = time.monotonic()

    def resync(self, seq: int, ts: int) -> None:
        """Called by the hot loop for the first packet after a break (or ever)."""
        if self.started:
            self.seq_offset = (self.last_seq + 1 - seq) & SEQ_MASK
            if self.rebase_ts:
                elapsed = int((time.monotonic() - self.interrupted_at) * self.clock_rate)
                self.ts_offset = (self.last_ts + max(1, elapsed) - ts) & TS_MASK
        else:
            self.started = True
        self.sync = False
        self.rebase_ts = False
        self.first_seq = seq
        self.sync_packets = self.packets
        if self.profile != self.reported_profile:
            self.reported_profile = self.profile
            if self.on_profile is not None:
                self.on_profile(self)

    def out_seq(self, seq: int) -> int:
        return (seq + self.seq_offset) & SEQ_MASK

    def out_ts(self, ts: int) -> int:
        return (ts + self.ts_offset) & TS_MASK

    def stats(self) -> dict[str, int]:
        return {"packets": self.packets, "octets": self.octets, "sendErrors": self.send_errors}
