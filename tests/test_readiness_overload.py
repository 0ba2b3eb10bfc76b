"""Readiness tells a node that is cut off from one that is only slow (docs/operations.md).

The probe write is held back, as it is behind a long writer queue on an overloaded node or behind a
blackholed broker; what differs is whether the engine keeps completing other work. The store and bus
are the embedded ones; only the probe's wait is arranged by the test.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from roost.backends.local import LocalBus
from roost.backends.sqlite import SqliteStore
from roost.readiness import PROBE_ROOM, Readiness


class HeldProbes:
    """The embedded directory, except that readiness probe writes wait until released."""

    def __init__(self, store: SqliteStore) -> None:
        self.store = store
        self.release = asyncio.Event()

    async def mark_read(self, room: str, user: str, seq: int) -> int:
        if room == PROBE_ROOM:
            await self.release.wait()
        return await self.store.mark_read(room, user, seq)

    def __getattr__(self, name: str) -> object:
        return getattr(self.store, name)


async def _watch(tmp_path: Path, working: bool) -> tuple[Readiness, list[str], float]:
    store = await SqliteStore(tmp_path).open()
    held = HeldProbes(store)
    appended = 0
    shed: list[str] = []
    readiness = Readiness(
        held,  # type: ignore[arg-type]
        LocalBus(),
        interval_s=0.1,
        timeout_s=0.15,
        grace_s=0.4,
        on_shed=shed.append,
        progress=lambda: {"store": appended, "bus": 0},
    )
    held.release.set()
    await readiness.start()
    assert readiness.ready
    held.release.clear()  # from now on every store probe times out
    started = time.monotonic()
    try:
        while time.monotonic() - started < 1.5 and not shed:
            if working:
                await store.create_room(f"r{appended}", "alice")  # real store work completing meanwhile
                appended += 1
            await asyncio.sleep(0.02)  # the subject: work keeps completing at a steady pace
    finally:
        await readiness.aclose()
        await store.aclose()
    return readiness, shed, time.monotonic() - started


async def test_a_node_whose_store_probes_time_out_but_whose_store_works_keeps_its_clients(tmp_path: Path) -> None:
    readiness, shed, _ = await _watch(tmp_path, working=True)
    assert not readiness.ready  # /readyz fails: new connections go elsewhere
    assert readiness.checks["store"].error == "no answer within 0.15 s"
    assert shed == []  # but the clients it is serving are not pushed onto the other nodes


async def test_a_node_whose_store_completes_nothing_sheds_after_the_grace(tmp_path: Path) -> None:
    readiness, shed, after = await _watch(tmp_path, working=False)
    assert not readiness.ready
    assert shed and "store: no answer within 0.15 s" in shed[0]
    assert after <= 0.4 + 0.15 + 0.1 + 0.3  # grace + one slow round + slack for a loaded machine
