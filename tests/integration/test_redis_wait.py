"""``?wait=N`` on a Redis store URL: a write is acked only once N replicas have it (replication.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from roost.backends import open_store
from roost.backends.redis import RedisStore
from roost.chaos.infra import RedisServer, wait_until
from roost.protocol.errors import Unavailable
from roost.protocol.types import Draft


@asynccontextmanager
async def primary_and_replica(tmp_path: Path) -> AsyncIterator[tuple[RedisServer, aioredis.Redis]]:
    """A redis-server, a replica of it linked and in sync, and a client of the replica (a pool big enough for
    a look right after each of many concurrent acks)."""
    primary = RedisServer(tmp_path)
    await primary.start()
    replica = RedisServer(tmp_path)
    replica.argv += ["--replicaof", "127.0.0.1", str(primary.port)]
    await replica.start()
    replica_client = aioredis.Redis(port=replica.port, max_connections=400)
    try:

        async def linked() -> bool:
            info = await replica_client.info("replication")
            return info.get("master_link_status") == "up"

        await wait_until("the replica linked to its primary", linked, 20)
        yield primary, replica_client
    finally:
        await replica_client.aclose()
        replica.stop()
        primary.stop()


async def test_an_append_no_replica_confirms_is_not_acked(tmp_path: Path) -> None:
    """[R-DUR-10] With ``?wait=1`` and no replica, the message may be written but is never acked: 4503
    (Unavailable) once the WAIT times out, and a retry with the same client message id is refused the same
    way, so the sender keeps it in its outbox."""
    primary = RedisServer(tmp_path)
    await primary.start()
    store = await open_store(f"{primary.url}?prefix=w&wait=1", str(tmp_path))
    try:
        await store.create_room("r", "alice")
        pytest.fail("create_room was acked without a replica")
    except Unavailable as exc:
        assert "0 of 1 replicas" in exc.reason
    finally:
        await store.aclose()
        primary.stop()


async def test_an_append_is_acked_once_the_replica_has_it(tmp_path: Path) -> None:
    """[R-DUR-11] With a replica attached, every write returns once the replica has it: the message is on
    the replica when the ack comes back, with no sleep in between."""
    async with primary_and_replica(tmp_path) as (primary, replica_client):
        store = await open_store(f"{primary.url}?prefix=w&wait=1", str(tmp_path))
        try:
            assert isinstance(store, RedisStore) and not store.publish  # published after the ack, not in the script
            assert await store.create_room("r", "alice")
            await store.add_member("r", "bob")
            for i in range(20):
                started = time.monotonic()
                appended = await store.append(Draft("r", "alice", f"c{i}", f"hello {i}"))
                assert time.monotonic() - started < 2.0  # confirmed by the replica, not by the WAIT's timeout
                on_replica = await replica_client.xrange(store.keys("r").log, min="-", max="+")
                assert len(on_replica) == appended.message.seq == i + 1
            assert await replica_client.sismember(store.keys("r").members, "bob")
        finally:
            await store.aclose()


async def test_concurrent_appends_share_their_fences(tmp_path: Path) -> None:
    """[R-DUR-17] Concurrent writers to one room share a fence round (group commit): 300 appends at once are
    each on the replica when acked, and far fewer ``WAIT`` commands than appends reached the primary."""
    async with primary_and_replica(tmp_path) as (primary, replica_client):
        primary_client = aioredis.Redis(port=primary.port)
        store = await open_store(f"{primary.url}?prefix=w&wait=1", str(tmp_path))
        try:
            assert isinstance(store, RedisStore)
            assert await store.create_room("r", "alice")
            await primary_client.config_resetstat()

            async def append_and_check(i: int) -> None:
                appended = await store.append(Draft("r", "alice", f"c{i}", f"hello {i}"))
                on_replica = await replica_client.xlen(store.keys("r").log)  # the replica applies in seq order
                assert on_replica >= appended.message.seq, f"seq {appended.message.seq} acked before the replica had it"

            await asyncio.gather(*(append_and_check(i) for i in range(300)))
            waits = int((await primary_client.info("commandstats")).get("cmdstat_wait", {}).get("calls", 0))
            assert 0 < waits < 150, f"{waits} WAIT commands for 300 concurrent appends"
        finally:
            await store.aclose()
            await primary_client.aclose()
