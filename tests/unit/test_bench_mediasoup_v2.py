"""The mediasoup-v2 rows' pure parts: which build runs (--mediasoup-v2 / the env var, a clear
refusal of a folder that is not a built mediasoup 2.x, one line saying how to build when none
is given), the driver's replies, and the `vs mediasoup v2` figures. The rows themselves need
a built mediasoup (tests/integration/test_bench_mediasoup_v2_driver.py, skipped without one)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # benchmarks/ is a folder of the repo, not an installed package
    sys.path.insert(0, str(ROOT))

from benchmarks import mediasoup_v2  # noqa: E402
from benchmarks.report import Row  # noqa: E402
from benchmarks.run import make_plan, parse_args  # noqa: E402
from benchmarks.scenarios import MEDIA_CODECS, _rtp_parameters  # noqa: E402
from benchmarks.search import Search, Trial  # noqa: E402


def fake_build(folder: Path, version: str = "2.6.19", name: str = "mediasoup", worker: bool = True) -> Path:
    """A folder shaped like an npm-installed mediasoup (what check_build looks at)."""
    (folder / "lib").mkdir(parents=True)
    (folder / "package.json").write_text(json.dumps({"name": name, "version": version}))
    (folder / "lib" / "mediasoup.js").write_text("")
    if worker:
        binary = folder / mediasoup_v2.WORKER_BINARY
        binary.parent.mkdir(parents=True)
        binary.write_text("")
        binary.chmod(0o755)
    return folder


@pytest.fixture
def node_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """check_build also wants Node; these tests are about the folder, not the machine."""
    monkeypatch.setattr(mediasoup_v2.shutil, "which", lambda name: f"/usr/bin/{name}")


def test_no_build_given_skips_with_how_to_build() -> None:
    folder, skipped = mediasoup_v2.resolve(None, {})
    assert folder is None
    assert skipped and "skipped" in skipped and "npm pack mediasoup@2.6.19" in skipped
    assert mediasoup_v2.ENV in skipped and "--mediasoup-v2" in skipped


def test_the_option_wins_over_the_env_var_and_empty_skips(tmp_path: Path, node_on_path: None) -> None:
    build = fake_build(tmp_path / "package")
    assert mediasoup_v2.resolve(None, {mediasoup_v2.ENV: str(build)}) == (build, None)
    assert mediasoup_v2.resolve(str(build), {mediasoup_v2.ENV: "/nowhere"}) == (build, None)
    folder, skipped = mediasoup_v2.resolve("", {mediasoup_v2.ENV: str(build)})
    assert folder is None and skipped


@pytest.mark.parametrize(("kwargs", "said"), [
    ({"version": "3.19.0"}, "not mediasoup 2.x"),
    ({"name": "mediasoup-client"}, "not mediasoup 2.x"),
    ({"worker": False}, "mediasoup-worker"),
])
def test_a_folder_that_is_not_a_built_v2_is_refused(tmp_path: Path, node_on_path: None,
                                                    kwargs: dict, said: str) -> None:
    build = fake_build(tmp_path / "package", **kwargs)
    with pytest.raises(mediasoup_v2.BuildMissing) as refused:
        mediasoup_v2.resolve(str(build), {})
    assert said in str(refused.value) and "npm pack mediasoup@2.6.19" in str(refused.value)


def test_a_missing_folder_and_a_missing_node_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(mediasoup_v2.BuildMissing, match="no package.json"):
        mediasoup_v2.check_build(tmp_path / "nothing")
    build = fake_build(tmp_path / "package")
    monkeypatch.setattr(mediasoup_v2.shutil, "which", lambda name: None)
    with pytest.raises(mediasoup_v2.BuildMissing, match="node is not on PATH"):
        mediasoup_v2.check_build(build)


def test_the_plan_has_v2_rows_at_the_fanout_sizes_only(tmp_path: Path, node_on_path: None,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(mediasoup_v2.ENV, raising=False)
    build = fake_build(tmp_path / "package")
    without = make_plan(parse_args(["--quick", "--fanout", "1,10,100", "--srtp", "100"]))
    plan = make_plan(parse_args(["--quick", "--fanout", "1,10,100", "--srtp", "100",
                                 "--mediasoup-v2", str(build)]))
    assert without.mediasoup_v2 is None and without.v2_sizes() == [] and without.mediasoup_v2_skipped
    assert plan.mediasoup_v2 == build and plan.mediasoup_v2_skipped is None
    assert plan.v2_sizes() == [1, 10, 100]
    assert plan.searches == without.searches + 3  # no SRTP row: v2's plain transports have none
    assert plan.c_sizes(srtp=True) == without.c_sizes(srtp=True)


def test_a_broken_build_stops_the_run_before_anything_starts(tmp_path: Path, node_on_path: None) -> None:
    build = fake_build(tmp_path / "package", worker=False)
    with pytest.raises(SystemExit) as refused:
        make_plan(parse_args(["--quick", "--mediasoup-v2", str(build)]))
    assert "--mediasoup-v2" in str(refused.value) and "mediasoup-worker" in str(refused.value)


def test_the_fanout_request_sends_what_the_tureen_rows_send() -> None:
    request = mediasoup_v2.fanout_request(4000, [4001, 4002])
    assert request["mediaCodecs"] == MEDIA_CODECS
    assert request["producer"] == {"kind": "video",
                                   "rtpParameters": _rtp_parameters("video", mediasoup_v2.SOURCE_SSRC)}
    assert (request["sourcePort"], request["sinkPorts"]) == (4000, [4001, 4002])


def test_driver_replies_are_checked() -> None:
    assert mediasoup_v2.driver_reply(b'{"ok": "start", "version": "2.6.19"}\n', "start")["version"] == "2.6.19"
    with pytest.raises(RuntimeError, match="fanout: no Producer"):
        mediasoup_v2.driver_reply(b'{"error": "no Producer"}\n', "fanout")
    with pytest.raises(RuntimeError, match="ended without answering"):
        mediasoup_v2.driver_reply(b"", "start")
    with pytest.raises(RuntimeError, match="answered"):
        mediasoup_v2.driver_reply(b'{"ok": "start"}', "fanout")
    with pytest.raises(RuntimeError, match="not JSON"):
        mediasoup_v2.driver_reply(b"{oops", "start")


def trial(out_pps: float, us: float | None, held: bool = True) -> Trial:
    return Trial(rate=out_pps, input_pps=out_pps, out_pps=out_pps, loss=0.0 if held else 0.01,
                 cpu_us_per_out=us, cpu_percent=50.0, latency_p50_us=100, latency_p99_us=200,
                 drops_input=0, drops_sink=0, errors=0, generator_limited=False,
                 report={"received_total": 0, "expected_total": 0})


def row(target: str, best: Trial | None, same: Trial | None = None, scenario: str = "fanout N=100") -> Row:
    search = Search(trials=[], best=best, limit="forwarder", same_rate=[same] if same else [])
    return Row(scenario, target, 100, search)


def test_versus_divides_tureen_by_v2_for_output_and_v2_by_tureen_for_cpu() -> None:
    v2 = row("mediasoup-v2", trial(20_000, 5.0))
    # run.py's trials of both at one rate they both hold (not the C row's common rate)
    v2.extra["vs_tureen_same"] = {"tureen": trial(10_000, 2.5).brief(),
                                  "mediasoup_v2": trial(10_000, 5.5, held=False).brief()}
    rows = [row("c", trial(90_000, 1.0), same=trial(40_000, 1.2)),
            row("tureen", trial(60_000, 2.0), same=trial(40_000, 2.2)),
            row("tureen-py", trial(30_000, 4.0)), v2]
    (item,) = mediasoup_v2.versus(rows)
    assert item.out_ratio == pytest.approx(3.0)  # 60,000 / 20,000
    assert item.cpu_ratio == pytest.approx(2.5)  # 5.0 / 2.0: v2 spends 2.5x Tureen's per copy
    text = mediasoup_v2.versus_text(rows)
    assert "fanout N=100: tureen 60,000 vs mediasoup-v2 20,000 out pps held: 3.00x" in text
    assert "2.00 vs 5.00 µs/out: 2.50x cpu" in text
    assert "at one rate both hold, 10,000 in/s: 2.50 vs 5.50 µs/out: 2.20x cpu; a trial lost packets" in text


def test_versus_leaves_out_scenarios_without_both_held_rows() -> None:
    rows = [row("tureen", trial(60_000, 2.0)), row("mediasoup-v2", None),
            row("mediasoup-v2", trial(1_000, 9.0), scenario="fanout N=1")]
    assert mediasoup_v2.versus(rows) == []
    assert mediasoup_v2.versus_text(rows) == ""
    (item,) = mediasoup_v2.versus([row("tureen", trial(6_000, None)), row("mediasoup-v2", trial(2_000, 9.0))])
    assert item.cpu_ratio is None and "-x" not in "\n".join(item.lines())
    # Only the Python core ran (--cores python): its rows stand for Tureen, named so.
    (item,) = mediasoup_v2.versus([row("tureen-py", trial(6_000, 3.0)), row("mediasoup-v2", trial(2_000, 9.0))])
    assert item.tureen == "tureen-py" and item.lines()[0].startswith("  fanout N=100: tureen-py 6,000")
