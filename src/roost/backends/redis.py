"""Redis engine: RedisStore (Store + Directory) and RedisBus, standalone or Redis Cluster.

Layout: every key of a room shares one hash tag, ``{<prefix>:<room>}``, so a room lives in one
cluster slot and one Lua script can touch all of it:

* ``{..}:meta``  hash: ``epoch``, ``head`` (newest seq), ``first`` (oldest kept seq)
* ``{..}:log``   stream; entry id ``<seq>-0``, field ``d`` = the encoded ``msg`` frame
* ``{..}:idem``  hash: ``sender\\ncmid`` -> ``seq:ts:digest``, kept forever (retention does not drop it)
* ``{..}:members`` set; ``{..}:live`` the pub/sub channel (sharded in a cluster)
* ``{..}:reads`` hash: user -> read position (seq), only ever raised; mirrored per user in
  ``<prefix>:index:reads:<user>`` (room -> seq) for unread counts, written after the room's hash

The append script does the idempotency check, the seq increment, the ``XADD``, the retention trim
and the ``PUBLISH``/``SPUBLISH`` in one atomic step: a message is never stored but unpublished, nor
published out of seq order (Redis runs scripts one at a time).

On a cluster the script's ``SPUBLISH`` goes to the room's ``:live`` channel, which shares the room's
hash tag and so its slot: the master running the script owns the channel, and delivers to the shard's
subscribers exactly once (checked on Redis 7.0.15). Redis 7.0 does not check a script's shard channel
against its slot (a channel of another slot is published locally, to nobody), so the shared hash tag is
what makes this correct. The directory's index sets (``<prefix>:index:*``) live in other slots and are
only ever written by plain commands, never inside a script with room keys.

Durability is Redis's: with ``appendonly yes``, the AOF is written before the reply leaves Redis, so
an acked message survives a crash of the Redis *process*; ``appendfsync always`` also survives an OS
crash or power loss, ``everysec`` may lose the last second then. docs/backends.md has the table.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, Final
from urllib.parse import urlsplit

import msgspec
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import URL_QUERY_ARGUMENT_PARSERS
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisClusterException, RedisError, SlotNotCoveredError

from ..ports import Appended
from ..protocol.errors import Conflict, NotFound, Unavailable, UsageError
from ..protocol.types import Draft, Message, Page, Position
from .boundary import engine_boundary
from .idempotency import body_digest
from .options import url_options

__all__ = ["RedisBus", "RedisStore", "parse_redis_url"]

log = logging.getLogger(__name__)

_APPEND: Final = """
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then return {-404} end
local prev = redis.call('HGET', KEYS[3], ARGV[1])
if prev then
  local seq, ts, digest = string.match(prev, '^(%d+):(%d+):(.*)$')
  if digest ~= ARGV[2] then return {-409} end
  return {tonumber(seq), tonumber(ts), 1}
end
local seq = redis.call('HINCRBY', KEYS[1], 'head', 1)
local frame = ARGV[3] .. seq .. ARGV[4]
redis.call('XADD', KEYS[2], seq .. '-0', 'd', frame)
redis.call('HSET', KEYS[3], ARGV[1], seq .. ':' .. ARGV[5] .. ':' .. ARGV[2])
local keep = tonumber(ARGV[9])
if keep > 0 and seq > keep then
  redis.call('XTRIM', KEYS[2], 'MINID', (seq - keep + 1) .. '-0')
  redis.call('HSET', KEYS[1], 'first', seq - keep + 1)
end
if ARGV[7] == '1' then
  if ARGV[8] == '1' then redis.call('SPUBLISH', ARGV[6], frame) else redis.call('PUBLISH', ARGV[6], frame) end
end
return {seq, tonumber(ARGV[5]), 0}
"""

_READ: Final = """
local m = redis.call('HMGET', KEYS[1], 'epoch', 'head', 'first')
if not m[1] then return {-404} end
local items = {}
if ARGV[3] == 'asc' then
  items = redis.call('XRANGE', KEYS[2], '(' .. ARGV[1] .. '-0', '+', 'COUNT', ARGV[2])
