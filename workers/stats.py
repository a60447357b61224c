"""The worker's half of enable{Transport,Producer,Consumer}Stats: raw data-path figures.

The supervisor asks `stats.get` (docs/internals.md) every stats interval; this module
answers it from counters the data path keeps anyway (Stream.packets/octets, the consumers'
ConsumerRewrite packets/octets, socket byte counts) and from what the control path records
(RTCP handled by workers/rtp/feedback.py: NACK, PLI/FIR, receiver reports, our SRs). Nothing here runs per
packet: bitrates are derived from octet counters sampled by the worker's housekeeping tick
(RateMeter), and the shaping into mediasoup v2's stats entries is the supervisor's
(supervisor/stats.py), which knows protocol ids, MIME types and stats ids.
"""

from __future__ import annotations

from array import array
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

    from tureen.workers.router import Consumer, Producer, Router, Stream
    from tureen.workers.transport.base import Transport

# The bitrate is over the last RATE_WINDOW seconds or a little more (v2: "last 1 s").
RATE_WINDOW = 1.0
# Samples kept per meter: the housekeeping tick is 0.25 s, so six cover 1.25-1.5 s.
RATE_SAMPLES = 6


class RateMeter:
    """Octet-count samples of one counter, taken on the control path, for a bitrate.

    One per consumer and per stream, so kept small: a ring of RATE_SAMPLES (time, octets)
    pairs in one flat array of doubles (~0.2 KiB; a deque of tuples was 1.4 KiB once full,
    14 MiB for 10,000 consumers). Octet counts stay exact as doubles below 2**53.
    """

    __slots__ = ("_ring", "_next", "_count")

    def __init__(self) -> None:
        self._ring = array("d", bytes(16 * RATE_SAMPLES))
        self._next = 0  # the pair the next sample overwrites
        self._count = 0

    def sample(self, now: float, octets: int) -> None:
        i = 2 * self._next
        self._ring[i] = now
        self._ring[i + 1] = octets
        self._next = (self._next + 1) % RATE_SAMPLES
        if self._count < RATE_SAMPLES:
            self._count += 1

    def bitrate(self, now: float, octets: int) -> int:
        """Bit/s between the newest sample at least RATE_WINDOW old (else the oldest) and
        (now, octets); 0 without a sample or elapsed time."""
        if not self._count:
            return 0
        ring = self._ring
        oldest = (self._next - self._count) % RATE_SAMPLES
        base_time, base_octets = ring[2 * oldest], ring[2 * oldest + 1]
        for k in range(1, self._count):  # oldest first
            i = 2 * ((oldest + k) % RATE_SAMPLES)
            if now - ring[i] >= RATE_WINDOW:
                base_time, base_octets = ring[i], ring[i + 1]
        if now - base_time <= 0.05:
            return 0
        return max(0, int((octets - base_octets) * 8 / (now - base_time)))


def sample_rates(router: Router, now: float) -> None:
    """One housekeeping sample of every stream's and consumer's octet counter."""
    for producer in router.producers.values():
        for stream in producer.streams:
            stream.rate.sample(now, stream.octets)
    for consumer in router.consumers.values():
        consumer.rate.sample(now, consumer.wire_octets())


def transport_figures(transport: Transport, now: float, max_bitrate: int = 0) -> dict[str, Any]:
    """ICE/DTLS state, selected tuple and byte counts of a WebRTC transport."""
    figures: dict[str, Any] = {"transportId": transport.id, "kind": transport.kind}
    ice = getattr(transport, "ice", None)
    if ice is None:  # plain: v2 has no transport stats for it; report what we have
        return figures
    remb = getattr(transport, "last_remb", None) or (0, [])
    figures.update(
        {
            "iceState": ice.state,
            "dtlsState": transport.dtls.state,  # type: ignore[attr-defined]
            "selectedTuple": transport.selected_tuple(),  # type: ignore[attr-defined]
            "bytesReceived": transport.octets_in(),  # type: ignore[attr-defined]
            "bytesSent": transport.octets_out(),  # type: ignore[attr-defined]
            "maxBitrate": min(transport.max_bitrate, max_bitrate) if transport.max_bitrate else max_bitrate,
            "rembBitrate": remb[0],
            "rembSsrcs": list(remb[1]),
            "remoteRembBitrate": transport.remote_remb[0],
            "remoteRembSsrcs": list(transport.remote_remb[1]),
        }
    )
    return figures


def stream_figures(stream: Stream, now: float) -> dict[str, Any]:
    """A producer stream as received here (inbound): counts, loss, jitter, repair."""
    clock = stream.clock_rate or 90000
    return {
        "ssrc": stream.ssrc,
        "profile": stream.profile,
        "packets": stream.packets,
        "octets": stream.octets,
        "bitrate": stream.rate.bitrate(now, stream.octets),
        "packetsLost": max(0, stream.expected() - stream.packets),
        "fractionLost": stream.fraction_lost,
        # RFC 3550 jitter is kept in RTP timestamp units; the protocol wants ms.
        "jitter": int(stream.jitter * 1000 / clock),
        "packetsRepaired": stream.repaired,
        "nackCount": stream.nack_count,
        "pliCount": stream.pli_count,
        "firCount": 0,  # Tureen asks senders with PLI only
    }


def producer_figures(producer: Producer, now: float) -> dict[str, Any]:
    return {
        "producerId": producer.id,
        "paused": producer.paused,
        "streams": [stream_figures(s, now) for s in producer.streams],
    }


def consumer_figures(consumer: Consumer, now: float) -> dict[str, Any]:
    """A consumer's outbound stream (what we sent, what its receiver reported) and the
    producer stream that feeds it now (None while none does)."""
    rw = consumer.rewrite
    octets = consumer.wire_octets()
    stream = consumer.stream
    return {
        "consumerId": consumer.id,
        "ssrc": consumer.ssrc,
        "packets": rw.packets + consumer.rtx_packets,
        "octets": octets,
        "bitrate": consumer.rate.bitrate(now, octets),
        "packetsLost": consumer.rr_packets_lost,
        "fractionLost": consumer.rr_fraction_lost,
        "roundTripTime": round(consumer.rtt_ms) if consumer.rtt_ms is not None else 0,
        "packetsRepaired": consumer.nack_served,
        "nackCount": consumer.nack_count,
        "pliCount": consumer.pli_count,
        "firCount": consumer.fir_count,
        "inbound": stream_figures(stream, now) if stream is not None else None,
    }


def collect(
    router: Router,
    now: float,
    transport_ids: list[int],
    producer_ids: list[int],
    consumer_ids: list[int],
    max_bitrate: int = 0,
) -> dict[str, Any]:
    """The answer of `stats.get`: figures of each object found here; ids not found (closed
    meanwhile: the supervisor's timers race with closes) are listed, not an error."""
    missing: list[int] = []

    def found(ids: list[int], table: dict[int, Any], figures: Callable[[Any], dict[str, Any]]) -> list[dict[str, Any]]:
        """`figures` of each object of `ids` in `table`; the others go to `missing`."""
        out = []
        for oid in ids:
            obj = table.get(oid)
            if obj is None:
                missing.append(oid)
            else:
                out.append(figures(obj))
        return out

    transports = found(transport_ids, router.transports, lambda t: transport_figures(t, now, max_bitrate))
    producers = found(producer_ids, router.producers, lambda p: producer_figures(p, now))
    consumers = found(consumer_ids, router.consumers, lambda c: consumer_figures(c, now))
    return {
        "timestamp": int(now * 1000),
        "transports": transports,
        "producers": producers,
        "consumers": consumers,
        "missing": missing,
    }
