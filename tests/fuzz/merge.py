"""`python -m tests.fuzz.merge TARGET`: minimize tests/fuzz/corpus/TARGET/ in place with
libFuzzer's -merge=1 (the smallest set of inputs with the same coverage). Named files
(seed-*, crash-*, anything not named by libFuzzer's SHA-1) are kept whatever their coverage:
they document what the corpus must hold."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from .harness import CORPUS, TARGETS

_SHA1 = re.compile(r"[0-9a-f]{40}")


def merge(target: str) -> int:
    folder = CORPUS / target
    with tempfile.TemporaryDirectory() as tmp:
        kept = Path(tmp) / "kept"
        kept.mkdir()
        cmd = [sys.executable, "-m", "tests.fuzz", target, "-merge=1", str(kept), str(folder)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            print(proc.stderr[-3000:], file=sys.stderr)
            return proc.returncode
        if not any(kept.iterdir()):
            print(f"{target}: the merge kept nothing; corpus left as it was\n{proc.stderr[-2000:]}", file=sys.stderr)
            return 1
        before = len(list(folder.iterdir()))
        for path in folder.iterdir():
            if _SHA1.fullmatch(path.name):
                path.unlink()
        for path in kept.iterdir():
            if not (folder / path.name).exists():
                shutil.copy(path, folder / path.name)
        print(f"{target}: {before} -> {len(list(folder.iterdir()))} inputs")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in TARGETS:
        sys.exit(f"usage: python -m tests.fuzz.merge TARGET ({', '.join(TARGETS)})")
    sys.exit(merge(sys.argv[1]))
