"""The Directory half of the Redis store: rooms, members, room attributes and read positions.

A room's own records (``meta``, ``members``, ``attrs``, ``reads``) share its hash tag; the indexes that list
rooms across rooms (``<prefix>:index:*``) live in other slots and are written by plain commands after the
room's keys, never inside a script with them. ``RedisStore`` is this class plus the message log.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import AsyncIterator, Mapping

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from ...protocol.errors import NotFound, Unavailable, UsageError
from .connection import gate_for, guarded
from .keys import RoomKeys, text
from .replication import Replication
from .scripts import CREATE, RAISE

__all__ = ["RedisDirectory"]


class RedisDirectory:
    """The client, the key names and the error boundary that the store's log builds on."""

    def __init__(self, client: aioredis.Redis | RedisCluster, *, prefix: str = "roost", wait: int = 0) -> None:
        self.client = client
        self.prefix = prefix
        self.replication = Replication(client, wait)
        """``?wait=N``: every write returns once N replicas have it (``replication.py``)."""
        self._create = client.register_script(CREATE)
        self._raise = client.register_script(RAISE)
        self._keys: dict[str, RoomKeys] = {}
        self._gate = gate_for(client)
        self._closed = False

    def keys(self, room: str) -> RoomKeys:
        keys = self._keys.get(room)
        if keys is None:
            keys = self._keys[room] = RoomKeys(self.prefix, room)
        return keys

    @contextlib.asynccontextmanager
    async def _guard(self) -> AsyncIterator[None]:
        """Every command of the store: refused once closed (redis-py would quietly reconnect), errors mapped."""
        if self._closed:
            raise Unavailable("store is closed")
        async with guarded(self._gate):
            yield

    def _index(self, name: str) -> str:
        return f"{self.prefix}:index:{name}"

    async def create_room(self, room: str, owner: str, meta: Mapping[str, str] | None = None) -> bool:
        keys = self.keys(room)
        now = time.time_ns() // 1_000_000
        pairs = [item for kv in (meta or {}).items() for item in kv]
        async with self._guard():
            created = int(
                await self._create(
                    keys=[keys.meta, keys.members, keys.attrs("meta")], args=[secrets.token_hex(8), owner, now, *pairs]
                )
            )
            if created:
                await self.client.sadd(self._index("rooms"), room)
                await self.client.sadd(self._index(f"user:{owner}"), room)
        await self.replication.confirm(keys.meta, self._index("rooms"), self._index(f"user:{owner}"))
        return bool(created)

    async def room_exists(self, room: str) -> bool:
        async with self._guard():
            return bool(await self.client.exists(self.keys(room).meta))

    async def is_member(self, room: str, user: str) -> bool:
        async with self._guard():
            return bool(await self.client.sismember(self.keys(room).members, user))

    async def add_member(self, room: str, user: str) -> bool:
        if not await self.room_exists(room):
            raise NotFound(f"no room {room!r}")
        async with self._guard():
            added = bool(await self.client.sadd(self.keys(room).members, user))
            await self.client.sadd(self._index(f"user:{user}"), room)
        await self.replication.confirm(self.keys(room).members, self._index(f"user:{user}"))
        return added

    async def remove_member(self, room: str, user: str) -> bool:
        if not await self.room_exists(room):
            raise NotFound(f"no room {room!r}")
        async with self._guard():
            removed = bool(await self.client.srem(self.keys(room).members, user))
            await self.client.srem(self._index(f"user:{user}"), room)
        await self.replication.confirm(self.keys(room).members, self._index(f"user:{user}"))
        return removed

    async def rooms_of(self, user: str) -> list[str]:
        async with self._guard():
            return sorted(text(r) for r in await self.client.smembers(self._index(f"user:{user}")))

    async def all_rooms(self) -> list[str]:
        async with self._guard():
            return sorted(text(r) for r in await self.client.smembers(self._index("rooms")))

    async def members(self, room: str) -> list[str]:
        async with self._guard():
            return sorted(text(u) for u in await self.client.smembers(self.keys(room).members))

    async def room_attrs(self, room: str, ns: str) -> dict[str, str]:
        async with self._guard():
            raw = await self.client.hgetall(self.keys(room).attrs(ns))
        return {text(k): text(v) for k, v in raw.items()}

    async def set_room_attr(self, room: str, ns: str, key: str, value: str | None) -> None:
        if ns == "meta":
            raise UsageError("meta attributes are written by create_room only")
        if not await self.room_exists(room):
            raise NotFound(f"no room {room!r}")
        async with self._guard():
            if value is None:
                await self.client.hdel(self.keys(room).attrs(ns), key)
            else:
                await self.client.hset(self.keys(room).attrs(ns), key, value)
        await self.replication.confirm(self.keys(room).attrs(ns))

    # ---- read positions ---------------------------------------------------------------------

    async def mark_read(self, room: str, user: str, seq: int) -> int:
        """The room's hash is the truth (``readers``); the user's index follows with the same value.

        Both only ever rise, so a crash between the two writes is healed by the user's next mark."""
        async with self._guard():
            value = int(await self._raise(keys=[self.keys(room).reads], args=[user, seq]))
            await self._raise(keys=[self._index(f"reads:{user}")], args=[room, value])
        await self.replication.confirm(self.keys(room).reads, self._index(f"reads:{user}"))
        return value

    async def read_positions(self, user: str) -> dict[str, int]:
        async with self._guard():
            raw = await self.client.hgetall(self._index(f"reads:{user}"))
        return {text(room): int(seq) for room, seq in raw.items()}

    async def readers(self, room: str) -> dict[str, int]:
        async with self._guard():
            raw = await self.client.hgetall(self.keys(room).reads)
        return {text(user): int(seq) for user, seq in raw.items()}

