"""RtpStreamer: a producer's media as plain RTP to an address (mediasoup v2's
Room.createRtpStreamer), for a recorder or a mixer such as ffmpeg or GStreamer.

A streamer is a plain transport and a consumer of the producer on the producer's own worker
(no pipe), owned by the room rather than by a peer: no client hears about it, peers' quotas
do not count it. Its consumer takes the room's capabilities as its receiver's (as v2 did),
so it gets the room's payload type and codec parameters; the answer's `sdp` describes that
stream for the receiver (`ffmpeg -protocol_whitelist file,udp,rtp -i streamer.sdp ...`).

RTP and RTCP (Tureen's sender reports, with the producer's CNAME) both go to
remoteIP:remotePort (RTCP muxed, `a=rtcp-mux`); Tureen accepts RTCP back (receiver reports,
NACK, PLI) only from that address. The streamer closes with its producer (event
`rtpStreamer.closed`) or with `rtpStreamer.close`.
"""

from __future__ import annotations

import ipaddress
import logging
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tureen.shared import contract
from tureen.shared.errors import ProtocolError, bad_request, limit, not_found
from tureen.shared.protocol.validate import get_id
from tureen.shared.rtp import capabilities as caps

if TYPE_CHECKING:
    from tureen.supervisor.producer import Producer
    from tureen.supervisor.room import Room

log = logging.getLogger("tureen.room.rtp_streamer")


@dataclass(eq=False)
class RtpStreamer:
    id: int
    producer: Producer
    worker: int
    transport_gid: int
    consumer_gid: int
    remote: tuple[str, int]
    local: tuple[str, int]
    rtp_parameters: dict[str, Any]
    app_data: Any = None

    def describe(self) -> str:
        return f"rtpStreamer {self.id} of {self.producer.describe()}"

    def dump(self) -> dict[str, Any]:
        return {
            "streamerId": self.id,
            "producerId": self.producer.id,
            "peerName": self.producer.peer_name,
            "worker": self.worker,
            "localIP": self.local[0],
            "localPort": self.local[1],
            "remoteIP": self.remote[0],
            "remotePort": self.remote[1],
            "appData": self.app_data,
        }


def streamer_sdp(streamer_id: int, kind: str, rtp_parameters: dict[str, Any], local_ip: str, remote: tuple[str, int]) -> str:
    """An SDP for the receiver of the stream (RFC 4566, 4567's rtcp-mux; the rtpmap/fmtp of
    the first codec; RTX is left out: a plain receiver does not ask for retransmissions)."""
    codec = rtp_parameters["codecs"][0]
    pt = codec["payloadType"]
    name = codec["mimeType"].split("/", 1)[1]
    rtpmap = f"{name}/{codec['clockRate']}"
    if kind == "audio" and codec.get("channels", 1) > 1:
        rtpmap += f"/{codec['channels']}"
    remote_ip, remote_port = remote
    lines = [
        "v=0",
        f"o=- {streamer_id} 1 IN IP4 {local_ip}",
        f"s=Tureen RtpStreamer {streamer_id}",
        f"c=IN IP4 {remote_ip}",
        "t=0 0",
        f"m={kind} {remote_port} RTP/AVP {pt}",
        f"a=rtpmap:{pt} {rtpmap}",
    ]
    parameters = codec.get("parameters") or {}
    if parameters:
        lines.append(f"a=fmtp:{pt} " + ";".join(f"{k}={v}" for k, v in parameters.items()))
    lines += ["a=rtcp-mux", "a=recvonly"]
    encoding = rtp_parameters["encodings"][0]
    cname = (rtp_parameters.get("rtcp") or {}).get("cname")
    if cname:
        lines.append(f"a=ssrc:{encoding['ssrc']} cname:{cname}")
    return "\r\n".join(lines) + "\r\n"


def _ipv4(msg: dict[str, Any], key: str, required: bool = True) -> str | None:
    value = msg.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise bad_request(f"'{key}' must be an IPv4 address string, got {value!r}")
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        raise bad_request(f"'{key}' {value!r} is not an IPv4 address (plain RTP is IPv4 only)") from None
    return value


def _port(msg: dict[str, Any], key: str) -> int:
    value = msg.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise bad_request(f"'{key}' must be a port number 1..65535, got {value!r}")
    return value


