"""RedisStore: the message log of a room (a stream) on top of the Redis directory, and the atomic append.

The append script (``scripts.APPEND``) checks idempotency, assigns ``head + 1``, writes the stream entry,
trims to ``keep`` and, when the store is also the bus, publishes the frame: one atomic step, so a message
is never stored but unpublished, nor published out of seq order.

Erasure (``scripts.ERASE``): the entry leaves the stream, which is rebuilt without it (``XDEL`` alone leaves the
bytes in the stream's listpack), and its tombstone goes to the room's ``:erased`` hash, from which reads fill
the hole; then, when Redis keeps an AOF, a rewrite is started so the file loses the old text too (``_Rewrites``).

Leases (``scripts.LEASE``): the holder is a key set with ``PX``, so Redis's own clock ends a lease nobody
renews, and Redis's expiry, not a node, decides who may take it next; the token comes from an ``INCR`` in the
same script, so granting and numbering are one step.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any, Final

import msgspec
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from ...ports import Appended, Redaction
from ...protocol.errors import Conflict, NotFound, RoostError, Unavailable
from ...protocol.types import Draft, Message, Page, Position
from ..idempotency import body_digest
from .directory import RedisDirectory
from .keys import lease_keys, text
from .scripts import APPEND, ERASE, LEASE, READ, RELEASE, TRIM

__all__ = ["RedisStore"]

log = logging.getLogger(__name__)

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
        self._erase = client.register_script(ERASE)
        self._rewrites = _Rewrites(self)
        self._lease = client.register_script(LEASE)
        self._release = client.register_script(RELEASE)

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
        await self._rewrites.aclose()
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
            out = await self._read(keys=[keys.meta, keys.log, keys.erased], args=[max(0, bound), limit, order])
        if out and out[0] == -404:
            raise NotFound(f"no room {room!r}")
        position = Position(epoch=text(out[0]), head=int(out[1]), first=int(out[2]))
        return Page([_message.decode(raw) for raw in out[3:]], position)

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
        return await self._trim_room(room, keep_last, 0)

    async def trim_before(self, room: str, seq: int) -> int:
        return await self._trim_room(room, 0, max(1, seq))

    async def _trim_room(self, room: str, keep_last: int, below: int) -> int:
        keys = self.keys(room)
        async with self._guard():
            dropped = int(await self._trim(keys=[keys.meta, keys.log, keys.erased], args=[keep_last, below]))
        if dropped == -404:
            raise NotFound(f"no room {room!r}")
        await self.replication.confirm(keys.meta)
        return dropped

    async def erase(self, room: str, redactions: Sequence[Redaction]) -> int:
        """The tombstones are built here from the stored entries (kind and body replaced), then one script swaps
        them in and rebuilds the log without the old entries (``scripts.ERASE``)."""
        keys = self.keys(room)
        args: list[bytes | str | int] = []
        for r in redactions:
            async with self._guard():
                entries = await self.client.xrange(keys.log, f"{r.seq}-0", f"{r.seq}-0")
            if not entries:
                continue  # trimmed, erased already, or never stored
            fields: Any = entries[0][1]
            stored = _message.decode(fields[b"d"])
            args += [r.seq, msgspec.json.encode(msgspec.structs.replace(stored, kind=r.kind, body=r.body))]
        if not args:
            await self.position(room)  # an unknown room is still NotFound
            return 0
        async with self._guard():
            replaced = int(await self._erase(keys=[keys.meta, keys.log, keys.erased, keys.rewrite], args=args))
        if replaced == -404:
            raise NotFound(f"no room {room!r}")
        await self.replication.confirm(keys.meta)
        if replaced:
            self._rewrites.request()
        return replaced

    # ---- Leases -----------------------------------------------------------------------------

    async def lease(self, name: str, holder: str, ttl_ms: int) -> int | None:
        """With ``?wait=N`` a grant is acked once N replicas have it, like any write: a failover to a replica
        that missed it would hand the name, and its token, out again."""
        keys = lease_keys(self.prefix, name)
        async with self._guard():
            token = int(await self._lease(keys=keys, args=[holder, ttl_ms]))
        if token == 0:
            return None
        await self.replication.confirm(keys[0])
        return token

    async def release(self, name: str, holder: str) -> None:
        """Not confirmed with ``?wait``: a release a failover loses only leaves the lease to run out."""
        async with self._guard():
            await self._release(keys=lease_keys(self.prefix, name)[:1], args=[holder])


class _Rewrites:
    """After an erasure, an AOF rewrite (``BGREWRITEAOF``) when Redis keeps an AOF: the AOF holds every command
    since the last rewrite, the ``XADD`` of an erased message included, until a rewrite that started after the
    erasure (a rewrite writes the data set as it was when it started) replaces it. One waiter per store: every
    erasure marks a rewrite due, and the waiter starts one after each mark, retrying while one is running, on
    every primary (every one of a cluster's) and on every replica its primary lists (``_primary``)."""

    RETRY_S: Final = 1.0
    CATCH_UP_S: Final = 10.0
    """How long a replica may take to apply the erasure before its rewrite is started anyway."""

    def __init__(self, store: RedisStore) -> None:
        self.store = store
        self._task: asyncio.Task[None] | None = None
        self._due = False
        self._appendonly: bool | None = None

    def request(self) -> None:
        self._due = True
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def settled(self) -> None:
        """Until every rewrite asked for has been started (tests read the AOF after it finishes)."""
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)

    async def _run(self) -> None:
        try:
            if not await self._keeps_aof():
                return
            while self._due:
                self._due = False
                client = self.store.client
                if isinstance(client, RedisCluster):
                    for node in client.get_primaries():
                        await self._primary(partial(client.execute_command, target_nodes=node), node.connection_kwargs)
                else:
                    await self._primary(client.execute_command, client.connection_pool.connection_kwargs)
        except RoostError as exc:  # the next erasure asks again; the AOF's own auto-rewrite drops it eventually
            log.warning("redis: no AOF rewrite after an erasure (%s): the AOF keeps the erased text until one", exc)

    async def _primary(self, run: Callable[..., Awaitable[Any]], kwargs: dict[str, Any]) -> None:
        """Rewrite a primary's AOF, then each of its replicas' (they keep their own), each once it has applied the
        primary's stream up to now: a replica rewriting before the erasure reached it would keep the text (seen
        on the test cluster). Replicas are reached at the address their primary lists, with the store's
        credentials."""
        async with self.store._guard():
            info = await run("INFO", "replication")
        offset = int(info.get("master_repl_offset", 0)) if isinstance(info, dict) else 0
        await self._start(partial(run, "BGREWRITEAOF"))
        replicas = [v for k, v in (info.items() if isinstance(info, dict) else ()) if k.startswith("slave")]
        auth = {k: kwargs[k] for k in ("username", "password", "socket_timeout") if kwargs.get(k) is not None}
        for replica in replicas:
            if not isinstance(replica, dict) or "ip" not in replica:
                continue
            node = aioredis.Redis(host=str(replica["ip"]), port=int(replica["port"]), **auth)
            async with contextlib.aclosing(node):
                for _ in range(int(self.CATCH_UP_S / 0.05)):
                    async with self.store._guard():
                        state = await node.info("replication")
                    if int(state.get("slave_repl_offset", 0)) >= offset:
                        break
                    await asyncio.sleep(0.05)
                await self._start(node.bgrewriteaof)

    async def _start(self, command: Callable[[], Awaitable[Any]]) -> None:
        """Start a rewrite; while one runs (it started before the erasure), wait and ask again."""
        while True:
            try:
                async with self.store._guard():
                    await command()
                return
            except Unavailable as exc:
                if "in progress" not in exc.reason:
                    raise
            await asyncio.sleep(self.RETRY_S)

    async def _keeps_aof(self) -> bool:
        if self._appendonly is None:
            try:
                async with self.store._guard():
                    config = await self.store.client.config_get("appendonly")
            except Unavailable:
                return False  # CONFIG disabled (managed Redis): its operator rewrites the AOF (docs/backends.md)
            values = list(config.values()) if isinstance(config, dict) else []
            self._appendonly = any(text(v) == "yes" for v in values)
        return self._appendonly

    async def aclose(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
