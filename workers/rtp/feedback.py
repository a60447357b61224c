"""RTCP feedback, NACK service and reports: what the worker should do about RTCP, decided here.

Sans-I/O: these classes read parsed RTCP (workers/rtp/rtcp.py), the router's records
(Stream, Consumer, Transport) and the time they are given, update the records' counters and
RTCP state, and return *actions*; workers/worker.py performs them (sends, emits events) and
reports the outcome of each retransmission back (`NackService.sent` / `failed`), so the
counters stay exact. No socket, no loop, no clock read here.

    SendRtcp(transport, packet)   send one compound RTCP packet on the transport
    Resend(consumer, send, ...)   put one retransmitted RTP packet on the consumer's sender
    a contract Event              tell the supervisor (NACK, key-frame request of a piped
                                  producer: the worker that receives it asks the sender)

The concepts, one class each, composed by `Feedback`:

- `RtcpEndpoint`: this worker as an RTCP endpoint (its SSRC and CNAME); wraps feedback
  towards a sender into a full compound packet (RFC 3550 6.1, RFC 4585 3.1).
- `KeyFrameRequests`: at most one key-frame request per producer stream per 300 ms; a PLI on
  the producer's transport, or an event for a piped producer.
- `NackService`: a receiver's NACK answered from the stream's packet store (RTX where the
  consumer negotiated it, else on its own SSRC); what the store lacks is asked of the sender
  (a NACK on its transport, or an event for a piped producer); and the NACKs a producer
  stream's own generator (rtp/nack_generator.py) asks for (`generated`).
- `Reports`: SR per fed consumer and RR (+ REMB) per producer transport, every second;
  what receivers' report blocks and senders' SRs tell us (loss, RTT, LSR/DLSR).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tureen.shared import contract as c
from tureen.shared.rtp.packet import payload_length
from tureen.workers.rtp import rtcp
from tureen.workers.rtp.retransmit import resend, rtx_packet, stored

if TYPE_CHECKING:
    from tureen.workers.forward import Forwarder
    from tureen.workers.router import Consumer, Producer, Stream
    from tureen.workers.transport.base import Sender, Transport

# s: at most one key-frame request per producer stream in this time. One key frame serves
# every consumer that started meanwhile; browsers answer a PLI within a frame or two.
KEY_FRAME_REQUEST_INTERVAL = 0.3
# SRs remembered per consumer for RTT: receivers echo the last one within a second or two.
SR_HISTORY = 8

ReportBlock = tuple[int, int, int, int, int, int, int]


@dataclass(slots=True)
class SendRtcp:
    """Send `packet`, a compound RTCP packet, on `transport`."""

    transport: Transport
    packet: bytes


@dataclass(slots=True)
class Resend:
    """Send `packet`, a retransmission for `consumer`, with `send`; `rtx`: on the consumer's
    RTX SSRC (else on its own SSRC, which its SR then counts)."""

    consumer: Consumer
    send: Sender
    packet: bytes | bytearray
    rtx: bool


Action = SendRtcp | Resend | c.Event


class RtcpEndpoint:
    """The sender SSRC and CNAME of the RTCP this worker writes towards producers' senders
    (RR, REMB, PLI, NACK): one per worker for its life (RFC 3550 6.5.1)."""

    def __init__(self, ssrc: int, cname: str) -> None:
        self.ssrc = ssrc
        self.cname = cname

    def compound(self, transport: Transport, *packets: bytes, report: bytes | None = None) -> SendRtcp:
        """RTCP towards a producer's sender as a full compound packet: `report` (an RR; one
        without blocks when none is given), this endpoint's SDES CNAME, then `packets`."""
        first = report if report is not None else rtcp.rr(self.ssrc, [])
        return SendRtcp(transport, rtcp.compound(first, self.ssrc, self.cname, *packets))


