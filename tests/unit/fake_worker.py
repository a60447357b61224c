"""A fake worker service for the Room's unit tests: the supervisor's side of the channel in
memory, with no process, socket or ZeroMQ.

`FakeWorker` answers every command of shared/contract.py the way workers/worker.py does:
each request goes through the wire as the worker link sends it (`to_wire`, the envelope's
encoding, `command_type(...).from_wire`, so a command the contract refuses is refused here
too), then a handler per command type checks what the real one checks, in the same order
and with the same error codes (unknown ids `not_found`, taken ids and SSRCs `duplicate`, a
command for the wrong kind of object `bad_request`, DTLS parameters set twice
`invalid_state`), and keeps the same tables (transports, producers, consumers, pipes). Its
replies have the real ones' shapes; addresses, ports, ICE credentials and fingerprints are
made up. tests/unit/test_fake_worker.py holds it to that against a real `Worker`.

`FakeWorkers` is the `RoomServices` a Room runs on (what supervisor/server.py gives it):
workers by index, placement, worker deaths, the ids, and a log of every command sent and
every event emitted, which the tests read.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
from dataclasses import dataclass, field
from typing import Any

from tureen.shared import contract as c
from tureen.shared import wire
from tureen.shared.config import Config
from tureen.shared.errors import (
    INVALID_STATE,
    UNAVAILABLE,
    UNSUPPORTED,
    ProtocolError,
    bad_request,
    duplicate,
    not_found,
)
from tureen.shared.logs import check_level_change
from tureen.supervisor.placement import WorkerLoad, place_target
from tureen.workers.forward import COUNTERS
from tureen.workers.transport.dtls import FINGERPRINT_ALGORITHMS
from tureen.workers.transport.ice_lite import ice_candidates


@dataclass
class FakeTransport:
    id: int
    kind: str  # "plain" | "webrtc", as the real transports' `kind`
    port: int
    remote: tuple[str, int] | None = None
    comedia: bool = False
    options: dict[str, bool] = field(default_factory=dict)
    role: str = "auto"  # local DTLS role; resolved when the remote parameters are set
    remote_fingerprint: dict[str, str] | None = None
    ufrag: str = ""
    password: str = ""
    producers: set[int] = field(default_factory=set)
    consumers: set[int] = field(default_factory=set)


@dataclass
class FakeProducer:
    id: int
    kind: str
    transport: int | None  # None: a piped copy
    paused: bool
    streams: list[tuple[int, int | None, str]]  # (ssrc, rtx ssrc, profile)
    consumers: set[int] = field(default_factory=set)
    pipes: set[int] = field(default_factory=set)
    legs: set[int] = field(default_factory=set)  # leg ids: the origin's ends
    leg_in: int | None = None  # the leg feeding a piped copy

    def ssrcs(self) -> set[int]:
        return {x for s in self.streams for x in s[:2] if x is not None}


@dataclass
class FakeConsumer:
    id: int
    kind: str
    producer: int
    transport: int
    ssrc: int
    rtx_ssrc: int | None
    paused: bool
    profile: str
    cname: str | None = None


def _ice_string(n: int) -> str:
    return secrets.token_hex(n)[:n]


class FakeWorker:
    """One worker's tables and command handlers (workers/worker.py without the media)."""

    def __init__(self, index: int, ip: str = "127.0.0.1") -> None:
        self.index = index
        self.ip = ip
        self.closed = False
        self.transports: dict[int, FakeTransport] = {}
        self.producers: dict[int, FakeProducer] = {}
        self.consumers: dict[int, FakeConsumer] = {}
        self._ports = itertools.count(40000 + 1000 * index)
        self.legs: dict[int, int] = {}  # leg id -> producer id (either end)
        self.leg_port: int | None = None  # the leg socket's, bound on the first leg command
        self.fingerprints = [
            {"algorithm": name, "value": ":".join([f"{index:02X}"] * 32)} for name in FINGERPRINT_ALGORITHMS
        ]
        # The same set as Worker._handlers (tests/unit/test_fake_worker.py checks).
        self.handlers: dict[type[c.Command], Any] = {
            c.WorkerPing: lambda cmd: {},
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
            c.ProducerPause: lambda cmd: self._producer_paused(cmd, True),
            c.ProducerResume: lambda cmd: self._producer_paused(cmd, False),
            c.ProducerClose: self._producer_close,
            c.ProducerRequestKeyFrame: lambda cmd: self._local_stream(cmd.producerId, cmd.ssrc) and {},
            c.ProducerNack: lambda cmd: self._local_stream(cmd.producerId, cmd.ssrc) and {},
            c.ConsumerCreate: self._consumer_create,
            c.ConsumerPause: lambda cmd: self._consumer_set(cmd.consumerId, paused=True),
            c.ConsumerResume: lambda cmd: self._consumer_set(cmd.consumerId, paused=False),
            c.ConsumerClose: self._consumer_close,
            c.ConsumerSetPreferredProfile: lambda cmd: self._consumer_set(cmd.consumerId, profile=cmd.profile),
            c.PipeOpen: self._pipe_open,
            c.PipeClose: self._pipe_close,
            c.PipeCloseTo: self._pipe_close_to,
            c.LegAddress: lambda cmd: self._leg_address(),
            c.LegReceive: self._leg_receive,
            c.LegSend: self._leg_send,
            c.LegClose: self._leg_close,
            c.ProducerInterrupt: self._producer_interrupt,
            c.StatsGet: self._stats_get,
            c.ProducerGetAudioLevels: self._producer_get_audio_levels,
            c.TransportSetMaxBitrate: self._transport_set_max_bitrate,
            c.ConsumerRequestKeyFrame: lambda cmd: self._consumer(cmd.consumerId) and {},
        }

    # -- the channel ----------------------------------------------------------------------

    def request(self, command: c.Command) -> dict[str, Any]:
        """`command` through the wire as WorkerLink sends it and Worker._on_frame decodes it;
        the reply's data, through the wire too; a refusal raises ProtocolError."""
        params = command.to_wire()
        method = params.pop("method")
        message = wire.decode(wire.encode_request(1, method, params))
        kind = c.command_type(message["method"])
        data = self.handlers[kind](kind.from_wire(message))
        return wire.decode(wire.encode(wire.reply_ok(1, data)))["data"]

    def tables(self) -> dict[str, Any]:
        """Everything the worker holds, comparable (== before and after a refused message)."""
        return {
            "transports": {k: repr(v) for k, v in self.transports.items()},
            "producers": {k: repr(v) for k, v in self.producers.items()},
            "consumers": {k: repr(v) for k, v in self.consumers.items()},
        }

    def empty(self) -> bool:
        return not (self.transports or self.producers or self.consumers)

    # -- lookups (Worker._lookup) -----------------------------------------------------------

    def _lookup(self, oid: int, what: str, table: dict[int, Any]) -> Any:
        obj = table.get(oid)
        if obj is None:
            raise not_found(f"{what} {oid} not found on worker {self.index}")
        return obj

    def _transport(self, tid: int) -> FakeTransport:
        return self._lookup(tid, "transport", self.transports)

    def _producer(self, pid: int) -> FakeProducer:
        return self._lookup(pid, "producer", self.producers)

    def _consumer(self, cid: int) -> FakeConsumer:
        return self._lookup(cid, "consumer", self.consumers)

    def _webrtc(self, tid: int) -> FakeTransport:
        transport = self._transport(tid)
        if transport.kind != "webrtc":
            raise bad_request(f"transport {tid} is a {transport.kind} transport, not webrtc")
        return transport

    # -- worker.* -----------------------------------------------------------------------------

    def _worker_info(self, cmd: c.WorkerInfo) -> dict[str, Any]:
        return {
            "index": self.index,
            "pid": 0,
            "transports": len(self.transports),
            "producers": len(self.producers),
            "consumers": len(self.consumers),
            "packetsIn": 0,
            "packetsOut": 0,
            "pipePacketsOut": 0,
            "pipeMessagesOut": 0,
            "pipeDropped": 0,
            "pipePacketsIn": 0,
            "fanout": "python",
            "cpuPercent": 0.0,
            "bytesIn": 0,
            "bytesOut": 0,
            "cpuSeconds": 0.0,
            "rssBytes": 0,
            "counters": dict.fromkeys(COUNTERS.values(), 0),
        }

    def _worker_dump(self, cmd: c.WorkerDump) -> dict[str, Any]:
        return {
            "index": self.index,
            "pid": 0,
            "transports": [{"id": t.id, "kind": t.kind} for t in self.transports.values()],
            "producers": [{"producerId": p.id, "kind": p.kind} for p in self.producers.values()],
            "consumers": [{"consumerId": x.id, "kind": x.kind} for x in self.consumers.values()],
            "pipe": {},
            "legs": {},
            "counters": dict.fromkeys(COUNTERS.values(), 0),
            "fanout": {"core": "python"},
        }

    def _worker_close(self, cmd: c.WorkerClose) -> dict[str, Any]:
        self.closed = True
        return {}

    def _worker_set_log_level(self, cmd: c.WorkerSetLogLevel) -> dict[str, Any]:
        try:  # the real worker sets it; the check is the same, the fake changes nothing
            check_level_change(cmd.level, cmd.logger)
        except ValueError as exc:
            raise bad_request(str(exc)) from None
        return {}

    # -- transport.* --------------------------------------------------------------------------

    def _transport_create_plain(self, cmd: c.TransportCreatePlain) -> dict[str, Any]:
        if cmd.transportId in self.transports:
            raise duplicate(f"transport {cmd.transportId} already exists on worker {self.index}")
        remote = None
        if cmd.remoteIp is not None and cmd.remotePort is not None and not cmd.comedia:
            remote = (cmd.remoteIp, cmd.remotePort)
        transport = FakeTransport(cmd.transportId, "plain", next(self._ports), remote=remote, comedia=cmd.comedia)
        self.transports[transport.id] = transport
        return {"ip": self.ip, "port": transport.port}

    def _transport_connect_plain(self, cmd: c.TransportConnectPlain) -> dict[str, Any]:
        transport = self._transport(cmd.transportId)
        if transport.kind != "plain":
            raise bad_request(f"transport {transport.id} is a {transport.kind} transport, not plain")
        transport.remote = (cmd.remoteIp, cmd.remotePort)
        return {}

    def _transport_create_webrtc(self, cmd: c.TransportCreateWebRtc) -> dict[str, Any]:
        if cmd.transportId in self.transports:
            raise duplicate(f"transport {cmd.transportId} already exists on worker {self.index}")
        transport = FakeTransport(
            cmd.transportId, "webrtc", next(self._ports), options=cmd.options(), ufrag=_ice_string(16), password=_ice_string(32)
        )
        if cmd.dtlsParameters is not None:
            self._set_remote_dtls(transport, cmd.dtlsParameters)  # refused: nothing was added
        self.transports[transport.id] = transport
        return self._local_parameters(transport)

    def _local_parameters(self, transport: FakeTransport) -> dict[str, Any]:
        options = transport.options
        sockets = [(p, self.ip, transport.port) for p in ("udp", "tcp") if options.get(p, True)]
        return {
            "iceParameters": self._ice_parameters(transport),
            "iceCandidates": ice_candidates(sockets, options),
            "dtlsParameters": self._local_dtls(transport),
        }

    @staticmethod
    def _ice_parameters(transport: FakeTransport) -> dict[str, Any]:
        return {"usernameFragment": transport.ufrag, "password": transport.password, "iceLite": True}

    def _local_dtls(self, transport: FakeTransport) -> dict[str, Any]:
        return {"role": transport.role, "fingerprints": [dict(f) for f in self.fingerprints]}

    @staticmethod
    def _set_remote_dtls(transport: FakeTransport, params: Any) -> None:
        """workers/transport/dtls.py DtlsEndpoint.set_remote: the same checks, order, codes."""
        if transport.remote_fingerprint is not None:
            raise ProtocolError(INVALID_STATE, "Transport already has remote DTLS parameters")
        if not isinstance(params, dict):
            raise bad_request("wrong dtlsParameters")
        fingerprints = params.get("fingerprints")
        if not isinstance(fingerprints, list):
            raise bad_request("missing data.fingerprints")
        chosen = None
        for entry in reversed(fingerprints):
            if not isinstance(entry, dict):
                raise bad_request("wrong fingerprint")
            algorithm, value = entry.get("algorithm"), entry.get("value")
            if not isinstance(algorithm, str) or not isinstance(value, str):
                raise bad_request("missing data.fingerprint.algorithm and/or data.fingerprint.value")
            if algorithm.lower() in FINGERPRINT_ALGORITHMS:
                chosen = {"algorithm": algorithm.lower(), "value": value.strip().upper()}
                break
        if chosen is None:
            raise ProtocolError(UNSUPPORTED, "unsupported remote fingerprint algorithm")
        role = params.get("role")
        if not isinstance(role, str):
            role = "auto"
        if role not in ("auto", "client", "server"):
            raise bad_request("invalid remote role")
        transport.role = "server" if role == "client" else "client"
        transport.remote_fingerprint = chosen

    def _transport_set_remote_dtls(self, cmd: c.TransportSetRemoteDtls) -> dict[str, Any]:
        transport = self._webrtc(cmd.transportId)
        self._set_remote_dtls(transport, cmd.dtlsParameters)
        return {"dtlsParameters": self._local_dtls(transport)}

    def _transport_restart_ice(self, cmd: c.TransportRestartIce) -> dict[str, Any]:
        transport = self._webrtc(cmd.transportId)
        transport.ufrag, transport.password = _ice_string(16), _ice_string(32)
        return {"iceParameters": self._ice_parameters(transport)}

    def _transport_close(self, cmd: c.TransportClose) -> dict[str, Any]:
        self.drop_transport(self._transport(cmd.transportId))
        return {}

    def drop_transport(self, transport: FakeTransport) -> None:
        """Worker._drop_transport: its producers (their consumers here, their pipes) and
        consumers go with it."""
        for pid in list(transport.producers):
            self._remove_producer(self.producers[pid])
        for cid in list(transport.consumers):
            self._remove_consumer(self.consumers[cid])
        del self.transports[transport.id]

    # -- producer.* ---------------------------------------------------------------------------

    def _check_ssrcs(self, cmd: c.ProducerCreate, transport: FakeTransport | None, updating: FakeProducer | None) -> None:
        if transport is None:
            return
        received = {x for pid in transport.producers for x in self.producers[pid].ssrcs()}
        own = updating.ssrcs() if updating is not None else set()
        for s in cmd.streams:
            for x in (s.ssrc, s.rtxSsrc):
                if x is not None and x in received and x not in own:
                    raise duplicate(f"ssrc {x} is already received on transport {transport.id}")

    def _producer_create(self, cmd: c.ProducerCreate) -> dict[str, Any]:
        if cmd.producerId in self.producers:
            raise duplicate(f"producer {cmd.producerId} already exists on worker {self.index}")
        transport = self._transport(cmd.transportId) if cmd.transportId is not None else None
        self._check_ssrcs(cmd, transport, None)
        streams = [(s.ssrc, s.rtxSsrc, s.profile) for s in cmd.streams]
        producer = FakeProducer(cmd.producerId, cmd.kind, cmd.transportId, cmd.paused, streams)
        self.producers[producer.id] = producer
        if transport is not None:
            transport.producers.add(producer.id)
        return {}

    def _producer_update(self, cmd: c.ProducerUpdate) -> dict[str, Any]:
        producer = self._producer(cmd.producerId)
        if cmd.kind != producer.kind:
            raise bad_request(f"producer {producer.id} is {producer.kind}; its kind cannot change")
        if cmd.transportId != producer.transport:
            raise bad_request(f"producer {producer.id}: transportId cannot change")
        transport = self.transports[producer.transport] if producer.transport is not None else None
        self._check_ssrcs(cmd, transport, producer)
        producer.streams = [(s.ssrc, s.rtxSsrc, s.profile) for s in cmd.streams]
        if cmd.paused is not None:
            producer.paused = cmd.paused
        return {}

    def _producer_paused(self, cmd: c.ProducerPause | c.ProducerResume, paused: bool) -> dict[str, Any]:
        self._producer(cmd.producerId).paused = paused
        return {}

    def _local_stream(self, producer_id: int, ssrc: int) -> FakeProducer:
        """Worker._local_stream: requests only the worker receiving the producer answers."""
        producer = self._producer(producer_id)
        if ssrc not in {s[0] for s in producer.streams}:
            raise not_found(f"producer {producer.id} has no stream with ssrc {ssrc}")
        if producer.transport is None:
            raise bad_request(f"producer {producer.id} is piped here; ask the worker that receives it")
        return producer

    def _producer_close(self, cmd: c.ProducerClose) -> dict[str, Any]:
        self._remove_producer(self._producer(cmd.producerId))
        return {}

    def _remove_producer(self, producer: FakeProducer) -> None:
        producer.pipes.clear()
        for leg_id in [*producer.legs, *([producer.leg_in] if producer.leg_in is not None else [])]:
            self.legs.pop(leg_id, None)
        producer.legs.clear()
        producer.leg_in = None
        for cid in list(producer.consumers):
            self._remove_consumer(self.consumers[cid])
        if producer.transport is not None:
            self.transports[producer.transport].producers.discard(producer.id)
        del self.producers[producer.id]

    # -- consumer.* ---------------------------------------------------------------------------

    def _consumer_create(self, cmd: c.ConsumerCreate) -> dict[str, Any]:
        cid = cmd.consumerId
        if cid in self.consumers:
            raise duplicate(f"consumer {cid} already exists on worker {self.index}")
        producer = self._producer(cmd.producerId)
        transport = self._transport(cmd.transportId)
        if cmd.kind != producer.kind:
            raise bad_request(f"consumer {cid} is {cmd.kind} but producer {producer.id} is {producer.kind}")
        ssrc, rtx = cmd.ssrc, cmd.rtxSsrc
        for other in (self.consumers[x] for x in transport.consumers):
            if ssrc in (other.ssrc, other.rtx_ssrc) or (rtx is not None and rtx in (other.ssrc, other.rtx_ssrc)):
                raise duplicate(f"consumer {other.id} on transport {transport.id} already sends ssrc {ssrc}/{rtx}")
        consumer = FakeConsumer(cid, cmd.kind, producer.id, transport.id, ssrc, rtx, cmd.paused, cmd.preferredProfile, cmd.cname)
        self.consumers[cid] = consumer
        producer.consumers.add(cid)
        transport.consumers.add(cid)
        return {}

    def _consumer_set(self, cid: int, **fields: Any) -> dict[str, Any]:
        consumer = self._consumer(cid)
        for name, value in fields.items():
            setattr(consumer, name, value)
        return {}

    def _consumer_close(self, cmd: c.ConsumerClose) -> dict[str, Any]:
        self._remove_consumer(self._consumer(cmd.consumerId))
        return {}

    def _remove_consumer(self, consumer: FakeConsumer) -> None:
        self.producers[consumer.producer].consumers.discard(consumer.id)
        self.transports[consumer.transport].consumers.discard(consumer.id)
        del self.consumers[consumer.id]

    # -- pipe.* -------------------------------------------------------------------------------

    def _pipe_open(self, cmd: c.PipeOpen) -> dict[str, Any]:
        producer = self._producer(cmd.producerId)
        if cmd.workerIndex == self.index:
            raise bad_request(f"producer {producer.id}: worker {self.index} cannot pipe to itself")
        if cmd.workerIndex in producer.pipes:
            raise duplicate(f"producer {producer.id} is already piped to worker {cmd.workerIndex}")
        producer.pipes.add(cmd.workerIndex)
        return {}

    def _pipe_close(self, cmd: c.PipeClose) -> dict[str, Any]:
        producer = self._producer(cmd.producerId)
        if cmd.workerIndex not in producer.pipes:
            raise not_found(f"producer {producer.id} is not piped to worker {cmd.workerIndex}")
        producer.pipes.discard(cmd.workerIndex)
        return {}

    def _pipe_close_to(self, cmd: c.PipeCloseTo) -> dict[str, Any]:
        closed = [p.id for p in self.producers.values() if cmd.workerIndex in p.pipes]
        for pid in closed:
            self.producers[pid].pipes.discard(cmd.workerIndex)
        return {"producers": closed}

    # -- leg.* ----------------------------------------------------------------------------------

    def _leg_address(self) -> dict[str, Any]:
        if self.leg_port is None:
            self.leg_port = next(self._ports)
        return {"ip": self.ip, "port": self.leg_port}

    def _new_leg(self, cmd: c.LegReceive | c.LegSend) -> FakeProducer:
        producer = self._producer(cmd.producerId)
        if cmd.legId in self.legs:
            raise duplicate(f"leg {cmd.legId} already exists on worker {self.index}")
        self._leg_address()
        return producer

    def _leg_receive(self, cmd: c.LegReceive) -> dict[str, Any]:
        producer = self._new_leg(cmd)
        if producer.transport is not None:
            raise bad_request(f"producer {producer.id} is received here, not piped: a leg feeds a piped copy")
        if producer.leg_in is not None:
            raise duplicate(f"producer {producer.id} is fed by leg {producer.leg_in} already")
        producer.leg_in = cmd.legId
        self.legs[cmd.legId] = producer.id
        return self._leg_address()

    def _leg_send(self, cmd: c.LegSend) -> dict[str, Any]:
        producer = self._new_leg(cmd)
        if producer.transport is None:
            raise bad_request(f"producer {producer.id} is piped here; a leg starts where it is received")
        producer.legs.add(cmd.legId)
        self.legs[cmd.legId] = producer.id
        return {}

    def _leg_close(self, cmd: c.LegClose) -> dict[str, Any]:
        pid = self.legs.pop(cmd.legId, None)
        if pid is None:
            raise not_found(f"leg {cmd.legId} not found on worker {self.index}")
        producer = self.producers[pid]
        producer.legs.discard(cmd.legId)
        if producer.leg_in == cmd.legId:
            producer.leg_in = None
        return {}

    def _producer_interrupt(self, cmd: c.ProducerInterrupt) -> dict[str, Any]:
        producer = self._producer(cmd.producerId)
        if producer.transport is not None:
            raise bad_request(f"producer {producer.id} is received here; pause it instead")
        return {}

    # -- stats.get (workers/stats.py shapes, every figure 0) ------------------------------------

    def _producer_get_audio_levels(self, cmd: c.ProducerGetAudioLevels) -> dict[str, Any]:
        # No packet ever arrives here: no producer has a level to report.
        return {"levels": [], "missing": [x for x in cmd.producerIds if x not in self.producers]}

    def _transport_set_max_bitrate(self, cmd: c.TransportSetMaxBitrate) -> dict[str, Any]:
        self._transport(cmd.transportId)
        limit = Config.max_incoming_bitrate
        return {"bitrate": min(cmd.bitrate, limit) if cmd.bitrate else limit}

    def _stats_get(self, cmd: c.StatsGet) -> dict[str, Any]:
        missing: list[int] = []

        def found(ids: list[int], table: dict[int, Any]) -> list[Any]:
            missing.extend(x for x in ids if x not in table)
            return [table[x] for x in ids if x in table]

        counts = {
            "packets": 0, "octets": 0, "bitrate": 0, "packetsLost": 0, "fractionLost": 0,
            "packetsRepaired": 0, "nackCount": 0, "pliCount": 0, "firCount": 0,
        }  # fmt: skip
        stream = {**counts, "jitter": 0}
        transports = []
        for t in found(cmd.transportIds, self.transports):
            entry: dict[str, Any] = {"transportId": t.id, "kind": t.kind}
            if t.kind == "webrtc":
                entry |= {
                    "iceState": "new", "dtlsState": "new", "selectedTuple": None, "bytesReceived": 0,
                    "bytesSent": 0, "maxBitrate": 0, "rembBitrate": 0, "rembSsrcs": [],
                    "remoteRembBitrate": 0, "remoteRembSsrcs": [],
                }  # fmt: skip
            transports.append(entry)
        producers = [
            {
                "producerId": p.id,
                "paused": p.paused,
                "streams": [{"ssrc": s, "profile": profile, **stream} for s, _, profile in p.streams],
            }
            for p in found(cmd.producerIds, self.producers)
        ]
        consumers = []
        for x in found(cmd.consumerIds, self.consumers):
            ssrc, _, profile = self.producers[x.producer].streams[0]  # the stream feeding it
            consumers.append(
                {
                    "consumerId": x.id, "ssrc": x.ssrc, **counts, "roundTripTime": 0,
                    "inbound": {"ssrc": ssrc, "profile": profile, **stream},
                }  # fmt: skip
            )
        return {"timestamp": 0, "transports": transports, "producers": producers, "consumers": consumers, "missing": missing}

    # -- events the real worker emits by itself ---------------------------------------------------

    def fail_transport(self, tid: int, reason: str) -> c.TransportClosed:
        """Worker.transport_failed: the transport is dropped here, then reported."""
        self.drop_transport(self._transport(tid))
        return c.TransportClosed(transportId=tid, reason=reason)


