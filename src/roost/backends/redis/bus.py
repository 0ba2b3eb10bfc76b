"""RedisBus: the rooms' ``live`` channels, and following them when the connection or the cluster changes.

Where each channel is subscribed (which ``Listener``), which channels lost their node, and when listeners
must be told to repair from the store (``reset``) are decided here; the pub/sub connections themselves are
``listener.Listener``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Final

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisClusterException, RedisError, SlotNotCoveredError

from ...protocol.errors import Unavailable
from .connection import NO_RETRY, gate_for, guarded
from .listener import Listener

__all__ = ["RedisBus"]

log = logging.getLogger(__package__)  # one logger for the whole engine: "roost.backends.redis"


class _RedisSubscription:
    def __init__(self, bus: RedisBus, channel: str, sink: Callable[[bytes], None]) -> None:
        self._bus = bus
        self._channel = channel
        self._sink = sink

    async def aclose(self) -> None:
        await self._bus._unsubscribe(self._channel, self._sink)


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
        self._listeners: dict[str, Listener] = {}
        self._where: dict[str, Listener] = {}
        """Which listener carries each channel that has sinks (cluster: the owner's at subscribe time)."""
        self._homeless: set[str] = set()
        self._relocator: asyncio.Task[None] | None = None
        self._gate = gate_for(client)
        self._closed = False

    def channel(self, room: str) -> str:
        return f"{{{self.prefix}:{room}}}:live"

    async def publish(self, room: str, payload: bytes) -> None:
        if self._closed:
            raise Unavailable("bus is closed")  # redis-py would quietly open a new connection
        async with guarded(self._gate):
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

    async def _listener_for(self, channel: str) -> Listener:
        if not isinstance(self.client, RedisCluster):
            listener = self._listeners.get("main")
            if listener is None:
                listener = self._listeners["main"] = Listener(self, "main", self._standalone_factory(), reconnect=True)
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
                    retry=NO_RETRY,
                    socket_connect_timeout=5,
                )

            listener = self._listeners[name] = Listener(self, name, factory, reconnect=False)
            listener.start()
        return listener

    def _standalone_factory(self) -> Callable[[], aioredis.Redis]:
        assert isinstance(self.client, aioredis.Redis)
        pool = self.client.connection_pool
        kwargs = {**pool.connection_kwargs, "retry": NO_RETRY}

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

    def listener_lost(self, listener: Listener) -> None:
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
