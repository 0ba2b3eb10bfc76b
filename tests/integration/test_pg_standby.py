"""PostgreSQL with a synchronous standby: killing the primary and promoting the standby loses no acked message.

PostgreSQL replicates itself; Roost needs nothing but the settings (docs/backends.md): the primary runs
``synchronous_standby_names = '*'`` and ``synchronous_commit = remote_apply``, so a commit returns once the
standby has applied it, and the store URL names both servers with ``target_session_attrs=read-write``, so
the pool finds whichever accepts writes.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from roost.chaos.infra import PostgresServer, wait_until
from roost.client import Sent, connect

from ..backends import REDIS
from .procs import ServerProcess, issue_token
from .test_crash import read_all

SECRET = "pg-standby-test-secret-0123456789abcdef"


@pytest.fixture
def reachable() -> AsyncIterator[Path]:
    """A directory PostgreSQL's own user can enter (pytest's are private to root)."""
    path = Path(tempfile.mkdtemp(prefix="roost-standby-"))
    path.chmod(0o755)
    yield path  # type: ignore[misc]
    shutil.rmtree(path, ignore_errors=True)


async def test_a_primary_killed_mid_stream_loses_no_acked_message_on_its_synchronous_standby(
    reachable: Path, tmp_path: Path
) -> None:
    """[R-DUR-13] ``synchronous_commit = remote_apply`` with a synchronous standby: ``kill -9`` of the primary
    in the middle of a stream of sends, then ``pg_ctl promote`` of the standby; every acked message is on
    the new primary exactly once under the seq its ack named, and the sends after the promotion succeed."""
    primary = PostgresServer(reachable, "synchronous_standby_names=*", "synchronous_commit=remote_apply")
    primary.log = tmp_path / "primary.log"
    await primary.start()
    standby: PostgresServer | None = None
    node: ServerProcess | None = None
    try:
        standby = PostgresServer(reachable, standby_of=primary)
        standby.log = tmp_path / "standby.log"
        await standby.start()
        hosts = f"127.0.0.1:{primary.port},127.0.0.1:{standby.port}"
        store = f"postgresql://postgres@{hosts}/postgres?target_session_attrs=read-write"
        bus = f"{REDIS}?prefix=sb{uuid.uuid4().hex[:10]}"
        node = ServerProcess(tmp_path / "data", None, "--secret", SECRET, "--store", store, "--bus", bus)
        await node.start()
        token = await issue_token("alice", node.data_dir, SECRET)
        total = 200
        acks: list[Sent] = []
        async with connect(node.ws_url, token, initial_backoff_s=0.05, max_backoff_s=0.5) as alice:
            await alice.create("r")
            window = asyncio.Semaphore(8)

            async def one(i: int) -> None:
                async with window:
                    acks.append(await alice.send("r", f"m{i}", cmid=f"alice-{i}"))

            async def failover() -> None:
                await wait_until("a third acked", lambda: len(acks) >= total // 3, 60, every_s=0.005)
                primary.kill()
                assert standby is not None
                await asyncio.to_thread(standby.promote)

            await asyncio.wait_for(asyncio.gather(failover(), *(one(i) for i in range(total))), timeout=120)
        everything = await read_all(node.url, token, "r")
        stored = [m for m in everything if m["kind"] == "text"]
        by_cmid = {m["cmid"]: m for m in stored}
        assert len(by_cmid) == len(stored) == len(acks) == total
        assert [a.cmid for a in acks if by_cmid[a.cmid]["seq"] != a.seq] == []
        # The promoted standby's history is dense: no seq was lost, or taken twice, across the failover.
        assert [m["seq"] for m in everything] == list(range(1, len(everything) + 1))
    finally:
        if node is not None:
            node.stop()
        if standby is not None:
            standby.stop()
        primary.stop()