class FakeWorkers:
    """The RoomServices a Room runs on (supervisor/server.py's role), over FakeWorkers.

    Placement: `pick_worker` returns `self.placement` (a worker index; None: no worker is
    ready) when set, else the lowest live index. `kill(index)` makes a worker dead (its
    requests fail `unavailable`, as WorkerPool's for a worker that is gone); `fail_next`
    makes the next command of a type fail with a given error (what a real worker says when
    its ports run out, a worker dying under a request).
    """

    def __init__(self, count: int = 1, worker_wait: float = 0.05) -> None:
        self.workers = {i: FakeWorker(i) for i in range(count)}
        self.alive = set(self.workers)
        self.placement: int | None = None
        # peer.place by host: each worker's host (default "local") and states of hosts.
        self.host_of: dict[int, str] = {}
        self.host_states: dict[str, str] = {}
        self.no_worker = False
        self.worker_wait = worker_wait
        self._gids = itertools.count(1)
        self.owners: dict[int, Any] = {}
        self.commands: list[tuple[int, c.Command]] = []
        self.emitted: list[dict[str, Any]] = []
        self._failures: dict[type[c.Command], list[ProtocolError]] = {}

    # -- RoomServices -------------------------------------------------------------------------

    def new_gid(self) -> int:
        return next(self._gids)

    def register(self, gid: int, room: Any) -> None:
        self.owners[gid] = room

    def unregister(self, gid: int) -> None:
        self.owners.pop(gid, None)

    def pick_worker(self, near: Any = ()) -> int | None:
        if self.no_worker or not self.alive:
            return None
        if self.placement is not None:
            return self.placement
        return min(self.alive)

    def worker_changed(self) -> asyncio.Future[None]:
        return asyncio.get_running_loop().create_future()  # no worker ever comes up later

    def worker_alive(self, index: int) -> bool:
        return index in self.alive

    def worker_host(self, index: int) -> str | None:
        return self.host_of.get(index)  # None: the supervisor's own

    def place_worker(self, host: str | None, worker: int | None) -> int:
        """As the server's: placement.place_target over these workers' hosts (`host_of`,
        "local" by default) and the hosts' states (`host_states`, "up" by default)."""
        loads = [
            WorkerLoad(index=i, cpu_percent=0.0, transports=0, placed_since_report=0, host=self.host_of.get(i, "local"))
            for i in sorted(self.alive)
        ]
        states = {load.host: "up" for load in loads} | self.host_states
        return place_target(states, loads, host, worker)

    async def worker_request(self, index: int, command: c.Command) -> Any:
        self.commands.append((index, command))
        failures = self._failures.get(type(command))
        if failures:
            raise failures.pop(0)
        if index not in self.alive:
            raise ProtocolError(UNAVAILABLE, f"worker {index} is not running")
        return self.workers[index].request(command)

    def emit(self, room_id: str, event: dict[str, Any]) -> None:
        # Through the wire, as the control server sends it to the apps.
        self.emitted.append(wire.decode(wire.encode(event)))

    # -- for the tests ------------------------------------------------------------------------

    def fail_next(self, kind: type[c.Command], error: ProtocolError) -> None:
        self._failures.setdefault(kind, []).append(error)

    def kill(self, index: int) -> None:
        self.alive.discard(index)

    def tables(self) -> dict[int, Any]:
        return {i: w.tables() for i, w in self.workers.items()}

    def sent(self, since: int = 0) -> list[tuple[int, str]]:
        """(worker index, method) of the commands sent since position `since` of the log."""
        return [(i, cmd.name()) for i, cmd in self.commands[since:]]

    def notifications(self, peer: str | None = None, since: int = 0) -> list[dict[str, Any]]:
        """The protocol notifications emitted since `since` (for `peer`, or all with their
        peerName under "to")."""
        out = []
        for event in self.emitted[since:]:
            if event.get("event") != "notification":
                continue
            if peer is None:
                out.append({"to": event["peerName"], **event["notification"]})
            elif event["peerName"] == peer:
                out.append(event["notification"])
        return out

    @staticmethod
    def event_through_wire(event: c.Event) -> c.Event:
        """An event as the supervisor's WorkerLink gets it (encoded by the worker, decoded)."""
        return c.decode_event(wire.decode(wire.encode(event.to_wire())))
