"""The supervisor's half of enable/disable{Transport,Producer,Consumer}Stats.

Four parts, each small enough to test alone:

- `parse_interval`: the `interval` of an enable message, as mediasoup v2 takes it (missing ->
  1000 ms, below 1000 -> 1000; anything but a number -> refused, where v2 logs and ignores).
- Shaping: the worker's raw figures (`stats.get`, workers/stats.py) into the entries v2's
  worker emits — `transport`, `inbound-rtp`, `outbound-rtp` with v2's field names — using
  what only the supervisor knows: protocol ids, kinds, MIME types and stable stats ids.
- `StatsTimers`: one asyncio task per enabled object. Each tick awaits its report before
  sleeping, so there is never more than one stats request per object in flight; a slow
  worker makes ticks skip, not pile up. A failed report is logged and the timer goes on.
  The tasks run beside the room's mailbox (a worker round trip per report would otherwise
  hold up the room's messages); the report re-checks the object after every await, and
  closing an object cancels its task from inside the room, so nothing is emitted about an
  object after it is gone.
- Reporting (`report`) and the protocol switches (`switch`): one tick asks the hosting worker
  `stats.get` and emits transportStats / producerStats / consumerStats to the owner; the
  enable/disable messages of the three kinds start and stop the timers.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from tureen.shared import contract
from tureen.shared.errors import ProtocolError, bad_request
from tureen.supervisor.producer import Producer
from tureen.supervisor.transport import Transport

if TYPE_CHECKING:
    # consumer.py imports this module (new_stats_id): typing only.
    from tureen.supervisor.consumer import Consumer
    from tureen.supervisor.peer import Peer
    from tureen.supervisor.room import Room

log = logging.getLogger("tureen.stats")

DEFAULT_INTERVAL = 1000  # ms; v2's default and minimum
MAX_INTERVAL = 2**31 - 1  # ms; larger ones make JavaScript's setInterval fire at once


def parse_interval(msg: dict[str, Any]) -> int:
    """The stats interval (ms) of an enable{...}Stats message.

    v2: `enableStats(interval = 1000)`: a missing interval is the default, one below 1000 is
    raised to 1000, and a non-number makes it log "invalid interval" and enable nothing. Tureen
    refuses the latter with bad_request (reported to the app; the client hears nothing, as in
    v2) so the app learns why no stats come.
    """
    if "interval" not in msg:
        return DEFAULT_INTERVAL
    interval = msg["interval"]
    if isinstance(interval, bool) or not isinstance(interval, int | float):
        raise bad_request(f"invalid stats interval {interval!r:.40}: a number of milliseconds")
    if interval > MAX_INTERVAL:
        raise bad_request(f"stats interval {interval} ms is above {MAX_INTERVAL} ms")
    return max(DEFAULT_INTERVAL, int(interval))


def new_stats_id() -> str:
    """A stats entry id: a random string, stable for the life of its stream (v2)."""
    return secrets.token_hex(8)


# ---------------------------------------------------------------------------------- shaping


def transport_entry(protocol_id: int, figures: dict[str, Any], timestamp: int) -> dict[str, Any]:
    """A `{type: 'transport'}` entry; bytes and tuple only once ICE selected a tuple (v2)."""
    entry: dict[str, Any] = {"type": "transport", "id": protocol_id, "timestamp": timestamp}
    tuple_ = figures.get("selectedTuple")
    if tuple_ is not None:
        entry["bytesReceived"] = figures["bytesReceived"]
        entry["bytesSent"] = figures["bytesSent"]
        entry["iceSelectedTuple"] = dict(tuple_)
    entry["dtlsState"] = figures["dtlsState"]
    entry["iceConnectionState"] = figures["iceState"]
    entry["localAvailableSendBw"] = {
        "maxBitrate": figures.get("maxBitrate", 0),
        "bitrate": figures.get("rembBitrate", 0),
        "ssrcs": list(figures.get("rembSsrcs", [])),
    }
    # What the remote's last REMB says we may send it.
    entry["remoteAvailableSendBw"] = {
        "bitrate": figures.get("remoteRembBitrate", 0),
        "ssrcs": list(figures.get("remoteRembSsrcs", [])),
    }
    return entry


def rtp_entry(
    figures: dict[str, Any],
    *,
    outbound: bool,
    stats_id: str,
    kind: str,
    mime_type: str,
    timestamp: int,
    transport_id: int | None,
) -> dict[str, Any]:
    """An `inbound-rtp` (a producer stream) or `outbound-rtp` (a consumer) entry."""
    entry: dict[str, Any] = {
        "type": "outbound-rtp" if outbound else "inbound-rtp",
        "id": stats_id,
        "timestamp": timestamp,
        "ssrc": figures["ssrc"],
        "mediaType": kind,
        "kind": kind,
        "mimeType": mime_type,
        "packetCount": figures["packets"],
        "byteCount": figures["octets"],
        "bitrate": figures["bitrate"],
        "packetsLost": figures["packetsLost"],
        "fractionLost": figures["fractionLost"],
        "packetsDiscarded": 0,  # Tureen drops are per worker (worker.dump), not per stream
        "packetsRepaired": figures["packetsRepaired"],
        "firCount": figures["firCount"],
        "pliCount": figures["pliCount"],
        "nackCount": figures["nackCount"],
        "sliCount": 0,  # SLI is neither sent nor read
    }
    if transport_id is not None:
        entry["transportId"] = transport_id
    if outbound:
        entry["roundTripTime"] = figures["roundTripTime"]
    else:
        entry["jitter"] = figures["jitter"]
    return entry


def producer_entries(
    figures: dict[str, Any],
    *,
    stats_ids: dict[int, str],
    kind: str,
    mime_type: str,
    timestamp: int,
    transport_id: int,
) -> list[dict[str, Any]]:
    """producerStats' `stats`: one inbound entry per stream that received a packet (v2 has
    none before; stats_ids: ssrc -> id, filled as streams appear so an id stays with its
    stream)."""
    return [
        rtp_entry(
            stream,
            outbound=False,
            stats_id=stats_ids.setdefault(stream["ssrc"], new_stats_id()),
            kind=kind,
            mime_type=mime_type,
            timestamp=timestamp,
            transport_id=transport_id,
        )
        for stream in figures["streams"]
        if stream["packets"]  # v2 has a stream once its first packet came
    ]


def consumer_entries(
    figures: dict[str, Any],
    *,
    stats_id: str,
    producer_stats_ids: dict[int, str],
    kind: str,
    mime_type: str,
    producer_mime_type: str,
    timestamp: int,
    transport_id: int,
) -> list[dict[str, Any]]:
    """consumerStats' `stats`: [inbound entry of the stream feeding it (no transportId),
    outbound entry with `inboundRtpId`], or the outbound entry alone while none feeds it.
    The inbound id is the producer's entry id for that stream, as in v2 (same object)."""
    outbound = rtp_entry(
        figures,
        outbound=True,
        stats_id=stats_id,
        kind=kind,
        mime_type=mime_type,
        timestamp=timestamp,
        transport_id=transport_id,
    )
    inbound_figures = figures.get("inbound")
    if inbound_figures is None or not inbound_figures["packets"]:
        return [outbound]
    inbound_id = producer_stats_ids.setdefault(inbound_figures["ssrc"], new_stats_id())
    inbound = rtp_entry(
        inbound_figures,
        outbound=False,
        stats_id=inbound_id,
        kind=kind,
        mime_type=producer_mime_type,
        timestamp=timestamp,
        transport_id=None,
    )
    outbound["inboundRtpId"] = inbound_id
    return [inbound, outbound]


