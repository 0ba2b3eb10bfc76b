"""One Redis pub/sub connection and its reader task: subscriptions confirmed, a dead connection noticed.

Kept apart from the bus because it is the part that owns a socket: connect, resubscribe, probe a quiet
connection, and tell the bus what happened (a message, a confirmation, a reset, its own death).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from ...protocol.errors import Unavailable
from .connection import guarded
from .keys import text

if TYPE_CHECKING:
    from .bus import RedisBus

__all__ = ["Listener"]

log = logging.getLogger(__package__)  # one logger for the whole engine: "roost.backends.redis"


class _SlotMoved(Exception):
    """Redis unsubscribed a shard channel we did not leave: its slot now lives on another master."""


class Listener:
    """One pub/sub connection (a client of its own, no silent retries) and its reader task.

    ``subscribe`` returns once Redis has confirmed. With ``reconnect`` (standalone), a broken connection
    is reopened, every channel resubscribed, and a reset reported once all are confirmed. Without it
    (cluster), the listener dies and hands its channels back to the bus (``RedisBus.listener_lost``).
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
        self._leaving: dict[str, int] = {}
        """Our own unsubscribes not yet confirmed, per channel: their confirmation can arrive after the
        channel was subscribed again, and must not be taken for Redis moving its slot."""
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
            async with guarded():
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
        async with guarded():
            if self.sharded:
                self._leaving[channel] = self._leaving.get(channel, 0) + 1
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
                self._leaving.clear()  # a new connection: no confirmation of the old one's unsubscribes comes
                if self.channels:
                    if self.sharded:
                        # One SSUBSCRIBE per channel: a shard's channels lie in several slots, and one command
                        # naming two slots fails (CROSSSLOT), which killed the listener when two subscribes
                        # (the node's notices) came before it had connected.
                        for channel in list(self.channels):
                            await self._pubsub.ssubscribe(channel)
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
        self.bus.listener_lost(self)

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
                self.bus.dispatch(text(message["channel"]), message["data"])
            elif kind in ("subscribe", "ssubscribe"):
                channel = text(message["channel"])
                future = self._pending.pop(channel, None)
                if future is not None and not future.done():
                    future.set_result(None)
                if self._resubscribing:
                    self._resubscribing.discard(channel)
                    if not self._resubscribing and self._reset_due:
                        self._reset_due = False
                        self.bus.reset()  # every channel is back: now repair from the store
            elif kind == "sunsubscribe":
                channel = text(message["channel"])
                left = self._leaving.get(channel, 0)
                if left:  # the confirmation of our own unsubscribe, however late
                    if left == 1:
                        del self._leaving[channel]
                    else:
                        self._leaving[channel] = left - 1
                elif channel in self.channels:
                    raise _SlotMoved(f"{channel} was unsubscribed by the server")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
