"""A bus subscription a node takes in the background: node-wide notices (revocations, API keys).

Taken at startup, a failed subscribe used to end the start: a node whose broker restarted under it (a
chaos run's Redis) or whose cluster shard listener had just been lost exited instead of serving. These
notices have a periodic check behind them for what the bus loses, so the subscription can wait: it is
retried with capped backoff until the bus takes it, and the node serves meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from .ports import Bus, Subscription
from .protocol.errors import RoostError

__all__ = ["BackgroundSubscription", "NoticeWatch"]

log = logging.getLogger(__name__)


class BackgroundSubscription:
    def __init__(
        self, bus: Bus, channel: str, handler: Callable[[bytes], None], initial_s: float = 0.2, max_s: float = 5.0
    ) -> None:
        self.bus = bus
        self.channel = channel
        self.handler = handler
        self.initial_s = initial_s
        self.max_s = max_s
        self.subscription: Subscription | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"roost-subscribe-{self.channel}")

    async def _run(self) -> None:
        delay = self.initial_s
        while True:
            try:
                self.subscription = await self.bus.subscribe(self.channel, self.handler)
                return
            except RoostError as exc:
                log.warning("%s: subscribe failed (next try in %.1f s): %s", self.channel, delay, exc.reason)
            await asyncio.sleep(delay)  # a wait helper's poll: capped backoff until the bus takes it
            delay = min(self.max_s, delay * 2)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self.subscription is not None:
            with contextlib.suppress(RoostError):
                await self.subscription.aclose()


class NoticeWatch:
    """A node-wide notice: acted on as the bus announces it (``on_notice``), and every ``interval_s`` from the
    Directory (``check``) for what the bus lost; the periodic read is skipped while ``active()`` is false."""

    what = "notice"

    def __init__(self, bus: Bus, channel: str, interval_s: float, active: Callable[[], bool]) -> None:
        self.interval_s = interval_s
        self.active = active
        self._notices = BackgroundSubscription(bus, channel, self._on_notice)
        self._task: asyncio.Task[None] | None = None
        self._pending: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._notices.start()  # in the background: a bus failing at the node's start must not end it
        if self.interval_s > 0:
            self._task = asyncio.create_task(self._sweep(), name=f"roost-{self.what}-check")

    def on_notice(self, data: bytes) -> Awaitable[None] | None:
        """What to do about one notice (None: nothing, e.g. a malformed one)."""
        raise NotImplementedError

    async def check(self) -> None:
        """The periodic check: read the Directory and act on all of it."""
        raise NotImplementedError

    def _on_notice(self, data: bytes) -> None:
        action = self.on_notice(data)
        if action is not None:
            task = asyncio.ensure_future(action)
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)  # the subject: the period of the backstop check
            if not self.active():
                continue
            try:
                await self.check()
            except RoostError as exc:
                log.warning("%s check failed: %s", self.what, exc.reason)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._notices.aclose()
        await asyncio.gather(*self._pending, return_exceptions=True)