# ----------------------------------------------------------------------------------- timers

Report = Callable[[Any], Awaitable[None]]


class StatsTimers:
    """One periodic stats task per enabled object (keyed by the object itself)."""

    def __init__(self, owner: str, report: Report) -> None:
        self._owner = owner
        self._report = report
        self._tasks: dict[Any, asyncio.Task[None]] = {}

    def __contains__(self, obj: Any) -> bool:
        return obj in self._tasks

    def __len__(self) -> int:
        return len(self._tasks)

    def start(self, obj: Any, interval_ms: int) -> None:
        """Report at once, then every interval_ms. Already running: nothing (v2 no-op)."""
        if obj in self._tasks:
            return
        task = asyncio.get_running_loop().create_task(
            self._run(obj, interval_ms / 1000), name=f"stats {self._owner} {obj.describe()}"
        )
        self._tasks[obj] = task

    def stop(self, obj: Any) -> None:
        task = self._tasks.pop(obj, None)
        if task is not None:
            task.cancel()

    def stop_all(self) -> None:
        for obj in list(self._tasks):
            self.stop(obj)

    async def _run(self, obj: Any, interval: float) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time()
        while True:
            try:
                await self._report(obj)
            except asyncio.CancelledError:
                raise
            except ProtocolError as exc:  # the worker refused, died or timed out
                log.warning("%s: stats of %s failed: %s", self._owner, obj.describe(), exc.message)
            except Exception:  # a bug: keep the timer, the log has the traceback
                log.exception("%s: stats of %s failed", self._owner, obj.describe())
            due += interval
            now = loop.time()
            if due < now:  # the report took longer than the interval: skip, do not burst
                due = now + interval
            await asyncio.sleep(due - now)


