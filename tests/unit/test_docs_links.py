"""The docs point only at files a user of the repository has: every relative markdown link
(and its #anchor) in README.md, docs/*.md and clients/node/README.md resolves, and so does
every repository path or .md file they name in passing."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md"), ROOT / "clients/node/README.md"])

# Folders at the top of the repository: a code span starting with one names a file in it.
TOP_DIRS = sorted(p.name for p in ROOT.iterdir() if p.is_dir() and not p.name.startswith("."))
# What a build or a run writes (gitignored), which the docs name as such.
GENERATED = ("benchmarks/out/", "demo/static/bundle.js")

FENCE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)
INLINE_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_LINK = re.compile(r"^\s*\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$", re.M)
CODE_SPAN = re.compile(r"`([^`\n]+)`")
URL = re.compile(r"\b[a-z][a-z0-9+.-]*://\S+", re.I)
MD_NAME = re.compile(r"(?<![\w/.-])([\w./-]*\w\.md)\b")
REPO_PATH = re.compile(r"^(?:\./)?([\w.-]+/[\w./-]*[\w-])(?::\d+)?$")


def _label(doc: Path) -> str:
    return str(doc.relative_to(ROOT))


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to dashes."""
    text = re.sub(r"`|\*\*|\*|_(?=\w)|(?<=\w)_", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(doc: Path) -> set[str]:
    text = FENCE.sub("", doc.read_text())
    return {_slug(m) for m in re.findall(r"^#{1,6}\s+(.+?)\s*#*$", text, re.M)}


def _links(doc: Path) -> list[str]:
    text = FENCE.sub("", doc.read_text())
    text = CODE_SPAN.sub("", text)
    return INLINE_LINK.findall(text) + REFERENCE_LINK.findall(text)


def _is_external(target: str) -> bool:
    return bool(re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I)) or target.startswith("//")


@pytest.mark.parametrize("doc", DOCS, ids=_label)
def test_relative_links_resolve(doc: Path) -> None:
    """[text](path#anchor): the file exists (inside the repository) and so does the anchor."""
    broken = []
    for target in _links(doc):
        if _is_external(target):
            continue
        path_part, _, anchor = target.partition("#")
        dest = (doc.parent / path_part).resolve() if path_part else doc
        if (ROOT not in dest.parents and dest != ROOT) or not dest.exists():
            broken.append(f"{target}: no such file in the repository")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            broken.append(f"{target}: no heading with anchor #{anchor} in {_label(dest)}")
    assert not broken, f"{_label(doc)}: {broken}"


def _exists(doc: Path, name: str) -> bool:
    """`name` relative to the doc or the root, or written by a build or run; `tests/support.X`
    (an object in tests/support.py) counts as its module."""
    if name.startswith(GENERATED):
        return True
    module = name.rsplit(".", 1)[0] + ".py"
    return any((base / n).exists() for base in (doc.parent, ROOT) for n in (name, module))


@pytest.mark.parametrize("doc", DOCS, ids=_label)
def test_named_files_exist(doc: Path) -> None:
    """`workers/forward.py`, `scripts/soak.py`, configuration.md: a file the text names is one
    the reader can open (relative to the doc or to the repository's root), unless it is one a
    build or run writes."""
    text = doc.read_text()
    named = set(MD_NAME.findall(URL.sub("", FENCE.sub("", text))))
    for span in CODE_SPAN.findall(text):
        m = REPO_PATH.match(span.strip())
        if m and m.group(1).split("/")[0] in TOP_DIRS:
            named.add(m.group(1))
    missing = sorted(name for name in named if not _exists(doc, name))
    assert not missing, f"{_label(doc)} names files the repository does not have: {missing}"


def test_slug_matches_github() -> None:
    """The anchor rule above, on headings the docs use."""
    assert _slug("RTCP in the worker") == "rtcp-in-the-worker"
    assert _slug("Run with CURVE") == "run-with-curve"
    assert _slug("`tureen demo`: options & flags") == "tureen-demo-options--flags"


# The code's comments and docstrings follow the same rule: a design note a user of the
# repository does not have (a .md outside it, a path on the machine it was written on) is
# no explanation. Sources: every Python, C, JavaScript and TypeScript file of the repository
# but installed packages (.venv, node_modules) and this file, which names the patterns.
SOURCE_SUFFIXES = {".py", ".c", ".h", ".js", ".ts", ".mjs"}
SKIP_PARTS = {".venv", "node_modules", ".git", "__pycache__", "out"}
OUTSIDE = re.compile(r"/work/|\.\./shared/|\bbriefs/")


def _sources() -> list[Path]:
    return sorted(
        p
        for p in ROOT.rglob("*")
        if p.suffix in SOURCE_SUFFIXES
        and p.is_file()
        and not SKIP_PARTS.intersection(p.relative_to(ROOT).parts)
        and p != Path(__file__).resolve()
        and not p.name.endswith(".min.js")
        and p.name != "bundle.js"
    )


def test_code_names_only_files_of_the_repository() -> None:
    """A `.md` file a comment or docstring names exists (next to the file, at the root or in
    docs/), and no comment points at a path outside the repository."""
    wrong = []
    for path in _sources():
        text = path.read_text(errors="replace")
        label = str(path.relative_to(ROOT))
        for m in OUTSIDE.finditer(text):
            line = text.count("\n", 0, m.start()) + 1
            wrong.append(f"{label}:{line}: {m.group(0)!r} is outside the repository")
        for m in MD_NAME.finditer(URL.sub("", text)):
            name = m.group(1)
            if not any((base / name).exists() for base in (path.parent, ROOT, ROOT / "docs", ROOT / "docs/protocol")):
                wrong.append(f"{label}: names {name}, which the repository does not have")
    assert not wrong, "\n".join(wrong)
