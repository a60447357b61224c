"""The contract between the supervisor and its workers: every command, every event, and the
constants both sides must agree on, each defined once (docs/internals.md has the tables).

Why typed: a command used to be a method name plus keyword arguments on one side and a
series of `params.int("transportId")` calls on the other, so a renamed field broke the
other process at run time. Here each command and event is a msgspec Struct; the supervisor
builds one and sends `to_wire()`, the worker turns the frame into the same type with
`decode_command` once, at its channel, and its handler takes the typed object. A field
that is missing, renamed, unknown or of the wrong type fails decoding with a ProtocolError
(bad_request) naming the method and the field, before anything changes.

What decoding checks (msgspec, from the annotations): types (JSON `true` is not an integer),
ranges, list lengths, enum values, required fields; then each Struct's `__post_init__`
checks what spans fields (an address needs a port, an SSRC appears once). What needs the
worker's tables (does transport 7 exist, is that SSRC taken on it) stays in the handlers.

Replies stay plain objects (their shapes are in docs/internals.md): they carry figures and
parameters the supervisor passes on, not commands.

Adding a command: a Struct subclass of `Command` with `tag="noun.verb"` below (fields in
the wire's camelCase), a handler in the worker's dispatch table (workers/worker.py), and a
row in docs/internals.md; tests/unit/test_contract.py fails until both sides and its
example table know it. An event: the same with `Event`.
"""

from __future__ import annotations

import ipaddress
import os
from typing import Annotated, Any, ClassVar, Literal, NoReturn, Self, get_args

import msgspec
from tureen.shared.errors import UNKNOWN_METHOD, ProtocolError, bad_request

# ------------------------------------------------------------------ shared constants

Kind = Literal["audio", "video"]
KINDS: tuple[str, ...] = get_args(Kind)
# Simulcast profiles a producer stream or a consumer preference names ("default" = the
# single stream, or the best one).
Profile = Literal["default", "low", "medium", "high"]
PROFILES: tuple[str, ...] = get_args(Profile)
# createTransport's WebRTC options (mediasoup v2) and their defaults, flat on the command.
WEBRTC_OPTIONS: dict[str, bool] = {
    "udp": True,
    "tcp": True,
    "preferIPv4": False,
    "preferIPv6": False,
    "preferUdp": False,
    "preferTcp": False,
}
# Sequence numbers one producer.nack may carry (a receiver's NACK rarely names more than 17).
MAX_NACK_SEQS = 256
# Ids one stats.get may ask about, per kind of object.
MAX_STATS_IDS = 10_000
# An RTCP SDES item's text (a consumer's CNAME in its sender reports): its length is one
# octet (RFC 3550 6.5), so at most this many bytes of UTF-8.
MAX_CNAME_BYTES = 255
U32_MAX = (1 << 32) - 1
# Keys of a request's envelope (shared/wire.py) that are not part of its command.
ENVELOPE_ONLY = frozenset({"id", "deadline"})

Id = Annotated[int, msgspec.Meta(ge=0, le=U32_MAX)]  # worker-global object ids
Ssrc = Annotated[int, msgspec.Meta(ge=0, le=U32_MAX)]
PayloadType = Annotated[int, msgspec.Meta(ge=0, le=127)]
ExtensionId = Annotated[int, msgspec.Meta(ge=1, le=255)]
Port = Annotated[int, msgspec.Meta(ge=1, le=65535)]
WorkerIndex = Annotated[int, msgspec.Meta(ge=0, le=65535)]
Seq = Annotated[int, msgspec.Meta(ge=0, le=0xFFFF)]
ClockRate = Annotated[int, msgspec.Meta(ge=1, le=10_000_000)]


def control_path(run_dir: str | os.PathLike[str], index: int) -> str:
    """The ipc socket file of worker `index`'s channel (the supervisor binds, it connects)."""
    return os.path.join(os.fspath(run_dir), f"worker-{index}.ipc")


# ------------------------------------------------------------------ base types


class _Message(msgspec.Struct, forbid_unknown_fields=True):
    """What commands and events share: the wire form and the decoding of it. (msgspec's
    options are inherited, except kw_only: required fields come first in each type.)"""

    @classmethod
    def name(cls) -> str:
        """The method or event name: the Struct's tag."""
        return str(cls.__struct_config__.tag)

    def to_wire(self) -> dict[str, Any]:
        """The message as a JSON object, its name included (`method` or `event`)."""
        return msgspec.to_builtins(self)

    @classmethod
    def from_wire(cls, message: dict[str, Any]) -> Self:
        """The typed message; ProtocolError(bad_request) naming the field when it does not
        fit. The envelope's id and deadline are not fields; the name must be this type's."""
        fields = {k: v for k, v in message.items() if k not in ENVELOPE_ONLY}
        try:
            return msgspec.convert(fields, cls)
        except msgspec.ValidationError as exc:
            raise bad_request(f"{cls.name()}: {_field_error(str(exc))}") from None


