"""Which CPU runs what: the forwarder under test on one core, everything else on another.

The machine this was written for has two cores. The forwarder (a Tureen worker, or the C
baseline) gets `forwarder_cpu`; the load tool, the supervisor and this harness share
`tools_cpu`, so the tools never steal the measured core.
"""

from __future__ import annotations

import contextlib
import functools
import os

import psutil


def available() -> list[int]:
    return sorted(os.sched_getaffinity(0))


@functools.cache
def layout() -> tuple[int, int]:
    """(forwarder_cpu, tools_cpu). With one CPU both are the same (and figures are rough).

    Decided once per process, from the CPUs it may use at the first call: the harness then
    pins itself to the tools' core (benchmarks.run's main), after which its own affinity is
    that one core, and a later call that read it afresh would answer (tools, tools). Until
    this was cached, `benchmarks.run` asked again in `Bench` and so ran every forwarder,
    Tureen's workers and C's alike, on the tools' core beside the busy-polling load tool
    (docs/benchmarks.md, "Issue 17, round three: the pipe hop traced")."""
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


def thread_cpu_ns(pids: list[int]) -> dict[tuple[int, int, str], int]:
    """CPU time of every thread of these processes, in nanoseconds, keyed by (pid, tid,
    thread name): the first field of /proc/<pid>/task/<tid>/schedstat (the scheduler's
    sum_exec_runtime, exact, where psutil's user+system comes in 10 ms ticks: a 0.5 s window
    at a light rate was ±5-10% of rounding alone). A thread that ends between two reads is
    missing from the later one; one that starts counts from zero."""
    out: dict[tuple[int, int, str], int] = {}
    for pid in pids:
        base = f"/proc/{pid}/task"
        try:
            tids = os.listdir(base)
        except FileNotFoundError:
            continue
        for tid in tids:
            try:
                with open(f"{base}/{tid}/schedstat") as f:
                    ns = int(f.read().split()[0])
                with open(f"{base}/{tid}/comm") as f:
                    name = f.read().strip()
            except (FileNotFoundError, ProcessLookupError, ValueError, IndexError):
                continue
            out[(pid, int(tid), name)] = ns
    return out


def main_thread_waits(pids: list[int]) -> list[tuple[int, int]]:
    """Per process, its main thread's (run-queue wait ns, slices run) so far: fields 2 and 3
    of /proc/<pid>/schedstat. Over a window, wait / slices is how long the thread waited for
    the CPU each time it became runnable (a worker's main thread wakes per packet batch):
    the scheduler's share of a hop's latency. (0, 0) for a process that is gone."""
    out = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/schedstat") as f:
                _, wait, slices = (int(x) for x in f.read().split()[:3])
        except (FileNotFoundError, ProcessLookupError, ValueError):
            wait = slices = 0
        out.append((wait, slices))
    return out


def wait_us_per_slice(before: list[tuple[int, int]], after: list[tuple[int, int]]) -> list[float | None]:
    """Per process, µs of run-queue wait per slice between two main_thread_waits reads."""
    return [
        (w1 - w0) / 1e3 / (n1 - n0) if n1 > n0 else None
        for (w0, n0), (w1, n1) in zip(before, after, strict=True)
    ]


def cpu_delta(before: dict[tuple[int, int, str], int],
              after: dict[tuple[int, int, str], int]) -> dict[tuple[int, int, str], int]:
    """Per thread, the CPU nanoseconds spent between two `thread_cpu_ns` reads."""
    return {key: ns - before.get(key, 0) for key, ns in after.items()}


def by_thread_name(delta: dict[tuple[int, int, str], int]) -> dict[str, float]:
    """Seconds per thread name (a worker's main thread is named after its process, ZeroMQ's
    I/O threads `ZMQbg/IO/0`...), summed over the processes: where a window's CPU went."""
    out: dict[str, float] = {}
    for (_, _, name), ns in delta.items():
        out[name] = out.get(name, 0.0) + ns / 1e9
    return out


def cpu_seconds(pids: list[int]) -> float:
    """CPU time of these processes (all their live threads), in seconds, from schedstat."""
    return sum(thread_cpu_ns(pids).values()) / 1e9


def rss_bytes(pids: list[int]) -> int:
    return sum(psutil.Process(pid).memory_info().rss for pid in pids)
