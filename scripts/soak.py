#!/usr/bin/env python3
"""Soak: the load test's churn (tests/load_churn.py) against a real `tureen serve`, for a long
time, sampling memory and CPU. Not run in CI.

    .venv/bin/python scripts/soak.py                       # 1 hour, 2 workers, no kills
    .venv/bin/python scripts/soak.py --duration 10m --kill-every 3 --out soak-out

Each cycle: ROOMS rooms fill with PEERS plain-RTP peers joining, producing, consuming and
leaving in a seeded random order while media flows; every enabled consumer must receive RTP;
with --kill-every, a worker is killed (SIGKILL) when a kill is due, every peer rebuilds and
media must flow again; a second wave churns; everyone leaves, the rooms close, and nothing may
be left (rooms, worker objects, pipes, UDP sockets, supervisor tasks). Every --sample seconds the
supervisor's and each worker's RSS and CPU go to soak.csv; at the end soak.png plots them
(needs matplotlib: `pip install -e '.[bench]'`) and a summary is printed. Exit status 1 when
a cycle found a problem (each is printed), 0 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the churn and the server helper live with the tests

from load_churn import (  # noqa: E402
    Churn,
    MiB,
    disagreements,
    leftovers,
    server_figures,
    settled_figures,
)
from support import ServerProcess  # noqa: E402
from tureen.shared.client import TureenClient  # noqa: E402


def duration(text: str) -> float:
    """Seconds from '3600', '90s', '10m' or '1h'."""
    units = {"s": 1, "m": 60, "h": 3600}
    if text and text[-1] in units:
        return float(text[:-1]) * units[text[-1]]
    return float(text)


class Sampler:
    """Every `interval` s one CSV row: time, rooms, peers, supervisor tasks/RSS/CPU, and per
    worker index its pid, RSS and CPU (a restarted worker keeps its index, with a new pid)."""

    def __init__(
        self, client: TureenClient, churn: Churn, path: Path, workers: int, interval: float
    ) -> None:
        self.client = client
        self.churn = churn
        self.interval = interval
        self.workers = workers
        self.rows: list[dict[str, Any]] = []
        self.kills: list[float] = []  # times (s since start) of worker kills
        self.cycle_ends: list[
            float
        ] = []  # times (s since start) when a cycle had emptied the server
        self.started = time.monotonic()
        self._procs: dict[int, psutil.Process] = {}  # cpu_percent needs the same object twice
        self._file = open(path, "w", newline="")  # noqa: SIM115 - closed in close()
        fields = ["t", "rooms", "peers", "tasks", "sup_rss_mib", "sup_cpu"]
        for i in range(workers):
            fields += [f"w{i}_pid", f"w{i}_rss_mib", f"w{i}_cpu"]
        self._csv = csv.DictWriter(self._file, fieldnames=fields)
        self._csv.writeheader()

    def _cpu_rss(self, pid: int) -> tuple[float, float]:
        proc = self._procs.get(pid)
        if proc is None:
            proc = self._procs[pid] = psutil.Process(pid)
            proc.cpu_percent(None)
        return proc.cpu_percent(None), proc.memory_info().rss / MiB

    async def sample(self) -> None:
        info = await self.client.server_info()
        cpu, rss = self._cpu_rss(info["pid"])
        row: dict[str, Any] = {
            "t": round(time.monotonic() - self.started, 1),
            "rooms": info["rooms"],
            "peers": len(self.churn.active()),
            "tasks": info["tasks"],
            "sup_rss_mib": round(rss, 2),
            "sup_cpu": round(cpu, 1),
        }
        for w in info["workers"]:
            if w["index"] >= self.workers:
                continue
            with contextlib.suppress(psutil.Error):
                cpu, rss = self._cpu_rss(w["pid"])
                row |= {
                    f"w{w['index']}_pid": w["pid"],
                    f"w{w['index']}_rss_mib": round(rss, 2),
                    f"w{w['index']}_cpu": round(cpu, 1),
                }
        self.rows.append(row)
        self._csv.writerow(row)
        self._file.flush()

    async def run(self) -> None:
        while True:
            with contextlib.suppress(Exception):  # a sample missed while a worker restarts
                await self.sample()
            await asyncio.sleep(self.interval)

    def close(self) -> None:
        self._file.close()


def plot(rows: list[dict[str, Any]], kills: list[float], workers: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    minutes = [r["t"] / 60 for r in rows]
    fig, (mem, cpu, load) = plt.subplots(3, 1, sharex=True, figsize=(11, 9))
    series = [("supervisor", "sup")] + [(f"worker {i}", f"w{i}") for i in range(workers)]
    for label, key in series:
        mem.plot(minutes, [r.get(f"{key}_rss_mib") for r in rows], label=label)
        cpu.plot(minutes, [r.get(f"{key}_cpu") for r in rows], label=label)
    load.plot(minutes, [r["peers"] for r in rows], label="peers (this client)", color="tab:gray")
    load.plot(
        minutes, [r["tasks"] for r in rows], label="supervisor asyncio tasks", color="tab:purple"
    )
    mem.set_ylabel("RSS (MiB)")
    cpu.set_ylabel("CPU (% of one core)")
    load.set_ylabel("count")
    load.set_xlabel("minutes")
    for ax in (mem, cpu, load):
        for i, t in enumerate(kills):
            ax.axvline(
                t / 60,
                color="tab:red",
                linestyle=":",
                label="worker killed" if i == 0 and ax is mem else None,
            )
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", fontsize="small")
    mem.set_title("Tureen soak: churning plain-RTP peers (scripts/soak.py)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


async def cycle(
    churn: Churn, args: argparse.Namespace, kill_due: bool, server: ServerProcess, sampler: Sampler
) -> list[str]:
    """One fill-churn-(kill)-churn-empty cycle; returns the problems it found."""
    problems: list[str] = []
    await churn.create_rooms(args.rooms)
    await churn.churn(args.peers, leave_share=0.2, producing_share=0.6)
    problems += await churn.settle(retry_errors=True)
    problems += await disagreements(churn.client, list(churn.rooms))
    problems += await churn.check_media()
    if kill_due:
        index = churn.rng.randrange(args.workers)
        sampler.kills.append(time.monotonic() - sampler.started)
        death = await churn.kill_worker(server, index)
        expected, got = death["expected"], death["got"]
        if death["newPid"] is None:
            problems.append(f"worker {index} was not restarted")
        for key, want in expected.items():
            if want - got.get(key, set()):
                problems.append(
                    f"{key}: not told {sorted(want - got.get(key, set()))} after worker {index} died"
                )
        for key, have in got.items():
            if have - expected.get(key, set()):
                problems.append(
                    f"{key}: told {sorted(have - expected.get(key, set()))}, not on worker {index}"
                )
        problems += await churn.settle(retry_errors=True)
        problems += await disagreements(churn.client, list(churn.rooms))
        problems += await churn.check_media()
    await churn.churn(args.peers // 2, leave_share=0.5, producing_share=0.6)
    problems += await churn.settle(retry_errors=True)
    problems += await churn.check_media()
    await churn.leave_all()
    await churn.close_rooms()
    problems += await leftovers(churn.client)
    return problems


async def soak(args: argparse.Namespace, out: Path) -> int:
    # One control connection relays for every peer, at about the default per-connection
    # rate limit (1000 requests/s) on a 2-core machine, beyond it on a faster one: lift it
    # for this server (our environment is its environment) unless the caller set it.
    os.environ.setdefault("TUREEN_MAX_REQUESTS_PER_SECOND", "1000000")
    os.environ.setdefault("TUREEN_MAX_REQUESTS_BURST", "1000000")
    # Warnings only in the server log: an hour of debug lines would fill the disk.
    server = ServerProcess(out, workers=args.workers, extra=["--log-level", "warning"])
    try:
        server.wait_ready()
        async with TureenClient(server.endpoint, timeout=30.0, max_events=1000) as client:
            churn = Churn(client, args.seed, rate=args.rate, concurrency=args.concurrency)
            churn.start_media()
            sampler = Sampler(client, churn, out / "soak.csv", args.workers, args.sample)
            sampling = asyncio.get_running_loop().create_task(sampler.run())
            started = time.monotonic()
            deadline = started + args.duration
            next_kill = started + args.kill_every * 60 if args.kill_every else float("inf")
            baseline: dict[str, Any] | None = None
            problems: list[str] = []
            cycles = 0
            reported = 0
            while time.monotonic() < deadline:
                kill_due = time.monotonic() >= next_kill
                if kill_due:
                    next_kill += args.kill_every * 60
                found = await cycle(churn, args, kill_due, server, sampler)
                cycles += 1
                sampler.cycle_ends.append(time.monotonic() - sampler.started)
                if baseline is None:
                    baseline = figures = await server_figures(client)  # after a cycle: warm
                else:
                    # Retried a while: the sampler's own server.info is a task for a moment.
                    figures, growth = await settled_figures(
                        client, baseline, rss_margin=args.rss_margin * MiB
                    )
                    found += growth
                new_errors = churn.errors[reported:]
                reported = len(churn.errors)
                found += [f"request failed: {e}" for e in new_errors[:20]]
                problems += [f"cycle {cycles}: {p}" for p in found]
                print(
                    f"[{(time.monotonic() - started) / 60:5.1f} min] cycle {cycles}{' (worker killed)' if kill_due else ''}: "
                    f"supervisor {figures['rss'] / MiB:.1f} MiB, tasks {figures['tasks']}, "
                    + ", ".join(
                        f"worker {i} {w['rss'] / MiB:.1f} MiB"
                        for i, w in figures["workers"].items()
                    )
                    + f"; {len(found)} problems, {len(new_errors)} failed requests",
                    flush=True,
                )
            await churn.stop_media()
            sampling.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampling
            await sampler.sample()
            sampler.close()
    finally:
        server.stop()
    # The server's own account: errors (other than the kills' "exited unexpectedly") and tracebacks.
    log_lines = server.log_path.read_text(errors="replace").splitlines()
    problems += [
        f"server log: {line}"
        for line in log_lines
        if ((" ERROR " in line or " CRITICAL " in line) and "exited unexpectedly" not in line)
        or "Traceback" in line
    ]
    summarize(sampler, args.workers, cycles, churn, problems)
    try:
        plot(sampler.rows, sampler.kills, args.workers, out / "soak.png")
        print(
            f"plot: {out / 'soak.png'}; samples: {out / 'soak.csv'}; server log: {server.log_path}"
        )
    except ImportError:
        print(
            "matplotlib is missing (pip install -e '.[bench]'): no plot; samples in",
            out / "soak.csv",
        )
    return 1 if problems else 0


def summarize(
    sampler: Sampler, workers: int, cycles: int, churn: Churn, problems: list[str]
) -> None:
    rows = sampler.rows
    seconds = rows[-1]["t"] if rows else 0.0
    print(
        f"\n{cycles} cycles, {len(rows)} samples, {churn.joins} joins, {churn.requests} peer requests "
        f"({churn.requests / max(seconds, 1):.0f}/s); tolerated races: {dict(churn.tolerated)}"
    )
    # "warm": the first sample after the first cycle emptied the server (imports, arenas and
    # caches are in place); growth from there to "end" is what a leak would show.
    first_end = sampler.cycle_ends[0] if sampler.cycle_ends else 0.0
    warm = next((r for r in rows if r["t"] >= first_end), rows[0])
    print(
        f"{'process':<12} {'RSS start':>10} {'RSS warm':>9} {'RSS max':>9} {'RSS end':>9} {'CPU mean':>9} {'CPU max':>8}"
    )
    for label, key in [("supervisor", "sup")] + [(f"worker {i}", f"w{i}") for i in range(workers)]:
        rss = [r[f"{key}_rss_mib"] for r in rows if r.get(f"{key}_rss_mib") is not None]
        cpu = [r[f"{key}_cpu"] for r in rows[1:] if r.get(f"{key}_cpu") is not None]
        if not rss:
            continue
        print(
            f"{label:<12} {rss[0]:>9.1f}M {warm.get(f'{key}_rss_mib', rss[0]):>8.1f}M {max(rss):>8.1f}M "
            f"{rss[-1]:>8.1f}M {sum(cpu) / max(1, len(cpu)):>8.1f}% {max(cpu, default=0):>7.1f}%"
        )
    if problems:
        print(f"\n{len(problems)} problems:")
        for p in problems[:50]:
            print("  " + p)
    else:
        print("\nno problems: every cycle left nothing behind and media flowed to every consumer")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--duration",
        type=duration,
        default=3600.0,
        help="how long: 3600, 90s, 10m, 1h (default 1h)",
    )
    parser.add_argument(
        "--kill-every",
        type=float,
        default=0.0,
        metavar="MINUTES",
        help="kill -9 a worker every N minutes (0: never)",
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rooms", type=int, default=24)
    parser.add_argument(
        "--peers",
        type=int,
        default=200,
        help="joins per cycle's first wave (half as many in the second)",
    )
    parser.add_argument(
        "--rate", type=float, default=8.0, help="RTP packets per second per producer"
    )
    parser.add_argument(
        "--concurrency", type=int, default=16, help="peer operations in flight at once"
    )
    parser.add_argument("--sample", type=float, default=5.0, help="seconds between samples")
    parser.add_argument(
        "--rss-margin",
        type=float,
        default=24.0,
        help="MiB a process may grow above its warm baseline",
    )
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument(
        "--out", type=Path, default=None, help="folder for soak.csv, soak.png and the server log"
    )
    args = parser.parse_args()
    if args.seed is None:
        args.seed = random.randrange(1 << 32)
    out = args.out or Path(tempfile.mkdtemp(prefix="tureen-soak-"))
    out.mkdir(parents=True, exist_ok=True)
    print(f"soak: {args.duration / 60:.1f} min, seed {args.seed}, output in {out}", flush=True)
    return asyncio.run(soak(args, out))


if __name__ == "__main__":
    sys.exit(main())
