"""The backends the conformance suite runs against, each isolated by a fresh prefix, schema or stream.

Redis, NATS and PostgreSQL are the real services on this machine (127.0.0.1:6379, :4222, :5432).
"redis-cluster" and "nats-cluster" run on clusters that tests/clusters.py starts (once per session,
only when one of those backends is selected: see conftest.py); nats-cluster uses R3 streams.
Every test gets its own namespace and removes it afterwards, since those services keep state.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from dataclasses import dataclass

from .clusters import address
from .kafka_infra import delete_topic

REDIS = os.environ.get("ROOST_TEST_REDIS", "redis://127.0.0.1:6379/0")
NATS = os.environ.get("ROOST_TEST_NATS", "nats://127.0.0.1:4222")
POSTGRES = os.environ.get("ROOST_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
# The clusters and the Kafka broker are the session's own (tests/clusters.py, tests/kafka_infra.py), on ports the
# OS handed out: ``address("redis-cluster")``, ``address("nats-cluster")``, ``address("tansu")``; a topic per test.


@dataclass(frozen=True)
class Backend:
    name: str
    store: str | None
    bus: str | None
    ns: str


def make(name: str) -> Backend:
    ns = "t" + uuid.uuid4().hex[:12]
    if name == "embedded":
        return Backend(name, None, None, ns)
    if name == "redis":
        url = f"{REDIS}?prefix={ns}"
        return Backend(name, url, url, ns)
    if name == "nats":
        url = f"{NATS}?prefix={ns}"
        return Backend(name, url, url, ns)
    if name == "redis-cluster":
        url = f"{address('redis-cluster')}?prefix={ns}"
        return Backend(name, url, url, ns)
    if name == "nats-cluster":
        url = f"{address('nats-cluster')}?prefix={ns}&replicas=3"
        return Backend(name, url, url, ns)
    if name == "pg-redis":
        return Backend(name, f"{POSTGRES}?schema={ns}", f"{REDIS}?prefix={ns}", ns)
    if name == "pg-nats":
        return Backend(name, f"{POSTGRES}?schema={ns}", f"{NATS}?prefix={ns}", ns)
    if name == "kafka-redis":
        return Backend(name, f"kafka://{address('tansu')}/{ns}", f"{REDIS}?prefix={ns}", ns)
    if name == "kafka-nats":
        return Backend(name, f"kafka://{address('tansu')}/{ns}", f"{NATS}?prefix={ns}", ns)
    raise ValueError(name)


ALL = ["embedded", "redis", "nats", "pg-redis", "pg-nats", "redis-cluster", "nats-cluster", "kafka-redis", "kafka-nats"]
SELECTED = [b for b in os.environ.get("ROOST_BACKENDS", ",".join(ALL)).split(",") if b]


async def cleanup(backend: Backend) -> None:
    """Remove everything the test created on the shared services."""
    if backend.name == "redis-cluster":
        await _clean_redis_cluster(address("redis-cluster"), backend.ns)
    elif "redis" in backend.name:
        await _clean_redis(REDIS, backend.ns)
    if backend.name.startswith("kafka"):
        await delete_topic(address("tansu"), backend.ns)
    if backend.name.startswith("pg"):
        import asyncpg

        conn = await asyncpg.connect(POSTGRES)
        try:
            await conn.execute(f"DROP SCHEMA IF EXISTS {backend.ns} CASCADE")
        finally:
            await conn.close()
    if backend.name == "nats-cluster":
        await _clean_nats(address("nats-cluster"), backend.ns)
    elif "nats" in backend.name:
        await _clean_nats(NATS, backend.ns)


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


async def _clean_nats(url: str, ns: str) -> None:
    import nats

    nc = await nats.connect([f"nats://{h}" for h in url.removeprefix("nats://").split(",")])
    try:
        js = nc.jetstream()
        for info in await js.streams_info():
            name = info.config.name or ""
            if ns in name:
                await js.delete_stream(name)
    finally:
        await nc.close()
