"""The cross-worker pipe: a producer's packets, after ingest rewrite, to other workers.

Worker I binds PULL ipc://{run_dir}/pipe-{I}.ipc. `pipe.open {producerId, workerIndex}`
connects one PUSH per destination worker (shared by all producers piped there) and adds a
PipeBatch for (producer, destination) to the producer's streams. The forwarder appends one
copy of each packet to the batch; after each socket drain every batch that got packets goes
out as ONE ZeroMQ message of two frames:

    frame 0   producerId, 4 bytes big-endian
    frame 1   the drain's packets, each as a 2-byte big-endian length and the packet
              (ingest-rewritten RTP: room PT, room extension ids; never RTCP: each
              worker sends its own consumers their sender reports)

One frame per drain, not one per packet: ZeroMQ's per-frame cost (a zmq_msg each side) and
one Python `bytes` per packet at the receiver were most of the hop's cost, and the receiver
copies each record straight from the frame into the forwarder's buffer.

A message with frame 0 alone marks a discontinuity: the producer was paused at the origin,
so consumers on the destination resync their sequence numbers before the next packet
(extension of docs/internals.md; a destination that ignores it still forwards correctly).

Batching halves the hop's cost (PERF.md: 2.9 µs/packet unbatched, 1.4 µs at 32 per message).
When a destination does not keep up, ZeroMQ's high-water mark is reached and the batch is
dropped and counted (pipeDropped): the data path never blocks. The mark counts messages,
i.e. drains: PIPE_HWM lets a destination fall behind by about a second of drains (two
workers share a core on small machines, and 2000 was reached in bursts at 10k pps).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import zmq
from tureen.workers.channel import ZmqReader

if TYPE_CHECKING:
    from tureen.workers.forward import Forwarder
    from tureen.workers.router import Producer

log = logging.getLogger("tureen.workers.pipe")

PIPE_HWM = 10000  # messages (batches, one per drain) queued per destination before dropping
_RECORD = 2  # bytes of length before each packet in frame 1
# The length prefixes of every packet size a UDP datagram of RTP has, made once.
LEN_PREFIX = tuple(n.to_bytes(_RECORD, "big") for n in range(2048))


def pipe_path(run_dir: str, index: int) -> str:
    return os.path.join(run_dir, f"pipe-{index}.ipc")


class PipeBatch:
    """The packets of one drain for one (producer, destination worker). The forwarder
    appends records to `out` inline (forward.py), and lists the batch in `Forwarder.dirty`
    when it gets its first one (`count` 0 -> 1)."""

    __slots__ = ("producer_id", "dest", "header", "out", "count", "push")

    def __init__(self, producer_id: int, dest: int, push: zmq.Socket) -> None:
        self.producer_id = producer_id
        self.dest = dest
        self.header = producer_id.to_bytes(4, "big")
        self.out = bytearray()
        self.count = 0
        self.push = push

    @property
    def pending(self) -> bool:
        return self.count > 0

    def flush(self, fwd: Forwarder) -> None:
        count = self.count
        self.count = 0
        try:
            # pyzmq copies the bytearray into the message (below its copy threshold, and
            # copy=True anyway), so `out` is reused right after.
            self.push.send_multipart((self.header, self.out), zmq.NOBLOCK)
        except zmq.ZMQError:  # Again: the destination is not keeping up (or gone)
            fwd.pipe_dropped += count
            return
        finally:
            del self.out[:]
        fwd.pipe_packets_out += count
        fwd.pipe_messages_out += 1

    def mark_discontinuity(self, fwd: Forwarder) -> None:
        if self.count:  # keep order: queued packets before the mark
            self.flush(fwd)
            fwd.dirty.remove(self)
        with contextlib.suppress(zmq.ZMQError):
            self.push.send(self.header, zmq.NOBLOCK)


class PipeHub:
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        ctx: zmq.Context,
        run_dir: str,
        index: int,
        forwarder: Forwarder,
        lookup: Callable[[int], Producer | None],
        on_discontinuity: Callable[[Producer], None],
    ) -> None:
        self._ctx = ctx
        self._run_dir = run_dir
        self.index = index
        self._fwd = forwarder
        self._lookup = lookup
        self._on_discontinuity = on_discontinuity
        self.path = pipe_path(run_dir, index)
        self.pull = ctx.socket(zmq.PULL)
        self.pull.setsockopt(zmq.LINGER, 0)
        self.pull.setsockopt(zmq.RCVHWM, PIPE_HWM)
        self.pull.bind(f"ipc://{self.path}")
        self.reader = ZmqReader(loop, self.pull, self._on_message, after_drain=forwarder.after_drain)
        self._pushes: dict[int, tuple[zmq.Socket, int]] = {}  # dest -> (socket, batches)
        self.bad_messages = 0

    # -- sending side -------------------------------------------------------------------

    def open(self, producer_id: int, dest: int) -> PipeBatch:
        sock, users = self._pushes.get(dest, (None, 0))
        if sock is None:
            sock = self._ctx.socket(zmq.PUSH)
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.SNDHWM, PIPE_HWM)
            sock.connect(f"ipc://{pipe_path(self._run_dir, dest)}")
            log.info("pipe to worker %d connected", dest)
        self._pushes[dest] = (sock, users + 1)
        return PipeBatch(producer_id, dest, sock)

    def close_batch(self, batch: PipeBatch) -> None:
        if batch.pending:
            batch.flush(self._fwd)
            self._fwd.dirty.remove(batch)
        sock, users = self._pushes[batch.dest]
        if users > 1:
            self._pushes[batch.dest] = (sock, users - 1)
            return
        del self._pushes[batch.dest]
        sock.close()
        log.info("pipe to worker %d closed", batch.dest)

    # -- receiving side -----------------------------------------------------------------

    def _on_message(self, frames: list[bytes]) -> None:
        fwd = self._fwd
        head = frames[0]
        if len(head) != 4:
            self.bad_messages += 1
            return
        producer = self._lookup(int.from_bytes(head, "big"))
        if producer is None or not producer.piped:
            fwd.pipe_unknown_producer += len(frames) - 1
            return
        if len(frames) == 1:
            self._on_discontinuity(producer)
            return
        if len(frames) != 2:
            self.bad_messages += 1
            return
        data = frames[1]
        mv = memoryview(data)
        buf = fwd.buf
        receive = fwd.receive
        end = len(data)
        off = 0
        count = 0
        while off < end:
            n = (data[off] << 8) | data[off + 1]
            off += _RECORD
            if off + n > end:  # a torn record: never read past the frame
                self.bad_messages += 1
                break
            buf[:n] = mv[off : off + n]  # n < 65536 <= len(buf): never resizes it
            off += n
            count += 1
            receive(producer, n)
        fwd.pipe_packets_in += count

    def dump(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "destinations": {str(d): users for d, (_, users) in self._pushes.items()},
            "badMessages": self.bad_messages,
        }

    def close(self) -> None:
        self.reader.close()
        for sock, _ in self._pushes.values():
            sock.close()
        self._pushes.clear()
        self.pull.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
