"""The supervisor's Prometheus endpoint (`metrics_listen`, docs/operations.md "Metrics").

Everything runs on the supervisor's event loop: the HTTP endpoint is an aiohttp handler
there, and a scrape renders the registry in that handler, so the collector below reads the
rooms and the worker reports between two of the loop's steps, never while a room actor is
half-way through a change (a prometheus_client HTTP thread would read them concurrently).

Families (labels stay bounded: no per-room or per-peer label):
- state, computed at scrape time from the rooms: tureen_rooms, tureen_peers,
  tureen_transports{kind,ice_state,dtls_state}, tureen_producers{kind}, tureen_consumers{kind};
- the control API: tureen_control_requests_total{method,outcome} and the latency histogram
  tureen_control_request_duration_seconds{method};
- per worker (label `worker`, its index), from its last worker.info report (every 2 s,
  supervisor/worker_pool.py): packets and bytes in and out, drops by reason, NACKs received
  and served, PLIs received and sent, RTX sent, CPU seconds, RSS, restarts.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from tureen.shared import errors
from tureen.shared.config import parse_listen

if TYPE_CHECKING:
    from tureen.supervisor.server import Server

log = logging.getLogger("tureen.metrics")

# Error codes an outcome label may take (shared/errors.py); anything else counts as "other".
ERROR_CODES = frozenset(
    {
        errors.BAD_REQUEST,
        errors.UNKNOWN_METHOD,
        errors.NOT_FOUND,
        errors.DUPLICATE,
        errors.INVALID_STATE,
        errors.UNSUPPORTED,
        errors.UNAVAILABLE,
        errors.LIMIT,
        errors.INTERNAL,
    }
)
# Control requests take from a few hundred microseconds (server.ping) to the worker timeout.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# worker.info's forwarder counters (workers/forward.py COUNTERS) that are drops, by reason.
DROP_REASONS = {
    "dropTruncated": "truncated",
    "dropNotRtp": "not_rtp",
    "dropMalformed": "malformed",
    "dropUnknownSsrc": "unknown_ssrc",
    "dropUnknownPt": "unknown_pt",
    "dropRtx": "rtx",
    "dropProducerPaused": "producer_paused",
    "dropStranger": "stranger",
    "rtcpMalformed": "rtcp_malformed",
    "pipeDropped": "pipe",
    "pipeUnknownProducer": "pipe_unknown_producer",
    "sendErrors": "send_error",
}
# Per-worker counters: (family name without tureen_worker_ and _total, help, where in worker.info).
WORKER_COUNTERS = (
    ("packets_in", "RTP and RTCP packets received by the worker's transports and pipes.", ("packetsIn",)),
    ("packets_out", "RTP packets sent to consumers.", ("packetsOut",)),
    ("bytes_in", "Bytes received on the worker's transports.", ("bytesIn",)),
    ("bytes_out", "RTP and RTCP bytes sent by the worker's transports.", ("bytesOut",)),
    ("nacks_received", "RTCP NACKs received from consumers' receivers.", ("counters", "nackReceived")),
    ("nacks_served", "Packets retransmitted from the store to answer NACKs.", ("counters", "nackServed")),
    ("plis_received", "PLIs and FIRs received from consumers' receivers.", ("counters", "pliReceived")),
    ("plis_sent", "Key frame requests sent toward producers.", ("counters", "keyFrameRequests")),
    ("rtx_sent", "Retransmissions sent (RTX or on the media SSRC).", ("counters", "rtxSent")),
    ("cpu_seconds", "CPU time of the worker process (user + system).", ("cpuSeconds",)),
    ("leg_packets_out", "RTP packets sent to other hosts over host legs.", ("legs", "packetsOut")),
    ("leg_bytes_out", "Bytes sent to other hosts over host legs (as on the wire).", ("legs", "octetsOut")),
    ("leg_packets_in", "RTP packets taken from other hosts over host legs.", ("legs", "packetsIn")),
    ("leg_bytes_in", "Bytes taken from other hosts over host legs (as on the wire).", ("legs", "octetsIn")),
)


def _figure(info: dict[str, Any], path: tuple[str, ...]) -> float | None:
    value: Any = info
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


class StateCollector(Collector):
    """Gauges of the rooms' state and the workers' last reports, computed at scrape time."""

    def __init__(self, server: Server) -> None:
        self.server = server

    def collect(self) -> Iterator[Metric]:
        yield from self._rooms()
        yield from self._workers()

    def _rooms(self) -> Iterator[Metric]:
        rooms = [room for room in self.server.rooms.values() if not room.closed]
        peers = [peer for room in rooms for peer in room.peers.values() if not peer.closed]
        transports: dict[tuple[str, str, str], int] = {}
        producers = {"audio": 0, "video": 0}
        consumers = {"audio": 0, "video": 0}
        for peer in peers:
            for t in peer.transports.values():
                if t.closed:
                    continue
                key = ("plain", "none", "none") if t.plain else ("webrtc", t.ice_state, t.dtls_state)
                transports[key] = transports.get(key, 0) + 1
            for p in peer.producers.values():
                if not p.closed and p.kind in producers:
                    producers[p.kind] += 1
            for c in peer.consumers.values():
                if not c.closed and c.kind in consumers:
                    consumers[c.kind] += 1
        yield GaugeMetricFamily("tureen_rooms", "Open rooms.", value=len(rooms))
        yield GaugeMetricFamily("tureen_peers", "Joined peers in all rooms.", value=len(peers))
        family = GaugeMetricFamily(
            "tureen_transports", "Open transports by kind and ICE/DTLS state.", labels=["kind", "ice_state", "dtls_state"]
        )
        for key, count in sorted(transports.items()):
            family.add_metric(list(key), count)
        yield family
        for name, counts in (("producers", producers), ("consumers", consumers)):
            family = GaugeMetricFamily(f"tureen_{name}", f"Open {name} by kind.", labels=["kind"])
            for kind, count in counts.items():
                family.add_metric([kind], count)
            yield family

    def _workers(self) -> Iterator[Metric]:
        pool = self.server.pool
        links = sorted(pool.links.values(), key=lambda link: link.index)
        up = GaugeMetricFamily("tureen_worker_up", "1 while the worker runs, 0 while it is replaced.", labels=["worker"])
        rss = GaugeMetricFamily("tureen_worker_resident_memory_bytes", "RSS of the worker process.", labels=["worker"])
        restarts = CounterMetricFamily(
            "tureen_worker_restarts", "Times the worker at this index was replaced after a death.", labels=["worker"]
        )
        drops = CounterMetricFamily("tureen_worker_drops", "Packets dropped, by reason.", labels=["worker", "reason"])
        counters = {
            name: CounterMetricFamily(f"tureen_worker_{name}", help_text, labels=["worker"])
            for name, help_text, _ in WORKER_COUNTERS
        }
        for link in links:
            worker = str(link.index)
            up.add_metric([worker], 1 if link.alive and not link.stopping else 0)
            restarts.add_metric([worker], pool.restarts.get(link.index, 0))
            info = link.info
            if not info:  # no report yet (just started): no figures rather than zeros
                continue
            for name, _, path in WORKER_COUNTERS:
                value = _figure(info, path)
                if value is not None:
                    counters[name].add_metric([worker], value)
            value = _figure(info, ("rssBytes",))
            if value is not None:
                rss.add_metric([worker], value)
            for key, reason in DROP_REASONS.items():
                value = _figure(info, ("counters", key))
                if value is not None:
                    drops.add_metric([worker, reason], value)
        yield up
        yield rss
        yield restarts
        yield drops
        yield from counters.values()


class Metrics:
    """The registry of one supervisor, its control request families and its HTTP endpoint."""

    def __init__(self, server: Server) -> None:
        from tureen.supervisor.server import APP_ACTIONS

        # The method label's values: the control API's methods, nothing a client makes up.
        self.methods = frozenset(server._methods) | APP_ACTIONS
        self.registry = CollectorRegistry(auto_describe=False)
        self.requests = Counter(
            "tureen_control_requests",
            "Control API requests by method and outcome (ok or the error code).",
            ["method", "outcome"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "tureen_control_request_duration_seconds",
            "Time from a control request's arrival to its reply.",
            ["method"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(StateCollector(server))
        self._runner: web.AppRunner | None = None
        self.address: tuple[str, int] | None = None

    def observe(self, method: Any, outcome: str, seconds: float) -> None:
        """Count one answered control request. Labels stay bounded: a method the server does
        not know is "unknown", an outcome that is no known error code is "other"."""
        label = method if isinstance(method, str) and method in self.methods else "unknown"
        if outcome != "ok" and outcome not in ERROR_CODES:
            outcome = "other"
        self.requests.labels(label, outcome).inc()
        self.latency.labels(label).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    async def _handle(self, request: web.Request) -> web.Response:
        return web.Response(body=self.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def start(self, listen: str) -> tuple[str, int] | None:
        """Serve GET /metrics on `listen` (HOST:PORT, port 0 = any free one); None for "off".
        Returns the address bound. RuntimeError, naming the setting, if it cannot bind."""
        where = parse_listen(listen)
        if where is None:
            return None
        app = web.Application()
        app.router.add_get("/metrics", self._handle)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        try:
            site = web.TCPSite(runner, where[0], where[1])
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise RuntimeError(
                f"metrics_listen {listen}: cannot listen there ({exc.strerror or exc}); choose another "
                "HOST:PORT (--metrics-listen, TUREEN_METRICS_LISTEN) or off"
            ) from None
        self._runner = runner
        sockname = runner.addresses[0]  # the port actually bound, for port 0
        self.address = (str(sockname[0]), int(sockname[1]))
        return self.address

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
