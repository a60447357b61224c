"""The repository's housekeeping rules, checked so they stay true: one import style
(absolute `tureen.`) in the code folders."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CODE_DIRS = ("supervisor", "workers", "shared", "demo")


def _sources() -> list[Path]:
    """Every Python module of the installed package's folders."""
    return sorted(p for d in CODE_DIRS for p in (ROOT / d).rglob("*.py"))


def test_imports_are_absolute() -> None:
    """`from tureen.shared import wire`, never `from ..shared import wire`: one style, and a
    module reads the same wherever it is moved to."""
    relative = [
        f"{path.relative_to(ROOT)}:{node.lineno}"
        for path in _sources()
        for node in ast.walk(ast.parse(path.read_text(), str(path)))
        if isinstance(node, ast.ImportFrom) and node.level > 0
    ]
    assert not relative, f"relative imports (write them as `from tureen.<folder>...`): {relative}"
