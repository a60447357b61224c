"""benchmarks/hoptrace.py: one packet's chain through the workers, read from `perf script` text."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # benchmarks/ is a folder of the repo, not an installed package
    sys.path.insert(0, str(ROOT))

from benchmarks import hoptrace  # noqa: E402

LOAD, ORIGIN, DEST, OTHER = 100, 200, 300, 400


def line(comm: str, tid: int, cpu: int, us: float, event: str, rest: str) -> str:
    sec, ns = divmod(int(us * 1000), 1_000_000_000)
    return f"{comm:>16} {tid:5d} [{cpu:03d}] {sec}.{ns:09d}:        {event}: {rest}"


def switch(cpu: int, us: float, prev: tuple[str, int], nxt: tuple[str, int], state: str = "S") -> str:
    return line(prev[0], prev[1], cpu, us, "sched:sched_switch",
                f"prev_comm={prev[0]} prev_pid={prev[1]} prev_prio=120 prev_state={state} ==> "
                f"next_comm={nxt[0]} next_pid={nxt[1]} next_prio=120")


def waking(cpu: int, us: float, by: tuple[str, int], who: tuple[str, int]) -> str:
    return line(by[0], by[1], cpu, us, "sched:sched_waking", f"comm={who[0]} pid={who[1]} prio=120 target_cpu=000")


IDLE, LOADP, ORG, DST, HOG = ("swapper/0", 0), ("rtpload-1", LOAD), ("python", ORIGIN), ("python", DEST), \
    ("cc1 plus", OTHER)

# One packet across the pipe, both workers on cpu 0: the origin wakes 20 µs after the send,
# sends the pipe datagram 30 µs later, runs 20 µs more, a neighbour holds cpu 0 for 130 µs,
# then the destination runs and sends the copies 30 µs later.
CROSS = [
    switch(0, 900, ("x", 1), IDLE),
    line(*LOADP, 1, 1000, "syscalls:sys_enter_sendmmsg", "fd: 0x00000003"),
    waking(1, 1010, LOADP, ORG),
    switch(0, 1020, IDLE, ORG, "R"),
    line(*ORG, 0, 1025, "syscalls:sys_enter_recvmmsg", "fd: 0x00000007"),
    line(*ORG, 0, 1050, "syscalls:sys_enter_sendto", "fd: 0x00000009"),
    waking(0, 1051, ORG, DST),
    line(*ORG, 0, 1065, "syscalls:sys_enter_epoll_wait", "epfd: 0x00000003"),
    switch(0, 1070, ORG, HOG),
    switch(0, 1200, HOG, DST, "R"),
    line(*DST, 0, 1230, "syscalls:sys_enter_io_uring_enter", "fd: 0x0000000b"),
]


def test_a_cross_packet_is_cut_into_its_segments_and_the_wait_is_charged_to_who_ran() -> None:
    events = hoptrace.parse(reversed(CROSS))  # out of order on purpose: parse sorts by time
    found, skipped = hoptrace.chains(events, LOAD, ORIGIN, DEST)
    assert skipped == 0 and len(found) == 1
    seg = hoptrace.segments(found[0])
    assert seg == pytest.approx({"load send to origin woken": 10, "origin wake-up": 20, "origin drain to pipe send": 30,
                                 "  of which origin on cpu": 30, "destination wait for cpu": 150,
                                 "destination drain to send": 30, "  of which destination on cpu": 30,
                                 "total (send to out)": 230})
    assert found[0].dest_wait_held == {"origin": 20_000, "cc1 plus": 130_000}
    assert found[0].origin_wait_held == {"idle": 10_000}
    summary = hoptrace.summary(found)
    assert summary["dest_wait_held_us_per_packet"] == pytest.approx({"cc1 plus": 130, "origin": 20})


def test_a_same_worker_packet_ends_at_the_origins_send_and_a_chain_without_one_is_skipped() -> None:
    text = [
        switch(0, 900, ("x", 1), IDLE),
        line(*LOADP, 1, 1000, "syscalls:sys_enter_sendmmsg", "fd: 0x00000003"),
        waking(1, 1004, LOADP, ORG),
        switch(0, 1008, IDLE, ORG, "R"),
        line(*ORG, 0, 1020, "syscalls:sys_enter_io_uring_enter", "fd: 0x0000000b"),
        line(*LOADP, 1, 2000, "syscalls:sys_enter_sendmmsg", "fd: 0x00000003"),  # never forwarded
        "not a perf line",
    ]
    found, skipped = hoptrace.chains(hoptrace.parse(text), LOAD, ORIGIN, None)
    assert [hoptrace.segments(c) for c in found] == [
        pytest.approx({"load send to origin woken": 4, "origin wake-up": 8, "drain to send": 12,
                        "  of which origin on cpu": 12, "total (send to out)": 20})]
    assert skipped == 1


def test_a_preempted_origin_is_not_waited_for_as_if_asleep() -> None:
    # Runnable (switched out in R) when the packet comes: no wake-up event belongs to this
    # packet; the wait runs from the send to its next switch-in, charged to who ran.
    text = [
        switch(0, 990, ORG, HOG, "R"),
        line(*LOADP, 1, 1000, "syscalls:sys_enter_sendmmsg", "fd: 0x00000003"),
        switch(0, 1100, HOG, ORG, "R"),
        line(*ORG, 0, 1110, "syscalls:sys_enter_io_uring_enter", "fd: 0x0000000b"),
        line(*ORG, 0, 1120, "syscalls:sys_enter_epoll_wait", "epfd: 0x00000003"),
        switch(0, 1130, ORG, IDLE),
        waking(1, 1500, LOADP, ORG),  # the next packet's, not this one's
    ]
    (chain,), _ = hoptrace.chains(hoptrace.parse(text), LOAD, ORIGIN, None)
    assert chain.wake0 is None and not chain.origin_was_running
    assert hoptrace.segments(chain)["origin wake-up"] == pytest.approx(100)
    assert chain.origin_wait_held == {"cc1 plus": 100_000}


def test_queued_packets_are_matched_first_in_first_out_by_count() -> None:
    # Two packets in flight at once: the second's copies leave with the second call, which
    # matching "the first send after it" would get wrong (it would say 200 µs, not 300).
    sendmmsg = "syscalls:sys_enter_sendmmsg"
    text = [
        switch(0, 900, ORG, IDLE),  # asleep: nothing in flight, counting starts here
        line(*LOADP, 1, 1000, sendmmsg, "fd: 0x00000003, mmsg: 0x00001000, vlen: 0x00000001, flags: 0x00000040"),
        waking(1, 1005, LOADP, ORG),
        line(*LOADP, 1, 1100, sendmmsg, "fd: 0x00000003, mmsg: 0x00001000, vlen: 0x00000001, flags: 0x00000040"),
        switch(0, 1200, IDLE, ORG, "R"),
        line(*ORG, 0, 1300, "syscalls:sys_enter_io_uring_enter", "fd: 0x0000000b, to_submit: 0x00000002"),
        line(*ORG, 0, 1400, "syscalls:sys_enter_io_uring_enter", "fd: 0x0000000b, to_submit: 0x00000002"),
    ]
    rows = hoptrace.per_packet(hoptrace.parse(text), LOAD, ORIGIN, None, copies=2, size=1200)
    assert rows == [pytest.approx({"total": 300}), pytest.approx({"total": 300})]
