"""One input packet's life through the workers, from a `perf record` of scheduler and system-call
tracepoints (scripts/trace_hop.py records it; this module reads `perf script` text).

Per input packet (the load tool's `sendmmsg`, one packet each at the rates traced), the time
points, each the first of its kind at or after the previous one:

    send     the load tool enters sendmmsg (its stamp, the latency's start, is just before)
    wake0    the origin worker is woken (sched_waking), if it was asleep (else it was running,
             or runnable: preempted or woken by an earlier packet)
    run0     the origin is on a CPU (its switch-in, or `send` if it was running)
    pipe     the origin enters sendto (the pipe's datagram; cross scenario only)
    run1     the destination is on a CPU after `pipe` (its switch-in, or `pipe` if it ran)
    out      the forwarding worker enters io_uring_enter or sendmmsg: the sink's kernel
             stamp, where the benchmark's latency ends, is taken inside that call

and who held the destination's CPU between `pipe` and `run1` (the origin itself, finishing
its drain and going back to epoll_wait, or another process). A packet whose chain does not
complete within LIMIT_NS (lost, or the trace ended) is skipped and counted.
"""

from __future__ import annotations

import bisect
import re
import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

LIMIT_NS = 50_000_000  # a chain longer than this is not one packet's (the trace ran out)
SETTLED_NS = 150_000  # per_packet's start: no packet sent this recently (its wake-up may be pending)
OUT_CALLS = ("syscalls:sys_enter_io_uring_enter", "syscalls:sys_enter_sendmmsg")

_LINE = re.compile(r"^\s*(?P<comm>.+?)\s+(?P<tid>\d+)\s+\[(?P<cpu>\d+)\]\s+(?P<t>\d+)\.(?P<frac>\d+):\s+"
                   r"(?P<ev>[\w:]+):\s?(?P<rest>.*)$")
_SWITCH = re.compile(r"prev_pid=(?P<prev>\d+) .*prev_state=(?P<state>\S+) ==> next_comm=(?P<comm>.+?) "
                     r"next_pid=(?P<next>\d+)")
_WAKING = re.compile(r"pid=(?P<pid>\d+) ")


@dataclass
class Event:
    t: int  # ns
    cpu: int
    tid: int
    comm: str
    name: str
    rest: str


def parse(lines: Iterable[str]) -> list[Event]:
    """`perf script -F comm,tid,cpu,time,event,trace --ns` lines -> events, in time order."""
    out = []
    for line in lines:
        m = _LINE.match(line)
        if m is None:
            continue
        frac = m["frac"].ljust(9, "0")[:9]
        out.append(Event(int(m["t"]) * 1_000_000_000 + int(frac), int(m["cpu"]), int(m["tid"]),
                         m["comm"].strip(), m["ev"], m["rest"]))
    out.sort(key=lambda e: e.t)
    return out


class CpuTimeline:
    """Who ran on each CPU when, from sched_switch events."""

    def __init__(self, events: list[Event]) -> None:
        self.t: dict[int, list[int]] = defaultdict(list)
        self.who: dict[int, list[tuple[int, str]]] = defaultdict(list)
        for e in events:
            if e.name == "sched:sched_switch":
                m = _SWITCH.search(e.rest)
                if m:
                    self.t[e.cpu].append(e.t)
                    self.who[e.cpu].append((int(m["next"]), m["comm"]))

    def held(self, cpu: int, start: int, end: int) -> dict[tuple[int, str], int]:
        """ns each (tid, comm) ran on `cpu` within [start, end)."""
        times, who = self.t[cpu], self.who[cpu]
        out: dict[tuple[int, str], int] = defaultdict(int)
        i = bisect.bisect_right(times, start) - 1
        while i < len(times) and (i < 0 or times[i] < end):
            if i >= 0:
                a = max(start, times[i])
                b = min(end, times[i + 1]) if i + 1 < len(times) else end
                if b > a:
                    out[who[i]] += b - a
            i += 1
        return out

    def running(self, cpu: int, t: int) -> int | None:
        i = bisect.bisect_right(self.t[cpu], t) - 1
        return self.who[cpu][i][0] if i >= 0 else None


