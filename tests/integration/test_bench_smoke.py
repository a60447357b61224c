"""The benchmark harness works: its C tools build, and a tiny bounded run at a low rate
delivers every packet, checked, through the C baseline, a Tureen worker (with each fan-out
core, which the worker must report running), and a cross-worker pipe. Correctness only
(counts, SSRC/PT/sequence/timestamp checks); never timings."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # benchmarks/ is a folder of the repo, not an installed package
    sys.path.insert(0, str(ROOT))

from tureen.shared.client import TureenClient  # noqa: E402
from tureen.workers import native  # noqa: E402

from benchmarks import cpus, scenarios  # noqa: E402
from benchmarks.baseline import CForwarder  # noqa: E402
from benchmarks.ctools import Tools, build_tools  # noqa: E402
from benchmarks.load import Timing  # noqa: E402
from benchmarks.search import Context, Trial, run_trial  # noqa: E402
from benchmarks.srtp import PROFILE_NAMES  # noqa: E402
from benchmarks.tureen_server import TureenServer, core_mismatch  # noqa: E402
from benchmarks.webrtc import webrtc_fanout  # noqa: E402

pytestmark = pytest.mark.timeout(90)

# A long drain: the suite runs beside browser tests on 2 cores, where a worker can be off
# its CPU for a few hundred ms; a packet late by that much is not lost.
TIMING = Timing(warmup=0.2, window=0.4, drain=1.5)
RATE = 200.0  # packets/s: low enough for any machine, CI included


def assert_all_delivered(trial: Trial, consumers: int) -> None:
    report = trial.report
    assert report["consumers"] == consumers
    assert report["sent_total"] > 0
    assert report["received_total"] == report["expected_total"] == report["sent_total"] * consumers
    assert report["received_window"] == report["expected_window"]
    for key in ("seq_errors", "ts_errors", "pt_errors", "reordered", "misrouted", "unexpected",
                "silent_consumers", "send_errors"):
        assert report[key] == 0, (key, report)
    assert trial.loss == 0 and trial.held
    assert report["latency_us_p50"] >= 0


@pytest.fixture(scope="module")
def tools(tmp_path_factory: pytest.TempPathFactory) -> Tools:
    return build_tools(tmp_path_factory.mktemp("bench-bin"))


@pytest.fixture
def context(tools: Tools) -> Context:
    return Context(tools.rtpload, cpus.layout()[1], TIMING)


def test_c_baseline_delivers_every_packet(tools: Tools, context: Context) -> None:
    fwd = CForwarder(tools.cforward, 3, cpus.layout()[0], max_seconds=30)
    try:
        trial = asyncio.run(run_trial(context, fwd.built.topology, fwd.built.input_ports, fwd.pids, RATE))
    finally:
        counters = fwd.close()
    assert_all_delivered(trial, 3)
    assert counters["sent"] == 3 * counters["received"]


def test_c_meeting_baseline_routes_each_stream_to_every_other_peer(tools: Tools, context: Context) -> None:
    fwd = CForwarder.meeting(tools.cforward, 3, cpus.layout()[0], max_seconds=30)
    try:
        trial = asyncio.run(run_trial(context, fwd.built.topology, fwd.built.input_ports, fwd.pids, RATE))
    finally:
        counters = fwd.close()
    report = trial.report
    # 3 peers x (audio + video), each stream to the 2 others: 12 consumers, each checked for
    # its own SSRC, PT and stream at the right sink (a packet routed to the wrong consumer
    # would count as misrouted or unexpected).
    assert report["consumers"] == 12 and fwd.built.consumers == 12
    assert report["received_total"] == report["expected_total"] == 2 * report["sent_total"]
    for key in ("seq_errors", "ts_errors", "pt_errors", "misrouted", "unexpected", "silent_consumers"):
        assert report[key] == 0, (key, report)
    assert trial.loss == 0
    assert counters["sent"] == 2 * counters["received"]


async def _tureen_trial(context: Context, tmp: Path, workers: int, fanout: str | None = None,
                        **kw: object) -> tuple[Trial, dict, TureenServer]:
    forwarder_cpu, tools_cpu = cpus.layout()
    server = TureenServer(workers, tmp, forwarder_cpu, tools_cpu, fanout=fanout)
    try:
        async with TureenClient(server.endpoint, timeout=20.0) as client:
            await server.wait_ready(client)
            built = await scenarios.fanout(client, "smoke", 3, **kw)  # type: ignore[arg-type]
            try:
                trial = await run_trial(context, built.topology, built.input_ports, server.worker_pids, RATE)
            finally:
                built.close_sockets()
            return trial, built.workers_used, server
    finally:
        server.stop()


@pytest.mark.parametrize("core", ["native", "python"])
def test_tureen_fanout_delivers_every_packet(context: Context, tmp_path: Path, core: str) -> None:
    if core == "native" and not native.available():
        pytest.skip(native.WHY_NOT)
    trial, placed, server = asyncio.run(_tureen_trial(context, tmp_path, 1, fanout=core))
    assert server.cores == [core]  # what the worker reported in server.info, checked at start
    assert_all_delivered(trial, 3)
    assert trial.cpu_us_per_out is not None


def test_a_server_running_another_core_is_refused() -> None:
    assert core_mismatch("python", ["python", "python"]) is None
    assert core_mismatch(None, ["per-copy"]) is None  # the server's default: nothing asked
    assert "refusing" in (core_mismatch("native", ["native", "python"]) or "")
    assert "refusing" in (core_mismatch("python", ["per-copy"]) or "")


def test_tureen_cross_worker_delivers_every_packet(context: Context, tmp_path: Path) -> None:
    trial, placed, _ = asyncio.run(_tureen_trial(context, tmp_path, 2, away_from_producer=True))
    assert placed["consumers"] and placed["producer"] not in placed["consumers"]
    assert_all_delivered(trial, 3)


# --- SRTP: the C+SRTP baseline, and Tureen over real WebRtcTransports ---------------------


def assert_all_decrypted(trial: Trial, consumers: int) -> None:
    """Every packet was SRTP: protected by the sender, unprotected and checked by its sink."""
    assert_all_delivered(trial, consumers)
    report = trial.report
    assert report["srtp"] == 1 and report["srtp_errors"] == 0
    assert len(report["srtp_last"]) == consumers and all(index >= 0 for index, _ in report["srtp_last"])


@pytest.mark.parametrize("profile", ["gcm", "cm"])
def test_c_srtp_baseline_decrypts_every_packet(tools: Tools, context: Context, profile: str) -> None:
    fwd = CForwarder(tools.cforward, 3, cpus.layout()[0], max_seconds=30, srtp=profile)
    try:
        async def two_runs() -> list[Trial]:
            # Two runs: the second's fresh sink sessions must pick up the consumers' SRTP index.
            topo = fwd.built.topology
            topo.streams[0].seq = 65_500  # and the input's sequence number wraps in the first
            return [await run_trial(context, topo, fwd.built.input_ports, fwd.pids, RATE) for _ in range(2)]

        trials = asyncio.run(two_runs())
    finally:
        counters = fwd.close()
    for trial in trials:
        assert_all_decrypted(trial, 3)
    assert counters["srtp"] == 1 and counters["srtp_errors"] == 0
    assert counters["sent"] == 3 * counters["received"]


@pytest.mark.parametrize("profile", ["gcm", "cm"])
def test_tureen_webrtc_srtp_fanout_decrypts_every_packet(context: Context, tmp_path: Path, profile: str) -> None:
    async def body() -> list[Trial]:
        forwarder_cpu, tools_cpu = cpus.layout()
        server = TureenServer(1, tmp_path, forwarder_cpu, tools_cpu)
        try:
            async with TureenClient(server.endpoint, timeout=20.0) as client:
                await server.wait_ready(client)
                built = await webrtc_fanout(client, "smoke", 3, profile)
                try:
                    trials = [await run_trial(context, built.topology, built.input_ports, server.worker_pids, RATE)
                              for _ in range(2)]
                    worker = await client.dump_worker(0)
                finally:
                    built.close_sockets()
                webrtc = [t for t in worker["transports"] if t["kind"] == "webrtc"]
                assert len(webrtc) == 4  # the producer's and three consumers', all connected for real
                assert {(t["dtlsState"], t["srtpProfile"]) for t in webrtc} == {("connected", PROFILE_NAMES[profile])}
                return trials
        finally:
            server.stop()

    for trial in asyncio.run(body()):
        assert_all_decrypted(trial, 3)


# --- the same-rate comparison: its retry rule and its figures (fake trials, no load) ------


def _fake_trial(rate: float, us_per_out: float, lost: bool = False, drops_input: int = 0) -> Trial:
    return Trial(rate=rate, input_pps=rate, out_pps=rate * 100, loss=0.01 if lost else 0.0,
                 cpu_us_per_out=us_per_out, cpu_percent=50.0, latency_p50_us=1.0, latency_p99_us=2.0,
                 drops_input=drops_input, drops_sink=0, errors=0, generator_limited=False,
                 report={"received_total": 1, "expected_total": 1})


def test_a_starved_window_is_retried_once_and_an_overflowing_one_is_not() -> None:
    from benchmarks.search import trial_retried

    def run(results: list[Trial]) -> list[Trial]:
        queue = list(results)

        async def trial(rate: float) -> Trial:
            return queue.pop(0)
        return asyncio.run(trial_retried(trial, 100.0))

    held, starved, overflowed = _fake_trial(100, 3.0), _fake_trial(100, 3.0, lost=True), \
        _fake_trial(100, 3.0, lost=True, drops_input=5)
    assert run([held]) == [held]
    assert run([overflowed]) == [overflowed]
    assert run([starved, held]) == [starved, held]
    assert run([starved, starved, held]) == [starved, starved]  # once only


def test_same_rate_figures_compare_c_and_tureen_at_the_common_rate() -> None:
    from benchmarks.report import Row, table, targets
    from benchmarks.search import Search

    c = Row("fanout N=100", "c", 100, Search([], _fake_trial(1000, 3.0), "forwarder",
                                             same_rate=[_fake_trial(800, 4.0)]))
    t = Row("fanout N=100", "tureen", 100, Search([], _fake_trial(1200, 2.0), "forwarder",
                                                  same_rate=[_fake_trial(800, 5.0)]), baseline=c)
    assert t.ratios()[1] == 1.5  # at each one's own held rate
    same = t.same_rate()
    assert same is not None and same["ratio_cpu"] == 0.8 and same["c_us_per_out"] == 4.0 and same["held"]
    assert t.to_json()["same_rate"]["rate"] == 800
    assert "x C cpu @same" in table([c, t]) and "0.80" in table([c, t])
    assert "at the same rate, 800 in/s: C 4.00 vs 5.00 µs/out: 0.80 cpu" in targets([c, t])


def _with_latency(trial: Trial, p50: float, p99: float) -> Trial:
    trial.latency_p50_us, trial.latency_p99_us = p50, p99
    return trial


def test_latency_columns_and_pipe_targets_compare_with_c_and_the_same_worker() -> None:
    from benchmarks.report import Row, table, targets
    from benchmarks.search import Search

    c = Row("fanout N=10", "c", 10, Search([], _fake_trial(1000, 3.0), "forwarder",
                                           half_rate=_with_latency(_fake_trial(500, 3.0), 40, 900)))
    single = Row("fanout N=10", "tureen", 10,
                 Search([], _fake_trial(900, 4.0), "forwarder",
                        half_rate=_with_latency(_fake_trial(450, 4.0), 100, 2000)), baseline=c)
    cross = Row("cross N=10", "tureen", 10,
                Search([], _fake_trial(800, 5.0), "forwarder",
                       half_rate=_with_latency(_fake_trial(400, 5.0), 3600, 9000)), baseline=c)
    text = table([c, single, cross])
    assert "C's @½" in text
    cells = [c.strip() for c in text.splitlines()[-1].split("|")]
    assert cells[11:13] == ["3600/9000", "40/900"]  # the cross row's own latency, then its C baseline's
    lines = targets([c, single, cross])
    assert "cross N=10 p50 @½ within 200 µs of fanout N=10's: 3,600 vs 100 µs" in lines
    assert "+3,500 µs (missed by 3,300 µs)" in lines
    assert "200,000 vs 250,000 out/s/core: 0.80x (missed by 0.15)" in lines


def test_cpu_time_is_read_per_thread_in_nanoseconds() -> None:
    import os
    import threading

    def spin() -> None:
        sum(range(300_000))

    before = cpus.thread_cpu_ns([os.getpid()])
    worker = threading.Thread(target=spin, name="spinner")
    worker.start()
    spin()
    worker.join(10)
    after = cpus.thread_cpu_ns([os.getpid()])
    delta = cpus.cpu_delta(before, after)
    mine = [ns for (pid, tid, _), ns in delta.items() if pid == os.getpid() and tid == threading.get_native_id()]
    assert mine and mine[0] > 0  # this thread's own clock moved (by the spin), read from schedstat
    assert sum(cpus.by_thread_name(delta).values()) == pytest.approx(sum(delta.values()) / 1e9)


def test_memory_benchmark_runs_every_step(capsys: pytest.CaptureFixture[str]) -> None:
    """`python -m benchmarks.memory`, tiny: every step runs and prints (no figure checked)."""
    from benchmarks import memory

    assert memory.main(["--count", "3"]) == 0
    out = capsys.readouterr().out
    for step in ("join", "transports", "connected", "consumers", "plain transports", "plain consumers",
                 "SrtpContext gcm", "SrtpContext cm", "handshake done (3/3 pairs)"):
        assert step in out, (step, out)


def test_consumers_check_runs_and_every_consumer_gets_its_copies(capsys: pytest.CaptureFixture[str]) -> None:
    """`python -m benchmarks.memory --consumers N`, tiny: the check runs, reaches every consumer
    and prints the targets (no figure of memory or time is checked)."""
    from benchmarks import memory

    for bad in (["--consumers", str(memory.MAX_CONSUMERS + 1)], ["--consumers", "4", "--rate", "0"]):
        with pytest.raises(SystemExit):
            memory.main(bad)
    assert memory.main(["--consumers", "6", "--seconds", "1", "--rate", "5"]) == 0
    out = capsys.readouterr().out
    for text in ("check transports", "check consumers", "check after load", "silent consumers 0, seq errors 0",
                 "target < 0.1 %", "target <= 8 KiB"):
        assert text in out, (text, out)


def test_the_load_tool_sends_to_loopback_or_the_test_network_only(tools: Tools, tmp_path: Path) -> None:
    """rtpload's `dest`: 127.0.0.0/8 and TEST-NET-2 (the hosts scenario's namespaces) only."""
    import subprocess

    for dest, accepted in (("8.8.8.8", False), ("192.168.1.1", False), ("198.51.101.1", False),
                           ("not-an-ip", False), ("198.51.100.7", True), ("127.0.0.2", True)):
        config = tmp_path / "dest.conf"
        config.write_text(f"run 1 0 0 0 1\ndest {dest}\n")
        result = subprocess.run([str(tools.rtpload), str(config)], capture_output=True, text=True, timeout=10)
        assert (result.returncode == 0) == accepted, (dest, result.returncode, result.stderr)
        if not accepted:
            assert "bad config line" in result.stderr


async def test_the_hosts_scenario_crosses_host_a_link_once_per_far_host(tools: Tools) -> None:
    """benchmarks/hosts.py with 20 consumers: every packet delivered in both layouts; host
    A's link carries about one stream per far host (B and C), not one per consumer as when
    they all sit on A. Byte counts of the veth, not timings."""
    from benchmarks import hosts

    result = await hosts.run_hosts(tools.rtpload, cpus.layout()[1], TIMING, n=20, rate=100.0)
    if "skipped" in result:
        pytest.skip(result["skipped"])
    one, spread = result["_layouts"]
    for layout in (one, spread):
        assert_all_delivered(layout.trial, 20)
    assert spread.placed == {"B": 10, "C": 10}
    # Two copies (one per far host) plus control traffic, against 20 copies.
    assert 1.8 <= spread.streams_on_link < 3, hosts.text(result)
    assert one.streams_on_link > 15, hosts.text(result)
    print("\n" + hosts.text(result))
