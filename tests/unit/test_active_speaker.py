"""The active-speaker rules of supervisor/active_speaker.py over level sequences (mediasoup
v2's ActiveSpeakerDetector: -80 dBov floor, four consecutive loudest reports to take over,
silence keeps the last speaker, pause or close hands over at once)."""

from __future__ import annotations

from tureen.supervisor.active_speaker import MIN_LEVEL, REPORTS, ActiveSpeakerDetector, Level

ALICE = ("alice", 1)
BOB = ("bob", 2)


def report(*entries: tuple[tuple[str, int], int]) -> list[Level]:
    return sorted((Level(who[0], who[1], level) for who, level in entries), key=lambda x: -x.level)


def run(detector: ActiveSpeakerDetector, reports: list[list[Level]]) -> list[str | None]:
    """The speaker after each report, by peer name."""
    out = []
    for levels in reports:
        _, speaker = detector.update(levels)
        out.append(speaker.peer_name if speaker else None)
    return out


def test_first_speaker_is_active_at_once_and_a_new_one_needs_four_reports() -> None:
    detector = ActiveSpeakerDetector(lambda pid: True)
    changed, speaker = detector.update(report((ALICE, -30), (BOB, -50)))
    assert changed and speaker == Level("alice", 1, -30)
    # Bob is louder from now on: Alice keeps the turn for three reports, Bob has it at the fourth.
    bob_louder = report((BOB, -20), (ALICE, -40))
    assert run(detector, [bob_louder] * REPORTS) == ["alice"] * (REPORTS - 1) + ["bob"]


def test_a_short_burst_does_not_move_the_speaker() -> None:
    detector = ActiveSpeakerDetector(lambda pid: True)
    alice = report((ALICE, -25), (BOB, -60))
    burst = report((BOB, -10), (ALICE, -25))
    sequence = [alice, burst, burst, burst, alice, burst, burst, alice]
    assert run(detector, sequence) == ["alice"] * len(sequence)


def test_silence_and_quiet_reports_keep_the_last_speaker() -> None:
    detector = ActiveSpeakerDetector(lambda pid: True)
    quiet = report((BOB, MIN_LEVEL - 1))
    assert run(detector, [report((ALICE, -30)), [], [], quiet, quiet, quiet, quiet]) == ["alice"] * 7
    # Nobody was ever loud enough: no speaker at all.
    assert run(ActiveSpeakerDetector(lambda pid: True), [quiet, [], report((BOB, MIN_LEVEL))]) == [None, None, "bob"]


def test_a_paused_or_closed_speaker_hands_over_at_once_or_to_nobody() -> None:
    live = {1: True, 2: True}
    detector = ActiveSpeakerDetector(lambda pid: live[pid])
    assert run(detector, [report((ALICE, -30), (BOB, -50))]) == ["alice"]
    live[1] = False  # Alice's producer paused: Bob, audible, takes over at the next report
    assert run(detector, [report((BOB, -50))]) == ["bob"]
    live[2] = False
    changed, speaker = detector.update([])
    assert changed and speaker is None  # v2 emits activespeakerchange(undefined, undefined)


def test_a_paused_producer_that_is_still_loudest_never_takes_over() -> None:
    live = {1: True, 2: False}
    detector = ActiveSpeakerDetector(lambda pid: live[pid])
    assert run(detector, [report((ALICE, -30))] + [report((BOB, -5), (ALICE, -30))] * 6) == ["alice"] * 7


def test_changes_are_reported_once() -> None:
    detector = ActiveSpeakerDetector(lambda pid: True)
    alice = report((ALICE, -30))
    assert [detector.update(alice)[0] for _ in range(3)] == [True, False, False]
