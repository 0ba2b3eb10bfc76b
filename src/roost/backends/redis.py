"""Redis engine: RedisStore (Store + Directory) and RedisBus, standalone or Redis Cluster.

Layout: every key of a room shares one hash tag, ``{<prefix>:<room>}``, so a room lives in one
cluster slot and one Lua script can touch all of it:

* ``{..}:meta``  hash: ``epoch``, ``head`` (newest seq), ``first`` (oldest kept seq)
* ``{..}:log``   stream; entry id ``<seq>-0``, field ``d`` = the encoded ``msg`` frame
* ``{..}:idem``  hash: ``sender\\ncmid`` -> ``seq:ts:digest``, kept forever (retention does not drop it)
* ``{..}:members`` set; ``{..}:live`` the pub/sub channel (sharded in a cluster)

The append script does the idempotency check, the seq increment, the ``XADD``, the retention trim
and the ``PUBLISH``/``SPUBLISH`` in one atomic step: a message is never stored but unpublished, nor
published out of seq order (Redis runs scripts one at a time).

Durability is Redis's: with ``appendonly yes``, the AOF is written before the reply leaves Redis, so
an acked message survives a crash of the Redis *process*; ``appendfsync always`` also survives an OS
crash or power loss, ``everysec`` may lose the last second then. docs/backends.md has the table.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit

import msgspec
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError

from ..ports import Appended
from ..protocol.errors import Conflict, NotFound, Unavailable
from ..protocol.types import Draft, Message, Page, Position

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
local items
if ARGV[3] == 'asc' then
  items = redis.call('XRANGE', KEYS[2], '(' .. ARGV[1] .. '-0', '+', 'COUNT', ARGV[2])
else
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

_message: Final = msgspec.json.Decoder(Message)
_SEQ_MARK: Final = b',"seq":0,'


def parse_redis_url(url: str) -> tuple[str, dict[str, str]]:
    """Split roost options (``prefix``, ``keep``) off a redis URL; ``redis+cluster://`` means a cluster."""
    parts = urlsplit(url)
    options = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    ours: dict[str, str] = {k: options.pop(k) for k in ("prefix", "keep") if k in options}
    query = "&".join(f"{k}={v}" for k, v in options.items())
    return parts._replace(query=query).geturl(), ours


def connect_redis(url: str) -> aioredis.Redis | RedisCluster:
    """A pool that waits for a free connection instead of failing when many requests are in flight."""
    if url.startswith("redis+cluster://"):
        return RedisCluster.from_url("redis://" + url.removeprefix("redis+cluster://"), max_connections=64)
    pool = aioredis.BlockingConnectionPool.from_url(url, max_connections=64, timeout=10)
    return aioredis.Redis(connection_pool=pool)


@contextlib.asynccontextmanager
async def _translate(store: RedisStore | None = None) -> AsyncIterator[None]:
    if store is not None and store._closed:
        raise Unavailable("store is closed")
    try:
        yield
    except RedisError as exc:
        raise Unavailable(f"redis: {exc}") from exc
    except OSError as exc:
        raise Unavailable(f"redis: {exc}") from exc


def _digest(body: str, kind: str) -> str:
    return hashlib.sha256(f"{kind}\x00{body}".encode()).hexdigest()[:32]


class _Keys:
    __slots__ = ("idem", "live", "log", "members", "meta")

    def __init__(self, prefix: str, room: str) -> None:
        tag = f"{{{prefix}:{room}}}"
        self.meta = f"{tag}:meta"
        self.log = f"{tag}:log"
        self.idem = f"{tag}:idem"
        self.members = f"{tag}:members"
        self.live = f"{tag}:live"


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
        self._keys: dict[str, _Keys] = {}
        self._closed = False

    def keys(self, room: str) -> _Keys:
        keys = self._keys.get(room)
        if keys is None:
            keys = self._keys[room] = _Keys(self.prefix, room)
        return keys

    async def aclose(self) -> None:
        self._closed = True
        await self.client.aclose()

    # ---- Store ------------------------------------------------------------------------------

    async def append(self, draft: Draft) -> Appended:
        keys = self.keys(draft.room)
        ts = time.time_ns() // 1_000_000
        template = msgspec.json.encode(Message(draft.room, 0, draft.cmid, draft.sender, draft.body, ts, draft.kind))
        head, _, tail = template.partition(_SEQ_MARK)
        digest = _digest(draft.body, draft.kind)
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

    async def create_room(self, room: str, owner: str) -> bool:
        keys = self.keys(room)
        now = time.time_ns() // 1_000_000
        async with _translate(self):
            created = int(await self._create(keys=[keys.meta, keys.members], args=[secrets.token_hex(8), owner, now]))
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

    async def public_rooms(self) -> list[str]:
        async with _translate(self):
            return sorted(_text(r) for r in await self.client.smembers(self._index("rooms")))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class _RedisSubscription:
    def __init__(self, bus: RedisBus, channel: str, sink: Callable[[bytes], None]) -> None:
        self._bus = bus
        self._channel = channel
        self._sink = sink

    async def aclose(self) -> None:
        await self._bus._unsubscribe(self._channel, self._sink)


