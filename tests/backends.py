"""The backends the conformance suite runs against, each isolated by a fresh prefix, schema or stream.

Redis, NATS and PostgreSQL are the real services on this machine (127.0.0.1:6379, :4222, :5432).
Every test gets its own namespace and removes it afterwards, since those services keep state.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from dataclasses import dataclass

REDIS = os.environ.get("ROOST_TEST_REDIS", "redis://127.0.0.1:6379/0")
NATS = os.environ.get("ROOST_TEST_NATS", "nats://127.0.0.1:4222")
POSTGRES = os.environ.get("ROOST_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


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
    if name == "pg-redis":
        return Backend(name, f"{POSTGRES}?schema={ns}", f"{REDIS}?prefix={ns}", ns)
    if name == "pg-nats":
        return Backend(name, f"{POSTGRES}?schema={ns}", f"{NATS}?prefix={ns}", ns)
    raise ValueError(name)


ALL = ["embedded", "redis", "nats", "pg-redis", "pg-nats"]
SELECTED = [b for b in os.environ.get("ROOST_BACKENDS", ",".join(ALL)).split(",") if b]


async def cleanup(backend: Backend) -> None:
    """Remove everything the test created on the shared services."""
    if "redis" in backend.name:
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(REDIS)
        async with contextlib.aclosing(client):
            keys = [k async for k in client.scan_iter(match=f"*{backend.ns}*", count=1000)]
            if keys:
                await client.delete(*keys)
    if backend.name.startswith("pg"):
        import asyncpg

        conn = await asyncpg.connect(POSTGRES)
        try:
            await conn.execute(f"DROP SCHEMA IF EXISTS {backend.ns} CASCADE")
        finally:
            await conn.close()
    if "nats" in backend.name:
        import nats

        nc = await nats.connect(NATS)
        try:
            js = nc.jetstream()
            for info in await js.streams_info():
                if backend.ns in info.config.name:
                    await js.delete_stream(info.config.name)
        finally:
            await nc.close()
