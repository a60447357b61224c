"""Pipe policy: when a producer's packets travel to another worker, and when they stop.

A consumer whose transport lives on another worker than its producer is fed through a pipe
(docs/internals.md, "The pipe"): the consumer's worker gets a piped copy of the producer
(`producer.create` with transportId null) and the producer's worker sends it the packets
(`pipe.open`). One pipe per (producer, worker) pair, whatever the number of consumers there;
fan-out then happens locally. `Producer.piped_to` is the set of workers a pipe reaches.

- `ensure_pipe`: before a consumer is created on a worker (enableConsumer).
- `release_pipe`: after a consumer left a worker; the pipe closes with the last one there.
- `update_piped`: updateProducer reaches the piped copies too.
- `close_piped`: a closing producer takes its piped copies with it.
- `forget_worker`: a dead worker's pipes are gone; the pool closes their origin ends
  (`pipe.closeTo`, worker_pool.py).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from tureen.shared import contract
from tureen.shared.errors import ProtocolError
from tureen.supervisor.producer import Producer

if TYPE_CHECKING:
    from tureen.supervisor.room import Room

log = logging.getLogger("tureen.room")


async def ensure_pipe(room: Room, producer: Producer, index: int) -> None:
    """Once per (producer, worker): the producer's worker sends its packets to `index`."""
    if index == producer.worker or index in producer.piped_to:
        return
    await room.request(index, producer.worker_command(None, room=room.id))
    try:
        await room.request(producer.worker, contract.PipeOpen(producerId=producer.gid, workerIndex=index))
    except ProtocolError:
        await room.request_quiet(index, contract.ProducerClose(producerId=producer.gid))
        raise
    producer.piped_to.add(index)
    log.info("room %r: piping %s to worker %d", room.id, producer.describe(), index)


async def release_pipe(room: Room, producer: Producer, index: int) -> None:
    """Close the pipe to `index` when no consumer of `producer` is left there."""
    if index not in producer.piped_to or producer.closed:
        return
    if any(c.transport is not None and c.transport.worker == index for c in producer.consumers.values()):
        return
    producer.piped_to.discard(index)
    await room.request_quiet(producer.worker, contract.PipeClose(producerId=producer.gid, workerIndex=index))
    await room.request_quiet(index, contract.ProducerClose(producerId=producer.gid))


async def update_piped(room: Room, producer: Producer, mapping: dict[str, Any]) -> None:
    """updateProducer's new streams for every piped copy (best effort: the origin has them)."""
    for index in producer.piped_to:
        await room.request_quiet(index, producer.worker_command(None, mapping, update=True, room=room.id))


async def close_piped(room: Room, producer: Producer) -> None:
    """The piped copies of a closing producer go (their workers close its consumers there)."""
    for index in list(producer.piped_to):
        await room.request_quiet(index, contract.ProducerClose(producerId=producer.gid))
    producer.piped_to.clear()


def forget_worker(room: Room, index: int) -> None:
    """Worker `index` died: no producer of the room is piped to it any more."""
    for producer in list(room.producers.values()):
        producer.piped_to.discard(index)
