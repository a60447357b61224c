"""benchmarks.run's plan: the hosts scenario runs by default (quick and full), `--hosts ''`
skips it, and out-of-bounds counts or rates are refused before anything starts."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # benchmarks/ is a folder of the repo, not an installed package
    sys.path.insert(0, str(ROOT))

from benchmarks.run import make_plan, parse_args  # noqa: E402


@pytest.mark.parametrize("mode", [[], ["--quick"]])
def test_the_hosts_scenario_is_in_both_modes(mode: list[str]) -> None:
    plan = make_plan(parse_args(mode))
    assert plan.hosts == [100]
    assert plan.hosts_rate == 100.0


def test_hosts_can_be_skipped_or_resized() -> None:
    assert make_plan(parse_args(["--quick", "--hosts", ""])).hosts == []
    plan = make_plan(parse_args(["--hosts", "20,50", "--hosts-rate", "250"]))
    assert (plan.hosts, plan.hosts_rate) == ([20, 50], 250.0)


@pytest.mark.parametrize("args", [["--hosts", "0"], ["--hosts", "401"], ["--hosts-rate", "0"],
                                  ["--hosts-rate", "5000"]])
def test_unbounded_hosts_loads_are_refused(args: list[str]) -> None:
    with pytest.raises(SystemExit) as refused:
        make_plan(parse_args(args))
    assert "--hosts" in str(refused.value)
