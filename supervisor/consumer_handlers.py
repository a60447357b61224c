"""Protocol handlers and operations on consumers: enableConsumer, pause/resumeConsumer,
setConsumerPreferredProfile, and the consumer side of joins, new producers and closes.

Each handler follows room.py's three steps (validate, worker, commit). Consumers are made
without a worker round trip (`new_consumer`): they exist for their peer from the moment
their producer does, and reach a worker only when enabled on a transport.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tureen.shared import contract
from tureen.shared.contract import PROFILES
from tureen.shared.errors import invalid_state, unsupported
from tureen.shared.protocol.validate import get_bool, get_str
from tureen.shared.rtp import capabilities as caps
from tureen.supervisor import pipes
from tureen.supervisor.consumer import Consumer
from tureen.supervisor.peer import Peer
from tureen.supervisor.producer import Producer

if TYPE_CHECKING:
    from tureen.supervisor.room import Room


def _random_id(taken: Callable[[int], bool]) -> int:
    """A protocol id in mediasoup's range (10000000-99999999) not yet used in the room."""
    while True:
        value = 10_000_000 + secrets.randbelow(90_000_000)
        if not taken(value):
            return value


def _new_ssrc() -> int:
    return 100_000_000 + secrets.randbelow(900_000_000)


def new_consumer(room: Room, peer: Peer, producer: Producer) -> Consumer:
    """`peer`'s consumer of `producer`, registered in the room, not enabled."""
    cid = _random_id(lambda v: v in room.consumers)
    rtp = caps.consumer_rtp_parameters(
        room.rtp_capabilities,
        producer.rtp_parameters,
        producer.mapping,
        peer.rtp_capabilities,
        _new_ssrc,
    )
    consumer = Consumer(
        id=cid,
        gid=room.new_gid(),
        peer_name=peer.name,
        producer=producer,
        rtp_parameters=rtp,
        supported=caps.consumer_can_receive(rtp),
    )
    peer.consumers[cid] = consumer
    producer.consumers[cid] = consumer
    room.consumers[cid] = consumer
    room.register(consumer)
    return consumer


async def enable_consumer(room: Room, peer: Peer, msg: dict[str, Any]) -> Any:
    transport = room.transport_of(peer, msg, "transportId")
    consumer = room.consumer_of(peer, msg)
    if consumer.enabled:
        raise invalid_state(f"Consumer already enabled: {consumer.describe()}")
    if not consumer.supported:
        raise unsupported(
            f"{consumer.describe()} cannot be received: the peer's rtpCapabilities share no "
            f"codec with {consumer.producer.describe()}"
        )
    if transport.direction != "recv":
        raise invalid_state(f"{transport.describe()} is a send transport: consume on a recv one")
    paused = get_bool(msg, "paused")
    profile = get_str(msg, "preferredProfile", required=False, default="default", choices=PROFILES)
    assert profile is not None
    producer = consumer.producer
    await pipes.ensure_pipe(room, producer, transport.worker)
    encoding = consumer.rtp_parameters["encodings"][0]
    await room.request(
        transport.worker,
        contract.ConsumerCreate(
            consumerId=consumer.gid,
            producerId=producer.gid,
            transportId=transport.gid,
            kind=producer.kind,  # type: ignore[arg-type]  # checked at createProducer
            ssrc=encoding["ssrc"],
            rtxSsrc=(encoding.get("rtx") or {}).get("ssrc"),
            paused=paused or consumer.paused_by_app,
            preferredProfile=profile,  # type: ignore[arg-type]  # one of PROFILES
            # Its SRs' SDES CNAME (RFC 3550 6.1): the producer's, copied into the consumer's
            # rtpParameters as v2 does.
            cname=(consumer.rtp_parameters.get("rtcp") or {}).get("cname"),
            room=room.id,
            peer=consumer.peer_name,
            clientId=consumer.id,
        ),
    )
    consumer.enable(transport, paused=paused, profile=profile)
    return {
        "paused": producer.paused or consumer.paused_by_app,
        "preferredProfile": profile,
        "effectiveProfile": consumer.effective_profile,
    }


async def detach_consumer(room: Room, consumer: Consumer) -> None:
    """Off its transport: closed on that worker, and the pipe there released if it was the last."""
    transport = consumer.detach()
    if transport is None:
        return
    await room.request_quiet(transport.worker, contract.ConsumerClose(consumerId=consumer.gid))
    await pipes.release_pipe(room, consumer.producer, transport.worker)


async def close_consumer(room: Room, consumer: Consumer, *, notify: bool) -> None:
    """Gone for good (its producer or its peer went); `notify`: its peer hears consumerClosed."""
    if not room.begin_close(consumer):
        return
    await detach_consumer(room, consumer)
    consumer.producer.consumers.pop(consumer.id, None)
    room.consumers.pop(consumer.id, None)
    room.unregister(consumer)
    receiver = room.peers.get(consumer.peer_name)
    if receiver is not None:
        receiver.consumers.pop(consumer.id, None)
        if notify and consumer.producer.peer_name in room.peers:
            room.notify(receiver, "consumerClosed", id=consumer.id, peerName=consumer.producer.peer_name)


async def pause_consumer(room: Room, peer: Peer, msg: dict[str, Any]) -> None:
    await set_consumer_pause(room, room.consumer_of(peer, msg), client=True)


async def resume_consumer(room: Room, peer: Peer, msg: dict[str, Any]) -> None:
    await set_consumer_pause(room, room.consumer_of(peer, msg), client=False)


async def set_consumer_pause(
    room: Room, consumer: Consumer, *, client: bool | None = None, app: bool | None = None
) -> None:
    """Set the client's or the app's pause; its worker hears when the sum changes."""
    new_client = consumer.paused_by_client if client is None else client
    new_app = consumer.paused_by_app if app is None else app
    after = new_client or new_app
    if consumer.transport is not None and consumer.paused_for_worker != after:
        await room.request(
            consumer.transport.worker,
            contract.ConsumerPause(consumerId=consumer.gid) if after else contract.ConsumerResume(consumerId=consumer.gid),
        )
    consumer.set_pauses(client=new_client, app=new_app)


async def set_preferred_profile(room: Room, peer: Peer, msg: dict[str, Any]) -> None:
    consumer = room.consumer_of(peer, msg)
    profile = get_str(msg, "profile", choices=PROFILES)
    assert profile is not None
    await apply_preferred_profile(room, consumer, profile)


async def apply_preferred_profile(room: Room, consumer: Consumer, profile: str) -> None:
    if consumer.transport is not None and profile != consumer.preferred_profile:
        await room.request(
            consumer.transport.worker,
            contract.ConsumerSetPreferredProfile(consumerId=consumer.gid, profile=profile),  # type: ignore[arg-type]
        )
    consumer.preferred_profile = profile