class KeyFrameRequests:
    """Key-frame requests towards producers, throttled per stream."""

    def __init__(self, endpoint: RtcpEndpoint, counters: Forwarder, interval: float = KEY_FRAME_REQUEST_INTERVAL) -> None:
        self.endpoint = endpoint
        self.counters = counters
        self.interval = interval

    def request(self, stream: Stream, consumer: Consumer | None, now: float) -> list[Action]:
        """Ask the producer of `stream` for a key frame at loop time `now`: a PLI on its
        transport, or (a piped producer) an event naming `consumer` so the supervisor asks
        the worker that receives it. Nothing within `interval` of the last request."""
        if now - stream.last_key_request < self.interval:
            return []
        stream.last_key_request = now
        producer = stream.producer
        self.counters.key_frame_requests += 1
        if producer.transport is not None:
            stream.pli_count += 1
            return [self.endpoint.compound(producer.transport, rtcp.pli(self.endpoint.ssrc, stream.ssrc))]
        if consumer is not None:
            return [c.ConsumerKeyFrameRequest(consumerId=consumer.id, producerId=producer.id, ssrc=stream.ssrc)]
        return []


class NackService:
    """A receiver's NACK about a consumer's SSRC: repair from the store, ask for the rest."""

    def __init__(self, endpoint: RtcpEndpoint, counters: Forwarder) -> None:
        self.endpoint = endpoint
        self.counters = counters

    def on_nack(self, consumer: Consumer, seqs: list[int]) -> list[Action]:
        """The retransmissions for the consumer's sequence numbers `seqs` (its outgoing
        numbering) found in the stream's store, then a request upstream for those it lacks."""
        stream = consumer.stream
        if stream is None:
            return []
        store = stream.store
        send = consumer.transport.sender()
        if store is None or send is None:
            return []
        rw = consumer.rewrite
        rtx_pt = consumer.producer.room_rtx_pt
        actions: list[Action] = []
        missing: list[int] = []
        for out_seq in seqs:
            seq = (out_seq - rw.seq_offset) & 0xFFFF
            data = stored(store, seq)
            if data is None:
                missing.append(seq)
                continue
            ts = (int.from_bytes(data[4:8], "big") + rw.ts_offset) & 0xFFFFFFFF
            pt = rtx_pt.get(data[1] & 0x7F) if consumer.rtx_ssrc is not None else None
            try:
                if pt is not None:
                    packet = rtx_packet(data, out_seq, ts, consumer.rtx_ssrc, pt, consumer.rtx_seq)
                    consumer.rtx_seq = (consumer.rtx_seq + 1) & 0xFFFF
                else:
                    packet = resend(data, out_seq, ts, consumer.ssrc)
            except ValueError:
                consumer.nack_missed += 1
                continue
            actions.append(Resend(consumer, send, packet, pt is not None))
        if missing and stream.nack is not None:  # our own NACK generator asks for those already
            missing = [seq for seq in missing if seq not in stream.nack.pending]
        if missing:
            actions.extend(self.ask_sender(consumer, stream, missing))
        return actions

    def ask_sender(self, consumer: Consumer, stream: Stream, missing: list[int]) -> list[Action]:
        """NACK `missing` (the producer's numbering) towards the producer's sender, through
        the supervisor when the producer is piped here."""
        producer = consumer.producer
        consumer.nack_forwarded += len(missing)
        self.counters.nack_forwarded += len(missing)
        if producer.transport is not None:
            stream.nack_count += 1
            return [self.endpoint.compound(producer.transport, rtcp.nack(self.endpoint.ssrc, stream.ssrc, missing))]
        return [c.ConsumerNack(consumerId=consumer.id, producerId=producer.id, ssrc=stream.ssrc, seqs=missing)]

    def nack_sender(self, producer: Producer, stream: Stream, seqs: list[int]) -> SendRtcp:
        """A consumer on another worker misses `seqs` of `stream`, received here."""
        assert producer.transport is not None
        return self.endpoint.compound(producer.transport, rtcp.nack(self.endpoint.ssrc, stream.ssrc, seqs))

    def generated(self, stream: Stream, seqs: list[int]) -> list[Action]:
        """The stream's NACK generator (rtp/nack_generator.py) misses `seqs`: NACK the
        sender for them, in packets of at most MAX_NACK_SEQS numbers (a long list in one
        would not fit a datagram)."""
        transport = stream.producer.transport
        if transport is None or not seqs:
            return []
        out: list[Action] = []
        for i in range(0, len(seqs), c.MAX_NACK_SEQS):
            stream.nack_count += 1
            packet = rtcp.nack(self.endpoint.ssrc, stream.ssrc, seqs[i : i + c.MAX_NACK_SEQS])
            out.append(self.endpoint.compound(transport, packet))
        return out

    def sent(self, resent: Resend) -> None:
        """The worker sent `resent`: count it."""
        consumer = resent.consumer
        packet = resent.packet
        if not resent.rtx:  # on the consumer's SSRC: its SR counts it
            consumer.resent_packets += 1
            consumer.resent_payload += payload_length(packet, len(packet))
        consumer.rtx_packets += 1
        consumer.rtx_octets += len(packet)
        consumer.nack_served += 1
        self.counters.nack_served += 1
        self.counters.rtx_sent += 1

    def failed(self, resent: Resend) -> None:
        """Sending `resent` failed (the receiver asks again, or gives up)."""
        resent.consumer.nack_missed += 1


