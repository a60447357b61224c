"""The mediasoup-v2 rows' driver against a real built mediasoup 2.6.19: the Node script builds
a fan-out through mediasoup's server API, the harness finds and pins its one worker, and a
tiny bounded run at a low rate delivers every packet, checked, as for the Tureen rows.
Correctness only, never timings.

Runs only when $TUREEN_BENCH_MEDIASOUP_V2 names a built mediasoup 2.6.19 (CI never builds it;
benchmarks/mediasoup_v2.HOW_TO_BUILD says how), skipped with that reason otherwise."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # benchmarks/ is a folder of the repo, not an installed package
    sys.path.insert(0, str(ROOT))

from benchmarks import cpus, mediasoup_v2  # noqa: E402
from benchmarks.ctools import build_tools  # noqa: E402
from benchmarks.load import Timing  # noqa: E402
from benchmarks.search import Context, run_trial  # noqa: E402

BUILD = os.environ.get(mediasoup_v2.ENV)
pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(not BUILD, reason=f"no built mediasoup 2.6.19: set {mediasoup_v2.ENV} "
                                         f"({mediasoup_v2.HOW_TO_BUILD})"),
]
TIMING = Timing(warmup=0.2, window=0.4, drain=1.5)  # a long drain: the machine is shared
RATE = 100.0  # packets/s
# More consumers than the driver sets up at once (its CHUNK of 50): every chunk's consumers
# must be enabled on their own peers' transports.
CONSUMERS = 55


def test_v2_fanout_delivers_every_packet_and_stops_its_processes(tmp_path: Path) -> None:
    folder, _ = mediasoup_v2.resolve(BUILD)
    assert folder is not None
    forwarder_cpu, tools_cpu = cpus.layout()
    context = Context(build_tools(tmp_path / "bin").rtpload, tools_cpu, TIMING)

    async def run() -> tuple[dict, mediasoup_v2.MediasoupV2]:
        server = mediasoup_v2.MediasoupV2(folder, tmp_path, forwarder_cpu, tools_cpu)
        try:
            await server.start()
            assert server.version.startswith("2.")
            (worker,) = server.worker_pids
            assert os.sched_getaffinity(worker) == {forwarder_cpu}
            built = await server.fanout(CONSUMERS)
            try:
                trial = await run_trial(context, built.topology, built.input_ports, server.worker_pids, RATE)
            finally:
                built.close_sockets()
            return trial.report | {"cpu_us_per_out": trial.cpu_us_per_out}, server
        finally:
            await server.stop()

    report, server = asyncio.run(run())
    assert report["consumers"] == CONSUMERS and report["sent_total"] > 0
    assert report["received_total"] == report["expected_total"] == CONSUMERS * report["sent_total"]
    for key in ("seq_errors", "ts_errors", "pt_errors", "misrouted", "unexpected", "silent_consumers"):
        assert report[key] == 0, (key, report)
    assert report["cpu_us_per_out"] is not None  # the worker's own CPU was read
    assert server.process is not None and server.process.returncode is not None
    assert not psutil.pid_exists(server.worker_pids[0]) or psutil.Process(server.worker_pids[0]).status() == "zombie"


def test_the_driver_reports_a_bad_command(tmp_path: Path) -> None:
    folder, _ = mediasoup_v2.resolve(BUILD)
    assert folder is not None

    async def run() -> None:
        server = mediasoup_v2.MediasoupV2(folder, tmp_path, *cpus.layout())
        try:
            await server.start()
            with pytest.raises(RuntimeError, match="unknown command"):
                await server._command({"cmd": "nonsense"})
        finally:
            await server.stop()

    asyncio.run(run())
