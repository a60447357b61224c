"""The worker's lookup tables: what the forwarder reads, kept ready so it never computes.

    transport.ssrc_table   SSRC -> Stream, for the producers received on that transport
    producer.ssrc_table    the same for one producer (a piped producer's packets are looked
                           up there: pipe messages name the producer)
    stream.fan             tuple of ConsumerRewrite: the consumers that forward right now
    stream.pipes           tuple of PipeBatch (and host_leg.LegOut): the other workers
                           (and hosts) that get a copy

Only worker.py calls the mutating methods here (it validates first, so these assume valid
input); after every change that can affect forwarding the affected `fan` tuples are rebuilt,
so the data path never checks paused flags or transports per consumer.

Which stream feeds a consumer: a single-stream producer's only stream. With several streams
(simulcast) workers/simulcast.py decides (which streams are active, the target, whether to
move now or at the target's next key frame) and the router applies its moves here.

Where a consumer starts: a video consumer that is not in its stream's fan (new, resumed, its
transport just ready, its producer resumed, moved to another stream) enters it only at a
packet a decoder can start on (workers/rtp/codecs.py). Until then it sits in the stream's
`waiting` list, which makes the forwarder check each packet of that stream; the first start
point moves every waiting consumer into the fan before that packet is fanned out
(`complete_switch`). Audio consumers enter at once: every audio packet decodes by itself.

Why one module over 600 lines (about 730): it holds the records the forwarder reads
(`Stream`, `Producer`, `Consumer`: mostly their slots, each with a comment, and their dumps;
about 320 lines) and `Router`, the only code that writes them. Kept together so that every
field sits next to the writes that keep the tables consistent (a `fan` rebuilt after each
change, SSRC tables re-indexed with the streams), and the "one writer" rule can be checked
in one file. The seam if it grows: the three records into a module of their own (ten
modules and scripts import them from here today).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any

from tureen.shared.logs import Subject
from tureen.shared.rtp.capabilities import AUDIO_LEVEL_ID
from tureen.workers.rtp.codecs import StartCheck
from tureen.workers.rtp.consumer import ConsumerRewrite
from tureen.workers.rtp.retransmit import new_store
from tureen.workers.simulcast import Action, active_streams, choose_stream, decide, next_activity
from tureen.workers.stats import RateMeter

if TYPE_CHECKING:
    from tureen.workers.rtp.nack_generator import NackGenerator
    from tureen.workers.transport.base import Transport
    from tureen.workers.transport.host_leg import LegIn, LegOut
    from tureen.workers.transport.pipe import PipeBatch

log = logging.getLogger("tureen.workers.router")

IDENTITY_PT = bytes(range(128))
# s: how often consumers waiting for a start point ask for a key frame again (the sender may
# have missed the first request, or ignore them: ffmpeg sends key frames on its own schedule).
KEY_FRAME_ASK_AGAIN = 1.0


class Stream:
    """One encoding of a producer (one SSRC). Hot fields first."""

    __slots__ = (
        "paused",
        "pt_map",
        "ext_map",
        "fan",
        "pipes",
        "max_seq",
        "max_ts",
        "max_at",
        "packets",
        "octets",
        "ssrc",
        "rtx_ssrc",
        "profile",
        "producer",
        "consumers",
        "last_key_request",
        "clock_rate",
        "store",
        "base_seq",
        "cycles",
        "transit",
        "jitter",
        "expected_prior",
        "received_prior",
        "last_sr",
        "activity",
        "seen_packets",
        "waiting",
        "wait_ts",
        "key_frame_seen",
        "fraction_lost",
        "nack_count",
        "pli_count",
        "repaired",
        "rate",
        "nack",
        "level_id",
        "level_sum",
        "level_count",
    )

    def __init__(self, producer: Producer, ssrc: int, rtx_ssrc: int | None, profile: str) -> None:
        self.producer = producer
        self.ssrc = ssrc
        self.rtx_ssrc = rtx_ssrc
        self.profile = profile
        self.paused = producer.paused
        self.pt_map = producer.pt_map
        self.ext_map = producer.ext_map
        self.fan: tuple[ConsumerRewrite, ...] = ()
        self.pipes: tuple[PipeBatch, ...] = ()
        self.max_seq = 0
        self.max_ts = 0
        # time.monotonic() when the packet of max_seq arrived: the consumers' SRs advance
        # its timestamp by the time since (rtp/feedback.py, Reports.sender_reports).
        self.max_at = 0.0
        self.packets = 0
        self.octets = 0
        self.consumers: dict[int, Consumer] = {}
        self.last_key_request = -1e9  # loop time of the last key frame asked for
        self.clock_rate = producer.clock_rate
        # Video keeps its last packets for NACKs (rtp/retransmit.py); audio is not repaired.
        self.store = new_store() if producer.kind == "video" else None
        # Reception statistics (RFC 3550 A.1, A.3, A.8) for receiver reports and stats.
        self.base_seq = 0
        self.cycles = 0
        self.transit = 0
        self.jitter = 0.0
        self.expected_prior = 0
        self.received_prior = 0
        # The sender's last SR: (NTP timestamp, RTP timestamp, loop time it arrived).
        self.last_sr: tuple[int, int, float] | None = None
        # Simulcast: one bit per activity tick (250 ms) that saw packets, the last four kept;
        # consumers that switch to this stream at its next key frame (the forwarder checks
        # packets for one only while this list is not empty).
        self.activity = 0
        self.seen_packets = 0
        # Consumers that start on this stream at its next start point: simulcast switches
        # (their `pending` is this stream) and consumers that start here (their `stream` is
        # this one, not in `fan` yet). While the list is not empty the forwarder checks each
        # packet (forward.py `_maybe_switch`): the RTP timestamp of the first packet it
        # checked since the list was last empty (-1: none yet), and whether it ever saw a
        # key frame here (an H264 SPS: the sender sends its parameter sets in band).
        self.waiting: list[Consumer] = []
        self.wait_ts = -1
        self.key_frame_seen = False
        # Stats (workers/stats.py), all written on the control path: the fraction lost of
        # the last RR we sent, NACK packets and PLIs we sent to the sender, packets its RTX
        # repaired, and the octet samples the bitrate comes from.
        self.fraction_lost = 0
        self.nack_count = 0
        self.pli_count = 0
        self.repaired = 0
        self.rate = RateMeter()
        # The NACK generator towards the sender (rtp/nack_generator.py) when the producer's
        # codec negotiated nack; the worker sets it (worker._set_nack).
        self.nack: NackGenerator | None = None
        # Audio levels (RFC 6464) for room.audioLevels: the room's id of the extension (0 =
        # none: the forwarder reads nothing), and the sum and count of the levels (0..127,
        # -dBov) since the supervisor last asked (producer.getAudioLevels).
        self.level_id = producer.level_id
        self.level_sum = 0
        self.level_count = 0

    @property
    def active(self) -> bool:
        """Packets arrived within the last second (four activity ticks)."""
        return bool(self.activity)

    def expected(self) -> int:
        """Packets expected so far: extended highest sequence number - base + 1."""
        return self.cycles + self.max_seq - self.base_seq + 1 if self.packets else 0

    def dump(self) -> dict[str, Any]:
        return {
            "ssrc": self.ssrc,
            "rtxSsrc": self.rtx_ssrc,
            "profile": self.profile,
            "packets": self.packets,
            "octets": self.octets,
            "lost": max(0, self.expected() - self.packets),
            "jitter": int(self.jitter),
            "consumerIds": sorted(self.consumers),
            # NACKs towards the sender: null when its codec did not negotiate nack.
            "nack": self.nack.dump() if self.nack is not None else None,
        }


class Producer:
    def __init__(
        self,
        producer_id: int,
        kind: str,
        transport: Transport | None,
        paused: bool,
        streams: list[tuple[int, int | None, str]],
        pt_pairs: list[tuple[int, int]],
        ext_pairs: list[tuple[int, int]],
        clock_rate: int,
        rtx_pairs: list[tuple[int, int]] = (),  # type: ignore[assignment]
    ) -> None:
        self.id = producer_id
        self.subject = Subject("producer", producer_id)  # the worker names it (log lines)
        self.kind = kind
        self.transport = transport
        self.paused = paused
        self.clock_rate = clock_rate
        self.pt_map, self.ext_map = self.maps_for(pt_pairs, ext_pairs)
        self.level_id = self.audio_level_id(ext_pairs)
        self.set_rtx(pt_pairs, rtx_pairs)
        self.streams = [Stream(self, ssrc, rtx, profile) for ssrc, rtx, profile in streams]
        # A piped producer is a forwarding source itself (pipe.py looks it up by id).
        self.ssrc_table: dict[int, Stream] = {}
        self.rtx_table: dict[int, Stream] = {}
        self.rtx_ssrcs: set[int] = set()
        self.index_streams()
        self.consumers: dict[int, Consumer] = {}
        self.pipes: dict[int, PipeBatch] = {}  # destination worker index -> batch
        # Host legs (transport/host_leg.py): the origin's ends by leg id; on a gateway, the
        # end whose datagrams feed this piped copy (its video streams then NACK over it).
        self.legs: dict[int, LegOut] = {}
        self.leg_in: LegIn | None = None
        # RTCP that came through the pipe (piped producers only), see handle_rtcp.
        # Room PT -> how to find a start point in its codec's packets (None: every packet).
        self.key_checks: dict[int, StartCheck | None] = {}
        # Simulcast: the streams active at the last activity tick (None: not ticked yet).
        self.active_streams: list[Stream] | None = None

    def maps_for(self, pt_pairs: list[tuple[int, int]], ext_pairs: list[tuple[int, int]]) -> tuple[bytes, bytes | None]:
        """(payload type map, extension id map); a piped producer's packets were rewritten
        on ingest by the origin worker already, so it maps nothing."""
        if self.transport is None:
            return IDENTITY_PT, None
        pt_map = bytearray(b"\xff" * 128)  # 0xff = not mapped: dropped
        for src, dst in pt_pairs:
            pt_map[src] = dst
        ext_map = bytearray(256)  # 0 = not mapped: dropped
        for src, dst in ext_pairs:
            ext_map[src] = dst
        return bytes(pt_map), bytes(ext_map)

    def audio_level_id(self, ext_pairs: list[tuple[int, int]]) -> int:
        """The room's ssrc-audio-level id when this audio producer's packets carry it and
        arrive here from its sender (a piped copy is read on its origin worker), else 0."""
        if self.kind != "audio" or self.transport is None:
            return 0
        return AUDIO_LEVEL_ID if any(dst == AUDIO_LEVEL_ID for _, dst in ext_pairs) else 0

    def take_audio_level(self) -> int | None:
        """The mean level in dBov (-127..0) of the packets since the last call, rounded
        toward 0 dBov as mediasoup v2's integer mean is; None when no packet carried one.
        Starts the next interval."""
        total = count = 0
        for stream in self.streams:
            total += stream.level_sum
            count += stream.level_count
            stream.level_sum = stream.level_count = 0
        return -(total // count) if count else None

    def set_rtx(self, pt_pairs: list[tuple[int, int]], rtx_pairs: list[tuple[int, int]]) -> None:
        """RTX payload types from the codecs' [room media PT, room RTX PT] pairs:
        `room_rtx_pt` (media -> RTX, room PTs: what a consumer's RTX uses) and `rtx_apt`
        (RTX -> media in the PTs this producer's packets carry: to unwrap its RTX)."""
        self.room_rtx_pt = dict(rtx_pairs)
        if self.transport is None:
            to_room = {pt: pt for pair in rtx_pairs for pt in pair}
        else:
            to_room = dict(pt_pairs)
        from_room = {room: own for own, room in to_room.items()}
        apt = bytearray(b"\xff" * 128)
        for media, rtx in rtx_pairs:
            if media in from_room and rtx in from_room:
                apt[from_room[rtx]] = from_room[media]
        self.rtx_apt = bytes(apt)

    def index_streams(self) -> None:
        self.ssrc_table = {s.ssrc: s for s in self.streams}
        self.rtx_table = {s.rtx_ssrc: s for s in self.streams if s.rtx_ssrc is not None}
        self.rtx_ssrcs = set(self.rtx_table)

    @property
    def piped(self) -> bool:
        return self.transport is None

    def handle_rtcp(self, n: int, buf: bytearray) -> None:
        """A piped producer as a forwarding source: nothing sends RTCP down a pipe (each
        worker reports to its own consumers' receivers), so a record that looks like RTCP
        is counted by the forwarder (`rtcpIn`) and dropped."""

    def dump(self) -> dict[str, Any]:
        return {
            "producerId": self.id,
            "kind": self.kind,
            "transportId": self.transport.id if self.transport else None,
            "paused": self.paused,
            "streams": [s.dump() for s in self.streams],
            "consumerIds": sorted(self.consumers),
            "pipeWorkers": sorted(self.pipes),
            "legs": sorted(self.legs),
            "legIn": self.leg_in.leg_id if self.leg_in is not None else None,
        }


class Consumer:
    def __init__(
        self,
        consumer_id: int,
        kind: str,
        producer: Producer,
        transport: Transport,
        ssrc: int,
        rtx_ssrc: int | None,
        paused: bool,
        preferred_profile: str,
        on_profile: Callable[[ConsumerRewrite], None] | None,
    ) -> None:
        self.id = consumer_id
        self.subject = Subject("consumer", consumer_id)  # the worker names it (log lines)
        self.kind = kind
        self.producer = producer
        self.transport = transport
        self.ssrc = ssrc
        self.rtx_ssrc = rtx_ssrc
        self.paused = paused
        self.preferred_profile = preferred_profile
        self.rewrite = ConsumerRewrite(consumer_id, ssrc, producer.clock_rate, on_profile)
        self.stream: Stream | None = None
        # Simulcast: the stream this consumer switches to at its next key frame.
        self.pending: Stream | None = None
        self.rtx_seq = random.randrange(0x10000)
        self.nack_served = 0
        self.nack_forwarded = 0
        self.nack_missed = 0
        # Stats (workers/stats.py), control path only: what the receiver asked (NACK
        # packets, PLI, FIR) and said in its receiver reports about our SSRC, the
        # retransmissions we sent, and when we sent each SR (LSR -> loop time) for RTT.
        self.nack_count = 0
        self.pli_count = 0
        self.fir_count = 0
        self.rr_fraction_lost = 0
        self.rr_packets_lost = 0
        self.rtt_ms: float | None = None
        self.sr_sent: dict[int, float] = {}
        self.rtx_packets = 0
        self.rtx_octets = 0
        # Retransmissions sent with the consumer's own SSRC (no RTX negotiated): the SR
        # counts them with what the fan-out sent (RFC 3550 6.4.1: packets of that SSRC).
        self.resent_packets = 0
        self.resent_payload = 0
        # CNAME of the consumer's rtpParameters.rtcp (consumer.create's `cname`): its SRs'
        # SDES chunk; empty: the worker's own.
        self.cname = ""
        self.rate = RateMeter()

    @property
    def fed(self) -> bool:
        """Whether the consumer is in its stream's fan (it started and is fed)."""
        return self.stream is not None and self.rewrite in self.stream.fan

    def wire_octets(self) -> int:
        """Bytes this consumer put on the wire: forwarded and retransmitted RTP, plus the
        SRTP trailer of each (derived here so the hot loop counts nothing extra)."""
        rw = self.rewrite
        overhead = self.transport.srtp_overhead()
        return rw.octets + self.rtx_octets + (rw.packets + self.rtx_packets) * overhead

    def dump(self) -> dict[str, Any]:
        return {
            "consumerId": self.id,
            "kind": self.kind,
            "producerId": self.producer.id,
            "transportId": self.transport.id,
            "ssrc": self.ssrc,
            "paused": self.paused,
            "preferredProfile": self.preferred_profile,
            "effectiveProfile": self.rewrite.reported_profile,
            "forwarding": self.fed,
            "waitingForKeyFrame": self.stream is not None and self in self.stream.waiting,
            "streamProfile": self.stream.profile if self.stream else None,
            "pendingProfile": self.pending.profile if self.pending else None,
            "nackServed": self.nack_served,
            "nackForwarded": self.nack_forwarded,
            "nackMissed": self.nack_missed,
            **self.rewrite.stats(),
        }


class Router:
    def __init__(self, on_key_frame_needed: Callable[[Consumer, Stream], None] | None = None) -> None:
        self.transports: dict[int, Transport] = {}
        # Bytes in and out of the transports closed so far (worker.info's totals).
        self.octets_in_closed = 0
        self.octets_out_closed = 0
        self.producers: dict[int, Producer] = {}
        self.consumers: dict[int, Consumer] = {}
        # Called when a video consumer starts being fed (first time, after a pause, a
        # switch of stream, its transport becoming ready): it can decode nothing until the
        # next key frame, so the worker asks the producer for one.
        self.on_key_frame_needed = on_key_frame_needed

    # -- simulcast ----------------------------------------------------------------------

    def tick_activity(self, now: float = 0.0) -> None:
        """Every 250 ms: which streams of each simulcast producer still get packets, and
        where its consumers should be (workers/simulcast.py). Consumers that still wait for
        a start point get their key frame asked for again once a second (`now`: the loop
        time, the clock of `Stream.last_key_request`)."""
        for producer in self.producers.values():
            streams = producer.streams
            for stream in streams:
                if (
                    stream.waiting
                    and not stream.paused
                    and now - stream.last_key_request >= KEY_FRAME_ASK_AGAIN
                    and self.on_key_frame_needed is not None
                ):
                    self.on_key_frame_needed(stream.waiting[0], stream)
            if len(streams) < 2:
                continue
            for stream in streams:
                stream.activity = next_activity(stream.activity, stream.packets != stream.seen_packets)
                stream.seen_packets = stream.packets
            producer.active_streams = active_streams(
                streams, [st.activity for st in streams], producer.active_streams
            )
            for consumer in producer.consumers.values():
                self.retarget(consumer)

    def retarget(self, consumer: Consumer) -> None:
        """Apply simulcast.decide's move for the consumer: stay, move now, or switch at the
        target stream's next key frame (asked for at once)."""
        producer = consumer.producer
        current = consumer.stream
        action, target = decide(
            producer.streams,
            consumer.preferred_profile,
            producer.active_streams,
            current,
            current is not None and current.active,
            consumer.pending,
        )
        assert isinstance(target, Stream)
        if action is Action.SWITCH_AT_KEY_FRAME and not consumer.fed:
            # It waits to start on its stream: it shows nothing it would have to keep.
            action = Action.SWITCH_NOW
        if action is Action.STAY:
            self._cancel_pending(consumer)
            return
        if action is Action.SWITCH_NOW:
            # Nothing to keep showing (no stream, or its stream stopped): move now; the
            # receiver waits for the key frame asked for with the move.
            self._cancel_pending(consumer)
            if current is not None:
                self._detach(consumer, rebase_ts=True)
            self._attach(consumer, target)
            return
        if action is Action.ASK_AGAIN:
            # Still no key frame: ask again (the worker rate-limits per stream).
            if self.on_key_frame_needed is not None:
                self.on_key_frame_needed(consumer, target)
            return
        self._cancel_pending(consumer)  # Action.SWITCH_AT_KEY_FRAME
        consumer.pending = target
        self._wait(target, consumer)
        log.info(
            "consumer %d: switching %s -> %s at the next key frame",
            consumer.id,
            current.profile,
            target.profile,
        )
        if self.on_key_frame_needed is not None:
            self.on_key_frame_needed(consumer, target)

    def _cancel_pending(self, consumer: Consumer) -> None:
        pending = consumer.pending
        if pending is not None:
            consumer.pending = None
            if consumer in pending.waiting:
                pending.waiting.remove(consumer)

    def _wait(self, stream: Stream, consumer: Consumer) -> None:
        """The consumer starts on `stream` at its next start point."""
        if not stream.waiting:
            stream.wait_ts = -1  # a new wait: its first packet may be the middle of a frame
        stream.waiting.append(consumer)

    def complete_switch(self, stream: Stream) -> None:
        """The forwarder saw a start point (a key frame) on `stream`: its waiting consumers
        start on it, those switching from another stream move onto it (before this packet
        is fanned out, so it is their first)."""
        waiting, stream.waiting = stream.waiting, []
        admit: list[Consumer] = []
        for consumer in waiting:
            if consumer.id not in self.consumers:
                continue
            if consumer.pending is stream:
                consumer.pending = None
                self._detach(consumer, rebase_ts=True)
                consumer.stream = stream
                consumer.rewrite.profile = stream.profile
                stream.consumers[consumer.id] = consumer
            if consumer.stream is stream:
                admit.append(consumer)
        self._refresh_fan(stream, admit)

    def consumer_by_ssrc(self, transport: Transport, ssrc: int) -> Consumer | None:
        """The consumer on `transport` sending with `ssrc` (RTCP feedback names it)."""
        for consumer in transport.consumers.values():
            if consumer.ssrc == ssrc:
                return consumer
        return None

    # -- transports ---------------------------------------------------------------------

    def add_transport(self, transport: Transport) -> None:
        self.transports[transport.id] = transport

    def transport_ready(self, transport: Transport) -> None:
        """The transport's sender changed: re-derive the fans its consumers sit in."""
        for stream in {c.stream for c in transport.consumers.values() if c.stream is not None}:
            self._refresh_fan(stream)

    def remove_transport(self, transport: Transport) -> list[int]:
        """Forget the transport with its producers and consumers; returns closed producer ids."""
        closed = []
        for producer in list(transport.producers.values()):
            self.remove_producer(producer)
            closed.append(producer.id)
        for consumer in list(transport.consumers.values()):
            self.remove_consumer(consumer)
        # The worker's byte totals (worker.info) must not shrink when a transport goes.
        self.octets_in_closed += transport.octets_in()
        self.octets_out_closed += transport.octets_out()
        del self.transports[transport.id]
        return closed

    # -- producers ----------------------------------------------------------------------

    def add_producer(self, producer: Producer) -> None:
        self.producers[producer.id] = producer
        if producer.transport is not None:
            producer.transport.producers[producer.id] = producer
        self._register_ssrcs(producer)

    def remove_producer(self, producer: Producer) -> list[int]:
        """Forget the producer and close its consumers here; returns their ids. The caller
        closes the pipe batches (producer.pipes) first."""
        closed = [c.id for c in producer.consumers.values()]
        for consumer in list(producer.consumers.values()):
            self.remove_consumer(consumer)
        self._unregister_ssrcs(producer)
        if producer.transport is not None:
            producer.transport.producers.pop(producer.id, None)
        del self.producers[producer.id]
        return closed

    def update_producer(
        self,
        producer: Producer,
        streams: list[tuple[int, int | None, str]],
        pt_pairs: list[tuple[int, int]],
        ext_pairs: list[tuple[int, int]],
        clock_rate: int,
        rtx_pairs: list[tuple[int, int]] = (),  # type: ignore[assignment]
    ) -> None:
        """New RTP parameters for a live producer (updateProducer): streams whose SSRC stays
        keep their state; consumers move to the stream they would now choose, resyncing."""
        self._unregister_ssrcs(producer)
        producer.pt_map, producer.ext_map = producer.maps_for(pt_pairs, ext_pairs)
        producer.level_id = producer.audio_level_id(ext_pairs)
        producer.set_rtx(pt_pairs, rtx_pairs)
        producer.clock_rate = clock_rate
        kept = producer.ssrc_table
        new_streams = []
        for ssrc, rtx, profile in streams:
            stream = kept.get(ssrc) or Stream(producer, ssrc, rtx, profile)
            stream.rtx_ssrc = rtx
            stream.profile = profile
            stream.pt_map = producer.pt_map
            stream.ext_map = producer.ext_map
            stream.level_id = producer.level_id
            stream.clock_rate = clock_rate
            new_streams.append(stream)
        producer.streams = new_streams
        producer.index_streams()
        self._register_ssrcs(producer)
        self._refresh_pipes(producer)
        producer.active_streams = [st for st in new_streams if st.activity] or None
        for consumer in producer.consumers.values():
            consumer.rewrite.clock_rate = clock_rate
            self._cancel_pending(consumer)
            target = choose_stream(new_streams, consumer.preferred_profile, producer.active_streams)
            if target is not consumer.stream:
                self._detach(consumer, rebase_ts=True)
                self._attach(consumer, target)
            else:
                consumer.rewrite.profile = target.profile

    def _register_ssrcs(self, producer: Producer) -> None:
        transport = producer.transport
        if transport is not None:
            transport.ssrc_table.update(producer.ssrc_table)
            transport.rtx_table.update(producer.rtx_table)
            transport.rtx_ssrcs.update(producer.rtx_ssrcs)

    def _unregister_ssrcs(self, producer: Producer) -> None:
        transport = producer.transport
        if transport is not None:
            for ssrc in producer.ssrc_table:
                transport.ssrc_table.pop(ssrc, None)
            for ssrc in producer.rtx_table:
                transport.rtx_table.pop(ssrc, None)
            transport.rtx_ssrcs.difference_update(producer.rtx_ssrcs)

    def set_producer_paused(self, producer: Producer, paused: bool) -> None:
        producer.paused = paused
        for stream in producer.streams:
            stream.paused = paused
            if paused:
                self._restart(stream)

    def interrupt_producer(self, producer: Producer) -> None:
        """The stream broke upstream (a pipe's discontinuity mark): consumers resync."""
        for stream in producer.streams:
            self._restart(stream)

    def _restart(self, stream: Stream) -> None:
        """Feeding of the stream broke (its producer paused): every consumer resyncs, and a
        video one starts again at the next start point (what follows refers to frames it
        never got)."""
        for consumer in stream.consumers.values():
            consumer.rewrite.interrupt(stream.max_seq, stream.max_ts)
        stream.fan = ()
        self._refresh_fan(stream)

    # -- pipes --------------------------------------------------------------------------

    def add_pipe(self, producer: Producer, worker_index: int, batch: PipeBatch) -> None:
        producer.pipes[worker_index] = batch
        self._refresh_pipes(producer)

    def remove_pipe(self, producer: Producer, worker_index: int) -> PipeBatch:
        batch = producer.pipes.pop(worker_index)
        self._refresh_pipes(producer)
        return batch

    def add_leg(self, producer: Producer, leg: LegOut) -> None:
        producer.legs[leg.leg_id] = leg
        self._refresh_pipes(producer)

    def remove_leg(self, producer: Producer, leg_id: int) -> LegOut:
        leg = producer.legs.pop(leg_id)
        self._refresh_pipes(producer)
        return leg

    def _refresh_pipes(self, producer: Producer) -> None:
        # A leg's origin end is a pipe batch to the forwarder (host_leg.LegOut).
        batches = (*producer.pipes.values(), *producer.legs.values())
        for stream in producer.streams:
            stream.pipes = batches

    # -- consumers ----------------------------------------------------------------------

    def add_consumer(self, consumer: Consumer) -> None:
        self.consumers[consumer.id] = consumer
        consumer.producer.consumers[consumer.id] = consumer
        consumer.transport.consumers[consumer.id] = consumer
        producer = consumer.producer
        self._attach(consumer, choose_stream(producer.streams, consumer.preferred_profile, producer.active_streams))

    def remove_consumer(self, consumer: Consumer) -> None:
        self._cancel_pending(consumer)
        # The transport's bytesSent must not shrink when a consumer goes.
        consumer.transport.octets_out_closed += consumer.wire_octets()
        self._detach(consumer)
        consumer.producer.consumers.pop(consumer.id, None)
        consumer.transport.consumers.pop(consumer.id, None)
        del self.consumers[consumer.id]

    def set_consumer_paused(self, consumer: Consumer, paused: bool) -> None:
        consumer.paused = paused
        if consumer.stream is not None:
            self._refresh_fan(consumer.stream)

    def set_preferred_profile(self, consumer: Consumer, profile: str) -> None:
        consumer.preferred_profile = profile
        self.retarget(consumer)

    def _attach(self, consumer: Consumer, stream: Stream) -> None:
        consumer.stream = stream
        consumer.rewrite.profile = stream.profile
        stream.consumers[consumer.id] = consumer
        self._refresh_fan(stream)

    def _detach(self, consumer: Consumer, rebase_ts: bool = False) -> None:
        stream = consumer.stream
        if stream is None:
            return
        consumer.rewrite.interrupt(stream.max_seq, stream.max_ts, rebase_ts=rebase_ts)
        del stream.consumers[consumer.id]
        self._unwait(stream, consumer)
        consumer.stream = None
        self._refresh_fan(stream)

    @staticmethod
    def _unwait(stream: Stream, consumer: Consumer) -> None:
        """The consumer no longer starts on `stream` (unless it switches to it)."""
        if consumer.pending is not stream and consumer in stream.waiting:
            stream.waiting.remove(consumer)

    def _refresh_fan(self, stream: Stream, admit: Collection[Consumer] = ()) -> None:
        """Rebuild stream.fan; a consumer left out stops being fed, so it must resync when
        it is back (interrupt() is idempotent while it stays out). A video consumer that was
        not in the fan enters only through `admit` (complete_switch, at a start point);
        until then it waits in `stream.waiting`, and the producer is asked for a key frame."""
        fan = []
        old = stream.fan
        started: list[Consumer] = []
        for consumer in stream.consumers.values():
            rw = consumer.rewrite
            send = consumer.transport.sender()
            if send is None or consumer.paused:
                rw.interrupt(stream.max_seq, stream.max_ts)
                self._unwait(stream, consumer)
                continue
            if consumer.kind == "video" and rw not in old and consumer not in admit:
                if consumer not in stream.waiting:
                    self._wait(stream, consumer)
                    started.append(consumer)
                continue
            rw.send = send
            rw.fd, srtp = consumer.transport.batch_target()
            rw.protect = None if srtp is None else srtp.protect_rtp_at
            rw.srtp_tx = 0 if srtp is None else srtp.tx_address
            fan.append(rw)
        stream.fan = tuple(fan)
        if started and self.on_key_frame_needed is not None and not stream.paused:
            self.on_key_frame_needed(started[0], stream)