# -------------------------------------------------------------------- switches and reports


def producer_report(producer: Producer, data: dict[str, Any]) -> list[dict[str, Any]]:
    """`producer_entries` of `producer` from a worker's `stats.get` answer `data` that has
    its figures (producerStats and producer.getStats)."""
    return producer_entries(
        data["producers"][0],
        stats_ids=producer.stats_ids,
        kind=producer.kind,
        mime_type=producer.mime_type,
        timestamp=data["timestamp"],
        transport_id=producer.transport.id,
    )


def consumer_report(consumer: Consumer, transport: Transport, data: dict[str, Any]) -> list[dict[str, Any]]:
    """`consumer_entries` of `consumer` (sent on `transport`) from a worker's `stats.get`
    answer `data` that has its figures (consumerStats and consumer.getStats)."""
    producer = consumer.producer
    return consumer_entries(
        data["consumers"][0],
        stats_id=consumer.stats_id,
        producer_stats_ids=producer.stats_ids,
        kind=consumer.kind,
        mime_type=consumer.mime_type,
        producer_mime_type=producer.mime_type,
        timestamp=data["timestamp"],
        transport_id=transport.id,
    )


def switch(
    lookup: Callable[[Room, Peer, dict[str, Any]], Transport | Producer | Consumer], *, enable: bool
) -> Callable[[Room, Peer, dict[str, Any]], Awaitable[None]]:
    """The handler of enable{X}Stats (`enable`) or disable{X}Stats, X the kind `lookup` finds
    (`Room.transport_of`, `Room.producer_of`, `Room.consumer_of`)."""

    async def handler(room: Room, peer: Peer, msg: dict[str, Any]) -> None:
        obj = lookup(room, peer, msg)
        if not enable:
            obj.stats_interval = None
            room.stats.stop(obj)
            return
        interval = parse_interval(msg)
        if isinstance(obj, Transport) and obj.plain:
            return  # v2's PlainRtpTransport.enableStats() does nothing: no stats, no error
        if obj.stats_interval is not None:
            return  # re-enable is a no-op (v2), whatever the new interval
        obj.stats_interval = interval
        room.stats.start(obj, interval)

    return handler


async def report(room: Room, obj: Transport | Producer | Consumer) -> None:
    """One stats tick of `obj` (run by its StatsTimers task, beside the mailbox): ask the
    hosting worker, then emit the notification unless the object closed or paused
    meanwhile. Skipped as v2 does: a paused producer, a consumer not enabled or paused."""
    if isinstance(obj, Transport):
        await _report_transport(room, obj)
    elif isinstance(obj, Producer):
        await _report_producer(room, obj)
    else:
        await _report_consumer(room, obj)


async def _stats_request(room: Room, index: int, request: contract.StatsGet) -> dict[str, Any] | None:
    if not room.services.worker_alive(index):
        return None
    data = await room.request(index, request)
    return data if isinstance(data, dict) else None


async def _report_transport(room: Room, transport: Transport) -> None:
    if transport.closed:
        return
    data = await _stats_request(room, transport.worker, contract.StatsGet(transportIds=[transport.gid]))
    peer = room.peers.get(transport.peer_name)
    if transport.closed or peer is None or not data or not data.get("transports"):
        return
    entry = transport_entry(transport.id, data["transports"][0], data["timestamp"])
    room.notify(peer, "transportStats", id=transport.id, stats=[entry])


async def _report_producer(room: Room, producer: Producer) -> None:
    if producer.closed or producer.paused:
        return
    data = await _stats_request(room, producer.worker, contract.StatsGet(producerIds=[producer.gid]))
    peer = room.peers.get(producer.peer_name)
    if producer.closed or producer.paused or peer is None or not data or not data.get("producers"):
        return
    room.notify(peer, "producerStats", id=producer.id, stats=producer_report(producer, data))


async def _report_consumer(room: Room, consumer: Consumer) -> None:
    transport = consumer.transport
    if consumer.closed or transport is None or consumer.paused:
        return
    data = await _stats_request(room, transport.worker, contract.StatsGet(consumerIds=[consumer.gid]))
    receiver = room.peers.get(consumer.peer_name)
    if (
        consumer.closed
        or consumer.transport is not transport
        or consumer.paused
        or receiver is None
        or not data
        or not data.get("consumers")
    ):
        return
    stats = consumer_report(consumer, transport, data)
    room.notify(receiver, "consumerStats", id=consumer.id, peerName=consumer.producer.peer_name, stats=stats)
