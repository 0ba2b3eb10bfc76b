"""Docs cannot point at nothing: every path, file and module a doc names exists.

Checked: README.md and docs/*.md (Markdown links, and names in backticks that look like a repository path,
a file name or a ``roost.`` module), and the ``docs/``, ``tests/`` and ``scripts/`` paths that source
docstrings point readers to. A name in backticks counts as a path when it ends in a file extension or a
``/``, or starts with a top folder of the repository; ``epoch/head/first`` is prose, not a path.

How a name resolves, in order: a link relative to the doc; a path from the repository root; a path
under ``src/`` or ``src/roost/`` (architecture.md names modules as ``gateway/health.py``); a bare file
name anywhere in the repository (``roost.js``); a URL path the server serves (``/roost.js`` is
``src/roost/web/roost.js``). A ``roost.x.y`` name must import, or be an attribute of a module that does.
"""

from __future__ import annotations

import importlib
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
TOP = ("src/", "tests/", "docs/", "scripts/", "bench/", ".ci/")
EXTENSIONS = "py|md|js|mjs|json|yml|yaml|toml|txt|sh|svg|png|css|html|in|cfg|ini"

NOT_IN_THE_REPOSITORY = {
    "roost.sqlite3": "the file the embedded store creates in the data directory at run time",
    "./roost-data": "the default data directory, created at run time",
    # WebSocket subprotocols (docs/protocol.md, R-WIRE-9): names on the wire that look like a file and a module.
    "roost.v1.json": "a WebSocket subprotocol, not a file",
    "roost.v1.msgpack": "a WebSocket subprotocol, not a module",
    # The team's research notes: the docs that cite them say they are outside this repository.
    "shared/research/wsbench/RESULTS.md": "the team's research notes, outside the repository",
    "shared/research/infra.md": "the team's research notes, outside the repository",
    # The contract suite's package is being created on another branch of issue 15; the lead removes this
    # exemption when that branch is merged.
    "tests/backends/": "created by the ports branch of issue 15",
}


def _repository_files() -> list[str]:
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if line and (ROOT / line).exists()]


FILES = _repository_files()
NAMES = {Path(f).name for f in FILES}
FOLDERS = {str(parent) for f in FILES for parent in Path(f).parents if str(parent) != "."}


def _exists(name: str, base: Path) -> bool:
    """Whether ``name`` (a path, a file name or a URL path) names something in the repository."""
    plain = name.rstrip("/")
    if not plain:
        return False
    if name.startswith("/"):  # a URL path the web package serves
        return (ROOT / "src" / "roost" / "web" / plain.lstrip("/")).exists()
    for root in (base, ROOT, ROOT / "src", ROOT / "src" / "roost"):
        candidate = (root / plain).resolve()
        if candidate.is_relative_to(ROOT) and candidate.exists():
            rel = str(candidate.relative_to(ROOT))
            if rel in FILES or rel in FOLDERS:
                return True
    return "/" not in plain and plain in NAMES


LOGGERS = {
    name
    for path in (ROOT / "src" / "roost").rglob("*.py")
    for name in re.findall(r"getLogger\(\"(roost[\w.]*)\"\)", path.read_text(encoding="utf-8"))
}
"""Logger names given as literals (``roost.errors``): a doc names them as it names modules."""


def _module_exists(name: str) -> bool:
    """``roost.a.b`` imports, or ``roost.a`` imports and has ``b`` (a class or function named by path), or it
    is a logger's name."""
    if name in LOGGERS:
        return True
    parts = name.split(".")
    for cut in range(len(parts), 1, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


def _is_path(text: str) -> bool:
    if re.search(r"\s|[<>*{}$]|://", text):
        return False
    return bool(re.fullmatch(rf"[\w./-]+\.({EXTENSIONS})|[\w./-]+/", text)) or text.startswith(TOP)


def _named(path: Path) -> list[tuple[str, str]]:
    """``(kind, name)`` for every link target, path, file and module the doc names."""
    text = path.read_text(encoding="utf-8")
    found: list[tuple[str, str]] = []
    for match in re.finditer(r"\]\(([^)\s]+)\)", text):
        target = match.group(1).split("#")[0]
        if target and not re.match(r"[a-z]+:", target):
            found.append(("link", target))
    for match in re.finditer(r"`([^`\n]+)`", text):
        code = match.group(1)
        if _is_path(code):
            found.append(("path", code))
        elif re.fullmatch(r"roost(\.[A-Za-z_]\w*)+", code):
            found.append(("module", code))
    return found


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_path_and_module_a_doc_names_exists(doc: Path) -> None:
    missing = []
    for kind, name in _named(doc):
        if name in NOT_IN_THE_REPOSITORY:
            continue
        ok = _module_exists(name) if kind == "module" else _exists(name, doc.parent)
        if not ok:
            missing.append(f"{kind} {name}")
    assert not missing, f"{doc.name} names what does not exist: {missing}"


def test_the_scan_finds_the_names_it_is_meant_to() -> None:
    """The checker is not vacuous: it sees links, repository paths, bare file names and modules."""
    names = {name for doc in DOCS for _, name in _named(doc)}
    assert {"docs/protocol.md", "tests/test_protocol_doc.py", "roost.js", "roost.protocol.frames"} <= names
    assert "epoch/head/first" not in names and "type/room/seq" not in names
    assert not _exists("docs/sync.md", ROOT) and not _module_exists("roost.protocol.nothing")


SOURCE = sorted((ROOT / "src" / "roost").rglob("*.py")) + sorted((ROOT / "src" / "roost" / "web").glob("*.js"))


@pytest.mark.parametrize("source", SOURCE, ids=lambda p: str(p.relative_to(ROOT / "src")))
def test_every_repository_path_a_docstring_names_exists(source: Path) -> None:
    text = source.read_text(encoding="utf-8")
    named = set(re.findall(r"(?<![\w/.])((?:docs|tests|scripts|bench)/[\w./-]*[\w/])", text))
    missing = sorted(n for n in named if n not in NOT_IN_THE_REPOSITORY and not _exists(n, ROOT))
    assert not missing, f"{source.name} points at {missing}"


def test_the_architecture_drawing_names_every_backend_module() -> None:
    """The drawing of docs/architecture.md lists one entry per engine: each file of backends/ that is one, and
    each engine package (``redis/``: a large engine split into modules)."""
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    drawing = text.split("```")[1]
    backends = ROOT / "src" / "roost" / "backends"
    engines = {p.name for p in backends.glob("*.py")}
    engines -= {"__init__.py", "boundary.py", "options.py", "idempotency.py"}  # dispatcher, errors, URL options, digest
    engines |= {f"{d.name}/" for d in backends.iterdir() if (d / "__init__.py").is_file()}
    missing = sorted(name for name in engines if name not in drawing)
    assert not missing, f"the architecture drawing omits {missing}"
