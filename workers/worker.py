"""One worker process: the supervisor's requests in, replies and events out; the sole writer
of the router's tables (workers/router.py), which the forwarder only reads.

Every request is validated completely before anything changes, so a bad one (not JSON, not
an object, unknown method, wrong types, unknown or duplicate ids) gets an error reply and
leaves the worker as it was. The channel contract is docs/internals.md.

Everything runs on one asyncio loop, callback style: the supervisor channel, the pipe and
each transport's sockets are readers on it; no request handler awaits.

What to do about RTCP (NACK service, key-frame requests and their throttling, SR/RR, REMB)
is decided in workers/rtp/feedback.py and simulcast moves in workers/simulcast.py; this
module performs their answers (`_act`).

Why one module over 600 lines (about 840): half of it is one handler per command of
the contract (shared/contract.py), each a short check-then-apply on the router's tables, in
the order of the contract; the rest is the life cycle, the channel's decode and the
transports' callbacks (ready, RTCP, failure) that those handlers wire up. They share the
lookups (`_transport`, `_producer`, `_consumer`) and the rule that this is the one writer
of the router's tables, which is checkable only while the writes are in one file; split by
object, each request would cross one more module and the tables would have several
writers. The seam if it grows: the `transport.*` handlers (with `_webrtc`), which share
the least with the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
import time
from collections.abc import Callable
from typing import Any

import psutil
import zmq
from tureen.shared import contract as c
from tureen.shared import logs, wire
from tureen.shared.config import Config
from tureen.shared.contract import control_path
from tureen.shared.errors import (
    INTERNAL,
    UNAVAILABLE,
    ProtocolError,
    bad_request,
    duplicate,
    not_found,
)
from tureen.workers import native_loop, sched_slice, stats
from tureen.workers.channel import SupervisorChannel
from tureen.workers.forward import Forwarder
from tureen.workers.router import Consumer, Producer, Router, Stream
from tureen.workers.rtp import rtcp
from tureen.workers.rtp.codecs import StartCheck, start_check
from tureen.workers.rtp.consumer import ConsumerRewrite
from tureen.workers.rtp.feedback import Action, Feedback, Resend, SendRtcp
from tureen.workers.rtp.nack_generator import TIMER_INTERVAL as NACK_TIMER_INTERVAL
from tureen.workers.rtp.nack_generator import NackGenerator
from tureen.workers.transport.base import Transport
from tureen.workers.transport.host_leg import LegHub, LegOut
from tureen.workers.transport.pipe import PipeHub
from tureen.workers.transport.plain import PlainRtpTransport
from tureen.workers.transport.webrtc import WebRtcTransport

log = logging.getLogger("tureen.workers.worker")

DEFAULT_CLOCK_RATE = {"audio": 48000, "video": 90000}
# s: parent check, reader safety poke, simulcast activity (every 250 ms: workers/simulcast.py).
HOUSEKEEPING_INTERVAL = 0.25
# Receiver reports (and REMB) every RTCP_EVERY housekeeping ticks: once a second, as
# browsers send theirs (RFC 3550's 5% rule gives about that at video rates).
RTCP_EVERY = 4
# Commands the supervisor sends on timers (heartbeat, metrics, stats): not logged at debug,
# where every other command is (one line each would drown what an operator looks for).
_PERIODIC = frozenset({c.WorkerPing, c.WorkerInfo, c.StatsGet})


class Worker:
    def __init__(self, index: int, run_dir: str, config: Config, parent_pid: int = 0) -> None:
        self.index = index
        self._ppid = parent_pid or os.getppid()
        self.run_dir = run_dir
        self.config = config
        self.pid = os.getpid()
        self.router = Router(on_key_frame_needed=self._key_frame_needed)
        # Sender SSRC of the RTCP feedback this worker writes (RR, REMB, PLI, NACK towards
        # producers), and its CNAME (the SDES chunk of those compound packets): random, one
        # per worker for its life, the RTCP endpoint the senders see (RFC 3550 6.5.1: stable
        # per endpoint; nothing ties it to a user, so nothing about one leaks).
        self.rtcp_ssrc = int.from_bytes(os.urandom(4), "big") or 1
        self.cname = f"tureen-{secrets.token_hex(8)}"
        # Where WebRTC transports bind, IPv4 first: [(ip, announced ip or None)].
        self._rtc_addresses = [
            (ip, announced or None)
            for ip, announced in (
                (config.rtc_ipv4, config.rtc_announced_ipv4),
                (config.rtc_ipv6, config.rtc_announced_ipv6),
            )
            if ip
        ]
        self._ticks = 0
        self.forwarder = Forwarder(core=config.fanout, io_uring=config.io_uring, native_rx=config.native_rx)
        self.forwarder.on_switch = self.router.complete_switch
        # NACKs towards senders: the forwarder reports gaps (_on_nack); a timer runs only
        # while some stream has packets missing (_nack_tick), so no loss costs nothing.
        self.forwarder.on_nack = self._on_nack
        self._nack_streams: set[Stream] = set()
        self._nack_handle: asyncio.TimerHandle | None = None
        # RTCP feedback, NACK service and reports decide (workers/rtp/feedback.py); this
        # worker performs what they return (_act).
        self.feedback = Feedback(
            self.rtcp_ssrc, self.cname, self.forwarder, self.router.consumer_by_ssrc, config.max_incoming_bitrate
        )
        self._process = psutil.Process()
        # Host legs (media from and to other hosts, transport/host_leg.py): binds on first use.
        self.legs = LegHub(
            self.forwarder, config.rtc_ipv4, config.rtc_announced_ipv4, config.rtc_min_port, config.rtc_max_port, self.rtcp_ssrc
        )
        # One handler per command type of the contract (tests/unit/test_contract.py checks
        # that the two sets are equal); each takes its decoded command.
        self._handlers: dict[type[c.Command], Callable[[Any], Any]] = {
            c.WorkerPing: self._worker_ping,
            c.WorkerInfo: self._worker_info,
            c.WorkerDump: self._worker_dump,
            c.WorkerClose: self._worker_close,
            c.WorkerSetLogLevel: self._worker_set_log_level,
            c.TransportCreatePlain: self._transport_create_plain,
            c.TransportConnectPlain: self._transport_connect_plain,
            c.TransportCreateWebRtc: self._transport_create_webrtc,
            c.TransportSetRemoteDtls: self._transport_set_remote_dtls,
            c.TransportRestartIce: self._transport_restart_ice,
            c.TransportClose: self._transport_close,
            c.ProducerCreate: self._producer_create,
            c.ProducerUpdate: self._producer_update,
            c.ProducerPause: self._producer_pause,
            c.ProducerResume: self._producer_resume,
            c.ProducerClose: self._producer_close,
            c.ProducerRequestKeyFrame: self._producer_request_key_frame,
            c.ProducerNack: self._producer_nack,
            c.ConsumerCreate: self._consumer_create,
            c.ConsumerPause: self._consumer_pause,
            c.ConsumerResume: self._consumer_resume,
            c.ConsumerClose: self._consumer_close,
            c.ConsumerSetPreferredProfile: self._consumer_set_preferred_profile,
            c.PipeOpen: self._pipe_open,
            c.PipeClose: self._pipe_close,
            c.PipeCloseTo: self._pipe_close_to,
            c.LegAddress: self._leg_address,
            c.LegReceive: self._leg_receive,
            c.LegSend: self._leg_send,
            c.LegClose: self._leg_close,
            c.ProducerInterrupt: self._producer_interrupt,
            c.StatsGet: self._stats_get,
            c.ProducerGetAudioLevels: self._producer_get_audio_levels,
            c.TransportSetMaxBitrate: self._transport_set_max_bitrate,
            c.ConsumerRequestKeyFrame: self._consumer_request_key_frame,
        }
        self.exit_reason = ""

    # -- life cycle ---------------------------------------------------------------------

    async def run(self) -> int:
        self.loop = loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        self.ctx = zmq.Context()
        self.channel = SupervisorChannel(
            loop, self.ctx, f"ipc://{control_path(self.run_dir, self.index)}", self._on_frame
        )
        try:
            self.pipes = PipeHub(
                loop,
                self.run_dir,
                self.index,
                self.forwarder,
                lookup=self.router.producers.get,
                on_discontinuity=self.router.interrupt_producer,
            )
        except OSError as exc:
            log.error("worker %d: cannot bind its pipe in %s: %s", self.index, self.run_dir, exc)
            self.channel.close()
            self.ctx.term()
            return 1
        if self.config.rtc_ipv4:
            # Bound now, so an operator (worker.dump's legs.local) and a firewall rule know
            # the port before any media crosses; a failure here is retried at the first leg.
            try:
                self.legs.address()
            except OSError as exc:
                log.warning("worker %d: no socket for host legs yet: %s", self.index, exc)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop, signal.Signals(sig).name)
        self._process.cpu_percent(None)  # start the measuring interval
        self._housekeeping_handle = loop.call_later(HOUSEKEEPING_INTERVAL, self._housekeeping)
        self.emit(c.WorkerReady(index=self.index, pid=self.pid))
        log.info("worker %d ready (pid %d, run dir %s)", self.index, self.pid, self.run_dir)
        await self._stopped.wait()
        self._teardown()
        return 0

    def stop(self, reason: str) -> None:
        if not self._stopped.is_set():
            self.exit_reason = reason
            log.info("worker %d stopping: %s", self.index, reason)
            self._stopped.set()

    def _housekeeping(self) -> None:
        # The parent pid is given, not read at start: a parent that died before this
        # process looked would otherwise leave us adopted by init and never noticed.
        if os.getppid() != self._ppid:
            self.stop(f"parent process {self._ppid} went away")
            return
        self._ticks += 1
        self.router.tick_activity(self.loop.time())
        stats.sample_rates(self.router, self.loop.time())
        if self._ticks % RTCP_EVERY == 0:
            reports = self.feedback.reports
            at = self.loop.time()
            self._act(reports.receiver_reports(self.router.transports.values(), at))
            self._act(reports.sender_reports(self.router.consumers.values(), rtcp.ntp_now(), time.monotonic(), at))
        # ZMQ_FD is edge-like; a poke costs one getsockopt and rescues any missed wake-up.
        self.channel.reader.poke()
        self._housekeeping_handle = self.loop.call_later(HOUSEKEEPING_INTERVAL, self._housekeeping)

    def _teardown(self) -> None:
        self._housekeeping_handle.cancel()
        if self._nack_handle is not None:
            self._nack_handle.cancel()
        for sig in (signal.SIGTERM, signal.SIGINT):
            self.loop.remove_signal_handler(sig)
        for transport in list(self.router.transports.values()):
            transport.close()
        self.pipes.close()
        self.legs.close()
        self.channel.close()  # lingers up to 2 s for the last replies
        self.ctx.term()
        log.info("worker %d exited (%s)", self.index, self.exit_reason)

    # -- channel ------------------------------------------------------------------------

    def _on_frame(self, frame: bytes) -> None:
        request_id: Any = None
        method: Any = None
        try:
            message = wire.decode(frame)
            request_id = message.get("id")
            method = message.get("method")
            if "event" in message or request_id is None:
                raise bad_request("a request needs an id and a method")
            if isinstance(request_id, bool) or not isinstance(request_id, int | str):
                raise bad_request(f"request id must be an integer or a string, got {request_id!r:.40}")
            kind = c.command_type(method)  # unknown_method before anything else
            self._check_deadline(message.get("deadline"))
            if kind not in _PERIODIC:
                log.debug("worker %d: request %r: %s", self.index, request_id, method)
            # Decoded once, here: handlers get a typed command whose fields are all checked.
            data = self._handlers[kind](kind.from_wire(message))
        except ProtocolError as err:
            log.warning("worker %d: request %r (%s) refused: %s", self.index, request_id, method, err.message)
            self.channel.send(wire.reply_error(request_id, err))
            return
        except Exception:
            log.exception("worker %d: request %r (%s) failed", self.index, request_id, method)
            err = ProtocolError(INTERNAL, f"worker {self.index} failed on {method}; see its log")
            self.channel.send(wire.reply_error(request_id, err))
            return
        self.channel.send(wire.reply_ok(request_id, {} if data is None else data))

    @staticmethod
    def _check_deadline(deadline: Any) -> None:
        """Refuse a request the supervisor has already given up on (it waited `worker_timeout`
        for the reply: this worker was stopped, or behind): executing it now would create
        objects the supervisor does not know. `deadline` is CLOCK_MONOTONIC seconds, which
        is one clock for every process of the host (Linux)."""
        if deadline is None:
            return
        if isinstance(deadline, bool) or not isinstance(deadline, int | float):
            raise bad_request(f"deadline must be a number (monotonic seconds), got {deadline!r:.40}")
        late = time.monotonic() - deadline
        if late > 0:
            raise ProtocolError(
                UNAVAILABLE, f"request arrived {late:.1f} s after its deadline; not executed"
            )

    def emit(self, event: c.Event) -> None:
        self.channel.send(event.to_wire())

    # TransportListener
    def transport_ready(self, transport: Transport) -> None:
        self.router.transport_ready(transport)

    def transport_event(self, transport: Transport, event: c.Event) -> None:
        self.emit(event)

    def transport_rtcp(self, transport: Transport, packet: bytes) -> None:
        """RTCP from a transport's remote: a receiver's PLI/FIR, NACK, report blocks and REMB
        about our consumers, a sender's SR about its producer streams (SDES, BYE, APP and
        other feedback are not read)."""
        try:
            fb = rtcp.parse(packet)
        except ValueError as exc:
            self.forwarder.rtcp_malformed += 1
            log.debug("%s: malformed RTCP dropped: %s", transport.subject, exc, extra=transport.subject.extra)
            return
        self._act(self.feedback.on_rtcp(transport, fb, self.loop.time()))

    def _act(self, actions: list[Action]) -> None:
        """Perform what workers/rtp/feedback.py decided, in its order: RTCP out,
        retransmissions (their outcome reported back for the counters), events."""
        for action in actions:
            if isinstance(action, SendRtcp):
                action.transport.send_rtcp(action.packet)
            elif isinstance(action, Resend):
                try:
                    action.send(action.packet)
                except (ValueError, OSError):
                    self.feedback.nacks.failed(action)
                    continue
                self.feedback.nacks.sent(action)
            else:
                self.emit(action)

    def transport_failed(self, transport: Transport, reason: str) -> None:
        if self.router.transports.get(transport.id) is not transport:
            return  # closed meanwhile by the supervisor
        self._drop_transport(transport)
        log.warning("%s closed by the worker: %s", transport.subject, reason, extra=transport.subject.extra)
        self.emit(c.TransportClosed(transportId=transport.id, reason=reason))

    # -- key frames ---------------------------------------------------------------------

    def _key_frame_needed(self, consumer: Consumer, stream: Stream) -> None:
        self._request_key_frame(stream, consumer)

    def _request_key_frame(self, stream: Stream, consumer: Consumer | None = None) -> None:
        """Ask the producer of `stream` for a key frame: a PLI on its transport, or through
        the supervisor to the worker that has it (a piped producer); throttled per stream."""
        self._act(self.feedback.key_frames.request(stream, consumer, self.loop.time()))

    # -- NACKs towards senders (rtp/nack_generator.py) --------------------------------------

    def _set_nack(self, producer: Producer, nack: bool) -> None:
        """Give each stream of a producer received here a NACK generator when its codec
        negotiated nack (v2's rule), keeping a stream's running one; none otherwise. A piped
        copy fed by a host leg NACKs its video over the leg (the origin keeps every video
        stream's packets, whatever the sender negotiated)."""
        if producer.transport is None:
            nack = producer.leg_in is not None and producer.kind == "video"
        for stream in producer.streams:
            if not nack:
                stream.nack = None
            elif stream.nack is None:
                stream.nack = NackGenerator()

    def _on_nack(self, stream: Stream, seqs: list[int]) -> None:
        """The forwarder found packets of `stream` missing (or too many: a key frame then)."""
        nack = stream.nack
        if nack is None:
            return
        if nack.wants_key_frame:
            nack.wants_key_frame = False
            # On a gateway the request goes through the supervisor, naming a consumer.
            self._request_key_frame(stream, next(iter(stream.consumers.values()), None))
        self._send_nacks(stream, seqs)
        if nack.pending:
            self._nack_streams.add(stream)
            if self._nack_handle is None:
                self._nack_handle = self.loop.call_later(NACK_TIMER_INTERVAL, self._nack_tick)

    def _nack_tick(self) -> None:
        """Retries of the streams with packets missing; runs while there are any."""
        self._nack_handle = None
        now = time.monotonic()  # the forwarder's clock
        for stream in list(self._nack_streams):
            nack = stream.nack
            producer = stream.producer
            if nack is None or not nack.pending or self.router.producers.get(producer.id) is not producer:
                self._nack_streams.discard(stream)
                continue
            self._send_nacks(stream, nack.on_timer(now))
            if not nack.pending:
                self._nack_streams.discard(stream)
        if self._nack_streams:
            self._nack_handle = self.loop.call_later(NACK_TIMER_INTERVAL, self._nack_tick)

    def _send_nacks(self, stream: Stream, seqs: list[int]) -> None:
        """NACK `seqs` of `stream` upstream: to its sender, or over the host leg feeding it."""
        leg = stream.producer.leg_in
        if leg is None:
            self._act(self.feedback.nacks.generated(stream, seqs))
            return
        for i in range(0, len(seqs), c.MAX_NACK_SEQS):
            stream.nack_count += 1
            self.legs.send_nack(leg, stream.ssrc, seqs[i : i + c.MAX_NACK_SEQS])

    def _on_effective_profile(self, rewrite: ConsumerRewrite) -> None:
        consumer = self.router.consumers.get(rewrite.consumer_id)
        subject = consumer.subject if consumer is not None else logs.Subject("consumer", rewrite.consumer_id)
        log.info("%s: effective profile %s", subject, rewrite.profile, extra=subject.extra)
        self.emit(c.ConsumerEffectiveProfile(consumerId=rewrite.consumer_id, profile=rewrite.profile))

    # -- lookups ------------------------------------------------------------------------

    def _lookup(self, oid: int, what: str, table: dict[int, Any]) -> Any:
        """The object `{what} {oid}` of a command, or not_found."""
        obj = table.get(oid)
        if obj is None:
            raise not_found(f"{what} {oid} not found on worker {self.index}")
        return obj

    def _transport(self, tid: int) -> Transport:
        return self._lookup(tid, "transport", self.router.transports)

    def _producer(self, pid: int) -> Producer:
        return self._lookup(pid, "producer", self.router.producers)

    def _consumer(self, cid: int) -> Consumer:
        return self._lookup(cid, "consumer", self.router.consumers)

    # -- worker.* -----------------------------------------------------------------------

    def _worker_ping(self, cmd: c.WorkerPing) -> dict[str, Any]:
        """The supervisor's heartbeat: answering proves this loop turns."""
        return {}

    def _worker_info(self, cmd: c.WorkerInfo) -> dict[str, Any]:
        fwd = self.forwarder
        return {
            "index": self.index,
            "pid": self.pid,
            "transports": len(self.router.transports),
            "producers": len(self.router.producers),
            "consumers": len(self.router.consumers),
            "packetsIn": fwd.packets_in(),
            "packetsOut": fwd.rtp_out,
            # The cross-worker pipe (the benchmark's cross scenario reads these).
            "pipePacketsOut": fwd.pipe_packets_out,
            "pipeMessagesOut": fwd.pipe_messages_out,
            "pipeDropped": fwd.pipe_dropped,
            "pipePacketsIn": fwd.pipe_packets_in,
            # Host legs (packets and bytes that crossed between hosts here, both ways).
            "legs": self.legs.totals(),
            "fanout": fwd.core(),
            # The scheduler slice in effect (µs; worker_slice_us asks for one), None: unknown.
            "sliceUs": sched_slice.slice_us(),
            "cpuPercent": self._process.cpu_percent(None),
            # For the supervisor's Prometheus endpoint (supervisor/metrics.py): totals since
            # this worker started, never shrinking while it lives.
            "bytesIn": self.router.octets_in_closed + sum(t.octets_in() for t in self.router.transports.values()),
            "bytesOut": self.router.octets_out_closed + sum(t.octets_out() for t in self.router.transports.values()),
            "cpuSeconds": sum(self._process.cpu_times()[:2]),
            "rssBytes": self._process.memory_info().rss,
            "counters": fwd.counters(),
        }

    def _worker_dump(self, cmd: c.WorkerDump) -> dict[str, Any]:
        r = self.router
        now = self.loop.time()
        producers = []
        for producer in r.producers.values():
            entry = producer.dump()
            # Bit/s of each stream and consumer over the last rate window (`tureen room`).
            for stream, figures in zip(producer.streams, entry["streams"], strict=True):
                figures["bitrate"] = stream.rate.bitrate(now, stream.octets)
            producers.append(entry)
        return {
            "index": self.index,
            "pid": self.pid,
            "transports": [t.dump() for t in r.transports.values()],
            "producers": producers,
            "consumers": [
                x.dump() | {"bitrate": x.rate.bitrate(now, x.wire_octets())} for x in r.consumers.values()
            ],
            "pipe": self.pipes.dump(),
            "legs": self.legs.dump(),
            "counters": self.forwarder.counters(),
            "fanout": self._dump_fanout(),
            # What worker_slice_us asked for and what the kernel gives this worker (µs).
            "sched": {"sliceUs": sched_slice.slice_us(), "askedSliceUs": self.config.worker_slice_us},
        }

    def _dump_fanout(self) -> dict[str, Any]:
        """The forwarder's fan-out dump, and on the native loop how many connected sockets
        it drains in C (`nativeLoopSockets`; absent on asyncio's own loop)."""
        dump = self.forwarder.dump_fanout()
        selector = native_loop.selector_of(self.loop)
        if selector is not None:
            dump["nativeLoopSockets"] = selector.native_readers()
        return dump

    def _stats_get(self, cmd: c.StatsGet) -> dict[str, Any]:
        """Data-path figures for the supervisor's stats timers (workers/stats.py)."""
        return stats.collect(
            self.router,
            self.loop.time(),
            cmd.transportIds,
            cmd.producerIds,
            cmd.consumerIds,
            self.config.max_incoming_bitrate,
        )

    def _worker_set_log_level(self, cmd: c.WorkerSetLogLevel) -> dict[str, Any]:
        try:
            logs.set_level(cmd.level, cmd.logger)
        except ValueError as exc:  # a dotted name the contract's pattern lets through ("a..b")
            raise bad_request(str(exc)) from None
        log.warning("worker %d: log level of %s set to %s", self.index, cmd.logger or "everything", cmd.level)
        return {}

    def _worker_close(self, cmd: c.WorkerClose) -> dict[str, Any]:
        self.loop.call_soon(self.stop, "worker.close")
        return {}

    # -- transport.* --------------------------------------------------------------------

    def _transport_create_plain(self, cmd: c.TransportCreatePlain) -> dict[str, Any]:
        tid = cmd.transportId
        if tid in self.router.transports:
            raise duplicate(f"transport {tid} already exists on worker {self.index}")
        comedia = cmd.comedia
        remote = None
        if cmd.remoteIp is not None and cmd.remotePort is not None:
            remote = (cmd.remoteIp, cmd.remotePort)
            if comedia:  # the latch decides; the address only says what was announced
                remote = None
        cfg = self.config
        try:
            transport = PlainRtpTransport(
                tid, self, self.loop, self.forwarder, cfg.rtc_ipv4, cfg.rtc_min_port, cfg.rtc_max_port, comedia
            )
        except OSError as exc:
            raise ProtocolError(UNAVAILABLE, f"transport {tid}: {exc}") from None
        transport.subject = logs.Subject("transport", tid, cmd.room, cmd.peer, cmd.clientId)
        if remote is not None:
            try:
                transport.connect(*remote)
            except OSError as exc:
                transport.close()
                raise ProtocolError(UNAVAILABLE, f"transport {tid}: cannot connect to {remote[0]}:{remote[1]}: {exc}") from None
        self.router.add_transport(transport)
        ip, port = transport.local
        log.info(
            "%s: plain created on %s:%d (%s)",
            transport.subject,
            ip,
            port,
            "comedia" if comedia else f"remote {remote[0]}:{remote[1]}" if remote else "remote not yet known",
            extra=transport.subject.extra,
        )
        return {"ip": ip, "port": port}

    def _transport_connect_plain(self, cmd: c.TransportConnectPlain) -> dict[str, Any]:
        transport = self._transport(cmd.transportId)
        if not isinstance(transport, PlainRtpTransport):
            raise bad_request(f"transport {transport.id} is a {transport.kind} transport, not plain")
        ip, port = cmd.remoteIp, cmd.remotePort
        try:
            transport.connect(ip, port)
        except OSError as exc:
            raise ProtocolError(UNAVAILABLE, f"transport {transport.id}: cannot connect to {ip}:{port}: {exc}") from None
        return {}

    def _transport_create_webrtc(self, cmd: c.TransportCreateWebRtc) -> dict[str, Any]:
        tid = cmd.transportId
        if tid in self.router.transports:
            raise duplicate(f"transport {tid} already exists on worker {self.index}")
        cfg = self.config
        try:
            transport = WebRtcTransport(
                tid,
                self,
                self.loop,
                self.forwarder,
                self._rtc_addresses,
                cfg.rtc_min_port,
                cfg.rtc_max_port,
                cmd.options(),
            )
        except OSError as exc:
            raise ProtocolError(UNAVAILABLE, f"transport {tid}: {exc}") from None
        transport.subject = logs.Subject("transport", tid, cmd.room, cmd.peer, cmd.clientId)
        if cmd.dtlsParameters is not None:
            try:
                transport.set_remote_dtls(cmd.dtlsParameters)
            except ProtocolError:
                transport.close()
                raise
        self.router.add_transport(transport)
        log.info(
            "%s: webrtc created on %s",
            transport.subject,
            ", ".join(f"{x['ip']}:{x['port']}/{x['protocol']}" for x in transport.candidates),
            extra=transport.subject.extra,
        )
        return transport.local_parameters()

    def _webrtc(self, tid: int) -> WebRtcTransport:
        transport = self._transport(tid)
        if not isinstance(transport, WebRtcTransport):
            raise bad_request(f"transport {transport.id} is a {transport.kind} transport, not webrtc")
        return transport

    def _transport_set_remote_dtls(self, cmd: c.TransportSetRemoteDtls) -> dict[str, Any]:
        transport = self._webrtc(cmd.transportId)
        return {"dtlsParameters": transport.set_remote_dtls(cmd.dtlsParameters)}

    def _transport_restart_ice(self, cmd: c.TransportRestartIce) -> dict[str, Any]:
        return {"iceParameters": self._webrtc(cmd.transportId).restart_ice()}

    def _transport_close(self, cmd: c.TransportClose) -> dict[str, Any]:
        transport = self._transport(cmd.transportId)
        closed = self._drop_transport(transport)
        log.info("%s closed (producers closed with it: %s)", transport.subject, closed or "none", extra=transport.subject.extra)
        return {}

    def _drop_transport(self, transport: Transport) -> list[int]:
        for producer in transport.producers.values():
            self._close_pipes(producer)
        closed = self.router.remove_transport(transport)
        transport.close()
        return closed

    # -- producer.* ---------------------------------------------------------------------

    def _producer_create(self, cmd: c.ProducerCreate) -> dict[str, Any]:
        pid = cmd.producerId
        if pid in self.router.producers:
            raise duplicate(f"producer {pid} already exists on worker {self.index}")
        kind = cmd.kind
        transport = self._transport(cmd.transportId) if cmd.transportId is not None else None
        paused = cmd.paused
        streams, pt_pairs, ext_pairs, clock_rate, rtx_pairs = self._rtp_spec(cmd, transport, None)
        producer = Producer(pid, kind, transport, paused, streams, pt_pairs, ext_pairs, clock_rate, rtx_pairs)
        producer.key_checks = self._key_checks
        producer.subject = logs.Subject("producer", pid, cmd.room, cmd.peer, cmd.clientId)
        self._set_nack(producer, bool(cmd.codecs) and cmd.codecs[0].nack)
        self.router.add_producer(producer)
        log.info(
            "%s: %s %s, ssrcs %s%s",
            producer.subject,
            kind,
            f"on transport {transport.id}" if transport else "piped",
            [s[0] for s in streams],
            ", paused" if paused else "",
            extra=producer.subject.extra,
        )
        return {}

    def _producer_update(self, cmd: c.ProducerUpdate) -> dict[str, Any]:
        """New RTP parameters for a producer (updateProducer); same params as create."""
        producer = self._producer(cmd.producerId)
        if cmd.kind != producer.kind:
            raise bad_request(f"producer {producer.id} is {producer.kind}; its kind cannot change")
        if cmd.transportId != (producer.transport.id if producer.transport else None):
            raise bad_request(f"producer {producer.id}: transportId cannot change")
        paused = producer.paused if cmd.paused is None else cmd.paused
        spec = self._rtp_spec(cmd, producer.transport, producer)
        producer.key_checks = self._key_checks
        self.router.update_producer(producer, *spec)
        self._set_nack(producer, bool(cmd.codecs) and cmd.codecs[0].nack)
        if paused != producer.paused:
            self._set_producer_paused(producer, paused)
        log.info("%s updated: ssrcs %s", producer.subject, [s[0] for s in spec[0]], extra=producer.subject.extra)
        return {}

    def _rtp_spec(
        self, cmd: c.ProducerCreate, transport: Transport | None, updating: Producer | None
    ) -> tuple[
        list[tuple[int, int | None, str]], list[tuple[int, int]], list[tuple[int, int]], int, list[tuple[int, int]]
    ]:
        """(streams, payload type pairs, extension id pairs, clock rate, [room media PT, room
        RTX PT] pairs) of producer.create/update."""
        streams = self._streams(cmd, transport, updating)
        clock_rate = DEFAULT_CLOCK_RATE[cmd.kind]
        rtx_pairs: list[tuple[int, int]] = []
        key_checks: dict[int, StartCheck | None] = {}
        for i, codec in enumerate(cmd.codecs):
            if i == 0:
                clock_rate = codec.clockRate
            if codec.rtxPayloadType is not None:
                rtx_pairs.append((codec.payloadType, codec.rtxPayloadType))
            key_checks[codec.payloadType] = start_check(codec.mimeType)
        self._key_checks = key_checks
        return streams, list(cmd.payloadTypes), list(cmd.headerExtensionIds), clock_rate, rtx_pairs

    def _streams(
        self, cmd: c.ProducerCreate, transport: Transport | None, updating: Producer | None
    ) -> list[tuple[int, int | None, str]]:
        """The streams as (ssrc, rtx ssrc, profile); none of their SSRCs may be received on
        the transport already, except by the producer being updated."""
        out: list[tuple[int, int | None, str]] = []
        for s in cmd.streams:
            for x in (s.ssrc, s.rtxSsrc):
                if x is None or transport is None:
                    continue
                if x in transport.ssrc_table or x in transport.rtx_ssrcs:
                    own = updating is not None and (x in updating.ssrc_table or x in updating.rtx_ssrcs)
                    if not own:
                        raise duplicate(f"ssrc {x} is already received on transport {transport.id}")
            out.append((s.ssrc, s.rtxSsrc, s.profile))
        return out

    def _producer_pause(self, cmd: c.ProducerPause) -> dict[str, Any]:
        self._set_producer_paused(self._producer(cmd.producerId), True)
        return {}

    def _producer_resume(self, cmd: c.ProducerResume) -> dict[str, Any]:
        self._set_producer_paused(self._producer(cmd.producerId), False)
        return {}

    def _set_producer_paused(self, producer: Producer, paused: bool) -> None:
        if producer.paused == paused:
            return
        self.router.set_producer_paused(producer, paused)
        for stream in producer.streams:  # what it drops while paused was not lost
            if stream.nack is not None:
                stream.nack.reset()
        if paused:  # consumers on other workers resync too (pipe discontinuity mark)
            for batch in producer.pipes.values():
                batch.mark_discontinuity(self.forwarder)
        elif producer.kind == "video" and producer.transport is not None:
            # What follows the pause refers to frames the consumers never got.
            for stream in producer.streams:
                if stream.fan or stream.pipes or stream.waiting:
                    self._request_key_frame(stream)
        log.info("%s %s", producer.subject, "paused" if paused else "resumed", extra=producer.subject.extra)

    def _local_stream(self, producer_id: int, ssrc: int) -> tuple[Producer, Stream]:
        """The producer and its stream `ssrc`, for requests only the worker that receives
        the producer can answer (key frames, NACKs towards the sender)."""
        producer = self._producer(producer_id)
        stream = producer.ssrc_table.get(ssrc)
        if stream is None:
            raise not_found(f"producer {producer.id} has no stream with ssrc {ssrc}")
        if producer.transport is None:
            raise bad_request(f"producer {producer.id} is piped here; ask the worker that receives it")
        return producer, stream

    def _producer_request_key_frame(self, cmd: c.ProducerRequestKeyFrame) -> dict[str, Any]:
        """A consumer on another worker needs a key frame of this producer's stream `ssrc`."""
        _, stream = self._local_stream(cmd.producerId, cmd.ssrc)
        self._request_key_frame(stream)
        return {}

    def _producer_nack(self, cmd: c.ProducerNack) -> dict[str, Any]:
        """A consumer on another worker misses these packets of this producer's stream
        `ssrc`: ask the sender (its RTX comes back through here and the pipe)."""
        producer, stream = self._local_stream(cmd.producerId, cmd.ssrc)
        self._act([self.feedback.nacks.nack_sender(producer, stream, cmd.seqs)])
        return {}

    def _producer_close(self, cmd: c.ProducerClose) -> dict[str, Any]:
        producer = self._producer(cmd.producerId)
        self._close_pipes(producer)
        closed = self.router.remove_producer(producer)
        log.info("%s closed (consumers closed with it: %s)", producer.subject, closed or "none", extra=producer.subject.extra)
        return {}

    def _close_pipes(self, producer: Producer) -> None:
        """Before a producer goes: its pipes and its legs (either end)."""
        for dest in list(producer.pipes):
            self.pipes.close_batch(self.router.remove_pipe(producer, dest))
        for leg_id in list(producer.legs):
            self.legs.remove(leg_id)
            self.router.remove_leg(producer, leg_id)
        if producer.leg_in is not None:
            self.legs.remove(producer.leg_in.leg_id)
            producer.leg_in = None

    def _producer_get_audio_levels(self, cmd: c.ProducerGetAudioLevels) -> dict[str, Any]:
        """Each named producer's mean level since the last ask (room.audioLevels)."""
        levels: list[list[int]] = []
        missing: list[int] = []
        for pid in cmd.producerIds:
            producer = self.router.producers.get(pid)
            if producer is None:
                missing.append(pid)
                continue
            level = producer.take_audio_level()
            if level is not None:
                levels.append([pid, level])
        return {"levels": levels, "missing": missing}

    def _transport_set_max_bitrate(self, cmd: c.TransportSetMaxBitrate) -> dict[str, Any]:
        transport = self._transport(cmd.transportId)
        transport.max_bitrate = cmd.bitrate
        return {"bitrate": self.feedback.reports.max_bitrate(transport)}

    def _consumer_request_key_frame(self, cmd: c.ConsumerRequestKeyFrame) -> dict[str, Any]:
        consumer = self._consumer(cmd.consumerId)
        if consumer.stream is not None:
            self._request_key_frame(consumer.stream, consumer)
        return {}

    # -- consumer.* ---------------------------------------------------------------------

    def _consumer_create(self, cmd: c.ConsumerCreate) -> dict[str, Any]:
        cid = cmd.consumerId
        if cid in self.router.consumers:
            raise duplicate(f"consumer {cid} already exists on worker {self.index}")
        producer = self._producer(cmd.producerId)
        transport = self._transport(cmd.transportId)
        kind = cmd.kind
        if kind != producer.kind:
            raise bad_request(f"consumer {cid} is {kind} but producer {producer.id} is {producer.kind}")
        ssrc, rtx = cmd.ssrc, cmd.rtxSsrc
        for other in transport.consumers.values():
            if ssrc in (other.ssrc, other.rtx_ssrc) or (rtx is not None and rtx in (other.ssrc, other.rtx_ssrc)):
                raise duplicate(f"consumer {other.id} on transport {transport.id} already sends ssrc {ssrc}/{rtx}")
        paused = cmd.paused
        profile = cmd.preferredProfile
        cname = cmd.cname
        consumer = Consumer(cid, kind, producer, transport, ssrc, rtx, paused, profile, self._on_effective_profile)
        consumer.cname = cname or ""
        consumer.subject = logs.Subject("consumer", cid, cmd.room, cmd.peer, cmd.clientId)
        self.router.add_consumer(consumer)
        log.info(
            "%s: %s of %s on transport %d, ssrc %d%s",
            consumer.subject,
            kind,
            producer.subject,
            transport.id,
            ssrc,
            ", paused" if paused else "",
            extra=consumer.subject.extra,
        )
        return {}

    def _consumer_pause(self, cmd: c.ConsumerPause) -> dict[str, Any]:
        consumer = self._consumer(cmd.consumerId)
        if not consumer.paused:
            self.router.set_consumer_paused(consumer, True)
            log.info("%s paused", consumer.subject, extra=consumer.subject.extra)
        return {}

    def _consumer_resume(self, cmd: c.ConsumerResume) -> dict[str, Any]:
        consumer = self._consumer(cmd.consumerId)
        if consumer.paused:
            self.router.set_consumer_paused(consumer, False)
            log.info("%s resumed", consumer.subject, extra=consumer.subject.extra)
        return {}

    def _consumer_close(self, cmd: c.ConsumerClose) -> dict[str, Any]:
        consumer = self._consumer(cmd.consumerId)
        self.router.remove_consumer(consumer)
        log.info("%s closed", consumer.subject, extra=consumer.subject.extra)
        return {}

    def _consumer_set_preferred_profile(self, cmd: c.ConsumerSetPreferredProfile) -> dict[str, Any]:
        consumer = self._consumer(cmd.consumerId)
        self.router.set_preferred_profile(consumer, cmd.profile)
        return {}

    # -- pipe.* -------------------------------------------------------------------------

    def _pipe_open(self, cmd: c.PipeOpen) -> dict[str, Any]:
        producer = self._producer(cmd.producerId)
        dest = cmd.workerIndex
        if dest == self.index:
            raise bad_request(f"producer {producer.id}: worker {self.index} cannot pipe to itself")
        if dest in producer.pipes:
            raise duplicate(f"producer {producer.id} is already piped to worker {dest}")
        self.router.add_pipe(producer, dest, self.pipes.open(producer.id, dest))
        log.info("%s: piped to worker %d", producer.subject, dest, extra=producer.subject.extra)
        return {}

    def _pipe_close(self, cmd: c.PipeClose) -> dict[str, Any]:
        producer = self._producer(cmd.producerId)
        dest = cmd.workerIndex
        if dest not in producer.pipes:
            raise not_found(f"producer {producer.id} is not piped to worker {dest}")
        self.pipes.close_batch(self.router.remove_pipe(producer, dest))
        log.info("%s: pipe to worker %d closed", producer.subject, dest, extra=producer.subject.extra)
        return {}

    def _pipe_close_to(self, cmd: c.PipeCloseTo) -> dict[str, Any]:
        """Worker `workerIndex` died or was retired: close every pipe towards it (its
        replacement at the same index must not receive the old worker's streams)."""
        dest = cmd.workerIndex
        closed = [producer for producer in self.router.producers.values() if dest in producer.pipes]
        for producer in closed:
            self.pipes.close_batch(self.router.remove_pipe(producer, dest))
        if closed:
            log.info("pipes to worker %d closed: producers %s", dest, [x.id for x in closed])
        return {"producers": [x.id for x in closed]}


    # -- leg.* (transport/host_leg.py) --------------------------------------------------

    def _leg_socket(self) -> tuple[str, int]:
        """The leg socket's address for other hosts; a clear refusal when there is none."""
        if not self.config.rtc_ipv4:
            raise ProtocolError(UNAVAILABLE, f"worker {self.index} has no rtc_ipv4 for host legs; set rtc_ipv4")
        try:
            ip, port = self.legs.address()
        except OSError as exc:
            raise ProtocolError(UNAVAILABLE, f"worker {self.index}: no socket for host legs: {exc}") from None
        if ip == "0.0.0.0":  # noqa: S104 - a wildcard bind names no address another host can use
            raise ProtocolError(
                UNAVAILABLE,
                f"worker {self.index} binds 0.0.0.0: other hosts cannot reach its host legs there; "
                "set rtc_announced_ipv4 (--rtc-announced-ipv4) to the address they reach it at",
            )
        return ip, port

    def _leg_address(self, cmd: c.LegAddress) -> dict[str, Any]:
        ip, port = self._leg_socket()
        return {"ip": ip, "port": port}

    def _new_leg(self, cmd: c.LegReceive | c.LegSend) -> Producer:
        """The checks both ends share; the producer the leg is for."""
        producer = self._producer(cmd.producerId)
        if cmd.legId in self.legs.legs:
            raise duplicate(f"leg {cmd.legId} already exists on worker {self.index}")
        self._leg_socket()
        return producer

    def _leg_receive(self, cmd: c.LegReceive) -> dict[str, Any]:
        producer = self._new_leg(cmd)
        if producer.transport is not None:
            raise bad_request(f"producer {producer.id} is received here, not piped: a leg feeds a piped copy")
        if producer.leg_in is not None:
            raise duplicate(f"producer {producer.id} is fed by leg {producer.leg_in.leg_id} already")
        producer.leg_in = self.legs.open_in(cmd.legId, producer, bytes.fromhex(cmd.key), (cmd.ip, cmd.port))
        self._set_nack(producer, False)
        log.info("%s: fed by leg %d from %s:%d", producer.subject, cmd.legId, cmd.ip, cmd.port, extra=producer.subject.extra)
        ip, port = self._leg_socket()
        return {"ip": ip, "port": port}

    def _leg_send(self, cmd: c.LegSend) -> dict[str, Any]:
        producer = self._new_leg(cmd)
        if producer.transport is None:
            raise bad_request(f"producer {producer.id} is piped here; a leg starts where it is received")
        self.router.add_leg(producer, self.legs.open_out(cmd.legId, producer, bytes.fromhex(cmd.key), (cmd.ip, cmd.port)))
        log.info("%s: leg %d to %s:%d", producer.subject, cmd.legId, cmd.ip, cmd.port, extra=producer.subject.extra)
        return {}

    def _leg_close(self, cmd: c.LegClose) -> dict[str, Any]:
        leg = self.legs.legs.get(cmd.legId)
        if leg is None:
            raise not_found(f"leg {cmd.legId} not found on worker {self.index}")
        producer = leg.producer
        self.legs.remove(cmd.legId)
        if isinstance(leg, LegOut):
            self.router.remove_leg(producer, cmd.legId)
        elif producer.leg_in is leg:
            producer.leg_in = None
            self._set_nack(producer, False)
        log.info("%s: leg %d closed", producer.subject, cmd.legId, extra=producer.subject.extra)
        return {}

    def _producer_interrupt(self, cmd: c.ProducerInterrupt) -> dict[str, Any]:
        """The producer paused at its origin on another host: what a pipe's mark does."""
        producer = self._producer(cmd.producerId)
        if producer.transport is not None:
            raise bad_request(f"producer {producer.id} is received here; pause it instead")
        self.router.interrupt_producer(producer)
        for stream in producer.streams:  # the sequence numbers jump: nothing is lost
            if stream.nack is not None:
                stream.nack.reset()
        for batch in producer.pipes.values():
            batch.mark_discontinuity(self.forwarder)
        return {}


def run_worker(index: int, run_dir: str, config: Config, parent_pid: int = 0) -> int:
    worker = Worker(index, run_dir, config, parent_pid=parent_pid or os.getppid())
    # The native loop (workers/native_loop.py) drains the transports' connected sockets in
    # its wait; it needs the native receive, whose drain it runs.
    factory = None
    if config.native_loop and worker.forwarder.rx is not None and native_loop.available():
        factory = native_loop.new_event_loop
    with contextlib.suppress(KeyboardInterrupt), asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(worker.run())
    return 0
