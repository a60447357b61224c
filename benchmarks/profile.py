"""`python -m benchmarks.profile`: py-spy on a Tureen worker under a fixed fan-out load.

Starts `tureen serve --workers 1`, builds one producer -> N consumers over the control API,
drives it at a fixed input rate with the C load tool, records the worker with
`py-spy record --nonblocking --format raw` (collapsed stacks), and prints where its samples go:
by function (self) and by the hot path's own frames (inclusive). The raw file stays in
benchmarks/out/ for flame graphs (e.g. speedscope, or `flamegraph.pl`).

--core picks the workers' fan-out core (`tureen serve --fanout`; default native, the bench's
`tureen` rows); the worker must report it (server.info) or nothing is profiled. py-spy sees
a native core's work as the Python line that calls it (`self.batch.flush()`: the sendmmsg
calls; the `fanout(...)` call: header, copy and SRTP protect); --perf also records the worker
with `perf record` (kernel and C frames, e.g. the send path and the AES) and prints its
shares by shared object and by symbol.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

from tureen.shared.client import TureenClient

from . import cpus, scenarios
from .ctools import build_tools
from .load import Timing
from .run import OUT_DIR, cores_missing
from .search import Context, run_trial
from .srtp import PROFILE_NAMES
from .tureen_server import TureenServer
from .webrtc import webrtc_fanout

CORES = ("native", "python", "auto")


def summarize(raw: Path, top: int = 20) -> str:
    """Self and inclusive sample shares per frame from py-spy's collapsed-stack output."""
    own: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        own[frames[-1]] += n
        for frame in set(frames):
            incl[frame] += n
    lines = [f"{total} samples", "", "self:"]
    lines += [f"  {100 * n / total:5.1f}%  {frame}" for frame, n in own.most_common(top)]
    lines += ["", "inclusive:"]
    lines += [f"  {100 * n / total:5.1f}%  {frame}" for frame, n in incl.most_common(top)]
    return "\n".join(lines)


def perf_summary(data: Path, top: int = 25) -> str:
    """`perf report` of the worker's `perf record -g`: self shares by shared object (kernel,
    libsrtp + OpenSSL in pylibsrtp's _binding, libpython, the native core), the kernel's
    time by system call (inclusive: kernel call chains are complete, unlike user-space ones
    through code built without frame pointers; net_rx_action is loopback delivering into the
    receivers' sockets, inside the sender's sendmmsg), and the top symbols (self)."""

    def report(*args: str) -> list[str]:
        result = subprocess.run(["perf", "report", "-i", str(data), "--stdio", "-g", "none", *args],
                                capture_output=True, text=True, timeout=120)
        return [line for line in result.stdout.splitlines() if line.strip() and not line.startswith("#")]

    by_dso = report("--no-children", "--sort", "dso", "--percent-limit", "0.5")
    syscalls = [line for line in report("--children", "--sort", "sym", "--percent-limit", "0.2")
                if "[k] __x64_sys_" in line or "[k] net_rx_action" in line]
    syms = report("--no-children", "--sort", "dso,sym", "--percent-limit", "0.5")
    return "\n\n".join([
        "perf, self by shared object:\n" + "\n".join(by_dso[:top]),
        "perf, kernel by system call (inclusive, self; net_rx_action: loopback delivery):\n" + "\n".join(syscalls[:top]),
        "perf, self by symbol:\n" + "\n".join(syms[:top]),
    ])


async def profile(n: int, rate: float, seconds: float, out: Path, srtp: str | None = None,
                  core: str = "native", perf: bool = False) -> tuple[Path, Path | None]:
    forwarder_cpu, tools_cpu = cpus.layout()
    tools = build_tools(out / "bin")
    ctx = Context(tools.rtpload, tools_cpu, Timing(0.5, seconds + 1.0, 0.2))
    server = TureenServer(1, out / "logs", forwarder_cpu, tools_cpu, fanout=core)
    name = f"profile-{'srtp-' + srtp if srtp else 'fanout'}{n}-{int(rate)}pps-{core}"
    raw = out / f"{name}.txt"
    perf_data = out / f"{name}.perf.data" if perf else None
    try:
        async with TureenClient(server.endpoint, timeout=30.0) as client:
            await server.wait_ready(client)  # refuses a worker that runs another core
            print(f"worker fan-out core: {server.cores[0]} (asked --fanout {core})")
            if srtp:  # over real WebRtcTransports (benchmarks/webrtc.py)
                built = await webrtc_fanout(client, "profile", n, srtp)
            else:
                built = await scenarios.fanout(client, "profile", n)
            pid = server.worker_pids[0]
            spy = shutil.which("py-spy", path=os.path.dirname(sys.executable)) or "py-spy"
            recorder = subprocess.Popen(
                [spy, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", "250",
                 "--format", "raw", "--output", str(raw), "--nonblocking"],
                stdout=subprocess.DEVNULL,
            )
            cpus.pin(recorder.pid, tools_cpu)
            recorders = [recorder]
            if perf_data is not None:  # bounded by its own `sleep`: perf stops when it ends
                perf_rec = subprocess.Popen(
                    ["perf", "record", "-F", "999", "-g", "-p", str(pid), "-o", str(perf_data), "--",
                     "sleep", str(int(seconds))],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )
                cpus.pin(perf_rec.pid, tools_cpu)
                recorders.append(perf_rec)
            try:
                trial = await run_trial(ctx, built.topology, built.input_ports, server.worker_pids, rate)
            finally:
                for rec in recorders:
                    try:
                        rec.wait(seconds + 20)
                    except subprocess.TimeoutExpired:
                        rec.kill()
                        rec.wait(5)
                built.close_sockets()
            print(f"{'srtp-' + srtp if srtp else 'fanout'} N={n} at {rate:,.0f} pps in: {trial.out_pps:,.0f} out/s, loss {100 * trial.loss:.2f}%, "
                  f"{trial.cpu_us_per_out or 0:.2f} µs/out (py-spy's sampling adds some)")
    finally:
        server.stop()
    return raw, perf_data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fanout", type=int, default=100)
    parser.add_argument("--rate", type=float, default=1000.0, help="input packets/s")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--srtp", choices=sorted(PROFILE_NAMES), help="over WebRTC with this SRTP profile")
    parser.add_argument("--core", choices=CORES, default="native",
                        help="the workers' fan-out core, passed as tureen serve --fanout (default native)")
    parser.add_argument("--perf", action="store_true",
                        help="also `perf record` the worker (kernel and C frames: send path, AES)")
    parser.add_argument("--out", type=Path, default=OUT_DIR)
    args = parser.parse_args(argv)
    missing = cores_missing([args.core])
    if missing:
        raise SystemExit(missing.replace("--cores", "--core"))
    if args.perf and shutil.which("perf") is None:
        raise SystemExit("--perf: no perf on PATH (linux-perf / linux-tools)")
    os.sched_setaffinity(0, {cpus.layout()[1]})
    raw, perf_data = asyncio.run(profile(args.fanout, args.rate, args.seconds, args.out, args.srtp,
                                         args.core, args.perf))
    if raw.exists():
        print(f"collapsed stacks: {raw}\n")
        print(summarize(raw))
    else:
        print("py-spy wrote nothing (is it installed? pip install -e '.[bench]')")
    if perf_data is not None:
        if perf_data.exists():
            print(f"\nperf data: {perf_data}\n")
            print(perf_summary(perf_data))
        else:
            print("perf wrote nothing (perf_event_paranoid? run as a user allowed to profile)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
