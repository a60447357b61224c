"""Trials and the saturation search: the highest input rate a forwarder holds with < 0.1% loss.

A trial is one bounded load run at a fixed rate: warm-up, then a measurement window over
which the forwarder's CPU time (schedstat nanoseconds, every thread) and every packet's fate
are counted.
The search climbs from a low rate, jumps to what the measured CPU cost per output packet
predicts one core can carry, then bisects between the highest rate held and the lowest
lost; it stops early when the load tool, not the forwarder, is the limit.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from . import cpus
from .load import Timing, Topology, run_load
from .netstat import udp_drops

LOSS_LIMIT = 0.001  # < 0.1% loss: the definition of "held"


@dataclass
class Trial:
    rate: float  # requested packets/s of each full-rate stream
    input_pps: float  # packets/s the load tool really sent, all streams
    out_pps: float  # checked packets/s that reached the sinks
    loss: float
    cpu_us_per_out: float | None
    cpu_percent: float
    latency_p50_us: float
    latency_p99_us: float
    drops_input: int  # dropped on the forwarder's input socket(s): it fell behind
    drops_sink: int  # dropped on our sink sockets: the tools fell behind
    errors: int  # wrong SSRC/PT/seq/ts, misrouted or unexpected packets
    generator_limited: bool
    report: dict[str, Any] = field(repr=False)
    # The window's CPU seconds per thread name (cpus.by_thread_name): the worker's main
    # thread vs ZeroMQ's I/O threads, e.g.; in the JSON, not the table.
    cpu_threads: dict[str, float] = field(default_factory=dict)
    loadavg: float = 0.0  # the machine's 1-minute load average at the trial's end
    # Per forwarder process (the order of `pids`), its main thread's run-queue wait per
    # slice over the window, µs (cpus.wait_us_per_slice): how long a wake-up waited for the
    # CPU; in the JSON, not the table.
    wait_us_per_slice: list[float | None] = field(default_factory=list)

    @property
    def held(self) -> bool:
        return self.loss < LOSS_LIMIT and self.drops_sink == 0

    def brief(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("report")
        data["held"] = self.held
        data["received_total"] = self.report["received_total"]
        data["expected_total"] = self.report["expected_total"]
        return data


@dataclass
class Context:
    rtpload: Any  # Path of the built load tool
    tools_cpu: int
    timing: Timing


async def settle(pids: list[int], limit: float = 3.0, idle_share: float = 0.05) -> float:
    """Wait (at most `limit` s) until the forwarder is idle: after an overloaded trial it may
    still be working through a backlog that would inflate the next trial's CPU and latency.
    Returns the seconds waited."""
    started = time.monotonic()
    last = cpus.cpu_seconds(pids)
    while time.monotonic() - started < limit:
        await asyncio.sleep(0.1)
        now = cpus.cpu_seconds(pids)
        if now - last < 0.1 * idle_share:
            break
        last = now
    return time.monotonic() - started


async def run_trial(ctx: Context, topo: Topology, input_ports: list[int], pids: list[int], rate: float) -> Trial:
    await settle(pids)
    marks: dict[str, tuple[float, dict[tuple[int, int, str], int]]] = {}
    waits: dict[str, list[tuple[int, int]]] = {}

    def sample(name: str) -> Callable[[], None]:
        def read() -> None:
            marks[name] = (time.monotonic(), cpus.thread_cpu_ns(pids))
            waits[name] = cpus.main_thread_waits(pids)
        return read

    in0, sink0 = udp_drops(input_ports), udp_drops(topo.sink_ports)
    report = await run_load(ctx.rtpload, topo, rate, ctx.timing, ctx.tools_cpu, sample("start"), sample("end"))
    in1, sink1 = udp_drops(input_ports), udp_drops(topo.sink_ports)
    window = report["window_s"] or 1e-9
    received = report["received_window"]
    expected = report["expected_window"]
    cpu = 0.0
    threads: dict[str, float] = {}
    if "start" in marks and "end" in marks:
        delta = cpus.cpu_delta(marks["start"][1], marks["end"][1])
        cpu = sum(delta.values()) / 1e9
        threads = cpus.by_thread_name(delta)
        wall = marks["end"][0] - marks["start"][0]
    else:
        wall = window
    requested = sum(max(1, round(rate * s.rate_share)) for s in topo.streams)
    errors = sum(report.get(k, 0) for k in ("seq_errors", "ts_errors", "pt_errors", "misrouted", "unexpected",
                                            "srtp_errors"))
    return Trial(
        rate=rate,
        input_pps=report["sent_window"] / window,
        out_pps=received / window,
        loss=(1 - received / expected) if expected else 1.0,
        cpu_us_per_out=(cpu * 1e6 / received) if received else None,
        cpu_percent=100 * cpu / wall if wall > 0 else 0.0,
        latency_p50_us=report["latency_us_p50"],
        latency_p99_us=report["latency_us_p99"],
        drops_input=in1 - in0,
        drops_sink=sink1 - sink0,
        errors=errors,
        generator_limited=report["sent_window"] / window < 0.97 * requested,
        report=report,
        cpu_threads=threads,
        loadavg=os.getloadavg()[0],
        wait_us_per_slice=(cpus.wait_us_per_slice(waits["start"], waits["end"])
                           if "start" in waits and "end" in waits else []),
    )


@dataclass
class Search:
    trials: list[Trial]
    best: Trial | None
    limit: str  # what ended the climb: forwarder, generator, sink, or trials (ran out)
    half_rate: Trial | None = None  # the latency trial at half the saturation rate
    # The trial(s) at the scenario's common rate (run.py: every forwarder of a scenario, after
    # all its searches, at one rate all of them held); one retry as in the search, last counts.
    same_rate: list[Trial] = field(default_factory=list)

    @property
    def same(self) -> Trial | None:
        return self.same_rate[-1] if self.same_rate else None

    def to_json(self) -> dict[str, Any]:
        return {
            "limit": self.limit,
            "best": self.best.brief() if self.best else None,
            "half_rate": self.half_rate.brief() if self.half_rate else None,
            "same_rate": [t.brief() for t in self.same_rate],
            "trials": [t.brief() for t in self.trials],
        }


def starved(result: Trial) -> bool:
    """Lost without the forwarder's input socket (or our sinks) overflowing: on a shared
    machine the forwarder was starved by a neighbour, or a backlog was still draining."""
    return not result.held and not result.drops_input and not result.drops_sink


async def trial_retried(
    trial: Callable[[float], Awaitable[Trial]],
    rate: float,
    on_trial: Callable[[Trial], None] | None = None,
) -> list[Trial]:
    """One trial at `rate`, repeated once if its window was starved (`starved`), so one noisy
    window does not decide. Returns the trials run; the last one counts."""
    results: list[Trial] = []
    for _ in range(2):
        result = await trial(rate)
        results.append(result)
        if on_trial:
            on_trial(result)
        if not starved(result):
            break
    return results


async def saturate(
    trial: Callable[[float], Awaitable[Trial]],
    start_rate: float,
    fanout: float,
    max_trials: int,
    precision: float = 0.08,
    on_trial: Callable[[Trial], None] | None = None,
) -> Search:
    """Find the highest rate held with < 0.1% loss; at most `max_trials` trials."""
    trials: list[Trial] = []
    lo: Trial | None = None
    hi_rate: float | None = None
    rate = start_rate
    limit = "trials"
    for _ in range(max_trials):
        # A starved window (see `starved`) is retried once, so one noisy window does not
        # end the climb.
        tried = await trial_retried(trial, rate, on_trial)
        trials += tried
        result = tried[-1]
        if result.drops_sink:
            limit = "sink"
            break
        if result.held:
            if lo is None or result.rate > lo.rate:
                lo = result
            if result.generator_limited:
                limit = "generator"
                break
        else:
            hi_rate = rate if hi_rate is None else min(hi_rate, rate)
        if lo is not None and hi_rate is not None:
            if hi_rate / lo.rate <= 1 + precision:
                limit = "forwarder"
                break
            rate = math.sqrt(lo.rate * hi_rate)
        elif lo is not None:
            # What one core would carry at the measured cost per output (minus slack), but
            # never more than 4x in one step: the cost is inflated at low rates.
            guess = rate * 1.5
            if lo.cpu_us_per_out:
                guess = 0.9 * 1e6 / (lo.cpu_us_per_out * fanout)
            rate = min(max(guess, rate * 1.25), rate * 4)
        else:
            rate = rate / 2
    else:
        if lo is not None and hi_rate is not None:
            limit = "forwarder"
    return Search(trials=trials, best=lo, limit=limit)
