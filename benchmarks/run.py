"""`python -m benchmarks.run [--quick]`: every scenario, the C baseline, table, JSON, plot.

Scenarios (issue 7):
  fanout N   one producer -> N consumers on one worker (Tureen) / one cforward (C)
  srtp-gcm N / srtp-cm N   the same over WebRTC: every transport connected for real (ICE +
             DTLS by the harness as the browser), SRTP at rate; baseline C + libsrtp
  cross N    producer on one worker, its N consumers on another (the pipe's cost)
  meeting P  P peers each sending audio + video and receiving everyone else, on 2 workers
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tureen.shared.client import TureenClient

from . import cpus, report, scenarios
from .baseline import CForwarder
from .ctools import Tools, build_tools
from .load import Timing
from .progress import Progress
from .report import Row
from .scenarios import Built
from .search import Context, Search, Trial, run_trial, saturate
from .srtp import PROFILE_NAMES
from .tureen_server import TureenServer
from .webrtc import webrtc_fanout

OUT_DIR = Path(__file__).resolve().parent / "out"
START_OUT_PPS = 20_000  # first trial: output packets/s any forwarder here holds easily


@dataclass
class Plan:
    fanout: list[int]
    cross: list[int]
    meeting: list[int]
    timing: Timing
    max_trials: int
    srtp: list[int]  # fan-out sizes of the SRTP (WebRTC) scenario
    profiles: list[str]  # 'gcm', 'cm'

    @property
    def searches(self) -> int:
        return 2 * len(self.fanout) + len(self.cross) + len(self.meeting) + 2 * len(self.srtp) * len(self.profiles)


QUICK = Plan(fanout=[1, 10, 100], cross=[10], meeting=[5], timing=Timing(0.2, 0.5, 0.1), max_trials=4,
             srtp=[1, 100], profiles=["gcm", "cm"])
FULL = Plan(fanout=[1, 10, 100, 500], cross=[10, 100], meeting=[5, 10, 25],
            timing=Timing(0.5, 1.5, 0.15), max_trials=7, srtp=[1, 10, 100, 500], profiles=["gcm", "cm"])


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


class Bench:
    def __init__(self, plan: Plan, tools: Tools, out_dir: Path) -> None:
        self.plan = plan
        self.tools = tools
        self.out_dir = out_dir
        self.forwarder_cpu, self.tools_cpu = cpus.layout()
        self.ctx = Context(tools.rtpload, self.tools_cpu, plan.timing)
        self.progress = Progress(plan.searches)
        self.rows: list[Row] = []

    # ------------------------------------------------------------------ helpers

    def _on_trial(self, label: str) -> Callable[[Trial], None]:
        def show(t: Trial) -> None:
            self.progress.show(
                f"{label}: {t.input_pps:,.0f} in -> {t.out_pps:,.0f} out/s, loss {100 * t.loss:.2f}%"
                + (f", {t.cpu_us_per_out:.2f} µs/out" if t.cpu_us_per_out else "")
            )
        return show

    async def _search(self, label: str, built: Built, pids: list[int]) -> Search:
        topo = built.topology

        def trial(rate: float) -> Awaitable[Trial]:
            return run_trial(self.ctx, topo, built.input_ports, pids, rate)

        self.progress.show(f"{label}: starting")
        start = max(5.0, START_OUT_PPS / topo.outputs_per_rate)
        search = await saturate(trial, start, topo.outputs_per_rate, self.plan.max_trials,
                                on_trial=self._on_trial(label))
        if search.best is not None:  # the latency figure: at half the saturation rate
            search.half_rate = await trial(search.best.rate / 2)
        self.progress.step(f"{label}: done")
        return search

    async def _with_tureen(self, workers: int, body: Callable[[TureenServer, TureenClient], Awaitable[Row]]) -> Row:
        server = TureenServer(workers, self.out_dir / "logs", self.forwarder_cpu, self.tools_cpu)
        try:
            async with TureenClient(server.endpoint, timeout=30.0) as client:
                await server.wait_ready(client)
                return await body(server, client)
        finally:
            server.stop()

    async def _tureen_row(self, scenario: str, server: TureenServer, client: TureenClient,
                          build: Callable[[], Awaitable[Built]]) -> Row:
        rss0 = cpus.rss_bytes(server.worker_pids)
        built = await build()
        try:
            await asyncio.sleep(0.2)  # let the setup's control traffic settle before measuring
            server.repin()
            rss1 = cpus.rss_bytes(server.worker_pids)
            search = await self._search(f"{scenario} tureen", built, server.worker_pids)
            loads: list[Any] = []
            with contextlib.suppress(Exception):  # the workers' last load reports, for the findings
                loads = [w.get("load") for w in (await client.server_info())["workers"]]
            with contextlib.suppress(Exception):
                await client.close_room("bench")
        finally:
            built.close_sockets()
        row = Row(scenario, "tureen", built.consumers, search,
                  kib_per_consumer=(rss1 - rss0) / 1024 / built.consumers)
        row.extra["workers"] = built.workers_used
        row.extra["worker_loads"] = loads
        return row

    # ------------------------------------------------------------------ scenarios

    async def c_fanout(self, n: int, profile: str | None = None) -> Row:
        """The C baseline at fan-out n: plain, or with SRTP `profile` (the c+srtp rows)."""
        scenario, fwd_name = (f"fanout N={n}", "c") if profile is None else (f"srtp-{profile} N={n}", "c+srtp")
        fwd = CForwarder(self.tools.cforward, n, self.forwarder_cpu, srtp=profile)
        try:
            search = await self._search(f"{scenario} {fwd_name}", fwd.built, fwd.pids)
        finally:
            counters = fwd.close()
        row = Row(scenario, fwd_name, n, search)
        row.extra["cforward"] = counters
        return row

    async def tureen_srtp_fanout(self, n: int, profile: str) -> Row:
        async def body(server: TureenServer, client: TureenClient) -> Row:
            return await self._tureen_row(f"srtp-{profile} N={n}", server, client,
                                          lambda: webrtc_fanout(client, "bench", n, profile))
        return await self._with_tureen(1, body)

    async def tureen_fanout(self, n: int) -> Row:
        async def body(server: TureenServer, client: TureenClient) -> Row:
            return await self._tureen_row(f"fanout N={n}", server, client,
                                          lambda: scenarios.fanout(client, "bench", n))
        return await self._with_tureen(1, body)

    async def tureen_cross(self, n: int) -> Row:
        async def body(server: TureenServer, client: TureenClient) -> Row:
            return await self._tureen_row(
                f"cross N={n}", server, client,
                lambda: scenarios.fanout(client, "bench", n, away_from_producer=True))
        return await self._with_tureen(2, body)

    async def tureen_meeting(self, p: int) -> Row:
        async def body(server: TureenServer, client: TureenClient) -> Row:
            return await self._tureen_row(f"meeting P={p}", server, client,
                                          lambda: scenarios.meeting(client, "bench", p))
        return await self._with_tureen(2, body)

    async def run(self) -> list[Row]:
        c_rows: dict[int, Row] = {}
        t_rows: dict[int, Row] = {}
        for n in self.plan.fanout:
            c_rows[n] = await self.c_fanout(n)
            self.rows.append(c_rows[n])
            t_rows[n] = await self.tureen_fanout(n)
            t_rows[n].baseline = c_rows[n]
            self.rows.append(t_rows[n])
        for n in self.plan.cross:
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
        for p in self.plan.meeting:
            self.rows.append(await self.tureen_meeting(p))
        for profile in self.plan.profiles:
            for n in self.plan.srtp:
                base = await self.c_fanout(n, profile)
                self.rows.append(base)
                row = await self.tureen_srtp_fanout(n, profile)
                row.baseline = base
                self.rows.append(row)
        self.progress.close()
        return self.rows


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer scenarios, shorter windows (~1 min)")
    parser.add_argument("--fanout", type=_ints, help="fan-out sizes N, e.g. 1,10,100")
    parser.add_argument("--cross", type=_ints, help="cross-worker consumer counts (empty: skip)")
    parser.add_argument("--meeting", type=_ints, help="meeting sizes P (empty: skip)")
    parser.add_argument("--srtp", type=_ints, help="SRTP (WebRTC) fan-out sizes N (empty: skip)")
    parser.add_argument("--profiles", type=lambda t: [x for x in t.split(",") if x.strip()],
                        help="SRTP profiles: gcm,cm")
    parser.add_argument("--window", type=float, help="measurement window per trial, seconds")
    parser.add_argument("--trials", type=int, help="trials per saturation search")
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="folder for JSON, PNG, logs, binaries")
    return parser.parse_args(argv)


def make_plan(args: argparse.Namespace) -> Plan:
    base = QUICK if args.quick else FULL
    plan = Plan(fanout=list(base.fanout), cross=list(base.cross), meeting=list(base.meeting),
                timing=Timing(base.timing.warmup, base.timing.window, base.timing.drain),
                max_trials=base.max_trials, srtp=list(base.srtp), profiles=list(base.profiles))
    for name in ("fanout", "cross", "meeting", "srtp", "profiles"):
        value = getattr(args, name)
        if value is not None:
            setattr(plan, name, value)
    unknown = [p for p in plan.profiles if p not in PROFILE_NAMES]
    if unknown:
        raise SystemExit(f"unknown SRTP profile(s) {unknown}: use {', '.join(PROFILE_NAMES)}")
    if args.window:
        plan.timing.window = args.window
    if args.trials:
        plan.max_trials = args.trials
    return plan


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    plan = make_plan(args)
    forwarder_cpu, tools_cpu = cpus.layout()
    # This harness shares the tools' core: it must never run on the forwarder's.
    os.sched_setaffinity(0, {tools_cpu})
    tools = build_tools(args.out / "bin")
    started = time.time()
    bench = Bench(plan, tools, args.out)
    rows = asyncio.run(bench.run())
    text = report.table(rows)
    print(text)
    print()
    print(report.targets(rows))
    meta: dict[str, Any] = {
        "started": started, "seconds": round(time.time() - started, 1), "quick": args.quick,
        "forwarder_cpu": forwarder_cpu, "tools_cpu": tools_cpu, "cpus": os.cpu_count(),
        "python": sys.version.split()[0], "kernel": platform.release(),
        "timing": vars(plan.timing), "max_trials": plan.max_trials,
    }
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(started))
    json_path = args.out / f"bench-{stamp}.json"
    report.write_json(json_path, meta, rows)
    report.write_json(args.out / "latest.json", meta, rows)
    png = args.out / f"bench-{stamp}.png"
    why_not = report.plot(png, rows)
    print(f"\nJSON: {json_path}")
    print(f"plot: {png}" if why_not is None else f"plot: skipped ({why_not})")
    print(f"{meta['seconds']:.0f} s; forwarder on cpu {forwarder_cpu}, load tools on cpu {tools_cpu}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
