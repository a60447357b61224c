"""The repository's housekeeping rules, checked so they stay true: one import style
(absolute `tureen.`) in the code folders; every third-party package the code imports is
declared in pyproject.toml, and the pylibsrtp whose private API the workers use is a version
that API was checked against; the product (tureen.supervisor) runs without the demo; the
LICENSE file is the license pyproject.toml names."""

from __future__ import annotations

import ast
import importlib.metadata
import subprocess
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

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


def _declared() -> dict[str, Requirement]:
    """pyproject.toml's run-time dependencies (not the extras), by canonical name."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = (Requirement(r) for r in project["dependencies"])
    return {canonicalize_name(r.name): r for r in reqs}


def _imported_modules() -> dict[str, set[str]]:
    """Top-level third-party modules the code folders import -> the files importing them."""
    found: dict[str, set[str]] = {}
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top != "tureen" and top not in sys.stdlib_module_names:
                    found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def test_every_imported_package_is_declared() -> None:
    """An import that works only because another dependency happens to bring the package
    (pylibsrtp, pyOpenSSL, aioice and cryptography came with aiortc) breaks when that one
    changes: each is declared itself."""
    declared = _declared()
    by_module = importlib.metadata.packages_distributions()
    missing = {}
    for module, files in sorted(_imported_modules().items()):
        dists = {canonicalize_name(d) for d in by_module.get(module, [module])}
        if not dists & declared.keys():
            missing[module] = sorted(files)
    assert not missing, f"imported but not in pyproject.toml's dependencies: {missing}"


def test_pylibsrtp_is_a_version_its_private_api_was_checked_against() -> None:
    """workers/transport/srtp.py and workers/native.py use pylibsrtp._binding and
    Session._srtp: the requirement has an upper bound, and the installed version is inside
    it (a newer one needs those two rechecked before the bound moves)."""
    req = _declared()["pylibsrtp"]
    assert any(spec.operator in ("<", "<=", "==", "~=") for spec in req.specifier), (
        f"{req} has no upper bound"
    )
    installed = importlib.metadata.version("pylibsrtp")
    assert req.specifier.contains(installed), f"pylibsrtp {installed} is outside {req}"


def _run_python(code: str) -> subprocess.CompletedProcess[str]:
    """`code` in a fresh interpreter (its own sys.modules), bounded."""
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )


def test_product_cli_does_not_import_the_demo() -> None:
    """`import tureen.supervisor.cli` (what the `tureen` script does first) loads no module of
    tureen.demo: the demo command imports it only when it runs."""
    proc = _run_python(
        "import sys, tureen.supervisor.cli\n"
        "print(sorted(m for m in sys.modules if m.split('.')[:2] == ['tureen', 'demo']))"
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_demo_does_not_import_the_supervisor() -> None:
    """The dependency is one-way: the demo talks to Tureen through tureen.shared's client."""
    offending = [
        f"{path.relative_to(ROOT)}:{node.lineno}"
        for path in sorted((ROOT / "demo").rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text(), str(path)))
        if (isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tureen.supervisor"))
        or (
            isinstance(node, ast.Import)
            and any(a.name.startswith("tureen.supervisor") for a in node.names)
        )
    ]
    assert not offending, offending


def test_demo_command_without_the_demo_package() -> None:
    """Where the demo is not installed, `tureen demo` says so and exits 2 (no traceback), and
    the rest of the CLI works."""
    proc = _run_python(
        "import sys\n"
        "sys.modules['tureen.demo'] = None  # as if the package was not installed\n"
        "from typer.testing import CliRunner\n"
        "from tureen.supervisor.cli import app\n"
        "r = CliRunner().invoke(app, ['demo'])\n"
        "print(r.exit_code, repr(r.exception), r.output)\n"
        "print(CliRunner().invoke(app, ['--version']).exit_code)"
    )
    assert proc.returncode == 0, proc.stderr
    first, _, rest = proc.stdout.partition(" ")
    assert first == "2", proc.stdout
    assert "the browser demo (tureen.demo) is not installed" in rest
    assert proc.stdout.splitlines()[-1] == "0"


def test_license_file_matches_pyproject() -> None:
    """pyproject.toml says `license = "MIT"`; the LICENSE file next to it is the MIT text."""
    assert tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["license"] == "MIT"
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License\n\nCopyright (c) 2026 the Tureen authors\n")
    assert "Permission is hereby granted, free of charge," in text