@dataclass
class Chain:
    send: int
    wake0: int | None
    run0: int
    pipe: int | None
    run1: int | None
    out: int
    origin_was_running: bool
    dest_was_running: bool
    dest_wait_held: dict[str, int] = field(default_factory=dict)  # who held its CPU, ns
    origin_wait_held: dict[str, int] = field(default_factory=dict)  # the same, wake0 -> run0
    on_cpu: dict[str, int] = field(default_factory=dict)  # ns each worker ran within its drain segment


class _States:
    """Each worker's state over time: asleep (switched out in S or D, not woken since),
    runnable (woken, or preempted: switched out in R) or running."""

    def __init__(self, events: list[Event], tids: list[int]) -> None:
        self.t: dict[int, list[int]] = {tid: [] for tid in tids}
        self.s: dict[int, list[str]] = {tid: [] for tid in tids}
        for e in events:
            if e.name == "sched:sched_switch":
                m = _SWITCH.search(e.rest)
                if m is None:
                    continue
                prev, nxt = int(m["prev"]), int(m["next"])
                if prev in self.t:
                    self._put(prev, e.t, "runnable" if m["state"].startswith("R") else "asleep")
                if nxt in self.t:
                    self._put(nxt, e.t, "running")
            elif e.name == "sched:sched_waking":
                m = _WAKING.search(e.rest)
                if m and int(m["pid"]) in self.t and (not self.s[int(m["pid"])] or
                                                      self.s[int(m["pid"])][-1] == "asleep"):
                    self._put(int(m["pid"]), e.t, "runnable")

    def _put(self, tid: int, t: int, state: str) -> None:
        self.t[tid].append(t)
        self.s[tid].append(state)

    def at(self, tid: int, t: int) -> str:
        i = bisect.bisect_right(self.t[tid], t) - 1
        return self.s[tid][i] if i >= 0 else "asleep"


class _Times:
    """Sorted times of one kind of event, with 'first at or after t'."""

    def __init__(self, times: Iterable[int]) -> None:
        self.t = sorted(times)

    def first(self, at: int) -> int | None:
        i = bisect.bisect_left(self.t, at)
        return self.t[i] if i < len(self.t) else None


def chains(events: list[Event], load_tid: int, origin: int, dest: int | None) -> tuple[list[Chain], int]:
    """Each input packet's chain (see the module's docstring); `dest` None: same-worker
    fan-out (the origin sends the copies). Returns (chains, packets skipped)."""
    timeline = CpuTimeline(events)
    sends = [e.t for e in events if e.tid == load_tid and e.name == "syscalls:sys_enter_sendmmsg"]
    ins: dict[int, list[int]] = defaultdict(list)  # worker tid -> switch-in times
    wakes: dict[int, list[int]] = defaultdict(list)
    pipes, outs = [], defaultdict(list)
    last_cpu: dict[int, int] = {}
    for e in events:
        if e.name == "sched:sched_switch":
            m = _SWITCH.search(e.rest)
            if m:
                ins[int(m["next"])].append(e.t)
                last_cpu[int(m["next"])] = e.cpu
        elif e.name == "sched:sched_waking":
            m = _WAKING.search(e.rest)
            if m:
                wakes[int(m["pid"])].append(e.t)
        elif e.tid == origin and e.name == "syscalls:sys_enter_sendto":
            pipes.append(e.t)
        elif e.name in OUT_CALLS and e.tid in (origin, dest):
            outs[e.tid].append(e.t)
    state = _States(events, [t for t in (origin, dest) if t])
    in0, in1 = _Times(ins[origin]), _Times(ins[dest] if dest else [])
    wake0, pipe_t = _Times(wakes[origin]), _Times(pipes)
    out_t = _Times(outs[dest if dest else origin])
    cpu_of = {tid: [(e.t, e.cpu) for e in events if e.tid == tid] for tid in (origin, dest) if tid}

    def cpu_at(tid: int, t: int) -> int:
        seq = cpu_of[tid]
        i = bisect.bisect_right(seq, (t, 1 << 30)) - 1
        return seq[max(i, 0)][1] if seq else 0

    result, skipped = [], 0
    for send in sends:
        st0 = state.at(origin, send)
        was0 = st0 == "running"
        w0 = wake0.first(send) if st0 == "asleep" else None
        run0 = send if was0 else in0.first(send if w0 is None else w0)
        if run0 is None:
            skipped += 1
            continue
        pipe = run1 = None
        was1 = False
        held: dict[str, int] = {}
        held0 = {} if was0 else _who(timeline.held(cpu_at(origin, send), w0 or send, run0), origin, dest, load_tid)
        if dest:
            pipe = pipe_t.first(run0)
            if pipe is None:
                skipped += 1
                continue
            cpu1 = cpu_at(dest, pipe)
            was1 = state.at(dest, pipe) == "running"
            run1 = pipe if was1 else in1.first(pipe)
            if run1 is None:
                skipped += 1
                continue
            held = _who(timeline.held(cpu1, pipe, run1), origin, dest, load_tid)
            start_out = run1
        else:
            start_out = run0
        out = out_t.first(start_out)
        if out is None or out - send > LIMIT_NS:
            skipped += 1
            continue
        cpu0 = cpu_at(origin, send)
        on_cpu = {"origin": sum(ns for (tid, _), ns in timeline.held(cpu0, run0, pipe or out).items()
                                if tid == origin)}
        if dest and run1 is not None:
            on_cpu["destination"] = sum(ns for (tid, _), ns in timeline.held(cpu_at(dest, run1), run1, out).items()
                                        if tid == dest)
        result.append(Chain(send, w0, run0, pipe, run1, out, was0, was1, held, held0, on_cpu))
    return result, skipped


