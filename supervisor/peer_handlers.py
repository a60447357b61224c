"""Protocol handlers and operations on peers: queryRoom, join, leave, and closing a peer.

A newcomer gets a consumer of every existing producer in its join response (no
newConsumer); the others hear newPeer (unless it is a spy). A peer that leaves takes its
producers, consumers and transports with it; the others hear peerClosed, not consumerClosed
(v2: their clients close those consumers themselves).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from tureen.shared.errors import bad_request, duplicate, limit
from tureen.shared.protocol.validate import get_bool, get_str
from tureen.shared.rtp import capabilities as caps
from tureen.supervisor.consumer_handlers import close_consumer, new_consumer
from tureen.supervisor.peer import Peer
from tureen.supervisor.producer_handlers import close_producer
from tureen.supervisor.transport_handlers import close_transport

if TYPE_CHECKING:
    from tureen.supervisor.room import Room

log = logging.getLogger("tureen.room")


async def query_room(room: Room, msg: dict[str, Any]) -> Any:
    return {"rtpCapabilities": room.rtp_capabilities, "mandatoryCodecPayloadTypes": []}


async def join(room: Room, msg: dict[str, Any]) -> Any:
    name = get_str(msg, "peerName", max_length=256)
    assert name is not None
    if not name:
        raise bad_request("peerName must not be empty")
    if name in room.peers:
        raise duplicate(f"duplicated Peer: peer {name!r} is already in room {room.id!r}")
    peer_caps = caps.check_peer_capabilities(room.rtp_capabilities, msg.get("rtpCapabilities"))
    spy = get_bool(msg, "spy")
    if len(room.peers) >= room.quotas.peers_per_room:
        raise limit(
            f"room {room.id!r} has {len(room.peers)} peers, the most a room may have (max_peers_per_room)"
        )
    producers = sum(len(other.producers) for other in room.peers.values())
    if producers > room.quotas.consumers_per_peer:
        raise limit(
            f"room {room.id!r} has {producers} producers: a newcomer would receive more "
            f"than {room.quotas.consumers_per_peer} consumers (max_consumers_per_peer)"
        )
    peer = Peer(name=name, rtp_capabilities=peer_caps, spy=spy, app_data=msg.get("appData"))
    # Commit: the newcomer gets a consumer of every existing producer (no newConsumer).
    for other in room.peers.values():
        for producer in other.producers.values():
            new_consumer(room, peer, producer)
    response_peers = []
    for other in room.peers.values():
        if other.spy:
            continue
        consumers = [
            c.new_consumer_data() for c in peer.consumers.values() if c.producer.peer_name == other.name
        ]
        response_peers.append({**other.public_data(), "consumers": consumers})
    room.peers[name] = peer
    if not spy:
        for other in room.peers.values():
            if other is not peer:
                room.notify(other, "newPeer", **peer.public_data(), consumers=[])
    log.info(
        "room %r: %s joined%s", room.id, peer.describe(), " (spy)" if spy else "", extra=room.names(peer.name)
    )
    room.lifecycle("peer.joined", peerName=name, spy=spy, appData=peer.app_data)
    return {"peers": response_peers}


async def leave(room: Room, peer: Peer, msg: dict[str, Any]) -> None:
    await close_peer(room, peer, msg.get("appData"), notify_peer=False)


async def close_peer(room: Room, peer: Peer, app_data: Any, *, notify_peer: bool) -> None:
    """leave, or the server app closing a peer (then the peer itself gets `closed`)."""
    if peer.closed:
        return
    if notify_peer:
        room.notify(peer, "closed", appData=app_data)
    peer.close()
    room.peers.pop(peer.name, None)
    # Its producers go away with it; other clients close their consumers themselves
    # on peerClosed, so no consumerClosed (v2).
    for producer in list(peer.producers.values()):
        await close_producer(room, producer, notify_consumers=False)
    for consumer in list(peer.consumers.values()):
        await close_consumer(room, consumer, notify=False)
    for transport in list(peer.transports.values()):
        await close_transport(room, transport, notify_owner=False)
    if not peer.spy:
        for other in room.peers.values():
            room.notify(other, "peerClosed", name=peer.name, appData=app_data)
    log.info("room %r: %s left", room.id, peer.describe(), extra=room.names(peer.name))
    room.lifecycle("peer.closed", peerName=peer.name)
