"""The embedded directory under concurrent writes: its caches are changed by the SQLite writer thread
while the event loop lists them (issue #17: "dictionary changed size during iteration", 93 of 1,010
parallel DM creations answered 500, other users' ``GET /api/rooms`` failing during a create flood).

The thread switch interval is made tiny so that the writer thread runs in the middle of the loop's
iterations, which the default 5 ms interval makes a matter of luck.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from roost.backends.sqlite import SqliteStore


@pytest.fixture
def frequent_thread_switches() -> Iterator[None]:
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(before)


async def test_listing_rooms_and_members_while_the_writer_changes_them(
    tmp_path: Path, frequent_thread_switches: None
) -> None:
    store = await SqliteStore(tmp_path).open()
    try:
        for i in range(300):  # enough rooms that one listing spans several thread switches
            await store.create_room(f"base{i}", "alice")
        stop = asyncio.Event()
        listings = 0

        async def list_forever() -> None:
            nonlocal listings
            while not stop.is_set():
                assert "base0" in await store.rooms_of("alice")
                assert len(await store.all_rooms()) >= 300
                assert "alice" in await store.members("busy")
                await store.room_attrs("busy", "roles")
                listings += 1
                await asyncio.sleep(0)

        await store.create_room("busy", "alice")
        lister = asyncio.create_task(list_forever())

        async def churn(worker: int) -> None:
            for i in range(60):
                await store.create_room(f"w{worker}-{i}", f"u{worker}")
                await store.add_member("busy", f"u{worker}-{i}")
                await store.set_room_attr("busy", "roles", f"u{worker}-{i}", "admin")
                await store.remove_member("busy", f"u{worker}-{i}")
                await store.set_room_attr("busy", "roles", f"u{worker}-{i}", None)

        await asyncio.gather(*(churn(w) for w in range(8)))
        stop.set()
        await lister  # re-raises what the listings met
        assert listings > 0
        assert len(await store.all_rooms()) == 300 + 1 + 8 * 60
        assert await store.members("busy") == ["alice"]
    finally:
        await store.aclose()
