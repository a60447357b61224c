"""`python -m benchmarks.run [--quick]`: every scenario, the C baseline, table, JSON, plot.

Scenarios (issue 7):
  fanout N   one producer -> N consumers on one worker (Tureen) / one cforward (C)
  srtp-gcm N / srtp-cm N   the same over WebRTC: every transport connected for real (ICE +
             DTLS by the harness as the browser), SRTP at rate; baseline C + libsrtp
  cross N    producer on one worker, its N consumers on another (the pipe's cost)
  meeting P  P peers each sending audio + video and receiving everyone else, on 2 workers;
             baseline: one cforward with an input socket per peer and the same rewrite
  hosts N    one producer on host A, N consumers on hosts B and C (network namespaces, needs
             root; skipped with the reason otherwise), against all N on A, at one fixed rate:
             output pps, loss, added latency per host hop, bytes on A's link (benchmarks/hosts.py)
  mediasoup-v2 rows (fanout N only; with --mediasoup-v2 DIR or $TUREEN_BENCH_MEDIASOUP_V2):
             a built mediasoup 2.6.19, one worker pinned like Tureen's, plain RTP transports
             (v2 has no SRTP on them), the same load, sink and figures (benchmarks/mediasoup_v2.py)

Tureen runs with either fan-out core (`tureen serve --fanout`, docs/benchmarks.md): rows
`tureen` are the native core (workers/_native.c), rows `tureen-py` the pure-Python SendBatch,
both against the same C rows. --cores picks which run; beside the native core the Python one
runs only at the sizes of --python-fanout / --python-srtp (quick: plain and SRTP N=100; full:
plain N=1,100,500 and SRTP N=100) to keep the run short.
Each server's workers must report the core asked for (server.info), or the run stops.
A scenario's forwarders (C and its Tureen rows) stay up until all its searches are done; then
each runs one trial at one common input rate (0.8 x the lowest rate held among them): the
table's `x C cpu @same`, next to `x C cpu` at each one's own held rate.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tureen.shared.client import TureenClient

from . import cpus, mediasoup_v2, report, scenarios
from . import hosts as hosts_scenario
from .baseline import CForwarder
from .ctools import Tools, build_tools
from .load import Timing
from .progress import Progress
from .report import Row
from .scenarios import Built
from .search import Context, Search, Trial, run_trial, saturate, trial_retried
from .srtp import PROFILE_NAMES
from .tureen_server import TureenServer, worker_cores
from .webrtc import webrtc_fanout

OUT_DIR = Path(__file__).resolve().parent / "out"
START_OUT_PPS = 20_000  # first trial: output packets/s any forwarder here holds easily
CORES = ("native", "python")  # `tureen serve --fanout` values the bench compares
LABELS = {"native": "tureen", "python": "tureen-py"}  # the rows' `fwd` column
# After a scenario's searches, C and every Tureen row of it run one more trial at this share
# of the lowest rate any of them held: the same input rate for all (the `x C cpu @same` column).
SAME_RATE_SHARE = 0.8

TrialAt = Callable[[float], Awaitable[Trial]]  # one trial of a live forwarder at a rate


@dataclass
class Plan:
    fanout: list[int]
    cross: list[int]
    meeting: list[int]
    timing: Timing
    max_trials: int
    srtp: list[int]  # fan-out sizes of the SRTP (WebRTC) scenario
    profiles: list[str]  # 'gcm', 'cm'
    cores: list[str] = field(default_factory=lambda: list(CORES))  # fan-out cores to run
    python_fanout: list[int] = field(default_factory=list)  # sizes with a tureen-py row too
    python_srtp: list[int] = field(default_factory=list)
    hosts: list[int] = field(default_factory=list)  # consumer counts of the hosts scenario
    hosts_rate: float = hosts_scenario.DEFAULT_RATE
    mediasoup_v2: Path | None = None  # a built mediasoup 2.6.19: mediasoup-v2 rows at the fan-out sizes
    mediasoup_v2_skipped: str | None = None  # why not, and how to build it (printed once)

    def sizes(self, core: str, srtp: bool = False) -> list[int]:
        """The fan-out sizes (plain, or SRTP) at which Tureen runs with `core`. Alone, the
        Python core takes the native rows' place; beside it, only the python_* sizes."""
        if core not in self.cores:
            return []
        if core == "python" and "native" in self.cores:
            return self.python_srtp if srtp else self.python_fanout
        return self.srtp if srtp else self.fanout

    @property
    def main_core(self) -> str:
        """The core of the cross and meeting rows: native unless only python runs."""
        return "native" if "native" in self.cores else "python"

    def v2_sizes(self) -> list[int]:
        """The fan-out sizes with a mediasoup-v2 row (plain RTP only)."""
        return list(self.fanout) if self.mediasoup_v2 else []

    def c_sizes(self, srtp: bool = False) -> list[int]:
        v2 = set() if srtp else set(self.v2_sizes())
        return sorted({n for core in self.cores for n in self.sizes(core, srtp)} | v2)

    @property
    def searches(self) -> int:
        plain = len(self.c_sizes()) + sum(len(self.sizes(core)) for core in self.cores) + len(self.v2_sizes())
        srtp = len(self.c_sizes(True)) + sum(len(self.sizes(core, True)) for core in self.cores)
        return plain + len(self.cross) + 2 * len(self.meeting) + srtp * len(self.profiles)