def _field_error(text: str) -> str:
    """msgspec's message with the path in the wire's terms: "... - at `$.streams[0].ssrc`"
    becomes "streams[0].ssrc: ...", so the field comes first."""
    message, sep, where = text.rpartition(" - at `$.")
    if not sep:
        return text
    return f"{where.rstrip('`')}: {message}"


def _fail(message: _Message, field: str, want: str, value: Any) -> NoReturn:
    """A cross-field check failed: the same error shape as a decoding failure."""
    raise bad_request(f"{message.name()}: {field}: must be {want}, got {value!r:.60}")


def _ipv4(message: _Message, field: str, value: Any) -> str:
    try:
        return str(ipaddress.IPv4Address(value))
    except (ValueError, TypeError):
        _fail(message, field, "an IPv4 address", value)


def _unique_from(message: _Message, field: str, pairs: list[tuple[int, int]]) -> None:
    seen: set[int] = set()
    for a, _ in pairs:
        if a in seen:
            raise bad_request(f"{message.name()}: {field} maps {a} twice")
        seen.add(a)


class Command(_Message, tag_field="method"):
    """A request of the supervisor to a worker; the reply's data is in docs/internals.md."""

    def undo(self) -> Command | None:
        """The command that removes what this one creates (None: it creates nothing). Sent
        when a create's success reply arrives after the supervisor gave up on it."""
        return None


class Event(_Message, tag_field="event"):
    """A report of a worker to the supervisor (no reply)."""

    # The field naming the object the event is about (the supervisor routes by it).
    SUBJECT: ClassVar[str] = ""

    def subject(self) -> int | None:
        """The worker-global id of the object the event is about, if any."""
        return getattr(self, self.SUBJECT) if self.SUBJECT else None


# ------------------------------------------------------------------ commands: worker.*


class WorkerPing(Command, tag="worker.ping"):
    """The heartbeat; answers {}."""


class WorkerInfo(Command, tag="worker.info"):
    """Load figures: {index, pid, transports, producers, consumers, packetsIn, ...}, and the
    totals the supervisor's Prometheus endpoint reads (bytesIn, bytesOut, cpuSeconds,
    rssBytes, counters: the forwarder's, as in worker.dump)."""


class WorkerDump(Command, tag="worker.dump"):
    """The worker's tables and counters."""


class WorkerClose(Command, tag="worker.close"):
    """Answers {} and exits."""


class WorkerSetLogLevel(Command, tag="worker.setLogLevel"):
    """The control API's server.setLogLevel, forwarded: set the level of the worker's logs,
    all of them (logger None) or one area (a logger name prefix, e.g. "tureen.worker")."""

    level: Literal["debug", "info", "warning", "error"]
    logger: Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=r"^[A-Za-z_][A-Za-z0-9_.]*$")] | None = None


class StatsGet(Command, tag="stats.get"):
    """Figures of the objects named; ids not on the worker are listed in `missing`."""

    transportIds: Annotated[list[int], msgspec.Meta(max_length=MAX_STATS_IDS)] = []
    producerIds: Annotated[list[int], msgspec.Meta(max_length=MAX_STATS_IDS)] = []
    consumerIds: Annotated[list[int], msgspec.Meta(max_length=MAX_STATS_IDS)] = []


# ------------------------------------------------------------------ commands: transport.*

# The protocol names of an object a create command makes: its room, its peer and the id the
# peer knows it by (the worker's own id is the command's transportId, producerId, ...).
# Optional, for the worker's log lines only (shared/logs.py Subject): one id space in the logs.
RoomName = Annotated[str, msgspec.Meta(max_length=256)]
PeerName = Annotated[str, msgspec.Meta(max_length=256)]


class TransportCreatePlain(Command, tag="transport.createPlain"):
    """A plain RTP transport; remote address now, later (connectPlain) or latched (comedia)."""

    transportId: Id
    remoteIp: str | None = None
    remotePort: Port | None = None
    comedia: bool = False
    room: RoomName | None = None
    peer: PeerName | None = None
    clientId: Id | None = None

    def __post_init__(self) -> None:
        if self.remoteIp is not None or self.remotePort is not None:
            self.remoteIp = _ipv4(self, "remoteIp", self.remoteIp)
            if self.remotePort is None:
                _fail(self, "remotePort", "a port (remoteIp was given)", None)

    def undo(self) -> Command:
        return TransportClose(transportId=self.transportId)


