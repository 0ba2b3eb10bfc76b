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


async def _raw(store: Storage, ns: str, data_dir: Path) -> bytes:
    """Every row version the schema's tables and their TOAST tables hold, live or dead, page by page
    (``pageinspect``'s ``heap_page_items``): what the heap stores as rows. Not the free space of a page, which
    keeps the bytes of a pruned version until it is reused, nor the WAL (docs/backends.md, R-ERASE-4)."""
    import asyncpg

    conn = await asyncpg.connect(POSTGRES)
    try:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS pageinspect")
        relations = await conn.fetch(
            "SELECT oid::regclass::text AS name FROM pg_class WHERE relkind IN ('r', 't') AND oid IN ("
            " SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1"
            " UNION SELECT c.reltoastrelid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = $1 AND c.reltoastrelid <> 0)",
            ns,
        )
        out = []
        for relation in relations:
            name = relation["name"]
            pages = await conn.fetchval(
                "SELECT pg_relation_size($1::regclass) / current_setting('block_size')::int", name
            )
            for page in range(pages):
                rows = await conn.fetch(
                    "SELECT t_data FROM heap_page_items(get_raw_page($1, $2)) WHERE t_data IS NOT NULL", name, page
                )
                out += [bytes(r["t_data"]) for r in rows]
        return b"".join(out)
    finally:
        await conn.close()


async def page_bytes(ns: str, table: str) -> bytes:
    """The table's data file as PostgreSQL wrote it, after a checkpoint (free space included)."""
    import asyncpg

    conn = await asyncpg.connect(POSTGRES)
    try:
        await conn.execute("CHECKPOINT")
        path = await conn.fetchval("SELECT pg_relation_filepath($1::regclass)", f"{ns}.{table}")
        return bytes(await conn.fetchval("SELECT pg_read_binary_file($1)", path))
    finally:
        await conn.close()


ENGINES = (
    Engine(
        "postgres",
        store_url=lambda ns: f"{POSTGRES}?schema={ns}",
        clean=_drop_schema,
        digest=DigestPin(_stored_digest, lambda d: d),
        raw=_raw,
    ),
)