QUICK = Plan(fanout=[1, 10, 100], cross=[10], meeting=[5], timing=Timing(0.2, 0.5, 0.1), max_trials=4,
             srtp=[1, 100], profiles=["gcm", "cm"], python_fanout=[100], python_srtp=[100], hosts=[100])
FULL = Plan(fanout=[1, 10, 100, 500], cross=[10, 100], meeting=[5, 10, 25],
            timing=Timing(0.5, 1.5, 0.15), max_trials=7, srtp=[1, 10, 100, 500], profiles=["gcm", "cm"],
            python_fanout=[1, 100, 500], python_srtp=[100], hosts=[100])


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def _names(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


class Bench:
    def __init__(self, plan: Plan, tools: Tools, out_dir: Path) -> None:
        self.plan = plan
        self.tools = tools
        self.out_dir = out_dir
        self.forwarder_cpu, self.tools_cpu = cpus.layout()
        self.ctx = Context(tools.rtpload, self.tools_cpu, plan.timing)
        self.progress = Progress(plan.searches)
        self.rows: list[Row] = []
        self.hosts: list[dict[str, Any]] = []  # the hosts scenario's results (not a search row)

    # ------------------------------------------------------------------ helpers

    def _on_trial(self, label: str) -> Callable[[Trial], None]:
        def show(t: Trial) -> None:
            self.progress.show(
                f"{label}: {t.input_pps:,.0f} in -> {t.out_pps:,.0f} out/s, loss {100 * t.loss:.2f}%"
                + (f", {t.cpu_us_per_out:.2f} µs/out" if t.cpu_us_per_out else "")
            )
        return show

    def _trial_at(self, built: Built, pids: list[int]) -> TrialAt:
        def trial(rate: float) -> Awaitable[Trial]:
            return run_trial(self.ctx, built.topology, built.input_ports, pids, rate)
        return trial

    async def _search(self, label: str, built: Built, pids: list[int]) -> Search:
        topo = built.topology
        trial = self._trial_at(built, pids)

        self.progress.show(f"{label}: starting")
        start = max(5.0, START_OUT_PPS / topo.outputs_per_rate)
        search = await saturate(trial, start, topo.outputs_per_rate, self.plan.max_trials,
                                on_trial=self._on_trial(label))
        if search.best is not None:  # the latency figure: at half the saturation rate
            search.half_rate = await trial(search.best.rate / 2)
        self.progress.step(f"{label}: done")
        return search

    async def _same_rate(self, scenario: str, live: list[tuple[Row, TrialAt]]) -> None:
        """One trial of each live forwarder of `scenario` (the C row first) at one common input
        rate: SAME_RATE_SHARE x the lowest rate any of them held, so that all hold it. Their
        µs/out then compare at the same rate (per-wake-up costs spread alike), which the
        figures at each one's own held rate do not (report.Row.same_rate)."""
        live = [(row, trial) for row, trial in live if row.search.best is not None]
        if len(live) < 2 or live[0][0].baseline is not None:  # needs the C row and one more
            return
        rate = SAME_RATE_SHARE * min(row.search.best.rate for row, _ in live)  # type: ignore[union-attr]
        for row, trial in live:
            row.search.same_rate = await trial_retried(trial, rate, self._on_trial(f"{scenario} {row.target} @same"))

    async def _versus_rate(self, scenario: str, tureen: tuple[Row, TrialAt], v2: tuple[Row, TrialAt]) -> None:
        """Tureen's row and the mediasoup-v2 row, one trial each at one common rate of their
        own (SAME_RATE_SHARE x the lower of their two held rates): the `vs mediasoup v2` line's
        same-rate figure, kept in the v2 row's extra (`vs_tureen_same`). Not the C row's common
        rate, which v2 may not hold, and which v2 does not lower for the other rows."""
        (t_row, t_trial), (v_row, v_trial) = tureen, v2
        if t_row.search.best is None or v_row.search.best is None:
            return
        rate = SAME_RATE_SHARE * min(t_row.search.best.rate, v_row.search.best.rate)
        mine = (await trial_retried(t_trial, rate, self._on_trial(f"{scenario} {t_row.target} @v2")))[-1]
        theirs = (await trial_retried(v_trial, rate, self._on_trial(f"{scenario} {v_row.target} @v2")))[-1]
        v_row.extra["vs_tureen_same"] = {"tureen": mine.brief(), "mediasoup_v2": theirs.brief()}

    async def _with_tureen(self, stack: contextlib.AsyncExitStack, workers: int, core: str,
                           body: Callable[[TureenServer, TureenClient], Awaitable[Any]]) -> Any:
        """A fresh `tureen serve --fanout core`, stopped when `stack` closes; wait_ready refuses
        it (CoreMismatch) unless every worker reports running `core`."""
        server = TureenServer(workers, self.out_dir / "logs", self.forwarder_cpu, self.tools_cpu, fanout=core)
        stack.callback(server.stop)
        client = await stack.enter_async_context(TureenClient(server.endpoint, timeout=30.0))
        await server.wait_ready(client)
        return await body(server, client)

    async def _tureen_row(self, stack: contextlib.AsyncExitStack, scenario: str, server: TureenServer,
                          client: TureenClient, build: Callable[[], Awaitable[Built]]) -> tuple[Row, TrialAt]:
        """The row's search; the room and its sockets stay until `stack` closes (the same-rate
        trial comes after the scenario's other searches). Returns the row and its trial."""
        rss0 = cpus.rss_bytes(server.worker_pids)
        built = await build()
        stack.callback(built.close_sockets)

        async def close_room() -> None:
            with contextlib.suppress(Exception):
                await client.close_room("bench")

        stack.push_async_callback(close_room)  # at the stack's close, before the sockets
        await asyncio.sleep(0.2)  # let the setup's control traffic settle before measuring
        server.repin()
        rss1 = cpus.rss_bytes(server.worker_pids)
        label = LABELS[server.fanout or "native"]
        search = await self._search(f"{scenario} {label}", built, server.worker_pids)
        loads: list[Any] = []
        cores: list[str | None] = []
        with contextlib.suppress(Exception):  # the workers' last load reports, for the findings
            info = await client.server_info()
            loads = [w.get("load") for w in info["workers"]]
            cores = worker_cores(info)
        counters: list[Any] = []
        with contextlib.suppress(Exception):  # each core's own counters (worker.dump), and
            for i in range(server.workers):  # the copies sent, read at the same moment
                dump = await client.dump_worker(i)
                counters.append({**(dump.get("fanout") or {}), "rtpOut": dump["counters"]["rtpOut"]})
        if cores and cores != server.cores:
            # Checked at start (wait_ready); a worker that restarted mid-search and came back
            # with another core would show here: the row says so rather than pass for `label`.
            label += f" (ran {'/'.join(str(c) for c in cores)}!)"
        row = Row(scenario, label, built.consumers, search,
                  kib_per_consumer=(rss1 - rss0) / 1024 / built.consumers)
        row.extra["workers"] = built.workers_used
        row.extra["fanout_asked"] = server.fanout
        row.extra["fanout_cores"] = cores or server.cores
        row.extra["fanout_counters"] = counters
        calls = sum(c.get("sendmmsgCalls", 0) for c in counters)
        if calls:  # over the whole search: how well the core's flushes batch
            row.extra["copies_per_sendmmsg"] = sum(c["rtpOut"] for c in counters) / calls
        row.extra["worker_loads"] = loads
        return row, self._trial_at(built, server.worker_pids)

    # ------------------------------------------------------------------ scenarios

    async def c_fanout(self, stack: contextlib.AsyncExitStack, n: int,
                       profile: str | None = None) -> tuple[Row, TrialAt]:
        """The C baseline at fan-out n: plain, or with SRTP `profile` (the c+srtp rows). It
        runs until `stack` closes (its counters land in the row's extra then)."""
        scenario, fwd_name = (f"fanout N={n}", "c") if profile is None else (f"srtp-{profile} N={n}", "c+srtp")
        fwd = CForwarder(self.tools.cforward, n, self.forwarder_cpu, srtp=profile)
        extra: dict[str, Any] = {}
        stack.callback(lambda: extra.__setitem__("cforward", fwd.close()))
        search = await self._search(f"{scenario} {fwd_name}", fwd.built, fwd.pids)
        return Row(scenario, fwd_name, n, search, extra=extra), self._trial_at(fwd.built, fwd.pids)

    async def c_meeting(self, stack: contextlib.AsyncExitStack, p: int) -> tuple[Row, TrialAt]:
        """The C baseline of the meeting scenario (baseline.CForwarder.meeting), up until
        `stack` closes."""
        scenario = f"meeting P={p}"
        fwd = CForwarder.meeting(self.tools.cforward, p, self.forwarder_cpu)
        extra: dict[str, Any] = {}
        stack.callback(lambda: extra.__setitem__("cforward", fwd.close()))
        search = await self._search(f"{scenario} c", fwd.built, fwd.pids)
        return (Row(scenario, "c", fwd.built.consumers, search, extra=extra),
                self._trial_at(fwd.built, fwd.pids))

    async def tureen_srtp_fanout(self, stack: contextlib.AsyncExitStack, n: int, profile: str,
                                 core: str) -> tuple[Row, TrialAt]:
        async def body(server: TureenServer, client: TureenClient) -> tuple[Row, TrialAt]:
            return await self._tureen_row(stack, f"srtp-{profile} N={n}", server, client,
                                          lambda: webrtc_fanout(client, "bench", n, profile))
        return await self._with_tureen(stack, 1, core, body)

    async def tureen_fanout(self, stack: contextlib.AsyncExitStack, n: int, core: str) -> tuple[Row, TrialAt]:
        async def body(server: TureenServer, client: TureenClient) -> tuple[Row, TrialAt]:
            return await self._tureen_row(stack, f"fanout N={n}", server, client,
                                          lambda: scenarios.fanout(client, "bench", n))
        return await self._with_tureen(stack, 1, core, body)

    async def mediasoup_v2_fanout(self, stack: contextlib.AsyncExitStack, n: int) -> tuple[Row, TrialAt]:
        """A mediasoup-v2 row: a fresh mediasoup 2.6.19 server (one worker, pinned as Tureen's),
        fan-out n over plain transports, searched like the Tureen rows; up until `stack` closes."""
        assert self.plan.mediasoup_v2 is not None
        server = mediasoup_v2.MediasoupV2(self.plan.mediasoup_v2, self.out_dir / "logs",
                                          self.forwarder_cpu, self.tools_cpu)
        stack.push_async_callback(server.stop)
        await server.start()
        rss0 = cpus.rss_bytes(server.worker_pids)
        built = await server.fanout(n)
        stack.callback(built.close_sockets)
        await asyncio.sleep(0.2)  # let the setup's channel traffic settle before measuring
        server.repin()
        rss1 = cpus.rss_bytes(server.worker_pids)
        scenario = f"fanout N={n}"
        search = await self._search(f"{scenario} {mediasoup_v2.LABEL}", built, server.worker_pids)
        row = Row(scenario, mediasoup_v2.LABEL, n, search, kib_per_consumer=(rss1 - rss0) / 1024 / n)
        row.extra["mediasoup_version"] = server.version
        row.extra["mediasoup_dir"] = str(server.folder)
        return row, self._trial_at(built, server.worker_pids)

    async def tureen_cross(self, n: int) -> Row:
        async def body(server: TureenServer, client: TureenClient) -> tuple[Row, TrialAt]:
            return await self._tureen_row(
                stack, f"cross N={n}", server, client,
                lambda: scenarios.fanout(client, "bench", n, away_from_producer=True))
        async with contextlib.AsyncExitStack() as stack:
            row, _ = await self._with_tureen(stack, 2, self.plan.main_core, body)
        return row

    async def meeting(self, p: int) -> list[Row]:
        """C's meeting row, then Tureen's (2 workers), then both at one common rate."""
        async def body(server: TureenServer, client: TureenClient) -> tuple[Row, TrialAt]:
            return await self._tureen_row(stack, f"meeting P={p}", server, client,
                                          lambda: scenarios.meeting(client, "bench", p))
        async with contextlib.AsyncExitStack() as stack:
            base, base_trial = await self.c_meeting(stack, p)
            row, trial = await self._with_tureen(stack, 2, self.plan.main_core, body)
            row.baseline = base
            await self._same_rate(base.scenario, [(base, base_trial), (row, trial)])
        return [base, row]

    async def run(self) -> list[Row]:
        plan = self.plan
        c_rows: dict[int, Row] = {}
        t_rows: dict[int, Row] = {}  # the main core's fan-out rows (the cross rows' reference)
        for n in plan.c_sizes():
            # Every forwarder of the scenario stays up (idle) until its same-rate trials.
            async with contextlib.AsyncExitStack() as stack:
                base, base_trial = await self.c_fanout(stack, n)
                c_rows[n] = base
                self.rows.append(base)
                live = [(base, base_trial)]
                for core in plan.cores:
                    if n in plan.sizes(core):
                        row, trial = await self.tureen_fanout(stack, n, core)
                        row.baseline = base
                        self.rows.append(row)
                        live.append((row, trial))
                        if core == plan.main_core:
                            t_rows[n] = row
                v2 = None
                if n in plan.v2_sizes():
                    row, trial = await self.mediasoup_v2_fanout(stack, n)
                    row.baseline = base
                    self.rows.append(row)
                    v2 = (row, trial)
                # The common rate of C and Tureen, as without the v2 row (which would lower it).
                await self._same_rate(base.scenario, live)
                if v2 is not None and n in t_rows:
                    mine = next(t for r, t in live if r is t_rows[n])
                    await self._versus_rate(base.scenario, (t_rows[n], mine), v2)
        for n in plan.cross:
            row = await self.tureen_cross(n)
            row.baseline = c_rows.get(n)
            single = t_rows.get(n)
            if single and single.search.best and row.search.best:
                cross_us = row.search.best.cpu_us_per_out
                single_us = single.search.best.cpu_us_per_out
                if cross_us and single_us:
                    # The pipe's cost per input packet, in units of one consumer's output.
                    pipe_us = (cross_us - single_us) * n
                    row.extra["pipe_us_per_input"] = pipe_us
                    row.extra["pipe_in_consumers"] = pipe_us / single_us
            self.rows.append(row)
        for p in plan.meeting:
            self.rows += await self.meeting(p)
        for n in plan.hosts:
            # A fixed-rate comparison, not a saturation search: a window of at least 1 s.
            timing = Timing(max(0.5, plan.timing.warmup), max(1.0, plan.timing.window), plan.timing.drain)
            self.progress.show(f"hosts N={n}: starting (network namespaces)")
            self.hosts.append(await hosts_scenario.run_hosts(self.tools.rtpload, self.tools_cpu, timing, n,
                                                              plan.hosts_rate))
        for profile in plan.profiles:
            for n in plan.c_sizes(srtp=True):
                async with contextlib.AsyncExitStack() as stack:
                    base, base_trial = await self.c_fanout(stack, n, profile)
                    self.rows.append(base)
                    live = [(base, base_trial)]
                    for core in plan.cores:
                        if n in plan.sizes(core, srtp=True):
                            row, trial = await self.tureen_srtp_fanout(stack, n, profile, core)
                            row.baseline = base
                            self.rows.append(row)
                            live.append((row, trial))
                    await self._same_rate(base.scenario, live)
        self.progress.close()
        return self.rows


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer scenarios, shorter windows (~2 min)")
    parser.add_argument("--fanout", type=_ints, help="fan-out sizes N, e.g. 1,10,100")
    parser.add_argument("--cross", type=_ints, help="cross-worker consumer counts (empty: skip)")
    parser.add_argument("--meeting", type=_ints, help="meeting sizes P (empty: skip)")
    parser.add_argument("--srtp", type=_ints, help="SRTP (WebRTC) fan-out sizes N (empty: skip)")
    parser.add_argument("--hosts", type=_ints, help="consumer counts N of the hosts scenario (empty: skip)")
    parser.add_argument("--hosts-rate", type=float,
                        help=f"input packets/s of the hosts scenario (default {hosts_scenario.DEFAULT_RATE:.0f})")
    parser.add_argument("--profiles", type=lambda t: [x for x in t.split(",") if x.strip()],
                        help="SRTP profiles: gcm,cm")
    parser.add_argument("--cores", type=_names,
                        help="Tureen's fan-out cores to run: native,python (default both; rows tureen, "
                             "tureen-py); python alone takes the native rows' place")
    parser.add_argument("--python-fanout", type=_ints,
                        help="plain fan-out sizes with a tureen-py row beside the native one "
                             "(default: quick 100, full 1,100,500; among --fanout's sizes unless given)")
    parser.add_argument("--python-srtp", type=_ints,
                        help="SRTP fan-out sizes with a tureen-py row (default 100, if among --srtp's)")
    parser.add_argument("--mediasoup-v2", metavar="DIR",
                        help="a built mediasoup 2.6.19 (its npm package folder): mediasoup-v2 rows at "
                             f"the fan-out sizes (default: ${mediasoup_v2.ENV}; '' skips them)")
    parser.add_argument("--window", type=float, help="measurement window per trial, seconds")
    parser.add_argument("--trials", type=int, help="trials per saturation search")
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="folder for JSON, PNG, logs, binaries")
    return parser.parse_args(argv)


