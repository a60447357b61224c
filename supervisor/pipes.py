"""Pipe policy: when a producer's packets travel to another worker or host, and when they stop.

A consumer whose transport lives on another worker than its producer is fed through a piped
copy of the producer there (`producer.create` with transportId null). What feeds the copy:

- a worker of the producer's own host: a pipe from the producer's worker (docs/internals.md,
  "The pipe": `pipe.open` on the origin);
- the first worker of another host that needs the producer: a host leg from the producer's
  worker (docs/internals.md, "The host leg": UDP, SRTP with a key made here, NACK repair on
  the link). That worker is the host's *gateway* for the producer: `leg.address` on the
  origin, `leg.receive` on the gateway (with the origin's address; it answers its own),
  then `leg.send` on the origin;
- any other worker of that host: a pipe from the gateway (`pipe.open` on the gateway).

So a producer's media crosses to a host once, however many consumers and workers there, and
fans out there as on one machine. The data model, on the supervisor's Producer:

    piped_to   the workers that hold a piped copy (pipe destinations and gateways)
    fed_by     worker -> the worker that sends it the packets (the origin, or a gateway)
    gateways   host name (None: the supervisor's own) -> its gateway worker
    legs       gateway worker -> leg id (unique in this supervisor: a gid)

- `ensure_pipe`: before a consumer is created on a worker (enableConsumer).
- `release_pipe`: after a consumer left a worker; the copy there goes with the last one,
  unless it is a gateway that still feeds other workers of its host; a gateway left with
  neither consumers nor workers to feed goes too (its leg closes at the origin).
- `update_piped`: updateProducer reaches the piped copies too.
- `interrupt_legs`: a paused producer's gateways hear it over the host link
  (`producer.interrupt`): the pipe's discontinuity mark, which a lost datagram cannot carry.
- `close_piped`: a closing producer takes its piped copies with it (the origin's pipes and
  legs close with the producer there).
- `forget_worker`: a dead worker's copies are gone; a leg to a dead gateway is closed at the
  origin, and the workers that gateway fed get a new one among them (a new leg). Local pipes
  towards the dead worker are closed by the pool (`pipe.closeTo`, worker_pool.py).
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

from tureen.shared import contract
from tureen.shared.errors import ProtocolError
from tureen.supervisor.producer import Producer

if TYPE_CHECKING:
    from tureen.supervisor.room import Room

log = logging.getLogger("tureen.room")


def _host(room: Room, index: int) -> str | None:
    return room.services.worker_host(index)


async def ensure_pipe(room: Room, producer: Producer, index: int) -> None:
    """Once per (producer, worker): `index` gets the producer's packets (pipe or leg)."""
    if index == producer.worker or index in producer.piped_to:
        return
    host = _host(room, index)
    if host == _host(room, producer.worker):
        await _pipe(room, producer, producer.worker, index)
        return
    gateway = producer.gateways.get(host)
    if gateway is not None:
        await _pipe(room, producer, gateway, index)
        return
    await room.request(index, producer.worker_command(None, room=room.id))
    try:
        await _connect_leg(room, producer, index, host)
    except ProtocolError:
        await room.request_quiet(index, contract.ProducerClose(producerId=producer.gid))  # and its leg end
        raise
    producer.piped_to.add(index)


async def _pipe(room: Room, producer: Producer, source: int, index: int) -> None:
    """A piped copy on `index`, fed by a pipe from `source` (same host)."""
    await room.request(index, producer.worker_command(None, room=room.id))
    try:
        await room.request(source, contract.PipeOpen(producerId=producer.gid, workerIndex=index))
    except ProtocolError:
        await room.request_quiet(index, contract.ProducerClose(producerId=producer.gid))
        raise
    producer.piped_to.add(index)
    producer.fed_by[index] = source
    log.info("room %r: piping %s from worker %d to worker %d", room.id, producer.describe(), source, index)


async def _connect_leg(room: Room, producer: Producer, index: int, host: str | None) -> None:
    """A host leg from the producer's worker to its piped copy on `index`, which becomes
    `host`'s gateway. The key is the leg's own; the host link (CURVE) carries it."""
    origin = producer.worker
    leg_id = room.services.new_gid()
    key = os.urandom(contract.LEG_KEY_BYTES).hex()
    here = await room.request(origin, contract.LegAddress())
    there = await room.request(
        index, contract.LegReceive(legId=leg_id, producerId=producer.gid, key=key, ip=here["ip"], port=here["port"])
    )
    try:
        await room.request(
            origin, contract.LegSend(legId=leg_id, producerId=producer.gid, key=key, ip=there["ip"], port=there["port"])
        )
    except ProtocolError:
        await room.request_quiet(index, contract.LegClose(legId=leg_id))
        raise
    producer.fed_by[index] = origin
    producer.gateways[host] = index
    producer.legs[index] = leg_id
    log.info(
        "room %r: %s crosses to host %s: leg %d from worker %d (%s:%s) to worker %d (%s:%s)",
        room.id, producer.describe(), host or "(the supervisor's)", leg_id, origin,
        here["ip"], here["port"], index, there["ip"], there["port"],
    )  # fmt: skip


