"""`python -m benchmarks.profile`: py-spy on a Tureen worker under a fixed fan-out load.

Starts `tureen serve --workers 1`, builds one producer -> N consumers over the control API,
drives it at a fixed input rate with the C load tool, records the worker with
`py-spy record --nonblocking --format raw` (collapsed stacks), and prints where its samples go:
by function (self) and by the hot path's own frames (inclusive). The raw file stays in
benchmarks/out/ for flame graphs (e.g. speedscope, or `flamegraph.pl`).
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
from .run import OUT_DIR
from .search import Context, run_trial
from .srtp import PROFILE_NAMES
from .tureen_server import TureenServer
from .webrtc import webrtc_fanout


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


async def profile(n: int, rate: float, seconds: float, out: Path, srtp: str | None = None) -> Path:
    forwarder_cpu, tools_cpu = cpus.layout()
    tools = build_tools(out / "bin")
    ctx = Context(tools.rtpload, tools_cpu, Timing(0.5, seconds + 1.0, 0.2))
    server = TureenServer(1, out / "logs", forwarder_cpu, tools_cpu)
    raw = out / f"profile-{'srtp-' + srtp if srtp else 'fanout'}{n}-{int(rate)}pps.txt"
    try:
        async with TureenClient(server.endpoint, timeout=30.0) as client:
            await server.wait_ready(client)
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
            try:
                trial = await run_trial(ctx, built.topology, built.input_ports, server.worker_pids, rate)
            finally:
                try:
                    recorder.wait(seconds + 20)
                except subprocess.TimeoutExpired:
                    recorder.kill()
                    recorder.wait(5)
                built.close_sockets()
            print(f"{'srtp-' + srtp if srtp else 'fanout'} N={n} at {rate:,.0f} pps in: {trial.out_pps:,.0f} out/s, loss {100 * trial.loss:.2f}%, "
                  f"{trial.cpu_us_per_out or 0:.2f} µs/out (py-spy's sampling adds some)")
    finally:
        server.stop()
    return raw


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fanout", type=int, default=100)
    parser.add_argument("--rate", type=float, default=1000.0, help="input packets/s")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--srtp", choices=sorted(PROFILE_NAMES), help="over WebRTC with this SRTP profile")
    parser.add_argument("--out", type=Path, default=OUT_DIR)
    args = parser.parse_args(argv)
    os.sched_setaffinity(0, {cpus.layout()[1]})
    raw = asyncio.run(profile(args.fanout, args.rate, args.seconds, args.out, args.srtp))
    if raw.exists():
        print(f"collapsed stacks: {raw}\n")
        print(summarize(raw))
    else:
        print("py-spy wrote nothing (is it installed? pip install -e '.[bench]')")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
