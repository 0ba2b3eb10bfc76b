"""Acks that wait for replicas (``?wait=N``): a failover then loses no acknowledged write.

Redis replicates asynchronously: a primary acks a write its replicas may not have yet, and a failover to
such a replica loses it. ``WAIT N T`` blocks until N replicas have every write *this connection* made, so it
must run on the connection that wrote, which a pool (and the cluster client, which sends ``WAIT`` to every
node) does not promise. One primary's replication stream is a single ordered log, though: a replica that
has a later write has every earlier one. So after a write, ``confirm`` makes one small write of its own
(``INCR`` of a fence key in the same slot, hence on the same primary) followed by ``WAIT`` on the same
connection (a pipeline); when ``WAIT`` counts N replicas, the earlier write is on them too.

That fence proves every write made before its ``INCR``, not only the one that asked: concurrent writers to
one fence key share a round (group commit, ``FenceRounds``), so the fences cost a round trip per batch of
writes instead of a ``WAIT``, and a connection blocked in it, per write.

Fewer than N replicas in ``timeout_ms`` is ``Unavailable`` (4503): the write may be stored, so the client
retries with the same client message id and gets the original message (idempotent sends) once replicas
have it. ``WAIT`` does not make Redis a consensus system: with more replicas than N, a failover may still
promote one that lacks the write (docs/backends.md).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from ...protocol.errors import Unavailable
from .connection import guarded

__all__ = ["FenceRounds", "Replication"]


def fence_key(key: str) -> str:
    """A key in ``key``'s slot: its hash tag, or (no tag) the whole key as the tag."""
    start = key.find("{")
    end = key.find("}", start + 1)
    tag = key[start + 1 : end] if start != -1 and end > start + 1 else key
    return f"{{{tag}}}:fence"


class FenceRounds:
    """Group commit for one fence key: a writer joins the first round that starts after its write, so one
    ``INCR`` + ``WAIT`` confirms every writer that joined before it began; those who come while it runs wait
    for the next. A failed round fails each of its writers (they retry; sends are idempotent)."""

    def __init__(self, on_idle: Callable[[], None]) -> None:
        self._waiting: list[asyncio.Future[None]] = []
        self._driver: asyncio.Task[None] | None = None
        self._on_idle = on_idle

    async def confirm(self, fence_once: Callable[[], Awaitable[None]]) -> None:
        mine: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        mine.add_done_callback(lambda f: f.cancelled() or f.exception())  # a writer that gave up is not an error
        self._waiting.append(mine)
        if self._driver is None:
            self._driver = asyncio.create_task(self._drive(fence_once))
        await asyncio.shield(mine)

    async def _drive(self, fence_once: Callable[[], Awaitable[None]]) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []  # every write of this batch is done: the round covers it
                try:
                    await fence_once()
                except BaseException as exc:  # a cancelled round (the store closing) must not leave its writers waiting
                    failure = exc if isinstance(exc, Exception) else Unavailable("redis: closing")
                    for writer in batch:
                        if not writer.done():
                            writer.set_exception(failure)
                    if failure is not exc:
                        raise
                else:
                    for writer in batch:
                        if not writer.done():
                            writer.set_result(None)
        finally:
            self._driver = None
            for writer in self._waiting:  # those who came during a cancelled round
                if not writer.done():
                    writer.set_exception(Unavailable("redis: closing"))
            self._waiting = []
            self._on_idle()


class Replication:
    def __init__(self, client: aioredis.Redis | RedisCluster, replicas: int, timeout_ms: int = 2000) -> None:
        self.client = client
        self.replicas = replicas
        self.timeout_ms = timeout_ms
        self._primaries: dict[tuple[str, int], aioredis.Redis] = {}
        self._rounds: dict[tuple[str, str], FenceRounds] = {}

    async def confirm(self, *keys: str) -> None:
        """Return once ``replicas`` replicas have every write made so far to the slots of ``keys``."""
        if self.replicas <= 0:
            return
        fences = {fence_key(key) for key in keys}
        if isinstance(self.client, RedisCluster):
            by_node: dict[tuple[str, int], str] = {}
            async with guarded():
                for fence in fences:
                    node = self.client.get_node_from_key(fence)
                    if node is None:
                        raise Unavailable("redis: no primary known for a slot (the cluster is failing over)")
                    by_node.setdefault((str(node.host), int(node.port)), fence)
            await asyncio.gather(*(self._fence(self._primary(node), fence) for node, fence in by_node.items()))
        else:
            await asyncio.gather(*(self._fence(self.client, fence) for fence in fences))

    def _primary(self, node: tuple[str, int]) -> aioredis.Redis:
        """A plain client of one cluster primary: a pipeline on it runs its commands on one connection."""
        client = self._primaries.get(node)
        if client is None:
            assert isinstance(self.client, RedisCluster)
            kwargs = self.client.get_connection_kwargs()
            client = aioredis.Redis(
                host=node[0],
                port=node[1],
                username=kwargs.get("username"),
                password=kwargs.get("password"),
                ssl=bool(kwargs.get("ssl", False)),
                max_connections=16,
            )
            self._primaries[node] = client
        return client

    async def _fence(self, client: aioredis.Redis, fence: str) -> None:
        key = (str(id(client)), fence)
        rounds = self._rounds.get(key)
        if rounds is None:

            def forget() -> None:
                self._rounds.pop(key, None)

            rounds = self._rounds[key] = FenceRounds(forget)
        await rounds.confirm(lambda: self._fence_once(client, fence))

    async def _fence_once(self, client: aioredis.Redis, fence: str) -> None:
        async with guarded(), client.pipeline(transaction=False) as pipe:
            pipe.incr(fence)
            pipe.execute_command("WAIT", self.replicas, self.timeout_ms)
            _, acked = await pipe.execute()
        if int(acked) < self.replicas:
            raise Unavailable(
                f"redis: the write reached {acked} of {self.replicas} replicas in {self.timeout_ms} ms (?wait=)"
            )

    async def aclose(self) -> None:
        for client in self._primaries.values():
            await client.aclose()
        self._primaries.clear()