class TransportConnectPlain(Command, tag="transport.connectPlain"):
    transportId: Id
    remoteIp: str
    remotePort: Port

    def __post_init__(self) -> None:
        self.remoteIp = _ipv4(self, "remoteIp", self.remoteIp)


class TransportCreateWebRtc(Command, tag="transport.createWebRtc"):
    """A WebRTC transport (ICE-lite, DTLS, SRTP); its options are WEBRTC_OPTIONS."""

    transportId: Id
    udp: bool = True
    tcp: bool = True
    preferIPv4: bool = False
    preferIPv6: bool = False
    preferUdp: bool = False
    preferTcp: bool = False
    dtlsParameters: dict[str, Any] | None = None
    room: RoomName | None = None
    peer: PeerName | None = None
    clientId: Id | None = None

    def __post_init__(self) -> None:
        if not self.udp and not self.tcp:
            raise bad_request(f"transport {self.transportId}: at least one of udp and tcp must be true")

    def options(self) -> dict[str, bool]:
        """The WEBRTC_OPTIONS as given."""
        return {key: getattr(self, key) for key in WEBRTC_OPTIONS}

    def undo(self) -> Command:
        return TransportClose(transportId=self.transportId)


class TransportSetRemoteDtls(Command, tag="transport.setRemoteDtls"):
    transportId: Id
    dtlsParameters: dict[str, Any]


class TransportRestartIce(Command, tag="transport.restartIce"):
    transportId: Id


class TransportSetMaxBitrate(Command, tag="transport.setMaxBitrate"):
    """Cap the REMB this worker sends the transport's sender at `bitrate` bit/s (0: no cap
    below config max_incoming_bitrate). Applies from the next receiver report (1 s)."""

    transportId: Id
    bitrate: Annotated[int, msgspec.Meta(ge=0, le=U32_MAX)]


class TransportClose(Command, tag="transport.close"):
    """Also closes the transport's producers and consumers on that worker."""

    transportId: Id


# ------------------------------------------------------------------ commands: producer.*


