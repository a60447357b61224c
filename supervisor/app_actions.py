"""Server-app actions: what the control API lets an app do to a room's objects directly.

`ACTIONS` maps each control method to one function `(room, msg) -> reply data`, run in the
room's mailbox by `Room.app_action`; the server routes every name of this table to the room
(server.py `APP_ACTIONS` is its keys). Unlike a client's message, an action on a peer's
object tells that peer's client what happened (producerPaused, consumerResumed, closed ...),
with the app's `appData` (absent when it gave none) and, for the owner's producer
notifications, its `peerName`, as v2's Producer.pause/resume/close(appData).

mediasoup v2's server API that tells no client (room.setAudioLevels, transport.setMaxBitrate,
*.getStats, peer.dump, rtpStreamer.* ...) lives in room_methods.py; its `ROOM_METHODS` join
this table, so they run the same way.

Adding an action: write `async def my_action(room, msg)` here (`room.app_peer(msg)` resolves
and checks `peerName`; `room.transport_of/producer_of/consumer_of(peer, msg, key)` the
object), add it to `ACTIONS` under its control-method name, and describe it in
docs/control-api.md. Nothing else needs to know.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from tureen.shared.contract import PROFILES
from tureen.shared.protocol.validate import get_str
from tureen.supervisor.consumer_handlers import apply_preferred_profile, set_consumer_pause
from tureen.supervisor.peer_handlers import close_peer
from tureen.supervisor.producer import OWNER_NOTIFICATION, ProducerState
from tureen.supervisor.producer_handlers import close_producer, set_producer_paused
from tureen.supervisor.room_methods import ROOM_METHODS
from tureen.supervisor.transport_handlers import close_transport

if TYPE_CHECKING:
    from tureen.supervisor.room import Room

Action = Callable[["Room", dict[str, Any]], Awaitable[Any]]


async def peer_close(room: Room, msg: dict[str, Any]) -> None:
    await close_peer(room, room.app_peer(msg), msg.get("appData"), notify_peer=True)


async def transport_close(room: Room, msg: dict[str, Any]) -> None:
    transport = room.transport_of(room.app_peer(msg), msg, "transportId")
    await close_transport(room, transport, notify_owner=True, app_data=msg.get("appData"))


async def _producer_pause(room: Room, msg: dict[str, Any], *, paused: bool) -> None:
    peer = room.app_peer(msg)
    producer = room.producer_of(peer, msg, "producerId")
    if await set_producer_paused(room, producer, paused):
        room.notify(
            peer, OWNER_NOTIFICATION[producer.state], id=producer.id, peerName=peer.name, appData=msg.get("appData")
        )


async def producer_close(room: Room, msg: dict[str, Any]) -> None:
    peer = room.app_peer(msg)
    producer = room.producer_of(peer, msg, "producerId")
    room.notify(
        peer, OWNER_NOTIFICATION[ProducerState.CLOSED], id=producer.id, peerName=peer.name, appData=msg.get("appData")
    )
    await close_producer(room, producer, notify_consumers=True)


async def _consumer_pause(room: Room, msg: dict[str, Any], *, paused: bool) -> None:
    peer = room.app_peer(msg)
    consumer = room.consumer_of(peer, msg, "consumerId")
    if consumer.paused_by_app != paused:
        await set_consumer_pause(room, consumer, app=paused)
        room.notify(
            peer,
            "consumerPaused" if paused else "consumerResumed",
            id=consumer.id,
            peerName=consumer.producer.peer_name,
            appData=msg.get("appData"),
        )


async def consumer_set_preferred_profile(room: Room, msg: dict[str, Any]) -> None:
    peer = room.app_peer(msg)
    consumer = room.consumer_of(peer, msg, "consumerId")
    profile = get_str(msg, "profile", choices=PROFILES)
    assert profile is not None
    await apply_preferred_profile(room, consumer, profile)
    room.notify(
        peer,
        "consumerPreferredProfileSet",
        id=consumer.id,
        peerName=consumer.producer.peer_name,
        profile=profile,
    )


# Control method -> action. Register new actions here (and only here).
ACTIONS: dict[str, Action] = {
    "peer.close": peer_close,
    "transport.close": transport_close,
    "producer.pause": partial(_producer_pause, paused=True),
    "producer.resume": partial(_producer_pause, paused=False),
    "producer.close": producer_close,
    "consumer.pause": partial(_consumer_pause, paused=True),
    "consumer.resume": partial(_consumer_pause, paused=False),
    "consumer.setPreferredProfile": consumer_set_preferred_profile,
    **ROOM_METHODS,
}
