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
