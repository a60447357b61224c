"""Control methods from mediasoup v2's server-side API that act on one room's objects and
tell no client (docs/control-api.md, "The v2 server API"):

    room.setAudioLevels        Room 'audiolevels' + ActiveSpeakerDetector (audio_levels.py)
    transport.setMaxBitrate    WebRtcTransport.setMaxBitrate
    consumer.requestKeyFrame   Consumer.requestKeyFrame
    producer.getStats, consumer.getStats, transport.getStats   getStats()
    peer.dump                  Peer.dump()
    rtpStreamer.create / .close   Room.createRtpStreamer, RtpStreamer.close (rtp_streamer.py)

and Tureen's own placement pin, with no v2 counterpart:

    peer.place                 put a peer's transports on a chosen host or worker (before the first one)

Each runs as a job of the room's mailbox (`ROOM_METHODS`, dispatched by the server), so it
sees the room in the order of its other requests. Bad input is refused before anything
changes, with the codes of every other method.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from tureen.shared import contract
from tureen.shared.errors import UNAVAILABLE, ProtocolError, bad_request, invalid_state, not_found
from tureen.shared.protocol.validate import get_int, get_str
from tureen.supervisor.stats import consumer_report, producer_report, transport_entry

if TYPE_CHECKING:
    from tureen.supervisor.room import Room

# v2's floor for a max bitrate (WebRtcTransport::SetMaxBitrate's MinBitrate): a lower cap
# is raised to it. 0 is Tureen's "no cap" (back to config max_incoming_bitrate).
MIN_MAX_BITRATE = 10_000
MAX_MAX_BITRATE = (1 << 32) - 1


def _check_open(room: Room) -> None:
    if room.closed:
        raise not_found(f"room {room.id!r} is closed")


async def set_audio_levels(room: Room, msg: dict[str, Any]) -> Any:
    _check_open(room)
    return room.audio_levels.configure(msg)


async def set_max_bitrate(room: Room, msg: dict[str, Any]) -> Any:
    _check_open(room)
    peer = room.app_peer(msg)
    transport = room.transport_of(peer, msg, "transportId")
    bitrate = msg.get("bitrate")
    if isinstance(bitrate, bool) or not isinstance(bitrate, int) or not 0 <= bitrate <= MAX_MAX_BITRATE:
        raise bad_request(f"'bitrate' must be an integer of bit/s in 0..{MAX_MAX_BITRATE} (0 = no cap), got {bitrate!r}")
    if transport.direction != "send":
        # v2: "invalid WebRtcTransport direction": REMB goes to senders only.
        raise invalid_state(f"{transport.describe()} is a recv transport: the max bitrate caps what a sender sends")
    if bitrate:
        bitrate = max(bitrate, MIN_MAX_BITRATE)
    data = await room.request(transport.worker, contract.TransportSetMaxBitrate(transportId=transport.gid, bitrate=bitrate))
    return {"bitrate": int(data.get("bitrate", bitrate)) if isinstance(data, dict) else bitrate}


async def request_key_frame(room: Room, msg: dict[str, Any]) -> Any:
    _check_open(room)
    peer = room.app_peer(msg)
    consumer = room.consumer_of(peer, msg, "consumerId")
    # As v2: nothing for audio, or for a consumer that is not enabled or is paused.
    if consumer.kind == "video" and consumer.transport is not None and not consumer.paused:
        await room.request(consumer.transport.worker, contract.ConsumerRequestKeyFrame(consumerId=consumer.gid))
    return {}


async def _stats(room: Room, index: int, command: contract.StatsGet) -> dict[str, Any]:
    if not room.services.worker_alive(index):
        raise ProtocolError(UNAVAILABLE, f"worker {index} is being replaced; ask again")
    data = await room.request(index, command)
    return data if isinstance(data, dict) else {}


async def producer_stats(room: Room, msg: dict[str, Any]) -> Any:
    _check_open(room)
    producer = room.producer_of(room.app_peer(msg), msg, "producerId")
    data = await _stats(room, producer.worker, contract.StatsGet(producerIds=[producer.gid]))
    if producer.closed or not data.get("producers"):
        return []
    return producer_report(producer, data)


async def consumer_stats(room: Room, msg: dict[str, Any]) -> Any:
    _check_open(room)
    consumer = room.consumer_of(room.app_peer(msg), msg, "consumerId")
    transport = consumer.transport
    if transport is None:  # not enabled: no worker has it yet
        return []
    data = await _stats(room, transport.worker, contract.StatsGet(consumerIds=[consumer.gid]))
    if consumer.closed or consumer.transport is not transport or not data.get("consumers"):
        return []
    return consumer_report(consumer, transport, data)


async def transport_stats(room: Room, msg: dict[str, Any]) -> Any:
    _check_open(room)
    transport = room.transport_of(room.app_peer(msg), msg, "transportId")
    if transport.plain:  # v2's PlainRtpTransport has no transport stats (as transportStats)
        return []
    data = await _stats(room, transport.worker, contract.StatsGet(transportIds=[transport.gid]))
    if transport.closed or not data.get("transports"):
        return []
    return [transport_entry(transport.id, data["transports"][0], data["timestamp"])]


async def peer_dump(room: Room, msg: dict[str, Any]) -> Any:
    _check_open(room)
    return room.app_peer(msg).dump()


async def create_streamer(room: Room, msg: dict[str, Any]) -> Any:
    _check_open(room)
    return await room.streamers.create(msg)


async def close_streamer(room: Room, msg: dict[str, Any]) -> Any:
    _check_open(room)
    await room.streamers.close(msg)
    return {}


async def place_peer(room: Room, msg: dict[str, Any]) -> Any:
    """Pin a peer's transports to host `host` (its least loaded worker now) or to worker
    `worker` (or both, consistent), before the peer has a transport (its objects never move
    once made). Only the first placement is pinned: a peer whose worker dies is placed
    afresh, as any other peer of a crashed worker."""
    _check_open(room)
    peer = room.app_peer(msg)
    host = get_str(msg, "host", required=False, max_length=64)
    worker = get_int(msg, "worker", required=False, minimum=0, maximum=(1 << 31) - 1)
    if peer.transports:
        raise invalid_state(
            f"{peer.describe()} has transports on worker {peer.worker} already; "
            "call peer.place before its first createTransport"
        )
    peer.worker = room.services.place_worker(host, worker)
    return {"worker": peer.worker}


ROOM_METHODS: dict[str, Callable[[Room, dict[str, Any]], Awaitable[Any]]] = {
    "room.setAudioLevels": set_audio_levels,
    "transport.setMaxBitrate": set_max_bitrate,
    "consumer.requestKeyFrame": request_key_frame,
    "producer.getStats": producer_stats,
    "consumer.getStats": consumer_stats,
    "transport.getStats": transport_stats,
    "peer.dump": peer_dump,
    "rtpStreamer.create": create_streamer,
    "rtpStreamer.close": close_streamer,
    "peer.place": place_peer,
}
