"""The atheris part of the fuzz tier (test_fuzz.py has the rest; one file each so that
`pytest --dist loadfile` runs them side by side): every target runs RUNS[target] libFuzzer
iterations in a subprocess, starting from its corpus; new inputs go to a temporary folder,
not into the repository. Skipped where atheris is not installed (no wheel for this Python or
machine), unless TUREEN_REQUIRE_ATHERIS=1."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from .harness import CORPUS, TARGETS
from .test_fuzz import ROOT, RUNS


def _atheris_available() -> bool:
    try:
        import atheris  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.parametrize("target", TARGETS)
def test_atheris_runs(target: str, tmp_path: Path) -> None:
    if not _atheris_available():
        if os.environ.get("TUREEN_REQUIRE_ATHERIS") == "1":
            pytest.fail("atheris is not installed (pip install -e '.[test]')")
        pytest.skip("atheris is not installed: no wheel for this Python or machine")
    grown, artifacts = tmp_path / "grown", tmp_path / "artifacts"
    grown.mkdir()
    artifacts.mkdir()
    cmd = [
        sys.executable, "-m", "tests.fuzz", target,
        f"-runs={RUNS[target]}", "-max_len=4096", f"-artifact_prefix={artifacts}/",
        str(grown), str(CORPUS / target),
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=110)
    found = sorted(artifacts.iterdir())
    assert proc.returncode == 0 and not found, (
        f"atheris found a failing input for {target}: {[p.name for p in found]}\n"
        f"{proc.stderr[-4000:]}"
    )
    # libFuzzer counts the corpus replay as runs too: RUNS exceeds every corpus's size.
    done = re.search(r"^Done (\d+) runs", proc.stderr, re.M)
    assert done and int(done.group(1)) >= RUNS[target], proc.stderr[-2000:]
