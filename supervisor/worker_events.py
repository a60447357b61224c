"""What a room does with its workers' events and deaths.

`Room.on_worker_event` finds the object an event is about (by its worker-global id) and
calls the handler `HANDLERS` names for the event's type, with that object; an event about an
object the room no longer has, or of the wrong kind, is dropped (it raced a close).
`on_worker_died` closes everything the dead worker hosted.

Adding an event: its type in shared/contract.py (docs/internals.md says how), then a handler
`async def on_x(room, obj, event)` here and a row in `HANDLERS`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from tureen.shared import contract
from tureen.shared.contract import MAX_NACK_SEQS
from tureen.supervisor import pipes
from tureen.supervisor.consumer import Consumer
from tureen.supervisor.transport import Transport
from tureen.supervisor.transport_handlers import close_transport

if TYPE_CHECKING:
    from tureen.supervisor.room import Room


async def on_transport_closed(room: Room, transport: Transport, event: contract.TransportClosed) -> None:
    """The worker closed it by itself (ICE disconnected, DTLS failed)."""
    room.lifecycle("transport.closed", peerName=transport.peer_name, transportId=transport.id, reason=event.reason)
    await close_transport(room, transport, notify_owner=True)


async def on_transport_state(
    room: Room, transport: Transport, event: contract.TransportIceState | contract.TransportDtlsState
) -> None:
    if transport.peer_name not in room.peers:
        return
    if isinstance(event, contract.TransportIceState):
        transport.worker_state(ice=event.state)
    else:
        transport.worker_state(dtls=event.state)
    room.lifecycle(event.name(), peerName=transport.peer_name, transportId=transport.id, state=event.state)


async def on_key_frame_request(room: Room, consumer: Consumer, event: contract.ConsumerKeyFrameRequest) -> None:
    """A consumer fed through a pipe needs a key frame: the producer's worker asks."""
    producer = consumer.producer
    if not producer.closed and producer.worker is not None:
        await room.request_quiet(
            producer.worker, contract.ProducerRequestKeyFrame(producerId=producer.gid, ssrc=event.ssrc)
        )


async def on_nack(room: Room, consumer: Consumer, event: contract.ConsumerNack) -> None:
    """Packets a consumer fed through a pipe misses: the producer's worker asks the sender."""
    producer = consumer.producer
    if not producer.closed:
        await room.request_quiet(
            producer.worker,
            contract.ProducerNack(producerId=producer.gid, ssrc=event.ssrc, seqs=event.seqs[:MAX_NACK_SEQS]),
        )


async def on_effective_profile(room: Room, consumer: Consumer, event: contract.ConsumerEffectiveProfile) -> None:
    if consumer.effective_changed(event.profile):
        receiver = room.peers.get(consumer.peer_name)
        if receiver is not None:
            room.notify(
                receiver,
                "consumerEffectiveProfileChanged",
                id=consumer.id,
                peerName=consumer.producer.peer_name,
                profile=event.profile,
            )


# Event type -> (the kind of object it is about, handler). Register new events here.
HANDLERS: dict[type[contract.Event], tuple[type, Callable[[Room, Any, Any], Awaitable[None]]]] = {
    contract.TransportClosed: (Transport, on_transport_closed),
    contract.TransportIceState: (Transport, on_transport_state),
    contract.TransportDtlsState: (Transport, on_transport_state),
    contract.ConsumerKeyFrameRequest: (Consumer, on_key_frame_request),
    contract.ConsumerNack: (Consumer, on_nack),
    contract.ConsumerEffectiveProfile: (Consumer, on_effective_profile),
}


async def on_worker_died(room: Room, index: int) -> None:
    """Everything hosted on that worker is gone: close it and tell the owners.

    Both ends of every pipe that touched it go too: a producer on it takes its piped
    copies and their consumers on the other workers with it (`close_producer`, by its
    transport); a producer elsewhere piped to it forgets that pipe here, and the pool
    has the producer's worker close it (`pipe.closeTo`, once every room is done, so it
    also catches a pipe a room opened while the death was on its way). A host leg to it
    is closed at its origin here, and the workers it fed as a gateway get a new one
    (pipes.forget_worker)."""
    await pipes.forget_worker(room, index)
    for peer in list(room.peers.values()):
        for transport in [t for t in peer.transports.values() if t.worker == index]:
            await close_transport(room, transport, notify_owner=True)
        if peer.worker == index:
            peer.worker = None
