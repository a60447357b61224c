"""Coverage-guided fuzzing of one target with atheris (libFuzzer):

    python -m tests.fuzz TARGET [libFuzzer flags] [CORPUS_DIR ...]

from the repository root (`make fuzz` does this per target). Without a corpus directory the
target's own tests/fuzz/corpus/TARGET/ is used, and the inputs that reach new coverage are
added to it; crashes are written to test-output/fuzz/ (`-artifact_prefix` overrides). Tureen's
modules (and aioice, which parses STUN) are instrumented for coverage; the rest is not.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

from .harness import CORPUS, TARGETS


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[1] not in TARGETS:
        print(f"usage: python -m tests.fuzz TARGET [libFuzzer flags] [CORPUS_DIR ...]\n"
              f"targets: {', '.join(TARGETS)}", file=sys.stderr)
        return 2
    try:
        import atheris
    except ImportError:
        print("atheris is not installed (pip install atheris; wheels exist for CPython <= 3.11 "
              "on x86_64 Linux): the fuzz tier's corpus and hypothesis parts still run in "
              "`make test`", file=sys.stderr)
        return 2
    target = argv[1]
    # libFuzzer runs argv[0] again through the shell for -merge, -jobs and -fork: make it a
    # command line that comes back here.
    args = [f"{sys.executable} -m {__package__} {target}", *argv[2:]]
    if not any(not a.startswith("-") for a in args[1:]):
        args.append(str(CORPUS / target))
    if not any(a.startswith("-artifact_prefix=") for a in args):
        out = Path("test-output") / "fuzz"
        out.mkdir(parents=True, exist_ok=True)
        args.append(f"-artifact_prefix={out}/{target}-")
    with atheris.instrument_imports(include=["tureen", "aioice"]):
        module = importlib.import_module(f"{__package__}.{target}")
    atheris.Setup(args, module.fuzz_one)
    atheris.Fuzz()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
