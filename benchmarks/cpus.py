"""Which CPU runs what: the forwarder under test on one core, everything else on another.

The machine this was written for has two cores. The forwarder (a Tureen worker, or the C
baseline) gets `forwarder_cpu`; the load tool, the supervisor and this harness share
`tools_cpu`, so the tools never steal the measured core.
"""

from __future__ import annotations

import contextlib
import os

import psutil


def available() -> list[int]:
    return sorted(os.sched_getaffinity(0))


def layout() -> tuple[int, int]:
    """(forwarder_cpu, tools_cpu). With one CPU both are the same (and figures are rough)."""
    cpus = available()
    return cpus[0], cpus[-1]


def pin(pid: int, cpu: int) -> None:
    """Pin every thread of `pid` (sched_setaffinity on a pid only moves its main thread, and
    a worker's ZeroMQ I/O thread must move too, or its CPU lands on the tools' core)."""
    with contextlib.suppress(psutil.Error):
        for thread in psutil.Process(pid).threads():
            with contextlib.suppress(OSError):
                os.sched_setaffinity(thread.id, {cpu})
    with contextlib.suppress(OSError):
        os.sched_setaffinity(pid, {cpu})


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes (all their threads), in seconds."""
    total = 0.0
    for pid in pids:
        times = psutil.Process(pid).cpu_times()
        total += times.user + times.system
    return total


def rss_bytes(pids: list[int]) -> int:
    return sum(psutil.Process(pid).memory_info().rss for pid in pids)
