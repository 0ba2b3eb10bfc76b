"""PostgreSQL on this machine (127.0.0.1:5432, database ``test``): a schema per test."""

from __future__ import annotations

import os
from pathlib import Path

from roost.ports import Storage

from .engine import DigestPin, Engine

POSTGRES = os.environ.get("ROOST_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


async def _drop_schema(ns: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(POSTGRES)
    try:
        await conn.execute(f"DROP SCHEMA IF EXISTS {ns} CASCADE")
    finally:
        await conn.close()


async def _stored_digest(store: Storage, ns: str, data_dir: Path) -> object:
    import asyncpg

    conn = await asyncpg.connect(POSTGRES)
    try:
        sql = f"SELECT digest FROM {ns}.trimmed_ids WHERE room = 'r' AND sender = 'alice' AND cmid = 'c1'"
        return bytes(await conn.fetchval(sql))
    finally:
        await conn.close()


ENGINES = (
    Engine(
        "postgres",
        store_url=lambda ns: f"{POSTGRES}?schema={ns}",
        clean=_drop_schema,
        digest=DigestPin(_stored_digest, lambda d: d),
    ),
)