def make_plan(args: argparse.Namespace) -> Plan:
    base = QUICK if args.quick else FULL
    plan = Plan(fanout=list(base.fanout), cross=list(base.cross), meeting=list(base.meeting),
                timing=Timing(base.timing.warmup, base.timing.window, base.timing.drain),
                max_trials=base.max_trials, srtp=list(base.srtp), profiles=list(base.profiles),
                hosts=list(base.hosts), hosts_rate=base.hosts_rate)
    for name in ("fanout", "cross", "meeting", "srtp", "profiles", "cores", "hosts", "hosts_rate"):
        value = getattr(args, name)
        if value is not None:
            setattr(plan, name, value)
    # The Python core's sizes: as asked, else the mode's default among the sizes that run.
    plan.python_fanout = (args.python_fanout if args.python_fanout is not None
                          else [n for n in base.python_fanout if n in plan.fanout])
    plan.python_srtp = (args.python_srtp if args.python_srtp is not None
                        else [n for n in base.python_srtp if n in plan.srtp])
    unknown = [p for p in plan.profiles if p not in PROFILE_NAMES]
    if unknown:
        raise SystemExit(f"unknown SRTP profile(s) {unknown}: use {', '.join(PROFILE_NAMES)}")
    bad = [c for c in plan.cores if c not in CORES]
    if bad or not plan.cores:
        raise SystemExit(f"--cores: {bad or 'none given'}; use one or both of {','.join(CORES)}")
    plan.cores = [c for c in CORES if c in plan.cores]  # native first, no duplicates
    if any(not 1 <= n <= hosts_scenario.MAX_CONSUMERS for n in plan.hosts):
        raise SystemExit(f"--hosts: consumer counts must be 1..{hosts_scenario.MAX_CONSUMERS}, got {plan.hosts}")
    if not 1 <= plan.hosts_rate <= hosts_scenario.MAX_RATE:
        raise SystemExit(f"--hosts-rate must be 1..{hosts_scenario.MAX_RATE:.0f} packets/s, got {plan.hosts_rate}")
    try:
        plan.mediasoup_v2, plan.mediasoup_v2_skipped = mediasoup_v2.resolve(args.mediasoup_v2)
    except mediasoup_v2.BuildMissing as missing:
        raise SystemExit(f"--mediasoup-v2 / ${mediasoup_v2.ENV}: {missing}") from None
    if args.window:
        plan.timing.window = args.window
    if args.trials:
        plan.max_trials = args.trials
    return plan


