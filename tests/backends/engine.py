"""What the suites need to know of an engine: how to name a fresh namespace on it, and how to remove it.

Each engine is described once, in its own file of this package (``sqlite.py``, ``redis.py``, ...), and
opened through ``roost.backends.open_store``/``open_bus``: the production URL dispatch, typed as the ports
(``Storage``, ``Bus``), so mypy checks each engine class against its interfaces and the suites test the
object a node would run.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from roost.backends import open_bus, open_store
from roost.ports import Bus, Storage

__all__ = ["DigestPin", "Engine", "RawBytes", "nothing_to_clean"]


@dataclass(frozen=True)
class DigestPin:
    """How a store engine keeps the idempotency digest (tests/backends/test_idempotency.py pins it)."""

    read: Callable[[Storage, str, Path], Awaitable[object]]
    """(store, namespace, data directory) -> what it stored for message ``c1`` of ``alice`` in room ``r``."""
    encode: Callable[[bytes], object]
    """The full SHA-256 digest -> that stored form: the engine's encoding, which its existing data has."""


RawBytes = Callable[[Storage, str, Path], Awaitable[bytes]]
"""(store, namespace, data directory) -> every byte the engine holds for the namespace that a test can reach
(its files, or its memory as the engine hands it out): what tests/backends/test_erasure.py searches."""


async def nothing_to_clean(ns: str) -> None:
    """Engines whose state lives in the test's temporary directory, or in memory."""


@dataclass(frozen=True)
class Engine:
    id: str
    """The fixture id (``ROOST_BACKENDS`` names pairs of these: see ``PAIRS``)."""
    store_url: Callable[[str], str | None] | None = None
    """Namespace -> the URL of a store on it (``None``: the embedded default, in the data directory). Unset:
    not a store engine."""
    bus_url: Callable[[str], str | None] | None = None
    """Namespace -> the URL of a bus on it (``None``: the in-process bus). Unset: not a bus engine."""
    rig: str | None = None
    """The session fixture (tests/conftest.py) that brings up the service it runs on, if the suite starts one."""
    clean: Callable[[str], Awaitable[None]] = nothing_to_clean
    """Remove everything a test created in the namespace (the services on this machine keep state)."""
    shared: bool = True
    """Several processes (nodes) open one namespace at once; False for the embedded store and bus."""
    digest: DigestPin | None = None
    """Store engines: where and how the idempotency digest is kept."""
    raw: RawBytes | None = None
    """Store engines: what they hold, raw (``RawBytes``)."""
    erases: bool = True
    """Store engines: an erasure removes the old text from what ``raw`` reads (Kafka's does not: R-ERASE-6)."""

    async def open_store(self, ns: str, data_dir: Path) -> Storage:
        assert self.store_url is not None, f"{self.id} is not a store engine"
        return await open_store(self.store_url(ns), str(data_dir))

    async def open_bus(self, ns: str) -> Bus:
        assert self.bus_url is not None, f"{self.id} is not a bus engine"
        return await open_bus(self.bus_url(ns))