class Reports:
    """Sender and receiver reports, both ways."""

    def __init__(self, endpoint: RtcpEndpoint, max_incoming_bitrate: int) -> None:
        self.endpoint = endpoint
        self.max_incoming_bitrate = max_incoming_bitrate

    def sender_reports(self, consumers: Iterable[Consumer], ntp: int, now: float, at: float) -> list[Action]:
        """An SR + SDES(CNAME) to the receiver of each consumer that is being fed, on every
        worker (a consumer fed by a pipe too), RFC 3550 6.4.1. `ntp` is the wall clock as
        NTP, `now` the monotonic clock the forwarder stamps packets with, `at` loop time.

        - packet / octet count: what this consumer sent on its SSRC (copies of the fan-out
          after send errors, plus retransmissions on that SSRC), octets = RTP payload only;
        - NTP now, and the RTP timestamp of the same instant: the consumer's timestamp of
          the newest packet it was sent, advanced by the wall time since that packet
          arrived, at the codec's clock rate (what mediasoup does);
        - the CNAME of the consumer's rtpParameters (the producer's), else the worker's.
        A paused consumer, or one waiting for its first packet after a break, sends none (it
        is no active sender: RFC 3550 6.4)."""
        actions: list[Action] = []
        for consumer in consumers:
            rw = consumer.rewrite
            stream = consumer.stream
            if stream is None or rw.sync or not rw.packets or rw not in stream.fan:
                continue
            elapsed = max(0.0, now - stream.max_at)
            rtp_ts = stream.max_ts + rw.ts_offset + int(elapsed * stream.clock_rate)
            report = rtcp.sr(
                consumer.ssrc,
                ntp,
                rtp_ts,
                rw.packets + consumer.resent_packets,
                rw.payload_octets + consumer.resent_payload,
            )
            packet = rtcp.compound(report, consumer.ssrc, consumer.cname or self.endpoint.cname)
            actions.append(SendRtcp(consumer.transport, packet))
            # The receiver echoes the middle 32 bits as LSR: remember when we sent it (RTT).
            sent = consumer.sr_sent
            sent[(ntp >> 16) & 0xFFFFFFFF] = at
            if len(sent) > SR_HISTORY:
                del sent[next(iter(sent))]
        return actions

    def receiver_reports(self, transports: Iterable[Transport], now: float) -> list[Action]:
        """An RR about each producer stream received on a transport, plus REMB for its
        video, to that transport's sender (`now`: loop time, for DLSR)."""
        actions: list[Action] = []
        ssrc = self.endpoint.ssrc
        for transport in transports:
            if not transport.producers:
                continue
            blocks = []
            video: list[int] = []
            for producer in transport.producers.values():
                for stream in producer.streams:
                    if not stream.packets:
                        continue
                    if producer.kind == "video":
                        video.append(stream.ssrc)
                    blocks.append(report_block(stream, now))
            if blocks:
                bitrate = self.max_bitrate(transport)
                remb = [rtcp.remb(ssrc, bitrate, video)] if video else []
                actions.append(self.endpoint.compound(transport, *remb, report=rtcp.rr(ssrc, blocks)))
                transport.last_remb = (bitrate if video else 0, video)
        return actions

    def max_bitrate(self, transport: Transport) -> int:
        """What the REMB to `transport`'s sender asks for: config max_incoming_bitrate, or
        less when the app capped it (transport.setMaxBitrate, as v2 caps its estimate)."""
        cap = transport.max_bitrate
        return min(cap, self.max_incoming_bitrate) if cap else self.max_incoming_bitrate

    @staticmethod
    def on_sender_report(stream: Stream, ntp: int, rtp_ts: int, at: float) -> None:
        """A sender's SR about a producer stream: kept for our receiver reports' LSR/DLSR.
        Consumers get SRs of their own (sender_reports), not this one: its counts are the
        sender's, not what each consumer was sent."""
        stream.last_sr = (ntp, rtp_ts, at)

    @staticmethod
    def on_receiver_report(consumer: Consumer, block: ReportBlock, at: float) -> None:
        """A receiver's report block about a consumer's SSRC: loss for stats, and the
        round-trip time when it echoes an SR we sent (RFC 3550 6.4.1: A - LSR - DLSR, with
        our own send time for A - LSR since the SR carried the sender's NTP clock)."""
        _, fraction, lost, _, _, lsr, dlsr = block
        consumer.rr_fraction_lost = fraction
        consumer.rr_packets_lost = max(0, lost)
        sent_at = consumer.sr_sent.get(lsr) if lsr else None
        if sent_at is not None:
            rtt = (at - sent_at - dlsr / 65536) * 1000
            if rtt >= 0:
                consumer.rtt_ms = rtt


