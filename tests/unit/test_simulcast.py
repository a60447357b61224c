"""workers/simulcast.py: the pure simulcast policy the router applies (docs/internals.md,
"Simulcast in the worker").

Streams here are plain records with a profile, as the policy sees the router's Streams.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from tureen.workers.simulcast import (
    ACTIVITY_MASK,
    Action,
    active_streams,
    choose_stream,
    decide,
    next_activity,
)


@dataclass(eq=False)
class S:
    profile: str


LOW, MEDIUM, HIGH = S("low"), S("medium"), S("high")
ALL = [LOW, MEDIUM, HIGH]


def test_preferred_alive_is_the_target() -> None:
    for stream in ALL:
        assert choose_stream(ALL, stream.profile, ALL) is stream
    # A new consumer (no stream yet) goes onto it at once.
    move = decide(ALL, "medium", ALL, None, False, None)
    assert move == (Action.SWITCH_NOW, MEDIUM)


def test_consumer_already_on_its_target_stays() -> None:
    assert decide(ALL, "high", ALL, HIGH, True, None) == (Action.STAY, HIGH)
    # A pending switch elsewhere is dropped when the current stream is the target again.
    assert decide(ALL, "high", ALL, HIGH, True, MEDIUM) == (Action.STAY, HIGH)


def test_preferred_dies_falls_back_to_the_best_active_below_at_once() -> None:
    active = [LOW, MEDIUM]
    assert choose_stream(ALL, "high", active) is MEDIUM
    # The consumer's stream stopped: nothing to keep showing, move now.
    assert decide(ALL, "high", active, HIGH, False, None) == (Action.SWITCH_NOW, MEDIUM)
    # Only low left: the highest below is low.
    assert decide(ALL, "high", [LOW], MEDIUM, False, None) == (Action.SWITCH_NOW, LOW)


def test_nothing_below_the_preferred_takes_the_lowest_active() -> None:
    assert choose_stream(ALL, "low", [MEDIUM, HIGH]) is MEDIUM
    assert choose_stream(ALL, "medium", [HIGH]) is HIGH


def test_preferred_comes_back_switches_only_at_its_key_frame() -> None:
    # On medium (still flowing) while high was away; high is active again.
    move = decide(ALL, "high", ALL, MEDIUM, True, None)
    assert move == (Action.SWITCH_AT_KEY_FRAME, HIGH)
    # Next tick, still no key frame on high: ask again, keep waiting.
    assert decide(ALL, "high", ALL, MEDIUM, True, HIGH) == (Action.ASK_AGAIN, HIGH)


def test_a_lower_preference_on_a_flowing_stream_also_waits_for_the_key_frame() -> None:
    assert decide(ALL, "low", ALL, HIGH, True, None) == (Action.SWITCH_AT_KEY_FRAME, LOW)
    # Changing one's mind while waiting retargets the wait.
    assert decide(ALL, "medium", ALL, HIGH, True, LOW) == (Action.SWITCH_AT_KEY_FRAME, MEDIUM)


def test_before_activity_is_known_the_current_stream_counts_as_flowing() -> None:
    # active None: the producer was not ticked yet; a stream with no packets is not "dead".
    assert decide(ALL, "low", None, HIGH, False, None) == (Action.SWITCH_AT_KEY_FRAME, LOW)
    assert choose_stream(ALL, "medium", None) is MEDIUM


def test_default_prefers_the_highest_active() -> None:
    assert choose_stream(ALL, "default", ALL) is HIGH
    assert choose_stream(ALL, "default", [LOW, MEDIUM]) is MEDIUM
    assert decide(ALL, "default", [LOW], HIGH, False, None) == (Action.SWITCH_NOW, LOW)


def test_default_streams_of_a_non_simulcast_producer() -> None:
    only = S("default")
    for preferred in ("low", "medium", "high", "default"):
        assert choose_stream([only], preferred, []) is only
        assert decide([only], preferred, None, None, False, None) == (Action.SWITCH_NOW, only)
        assert decide([only], preferred, [only], only, True, None) == (Action.STAY, only)


def test_default_stream_ranks_as_high_below_a_preference() -> None:
    default = S("default")
    assert choose_stream([LOW, default], "medium", [LOW, default]) is LOW
    assert choose_stream([LOW, default], "low", [default]) is default


def test_no_active_stream_chooses_among_all() -> None:
    assert choose_stream(ALL, "medium", []) is MEDIUM


def test_activity_is_one_second_of_ticks() -> None:
    bits = 0
    bits = next_activity(bits, True)
    assert bits
    for _ in range(3):
        bits = next_activity(bits, False)
        assert bits, "a stream stays active for four ticks after its last packet"
    bits = next_activity(bits, False)
    assert bits == 0
    for _ in range(10):
        bits = next_activity(bits, True)
    assert bits == ACTIVITY_MASK


def test_active_streams_hold_when_the_sender_stops() -> None:
    assert active_streams(ALL, [0, 1, 0], None) == [MEDIUM]
    assert active_streams(ALL, [1, 0, 8], [MEDIUM]) == [LOW, HIGH]
    # Every stream stopped: the last active ones hold (the consumers stay where they were).
    assert active_streams(ALL, [0, 0, 0], [MEDIUM, HIGH]) == [MEDIUM, HIGH]
    # Never active yet: none.
    assert active_streams(ALL, [0, 0, 0], None) == []
    assert active_streams(ALL, [0, 0, 0], []) == []


def test_activity_list_must_match_the_streams() -> None:
    with pytest.raises(ValueError):
        active_streams(ALL, [1, 1], None)
