"""Redis: the server on this machine (127.0.0.1:6379) and the cluster tests/clusters.py starts; a key prefix
per test. One URL serves as store and bus (with both, the store publishes inside its append script)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from roost.chaos.infra import wait_until
from roost.ports import Storage

from ..clusters import address, base_dir
from .engine import DigestPin, Engine
from .rawbytes import files_under, lzf_expanded

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


async def _raw(store: Storage, ns: str, data_dir: Path) -> bytes:
    """``DUMP`` (the serialized value, as RDB files and replication carry it) of every key of the namespace, on
    every primary, with its compressed strings expanded: what Redis holds in memory for it."""
    import redis.asyncio as aioredis

    from roost.backends.redis import RedisStore

    assert isinstance(store, RedisStore)
    if store.sharded:
        nodes = [(str(n.host), int(n.port)) for n in store.client.get_primaries()]  # type: ignore[union-attr]
    else:
        kwargs = store.client.connection_pool.connection_kwargs  # type: ignore[union-attr]
        nodes = [(str(kwargs["host"]), int(kwargs["port"]))]
    out = []
    for host, port in nodes:
        node = aioredis.Redis(host=host, port=port)
        async with contextlib.aclosing(node):
            async for key in node.scan_iter(match=f"*{ns}*", count=1000):
                dumped = await node.dump(key)
                out.append(key + lzf_expanded(dumped or b""))
    return b"".join(out)


async def _cluster_raw(store: Storage, ns: str, data_dir: Path) -> bytes:
    """As ``_raw``, and the files of the cluster this session started (its nodes keep an AOF), once the AOF
    rewrites the store started after its erasures are done on every node."""
    import asyncio

    import redis.asyncio as aioredis

    from roost.backends.redis import RedisStore

    assert isinstance(store, RedisStore)
    memory = await _raw(store, ns, data_dir)
    await store._rewrites.settled()
    nodes = [(str(n.host), int(n.port)) for n in store.client.get_primaries()]  # type: ignore[union-attr]
    for host, port in list(nodes):
        async with contextlib.aclosing(aioredis.Redis(host=host, port=port)) as primary:
            info = await primary.info("replication")
        nodes += [(str(v["ip"]), int(v["port"])) for k, v in info.items() if k.startswith("slave")]
    for host, port in nodes:
        async with contextlib.aclosing(aioredis.Redis(host=host, port=port)) as client:
            for _ in range(300):
                info = await client.info("persistence")
                if not info["aof_rewrite_in_progress"] and not info["aof_rewrite_scheduled"]:
                    break
                await asyncio.sleep(0.1)  # a wait helper's poll
    # The replaced AOF files are "history" in each node's manifest until the node's cron unlinks them.
    manifests = list(base_dir("redis-cluster").glob("**/*.manifest"))
    await wait_until("the replaced AOF files removed", lambda: all(b" type h" not in m.read_bytes() for m in manifests))
    return memory + lzf_expanded(files_under(base_dir("redis-cluster")))


ENGINES = (
    Engine("redis", store_url=_redis, bus_url=_redis, clean=_clean, digest=_DIGEST, raw=_raw),
    Engine(
        "redis-cluster",
        store_url=_redis_cluster,
        bus_url=_redis_cluster,
        rig="redis_cluster",
        clean=_clean_cluster,
        digest=_DIGEST,
        raw=_cluster_raw,
    ),
)
