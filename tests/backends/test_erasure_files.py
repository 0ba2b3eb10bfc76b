"""Erasure against the files of engines a test owns or can read whole: a Redis server with an AOF, and
PostgreSQL's data files (R-ERASE-3, R-ERASE-4). Apart from test_erasure.py, which reads every engine through
what the shared services hand out, because these run their own server or look under PostgreSQL's pages."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from pathlib import Path

import asyncpg

from roost.backends import open_store
from roost.backends.redis import RedisStore
from roost.chaos.infra import wait_until
from roost.ports import Redaction
from roost.protocol.relations import KIND_DELETED
from roost.protocol.types import KIND_TEXT, Draft

from ..clusters import RedisServer
from .postgres import POSTGRES, _drop_schema, page_bytes
from .rawbytes import files_under, lzf_expanded


async def test_a_redis_erasure_rewrites_the_aof(tmp_path: Path) -> None:
    """[R-ERASE-3] With ``appendonly yes`` the AOF holds the ``XADD`` of every message until a rewrite: after an
    erasure the store starts one, and once it is done no file of the server holds the erased text (its RDB
    preamble's compressed strings expanded), while the text kept beside it is still there."""
    redis = RedisServer(tmp_path / "redis", appendfsync="everysec")
    redis.start()
    store = await open_store(f"{redis.url}?prefix=t", str(tmp_path))
    try:
        assert isinstance(store, RedisStore)
        erased, kept = f"erased-{secrets.token_hex(8)}", f"kept-{secrets.token_hex(8)}"
        await store.create_room("r", "alice")
        await store.append(Draft("r", "alice", "c1", erased, KIND_TEXT))
        await store.append(Draft("r", "alice", "c2", kept, KIND_TEXT))
        await wait_until("everysec wrote both to the AOF", lambda: erased.encode() in files_under(redis.dir))
        assert await store.erase("r", [Redaction(1, KIND_DELETED, "")]) == 1
        await store._rewrites.settled()
        for _ in range(100):
            info = await store.client.info("persistence")
            assert isinstance(info, dict)
            done = not info["aof_rewrite_in_progress"] and not info["aof_rewrite_scheduled"]
            files = lzf_expanded(files_under(redis.dir))
            if done and erased.encode() not in files:
                break
            await asyncio.sleep(0.1)  # a wait helper's poll
        assert erased.encode() not in files and kept.encode() in files
    finally:
        await store.aclose()
        redis.stop()


async def test_postgres_vacuum_full_clears_what_pruning_leaves_in_a_page(tmp_path: Path) -> None:
    """[R-ERASE-4] After an erasure no row version holds the text (test_erasure.py); the page's free space may
    still hold the pruned version's bytes until rows reuse it, and ``VACUUM FULL``, the documented remedy,
    rewrites the table so that its data file no longer does."""
    ns = "t" + uuid.uuid4().hex[:12]
    store = await open_store(f"{POSTGRES}?schema={ns}", str(tmp_path))
    try:
        erased = f"erased-{secrets.token_hex(8)}"
        await store.create_room("r", "alice")
        for n in range(1, 20):
            await store.append(Draft("r", "alice", f"c{n}", f"{erased} {n}" if n == 7 else f"text {n}", KIND_TEXT))
        assert await store.erase("r", [Redaction(7, KIND_DELETED, "")]) == 1
        conn = await asyncpg.connect(POSTGRES)
        try:
            await conn.execute(f"VACUUM FULL {ns}.messages")
        finally:
            await conn.close()
        data = await page_bytes(ns, "messages")
        assert erased.encode() not in data and b"text 8" in data
    finally:
        await store.aclose()
        await _drop_schema(ns)