def report_block(stream: Stream, now: float) -> ReportBlock:
    """An RR report block about `stream` (RFC 3550 6.4.1, A.3); advances its interval."""
    expected = stream.expected()
    lost = expected - stream.packets
    expected_interval = expected - stream.expected_prior
    lost_interval = expected_interval - (stream.packets - stream.received_prior)
    stream.expected_prior = expected
    stream.received_prior = stream.packets
    fraction = 0
    if expected_interval > 0 and lost_interval > 0:
        fraction = min(255, (lost_interval << 8) // expected_interval)
    stream.fraction_lost = fraction  # stats: what the sender was last told
    lsr = dlsr = 0
    if stream.last_sr is not None:
        ntp, _, at = stream.last_sr
        lsr = (ntp >> 16) & 0xFFFFFFFF
        dlsr = int((now - at) * 65536)
    return (stream.ssrc, fraction, lost, stream.cycles + stream.max_seq, int(stream.jitter), lsr, dlsr)


class Feedback:
    """The worker's RTCP brain: one per worker, holding the concepts above."""

    def __init__(
        self,
        ssrc: int,
        cname: str,
        counters: Forwarder,
        consumer_by_ssrc: Callable[[Transport, int], Consumer | None],
        max_incoming_bitrate: int,
    ) -> None:
        self.endpoint = RtcpEndpoint(ssrc, cname)
        self.key_frames = KeyFrameRequests(self.endpoint, counters)
        self.nacks = NackService(self.endpoint, counters)
        self.reports = Reports(self.endpoint, max_incoming_bitrate)
        self.consumer_by_ssrc = consumer_by_ssrc
        self.counters = counters  # the worker's totals (worker.info: Prometheus)

    def on_rtcp(self, transport: Transport, fb: rtcp.Feedback, at: float) -> list[Action]:
        """RTCP from a transport's remote, parsed: a receiver's PLI/FIR, NACK, report blocks
        and REMB about our consumers, a sender's SR about its producer streams (SDES, BYE,
        APP and other feedback are not read). `at`: loop time."""
        actions: list[Action] = []
        for ssrc, fmt in fb.key_frame_requests:
            consumer = self.consumer_by_ssrc(transport, ssrc)
            if consumer is None:
                continue
            if fmt == rtcp.PSFB_FIR:
                consumer.fir_count += 1
            else:
                consumer.pli_count += 1
            self.counters.pli_received += 1
            if consumer.stream is not None:
                actions.extend(self.key_frames.request(consumer.stream, consumer, at))
        for ssrc, seqs in fb.nacks:
            consumer = self.consumer_by_ssrc(transport, ssrc)
            if consumer is None:
                continue
            consumer.nack_count += 1
            self.counters.nack_received += 1
            actions.extend(self.nacks.on_nack(consumer, seqs))
        for block in fb.report_blocks:
            consumer = self.consumer_by_ssrc(transport, block[0])
            if consumer is not None:
                self.reports.on_receiver_report(consumer, block, at)
        if fb.rembs:
            transport.remote_remb = fb.rembs[-1]
        for ssrc, ntp, rtp_ts in fb.sender_reports:
            stream = transport.ssrc_table.get(ssrc)
            if stream is not None:
                self.reports.on_sender_report(stream, ntp, rtp_ts, at)
        return actions
