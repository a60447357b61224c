"""benchmarks/cpus.py's run-queue wait per slice: read from /proc/<pid>/schedstat."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # benchmarks/ is a folder of the repo, not an installed package
    sys.path.insert(0, str(ROOT))

from benchmarks import cpus  # noqa: E402


def test_wait_per_slice_is_the_window_delta_per_process_and_none_without_slices() -> None:
    before = [(1_000, 10), (5_000, 3), (0, 0)]
    after = [(31_000, 20), (5_000, 3), (0, 0)]
    assert cpus.wait_us_per_slice(before, after) == [3.0, None, None]


def test_main_thread_waits_reads_this_process_and_zero_for_a_gone_one() -> None:
    (wait, slices), gone = cpus.main_thread_waits([os.getpid(), 2**22 + 12345])
    assert wait >= 0 and slices > 0
    assert gone == (0, 0)


def test_the_layout_does_not_change_once_the_harness_pins_itself_to_the_tools_core() -> None:
    # benchmarks.run's main pins itself to the tools' core, then Bench asks for the layout
    # again: read afresh, it was (tools, tools), and every forwarder ran beside the load tool.
    saved = os.sched_getaffinity(0)
    try:
        forwarder_cpu, tools_cpu = cpus.layout()
        os.sched_setaffinity(0, {tools_cpu})
        assert cpus.layout() == (forwarder_cpu, tools_cpu)
        if len(saved) > 1:
            assert forwarder_cpu != tools_cpu
    finally:
        os.sched_setaffinity(0, saved)
