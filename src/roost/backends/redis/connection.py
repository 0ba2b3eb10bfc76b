"""How Roost talks to Redis: the URL's options, the client and its pool, and the one boundary where driver
errors become ``Unavailable``.

Store and bus share these rules, so a Redis URL means the same thing to both and a ``RedisError`` never
escapes either of them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Final
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import URL_QUERY_ARGUMENT_PARSERS
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from ..boundary import engine_boundary
from ..options import url_options

__all__ = ["MAX_CONNECTIONS", "NO_RETRY", "connect_redis", "gate_for", "guarded", "parse_redis_url"]


ROOST_OPTIONS: Final = ("prefix", "keep", "wait")


def parse_redis_url(url: str) -> tuple[str, dict[str, str]]:
    """Split roost options (``prefix``, ``keep``, ``wait``) off a redis URL; ``redis+cluster://`` means a cluster."""
    parts = urlsplit(url)
    options = url_options(url, "redis", ROOST_OPTIONS, URL_QUERY_ARGUMENT_PARSERS)
    ours: dict[str, str] = {k: options.pop(k) for k in ROOST_OPTIONS if k in options}
    query = "&".join(f"{k}={v}" for k, v in options.items())
    return parts._replace(query=query).geturl(), ours


MAX_CONNECTIONS: Final = 64


def connect_redis(url: str) -> aioredis.Redis | RedisCluster:
    """A pool that waits for a free connection instead of failing when many requests are in flight.

    redis-py's cluster client has no blocking pool (a node's 65th concurrent command raises
    ``MaxConnectionsError``), so for a cluster the store and bus bound their concurrent commands with a
    semaphore of the same size instead (``gate_for``).
    """
    if url.startswith("redis+cluster://"):
        return RedisCluster.from_url("redis://" + url.removeprefix("redis+cluster://"), max_connections=MAX_CONNECTIONS)
    pool = aioredis.BlockingConnectionPool.from_url(url, max_connections=MAX_CONNECTIONS, timeout=10)
    return aioredis.Redis.from_pool(pool)  # owns the pool: aclose() disconnects its connections


def gate_for(client: aioredis.Redis | RedisCluster) -> asyncio.Semaphore | None:
    return asyncio.Semaphore(MAX_CONNECTIONS) if isinstance(client, RedisCluster) else None


@contextlib.asynccontextmanager
async def guarded(gate: asyncio.Semaphore | None = None) -> AsyncIterator[None]:
    """Driver errors become ``Unavailable`` here; on a cluster, ``gate`` bounds the commands in flight."""
    async with engine_boundary("redis"):
        if gate is None:
            yield
        else:
            async with gate:
                yield


NO_RETRY: Final = Retry(NoBackoff(), 0)
"""Pub/sub connections must not reconnect silently: redis-py would resubscribe by itself, and the bus
would never learn that messages may have been missed meanwhile (no reset)."""
