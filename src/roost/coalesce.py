"""Coalescing: per key, at most one publish per interval, the latest value winning.

Ephemeral signals (read receipts, presence changes) matter only in their latest state, and each one is
fanned out to every follower of a room: one user sending thousands a second must not become thousands of
frames a second to each follower. The first value of a key goes out at once (no delay when nothing is
happening); values offered within ``interval_s`` of the last publish wait, and only the newest of them is
published when the interval ends, unless it equals what was last published.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

from .protocol.errors import RoostError

__all__ = ["Coalescer"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class _Slot(Generic[V]):
    __slots__ = ("last", "pending", "sent_at", "timer")

    def __init__(self, value: V, sent_at: float) -> None:
        self.last = value
        self.sent_at = sent_at
        self.pending: V | None = None
        self.timer: asyncio.TimerHandle | None = None


class Coalescer(Generic[K, V]):
    def __init__(
        self,
        interval_s: float,
        publish: Callable[[K, V], Awaitable[None]],
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 100_000,
    ) -> None:
        self.interval_s = interval_s
        self.publish = publish
        self.clock = clock
        self.max_keys = max_keys
        self._slots: dict[K, _Slot[V]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def offer(self, key: K, value: V) -> None:
        """Publish ``value`` now (awaited: its errors are the caller's) if ``key`` has published nothing within
        the interval; else keep it as the one to publish when the interval ends."""
        now = self.clock()
        slot = self._slots.get(key)
        if slot is None or (slot.timer is None and now - slot.sent_at >= self.interval_s):
            if slot is None and len(self._slots) >= self.max_keys:
                self._forget_idle(now)
            self._slots[key] = _Slot(value, now)
            await self.publish(key, value)
            return
        slot.pending = value
        if slot.timer is None:
            delay = max(0.0, self.interval_s - (now - slot.sent_at))
            slot.timer = asyncio.get_running_loop().call_later(delay, self._flush, key)

    def _flush(self, key: K) -> None:
        slot = self._slots.get(key)
        if slot is None:
            return
        slot.timer = None
        value, slot.pending = slot.pending, None
        if value is None or value == slot.last:
            return
        slot.last = value
        slot.sent_at = self.clock()
        task = asyncio.get_running_loop().create_task(self._publish_later(key, value))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _publish_later(self, key: K, value: V) -> None:
        with contextlib.suppress(RoostError):  # ephemeral: a bus that is down loses it, like any live frame
            await self.publish(key, value)

    def _forget_idle(self, now: float) -> None:
        self._slots = {k: s for k, s in self._slots.items() if s.timer is not None or now - s.sent_at < self.interval_s}

    async def aclose(self) -> None:
        for slot in self._slots.values():
            if slot.timer is not None:
                slot.timer.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
