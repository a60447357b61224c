"""Protocol handlers and operations on producers: createProducer, updateProducer,
pause/resumeProducer, closeProducer, and closing a producer with its consumers.

A new producer gets a consumer for every other peer at once (newConsumer); its consumers
close with it (consumerClosed unless their peers hear peerClosed instead, v2).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from tureen.shared import contract
from tureen.shared.errors import (
    BAD_REQUEST,
    ProtocolError,
    duplicate,
    invalid_state,
    limit,
    unsupported,
)
from tureen.shared.protocol.validate import get_bool, get_id, get_obj, get_str
from tureen.shared.rtp import capabilities as caps
from tureen.supervisor import pipes
from tureen.supervisor.consumer_handlers import close_consumer, new_consumer
from tureen.supervisor.peer import Peer
from tureen.supervisor.producer import CONSUMER_NOTIFICATION, Producer, ProducerState
from tureen.supervisor.transport import Transport

if TYPE_CHECKING:
    from tureen.supervisor.room import Room

log = logging.getLogger("tureen.room")


def caps_error(message: str) -> ProtocolError:
    return ProtocolError(BAD_REQUEST, f"wrong RTP parameters: {message}")


async def create_producer(room: Room, peer: Peer, msg: dict[str, Any]) -> Any:
    pid = get_id(msg, "id")
    if pid in room.producers:
        raise duplicate(f"duplicated Producer: id {pid} is already used in room {room.id!r}")
    kind = get_str(msg, "kind", max_length=16)
    if kind not in ("audio", "video"):
        raise unsupported(f"invalid Producer kind {kind!r}: Tureen forwards audio and video")
    if peer.spy:
        raise invalid_state(f"{peer.describe()} is a spy: spies cannot produce")
    transport = room.transport_of(peer, msg, "transportId", "WebRtcTransport")
    if transport.direction != "send":
        raise invalid_state(f"{transport.describe()} is a recv transport: produce on a send one")
    rtp_parameters = get_obj(msg, "rtpParameters")
    assert rtp_parameters is not None
    mapping = caps.producer_mapping(room.rtp_capabilities, kind, rtp_parameters)
    _check_ssrcs_free(room, transport, mapping, exclude=None)
    _check_producer_quotas(room, peer)
    producer = Producer(
        id=pid,
        gid=room.new_gid(),
        peer_name=peer.name,
        kind=kind,
        transport=transport,
        rtp_parameters=rtp_parameters,
        mapping=mapping,
        state=ProducerState.PAUSED if get_bool(msg, "paused") else ProducerState.LIVE,
        app_data=msg.get("appData"),
    )
    await room.request(transport.worker, producer.worker_command(transport.gid, room=room.id))
    peer.producers[pid] = producer
    room.producers[pid] = producer
    room.register(producer)
    log.info(
        "room %r: %s created %s producer %d", room.id, peer.describe(), kind, pid, extra=room.names(peer.name, producer=pid)
    )
    for other in room.peers.values():
        if other is not peer and not other.closed:
            consumer = new_consumer(room, other, producer)
            room.notify(other, "newConsumer", **consumer.new_consumer_data())
    return {}  # v2 resolves with nothing; its signaling sends the client `{}`


def _check_producer_quotas(room: Room, peer: Peer) -> None:
    """A new producer of `peer` makes a consumer for every other peer: both bounded."""
    if len(peer.producers) >= room.quotas.producers_per_peer:
        raise limit(
            f"{peer.describe()} has {len(peer.producers)} producers, the most a peer may "
            "have (max_producers_per_peer): close one before producing another"
        )
    most = room.quotas.consumers_per_peer
    for other in room.peers.values():
        if other is not peer and not other.closed and len(other.consumers) >= most:
            raise limit(
                f"{other.describe()} already receives {len(other.consumers)} consumers, the "
                f"most a peer may (max_consumers_per_peer): room {room.id!r} has too many "
                "producers for another one"
            )


def _check_ssrcs_free(room: Room, transport: Transport, mapping: dict[str, Any], exclude: Producer | None) -> None:
    peer = room.peers[transport.peer_name]
    used = {
        ssrc
        for p in peer.producers.values()
        if p.transport is transport and p is not exclude
        for ssrc in p.mapping["ssrcs"]
    }
    clash = used.intersection(mapping["ssrcs"])
    if clash:
        raise caps_error(f"SSRC {min(clash)} is already used on {transport.describe()}")


async def update_producer(room: Room, peer: Peer, msg: dict[str, Any]) -> None:
    """Applied (v2 ignored it): new SSRCs keep forwarding to the same consumers."""
    producer = room.producer_of(peer, msg)
    rtp_parameters = get_obj(msg, "rtpParameters")
    assert rtp_parameters is not None
    mapping = caps.producer_mapping(room.rtp_capabilities, producer.kind, rtp_parameters)
    _check_ssrcs_free(room, producer.transport, mapping, exclude=producer)
    await room.request(
        producer.worker, producer.worker_command(producer.transport.gid, mapping, update=True, room=room.id)
    )
    await pipes.update_piped(room, producer, mapping)
    producer.rtp_parameters = rtp_parameters
    producer.mapping = mapping


async def pause_producer(room: Room, peer: Peer, msg: dict[str, Any]) -> None:
    await set_producer_paused(room, room.producer_of(peer, msg), True)


async def resume_producer(room: Room, peer: Peer, msg: dict[str, Any]) -> None:
    await set_producer_paused(room, room.producer_of(peer, msg), False)


async def set_producer_paused(room: Room, producer: Producer, paused: bool) -> bool:
    """Returns whether anything changed. Enabled consumers not paused by the app hear it."""
    if producer.paused == paused:
        return False
    await room.request(
        producer.worker,
        contract.ProducerPause(producerId=producer.gid) if paused else contract.ProducerResume(producerId=producer.gid),
    )
    producer.set_state(ProducerState.PAUSED if paused else ProducerState.LIVE)
    if paused:  # consumers on other hosts resync too (what a pipe's mark does on one host)
        await pipes.interrupt_legs(room, producer)
    method = CONSUMER_NOTIFICATION[producer.state]
    for consumer in producer.consumers.values():
        if consumer.enabled and not consumer.paused_by_app:
            receiver = room.peers.get(consumer.peer_name)
            if receiver is not None:
                room.notify(receiver, method, id=consumer.id, peerName=producer.peer_name)
    return True


async def close_producer_msg(room: Room, peer: Peer, msg: dict[str, Any]) -> None:
    await close_producer(room, room.producer_of(peer, msg), notify_consumers=True)


async def close_producer(room: Room, producer: Producer, *, notify_consumers: bool) -> None:
    """It and its consumers go, on every worker that had it."""
    if not room.begin_close(producer):
        return
    await room.streamers.producer_closed(producer)
    for consumer in list(producer.consumers.values()):
        await close_consumer(room, consumer, notify=notify_consumers)
    peer = room.peers.get(producer.peer_name)
    if peer is not None:
        peer.producers.pop(producer.id, None)
    room.producers.pop(producer.id, None)
    room.unregister(producer)
    await pipes.close_piped(room, producer)
    await room.request_quiet(producer.worker, contract.ProducerClose(producerId=producer.gid))
