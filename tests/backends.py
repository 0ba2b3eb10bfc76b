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

from .kafka_infra import KAFKA, delete_topic

REDIS = os.environ.get("ROOST_TEST_REDIS", "redis://127.0.0.1:6379/0")
NATS = os.environ.get("ROOST_TEST_NATS", "nats://127.0.0.1:4222")
POSTGRES = os.environ.get("ROOST_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_CLUSTER = "redis+cluster://127.0.0.1:7001"  # tests/clusters.py RedisCluster
NATS_CLUSTER = "nats://127.0.0.1:14221,127.0.0.1:14222,127.0.0.1:14223"  # tests/clusters.py NatsCluster
# KAFKA: tests/kafka_infra.py (Tansu on 127.0.0.1:19092 unless ROOST_TEST_KAFKA names a broker); a topic per test


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
        url = f"{REDIS_CLUSTER}?prefix={ns}"
        return Backend(name, url, url, ns)
    if name == "nats-cluster":
        url = f"{NATS_CLUSTER}?prefix={ns}&replicas=3"
        return Backend(name, url, url, ns)
    if name == "pg-redis":
        return Backend(name, f"{POSTGRES}?schema={ns}", f"{REDIS}?prefix={ns}", ns)
    if name == "pg-nats":
        return Backend(name, f"{POSTGRES}?schema={ns}", f"{NATS}?prefix={ns}", ns)
    if name == "kafka-redis":
        return Backend(name, f"kafka://{KAFKA}/{ns}", f"{REDIS}?prefix={ns}", ns)
    if name == "kafka-nats":
        return Backend(name, f"kafka://{KAFKA}/{ns}", f"{NATS}?prefix={ns}", ns)
    raise ValueError(name)


ALL = ["embedded", "redis", "nats", "pg-redis", "pg-nats", "redis-cluster", "nats-cluster", "kafka-redis", "kafka-nats"]
SELECTED = [b for b in os.environ.get("ROOST_BACKENDS", ",".join(ALL)).split(",") if b]


async def cleanup(backend: Backend) -> None:
    """Remove everything the test created on the shared services."""
    if backend.name == "redis-cluster":
        await _clean_redis_cluster(REDIS_CLUSTER, backend.ns)
    elif "redis" in backend.name:
        await _clean_redis(REDIS, backend.ns)
    if backend.name.startswith("kafka"):
        await delete_topic(KAFKA, backend.ns)
    if backend.name.startswith("pg"):
        import asyncpg

        conn = await asyncpg.connect(POSTGRES)
        try:
            await conn.execute(f"DROP SCHEMA IF EXISTS {backend.ns} CASCADE")
        finally:
            await conn.close()
    if backend.name == "nats-cluster":
        await _clean_nats(NATS_CLUSTER, backend.ns)
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
