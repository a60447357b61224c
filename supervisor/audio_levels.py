"""A room's audio levels and active speaker: the events `room.audioLevels` and
`room.activeSpeaker` (mediasoup v2's Room 'audiolevels' and ActiveSpeakerDetector).

Every `interval` ms (config `audio_levels_interval`, or `room.setAudioLevels`; 0 = off) a
timer asks each worker that receives audio producers of the room for their mean RFC 6464
level since the last ask (`producer.getAudioLevels`: the workers only add each packet's
level to two counters, workers/forward.py). The answer, loudest first and only producers
at or above `threshold` dBov, goes to the room's subscribers; the same answer, unfiltered,
feeds the room's ActiveSpeakerDetector (supervisor/active_speaker.py), which emits
`room.activeSpeaker` when the dominant speaker changes.

It reads the room's producer table and uses the room's `lifecycle` (events) and `request`
(workers), as the handlers do.

The timer runs beside the room's mailbox, not in it: it only reads the room's tables (one
thread, no await between reading and using them) and waits for the workers' answers there,
so a slow worker delays the next report, never the room's requests. A tick whose worker
answers late is skipped, not queued.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from tureen.shared import contract
from tureen.shared.errors import ProtocolError, bad_request
from tureen.supervisor.active_speaker import ActiveSpeakerDetector, Level

if TYPE_CHECKING:
    from tureen.supervisor.producer import Producer
    from tureen.supervisor.room import Room

log = logging.getLogger("tureen.room.audio_levels")

MAX_INTERVAL = 60_000  # ms; a longer one is surely a unit mistake (seconds for ms)
MIN_INTERVAL = 100  # ms; shorter intervals average over too few packets (20 ms each)
MIN_THRESHOLD = -127  # dBov: everything (v2 lists every producer with a level)
DEFAULT_THRESHOLD = MIN_THRESHOLD


def check_interval(value: Any) -> int:
    """An interval in ms: 0 (off) or MIN_INTERVAL..MAX_INTERVAL. Raises bad_request."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        raise bad_request(f"'interval' must be an integer number of ms (0 = off), got {value!r}")
    interval = int(value)
    if interval != 0 and not MIN_INTERVAL <= interval <= MAX_INTERVAL:
        raise bad_request(
            f"'interval' {interval} ms is outside {MIN_INTERVAL}..{MAX_INTERVAL} (0 turns audio levels off)"
        )
    return interval


def check_threshold(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        raise bad_request(f"'threshold' must be an integer dBov in -127..0, got {value!r}")
    if not MIN_THRESHOLD <= value <= 0:
        raise bad_request(f"'threshold' {value} is outside -127..0 dBov")
    return int(value)


class AudioLevels:
    """The audio-level timer and active-speaker detector of one room."""

    def __init__(self, room: Room, interval: int = 0) -> None:
        self._room = room
        self.interval = interval
        self.threshold = DEFAULT_THRESHOLD
        self.detector = ActiveSpeakerDetector(self._is_live)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Run the timer when an interval is set (the room starts, or the interval changed)."""
        self.stop()
        if self.interval > 0:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"room {self._room.id} audio levels")

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def configure(self, msg: dict[str, Any]) -> dict[str, Any]:
        """room.setAudioLevels {interval, threshold?}: validate both, then apply."""
        if "interval" not in msg:
            raise bad_request("room.setAudioLevels needs 'interval' (ms; 0 = off)")
        interval = check_interval(msg["interval"])
        threshold = check_threshold(msg["threshold"]) if msg.get("threshold") is not None else self.threshold
        self.interval, self.threshold = interval, threshold
        self.start()
        return {"interval": interval, "threshold": threshold}

    # ------------------------------------------------------------------ the timer

    def _is_live(self, producer_id: int) -> bool:
        producer = self._room.producers.get(producer_id)
        return producer is not None and not producer.closed and not producer.paused

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        period = self.interval / 1000
        next_at = loop.time() + period
        while True:
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            try:
                await self.report()
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug: log it, keep reporting
                log.exception("room %r: audio levels failed", self._room.id)
            next_at += period
            now = loop.time()
            if next_at < now:  # a slow answer: skip the ticks it overran
                next_at = now + period - (now - next_at) % period

    async def report(self) -> None:
        """One interval: ask the workers, emit room.audioLevels, feed the detector."""
        room = self._room
        by_worker: dict[int, list[Producer]] = {}
        for producer in list(room.producers.values()):
            if producer.kind != "audio" or producer.closed or producer.paused:
                continue  # a paused producer's packets are dropped on arrival: no level
            by_worker.setdefault(producer.worker, []).append(producer)
        asks = [self._ask(index, producers) for index, producers in by_worker.items()]
        answers = await asyncio.gather(*asks)
        if room.closed:
            return
        levels: list[Level] = []
        for producers, answer in zip(by_worker.values(), answers, strict=True):
            by_gid = {p.gid: p for p in producers}
            for gid, level in answer:
                producer = by_gid.get(gid)
                if producer is not None and not producer.closed:
                    levels.append(Level(producer.peer_name, producer.id, level))
        # Loudest first; equal levels in a stable order (the peer's name, then the id).
        levels.sort(key=lambda x: (-x.level, x.peer_name, x.producer_id))
        room.lifecycle(
            "room.audioLevels",
            levels=[
                {"peerName": x.peer_name, "producerId": x.producer_id, "audioLevel": x.level}
                for x in levels
                if x.level >= self.threshold
            ],
        )
        changed, speaker = self.detector.update(levels)
        if changed:
            room.lifecycle(
                "room.activeSpeaker",
                peerName=speaker.peer_name if speaker else None,
                producerId=speaker.producer_id if speaker else None,
            )

    async def _ask(self, index: int, producers: list[Producer]) -> list[tuple[int, int]]:
        command = contract.ProducerGetAudioLevels(producerIds=[p.gid for p in producers])
        try:
            data = await self._room.request(index, command)
        except ProtocolError as exc:  # the worker died or is busy: this interval has none
            log.debug("room %r: audio levels of worker %d: %s", self._room.id, index, exc.message)
            return []
        return [(int(gid), int(level)) for gid, level in data.get("levels", [])]