def cores_missing(cores: list[str]) -> str | None:
    """Why a core asked for cannot run here (checked before anything starts; each server's
    workers are checked again through server.info), or None."""
    from tureen.workers import native, sendbatch

    if "native" in cores and not native.available():
        return f"--cores native: {native.WHY_NOT}; or run --cores python"
    if "python" in cores and not sendbatch.available():
        return "--cores python: this libc has no sendmmsg, the workers would send per copy"
    return None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    plan = make_plan(args)
    missing = cores_missing(plan.cores)
    if missing:
        raise SystemExit(missing)
    forwarder_cpu, tools_cpu = cpus.layout()
    # This harness shares the tools' core: it must never run on the forwarder's.
    os.sched_setaffinity(0, {tools_cpu})
    tools = build_tools(args.out / "bin")
    started = time.time()
    load_start = os.getloadavg()
    bench = Bench(plan, tools, args.out)
    rows = asyncio.run(bench.run())
    text = report.table(rows)
    print(text)
    print()
    print(report.targets(rows))
    versus = mediasoup_v2.versus_text(rows)
    if versus:
        print()
        print(versus)
    if plan.mediasoup_v2_skipped and plan.fanout:
        print()
        print(plan.mediasoup_v2_skipped)
    for result in bench.hosts:
        print()
        print(hosts_scenario.text(result))
    meta: dict[str, Any] = {
        "started": started, "seconds": round(time.time() - started, 1), "quick": args.quick,
        "forwarder_cpu": forwarder_cpu, "tools_cpu": tools_cpu, "cpus": os.cpu_count(),
        "python": sys.version.split()[0], "kernel": platform.release(),
        "timing": vars(plan.timing), "max_trials": plan.max_trials,
        "cores": plan.cores, "python_fanout": plan.python_fanout, "python_srtp": plan.python_srtp,
        "loadavg_start": load_start, "loadavg_end": os.getloadavg(),
        "mediasoup_v2": str(plan.mediasoup_v2) if plan.mediasoup_v2 else None,
        "hosts": [{k: v for k, v in result.items() if not k.startswith("_")} for result in bench.hosts],
    }
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(started))
    json_path = args.out / f"bench-{stamp}.json"
    report.write_json(json_path, meta, rows)
    report.write_json(args.out / "latest.json", meta, rows)
    png = args.out / f"bench-{stamp}.png"
    why_not = report.plot(png, rows)
    print(f"\nJSON: {json_path}")
    print(f"plot: {png}" if why_not is None else f"plot: skipped ({why_not})")
    print(f"{meta['seconds']:.0f} s; forwarder on cpu {forwarder_cpu}, load tools on cpu {tools_cpu}; "
          f"load average {' '.join(f'{x:.2f}' for x in load_start)} at start, "
          f"{' '.join(f'{x:.2f}' for x in meta['loadavg_end'])} at end (the machine is shared: "
          "compare ratios within this run)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
