"""The layering of docs/architecture.md, checked on the source rather than trusted.

* ``roost.protocol`` is sans-I/O: no asyncio, sockets, clocks or drivers.
* ``roost.client`` (the SDK) depends on ``roost.protocol`` only, so it ships without server code.
* ``roost.gateway`` never imports a backend: it is handed a service.
* ``roost.service`` sits below the gateways, beside the hub and the backends: it imports none of them.
* Backends never import each other.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "roost"
IO = {"asyncio", "socket", "time", "aiohttp", "redis", "nats", "asyncpg", "aiokafka", "sqlite3", "threading"}


def imports(path: Path) -> set[str]:
    """Absolute module names a file imports (relative imports resolved against the roost package)."""
    package = ["roost", *path.relative_to(SRC).parent.parts]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                out.add(".".join([*base, node.module] if node.module else base))
            elif node.module:
                out.add(node.module)
    return out


def files(sub: str) -> list[Path]:
    return sorted((SRC / sub).glob("*.py"))


@pytest.mark.parametrize("path", files("protocol"), ids=lambda p: p.name)
def test_the_protocol_core_does_no_io(path: Path) -> None:
    bad = {m for m in imports(path) if m.split(".")[0] in IO}
    assert not bad, f"{path.name} imports {bad}"


@pytest.mark.parametrize("path", files("client"), ids=lambda p: p.name)
def test_the_sdk_depends_on_the_protocol_only(path: Path) -> None:
    bad = {m for m in imports(path) if m.startswith("roost.") and not m.startswith(("roost.protocol", "roost.client"))}
    assert not bad, f"{path.name} imports server code: {bad}"


@pytest.mark.parametrize("path", files("gateway"), ids=lambda p: p.name)
def test_the_gateway_never_imports_a_backend(path: Path) -> None:
    assert not {m for m in imports(path) if m.startswith("roost.backends")}


NOT_FOR_THE_SERVICE = ("roost.cli", "roost.node", "roost.gateway", "roost.client", "roost.hub", "roost.backends")


@pytest.mark.parametrize("path", files("service"), ids=lambda p: p.name)
def test_the_service_imports_nothing_above_or_beside_it(path: Path) -> None:
    bad = {m for m in imports(path) if m.startswith(NOT_FOR_THE_SERVICE)}
    assert not bad, f"{path.name} imports {bad}"


SHARED = {"__init__.py", "boundary.py", "idempotency.py", "options.py"}
"""Not engines: the URL dispatcher, the error mapping every engine applies at its boundary, the idempotency
digest, URL options."""

BACKENDS = SRC / "backends"
ENGINES = {p.stem for p in files("backends") if p.name not in SHARED} | {
    d.name for d in BACKENDS.iterdir() if (d / "__init__.py").is_file()
}
"""An engine is one module of backends/ or, when it is large, one package of them (``redis/``, ``kafka/``)."""


def _engine_of(path: Path) -> str:
    rel = path.relative_to(BACKENDS)
    return rel.parts[0] if len(rel.parts) > 1 else path.stem


@pytest.mark.parametrize(
    "path",
    [p for p in sorted(BACKENDS.rglob("*.py")) if p != BACKENDS / "__init__.py"],
    ids=lambda p: str(p.relative_to(BACKENDS)),
)
def test_backends_do_not_import_each_other(path: Path) -> None:
    others = {f"roost.backends.{e}" for e in ENGINES if e != _engine_of(path)}
    bad = {m for m in imports(path) if any(m == o or m.startswith(o + ".") for o in others)}
    assert not bad, f"{path.relative_to(BACKENDS)} imports another engine: {bad}"


SEARCH_ENGINES = ("sqlite_index", "postgres_index")


@pytest.mark.parametrize("path", files("search"), ids=lambda p: p.name)
def test_search_index_engines_do_not_import_each_other(path: Path) -> None:
    """The two ``SearchIndex`` engines share only the port and the query language; nothing but the composition
    (search/__init__.py) names an engine, and the service sees the port alone (service/search.py)."""
    engines = {f"roost.search.{e}" for e in SEARCH_ENGINES if e != path.stem}
    if path.name != "__init__.py":
        assert not {m for m in imports(path) if m in engines}, f"{path.name} imports another engine"


def test_the_service_sees_only_the_search_port() -> None:
    allowed = {"roost.search.port", "roost.search.query"}
    for path in files("service"):
        bad = {m for m in imports(path) if m.startswith("roost.search") and m not in allowed}
        assert not bad, f"{path.name} imports {bad}"


def test_the_engine_list_sees_packages() -> None:
    """The check above is not vacuous for split engines: their packages count as engines."""
    assert {"redis", "sqlite"} <= ENGINES and not ENGINES & {p.removesuffix(".py") for p in SHARED}
