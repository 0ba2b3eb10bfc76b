"""RedisStore: the message log of a room (a stream) on top of the Redis directory, and the atomic append.

The append script (``scripts.APPEND``) checks idempotency, assigns ``head + 1``, writes the stream entry,
trims to ``keep`` and, when the store is also the bus, publishes the frame: one atomic step, so a message
is never stored but unpublished, nor published out of seq order.
"""

from __future__ import annotations

import time
from typing import Any, Final

import msgspec
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from ...ports import Appended
from ...protocol.errors import Conflict, NotFound, Unavailable
from ...protocol.types import Draft, Message, Page, Position
from ..idempotency import body_digest
from .directory import RedisDirectory
from .keys import text
from .scripts import APPEND, READ, TRIM

__all__ = ["RedisStore"]

_message: Final = msgspec.json.Decoder(Message)
_SEQ_MARK: Final = b',"seq":0,'


class RedisStore(RedisDirectory):
    """``publish``: the append script also publishes (the store is the bus too); ``keep``: retention per room."""

    def __init__(
        self,
        client: aioredis.Redis | RedisCluster,
        *,
        prefix: str = "roost",
        publish: bool = False,
        keep: int = 0,
        wait: int = 0,
    ) -> None:
        super().__init__(client, prefix=prefix, wait=wait)
        # A frame published inside the append would reach subscribers before WAIT: with ?wait the service
        # publishes after the ack, like with any other store.
        publish = publish and wait == 0
        self.publish = publish
        self.sharded = isinstance(client, RedisCluster)
        self.keep = keep
        self._append = client.register_script(APPEND)
        self._read = client.register_script(READ)
        self._trim = client.register_script(TRIM)

    async def durability_warnings(self) -> list[str]:
        """The no-loss promise needs ``appendonly yes`` with ``appendfsync always`` (docs/backends.md)."""
        try:
            async with self._guard():
                config = await self.client.config_get("append*")
        except Unavailable as exc:  # CONFIG may be disabled (managed Redis): say so, do not guess
            return [f"redis: cannot read the persistence settings ({exc.reason}): check appendonly/appendfsync"]
        values = {text(k): text(v) for k, v in config.items()} if isinstance(config, dict) else {}
        if values.get("appendonly") != "yes":
            return [
                "redis: appendonly is not 'yes': an acked message lives only in memory and a Redis restart"
                " loses it (docs/backends.md)"
            ]
        if values.get("appendfsync") != "always":
            return [
                f"redis: appendfsync is {values.get('appendfsync')!r}, not 'always': a crash of the Redis host"
                " can lose up to a second of acked messages (docs/backends.md)"
            ]
        return []

    async def aclose(self) -> None:
        self._closed = True
        await self.replication.aclose()
        await self.client.aclose()

    # ---- Store ------------------------------------------------------------------------------

    async def append(self, draft: Draft) -> Appended:
        keys = self.keys(draft.room)
        ts = time.time_ns() // 1_000_000
        template = msgspec.json.encode(Message(draft.room, 0, draft.cmid, draft.sender, draft.body, ts, draft.kind))
        head, _, tail = template.partition(_SEQ_MARK)
        digest = body_digest(draft.body, draft.kind, 16).hex()
        args: list[bytes | str | int] = [
            f"{draft.sender}\n{draft.cmid}",
            digest,
            head + b',"seq":',
            b"," + tail,
            ts,
            keys.live,
            "1" if self.publish else "0",
            "1" if self.sharded else "0",
            self.keep,
        ]
        async with self._guard():
            result = await self._append(keys=[keys.meta, keys.log, keys.idem], args=args)
        seq = int(result[0])
        if seq > 0 and self.replication.replicas:  # new or a retry's original: acked only once replicated
            await self.replication.confirm(keys.meta)
        if seq == -404:
            raise NotFound(f"no room {draft.room!r}")
        if seq == -409:
            raise Conflict(f"client message id {draft.cmid!r} was used for another message")
        duplicate = int(result[2]) == 1
        message = Message(draft.room, seq, draft.cmid, draft.sender, draft.body, int(result[1]), draft.kind)
        return Appended(message, duplicate=duplicate, published=self.publish and not duplicate)

    async def read(self, room: str, after: int, limit: int) -> Page:
        return await self._page(room, after, limit, "asc")

    async def read_before(self, room: str, before: int, limit: int) -> Page:
        return await self._page(room, before, limit, "desc")

    async def _page(self, room: str, bound: int, limit: int, order: str) -> Page:
        keys = self.keys(room)
        if limit <= 0:
            return Page([], await self.position(room))
        async with self._guard():
            out = await self._read(keys=[keys.meta, keys.log], args=[max(0, bound), limit, order])
        if out and out[0] == -404:
            raise NotFound(f"no room {room!r}")
        position = Position(epoch=text(out[0]), head=int(out[1]), first=int(out[2]))
        messages = [_message.decode(raw) for raw in out[3:]]
        if order == "desc":
            messages.reverse()
        return Page(messages, position)

    async def position(self, room: str) -> Position:
        async with self._guard():
            epoch, head, first = await self.client.hmget(self.keys(room).meta, ["epoch", "head", "first"])
        if epoch is None or head is None or first is None:
            raise NotFound(f"no room {room!r}")
        return Position(epoch=text(epoch), head=int(head), first=int(first))

    async def seq_before_time(self, room: str, ts_ms: int) -> int:
        """Binary search over the log by ``ts`` (approximate: clocks of nodes differ)."""
        position = await self.position(room)
        lo, hi, best = position.first, position.head, 0
        keys = self.keys(room)
        while lo <= hi:
            mid = (lo + hi) // 2
            async with self._guard():
                entries = await self.client.xrange(keys.log, f"{mid}-0", "+", count=1)
            if not entries:
                hi = mid - 1
                continue
            fields: Any = entries[0][1]
            message = _message.decode(fields[b"d"])
            if message.ts < ts_ms:
                best, lo = message.seq, message.seq + 1
            else:
                hi = mid - 1
        return best if best else max(0, position.first - 1)

    async def trim(self, room: str, keep_last: int) -> int:
        keys = self.keys(room)
        async with self._guard():
            dropped = int(await self._trim(keys=[keys.meta, keys.log], args=[keep_last]))
        if dropped == -404:
            raise NotFound(f"no room {room!r}")
        return dropped
