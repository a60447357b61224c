"""The hot loop: one RTP packet in, N rewritten copies out. Read this before touching it.

Per packet, in this order (every drop bumps one named counter, nothing else happens):

 1. The datagram is already in `Forwarder.buf`, a bytearray reused for every packet of the
    worker (udp.py drains into it; pipe.py copies a piped packet into it). Length n.
 2. Demux by the first two bytes: n < 12 -> truncated; first byte outside 128..191 -> not
    RTP (RFC 7983: STUN 0-3, DTLS 20-63, TURN 64-79; a plain transport has none of them);
    second byte 192..223 -> RTCP (RFC 5761 section 4; counted, handed to `source.handle_rtcp`:
    a plain transport's; WebRTC transports take SRTCP out before the forwarder).
 3. One `Struct.unpack_from` of the fixed header; SSRC -> producer Stream in the source's
    `ssrc_table` (a transport's, or a piped producer's). An SSRC in `rtx_ssrcs` is the
    sender's RTX: unwrapped in place into the original packet (`_receive_rtx`), which goes
    through these steps itself. Unknown SSRC, paused producer, unmapped payload type -> drop.
 4. Ingest rewrite, once, in place: validate CSRC/extension/padding lengths (only when the
    header has any), remap header-extension ids (RFC 8285, unmapped ones become padding),
    payload type producer -> room. An audio stream with the ssrc-audio-level extension
    (`stream.level_id`) adds the packet's level to two integer counters (room.audioLevels).
 4b. Reception statistics; a stream with a NACK generator (rtp/nack_generator.py) gets one
    compare per packet: `_nack_check` runs only for a packet out of order or while packets
    are missing, and hands what to NACK to the worker (`on_nack`).
 5. Pipes: the packet is appended (length-prefixed) to each pipe batch's bytearray of the
    producer; the batches go out as one datagram each after the drain (`after_drain`).
 6. `self.fanout()`: for each consumer in the stream's precomputed `fan` tuple (consumers
    neither paused nor without a sender; the router rebuilds it on every change):
    - native (workers/_native.c, when built; docs/internals.md "The fan-out cores"): the
      same as the batched path below, in C, with no Python object per copy.
    - batched (Linux, sendbatch.SendBatch.fanout): the payload is copied once per packet
      into the batch's ring; per consumer one `Struct.pack_into` of the whole 12-byte header
      into the consumer's slot and one of the slot's payload iovec (SRTP: the copy is
      protected into its own ring slot). `after_drain()` sends each consumer's queue with
      one sendmmsg; send errors are counted then.
    - per copy (`fanout` below, where sendmmsg is missing): one `Struct.pack_into` of
      seq/timestamp/SSRC at offset 2 of the shared buffer, then `send(view)`.
    A late packet (older than the stream's newest: a repair, or reordered) skips the
    consumers that (re)started after it or wait to start (`_late_fan`).
    Whoever calls `receive` must call `after_drain()` before yielding to the event loop
    (the UDP, TCP and pipe readers do, once per drain).

What must not happen per packet: no object built beyond the unpack tuple and one memoryview
slice (and the pipe copy when piped), no dict other than the one SSRC lookup, no logging, no
await, no exception except a send's OSError (counted). Everything else (pause, resync after
a break, events) is decided on the control path and lands here as table contents; the rare
calls back out are `ConsumerRewrite.resync()` for the first packet after a break and
`on_switch` for a key frame that consumers wait for to start or switch on (checked only
while `stream.waiting` is not empty: a consumer that has started costs nothing more), and
`on_nack` when a stream's NACK generator finds packets missing.

With the native core, `Forwarder.receive` is the native receive (workers/_native_rx.c,
"Receiver"; docs/internals.md "The native receive"): steps 1-6 of the common case (a known
SSRC in order, nothing waited for, no ICE-TCP consumer; audio levels included; pipes that are
all PipeBatch with room for the packet, workers/_native_pipe.c) in C, on the same objects; every other packet goes to `receive_python` below, unchanged. The
transports' connected sockets are then drained natively too (`native_drain`: recvmmsg and,
for WebRTC, SRTP unprotect in the same C call). Change what a step does here and the C must
follow (tests/unit/test_native_rx.py and test_native_drain.py compare both).

This narrow interface is the seam the native core sits behind: `fanout(fan, buf, view, seq,
ts, n)` and `flush()` read only `ConsumerRewrite` fields (its `RewriteCore` base).

Figures: scripts/bench_fanout.py measures the fan-out cores alone, `make bench` the whole
worker; docs/benchmarks.md has the results.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from functools import partial
from time import monotonic as _monotonic
from typing import TYPE_CHECKING, Any

from tureen.shared.rtp.packet import (
    header_length,
    payload_length,
    read_audio_level,
    rewrite_extension_ids,
)
from tureen.workers.native import make_fanout, make_receiver
from tureen.workers.rtp.retransmit import STORE_MASK, unwrap_rtx
from tureen.workers.sendbatch import RecvBatch, SendBatch, recv_available
from tureen.workers.sendbatch import available as sendbatch_available
from tureen.workers.transport.pipe import LEN_PREFIX as _LEN_PREFIX
from tureen.workers.transport.pipe import MAX_MESSAGE, PipeBatch
from tureen.workers.transport.udp import DRAIN

if TYPE_CHECKING:
    from tureen.workers.rtp.consumer import ConsumerRewrite

RECV_BUFFER_SIZE = 65536  # any UDP datagram fits: never truncated

_FIXED = struct.Struct("!BBHII")  # b0, b1 (M|PT), seq, timestamp, ssrc
_unpack_fixed = _FIXED.unpack_from
_pack_out = struct.Struct("!HII").pack_into  # seq, timestamp, ssrc at offset 2
_pack_seq = struct.Struct("!H").pack_into
_pack_ssrc = struct.Struct("!I").pack_into


def fanout(fan: tuple[ConsumerRewrite, ...], buf: bytearray, view: memoryview, seq: int, ts: int, n: int) -> int:
    """Rewrite buf for each consumer of `fan` in turn and send `view` (= buf[:n]). Returns
    the number of packets sent."""
    sent = 0
    pl = n - 12 if not buf[0] & 0x3F else payload_length(buf, n)
    for c in fan:
        if c.sync:
            c.resync(seq, ts)
        _pack_out(buf, 2, (seq + c.seq_offset) & 0xFFFF, (ts + c.ts_offset) & 0xFFFFFFFF, c.ssrc)
        try:
            c.send(view)
        except OSError:  # ECONNREFUSED from an earlier ICMP, ENOBUFS, EAGAIN: lost, counted
            c.send_errors += 1
            continue
        c.packets += 1
        c.octets += n
        c.payload_octets += pl
        sent += 1
    return sent


def _late_fan(fan: tuple[ConsumerRewrite, ...], seq: int, newest: int) -> tuple[ConsumerRewrite, ...]:
    """The consumers of `fan` a late packet `seq` (older than the stream's `newest`) may go to:
    not one waiting to (re)start (it starts on a current packet, not a late one), nor one that
    restarted after `seq` (its numbering there already belongs to packets before its break).
    A consumer fed for a while (`LATE_HORIZON` packets) is past any doubt; the 16-bit compare
    would be ambiguous there. A packet more than `MAX_MISORDER` behind is no late packet but a
    sender that jumped (it restarted its numbering): it goes to every consumer, as before."""
    if (newest - seq) & 0xFFFF > MAX_MISORDER:
        return fan
    return tuple(
        c
        for c in fan
        if not c.sync
        and (c.packets - c.sync_packets > LATE_HORIZON or ((seq - c.first_seq) & 0xFFFF) < 0x8000)
    )


LATE_HORIZON = 0x4000
MAX_MISORDER = 1500  # mediasoup v2's (RtpStream.cpp): further behind is a jump, not a late packet

# Named counters, in the order worker.info / worker.dump report them (camelCase on the wire).
COUNTERS = {
    "rtp_in": "rtpIn",
    "rtp_out": "rtpOut",
    "rtcp_in": "rtcpIn",
    "rtcp_malformed": "rtcpMalformed",
    "key_frame_requests": "keyFrameRequests",
    "drop_truncated": "dropTruncated",
    "drop_not_rtp": "dropNotRtp",
    "drop_malformed": "dropMalformed",
    "drop_unknown_ssrc": "dropUnknownSsrc",
    "drop_unknown_pt": "dropUnknownPt",
    "drop_rtx": "dropRtx",
    "rtx_in": "rtxIn",
    "nack_served": "nackServed",
    # RTCP feedback from receivers (consumers' transports) and the retransmissions sent for
    # it: the Prometheus families of docs/operations.md, "Metrics".
    "nack_received": "nackReceived",
    "pli_received": "pliReceived",
    "rtx_sent": "rtxSent",
    "nack_forwarded": "nackForwarded",
    "drop_paused": "dropProducerPaused",
    "drop_stranger": "dropStranger",
    "send_errors": "sendErrors",
    "pipe_packets_out": "pipePacketsOut",
    "pipe_messages_out": "pipeMessagesOut",
    "pipe_dropped": "pipeDropped",
    "pipe_packets_in": "pipePacketsIn",
    "pipe_unknown_producer": "pipeUnknownProducer",
}

_INPUT_COUNTERS = (
    "rtp_in",
    "rtcp_in",
    "drop_truncated",
    "drop_not_rtp",
    "drop_malformed",
    "drop_unknown_ssrc",
    "drop_unknown_pt",
    "drop_rtx",
    "drop_paused",
    "drop_stranger",
)


class Forwarder:
    __slots__ = ("buf", "mv", "dirty", "on_switch", "on_nack", "batch", "fanout", "recv_batch", "receive", "rx", *COUNTERS)

    def __init__(self, batched: bool = True, core: str = "auto", io_uring: bool = True, native_rx: bool = True) -> None:
        self.buf = bytearray(RECV_BUFFER_SIZE)
        self.mv = memoryview(self.buf)
        # Pipe batches that got packets during the current drain (see pipe.PipeBatch).
        self.dirty: list = []
        # Simulcast: called with a stream whose waiting consumers may switch onto it now
        # (router.complete_switch); the worker sets it.
        self.on_switch = None
        # Called with (stream, seqs) when a stream's NACK generator wants a NACK sent (or a
        # key frame: `wants_key_frame`); the worker sets it.
        self.on_nack = None
        # The fan-out, one contract, three cores: native (workers/_native.c, when built and
        # `core` is not "python"), batched in Python (one sendmmsg per consumer per drain,
        # sendbatch.py) where libc has sendmmsg, else one send per copy (`fanout` above).
        self.batch: Any = None
        if batched:
            self.batch = make_fanout(core, uring=io_uring)
            if self.batch is None and sendbatch_available():
                self.batch = SendBatch()
        self.fanout = self.batch.fanout if self.batch is not None else fanout
        # recvmmsg slots the transports' connected sockets drain into (udp.py), or None.
        self.recv_batch: RecvBatch | None = RecvBatch(DRAIN) if batched and recv_available() else None
        for name in COUNTERS:
            setattr(self, name, 0)
        # `receive(source, n)`: with the native fan-out core (and `native_rx`), the native
        # receive (workers/_native_rx.c, Receiver): the common case of `receive_python` in C,
        # anything else handed to `receive_python` untouched; otherwise `receive_python`.
        self.rx: Any = None
        if native_rx and self.batch is not None and self.batch.dump()["core"] == "native":
            self.rx = make_receiver(self.batch, self, self.receive_python, STORE_MASK, DRAIN)
            # Step 5 natively too: a packet of a stream piped only to other workers' PipeBatch
            # is appended to them in C (workers/_native_pipe.c); a host leg's is Python's.
            self.rx.set_pipe(PipeBatch, MAX_MESSAGE)
        self.receive = self.rx.receive if self.rx is not None else self.receive_python

    def native_drain(self, source: Any, secure: bool) -> Callable[[int, Callable[[int], None]], tuple[int, int, int]] | None:
        """The native drain of a connected socket of `source` (a transport) for udp.py, or
        None without the native receive: `drain(fd, handler)` reads up to DRAIN datagrams with
        one recvmmsg and takes each in order, the common case in C and any other through
        `handler(n)` (the packet in buf[:n]); returns (datagrams, octets, errors). `secure`
        (WebRTC): SRTP packets are unprotected in C with `source.srtp`'s inbound session
        (failures counted in `source.srtp_errors`); not secure, `handler(n)` must be
        `self.receive(source, n)` for RTP (a plain transport's)."""
        if self.rx is None:
            return None
        return partial(self.rx.drain, source, secure)

    def receive_python(self, source, n: int) -> None:
        """Forward the packet in buf[:n] that arrived on `source` (a transport, or a piped
        producer), which provides `ssrc_table` and `rtx_ssrcs`. The whole receive path in
        Python (`receive` is this, or the native receive that hands all but the common case
        to this)."""
        buf = self.buf
        if n < 12:
            if n >= 8 and 128 <= buf[0] <= 191 and 192 <= buf[1] <= 223:
                self.rtcp_in += 1  # an RTCP RR without report blocks is 8 bytes
                source.handle_rtcp(n, buf)
            else:
                self.drop_truncated += 1
            return
        b0, b1, seq, ts, ssrc = _unpack_fixed(buf)
        if b0 < 128 or b0 > 191:
            self.drop_not_rtp += 1
            return
        if 192 <= b1 <= 223:
            self.rtcp_in += 1
            source.handle_rtcp(n, buf)
            return
        stream = source.ssrc_table.get(ssrc)
        if stream is None:
            if ssrc in source.rtx_ssrcs:
                self._receive_rtx(source, n, ssrc)
            else:
                self.drop_unknown_ssrc += 1
            return
        if stream.paused:
            self.drop_paused += 1
            return
        pt = stream.pt_map[b1 & 0x7F]
        if pt == 0xFF:
            self.drop_unknown_pt += 1
            return
        if b0 & 0x3F:  # CSRCs, extension or padding: check lengths, remap extension ids
            try:
                if b0 & 0x10 and stream.ext_map is not None:
                    rewrite_extension_ids(buf, n, stream.ext_map)
                    level_id = stream.level_id
                    if level_id:  # an audio producer's RFC 6464 level, once validated
                        # Senders put it first: the byte after the block's 4-byte header.
                        x = 16 + ((b0 & 0x0F) << 2)
                        if buf[x] == level_id << 4 and buf[x - 4] == 0xBE and buf[x - 1]:
                            stream.level_sum += buf[x + 1] & 0x7F
                            stream.level_count += 1
                        else:
                            level = read_audio_level(buf, level_id)
                            if level >= 0:
                                stream.level_sum += level
                                stream.level_count += 1
                else:
                    header_length(buf, n)
            except ValueError:
                self.drop_malformed += 1
                return
        buf[1] = (b1 & 0x80) | pt
        # Interarrival jitter (RFC 3550 A.8) in RTP units, for the receiver reports.
        now = _monotonic()
        transit = int(now * stream.clock_rate) - ts
        if stream.packets == 0:
            stream.base_seq = stream.max_seq = seq
            stream.max_ts = ts
            stream.max_at = now
        else:
            if ((seq - stream.max_seq) & 0xFFFF) < 0x8000:
                if seq < stream.max_seq:
                    stream.cycles += 0x10000
                stream.max_seq = seq
                stream.max_ts = ts
                stream.max_at = now
            d = transit - stream.transit
            if -0x80000000 < d < 0x80000000:
                stream.jitter += ((d if d >= 0 else -d) - stream.jitter) * 0.0625
        stream.transit = transit
        stream.packets += 1
        stream.octets += n
        self.rtp_in += 1
        nack = stream.nack  # RTCP NACK towards the sender (rtp/nack_generator.py), or None
        if nack is not None:
            if seq == nack.expected and not nack.pending:
                nack.expected = (seq + 1) & 0xFFFF  # in order, nothing missing: all there is
            else:
                self._nack_check(stream, nack, seq, b1, n, now)
        if stream.waiting:  # consumers start (or switch) on this stream at a key frame
            self._maybe_switch(stream, n, seq, ts)
        view = self.mv[:n]
        store = stream.store
        if store is not None:  # video: kept for retransmission (rtp/retransmit.py)
            store[seq & STORE_MASK] = bytes(view)
        pipes = stream.pipes
        if pipes:
            prefix = _LEN_PREFIX[n] if n < 2048 else n.to_bytes(2, "big")
            for batch in pipes:  # pipe.py: length-prefixed records, one message per drain
                if not batch.count:
                    self.dirty.append(batch)
                out = batch.out
                out += prefix
                out += view
                batch.count += 1
        fan = stream.fan
        if fan and seq != stream.max_seq:  # a late packet (a repair, or reordered)
            fan = _late_fan(fan, seq, stream.max_seq)
        if fan:
            sent = self.fanout(fan, buf, view, seq, ts, n)
            self.rtp_out += sent
            if sent != len(fan):
                self.send_errors += len(fan) - sent

    def _nack_check(self, stream, nack, seq: int, b1: int, n: int, now: float) -> None:
        """A packet out of order, or one while packets are missing: tell the stream's NACK
        generator (whether it begins a key frame matters only while entries are pending, and
        only a packet right after a frame end can) and hand what to NACK to the worker."""
        key = False
        # Only a frame's first packet can begin a key frame: the one after a frame end.
        frame_start = nack.frame_end == (seq - 1) & 0xFFFF
        if seq == nack.expected and not frame_start:  # in order mid-frame: what on_packet does
            nack.expected = (seq + 1) & 0xFFFF
            if b1 & 0x80:
                nack.frame_end = seq
            return
        if frame_start and nack.pending:
            buf = self.buf
            check = stream.producer.key_checks.get(buf[1] & 0x7F)
            if check is not None:
                try:
                    start = header_length(buf, n)
                except ValueError:  # pragma: no cover - validated on ingest already
                    start = n
                end = n - buf[n - 1] if buf[0] & 0x20 else n
                key = check.key_frame(buf, start, end)
        seqs = nack.on_packet(seq, key, now, bool(b1 & 0x80))
        if (seqs or nack.wants_key_frame) and self.on_nack is not None:
            self.on_nack(stream, seqs)

    def _maybe_switch(self, stream, n: int, seq: int, ts: int) -> None:
        """Consumers wait to start on `stream`: if the packet in buf[:n] is where a decoder
        can start (rtp/codecs.py), let them (`on_switch`) before it is fanned out."""
        if seq != stream.max_seq:
            return  # late or retransmitted: what came after it was not theirs
        buf = self.buf
        if stream.wait_ts < 0:
            stream.wait_ts = ts
        check = stream.producer.key_checks.get(buf[1] & 0x7F)
        if check is not None:
            try:
                start = header_length(buf, n)
            except ValueError:  # pragma: no cover - validated on ingest already
                return
            end = n - buf[n - 1] if buf[0] & 0x20 else n
            if check.key_frame(buf, start, end):
                stream.key_frame_seen = True
            elif (
                check.bare_key_frame is None
                or stream.key_frame_seen  # the sender sends parameter sets in band
                or ts == stream.wait_ts  # its access unit began before the wait: not seen whole
                or not check.bare_key_frame(buf, start, end)
            ):
                return
        if self.on_switch is not None:
            self.on_switch(stream)

    def _receive_rtx(self, source, n: int, rtx_ssrc: int) -> None:
        """A retransmission from the sender (answering a NACK we passed on): unwrap it in
        place into the original packet and forward that (receivers drop duplicates)."""
        stream = source.rtx_table[rtx_ssrc]
        buf = self.buf
        try:
            osn, n = unwrap_rtx(buf, n)
        except ValueError:
            self.drop_rtx += 1  # a padding-only probe, or malformed
            return
        pt = stream.producer.rtx_apt[buf[1] & 0x7F]
        if pt == 0xFF:
            self.drop_unknown_pt += 1
            return
        buf[1] = (buf[1] & 0x80) | pt
        _pack_seq(buf, 2, osn)
        _pack_ssrc(buf, 8, stream.ssrc)
        self.rtx_in += 1
        stream.repaired += 1
        self.receive(source, n)

    def after_drain(self) -> None:
        """End of one socket drain: send the copies queued and the pipe batches filled
        during it. Whoever calls `receive` calls this before yielding to the loop. The pipe
        batches go first: another worker (on another core) starts on them while this one
        sends its own copies."""
        if self.dirty:
            for batch in self.dirty:
                batch.flush(self)
            self.dirty.clear()
        if self.batch is not None:
            failed = self.batch.flush()
            if failed:
                self.rtp_out -= failed
                self.send_errors += failed

    def core(self) -> str:
        """Which fan-out runs: "native", "python" (SendBatch) or "per-copy"."""
        return "per-copy" if self.batch is None else self.batch.dump()["core"]

    def dump_fanout(self) -> dict[str, Any]:
        if self.batch is None:
            return {"core": "per-copy"}
        dump = self.batch.dump()
        if self.rx is not None:  # packets the native receive took, and those it handed on
            dump.update(self.rx.dump())
        return dump

    def packets_in(self) -> int:
        """Every packet the forwarder looked at, forwarded or dropped."""
        return sum(getattr(self, name) for name in _INPUT_COUNTERS)

    def counters(self) -> dict[str, int]:
        return {wire: getattr(self, name) for name, wire in COUNTERS.items()}
