"""Full-text search over the rooms: the ``SearchIndex`` port (port.py), its two engines, the indexer that keeps an
index in step with the store (indexer.py; run in a child process of the node: worker.py, process.py), and the
query language (query.py). The rules of who may search what are the
service's (service/search.py).

Which index a node uses (``--search``; docs/operations.md):

* ``off``: none; ``GET /api/search`` answers 4403.
* ``sqlite`` (``sqlite://DIR``: ``DIR/search.sqlite3``): an FTS5 file beside the embedded store, one per node;
  every node indexes every room itself (sqlite_index.py).
* ``postgresql://...``: a PostgreSQL full-text index shared by every node; one node indexes at a time
  (postgres_index.py).
* not set: the PostgreSQL store's own database with a PostgreSQL store; ``sqlite`` with any other store.
"""

from __future__ import annotations

from pathlib import Path

from ..protocol.errors import UsageError
from .port import SearchIndex

__all__ = ["SearchIndex", "open_search"]

FILE = "search.sqlite3"


async def open_search(url: str | None, store_url: str | None, data_dir: str) -> SearchIndex | None:
    """The index ``url`` names (None: chosen by the store, see the module docstring); None when search is off."""
    if url in (None, "") and (store_url or "").startswith(("postgresql://", "postgres://")):
        url = store_url
    if url == "off":
        return None
    if url in (None, "", "sqlite") or (url or "").startswith("sqlite://"):
        from .sqlite_index import SqliteIndex

        folder = (url or "").removeprefix("sqlite://").removeprefix("sqlite")
        if not folder:
            embedded = store_url in (None, "", "sqlite") or (store_url or "").startswith("sqlite://")
            folder = (store_url or "").removeprefix("sqlite://").removeprefix("sqlite") if embedded else ""
        return await SqliteIndex(Path(folder or data_dir) / FILE).open()
    assert url is not None
    if url.startswith(("postgresql://", "postgres://")):
        from .postgres_index import PostgresIndex

        return await PostgresIndex(url).open()
    raise UsageError(f"unsupported search index {url!r}: off, sqlite, sqlite://DIR or postgresql://...")
