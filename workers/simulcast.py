"""Simulcast selection: which stream of a producer each consumer gets, and when it moves.

Pure policy, no I/O and no tables: given the streams (anything with a `profile`: 'low',
'medium', 'high' or 'default'), which of them are active, a consumer's preferred profile
and where it is now, these functions say what should happen; workers/router.py applies the
answer to its tables (attach, detach, the forwarder's `waiting` list) and asks for key
frames. The rules (mediasoup v2's, docs/internals.md "Simulcast in the worker"):

- a stream is active while packets arrived in the last second (four 250 ms activity ticks,
  `next_activity`); a simulcast producer whose streams all stop keeps the ones it had
  (`active_streams`): a muted or paused sender leaves its consumers where they were;
- the target (`choose_stream`) among the active streams: 'default' -> the highest; X -> X,
  else the highest below X, else the lowest;
- a consumer with no stream, or whose stream stopped, moves at once (the receiver waits for
  the key frame asked for with the move); one whose stream still flows switches only at the
  target's next key frame, so it never shows a frame it cannot decode (`decide`).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import NamedTuple, Protocol, TypeVar

RANK = {"low": 0, "medium": 1, "high": 2, "default": 2}
# Activity ticks remembered per stream: one bit per 250 ms tick, four bits = one second.
ACTIVITY_MASK = 0xF


class HasProfile(Protocol):
    profile: str


S = TypeVar("S", bound=HasProfile)


def next_activity(activity: int, got_packets: bool) -> int:
    """A stream's activity bits after one tick: shifted, the newest bit = packets arrived."""
    return ((activity << 1) | got_packets) & ACTIVITY_MASK


def active_streams(streams: Sequence[S], activity: Sequence[int], previous: list[S] | None) -> list[S]:
    """The streams whose activity bits are not all zero; when none is, the producer's last
    active streams (`previous`) hold, so a sender that stops keeps its consumers."""
    active = [s for s, bits in zip(streams, activity, strict=True) if bits]
    if not active and previous:
        return previous
    return active


def choose_stream(streams: Sequence[S], preferred: str, active: Sequence[S] | None = None) -> S:
    """The stream a consumer preferring `preferred` should get (the rules above).

    Among the active streams (all, before activity is known or when none is active):
    'default' -> the highest; X -> X, else the highest below X, else the lowest.
    """
    if len(streams) == 1:
        return streams[0]
    pool = active or streams
    if preferred == "default":
        return max(pool, key=lambda s: RANK[s.profile])
    for s in pool:
        if s.profile == preferred:
            return s
    target = RANK[preferred]
    below = [s for s in pool if RANK[s.profile] < target]
    if below:
        return max(below, key=lambda s: RANK[s.profile])
    return min(pool, key=lambda s: RANK[s.profile])


class Action(enum.Enum):
    """What the router does with a consumer after `decide`."""

    STAY = "stay"  # the target is the current stream; a pending switch is dropped
    SWITCH_NOW = "switch-now"  # move onto the target now and ask for its key frame
    SWITCH_AT_KEY_FRAME = "switch-at-key-frame"  # wait for the target's key frame, ask for one
    ASK_AGAIN = "ask-again"  # already waiting for this target: ask for its key frame again


class Move(NamedTuple):
    action: Action
    target: HasProfile


def decide(
    streams: Sequence[S],
    preferred: str,
    active: Sequence[S] | None,
    current: S | None,
    current_active: bool,
    pending: S | None,
) -> Move:
    """Where a consumer preferring `preferred`, now on `current` (None: no stream yet) and
    waiting for `pending` (None: not switching), should go. `active` is the producer's
    active streams (None until the first activity tick); `current_active` whether `current`
    still gets packets."""
    target = choose_stream(streams, preferred, active)
    if target is current:
        return Move(Action.STAY, target)
    if current is None or (active is not None and not current_active):
        return Move(Action.SWITCH_NOW, target)
    if pending is target:
        return Move(Action.ASK_AGAIN, target)
    return Move(Action.SWITCH_AT_KEY_FRAME, target)
