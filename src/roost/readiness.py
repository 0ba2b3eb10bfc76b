"""Readiness: can this node do its job right now? Probed, not assumed.

A node whose store or bus is unreachable still accepts TCP connections and answers HTTP, so only a
real round trip tells the truth. Every ``interval_s`` the node

* writes to the store: raises a probe read position (``mark_read``), which goes through the same
  durable write path as everything else (a full disk or a read-only replica fails it, a ping would not);
* publishes a probe on its own bus channel and waits for it to come back (a bus connection that
  looks open but delivers nothing fails it).

Each probe has ``timeout_s``: a blackholed broker answers nothing, and waiting forever would be a lie.
The node is ready when every check's latest probe passed and it is not draining. A node that stays
not ready longer than ``grace_s`` sheds its clients (close code 4504, so they fail over to another
URL), and the gateway refuses new connections until it is ready again. Each transition is logged
once, not each probe.

Shedding is for a node that is cut off, not for one that is only slow. An overloaded node's probes
wait in the same queues as its clients' work (the embedded store's writer queue, the event loop) and
can time out while appends and bus deliveries still complete; shedding its clients then would only
move the load to the other nodes and bring them down in turn. So the grace of a failing check runs
from its last passing probe **or** its last sign of progress (``progress``: counters of completed store
operations and bus deliveries), whichever is later. ``/readyz`` still fails, so a load balancer sends
new connections elsewhere, but the clients the node is still serving stay.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from .logs import NODE_ID
from .ports import Bus, Directory, Subscription

__all__ = ["Check", "Readiness"]

log = logging.getLogger(__name__)

PROBE_ROOM = "~roost-probe"
"""The store probe raises the read position of a pseudo-user in this pseudo-room (one row per node), and
the bus probe uses ``PROBE_ROOM-<node>``. ``~`` is outside the room-name alphabet (``valid_room``), so no
user can create, join or follow these and see a probe's reader or payload."""


@dataclass
class Check:
    ok: bool = False
    error: str | None = "not probed yet"
    last_ok: float | None = None
    """Monotonic time of the last passing probe."""
    last_progress: float | None = None
    """Monotonic time of the last probe round that saw the engine complete other work (see ``progress``)."""

    def json(self, now: float) -> dict[str, object]:
        age = None if self.last_ok is None else round(now - self.last_ok, 3)
        progress = None if self.last_progress is None else round(now - self.last_progress, 3)
        return {"ok": self.ok, "error": self.error, "last_ok_s_ago": age, "last_progress_s_ago": progress}

    def alive_since(self, started: float) -> float:
        """When the engine last showed it works: a passing probe or completed work, whichever is later."""
        return max(self.last_ok if self.last_ok is not None else started, self.last_progress or started)


