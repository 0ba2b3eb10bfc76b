"""The embedded store: SQLite in the node's data directory (the test's temporary directory)."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

from roost.ports import Storage

from .engine import DigestPin, Engine
from .rawbytes import files_under


async def _stored_digest(store: Storage, ns: str, data_dir: Path) -> object:
    with contextlib.closing(sqlite3.connect(data_dir / "roost.sqlite3")) as conn:
        row = conn.execute("SELECT digest FROM trimmed_ids WHERE room = 'r' AND sender = 'alice' AND cmid = 'c1'")
        return row.fetchone()[0]


async def _raw(store: Storage, ns: str, data_dir: Path) -> bytes:
    """The database file, its WAL and shared-memory index: all the engine writes."""
    return files_under(data_dir)


ENGINES = (
    Engine("sqlite", store_url=lambda ns: None, shared=False, digest=DigestPin(_stored_digest, lambda d: d), raw=_raw),
)