elseif ARGV[1] ~= '0' then  -- before=0: nothing is older (and Redis refuses the exclusive end "(0-0")
  items = redis.call('XREVRANGE', KEYS[2], '(' .. ARGV[1] .. '-0', '-', 'COUNT', ARGV[2])
end
local out = {m[1], m[2], m[3]}
for i = 1, #items do out[#out + 1] = items[i][2][2] end
return out
"""

_CREATE: Final = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'epoch', ARGV[1], 'head', 0, 'first', 1, 'owner', ARGV[2], 'created_ms', ARGV[3])
redis.call('SADD', KEYS[2], ARGV[2])
if #ARGV > 3 then redis.call('HSET', KEYS[3], unpack(ARGV, 4)) end
return 1
"""

_TRIM: Final = """
local head = tonumber(redis.call('HGET', KEYS[1], 'head'))
if not head then return -404 end
local first = head - tonumber(ARGV[1]) + 1
if first < 1 then first = 1 end
local old = tonumber(redis.call('HGET', KEYS[1], 'first'))
if first <= old then return 0 end
redis.call('XTRIM', KEYS[2], 'MINID', first .. '-0')
redis.call('HSET', KEYS[1], 'first', first)
return first - old
"""

_RAISE: Final = """
local current = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
local seq = tonumber(ARGV[2])
if seq > current then
  redis.call('HSET', KEYS[1], ARGV[1], seq)
  return seq
end
return current
"""
"""Raise a read position (a hash field) to ARGV[2], never lower it; return the position."""

_message: Final = msgspec.json.Decoder(Message)
_SEQ_MARK: Final = b',"seq":0,'


def parse_redis_url(url: str) -> tuple[str, dict[str, str]]:
    """Split roost options (``prefix``, ``keep``) off a redis URL; ``redis+cluster://`` means a cluster."""
    parts = urlsplit(url)
    options = url_options(url, "redis", ("prefix", "keep"), URL_QUERY_ARGUMENT_PARSERS)
    ours: dict[str, str] = {k: options.pop(k) for k in ("prefix", "keep") if k in options}
    query = "&".join(f"{k}={v}" for k, v in options.items())
    return parts._replace(query=query).geturl(), ours


MAX_CONNECTIONS: Final = 64


def connect_redis(url: str) -> aioredis.Redis | RedisCluster:
    """A pool that waits for a free connection instead of failing when many requests are in flight.

    redis-py's cluster client has no blocking pool (a node's 65th concurrent command raises
    ``MaxConnectionsError``), so for a cluster the store and bus bound their concurrent commands with a
    semaphore of the same size instead (``_gate``).
    """
    if url.startswith("redis+cluster://"):
        return RedisCluster.from_url("redis://" + url.removeprefix("redis+cluster://"), max_connections=MAX_CONNECTIONS)
    pool = aioredis.BlockingConnectionPool.from_url(url, max_connections=MAX_CONNECTIONS, timeout=10)
    return aioredis.Redis.from_pool(pool)  # owns the pool: aclose() disconnects its connections


def _gate_for(client: aioredis.Redis | RedisCluster) -> asyncio.Semaphore | None:
    return asyncio.Semaphore(MAX_CONNECTIONS) if isinstance(client, RedisCluster) else None


@contextlib.asynccontextmanager
async def _translate(store: RedisStore | None = None, gate: asyncio.Semaphore | None = None) -> AsyncIterator[None]:
    if store is not None:
        if store._closed:
            raise Unavailable("store is closed")
        gate = store._gate
    async with engine_boundary("redis"):
        if gate is None:
            yield
        else:
            async with gate:
                yield


class _Keys:
    __slots__ = ("idem", "live", "log", "members", "meta", "reads", "tag")

    def __init__(self, prefix: str, room: str) -> None:
        tag = f"{{{prefix}:{room}}}"
        self.tag = tag
        self.meta = f"{tag}:meta"
        self.log = f"{tag}:log"
        self.idem = f"{tag}:idem"
        self.members = f"{tag}:members"
        self.live = f"{tag}:live"
        self.reads = f"{tag}:reads"

    def attrs(self, ns: str) -> str:
        """One hash per attribute namespace, in the room's hash slot (Redis Cluster: same node as the room)."""
        return f"{self.tag}:attr:{ns}"