def _who(held: dict[tuple[int, str], int], origin: int, dest: int | None, load: int) -> dict[str, int]:
    """ns per process name, the workers and this run's load tool named by role (a neighbour's
    load tool has the same name: other sessions run the same benchmark)."""
    out: dict[str, int] = {}
    for (tid, comm), ns in held.items():
        key = ("origin" if tid == origin else "destination" if tid == dest else "load tool" if tid == load
               else "idle" if tid == 0 else comm)
        out[key] = out.get(key, 0) + ns
    return out


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def segments(chain: Chain) -> dict[str, float]:
    """The chain's segments in µs (absent ones left out)."""
    seg = {}
    if chain.wake0 is not None:
        seg["load send to origin woken"] = (chain.wake0 - chain.send) / 1e3
    seg["origin wake-up"] = (chain.run0 - chain.send) / 1e3
    if chain.pipe is not None and chain.run1 is not None:
        seg["origin drain to pipe send"] = (chain.pipe - chain.run0) / 1e3
        seg["  of which origin on cpu"] = chain.on_cpu.get("origin", 0) / 1e3
        seg["destination wait for cpu"] = (chain.run1 - chain.pipe) / 1e3
        seg["destination drain to send"] = (chain.out - chain.run1) / 1e3
        seg["  of which destination on cpu"] = chain.on_cpu.get("destination", 0) / 1e3
    else:
        seg["drain to send"] = (chain.out - chain.run0) / 1e3
        seg["  of which origin on cpu"] = chain.on_cpu.get("origin", 0) / 1e3
    seg["total (send to out)"] = (chain.out - chain.send) / 1e3
    return seg


def summary(found: list[Chain]) -> dict[str, object]:
    """Median, p90 and mean per segment; how often each worker was already running; who held
    the destination's CPU while it waited (µs per packet, mean, by process)."""
    per: dict[str, list[float]] = defaultdict(list)
    for c in found:
        for name, us in segments(c).items():
            per[name].append(us)
    n = max(len(found), 1)

    def mean_held(which: str) -> dict[str, float]:
        held: dict[str, float] = defaultdict(float)
        for c in found:
            for who, ns in getattr(c, which).items():
                held[who] += ns / 1e3 / n
        return dict(sorted(held.items(), key=lambda kv: -kv[1]))

    own = ("origin", "destination", "load tool")

    def own_us(which: str) -> dict[str, float]:
        """Per packet, the part of a wait that this run's own processes held the CPU (a quiet
        machine's wait; the rest was neighbours'): p50, p90, mean in µs."""
        v = [sum(ns for who, ns in getattr(c, which).items() if who in own) / 1e3 for c in found]
        return {"p50": _pct(v, 0.5), "p90": _pct(v, 0.9), "mean": statistics.fmean(v) if v else float("nan")}

    return {
        "packets": len(found),
        "origin_wait_own_us": own_us("origin_wait_held"),
        "dest_wait_own_us": own_us("dest_wait_held"),
        "segments_us": {name: {"p50": _pct(v, 0.5), "p90": _pct(v, 0.9), "mean": statistics.fmean(v)}
                        for name, v in per.items()},
        "origin_already_running": sum(c.origin_was_running for c in found) / n,
        "dest_already_running": sum(c.dest_was_running for c in found) / n,
        "dest_wait_held_us_per_packet": mean_held("dest_wait_held"),
        "origin_wait_held_us_per_packet": mean_held("origin_wait_held"),
    }


