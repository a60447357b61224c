"""Trace one packet's life across the workers: the pipe hop's latency, segment by segment.

    sudo .venv/bin/python scripts/trace_hop.py [--scenario cross,fanout] [--n 10] [--rate 4000]
        [--window 1.5] [--reps 1] [--layout shared|split|one-core] [--slice-us 100] [--json FILE]

Needs root (perf record -a of sched and syscall tracepoints) and perf. For each rep and each
scenario, a real `tureen serve` (1 worker for fanout, 2 for cross), the benchmark's own
builder (benchmarks/scenarios.fanout), pinned as the benchmark pins it (`shared`: every
worker on the forwarder's core, the tools on the other), with the two workers on different
cores (`split`: worker 1 shares the tools' core), or all on one core with the load tool
(`one-core`: how `benchmarks.run` really ran until its layout fix, docs/benchmarks.md "Issue
17, round three"), then one rtpload run at `--rate` input packets/s while `perf record`
traces it. Prints per scenario the load tool's own p50 / p99 (kernel stamps at the sinks, as
the benchmark) beside the traced breakdown (benchmarks/hoptrace.py): per packet (first in,
first out) the time to the pipe send and to the copies' send; per wake-up the origin's
wake-up, its drain to the pipe send, the destination's wait for the CPU, its drain to the
send (with each worker's on-cpu part); and who held each waiting worker's core.
Bounded: rtpload stops itself (warm-up + window + drain); perf stops at the window's end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
from tureen.shared.client import TureenClient

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchmarks import cpus, hoptrace, scenarios  # noqa: E402
from benchmarks.ctools import build_tools  # noqa: E402
from benchmarks.load import VIDEO_SIZE, Timing, run_load  # noqa: E402
from benchmarks.tureen_server import TureenServer  # noqa: E402

EVENTS = ["sched:sched_switch", "sched:sched_waking"]
WORKER_CALLS = ["syscalls:sys_enter_sendto", "syscalls:sys_enter_io_uring_enter", "syscalls:sys_enter_recvmmsg",
                "syscalls:sys_enter_recvfrom", "syscalls:sys_enter_epoll_wait"]
MAX_RATE = 50_000
MAX_WINDOW = 5.0
PERF_SETUP_S = 2.0  # perf record -a with a dozen tracepoints takes this long to start here


def _perf_cmd(data: Path, workers: list[int]) -> list[str]:
    only = " || ".join(f"common_pid == {pid}" for pid in workers)
    cmd = ["perf", "record", "-q", "-a", "-k", "CLOCK_MONOTONIC", "-m", "1024", "-o", str(data)]
    for ev in EVENTS:
        cmd += ["-e", ev]
    cmd += ["-e", "syscalls:sys_enter_sendmmsg"]  # the load tool's and the workers'
    for ev in WORKER_CALLS:
        cmd += ["-e", ev, "--filter", only]
    return cmd


async def traced_run(args: argparse.Namespace, scenario: str, tmp: Path, rtpload: Path) -> dict[str, Any]:
    forwarder_cpu, tools_cpu = args.cpus
    if args.layout == "one-core":  # the benchmark before the fix: the workers on the tools' core
        forwarder_cpu = tools_cpu
    workers = 2 if scenario == "cross" else 1
    os.environ["TUREEN_WORKER_SLICE_US"] = str(args.slice_us)
    server = TureenServer(workers, tmp / "logs", forwarder_cpu, tools_cpu, fanout="native")
    perf: subprocess.Popen[bytes] | None = None
    data = tmp / f"{scenario}.perf.data"
    try:
        async with TureenClient(server.endpoint, timeout=30.0) as client:
            await server.wait_ready(client)
            built = await scenarios.fanout(client, "trace", args.n, away_from_producer=scenario == "cross")
            try:
                await asyncio.sleep(0.3)
                server.repin()
                if args.layout == "split" and workers == 2:
                    cpus.pin(server.worker_pids[1], tools_cpu)
                origin = server.worker_pids[built.workers_used["producer"]]  # type: ignore[index]
                dest = None
                if scenario == "cross":
                    dest = next(p for p in server.worker_pids if p != origin)
                load_tid: list[int] = []
                window: list[int] = []  # CLOCK_MONOTONIC ns of the window's start and end (perf -k mono)
                # perf first, given time to set its tracepoints up (over a second under load).
                perf = subprocess.Popen(_perf_cmd(data, server.worker_pids), stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE)
                cpus.pin(perf.pid, tools_cpu)
                await asyncio.sleep(PERF_SETUP_S)

                def start() -> None:
                    window.append(time.monotonic_ns())
                    me = psutil.Process()
                    load_tid.extend(c.pid for c in me.children() if c.name().startswith("rtpload"))

                def stop() -> None:
                    window.append(time.monotonic_ns())
                    if perf is not None and perf.poll() is None:
                        perf.send_signal(signal.SIGINT)

                timing = Timing(args.warmup, args.window, 0.2)
                report = await run_load(rtpload, built.topology, args.rate, timing, tools_cpu, start, stop)
            finally:
                if perf is not None:
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        perf.wait(30)
                    if perf.poll() is None:
                        perf.kill()
                        perf.wait(5)
                built.close_sockets()
                with contextlib.suppress(Exception):
                    await client.close_room("trace")
    finally:
        server.stop()
    if not load_tid:
        raise RuntimeError("the load tool's pid was not found")
    text = subprocess.run(["perf", "script", "-i", str(data), "-F", "comm,tid,cpu,time,event,trace", "--ns"],
                          capture_output=True, text=True, check=True).stdout
    every = hoptrace.parse(text.splitlines())
    span = (window[0], window[1]) if len(window) == 2 else None
    # The measurement window only, as rtpload's own figures (per_packet counts from before it).
    events = [e for e in every if span is None or e.name != "syscalls:sys_enter_sendmmsg" or span[0] <= e.t < span[1]]
    found, skipped = hoptrace.chains(events, load_tid[0], origin, dest)
    if not found:
        err = perf.stderr.read().decode(errors="replace") if perf and perf.stderr else ""
        print(f"  nothing traced: {len(events)} events, load tool {load_tid}; perf said: {err[-500:]}", flush=True)
    out = hoptrace.summary(found)
    fifo = hoptrace.per_packet(every, load_tid[0], origin, dest, args.n, VIDEO_SIZE, span)
    out["per_packet_us"] = hoptrace.per_packet_summary(fifo)
    out["per_packet_n"] = len(fifo)
    out.update(scenario=scenario, layout=args.layout, rate=args.rate, skipped=skipped,
               load_p50_us=report["latency_us_p50"], load_p99_us=report["latency_us_p99"],
               loss=1 - report["received_window"] / max(report["expected_window"], 1),
               loadavg=os.getloadavg()[0], events=len(events))
    if args.keep:
        shutil.copy(data, args.out / f"{scenario}-{args.layout}-{int(time.time())}.perf.data")
    return out


def show(res: dict[str, Any]) -> str:
    lines = [f"{res['scenario']} N, layout {res['layout']}, {res['rate']:.0f} pps in, load {res['loadavg']:.1f}: "
             f"rtpload p50 {res['load_p50_us']:.0f} / p99 {res['load_p99_us']:.0f} µs, loss "
             f"{100 * res['loss']:.2f}%; {res['packets']} packets traced ({res['skipped']} skipped); "
             f"origin already running {100 * res['origin_already_running']:.0f}%, destination "
             f"{100 * res['dest_already_running']:.0f}%"]
    for name, s in res["per_packet_us"].items():
        lines.append(f"  per packet (fifo, {res['per_packet_n']}) {name:14s} p50 {s['p50']:8.1f}  p90 {s['p90']:8.1f}"
                     f"  mean {s['mean']:8.1f} µs")
    for name, s in res["segments_us"].items():
        lines.append(f"  {name:28s} p50 {s['p50']:8.1f}  p90 {s['p90']:8.1f}  mean {s['mean']:8.1f} µs")
    for key, what in (("origin_wait_own_us", "origin's"), ("dest_wait_own_us", "destination's")):
        o = res[key]
        if res["packets"] and (key == "origin_wait_own_us" or res["scenario"] == "cross"):
            lines.append(f"  {what} wait held by this run's own processes: p50 {o['p50']:.1f}  p90 {o['p90']:.1f}"
                         f"  mean {o['mean']:.1f} µs")
    if res["origin_wait_held_us_per_packet"]:
        held = ", ".join(f"{k} {v:.1f}" for k, v in list(res["origin_wait_held_us_per_packet"].items())[:6])
        lines.append(f"  origin's cpu held while it waited (µs/packet, mean): {held}")
    if res["dest_wait_held_us_per_packet"]:
        held = ", ".join(f"{k} {v:.1f}" for k, v in list(res["dest_wait_held_us_per_packet"].items())[:6])
        lines.append(f"  destination's cpu held while it waited (µs/packet, mean): {held}")
    return "\n".join(lines)


async def main_async(args: argparse.Namespace) -> list[dict[str, Any]]:
    tools = build_tools(ROOT / "benchmarks" / "out" / "bin")
    results = []
    with tempfile.TemporaryDirectory(prefix="trace-hop-") as tmp:
        for _ in range(args.reps):
            for scenario in args.scenario:
                res = await traced_run(args, scenario, Path(tmp), tools.rtpload)
                print(show(res), flush=True)
                results.append(res)
    return results


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenario", type=lambda t: [x for x in t.split(",") if x], default=["cross", "fanout"])
    p.add_argument("--n", type=int, default=10)
    p.add_argument("--rate", type=float, default=4000.0,
                   help="input packets/s (default 4000: about cross N=10's ½ rate on this VM)")
    p.add_argument("--warmup", type=float, default=0.5)
    p.add_argument("--window", type=float, default=1.5)
    p.add_argument("--reps", type=int, default=1)
    p.add_argument("--layout", choices=("shared", "split", "one-core"), default="shared",
                   help="shared: both workers on the forwarder's core, tools on the other (the documented "
                        "layout); split: worker 1 on the tools' core; one-core: every worker and tool on "
                        "one core (how benchmarks.run really ran before its layout fix)")
    p.add_argument("--slice-us", type=int, default=100, help="worker_slice_us for the workers (0: kernel's)")
    p.add_argument("--keep", action="store_true", help="keep the perf.data files in --out")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out")
    p.add_argument("--json", type=Path, help="write the results here")
    args = p.parse_args(argv)
    bad = [s for s in args.scenario if s not in ("cross", "fanout")]
    if bad:
        p.error(f"--scenario: {bad}; use cross and/or fanout")
    if not 0 < args.rate <= MAX_RATE or not 0 < args.window <= MAX_WINDOW or not 1 <= args.reps <= 20:
        p.error(f"--rate 1..{MAX_RATE}, --window up to {MAX_WINDOW} s, --reps 1..20")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0 or shutil.which("perf") is None:
        raise SystemExit("trace_hop needs root and perf (perf record -a of tracepoints)")
    args.cpus = cpus.layout()  # before this process pins itself to the tools' core
    os.sched_setaffinity(0, {args.cpus[1]})
    results = asyncio.run(main_async(args))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