def _feeds(producer: Producer, index: int) -> bool:
    return any(source == index for source in producer.fed_by.values())


async def release_pipe(room: Room, producer: Producer, index: int) -> None:
    """Close the copy on `index` when no consumer of `producer` is left there and it feeds
    no other worker; then its feeder, if that was a gateway left with nothing to do."""
    if index not in producer.piped_to or producer.closed:
        return
    if any(c.transport is not None and c.transport.worker == index for c in producer.consumers.values()):
        return
    if _feeds(producer, index):
        return
    producer.piped_to.discard(index)
    source = producer.fed_by.pop(index, producer.worker)
    leg_id = producer.legs.pop(index, None)
    if leg_id is not None:
        _drop_gateway(producer, index)
        await room.request_quiet(producer.worker, contract.LegClose(legId=leg_id))
    else:
        await room.request_quiet(source, contract.PipeClose(producerId=producer.gid, workerIndex=index))
    await room.request_quiet(index, contract.ProducerClose(producerId=producer.gid))
    if source != producer.worker:
        await release_pipe(room, producer, source)


def _drop_gateway(producer: Producer, index: int) -> None:
    for host, gateway in list(producer.gateways.items()):
        if gateway == index:
            del producer.gateways[host]


async def update_piped(room: Room, producer: Producer, mapping: dict[str, Any]) -> None:
    """updateProducer's new streams for every piped copy (best effort: the origin has them)."""
    for index in producer.piped_to:
        await room.request_quiet(index, producer.worker_command(None, mapping, update=True, room=room.id))


async def interrupt_legs(room: Room, producer: Producer) -> None:
    """The producer paused: its gateways' consumers resync (they mark their own pipes)."""
    for index in list(producer.gateways.values()):
        await room.request_quiet(index, contract.ProducerInterrupt(producerId=producer.gid))


async def close_piped(room: Room, producer: Producer) -> None:
    """The piped copies of a closing producer go (their workers close its consumers there)."""
    for index in list(producer.piped_to):
        await room.request_quiet(index, contract.ProducerClose(producerId=producer.gid))
    producer.piped_to.clear()
    producer.fed_by.clear()
    producer.gateways.clear()
    producer.legs.clear()


async def forget_worker(room: Room, index: int) -> None:
    """Worker `index` died: no copy of any producer of the room is there any more. A leg
    to it closes at the origin; the workers it fed as a gateway get a new gateway among
    them (or go, when their own death is on its way)."""
    for producer in list(room.producers.values()):
        if index not in producer.piped_to or producer.closed:
            continue
        producer.piped_to.discard(index)
        source = producer.fed_by.pop(index, None)
        leg_id = producer.legs.pop(index, None)
        host = _host(room, index)
        if leg_id is not None:
            _drop_gateway(producer, index)
            await room.request_quiet(producer.worker, contract.LegClose(legId=leg_id))
        orphans = [d for d, s in producer.fed_by.items() if s == index]
        if orphans:
            await _new_gateway(room, producer, orphans, host)
        elif source is not None and source != producer.worker:
            await release_pipe(room, producer, source)


async def _new_gateway(room: Room, producer: Producer, orphans: list[int], host: str | None) -> None:
    """The gateway of `orphans` (on `host`) died: the first live one becomes the gateway
    (its copy stays; a new leg feeds it) and pipes the others."""
    for dest in orphans:
        producer.fed_by.pop(dest, None)
    alive = [d for d in orphans if room.services.worker_alive(d)]
    if not alive:
        return  # their host went: their own deaths close what they had
    gateway, rest = alive[0], alive[1:]
    try:
        await _connect_leg(room, producer, gateway, host)
        for dest in rest:
            await room.request(gateway, contract.PipeOpen(producerId=producer.gid, workerIndex=dest))
            producer.fed_by[dest] = gateway
    except ProtocolError as exc:
        log.warning("room %r: %s: no new gateway on host %s: %s", room.id, producer.describe(), host, exc.message)
