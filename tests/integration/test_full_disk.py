"""The embedded store on a disk that fills up: writes are refused with 4503 (nothing half-stored), the
node says it is not ready and logs the condition once, and when space returns writes resume by
themselves and the WAL that grew meanwhile is folded back to nothing.

The disk is a 4 MiB tmpfs of the test's own (root, as CI runs), with a 1 MiB file that the test deletes
to give space back.
"""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from roost.chaos.infra import wait_until
from roost.config import Settings
from roost.node import serve
from roost.protocol.errors import Unavailable


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    assert os.geteuid() == 0, "this test mounts a tmpfs: run the suite as root (as CI does)"
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)], check=True)
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


async def readyz(url: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    async with aiohttp.ClientSession() as http, http.get(url + "/readyz") as resp:
        return resp.status, await resp.json()


async def unready(url: str) -> tuple[int, dict] | None:  # type: ignore[type-arg]
    status = await readyz(url)
    return status if status[0] == 503 else None


async def ready(url: str) -> bool:
    return (await readyz(url))[0] == 200


async def test_a_full_disk_refuses_writes_says_so_and_recovers(
    small_disk: Path, caplog: pytest.LogCaptureFixture
) -> None:
    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * (1024 * 1024))
    # The store alone on the 4 MiB disk: the search index, which waits below 64 MiB free anyway
    # (tests/backends/test_search_index.py), would still take its empty files' share of the margins measured here.
    settings = Settings(port=0, data_dir=str(small_disk / "data"), search="off")
    with caplog.at_level(logging.WARNING):
        async with serve(settings) as node:
            service = node.service
            await service.create_room("alice", "r")
            stored, refused = 0, 0
            for i in range(20_000):
                try:
                    await service.send("alice", "r", f"c{i}", "x" * 400)
                    stored += 1
                except Unavailable as exc:
                    assert "full" in exc.reason
                    refused += 1
                    if refused == 30:
                        break
            assert stored > 0 and refused == 30

            status = await wait_until("the node says it is not ready", lambda: unready(node.url), 10)
            assert not status[1]["checks"]["store"]["ok"] and "full" in status[1]["checks"]["store"]["error"]

            # Space returns: writes resume by themselves, and the node is ready again.
            filler.unlink()

            async def resumed() -> bool:
                try:
                    await service.send("alice", "r", "after", "back")
                except Unavailable:
                    return False
                return True

            await wait_until("writes resumed", resumed, 15, every_s=0.2)
            await wait_until("the node ready again", lambda: ready(node.url), 15)
            wal = small_disk / "data" / "roost.sqlite3-wal"
            assert wal.stat().st_size < 64 * 1024, wal.stat().st_size

            # Nothing acked was lost, nothing refused was stored: the room holds exactly the stored sends.
            page = await node.backends.store.read("r", 0, 100_000)
            texts = [m for m in page.messages if m.kind == "text"]
            assert [m.cmid for m in texts] == [*(f"c{i}" for i in range(stored)), "after"]

    lines = [r.getMessage() for r in caplog.records if r.name == "roost.backends.sqlite"]
    full = [line for line in lines if "is full" in line]
    resumed = [line for line in lines if "writes resumed" in line]
    assert len(full) == 1, lines
    assert len(resumed) == 1 and "writes refused" in resumed[0], lines
