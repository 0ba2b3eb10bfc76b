"""A Redis store whose server does not write an fsynced AOF breaks the no-loss promise: the node says so
at startup (one WARNING line each) and in ``/readyz``'s ``warnings``, and still serves (it is the
operator's call). With ``appendonly yes`` + ``appendfsync always`` it says nothing."""

from __future__ import annotations

import logging
import shutil
import sys
import tempfile
import uuid
from pathlib import Path

import aiohttp
import pytest

from roost.backends.kafka.store import replication_warnings
from roost.chaos.infra import NatsServer, PostgresServer
from roost.config import Settings
from roost.node import serve
from roost.protocol.errors import UsageError

from ..backends import NATS, REDIS, _clean_nats, _clean_redis
from ..clusters import NatsCluster, RedisServer
from ..kafka_infra import delete_topic


async def readyz_warnings(url: str) -> list[str]:
    async with aiohttp.ClientSession() as http, http.get(url + "/readyz") as resp:
        body = await resp.json()
    warnings: list[str] = body["warnings"]
    # A node over a shared store with local attachments also says so (R-ATT-9, test_attachments.py): not a
    # durability warning, and not this file's subject.
    return [w for w in warnings if not w.startswith("attachments are kept on this node's disk")]


async def test_a_redis_without_aof_is_named_unsafe(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    ns = "d" + uuid.uuid4().hex[:10]
    settings = Settings(port=0, data_dir=str(tmp_path), store=f"{REDIS}?prefix={ns}")
    try:
        with caplog.at_level(logging.WARNING, logger="roost.node"):
            async with serve(settings) as node:
                warnings = await readyz_warnings(node.url)
        # The machine's shared Redis keeps nothing on disk.
        assert warnings == [
            "redis: appendonly is not 'yes': an acked message lives only in memory and a Redis restart loses it"
            " (docs/backends.md)"
        ]
        assert [r.getMessage() for r in caplog.records if "UNSAFE" in r.getMessage()] == [
            f"UNSAFE for the no-loss promise: {warnings[0]}"
        ]
    finally:
        await _clean_redis(REDIS, ns)


@pytest.mark.parametrize(("fsync", "warned"), [("always", False), ("everysec", True)])
async def test_a_redis_with_an_fsynced_aof_is_not(tmp_path: Path, fsync: str, warned: bool) -> None:
    redis = RedisServer(tmp_path / "redis", appendfsync=fsync)
    redis.start()
    try:
        settings = Settings(port=0, data_dir=str(tmp_path / "data"), store=redis.url)
        async with serve(settings) as node:
            warnings = await readyz_warnings(node.url)
        if warned:
            assert len(warnings) == 1 and "appendfsync is 'everysec', not 'always'" in warnings[0]
        else:
            assert warnings == []
    finally:
        redis.kill()


@pytest.mark.parametrize(("replicas", "warned"), [(1, True), (3, False)])
async def test_a_nats_store_with_fewer_replicas_than_its_cluster_can_give(
    tmp_path: Path, replicas: int, warned: bool, nats_cluster: NatsCluster
) -> None:
    ns = "d" + uuid.uuid4().hex[:10]
    url = f"nats://{nats_cluster.servers}?prefix={ns}&replicas={replicas}"
    try:
        async with serve(Settings(port=0, data_dir=str(tmp_path), store=url)) as node:
            warnings = await readyz_warnings(node.url)
        if warned:
            assert len(warnings) == 2 and "1 replica(s) on a cluster of 3 servers" in warnings[0], warnings
            assert "sync_interval" in warnings[1], warnings
        else:
            assert warnings == []
    finally:
        await _clean_nats(f"nats://{nats_cluster.servers}", ns)


async def test_a_single_nats_server_is_warned_about_power_loss(tmp_path: Path) -> None:
    """[R-DUR-6] A NATS store of one replica without ``?sync=always`` is named unsafe for a power loss."""
    ns = "d" + uuid.uuid4().hex[:10]
    try:
        async with serve(Settings(port=0, data_dir=str(tmp_path), store=f"{NATS}?prefix={ns}")) as node:
            warnings = await readyz_warnings(node.url)
        assert len(warnings) == 1 and "sync_interval: always" in warnings[0], warnings
    finally:
        await _clean_nats(NATS, ns)


async def test_sync_always_on_a_nats_server_that_cannot_is_refused(tmp_path: Path) -> None:
    """[R-DUR-7] ``?sync=always`` says every server fsyncs before it acks: a server older than 2.10 cannot, and
    the node refuses to start rather than promise it."""
    ns = "d" + uuid.uuid4().hex[:10]
    settings = Settings(port=0, data_dir=str(tmp_path), store=f"{NATS}?prefix={ns}&sync=always")
    try:
        with pytest.raises(UsageError, match="cannot fsync every write"):
            async with serve(settings):
                pass
    finally:
        await _clean_nats(NATS, ns)


async def test_sync_always_on_a_nats_server_that_can_is_not_warned_about(tmp_path: Path) -> None:
    """(R-DUR-6) With ``sync_interval: always`` on a 2.10+ server and ``?sync=always``, no warning."""
    nats = NatsServer(tmp_path, binary=str(Path(sys.executable).with_name("nats-server")), sync_interval="always")
    await nats.start()
    try:
        settings = Settings(port=0, data_dir=str(tmp_path / "data"), store=f"{nats.url}?sync=always")
        async with serve(settings) as node:
            assert await readyz_warnings(node.url) == []
    finally:
        nats.stop()


async def test_a_postgres_that_acks_before_its_wal_is_on_disk_is_named_unsafe(tmp_path: Path) -> None:
    """[R-DUR-9] ``fsync = off`` or ``synchronous_commit = off`` on the server (as the store's sessions see
    them) is named at startup; PostgreSQL's defaults are not (test_power_loss.py shows they keep every ack)."""
    reachable = Path(tempfile.mkdtemp(prefix="roost-pg-"))  # PostgreSQL's own user must reach its directory
    reachable.chmod(0o755)
    pg = PostgresServer(reachable, "fsync=off", "synchronous_commit=off")
    pg.log = tmp_path / "postgres.log"
    try:
        await pg.start()
        bus = f"{REDIS}?prefix=d{uuid.uuid4().hex[:10]}"
        settings = Settings(port=0, data_dir=str(tmp_path), store=pg.url, bus=bus)
        async with serve(settings) as node:
            warnings = await readyz_warnings(node.url)
        assert len(warnings) == 2, warnings
        assert warnings[0].startswith("postgresql: fsync is off"), warnings
        assert warnings[1].startswith("postgresql: synchronous_commit is off"), warnings
    finally:
        pg.stop()
        shutil.rmtree(reachable, ignore_errors=True)


async def test_a_kafka_topic_with_one_replica_is_warned_about_power_loss(tmp_path: Path, kafka_broker: str) -> None:
    """[R-DUR-14] Kafka acks from memory: a topic with fewer than 3 replicas or ``min.insync.replicas`` below 2
    is named unsafe for a power loss (test_kafka.py shows a single broker's power loss losing acked records)."""
    ns = "d" + uuid.uuid4().hex[:10]
    bus = f"{REDIS}?prefix={ns}"
    try:
        async with serve(
            Settings(port=0, data_dir=str(tmp_path), store=f"kafka://{kafka_broker}/{ns}", bus=bus)
        ) as node:
            warnings = await readyz_warnings(node.url)
        assert len(warnings) == 1 and "1 replica(s)" in warnings[0] and "min.insync.replicas=1" in warnings[0]
    finally:
        await delete_topic(kafka_broker, ns)
        await _clean_redis(REDIS, ns)


@pytest.mark.parametrize(
    ("factor", "min_insync", "warned"), [(3, 2, False), (5, 3, False), (3, 1, True), (2, 2, True), (1, 1, True)]
)
def test_kafka_needs_three_replicas_two_in_sync(factor: int, min_insync: int, warned: bool) -> None:
    """(R-DUR-14) The rule, for the replications no test broker here can run."""
    assert bool(replication_warnings("t", factor, min_insync)) is warned
