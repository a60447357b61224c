"""Profile the per-copy cost of a fan-out or a meeting: the C baseline and Tureen, same load.

    .venv/bin/python scripts/prof_copy.py [--n 100] [--profiles gcm,cm] [--rate 1000]
        [--seconds 5] [--reps 1] [--core native] [--top 25]
    .venv/bin/python scripts/prof_copy.py --n 1 --profiles none,gcm --rate 66000
    .venv/bin/python scripts/prof_copy.py --meeting 5 --rate 52000
    .venv/bin/python scripts/prof_copy.py --n 10 --profiles none --which tureen,cross --rate 9000

For each profile (`none`: plain RTP, as the bench's fanout rows; `gcm`/`cm`: SRTP, as its
srtp rows), runs the C baseline (benchmarks/baseline.py's CForwarder, with SRTP for gcm/cm)
and a Tureen worker (`tureen serve --workers 1`, one producer -> N plain transports or N
WebRtcTransports) one after the other at the same fixed input rate. `--meeting P` runs the
meeting scenario instead (plain; C's meeting baseline against `tureen serve --workers 2`,
both workers recorded); `--which tureen,cross` compares a one-worker fan-out with the bench's
cross row (the producer on one worker, the N consumers on the other, both recorded). Each is recorded with `perf record -F 999 -g -p PID[,PID]` for the
trial's window; the script prints per forwarder its CPU per output copy (the bench's schedstat
figure) and, per part, per kernel entry point (system call, inclusive of what it calls) and
per symbol, the share of its perf samples and that share as µs per output copy (share x CPU
per copy), so the two can be compared symbol by symbol. The perf files stay in
benchmarks/out/ (`perf report -i`).

--reps alternates C and Tureen that many times per profile (the load on a shared machine
moves between runs). Loopback only; every run is bounded by --seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the benchmarks package

from tureen.shared.client import TureenClient  # noqa: E402

from benchmarks import cpus, scenarios  # noqa: E402
from benchmarks.baseline import CForwarder  # noqa: E402
from benchmarks.ctools import build_tools  # noqa: E402
from benchmarks.load import Timing  # noqa: E402
from benchmarks.run import OUT_DIR  # noqa: E402
from benchmarks.search import Context, run_trial  # noqa: E402
from benchmarks.tureen_server import TureenServer  # noqa: E402
from benchmarks.webrtc import webrtc_fanout  # noqa: E402

LINE = re.compile(r"^\s*([\d.]+)%\s+(\S+)\s+\[(.)\]\s+(.+?)\s*$")
CHILDREN_LINE = re.compile(r"^\s*([\d.]+)%\s+([\d.]+)%\s+\[(.)\]\s+(.+?)\s*$")

# Kernel entry points whose inclusive (children) share is shown: where the kernel's time is
# spent per system call (the receive, the sends, the wait), interrupts and scheduling.
ENTRIES = ("__x64_sys_recvmmsg", "__x64_sys_recvfrom", "__x64_sys_recvmsg", "__x64_sys_sendmmsg",
           "__x64_sys_sendmsg", "__x64_sys_sendto", "__do_sys_io_uring_enter",
           "__x64_sys_epoll_wait", "__x64_sys_epoll_pwait", "__x64_sys_poll", "__x64_sys_select",
           "__x64_sys_read", "__x64_sys_write", "__x64_sys_getsockopt", "__x64_sys_ioctl",
           "__x64_sys_futex", "__x64_sys_clock_gettime", "asm_sysvec_apic_timer_interrupt",
           "asm_common_interrupt", "schedule", "net_rx_action", "__do_softirq", "handle_softirqs",
           "entry_SYSCALL_64", "syscall_exit_to_user_mode")


def perf_symbols(data: Path) -> dict[tuple[str, str], float]:
    """Self share (%) of each (shared object, symbol) in a `perf record` file."""
    result = subprocess.run(
        ["perf", "report", "-i", str(data), "--stdio", "-g", "none", "--no-children",
         "--sort", "dso,sym", "--percent-limit", "0.05"],
        capture_output=True, text=True, timeout=120)
    shares: dict[tuple[str, str], float] = {}
    for line in result.stdout.splitlines():
        m = LINE.match(line)
        if m:
            shares[(m.group(2), m.group(4))] = float(m.group(1))
    return shares


def perf_entries(data: Path) -> dict[str, float]:
    """Inclusive share (%) of each kernel entry point of ENTRIES in a `perf record -g` file."""
    result = subprocess.run(
        ["perf", "report", "-i", str(data), "--stdio", "-g", "none", "--children",
         "--sort", "sym", "--percent-limit", "0.05"],
        capture_output=True, text=True, timeout=120)
    shares: dict[str, float] = {}
    for line in result.stdout.splitlines():
        m = CHILDREN_LINE.match(line)
        if m and m.group(4) in ENTRIES:
            shares[m.group(4)] = shares.get(m.group(4), 0.0) + float(m.group(1))
    return shares


async def rx_counters(client: TureenClient, workers: int) -> dict[str, int]:
    """The workers' receive-path counters (worker.dump's fanout: nativeRx, pythonRx,
    nativeSrtp), summed: which packets took the C receive and which the Python one."""
    total: dict[str, int] = defaultdict(int)
    for i in range(workers):
        fanout = (await client.dump_worker(i)).get("fanout") or {}
        for k in ("nativeRx", "pythonRx", "nativeSrtp"):
            total[k] += int(fanout.get(k, 0))
    return dict(total)


def group(dso: str, sym: str) -> str:
    """The row of the summary a symbol belongs to."""
    if dso.startswith("[kernel"):
        return "kernel"
    if "_binding" in dso:
        return "libsrtp + OpenSSL (_binding)"
    if dso.startswith("libc"):
        return "libc (memcpy/memmove, ...)"
    if "_native" in dso:
        return "Tureen native core (_native.so)"
    if "python" in dso:
        return "CPython"
    if dso.startswith("cforward"):
        return "cforward itself"
    return "other: " + dso


Shares = dict[tuple[str, str], float]


async def run_one(which: str, n: int, profile: str, rate: float, seconds: float, core: str,
                  out: Path, tag: str, meeting: int = 0) -> tuple[float, Shares, dict[str, float], Path]:
    """One trial of `which` ('c' or 'tureen') under perf: (µs per copy, symbol shares, kernel
    entry shares, perf file). `profile` 'none' is plain RTP; `meeting` > 0 runs the meeting
    scenario with that many peers (plain) instead of a fan-out to n."""
    forwarder_cpu, tools_cpu = cpus.layout()
    tools = build_tools(out / "bin")
    ctx = Context(tools.rtpload, tools_cpu, Timing(0.5, seconds + 1.0, 0.2))
    srtp = None if profile == "none" else profile
    what = f"meeting{meeting}" if meeting else f"{profile}{n}"
    data = out / f"prof-copy-{which}-{what}-{int(rate)}-{tag}.perf.data"

    async def trial(topology, ports, pids):  # type: ignore[no-untyped-def]
        rec = subprocess.Popen(
            ["perf", "record", "-F", "999", "-g", "-p", ",".join(map(str, pids)), "-o", str(data), "--",
             "sleep", str(int(seconds))], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        cpus.pin(rec.pid, tools_cpu)
        try:
            return await run_trial(ctx, topology, ports, pids, rate)
        finally:
            try:
                rec.wait(seconds + 20)
            except subprocess.TimeoutExpired:
                rec.kill()
                rec.wait(5)

    if which == "c":
        fwd = (CForwarder.meeting(tools.cforward, meeting, forwarder_cpu) if meeting
               else CForwarder(tools.cforward, n, forwarder_cpu, srtp=srtp))
        try:
            result = await trial(fwd.built.topology, fwd.built.input_ports, fwd.pids)
        finally:
            fwd.close()
    else:
        cross = which == "cross"  # the bench's cross row: the producer on one worker, the N on the other
        server = TureenServer(2 if meeting or cross else 1, out / "logs", forwarder_cpu, tools_cpu, fanout=core)
        try:
            async with TureenClient(server.endpoint, timeout=30.0) as client:
                await server.wait_ready(client)
                if meeting:
                    built = await scenarios.meeting(client, "prof", meeting)
                elif srtp is None:
                    built = await scenarios.fanout(client, "prof", n, away_from_producer=cross)
                else:
                    built = await webrtc_fanout(client, "prof", n, srtp)
                try:
                    before = await rx_counters(client, server.workers)
                    result = await trial(built.topology, built.input_ports, server.worker_pids)
                    after = await rx_counters(client, server.workers)
                    rx = "; ".join(f"{k} {after[k] - before.get(k, 0):,}" for k in after)
                    print(f"  tureen receive paths over the trial (worker.dump): {rx}", flush=True)
                finally:
                    built.close_sockets()
        finally:
            server.stop()
    print(f"  {which:6s} {what} @ {rate:,.0f}/s: {result.out_pps:,.0f} out/s, loss "
          f"{100 * result.loss:.2f}%, {result.cpu_us_per_out or 0:.3f} µs/out", flush=True)
    return result.cpu_us_per_out or 0.0, perf_symbols(data), perf_entries(data), data


Run = tuple[float, Shares, dict[str, float]]


def table(runs: dict[str, list[Run]], top: int) -> str:
    """Groups, kernel entry points and top symbols, share % and µs per copy, averaged over
    the reps, side by side."""
    names = list(runs)
    us = {w: sum(r[0] for r in runs[w]) / len(runs[w]) for w in names}
    avg: dict[str, dict[tuple[str, str], float]] = {}
    entries: dict[str, dict[str, float]] = defaultdict(dict)
    for w in names:
        acc: dict[tuple[str, str], float] = defaultdict(float)
        for _, shares, ent in runs[w]:
            for k, v in shares.items():
                acc[k] += v / len(runs[w])
            for e, v in ent.items():
                entries[e][w] = entries[e].get(w, 0.0) + v / len(runs[w])
        avg[w] = acc

    def row(label: str, vals: dict[str, float]) -> str:
        cells = [f"{vals.get(w, 0.0):5.1f}% {vals.get(w, 0.0) * us[w] / 100:6.3f}" for w in names]
        diff = vals.get(names[-1], 0.0) * us[names[-1]] / 100 - vals.get(names[0], 0.0) * us[names[0]] / 100
        return f"{label[:70]:70s} | " + " | ".join(cells) + f" | {diff:+6.3f}"

    head = f"{'':70s} | " + " | ".join(f"{w + ' % µs/copy':>14s}" for w in names) + " | diff µs"
    lines = [head, row("CPU per output copy (schedstat)", {w: 100.0 for w in names})]
    groups: dict[str, dict[str, float]] = defaultdict(dict)
    for w in names:
        for (dso, sym), v in avg[w].items():
            g = group(dso, sym)
            groups[g][w] = groups[g].get(w, 0.0) + v
    lines.append("-- by part")
    for g, vals in sorted(groups.items(), key=lambda kv: -max(kv[1].values())):
        lines.append(row(g, vals))
    lines.append("-- kernel entry points, inclusive (children; they overlap)")
    for e, vals in sorted(entries.items(), key=lambda kv: -max(kv[1].values())):
        lines.append(row(e, vals))
    lines.append("-- by symbol")
    keys = sorted({k for w in names for k in avg[w]}, key=lambda k: -max(avg[w].get(k, 0.0) for w in names))
    for dso, sym in keys[:top]:
        lines.append(row(f"{sym} ({dso})", {w: avg[w].get((dso, sym), 0.0) for w in names}))
    return "\n".join(lines)


async def main_async(args: argparse.Namespace) -> None:
    if "cross" in args.which.split(",") and (args.meeting or set(args.profiles.split(",")) != {"none"}):
        raise SystemExit("--which cross runs the plain fan-out across two workers: use --profiles none, no --meeting")
    args.out.mkdir(parents=True, exist_ok=True)
    for profile in args.profiles.split(","):
        names = args.which.split(",")
        runs: dict[str, list[Run]] = {w: [] for w in names}
        for rep in range(args.reps):
            for which in names if rep % 2 == 0 else names[::-1]:
                us, shares, ent, _ = await run_one(which, args.n, profile, args.rate, args.seconds, args.core,
                                                   args.out, f"r{rep}", args.meeting)
                runs[which].append((us, shares, ent))
        what = f"meeting P={args.meeting}" if args.meeting else f"N={args.n}"
        print(f"\n{'plain RTP' if profile == 'none' else 'SRTP ' + profile}, {what}, "
              f"{args.rate:,.0f} packets/s in, {args.reps} rep(s), load average "
              f"{os.getloadavg()[0]:.1f}:")
        print(table(runs, args.top))
        print()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--profiles", default="gcm,cm", help="none (plain RTP), gcm, cm; comma-separated")
    parser.add_argument("--meeting", type=int, default=0, help="P: the meeting scenario (plain) instead of a fan-out")
    parser.add_argument("--rate", type=float, default=1000.0, help="input packets/s (both forwarders)")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--reps", type=int, default=1)
    parser.add_argument("--core", default="native", help="tureen serve --fanout (default native)")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--which", default="c,tureen",
                        help="forwarders, in order: c, tureen, cross (tureen's two workers, the producer "
                             "on one and the N consumers on the other: the bench's cross row, plain only)")
    parser.add_argument("--out", type=Path, default=OUT_DIR)
    args = parser.parse_args(argv)
    if shutil.which("perf") is None:
        raise SystemExit("needs perf on PATH (linux-perf / linux-tools)")
    if not 1 <= args.seconds <= 60 or not 1 <= args.reps <= 10:
        raise SystemExit("--seconds must be 1..60 and --reps 1..10")
    bad = [p for p in args.profiles.split(",") if p not in ("none", "gcm", "cm")]
    if bad:
        raise SystemExit(f"--profiles: unknown {', '.join(bad)}; use none, gcm or cm")
    if args.meeting and (args.meeting < 2 or args.profiles != "none"):
        raise SystemExit("--meeting P needs P >= 2 and --profiles none (the meeting is plain RTP)")
    os.sched_setaffinity(0, {cpus.layout()[1]})
    asyncio.run(main_async(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