class RedisStore:
    def __init__(
        self,
        client: aioredis.Redis | RedisCluster,
        *,
        prefix: str = "roost",
        publish: bool = False,
        keep: int = 0,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.publish = publish
        self.sharded = isinstance(client, RedisCluster)
        self.keep = keep
        self._append = client.register_script(_APPEND)
        self._read = client.register_script(_READ)
        self._create = client.register_script(_CREATE)
        self._trim = client.register_script(_TRIM)
        self._raise = client.register_script(_RAISE)
        self._keys: dict[str, _Keys] = {}
        self._gate = _gate_for(client)
        self._closed = False

    def keys(self, room: str) -> _Keys:
        keys = self._keys.get(room)
        if keys is None:
            keys = self._keys[room] = _Keys(self.prefix, room)
        return keys

    async def durability_warnings(self) -> list[str]:
        """The no-loss promise needs ``appendonly yes`` with ``appendfsync always`` (docs/backends.md)."""
        try:
            async with _translate(self):
                config = await self.client.config_get("append*")
        except Unavailable as exc:  # CONFIG may be disabled (managed Redis): say so, do not guess
            return [f"redis: cannot read the persistence settings ({exc.reason}): check appendonly/appendfsync"]
        values = {_text(k): _text(v) for k, v in config.items()} if isinstance(config, dict) else {}
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
        async with _translate(self):
            result = await self._append(keys=[keys.meta, keys.log, keys.idem], args=args)
        seq = int(result[0])
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
        async with _translate(self):
            out = await self._read(keys=[keys.meta, keys.log], args=[max(0, bound), limit, order])
        if out and out[0] == -404:
            raise NotFound(f"no room {room!r}")
        position = Position(epoch=_text(out[0]), head=int(out[1]), first=int(out[2]))
        messages = [_message.decode(raw) for raw in out[3:]]
        if order == "desc":
            messages.reverse()
        return Page(messages, position)

    async def position(self, room: str) -> Position:
        async with _translate(self):
            epoch, head, first = await self.client.hmget(self.keys(room).meta, ["epoch", "head", "first"])
        if epoch is None or head is None or first is None:
            raise NotFound(f"no room {room!r}")
        return Position(epoch=_text(epoch), head=int(head), first=int(first))

    async def seq_before_time(self, room: str, ts_ms: int) -> int:
        """Binary search over the log by ``ts`` (approximate: clocks of nodes differ)."""
        position = await self.position(room)
        lo, hi, best = position.first, position.head, 0
        keys = self.keys(room)
        while lo <= hi:
            mid = (lo + hi) // 2
            async with _translate(self):
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
        async with _translate(self):
            dropped = int(await self._trim(keys=[keys.meta, keys.log], args=[keep_last]))
        if dropped == -404:
            raise NotFound(f"no room {room!r}")
        return dropped

    # ---- Directory --------------------------------------------------------------------------

    def _index(self, name: str) -> str:
        return f"{self.prefix}:index:{name}"

    async def create_room(self, room: str, owner: str, meta: Mapping[str, str] | None = None) -> bool:
        keys = self.keys(room)
        now = time.time_ns() // 1_000_000
        pairs = [item for kv in (meta or {}).items() for item in kv]
        async with _translate(self):
            created = int(
                await self._create(
                    keys=[keys.meta, keys.members, keys.attrs("meta")], args=[secrets.token_hex(8), owner, now, *pairs]
                )
            )
            if created:
                await self.client.sadd(self._index("rooms"), room)
                await self.client.sadd(self._index(f"user:{owner}"), room)
        return bool(created)

    async def room_exists(self, room: str) -> bool:
        async with _translate(self):
            return bool(await self.client.exists(self.keys(room).meta))

    async def is_member(self, room: str, user: str) -> bool:
        async with _translate(self):
            return bool(await self.client.sismember(self.keys(room).members, user))

    async def add_member(self, room: str, user: str) -> bool:
        if not await self.room_exists(room):
            raise NotFound(f"no room {room!r}")
        async with _translate(self):
            added = bool(await self.client.sadd(self.keys(room).members, user))
            await self.client.sadd(self._index(f"user:{user}"), room)
        return added

    async def remove_member(self, room: str, user: str) -> bool:
        if not await self.room_exists(room):
            raise NotFound(f"no room {room!r}")
        async with _translate(self):
            removed = bool(await self.client.srem(self.keys(room).members, user))
            await self.client.srem(self._index(f"user:{user}"), room)
        return removed

    async def rooms_of(self, user: str) -> list[str]:
        async with _translate(self):
            return sorted(_text(r) for r in await self.client.smembers(self._index(f"user:{user}")))

    async def all_rooms(self) -> list[str]:
        async with _translate(self):
            return sorted(_text(r) for r in await self.client.smembers(self._index("rooms")))

    async def members(self, room: str) -> list[str]:
        async with _translate(self):
            return sorted(_text(u) for u in await self.client.smembers(self.keys(room).members))

    async def room_attrs(self, room: str, ns: str) -> dict[str, str]:
        async with _translate(self):
            raw = await self.client.hgetall(self.keys(room).attrs(ns))
        return {_text(k): _text(v) for k, v in raw.items()}

    async def set_room_attr(self, room: str, ns: str, key: str, value: str | None) -> None:
        if ns == "meta":
            raise UsageError("meta attributes are written by create_room only")
        if not await self.room_exists(room):
            raise NotFound(f"no room {room!r}")
        async with _translate(self):
            if value is None:
                await self.client.hdel(self.keys(room).attrs(ns), key)
            else:
                await self.client.hset(self.keys(room).attrs(ns), key, value)

    # ---- read positions ---------------------------------------------------------------------

    async def mark_read(self, room: str, user: str, seq: int) -> int:
        """The room's hash is the truth (``readers``); the user's index follows with the same value.

        Both only ever rise, so a crash between the two writes is healed by the user's next mark."""
        async with _translate(self):
            value = int(await self._raise(keys=[self.keys(room).reads], args=[user, seq]))
            await self._raise(keys=[self._index(f"reads:{user}")], args=[room, value])
        return value

    async def read_positions(self, user: str) -> dict[str, int]:
        async with _translate(self):
            raw = await self.client.hgetall(self._index(f"reads:{user}"))
        return {_text(room): int(seq) for room, seq in raw.items()}

    async def readers(self, room: str) -> dict[str, int]:
        async with _translate(self):
            raw = await self.client.hgetall(self.keys(room).reads)
        return {_text(user): int(seq) for user, seq in raw.items()}


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class _RedisSubscription:
    def __init__(self, bus: RedisBus, channel: str, sink: Callable[[bytes], None]) -> None:
        self._bus = bus
        self._channel = channel
        self._sink = sink

    async def aclose(self) -> None:
        await self._bus._unsubscribe(self._channel, self._sink)


_NO_RETRY: Final = Retry(NoBackoff(), 0)
"""Pub/sub connections must not reconnect silently: redis-py would resubscribe by itself, and the bus
would never learn that messages may have been missed meanwhile (no reset)."""


class RedisBus:
    """Pub/sub on the rooms' ``live`` channels: classic on a standalone Redis, sharded on a cluster.

    Standalone: one pub/sub connection carries every room this node follows; when it breaks, it
    reconnects, resubscribes every channel, and once Redis has confirmed them all, reports a reset so
    listeners repair from the store.

    Cluster: sharded pub/sub must be subscribed on the master that owns the channel's slot, so there is
    one pub/sub connection per master this node needs. When one breaks (its master died, or the slot
    moved: Redis then sends an unsolicited ``sunsubscribe``), its channels become *homeless*: a
    relocator refreshes the slot map every ``RELOCATE_S`` and subscribes each homeless channel on the
    master that now owns it (after a failover: the promoted replica), confirmed, then reports a reset.
    """

    RELOCATE_S: Final = 0.5

    def __init__(self, client: aioredis.Redis | RedisCluster, *, prefix: str = "roost") -> None:
        self.client = client
        self.prefix = prefix
        self.sharded = isinstance(client, RedisCluster)
        self._sinks: dict[str, list[Callable[[bytes], None]]] = {}
        self._reset_callbacks: list[Callable[[], None]] = []
        self._listeners: dict[str, _Listener] = {}
        self._where: dict[str, _Listener] = {}
        """Which listener carries each channel that has sinks (cluster: the owner's at subscribe time)."""
        self._homeless: set[str] = set()
        self._relocator: asyncio.Task[None] | None = None
        self._gate = _gate_for(client)
        self._closed = False

    def channel(self, room: str) -> str:
        return f"{{{self.prefix}:{room}}}:live"

    async def publish(self, room: str, payload: bytes) -> None:
        if self._closed:
            raise Unavailable("bus is closed")  # redis-py would quietly open a new connection
        async with _translate(gate=self._gate):
            if self.sharded:
                await self.client.spublish(self.channel(room), payload)
            else:
                await self.client.publish(self.channel(room), payload)

    async def subscribe(self, room: str, sink: Callable[[bytes], None]) -> _RedisSubscription:
        if self._closed:
            raise Unavailable("bus is closed")
        channel = self.channel(room)
        sinks = self._sinks.setdefault(channel, [])
        sinks.append(sink)
        if len(sinks) == 1:
            try:
                listener = self._where[channel] = await self._listener_for(channel)
                await listener.subscribe(channel)
            except BaseException:
                sinks.remove(sink)
                if not sinks:
                    del self._sinks[channel]
                    await self._drop(channel)
                raise
        return _RedisSubscription(self, channel, sink)

    async def _unsubscribe(self, channel: str, sink: Callable[[bytes], None]) -> None:
        sinks = self._sinks.get(channel)
        if sinks is None or sink not in sinks:
            return
        sinks.remove(sink)
        if not sinks:
            del self._sinks[channel]
            await self._drop(channel)

    async def _drop(self, channel: str) -> None:
        self._homeless.discard(channel)
        listener = self._where.pop(channel, None)
        if listener is not None:
            with contextlib.suppress(Unavailable):
                await listener.unsubscribe(channel)

    async def _listener_for(self, channel: str) -> _Listener:
        if not isinstance(self.client, RedisCluster):
            listener = self._listeners.get("main")
            if listener is None:
                listener = self._listeners["main"] = _Listener(self, "main", self._standalone_factory(), reconnect=True)
                listener.start()
            return listener
        host, port = await self._owner(channel)
        name = f"{host}:{port}"
        listener = self._listeners.get(name)
        if listener is None or listener.dead:
            kwargs = self.client.get_connection_kwargs()
            username, password = kwargs.get("username"), kwargs.get("password")

            def factory() -> aioredis.Redis:
                return aioredis.Redis(
                    host=host,
                    port=port,
                    username=username,
                    password=password,
                    retry=_NO_RETRY,
                    socket_connect_timeout=5,
                )

            listener = self._listeners[name] = _Listener(self, name, factory, reconnect=False)
            listener.start()
        return listener

    def _standalone_factory(self) -> Callable[[], aioredis.Redis]:
        assert isinstance(self.client, aioredis.Redis)
        pool = self.client.connection_pool
        kwargs = {**pool.connection_kwargs, "retry": _NO_RETRY}

        def factory() -> aioredis.Redis:
            own = aioredis.ConnectionPool(connection_class=pool.connection_class, max_connections=2, **kwargs)
            return aioredis.Redis.from_pool(own)

        return factory

    async def _owner(self, channel: str) -> tuple[str, int]:
        """The master serving ``channel``'s slot, by the client's slot map (refreshed when it has a hole)."""
        assert isinstance(self.client, RedisCluster)
        try:
            await self.client.initialize()  # once; later calls return at once
            try:
                node = self.client.get_node_from_key(channel)
            except SlotNotCoveredError:
                await self.client.nodes_manager.initialize()
                node = self.client.get_node_from_key(channel)
        except (RedisError, RedisClusterException, OSError) as exc:
            raise Unavailable(f"redis cluster: {exc}") from exc
        if node is None:
            raise Unavailable(f"redis cluster: no node serves {channel}")
        return str(node.host), int(node.port)

    def _lost(self, listener: _Listener) -> None:
        """Cluster: ``listener``'s connection is gone; its channels wait for the relocator."""
        if self._listeners.get(listener.name) is listener:
            del self._listeners[listener.name]
        for channel in listener.channels:
            if self._where.get(channel) is listener and channel in self._sinks:
                del self._where[channel]
                self._homeless.add(channel)
        if self._homeless and not self._closed and (self._relocator is None or self._relocator.done()):
            log.warning("redis cluster: %d channel(s) lost their node; following their slots", len(self._homeless))
            self._relocator = asyncio.create_task(self._relocate(), name="roost-redis-relocate")

    async def _relocate(self) -> None:
        while self._homeless and not self._closed:
            await asyncio.sleep(self.RELOCATE_S)
            assert isinstance(self.client, RedisCluster)
            try:
                await self.client.nodes_manager.initialize()  # the slot map as the cluster sees it now
            except Exception as exc:
                log.debug("redis cluster: slot map refresh failed: %s", exc)
            placed = 0
            for channel in list(self._homeless):
                if channel not in self._homeless:
                    continue
                if channel not in self._sinks:
                    self._homeless.discard(channel)
                    continue
                try:
                    target = await self._listener_for(channel)
                except Unavailable:
                    continue
                self._homeless.discard(channel)
                self._where[channel] = target
                try:
                    await target.subscribe(channel, within_s=3.0)
                    placed += 1
                except Unavailable:
                    if self._where.get(channel) is target and channel in self._sinks:
                        del self._where[channel]
                        self._homeless.add(channel)
            if placed:
                log.warning("redis cluster: %d channel(s) resubscribed on their new masters", placed)
                self.reset()  # messages published while they were homeless are repaired from the store

    def dispatch(self, channel: str, data: bytes) -> None:
        for sink in tuple(self._sinks.get(channel, ())):
            sink(data)

    def reset(self) -> None:
        if self._closed:
            return
        for callback in list(self._reset_callbacks):
            callback()

    def on_reset(self, callback: Callable[[], None]) -> None:
        self._reset_callbacks.append(callback)

    async def aclose(self) -> None:
        self._closed = True
        if self._relocator is not None:
            self._relocator.cancel()
            await asyncio.gather(self._relocator, return_exceptions=True)
        for listener in list(self._listeners.values()):
            await listener.aclose()
        self._listeners.clear()
        self._sinks.clear()
        self._where.clear()
        self._homeless.clear()
        await self.client.aclose()


class _SlotMoved(Exception):
    """Redis unsubscribed a shard channel we did not leave: its slot now lives on another master."""


class _Listener:
    """One pub/sub connection (a client of its own, no silent retries) and its reader task.

    ``subscribe`` returns once Redis has confirmed. With ``reconnect`` (standalone), a broken connection
    is reopened, every channel resubscribed, and a reset reported once all are confirmed. Without it
    (cluster), the listener dies and hands its channels back to the bus (``RedisBus._lost``).
    """

    PROBE_S: Final = 5.0

    def __init__(self, bus: RedisBus, name: str, factory: Callable[[], aioredis.Redis], *, reconnect: bool) -> None:
        self.bus = bus
        self.name = name
        self.factory = factory
        self.reconnect = reconnect
        self.sharded = bus.sharded
        self.channels: set[str] = set()
        self.dead = False
        self._pending: dict[str, asyncio.Future[None]] = {}
        self._resubscribing: set[str] = set()
        self._reset_due = False
        self._pubsub: Any = None
        self._task: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self._died = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"roost-redis-bus-{self.name}")

    async def subscribe(self, channel: str, within_s: float = 10.0) -> None:
        if self.dead:
            raise Unavailable(f"redis pub/sub connection to {self.name} is lost")
        self.channels.add(channel)
        loop = asyncio.get_running_loop()
        future = self._pending.get(channel)
        if future is None or future.done():
            future = self._pending[channel] = loop.create_future()
        deadline = loop.time() + within_s
        try:
            if not self._connected.is_set():
                waiters = [asyncio.ensure_future(self._connected.wait()), asyncio.ensure_future(self._died.wait())]
                try:
                    await asyncio.wait(waiters, timeout=within_s, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for waiter in waiters:
                        waiter.cancel()
                if not self._connected.is_set():
                    raise Unavailable(f"redis pub/sub is not connected to {self.name}")
            if channel not in self.channels:
                return  # dropped while we waited
            async with _translate():
                if self.sharded:
                    await self._pubsub.ssubscribe(channel)
                else:
                    await self._pubsub.subscribe(channel)
            try:
                await asyncio.wait_for(asyncio.shield(future), timeout=max(0.1, deadline - loop.time()))
            except TimeoutError:
                raise Unavailable(f"redis did not confirm the subscription to {channel}") from None
        except BaseException:
            if not future.done():
                future.cancel()
            self._pending.pop(channel, None)
            if not self.dead:
                self.channels.discard(channel)
            raise

    async def unsubscribe(self, channel: str) -> None:
        self.channels.discard(channel)
        if self._pubsub is None or not self._connected.is_set():
            return
        async with _translate():
            if self.sharded:
                await self._pubsub.sunsubscribe(channel)
            else:
                await self._pubsub.unsubscribe(channel)

    async def _run(self) -> None:
        first = True
        failures = 0
        while True:
            conn: aioredis.Redis | None = None
            try:
                conn = self.factory()
                self._pubsub = conn.pubsub()
                await self._pubsub.ping()  # connect now
                self._resubscribing = set(self.channels)
                if self.channels:
                    if self.sharded:
                        await self._pubsub.ssubscribe(*self.channels)
                    else:
                        await self._pubsub.subscribe(*self.channels)
                self._reset_due = not first  # messages may have been missed while disconnected
                if self._reset_due:
                    log.warning("redis pub/sub reconnected to %s: %d channel(s)", self.name, len(self.channels))
                    if not self._resubscribing:
                        self._reset_due = False
                        self.bus.reset()
                first = False
                failures = 0
                self._connected.set()
                await self._read()
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError, TimeoutError, _SlotMoved) as exc:
                # A lost connection is news; the failed attempts to reconnect that follow are not.
                level = logging.DEBUG
                if self._connected.is_set() or (self.reconnect and failures % 50 == 0):
                    level = logging.WARNING
                log.log(level, "redis pub/sub connection to %s lost: %s", self.name, exc)
                failures += 1
            except Exception:
                log.exception("redis pub/sub reader for %s failed", self.name)
            finally:
                self._connected.clear()
                pubsub, self._pubsub = self._pubsub, None
                if pubsub is not None:
                    with contextlib.suppress(Exception):
                        await pubsub.aclose()
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await conn.aclose()
            if not self.reconnect:
                self._die()
                return
            await asyncio.sleep(0.2)

    def _die(self) -> None:
        self.dead = True
        self._died.set()
        for future in self._pending.values():
            if not future.done():
                future.set_exception(Unavailable(f"redis pub/sub connection to {self.name} is lost"))
                future.exception()  # retrieved: nobody may be waiting any more
        self._pending.clear()
        self.bus._lost(self)

    async def _read(self) -> None:
        pubsub = self._pubsub
        last_seen = time.monotonic()
        probing = False
        while True:
            message = await pubsub.get_message(timeout=1.0)
            now = time.monotonic()
            if message is None:
                if now - last_seen > self.PROBE_S:
                    if probing:  # the probe did not come back: the connection is dead
                        raise TimeoutError("pub/sub probe timed out")
                    probing = True
                    await pubsub.ping()
                    last_seen = now
                continue
            last_seen = now
            probing = False
            kind = message["type"]
            if kind in ("message", "smessage"):
                self.bus.dispatch(_text(message["channel"]), message["data"])
            elif kind in ("subscribe", "ssubscribe"):
                channel = _text(message["channel"])
                future = self._pending.pop(channel, None)
                if future is not None and not future.done():
                    future.set_result(None)
                if self._resubscribing:
                    self._resubscribing.discard(channel)
                    if not self._resubscribing and self._reset_due:
                        self._reset_due = False
                        self.bus.reset()  # every channel is back: now repair from the store
            elif kind == "sunsubscribe" and _text(message["channel"]) in self.channels:
                raise _SlotMoved(f"{_text(message['channel'])} was unsubscribed by the server")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