class Readiness:
    def __init__(
        self,
        directory: Directory,
        bus: Bus,
        *,
        interval_s: float = 1.0,
        timeout_s: float = 1.5,
        grace_s: float = 3.0,
        on_shed: Callable[[str], object] | None = None,
        progress: Callable[[], dict[str, int]] | None = None,
    ) -> None:
        self.directory = directory
        self.bus = bus
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.grace_s = grace_s
        self.on_shed = on_shed
        self.progress = progress
        """Counters of work each engine completed (``{"store": appends + reads, "bus": payloads}``), read
        once per round: a counter that moved is progress."""
        self._counted: dict[str, int] = {}
        self.node_id = NODE_ID
        self.checks = {"store": Check(), "bus": Check()}
        self.warnings: list[str] = []
        """Unsafe engine settings found at startup (``Store.durability_warnings``): shown, not failing."""
        self.draining = False
        self.shed = False
        """True from shedding until the node is ready again: new connections are refused meanwhile."""
        self._started = time.monotonic()
        self._unready_since: float | None = None
        self._echo: asyncio.Queue[bytes] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._subscription: Subscription | None = None
        self._was_ready: bool | None = None

    @property
    def ready(self) -> bool:
        return not self.draining and all(check.ok for check in self.checks.values())

    def json(self) -> dict[str, object]:
        now = time.monotonic()
        return {
            "ready": self.ready,
            "node": self.node_id,
            "draining": self.draining,
            "shedding": self.shed,
            "checks": {name: check.json(now) for name, check in self.checks.items()},
            "warnings": self.warnings,
        }

    async def start(self) -> None:
        """One probe round before returning, so a node that starts ready says so at once."""
        await self._probe_round()
        self._task = asyncio.create_task(self._loop(), name="roost-readiness")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._subscription is not None:
            with contextlib.suppress(Exception):
                await self._subscription.aclose()

    def drain(self) -> None:
        self.draining = True
        log.info("readiness: draining, /readyz now fails")

    async def _loop(self) -> None:
        # A fixed cadence: a round that waited out its timeout is followed at once by the next one,
        # not by a whole interval more, so the grace is measured, not stretched by slow probes.
        next_round = time.monotonic()
        while True:
            next_round += self.interval_s
            await asyncio.sleep(max(0.0, next_round - time.monotonic()))
            await self._probe_round()
            next_round = max(next_round, time.monotonic() - self.interval_s)

    async def _probe_round(self) -> None:
        await asyncio.gather(self._probe("store", self._probe_store), self._probe("bus", self._probe_bus))
        self._note_progress()
        self._after_round()

    def _note_progress(self) -> None:
        if self.progress is None:
            return
        now = time.monotonic()
        for name, count in self.progress().items():
            if name in self.checks and count != self._counted.get(name, count):
                self.checks[name].last_progress = now
            self._counted[name] = count

    async def _probe(self, name: str, probe: Callable[[], Awaitable[None]]) -> None:
        check = self.checks[name]
        try:
            await asyncio.wait_for(probe(), self.timeout_s)
        except TimeoutError:
            check.ok, check.error = False, f"no answer within {self.timeout_s:g} s"
        except Exception as exc:  # any failure of the engine is a failed check, named
            check.ok, check.error = False, f"{type(exc).__name__}: {exc}"[:300]
        else:
            check.ok, check.error, check.last_ok = True, None, time.monotonic()

    async def _probe_store(self) -> None:
        # Milliseconds keep rising, so every probe really writes (positions are only ever raised). Every
        # directory keeps a position for any room name (ports.py), so the probe room needs no creating.
        await self.directory.mark_read(PROBE_ROOM, f"_node-{self.node_id}", time.time_ns() // 1_000_000)

    async def _probe_bus(self) -> None:
        if self._subscription is None:
            self._subscription = await self.bus.subscribe(f"{PROBE_ROOM}-{self.node_id}", self._echo.put_nowait)
        token = secrets.token_hex(8).encode()
        await self.bus.publish(f"{PROBE_ROOM}-{self.node_id}", token)
        while (await self._echo.get()) != token:
            pass  # an echo of an earlier probe that came back late

    def _after_round(self) -> None:
        now = time.monotonic()
        ready = self.ready
        if ready:
            if self._was_ready is False:
                log.warning("readiness: ready again after %.1f s", now - (self._unready_since or now))
            self._unready_since = None
            self.shed = False
        else:
            if self._unready_since is None:
                self._unready_since = now
            if self._was_ready is not False:
                failing = {name: check.error for name, check in self.checks.items() if not check.ok}
                log.warning("readiness: not ready: %s", failing or "draining")
            # The grace runs from the last time every failing check passed (or its engine made progress),
            # not from when a slow probe finally timed out: a blackholed broker is shed as fast as a
            # refused one, and an overloaded node that still completes work is not shed at all.
            failing_since = (
                min(c.alive_since(self._started) for c in self.checks.values() if not c.ok)
                if not all(c.ok for c in self.checks.values())
                else now
            )
            if not self.shed and not self.draining and now - failing_since >= self.grace_s:
                self.shed = True
                reason = "; ".join(f"{n}: {c.error}" for n, c in self.checks.items() if not c.ok)
                log.warning("readiness: no answer for %.1f s, shedding clients (%s)", now - failing_since, reason)
                if self.on_shed is not None:
                    self.on_shed(reason)
        self._was_ready = ready
