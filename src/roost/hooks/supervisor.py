"""Per node: which consumers this node delivers. Exactly one node delivers a consumer at a time.

The engine decides, not the nodes: every node tries ``lease(f"hook:{id}", holder, ttl)`` (ports.Leases) for
every consumer, every ``min(consumer_scan_s, consumer_lease_s / 3)``; the one that holds it runs the
consumer's ``Deliverer``, and its tries are the renewals. The moment a renewal answers ``None`` (another node
holds it) or another token, the deliverer is cancelled, in-flight POST included. A renewal that does not
answer (the engine is unreachable) leaves the deliverer running only until its deadline (``Held``), a fifth
of the lease short of the lease's expiry on the engine's side, so two nodes never deliver one consumer at
once as long as clocks run at the same rate. A node that stops cleanly releases its leases, so another node
takes over at once; one that dies is taken over when its leases expire.

The consumer list is read every ``consumer_scan_s`` and at once when the API announces a change on the bus
(``registry.CHANNEL``). A consumer whose record is gone is stopped and its status and cursors removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

import aiohttp
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from ..config import Limits
from ..hub import Hub
from ..logs import Throttled
from ..notices import BackgroundSubscription
from ..ports import Bus, Directory, Leases, Store
from ..protocol.errors import RoostError
from ..service import ChatService
from .deliverer import Context, Deliverer, Held, LeaseLost, Tally, stop_if_cancelled
from .manage import View
from .registry import ACTIVE, CHANNEL, PAUSED, Record, Registry, Status

__all__ = ["Supervisor", "lease_name"]

log = logging.getLogger(__name__)
_throttled = Throttled(log)

_MARGIN: Final = 0.2
"""The share of the lease a holder gives up at the end: it stops at 80 % of the TTL after its last renewal
was sent, before the engine could hand the lease to another node."""


def lease_name(consumer: str) -> str:
    return f"hook:{consumer}"


@dataclass
class _Running:
    deliverer: Deliverer
    task: asyncio.Task[None]


class Supervisor:
    def __init__(
        self,
        *,
        leases: Leases,
        bus: Bus,
        service: ChatService,
        directory: Directory,
        store: Store,
        hub: Hub,
        limits: Limits,
        holder: str,
        user_agent: str = "roost",
    ) -> None:
        self.leases = leases
        self.limits = limits
        self.holder = holder
        self.registry = Registry(directory)
        self.tally = Tally()
        self.records: dict[str, Record] = {}
        self.statuses: dict[str, Status] = {}
        self.running: dict[str, _Running] = {}
        self._parts = (service, directory, store, hub, user_agent)
        self._ctx: Context | None = None
        self._wake = asyncio.Event()
        self._list_at = 0.0
        self._task: asyncio.Task[None] | None = None
        self._notices = BackgroundSubscription(bus, CHANNEL, self._on_notice)

    async def start(self) -> None:
        service, directory, store, hub, user_agent = self._parts
        http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))
        self._ctx = Context(
            self.registry, service, directory, store, hub, http, self.limits, self.holder, self.tally, user_agent
        )
        self._notices.start()
        self._task = asyncio.create_task(self._loop(), name="roost-consumers")

    def _on_notice(self, data: bytes) -> None:
        running = self.running.get(data.decode(errors="replace"))
        if running is not None:
            running.deliverer.nudge()
        self._list_at = 0.0
        self._wake.set()

    async def _loop(self) -> None:
        interval = min(self.limits.consumer_scan_s, self.limits.consumer_lease_s / 3)
        while True:
            try:
                await self._round()
            except RoostError as exc:
                _throttled.warning("round", "consumers: %s", exc.reason)
            stop_if_cancelled()
            # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancellation that races the wake-up.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await self._wake.wait()
            self._wake.clear()

    async def _round(self) -> None:
        if time.monotonic() >= self._list_at:
            self.records = await self.registry.all()
            self.statuses = await self.registry.statuses()
            self._list_at = time.monotonic() + self.limits.consumer_scan_s
        for consumer in [c for c in self.running if c not in self.records]:
            await self._stop(consumer, "deleted")
            await self.registry.forget(consumer)
            await self.leases.release(lease_name(consumer), self.holder)
        for consumer in list(self.records):
            await self._hold(consumer)

    async def _hold(self, consumer: str) -> None:
        """Take or renew the consumer's lease, and start, keep or stop its deliverer to match."""
        lease_s = self.limits.consumer_lease_s
        asked = time.monotonic()
        try:
            token = await self.leases.lease(lease_name(consumer), self.holder, int(lease_s * 1000))
        except RoostError as exc:  # unknown: the deliverer runs on until its deadline
            stop_if_cancelled()
            _throttled.warning(f"lease:{consumer}", "consumer %s: lease not renewed: %s", consumer, exc.reason)
            return
        running = self.running.get(consumer)
        if running is not None and running.task.done():
            if running.deliverer.deleted:  # the list is older than the deletion: read it again, start nothing
                self._list_at = 0.0
                self._wake.set()
                return
            self.running.pop(consumer, None)
            running = None
        if token is None:
            if running is not None:
                await self._stop(consumer, "another node holds its lease")
            return
        deadline = asked + lease_s * (1 - _MARGIN)
        if running is not None and running.deliverer.held.token == token:
            running.deliverer.held.deadline = deadline
            return
        if running is not None:
            await self._stop(consumer, f"the lease changed hands (token {token})")
        assert self._ctx is not None
        deliverer = Deliverer(consumer, Held(token, deadline), self._ctx)
        task = asyncio.create_task(deliverer.run(), name=f"roost-consumer-{consumer}")
        task.add_done_callback(_report)
        self.running[consumer] = _Running(deliverer, task)

    async def _stop(self, consumer: str, why: str, store_cursors: bool = False) -> None:
        running = self.running.pop(consumer, None)
        if running is None:
            return
        running.task.cancel()
        await asyncio.gather(running.task, return_exceptions=True)
        if store_cursors:  # still the holder (the node is stopping): what it delivered is not sent again
            with contextlib.suppress(RoostError, LeaseLost, TimeoutError):
                async with asyncio.timeout(max(0.0, min(1.0, running.deliverer.held.left()))):
                    await running.deliverer.store_cursors()
        log.info("consumer %s: stopped delivering from this node (%s)", consumer, why)

    async def aclose(self) -> None:
        """Stop every deliverer and release its lease, so another node takes the consumers over at once."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for consumer in list(self.running):
            await self._stop(consumer, "the node is stopping", store_cursors=True)
            try:
                async with asyncio.timeout(1.0):  # an engine that does not answer: the lease expires by itself
                    await self.leases.release(lease_name(consumer), self.holder)
            except RoostError as exc:
                log.warning("consumer %s: lease not released (%s): it expires by itself", consumer, exc.reason)
            except TimeoutError:
                log.warning("consumer %s: lease not released (no answer in 1 s): it expires by itself", consumer)
        await self._notices.aclose()
        if self._ctx is not None:
            await self._ctx.http.close()

    def metrics(self) -> Iterator[Metric]:
        """For ``NodeMetrics.gauge``: read at scrape time."""
        tally = self.tally
        deliveries = CounterMetricFamily(
            "roost_consumer_deliveries",
            "Events of durable consumers delivered by this node, by result: delivered (a 2xx), failed (an attempt "
            "that will be retried), filtered (left out by the consumer's event filter), trimmed (removed by "
            "retention before they could be delivered).",
            labels=["result"],
        )
        for result in ("delivered", "failed", "filtered", "trimmed"):
            deliveries.add_metric([result], getattr(tally, result))
        yield deliveries
        yield CounterMetricFamily(
            "roost_consumer_pauses",
            "Consumers this node paused (max_failures failures in a row, or the creating API key revoked).",
            tally.pauses,
        )
        yield CounterMetricFamily(
            "roost_consumer_takeovers", "Times this node took over a consumer's lease and began delivering it.",
            tally.takeovers,
        )  # fmt: skip
        states = GaugeMetricFamily(
            "roost_consumers",
            "Durable consumers on the server, by state, as of this node's last scan.",
            labels=["state"],
        )
        counts = {ACTIVE: 0, PAUSED: 0}
        for consumer, record in self.records.items():
            view = View(consumer, record, self.statuses.get(consumer) or Status())
            counts[view.state] = counts.get(view.state, 0) + 1
        for state, count in sorted(counts.items()):
            states.add_metric([state], count)
        yield states
        live = {c: r for c, r in self.running.items() if not r.task.done()}
        yield GaugeMetricFamily("roost_consumers_delivering", "Consumers this node holds the lease of.", len(live))
        lag = GaugeMetricFamily(
            "roost_consumer_lag",
            "Events after the consumer's cursors up to the heads of its rooms (on the node delivering it).",
            labels=["consumer"],
        )
        for consumer, running in sorted(live.items()):
            lag.add_metric([consumer], running.deliverer.lag)
        yield lag


def _report(task: asyncio.Task[None]) -> None:
    """A deliverer that ended on a bug is logged (and started again at the next round)."""
    if not task.cancelled() and task.exception() is not None:
        log.error("%s failed", task.get_name(), exc_info=task.exception())