class StreamSpec(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """One encoding of a producer."""

    ssrc: Ssrc
    rtxSsrc: Ssrc | None = None
    profile: Profile = "default"


class CodecSpec(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """One codec of a producer, in room values; the first one's clock rate is the stream's."""

    payloadType: PayloadType
    mimeType: str
    clockRate: ClockRate
    rtxPayloadType: PayloadType | None = None
    # The producer's codec lists rtcpFeedback `nack`: the worker NACKs the sender for the
    # packets it misses (mediasoup v2's rule; workers/rtp/nack_generator.py).
    nack: bool = False


class ProducerCreate(Command, tag="producer.create"):
    """A producer on a transport, or (transportId null) a piped copy fed by the pipe."""

    producerId: Id
    kind: Kind
    transportId: Id | None  # required, null allowed
    streams: list[StreamSpec]
    paused: bool = False
    payloadTypes: list[tuple[PayloadType, PayloadType]] = []  # [producer PT, room PT]
    headerExtensionIds: list[tuple[ExtensionId, ExtensionId]] = []  # [producer id, room id]
    codecs: list[CodecSpec] = []
    room: RoomName | None = None
    peer: PeerName | None = None
    clientId: Id | None = None

    def __post_init__(self) -> None:
        if not self.streams:
            _fail(self, "streams", "a non-empty list", self.streams)
        ssrcs: set[int] = set()
        profiles: set[str] = set()
        for stream in self.streams:
            for x in (stream.ssrc, stream.rtxSsrc):
                if x is None:
                    continue
                if x in ssrcs:
                    raise bad_request(f"{self.name()}: ssrc {x} appears twice in streams")
                ssrcs.add(x)
            if stream.profile in profiles:
                raise bad_request(f"{self.name()}: profile {stream.profile!r} appears twice in streams")
            profiles.add(stream.profile)
        if self.transportId is not None and not self.payloadTypes:
            _fail(self, "payloadTypes", "a map of at least one payload type", self.payloadTypes)
        _unique_from(self, "payloadTypes", self.payloadTypes)
        _unique_from(self, "headerExtensionIds", self.headerExtensionIds)

    def undo(self) -> Command:
        return ProducerClose(producerId=self.producerId)


class ProducerUpdate(ProducerCreate, tag="producer.update"):
    """New RTP parameters (updateProducer): the fields of producer.create; kind and
    transportId must be the producer's; paused absent (null) leaves it as it is."""

    paused: bool | None = None  # type: ignore[assignment]

    def undo(self) -> None:
        return None


class ProducerPause(Command, tag="producer.pause"):
    producerId: Id


class ProducerResume(Command, tag="producer.resume"):
    producerId: Id


class ProducerClose(Command, tag="producer.close"):
    producerId: Id


class ProducerRequestKeyFrame(Command, tag="producer.requestKeyFrame"):
    """Send a PLI for stream `ssrc` to the producer's sender (rate-limited)."""

    producerId: Id
    ssrc: Ssrc


class ProducerNack(Command, tag="producer.nack"):
    """Send a NACK for these sequence numbers of stream `ssrc` to the producer's sender."""

    producerId: Id
    ssrc: Ssrc
    seqs: Annotated[list[Seq], msgspec.Meta(min_length=1, max_length=MAX_NACK_SEQS)]


class ProducerGetAudioLevels(Command, tag="producer.getAudioLevels"):
    """The mean RFC 6464 level of each audio producer named, over the packets since the last
    ask (each ask starts a new interval: the supervisor's room.audioLevels timer asks).

    Reply `{levels: [[producerId, dBov], ...], missing: [...]}`: dBov -127..0 for each
    producer received on this worker whose packets carried a level since; producers without
    one are left out (as mediasoup v2's 'audiolevels' entries), ids not here are `missing`.
    """

    producerIds: Annotated[list[Id], msgspec.Meta(max_length=MAX_STATS_IDS)] = []


# ------------------------------------------------------------------ commands: consumer.*


class ConsumerCreate(Command, tag="consumer.create"):
    """`paused` = paused by the client or the app; the producer's pause is its worker's."""

    consumerId: Id
    producerId: Id
    transportId: Id
    kind: Kind
    ssrc: Ssrc
    rtxSsrc: Ssrc | None = None
    paused: bool = False
    preferredProfile: Profile = "default"
    # The CNAME of the consumer's rtpParameters, for the SDES of its sender reports (None:
    # the worker's own).
    cname: str | None = None
    room: RoomName | None = None
    peer: PeerName | None = None
    clientId: Id | None = None

    def __post_init__(self) -> None:
        if self.rtxSsrc is not None and self.rtxSsrc == self.ssrc:
            raise bad_request(f"consumer {self.consumerId}: rtxSsrc equals ssrc {self.ssrc}")
        if self.cname is not None and not 0 < len(self.cname.encode()) <= MAX_CNAME_BYTES:
            raise bad_request(
                f"consumer {self.consumerId}: cname must be 1..{MAX_CNAME_BYTES} bytes of UTF-8"
            )

    def undo(self) -> Command:
        return ConsumerClose(consumerId=self.consumerId)


class ConsumerPause(Command, tag="consumer.pause"):
    consumerId: Id


class ConsumerResume(Command, tag="consumer.resume"):
    consumerId: Id


class ConsumerClose(Command, tag="consumer.close"):
    consumerId: Id


class ConsumerSetPreferredProfile(Command, tag="consumer.setPreferredProfile"):
    consumerId: Id
    profile: Profile


class ConsumerRequestKeyFrame(Command, tag="consumer.requestKeyFrame"):
    """Ask for a key frame of the stream feeding the consumer now, as a receiver's PLI would:
    a PLI to the sender, or the event consumer.keyFrameRequest when the producer is piped."""

    consumerId: Id


# ------------------------------------------------------------------ commands: pipe.*


class PipeOpen(Command, tag="pipe.open"):
    """Send this producer's packets to worker `workerIndex`."""

    producerId: Id
    workerIndex: WorkerIndex

    def undo(self) -> Command:
        return PipeClose(producerId=self.producerId, workerIndex=self.workerIndex)


class PipeClose(Command, tag="pipe.close"):
    producerId: Id
    workerIndex: WorkerIndex


class PipeCloseTo(Command, tag="pipe.closeTo"):
    """Close every pipe towards worker `workerIndex` (it died or was retired)."""

    workerIndex: WorkerIndex


# ------------------------------------------------------------------ commands: leg.*

# A host leg (workers/transport/host_leg.py) carries one producer's packets from its worker
# (the origin) to one worker of another host (the gateway) over UDP, SRTP-protected with a
# key the supervisor makes for the leg: AEAD_AES_128_GCM master key || salt (16 + 12 bytes),
# as lowercase hex. The host link that carries it is CURVE-encrypted.
LEG_KEY_BYTES = 28
LegKey = Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{56}$")]
LegId = Annotated[int, msgspec.Meta(ge=1, le=U32_MAX)]


class LegAddress(Command, tag="leg.address"):
    """The worker's host-leg socket: {ip, port} (bound on the first leg command; the address
    another host reaches it at: the announced IPv4 when configured). Creates nothing."""


class LegReceive(Command, tag="leg.receive"):
    """Gateway end: datagrams of leg `legId` from the origin's leg socket `ip:port` feed the
    piped copy of `producerId` here (which must exist); NACKs for its video streams go back
    there. Answers {ip, port}: this worker's leg socket."""

    legId: LegId
    producerId: Id
    key: LegKey
    ip: str
    port: Port

    def __post_init__(self) -> None:
        self.ip = _ipv4(self, "ip", self.ip)

    def undo(self) -> Command:
        return LegClose(legId=self.legId)


class LegSend(Command, tag="leg.send"):
    """Origin end: send every packet of `producerId` (received here) to the gateway's leg
    socket `ip:port` as leg `legId`, and answer its NACKs from the streams' stores."""

    legId: LegId
    producerId: Id
    key: LegKey
    ip: str
    port: Port

    def __post_init__(self) -> None:
        self.ip = _ipv4(self, "ip", self.ip)

    def undo(self) -> Command:
        return LegClose(legId=self.legId)


class LegClose(Command, tag="leg.close"):
    """Close this worker's end of leg `legId` (either end)."""

    legId: LegId


class ProducerInterrupt(Command, tag="producer.interrupt"):
    """The piped copy's stream broke upstream (its producer was paused at the origin, on
    another host): consumers here resync, NACK lists reset, and pipes from here carry the
    mark on. The leg's datagrams cannot carry it reliably; the host link can."""

    producerId: Id


# ------------------------------------------------------------------ events


class WorkerReady(Event, tag="worker.ready"):
    index: int
    pid: int


class TransportClosed(Event, tag="transport.closed"):
    """The worker closed the transport by itself (ICE disconnected, DTLS failed)."""

    SUBJECT: ClassVar[str] = "transportId"
    transportId: Id
    reason: str


class TransportIceState(Event, tag="transport.iceState"):
    SUBJECT: ClassVar[str] = "transportId"
    transportId: Id
    state: str


class TransportDtlsState(Event, tag="transport.dtlsState"):
    SUBJECT: ClassVar[str] = "transportId"
    transportId: Id
    state: str


class ConsumerKeyFrameRequest(Event, tag="consumer.keyFrameRequest"):
    """A consumer fed through a pipe needs a key frame of the producer's stream `ssrc`."""

    SUBJECT: ClassVar[str] = "consumerId"
    consumerId: Id
    producerId: Id
    ssrc: Ssrc


class ConsumerNack(Event, tag="consumer.nack"):
    """A consumer fed through a pipe misses these packets (the sender's numbering)."""

    SUBJECT: ClassVar[str] = "consumerId"
    consumerId: Id
    producerId: Id
    ssrc: Ssrc
    seqs: Annotated[list[Seq], msgspec.Meta(min_length=1)]


class ConsumerEffectiveProfile(Event, tag="consumer.effectiveProfile"):
    SUBJECT: ClassVar[str] = "consumerId"
    consumerId: Id
    profile: Profile


# ------------------------------------------------------------------ registries and doors


def _by_name(base: type[_Message]) -> dict[str, Any]:
    table: dict[str, Any] = {}
    todo = list(base.__subclasses__())
    while todo:
        cls = todo.pop(0)
        todo.extend(cls.__subclasses__())
        assert cls.name() not in table, f"two types for {cls.name()}"
        table[cls.name()] = cls
    return table


COMMANDS: dict[str, type[Command]] = _by_name(Command)
EVENTS: dict[str, type[Event]] = _by_name(Event)


def command_type(method: Any) -> type[Command]:
    """The type of a request's `method`; unknown_method when there is none."""
    if not isinstance(method, str):
        raise bad_request(f"method must be a string, got {method!r:.40}")
    cls = COMMANDS.get(method)
    if cls is None:
        raise ProtocolError(UNKNOWN_METHOD, f"unknown method {method!r:.60}")
    return cls


def decode_command(message: dict[str, Any]) -> Command:
    """A request (envelope included) as its typed command, or ProtocolError."""
    return command_type(message.get("method")).from_wire(message)


def decode_event(message: dict[str, Any]) -> Event:
    """A worker's event message as its typed event, or ProtocolError."""
    name = message.get("event")
    cls = EVENTS.get(name) if isinstance(name, str) else None
    if cls is None:
        raise bad_request(f"unknown event {name!r:.60}")
    return cls.from_wire(message)
