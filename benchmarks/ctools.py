"""Compile the benchmark's C tools (load generator + sink, baseline forwarder) with gcc.

They are test tools, not part of Tureen: built at run time into an output folder, never
committed, rebuilt when their source changes (the binary name carries the source hash).
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

SOURCE_DIR = Path(__file__).resolve().parent / "ctools"
CFLAGS = ["-O2", "-Wall", "-Wextra", "-std=gnu11"]
# -rdynamic: the tools dlopen libsrtp from pylibsrtp's extension, which needs a few CPython
# symbols that srtpdl.h stubs out in the executable (see there).
LDFLAGS = ["-rdynamic", "-ldl"]
HEADERS = ["srtpdl.h"]  # included by both tools: part of every binary's hash


@dataclass(frozen=True)
class Tools:
    rtpload: Path
    cforward: Path


def _build(name: str, out_dir: Path) -> Path:
    source = SOURCE_DIR / f"{name}.c"
    text = source.read_bytes() + b"".join((SOURCE_DIR / h).read_bytes() for h in HEADERS)
    digest = hashlib.sha256(text + " ".join(CFLAGS + LDFLAGS).encode()).hexdigest()[:12]
    binary = out_dir / f"{name}-{digest}"
    if binary.exists():
        return binary
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        raise RuntimeError("the benchmark needs gcc (or cc) to build its load tools")
    tmp = binary.with_suffix(".tmp")
    result = subprocess.run([gcc, *CFLAGS, "-o", str(tmp), str(source), *LDFLAGS], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"gcc failed on {source.name}:\n{result.stderr}")
    tmp.replace(binary)  # atomic: a concurrent build never sees half a binary
    return binary


def build_tools(out_dir: Path) -> Tools:
    out_dir.mkdir(parents=True, exist_ok=True)
    return Tools(rtpload=_build("rtpload", out_dir), cforward=_build("cforward", out_dir))
