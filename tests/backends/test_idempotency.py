"""The idempotency digest (roost.backends.idempotency.body_digest) in the encoding each engine stores.

One function computes it; each engine keeps the encoding its existing data has. These tests read what the
engine really stored for a known message and pin it, so a change of encoding (which would turn every
retry of an old message into a Conflict) fails here first. A new store engine is listed in ``STORED``.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Awaitable, Callable

from roost.backends.idempotency import body_digest
from roost.ports import Storage
from roost.protocol.types import KIND_TEXT, Draft

from . import STORES
from .conftest import Stores
from .postgres import POSTGRES

FULL = bytes.fromhex("b9299df68c34692cf2eae779fafaa5462caa45944033fa172321a4bed860d7f6")
"""SHA-256 of ``text NUL message 1``: the digest of the message these tests store."""


def test_the_digest_is_sha256_of_kind_nul_body() -> None:
    assert body_digest("message 1", KIND_TEXT) == FULL
    assert body_digest("message 1", KIND_TEXT, 16) == FULL[:16]
    assert body_digest("message 1", "join") != FULL  # the kind is part of what a retry must repeat


async def _sqlite(store: Storage, rig: Stores) -> object:
    with contextlib.closing(sqlite3.connect(rig.data_dir / "roost.sqlite3")) as conn:
        row = conn.execute("SELECT digest FROM trimmed_ids WHERE room = 'r' AND sender = 'alice' AND cmid = 'c1'")
        return row.fetchone()[0]


async def _postgres(store: Storage, rig: Stores) -> object:
    import asyncpg

    conn = await asyncpg.connect(POSTGRES)
    try:
        sql = f"SELECT digest FROM {rig.ns}.trimmed_ids WHERE room = 'r' AND sender = 'alice' AND cmid = 'c1'"
        return bytes(await conn.fetchval(sql))
    finally:
        await conn.close()


async def _redis(store: Storage, rig: Stores) -> object:
    from roost.backends.redis import RedisStore

    assert isinstance(store, RedisStore)
    record = await store.client.hget(store.keys("r").idem, "alice\nc1")
    assert isinstance(record, bytes)
    return record.decode().split(":", 2)[2]  # seq:ts:digest


async def _nats(store: Storage, rig: Stores) -> object:
    from roost.backends.nats import JetStreamStore, token

    assert isinstance(store, JetStreamStore)
    entry = await store.idem_kv.get(f"{token('r')}.{token('alice' + chr(10) + 'c1')}")
    return (entry.value or b"").decode().split(":", 2)[2]  # seq:ts:digest


async def _kafka(store: Storage, rig: Stores) -> object:
    from roost.backends.kafka import KafkaStore

    assert isinstance(store, KafkaStore)
    return store._rooms["r"].idem["alice", "c1"][2]  # in memory only: rebuilt from the log at start


STORED: dict[str, tuple[Callable[[Storage, Stores], Awaitable[object]], object]] = {
    "sqlite": (_sqlite, FULL),
    "postgres": (_postgres, FULL),
    "redis": (_redis, FULL[:16].hex()),
    "redis-cluster": (_redis, FULL[:16].hex()),
    "nats": (_nats, FULL[:16].hex()),
    "nats-cluster": (_nats, FULL[:16].hex()),
    "kafka": (_kafka, FULL[:16]),
}
"""Store engine -> (read the digest it stored for message 1, the encoding pinned)."""


def test_every_store_engine_has_its_encoding_pinned() -> None:
    assert set(STORES) <= set(STORED)


async def test_each_engine_stores_the_digest_in_its_pinned_encoding(stores: Stores) -> None:
    store = await stores.open()
    await store.create_room("r", "alice")
    await store.append(Draft("r", "alice", "c1", "message 1", KIND_TEXT))
    await store.append(Draft("r", "alice", "c2", "message 2", KIND_TEXT))
    await store.trim("r", 1)  # SQLite and PostgreSQL keep the digest once the body is gone
    read, pinned = STORED[stores.engine.id]
    assert await read(store, stores) == pinned
