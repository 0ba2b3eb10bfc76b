"""Redis: the server on this machine (127.0.0.1:6379) and the cluster tests/clusters.py starts; a key prefix
per test. One URL serves as store and bus (with both, the store publishes inside its append script)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from roost.ports import Storage

from ..clusters import address
from .engine import DigestPin, Engine

REDIS = os.environ.get("ROOST_TEST_REDIS", "redis://127.0.0.1:6379/0")


async def _clean_redis(url: str, ns: str) -> None:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url)
    async with contextlib.aclosing(client):
        keys = [k async for k in client.scan_iter(match=f"*{ns}*", count=1000)]
        if keys:
            await client.delete(*keys)


async def _clean_redis_cluster(url: str, ns: str) -> None:
    """SCAN every master (each holds its own slots) and delete there, key by key: they span slots."""
    import redis.asyncio as aioredis
    from redis.asyncio.cluster import RedisCluster

    cluster = RedisCluster.from_url("redis://" + url.removeprefix("redis+cluster://"))
    async with contextlib.aclosing(cluster):
        await cluster.initialize()
        masters = [(str(n.host), int(n.port)) for n in cluster.get_primaries()]
    for host, port in masters:
        node = aioredis.Redis(host=host, port=port)
        async with contextlib.aclosing(node):
            keys = [k async for k in node.scan_iter(match=f"*{ns}*", count=1000)]
            async with node.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.unlink(key)
                await pipe.execute()


def _redis(ns: str) -> str:
    return f"{REDIS}?prefix={ns}"


def _redis_cluster(ns: str) -> str:
    return f"{address('redis-cluster')}?prefix={ns}"


async def _clean(ns: str) -> None:
    await _clean_redis(REDIS, ns)


async def _clean_cluster(ns: str) -> None:
    await _clean_redis_cluster(address("redis-cluster"), ns)


async def _stored_digest(store: Storage, ns: str, data_dir: Path) -> object:
    from roost.backends.redis import RedisStore

    assert isinstance(store, RedisStore)
    record = await store.client.hget(store.keys("r").idem, "alice\nc1")
    assert isinstance(record, bytes)
    return record.decode().split(":", 2)[2]  # seq:ts:digest


_DIGEST = DigestPin(_stored_digest, lambda d: d[:16].hex())

ENGINES = (
    Engine("redis", store_url=_redis, bus_url=_redis, clean=_clean, digest=_DIGEST),
    Engine(
        "redis-cluster",
        store_url=_redis_cluster,
        bus_url=_redis_cluster,
        rig="redis_cluster",
        clean=_clean_cluster,
        digest=_DIGEST,
    ),
)