class RtpStreamers:
    """The streamers of one room."""

    def __init__(self, room: Room) -> None:
        self._room = room
        self.by_id: dict[int, RtpStreamer] = {}

    async def create(self, msg: dict[str, Any]) -> dict[str, Any]:
        """rtpStreamer.create {producerId, remoteIP, remotePort, localIP?, appData?}."""
        room = self._room
        producer_id = get_id(msg, "producerId")
        producer = room.producers.get(producer_id)
        if producer is None or producer.closed:
            raise not_found(f"Producer not found: room {room.id!r} has no producer {producer_id}")
        quota = room.quotas.transports_per_peer  # each streamer takes a port, as a transport
        if sum(1 for x in self.by_id.values() if x.producer is producer) >= quota:
            raise limit(
                f"{producer.describe()} has {quota} rtpStreamers, the most a producer may have "
                "(max_transports_per_peer): close one first, or ask the operator to raise it"
            )
        remote_ip = _ipv4(msg, "remoteIP")
        assert remote_ip is not None
        remote_port = _port(msg, "remotePort")
        local_ip = _ipv4(msg, "localIP", required=False)
        rtp = caps.consumer_rtp_parameters(
            room.rtp_capabilities,
            producer.rtp_parameters,
            producer.mapping,
            room.rtp_capabilities,
            lambda: random.randint(100_000_000, 999_999_999),
        )
        if not rtp.get("codecs"):
            raise bad_request(f"{producer.describe()} has no codec a plain receiver could take")
        worker = producer.worker
        services = room.services
        transport_gid, consumer_gid = services.new_gid(), services.new_gid()
        streamer_id = random.randint(10_000_000, 99_999_999)
        while streamer_id in self.by_id:
            streamer_id = random.randint(10_000_000, 99_999_999)
        answer = await room.request(
            worker,
            contract.TransportCreatePlain(
                transportId=transport_gid, remoteIp=remote_ip, remotePort=remote_port, room=room.id, clientId=streamer_id
            ),
        )
        local = (str(answer["ip"]), int(answer["port"]))
        if local_ip is not None and local_ip != local[0]:
            await room.request_quiet(worker, contract.TransportClose(transportId=transport_gid))
            raise bad_request(
                f"'localIP' {local_ip} is not the workers' media address {local[0]} (config rtc_ipv4); "
                "leave it out or give that one"
            )
        encoding = rtp["encodings"][0]
        try:
            await room.request(
                worker,
                contract.ConsumerCreate(
                    consumerId=consumer_gid,
                    producerId=producer.gid,
                    transportId=transport_gid,
                    kind=producer.kind,  # type: ignore[arg-type]
                    ssrc=encoding["ssrc"],
                    rtxSsrc=(encoding.get("rtx") or {}).get("ssrc"),
                    cname=(rtp.get("rtcp") or {}).get("cname"),
                    room=room.id,
                    clientId=streamer_id,
                ),
            )
        except ProtocolError:
            await room.request_quiet(worker, contract.TransportClose(transportId=transport_gid))
            raise
        if producer.closed:  # closed while the worker answered: it took the consumer along
            await room.request_quiet(worker, contract.TransportClose(transportId=transport_gid))
            raise not_found(f"Producer not found: {producer.describe()} closed meanwhile")
        streamer = RtpStreamer(
            id=streamer_id,
            producer=producer,
            worker=worker,
            transport_gid=transport_gid,
            consumer_gid=consumer_gid,
            remote=(remote_ip, remote_port),
            local=local,
            rtp_parameters=rtp,
            app_data=msg.get("appData"),
        )
        self.by_id[streamer_id] = streamer
        log.info("room %r: %s streams to %s:%d", room.id, streamer.describe(), remote_ip, remote_port)
        return {
            "streamerId": streamer_id,
            "localIP": local[0],
            "localPort": local[1],
            "rtpParameters": rtp,
            "sdp": streamer_sdp(streamer_id, producer.kind, rtp, local[0], (remote_ip, remote_port)),
        }

    async def close(self, msg: dict[str, Any]) -> None:
        """rtpStreamer.close {streamerId}."""
        streamer_id = get_id(msg, "streamerId")
        streamer = self.by_id.get(streamer_id)
        if streamer is None:
            raise not_found(f"rtpStreamer {streamer_id} not found in room {self._room.id!r}")
        await self._close(streamer, event=False)

    async def producer_closed(self, producer: Producer) -> None:
        """Its producer closed: its streamers go too, each announced by `rtpStreamer.closed`."""
        for streamer in [s for s in self.by_id.values() if s.producer is producer]:
            await self._close(streamer, event=True)

    async def _close(self, streamer: RtpStreamer, *, event: bool) -> None:
        self.by_id.pop(streamer.id, None)
        room = self._room
        # The transport takes its consumer along on the worker.
        await room.request_quiet(streamer.worker, contract.TransportClose(transportId=streamer.transport_gid))
        log.info("room %r: %s closed", room.id, streamer.describe())
        if event:
            room.lifecycle("rtpStreamer.closed", streamerId=streamer.id)