class RedisBus:
    """Pub/sub on the rooms' ``live`` channels: classic on a standalone Redis, sharded on a cluster.

    One connection (per cluster node) carries every room this node follows. A reader task per
    connection dispatches messages; when a connection breaks, it reconnects, resubscribes every
    channel, and reports a reset so listeners repair from the store.
    """

    def __init__(self, client: aioredis.Redis | RedisCluster, *, prefix: str = "roost") -> None:
        self.client = client
        self.prefix = prefix
        self.sharded = isinstance(client, RedisCluster)
        self._sinks: dict[str, list[Callable[[bytes], None]]] = {}
        self._reset_callbacks: list[Callable[[], None]] = []
        self._listeners: dict[str, _Listener] = {}
        self._lock = asyncio.Lock()
        self._closed = False

    def channel(self, room: str) -> str:
        return f"{{{self.prefix}:{room}}}:live"

    async def publish(self, room: str, payload: bytes) -> None:
        async with _translate():
            if self.sharded:
                await self.client.spublish(self.channel(room), payload)
            else:
                await self.client.publish(self.channel(room), payload)

    async def subscribe(self, room: str, sink: Callable[[bytes], None]) -> _RedisSubscription:
        channel = self.channel(room)
        sinks = self._sinks.setdefault(channel, [])
        sinks.append(sink)
        if len(sinks) == 1:
            try:
                listener = await self._listener_for(channel)
                await listener.subscribe(channel)
            except BaseException:
                sinks.remove(sink)
                if not sinks:
                    del self._sinks[channel]
                raise
        return _RedisSubscription(self, channel, sink)

    async def _unsubscribe(self, channel: str, sink: Callable[[bytes], None]) -> None:
        sinks = self._sinks.get(channel)
        if sinks is None or sink not in sinks:
            return
        sinks.remove(sink)
        if not sinks:
            del self._sinks[channel]
            listener = await self._listener_for(channel)
            with contextlib.suppress(Unavailable):
                await listener.unsubscribe(channel)

    async def _listener_for(self, channel: str) -> _Listener:
        if isinstance(self.client, RedisCluster):
            async with _translate():
                node = self.client.get_node_from_key(channel)
            if node is None:
                raise Unavailable(f"redis cluster: no node serves {channel}")
            host, port = str(node.host), int(node.port)
            name = f"{host}:{port}"
            factory: Callable[[], aioredis.Redis] = lambda: aioredis.Redis(host=host, port=port)  # noqa: E731
        else:
            name = "main"
            client = self.client
            factory = lambda: client  # noqa: E731
        async with self._lock:
            listener = self._listeners.get(name)
            if listener is None:
                listener = self._listeners[name] = _Listener(self, factory, self.sharded, owns=self.sharded)
                listener.start()
            return listener

    def dispatch(self, channel: str, data: bytes) -> None:
        for sink in tuple(self._sinks.get(channel, ())):
            sink(data)

    def owned_channels(self, listener: _Listener) -> list[str]:
        return [c for c in self._sinks if c in listener.channels]

    def reset(self) -> None:
        for callback in list(self._reset_callbacks):
            callback()

    def on_reset(self, callback: Callable[[], None]) -> None:
        self._reset_callbacks.append(callback)

    async def aclose(self) -> None:
        self._closed = True
        for listener in list(self._listeners.values()):
            await listener.aclose()
        self._listeners.clear()
        self._sinks.clear()
        await self.client.aclose()


class _Listener:
    """One pub/sub connection and its reader task. Subscriptions are confirmed before they return."""

    PROBE_S: Final = 5.0

    def __init__(self, bus: RedisBus, factory: Callable[[], aioredis.Redis], sharded: bool, owns: bool) -> None:
        self.bus = bus
        self.factory = factory
        self.sharded = sharded
        self.owns = owns
        """Whether the connection factory makes a client of our own (closed with the pub/sub)."""
        self.channels: set[str] = set()
        self._pending: dict[str, asyncio.Future[None]] = {}
        self._conn: aioredis.Redis | None = None
        self._pubsub: Any = None
        self._task: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="roost-redis-bus")

    async def subscribe(self, channel: str) -> None:
        self.channels.add(channel)
        try:
            await asyncio.wait_for(self._connected.wait(), timeout=10)
        except TimeoutError:
            raise Unavailable("redis pub/sub is not connected") from None
        future = self._pending.get(channel)
        if future is None or future.done():
            future = self._pending[channel] = asyncio.get_running_loop().create_future()
        async with _translate():
            if self.sharded:
                await self._pubsub.ssubscribe(channel)
            else:
                await self._pubsub.subscribe(channel)
        try:
            await asyncio.wait_for(asyncio.shield(future), timeout=10)
        except TimeoutError:
            raise Unavailable(f"redis did not confirm the subscription to {channel}") from None

    async def unsubscribe(self, channel: str) -> None:
        self.channels.discard(channel)
        if self._pubsub is None:
            return
        async with _translate():
            if self.sharded:
                await self._pubsub.sunsubscribe(channel)
            else:
                await self._pubsub.unsubscribe(channel)

    async def _run(self) -> None:
        first = True
        while True:
            try:
                self._conn = self.factory()
                self._pubsub = self._conn.pubsub()
                await self._pubsub.ping()  # connect now
                if self.channels:
                    if self.sharded:
                        await self._pubsub.ssubscribe(*self.channels)
                    else:
                        await self._pubsub.subscribe(*self.channels)
                self._connected.set()
                if not first:
                    self.bus.reset()  # messages may have been missed while disconnected
                first = False
                await self._read()
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError, TimeoutError) as exc:
                log.warning("redis pub/sub connection lost: %s; reconnecting", exc)
            except Exception:
                log.exception("redis pub/sub reader failed; reconnecting")
            finally:
                self._connected.clear()
                if self._pubsub is not None:
                    with contextlib.suppress(Exception):
                        await self._pubsub.aclose()
                if self._conn is not None and self.owns:
                    with contextlib.suppress(Exception):
                        await self._conn.aclose()
            await asyncio.sleep(0.2)

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
                future = self._pending.pop(_text(message["channel"]), None)
                if future is not None and not future.done():
                    future.set_result(None)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
