"""The retention task: every ``retention_interval_s`` one node drops what the rooms' policies no longer keep.

One node at a time: a pass runs only while the node holds the lease ``retention`` (``Leases``, granted by the
store engine: docs/reliability.md, "Leases"), renewed during a long pass and taken over by another node when the
holder stops renewing it (its ttl: three intervals, at least 10 s). Several nodes trimming at once would do
no harm (trims are idempotent) but would multiply the work.

A pass visits every room when the server has a default (``Limits.retention_max_*``), else only the rooms with a
policy of their own (``service.retention``); with neither, nothing is done, not even taking the lease. Per room:
by count, ``Store.trim`` (the engine keeps the newest N atomically); by age, nothing when the oldest kept message
is younger than the age (one read), else ``seq_before_time`` and ``Store.trim_before`` that seq, exact however
many messages arrive meanwhile. Readers see the room's ``first`` rise, as with the store URL's ``keep=N``
(clients with an older cursor get 4410).

Each pass logs one line with its counts; ``roost_retention_trimmed`` and ``roost_retention_passes`` count them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Final

from .config import Limits
from .logs import NODE_ID
from .metrics import NodeMetrics
from .ports import Storage
from .protocol.errors import RoostError
from .service.retention import NS_RETENTION, Policy, RetentionRules, effective

__all__ = ["LEASE", "Pass", "RetentionTask"]

log = logging.getLogger(__name__)

LEASE: Final = "retention"
RELEASE_WITHIN_S: Final = 1.0


@dataclass(slots=True)
class Pass:
    """What one pass did."""

    rooms: int = 0
    by_count: int = 0
    by_age: int = 0
    failed: int = 0


class RetentionTask:
    def __init__(
        self,
        store: Storage,
        rules: RetentionRules,
        limits: Limits,
        metrics: NodeMetrics,
        holder: str | None = None,
    ) -> None:
        self.store = store
        self.rules = rules
        self.limits = limits
        self.metrics = metrics
        self.holder = holder or f"{NODE_ID}.{secrets.token_hex(4)}"
        """Who holds the lease: this node's id and this task's own part (two nodes in one process differ)."""
        self.interval_s = max(0.05, limits.retention_interval_s)
        self.ttl_ms = int(max(10.0, 3 * self.interval_s) * 1000)
        self.passes = 0
        """Passes this node made (tests: only the lease holder makes any)."""
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(RoostError, TimeoutError):
            async with asyncio.timeout(RELEASE_WITHIN_S):  # an engine that does not answer: the lease expires
                await self.store.release(LEASE, self.holder)  # another node may take over at once

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.run_once()
            except RoostError as exc:  # the engine is down: the next interval tries again
                log.warning("retention: pass not made: %s", exc)

    async def run_once(self) -> Pass | None:
        """One pass if this node holds (or takes) the lease; None when another node holds it, or when no room has
        a policy and the server no default (then no lease is taken either: a lease costs a record on Kafka)."""
        everywhere = self.limits.retention_max_messages > 0 or self.limits.retention_max_age_s > 0
        rooms = [] if everywhere else await self.rules.rooms_with_policies()
        if not (everywhere or rooms):
            return None
        granted = time.monotonic()
        token = await self.store.lease(LEASE, self.holder, self.ttl_ms)
        if token is None:
            return None
        if everywhere:  # listed by the holder only: on some engines a scan of every room
            rooms = await self.store.all_rooms()
        started = time.monotonic()
        done = Pass()
        for room in rooms:
            if time.monotonic() - granted > self.ttl_ms / 3000:  # renew within the ttl, or stop: another may run
                granted = time.monotonic()
                if await self.store.lease(LEASE, self.holder, self.ttl_ms) is None:
                    log.warning("retention: the lease was lost during a pass; another node goes on")
                    break
            try:
                await self._apply(room, done)
            except RoostError as exc:
                done.failed += 1
                log.debug("retention: %s not trimmed: %s", room, exc)
        self.passes += 1
        self.metrics.retention_passes.inc()
        log.info(
            "retention: pass over %d rooms: %d messages dropped (%d by count, %d by age), %d rooms failed,"
            " in %.2f s (lease token %d)",
            done.rooms, done.by_count + done.by_age, done.by_count, done.by_age, done.failed,
            time.monotonic() - started, token,
        )  # fmt: skip
        return done

    async def _apply(self, room: str, done: Pass) -> None:
        attrs = {} if room.startswith("~") else await self.store.room_attrs(room, NS_RETENTION)
        policy: Policy = effective(self.limits, attrs)
        if not (policy.max_messages or policy.max_age_s):
            return
        done.rooms += 1
        if policy.max_messages:
            dropped = await self.store.trim(room, policy.max_messages)
            done.by_count += dropped
            self.metrics.retention_trimmed.labels("count").inc(dropped)
        if policy.max_age_s:
            cutoff = time.time_ns() // 1_000_000 - policy.max_age_s * 1000
            oldest = (await self.store.read(room, 0, 1)).messages
            if not oldest or oldest[0].ts >= cutoff:
                return
            seq = await self.store.seq_before_time(room, cutoff)
            dropped = await self.store.trim_before(room, seq + 1)
            done.by_age += dropped
            self.metrics.retention_trimmed.labels("age").inc(dropped)