_ARG = re.compile(r"(\w+): 0x([0-9a-f]+)")


def _arg(e: Event, name: str) -> int:
    return next((int(v, 16) for k, v in _ARG.findall(e.rest) if k == name), 0)


def per_packet(events: list[Event], load_tid: int, origin: int, dest: int | None, copies: int,
               size: int, window: tuple[int, int] | None = None) -> list[dict[str, float]]:
    """Each input packet's times matched first in, first out by counting (the load tool's
    sendmmsg `vlen`, the pipe datagram's length / (2 + size), the forwarding worker's
    io_uring_enter `to_submit` or sendmmsg `vlen` / copies), from a moment both workers were
    asleep (nothing in flight). Unlike `chains`, right when packets queue (latency longer than
    the gap between packets). Per packet, µs: `to pipe` (send to the origin's pipe datagram),
    `pipe to out` and `total` (send to the worker's call that sends its first copy); only the
    packets sent within `window` (ns) if given, counting from before it all the same."""
    state = _States(events, [t for t in (origin, dest) if t])
    load_sends = _Times(e.t for e in events if e.tid == load_tid and e.name == "syscalls:sys_enter_sendmmsg")
    start = None
    for e in events:  # both asleep, and the last packet sent long enough before to be through
        if (e.name == "sched:sched_switch" and e.tid in (origin, dest) and state.at(origin, e.t) == "asleep"
                and (not dest or state.at(dest, e.t) == "asleep")):
            i = bisect.bisect_left(load_sends.t, e.t)
            if i == 0 or e.t - load_sends.t[i - 1] >= SETTLED_NS:
                start = e.t
                break
    if start is None:
        return []
    sends: list[int] = []
    pipes: list[int] = []
    outs: list[tuple[int, int]] = []  # (time, copies sent by the call)
    sender = dest if dest else origin
    for e in events:
        if e.t < start:
            continue
        if e.tid == load_tid and e.name == "syscalls:sys_enter_sendmmsg":
            sends += [e.t] * _arg(e, "vlen")
        elif dest and e.tid == origin and e.name == "syscalls:sys_enter_sendto":
            pipes += [e.t] * round((_arg(e, "len") - 4) / (2 + size))
        elif e.tid == sender and e.name == "syscalls:sys_enter_io_uring_enter":
            outs.append((e.t, _arg(e, "to_submit")))
        elif e.tid == sender and e.name == "syscalls:sys_enter_sendmmsg":
            outs.append((e.t, _arg(e, "vlen")))
    firsts: list[int] = []  # per packet, the call that sent its first copy
    done = 0
    for t, n in outs:
        while len(firsts) * copies < done + n:
            firsts.append(t)
        done += n
    out = []
    for i, send in enumerate(sends):
        if i >= len(firsts) or (dest and i >= len(pipes)):
            break
        if window and not window[0] <= send < window[1]:
            continue
        row = {"total": (firsts[i] - send) / 1e3}
        if dest:
            row["to pipe"] = (pipes[i] - send) / 1e3
            row["pipe to out"] = (firsts[i] - pipes[i]) / 1e3
        out.append(row)
    return out


def per_packet_summary(rows: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """p50 / p90 / mean of each per-packet figure."""
    keys = rows[0].keys() if rows else []
    return {k: {"p50": _pct([r[k] for r in rows], 0.5), "p90": _pct([r[k] for r in rows], 0.9),
                "mean": statistics.fmean(r[k] for r in rows)} for k in keys}
