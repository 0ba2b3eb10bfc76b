"""The embedded store: SQLite in the node's data directory (the test's temporary directory)."""

from __future__ import annotations

from .engine import Engine

ENGINES = (Engine("sqlite", store_url=lambda ns: None, shared=False),)
