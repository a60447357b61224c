"""Who is the room's dominant speaker: mediasoup v2's ActiveSpeakerDetector, as a pure class.

It is fed one audio-level report per interval (room.audioLevels: the producers with their
mean level in dBov, loudest first) and says when the active speaker changes. The rules, as
v2 2.6.19 has them (lib/plugins/ActiveSpeakerDetector.js):

- Only the loudest producer of each report counts; it must be at least -80 dBov
  (`MIN_LEVEL`) and neither paused nor closed.
- With no active speaker (at the start, or once the active one was paused or closed), the
  loudest of the very next report becomes active at once.
- While a speaker is active, another one takes over only after being the loudest in
  `REPORTS` (4) consecutive reports: with the default 500 ms interval, two seconds. That is
  the hysteresis: a cough, a laugh or a short interjection does not move the speaker.
- Silence (a report with nobody in it, or only producers below -80 dBov) never ends the
  active speaker's turn: the last one who spoke stays active. Only pausing or closing that
  producer does; then the next report decides at once, and a change to nobody (both null)
  is reported when that report has nobody loud enough.

Nothing here does I/O or reads a clock; supervisor/audio_levels.py drives it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

MIN_LEVEL = -80  # dBov: quieter than this is nobody speaking (v2 REQUIRED_MIN_AUDIO_LEVEL)
REPORTS = 4  # consecutive reports a new loudest needs to take over (v2 REQUIRED_MAX_NUM_REPORTS)


@dataclass(frozen=True)
class Level:
    """One entry of a report: a producer (by its protocol id) of a peer, and its level."""

    peer_name: str
    producer_id: int
    level: int  # dBov, -127..0


class ActiveSpeakerDetector:
    """Feed `update()` each interval's levels; it returns the new speaker on a change."""

    def __init__(self, is_live: Callable[[int], bool]) -> None:
        """`is_live(producer_id)`: the producer still exists and is not paused."""
        self._is_live = is_live
        self._reports: deque[Level | None] = deque(maxlen=REPORTS)
        self.active: Level | None = None

    def update(self, levels: Sequence[Level]) -> tuple[bool, Level | None]:
        """One report (loudest first, or in any order: the loudest is picked). Returns
        (changed, the active speaker after it)."""
        loudest = max(levels, key=lambda x: x.level) if levels else None
        previous = self.active
        if previous is not None and self._is_live(previous.producer_id):
            required = REPORTS
        else:
            previous = None
            required = 1
            self._reports.clear()
        self._reports.append(loudest)
        if len(self._reports) < required:
            return self._set(previous)
        candidate: Level | None = None
        for report in list(self._reports)[-required:]:
            if report is None or report.level < MIN_LEVEL or not self._is_live(report.producer_id):
                candidate = None
                break
            if candidate is not None and report.producer_id != candidate.producer_id:
                candidate = None
                break
            candidate = report
        return self._set(candidate if candidate is not None else previous)

    def _set(self, speaker: Level | None) -> tuple[bool, Level | None]:
        before = self.active
        same = (before is None and speaker is None) or (
            before is not None and speaker is not None and before.producer_id == speaker.producer_id
        )
        if same:
            # The same speaker keeps its turn; its newest level is kept for the record.
            if speaker is not None:
                self.active = speaker
            return False, self.active
        self.active = speaker
        return True, speaker
