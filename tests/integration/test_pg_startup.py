"""A node starting on an existing PostgreSQL schema takes no lock: another node's hung transaction cannot stall it."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg

from roost.backends.postgres import PostgresStore
from roost.protocol.types import Draft

from ..backends.postgres import POSTGRES


async def test_a_start_does_not_wait_for_another_node_s_open_transaction() -> None:
    """A transaction left open on ``messages`` (its node partitioned or frozen mid-append) does not stop
    another node from starting: ``CREATE INDEX IF NOT EXISTS`` would wait for it, holding up every later
    write too, so a start runs no DDL when the schema is complete. PostgreSQL ends such a transaction after
    ``idle_in_transaction_session_timeout`` (10 s), which Roost's sessions set."""
    schema = "s" + uuid.uuid4().hex[:12]
    url = f"{POSTGRES}?schema={schema}"
    first = await PostgresStore(url).open()
    hung = await asyncpg.connect(POSTGRES, server_settings={"search_path": schema})
    try:
        await first.create_room("r", "alice")
        await first.append(Draft("r", "alice", "c1", "before"))
        transaction = hung.transaction()
        await transaction.start()
        await hung.execute("UPDATE messages SET body = body WHERE room = 'r'")  # holds ROW EXCLUSIVE on messages
        second = await asyncio.wait_for(PostgresStore(url).open(), 5)
        try:
            await asyncio.wait_for(second.create_room("s", "bob"), 5)
            appended = await asyncio.wait_for(second.append(Draft("s", "bob", "c1", "after")), 5)
            assert appended.message.seq == 1
            async with second.pool.acquire() as conn:
                assert await conn.fetchval("SHOW idle_in_transaction_session_timeout") == "10s"
        finally:
            await second.aclose()
        await transaction.rollback()
    finally:
        await hung.close()
        await first.aclose()
        cleanup = await asyncpg.connect(POSTGRES)
        await cleanup.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await cleanup.close()
