"""Several real ``roost serve`` processes over one engine are one server, through node and broker crashes.

Engines (tests/clusters.py): a standalone Redis with ``appendonly yes`` + ``appendfsync always``, a single
nats-server with JetStream, and the 3-node NATS cluster with R3 streams (``replicas=3``). Every node gets the
same ``--store`` URL (the bus follows the store's engine) and the same ``--secret``.

a. Clients on different nodes chat in one room and all see one identical order.
b. ``kill -9`` of a node while its clients send and receive: the SDK fails over to the next URL; every acked
   message is stored exactly once, every receiver sees every message exactly once, in seq order.
c. ``kill -9`` of the broker mid-stream (Redis: restarted on its dir and port; NATS: one of the three
   nodes, restarted later): no acked message is lost, the nodes resubscribe by themselves (a message sent
   afterwards arrives live, well before the 10 s head check could have found it), and clients end exact.
d. Redis Cluster: ``kill -9`` of the master owning the room's slot; its replica takes over, the nodes'
   sharded subscriptions follow the slot to it, and clients end exact. Redis replicates asynchronously, so a
   failover may lose writes the dead master acked but had not yet sent (docs/backends.md): the test makes
   the replica confirm everything (``WAIT``) before the kill, then keeps sending through the failover.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from roost.chaos.infra import wait_until
from roost.client import Client, Sent, connect
from roost.protocol.types import Message

from ..backends import _clean_nats, _clean_redis_cluster
from ..clusters import NatsCluster, NatsServer, RedisCluster, RedisServer, redis_call
from .procs import ServerProcess, issue_token, start_nodes
from .test_crash import read_all

pytestmark = pytest.mark.slow

SECRET = "multinode-test-secret"
FAST = {"initial_backoff_s": 0.02, "max_backoff_s": 0.2}


@dataclass
class Engine:
    name: str
    url: str
    """The ``--store`` URL with this test's prefix (the bus is the same engine)."""
    redis: RedisServer | None = None
    nats: NatsServer | None = None
    cluster: NatsCluster | None = None
    redis_cluster: RedisCluster | None = None
    ns: str = field(default_factory=lambda: "m" + uuid.uuid4().hex[:10])


@pytest.fixture
def broker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """The engine named by the test's parameter, started for this test (the clusters: once a session)."""
    name: str = request.param
    ns = "m" + uuid.uuid4().hex[:10]
    if name == "redis":
        redis = RedisServer(tmp_path / "redis", appendfsync="always")
        redis.start()
        try:
            yield Engine(name, f"{redis.url}?prefix={ns}", redis=redis, ns=ns)
        finally:
            redis.kill()
    elif name == "nats":
        nats = NatsServer(tmp_path / "nats")
        nats.start()
        try:
            yield Engine(name, f"{nats.url}?prefix={ns}", nats=nats, ns=ns)
        finally:
            nats.kill()
    elif name == "nats-cluster":
        cluster: NatsCluster = request.getfixturevalue("nats_cluster")
        yield Engine(name, f"nats://{cluster.servers}?prefix={ns}&replicas=3", cluster=cluster, ns=ns)
    elif name == "redis-cluster":
        rc: RedisCluster = request.getfixturevalue("redis_cluster")
        yield Engine(name, f"{rc.url}?prefix={ns}", redis_cluster=rc, ns=ns)
    else:
        raise ValueError(name)


def restore(engine: Engine) -> None:
    """A test that killed a cluster node leaves the session's cluster whole again, for the tests after it."""
    rig = engine.cluster or engine.redis_cluster
    if rig is not None:
        for node, proc in rig.procs.items():
            if not proc.alive:
                rig.restart(node)  # type: ignore[arg-type]


@pytest.fixture
async def engine(broker: Engine) -> AsyncIterator[Engine]:
    yield broker
    await asyncio.to_thread(restore, broker)
    if broker.cluster is not None:
        await _clean_nats(f"nats://{broker.cluster.servers}", broker.ns)
    if broker.redis_cluster is not None:
        await _clean_redis_cluster(broker.redis_cluster.url, broker.ns)


@pytest.fixture
async def nodes_factory(tmp_path: Path) -> AsyncIterator[Callable[[Engine, int], Awaitable[list[ServerProcess]]]]:
    started: list[ServerProcess] = []

    async def make(engine: Engine, count: int) -> list[ServerProcess]:
        nodes = await start_nodes(tmp_path, count, "--store", engine.url, "--secret", SECRET)
        started.extend(nodes)
        return nodes

    yield make
    for node in started:
        node.stop()


async def tokens(tmp_path: Path, *users: str) -> dict[str, str]:
    issued = await asyncio.gather(*(issue_token(user, tmp_path / "tokens", SECRET) for user in users))
    return dict(zip(users, issued, strict=True))


# ---- the scenario and its checks ----------------------------------------------------------------


Chaos = Callable[[list[Sent]], Awaitable[None]]


async def stream(
    room: str,
    senders: dict[str, tuple[Client, int]],
    receivers: list[Client],
    chaos: Chaos | None = None,
    timeout: float = 60.0,
    tag: str = "",
) -> tuple[list[Sent], list[list[Message]]]:
    """Every sender sends its count (8 in flight each) while every receiver collects all texts.

    Client message ids are ``<tag><sender>-<i>``: a second stream in one room needs another ``tag``.
    """
    total = sum(count for _, count in senders.values())
    acks: list[Sent] = []
    received: list[list[Message]] = [[] for _ in receivers]

    async def send_all(name: str, client: Client, count: int) -> None:
        window = asyncio.Semaphore(8)

        async def one(i: int) -> None:
            async with window:
                acks.append(await client.send(room, f"{name} {i}", cmid=f"{tag}{name}-{i}"))

        await asyncio.gather(*(one(i) for i in range(count)))

    async def receive(client: Client, out: list[Message]) -> None:
        async for item in client:
            if isinstance(item, Message) and item.kind == "text":
                out.append(item)
                if len(out) == total:
                    return

    jobs: list[Awaitable[Any]] = [send_all(name, c, n) for name, (c, n) in senders.items()]
    jobs += [receive(client, out) for client, out in zip(receivers, received, strict=True)]
    if chaos is not None:
        jobs.append(chaos(acks))
    try:
        await asyncio.wait_for(asyncio.gather(*jobs), timeout)
    except TimeoutError:
        got = [len(r) for r in received]
        seqs = sorted(a.seq for a in acks)
        have = [[m.seq for m in r] for r in received]
        raise AssertionError(
            f"timed out: {len(acks)}/{total} acked (seqs {seqs[:3]}..{seqs[-3:]}), receivers got {got}: {have}"
        ) from None
    for client in receivers:  # nothing more may come: a late duplicate would show here
        extra = await texts_within(client, 0.3)
        assert not extra, f"unexpected extra messages: {[m.seq for m in extra]}"
    return acks, received


async def texts_within(client: Client, seconds: float, stop_at: int | None = None) -> list[Message]:
    """The texts that arrive within ``seconds``; sooner once there are ``stop_at`` of them."""
    out: list[Message] = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0 and len(out) != stop_at:
        try:
            item = await client.receive(timeout_s=left)
        except TimeoutError:
            break
        if isinstance(item, Message) and item.kind == "text":
            out.append(item)
    return out


async def check_exact(
    node: ServerProcess, token: str, room: str, acks: list[Sent], received: list[list[Message]], total: int
) -> None:
    stored = await read_all(node.url, token, room)
    texts = [m for m in stored if m["kind"] == "text"]
    # Every acked message is stored exactly once, under the seq its ack named.
    by_cmid = {m["cmid"]: m for m in texts}
    assert len(by_cmid) == len(texts) == total, f"{len(texts)} stored texts, {len(by_cmid)} distinct, want {total}"
    assert len(acks) == total
    for ack in acks:
        assert by_cmid[ack.cmid]["seq"] == ack.seq
    # One dense order.
    assert [m["seq"] for m in stored] == list(range(1, len(stored) + 1))
    # Every receiver saw that order: each message exactly once, in seq order.
    want = [(m["seq"], m["cmid"]) for m in texts]
    for got in received:
        assert [(m.seq, m.cmid) for m in got] == want


async def live_probe(sender: Client, receiver: Client, room: str, within: float = 3.0) -> float:
    """Send one more message and time its arrival: a resubscribed bus delivers it at once."""
    t0 = time.monotonic()
    sent = await asyncio.wait_for(sender.send(room, "probe", cmid=f"probe-{uuid.uuid4().hex[:8]}"), 20)
    arrived = await texts_within(receiver, within, stop_at=1)
    took = time.monotonic() - t0
    arrived += await texts_within(receiver, 0.3)  # a duplicate would show here
    assert [m.seq for m in arrived] == [sent.seq], f"probe {sent.seq} not delivered live within {within}s"
    return took


async def open_room(room: str, owner: Client, *others: Client) -> None:
    await owner.create(room)
    for client in others:
        await client.join(room)
    for client in (owner, *others):
        await client.subscribe(room, after=0)


# ---- a. one server ------------------------------------------------------------------------------


@pytest.mark.parametrize("broker", ["redis", "nats", "nats-cluster"], indirect=True)
async def test_clients_on_different_nodes_see_one_identical_order(
    engine: Engine, nodes_factory: Callable[[Engine, int], Awaitable[list[ServerProcess]]], tmp_path: Path
) -> None:
    """[R-ORDER-1] Clients on three nodes sending to one room all receive one identical, dense order."""
    nodes = await nodes_factory(engine, 3)
    tok = await tokens(tmp_path, "alice", "bob", "carol")
    async with (
        connect(nodes[0].ws_url, tok["alice"], **FAST) as alice,
        connect(nodes[1].ws_url, tok["bob"], **FAST) as bob,
        connect(nodes[2].ws_url, tok["carol"], **FAST) as carol,
    ):
        await open_room("r", alice, bob, carol)
        per = 40
        acks, received = await stream(
            "r", {"alice": (alice, per), "bob": (bob, per), "carol": (carol, per)}, [alice, bob, carol], timeout=30
        )
    await check_exact(nodes[1], tok["bob"], "r", acks, received, 3 * per)


# ---- b. a node dies ----------------------------------------------------------------------------


@pytest.mark.parametrize("broker", ["redis", "nats", "nats-cluster"], indirect=True)
async def test_kill_9_of_a_node_fails_its_clients_over_with_nothing_lost_or_repeated(
    engine: Engine, nodes_factory: Callable[[Engine, int], Awaitable[list[ServerProcess]]], tmp_path: Path
) -> None:
    nodes = await nodes_factory(engine, 3)
    n0, n1, n2 = (n.ws_url for n in nodes)
    tok = await tokens(tmp_path, "alice", "bob", "carol")
    killed = asyncio.Event()

    async def kill_node0(acks: list[Sent]) -> None:
        await wait_until("100 acks", lambda: len(acks) >= 100, 60, every_s=0.005)
        nodes[0].kill()
        killed.set()

    async with (
        connect([n0, n1, n2], tok["alice"], **FAST) as alice,  # the doomed node first
        connect([n0, n2, n1], tok["bob"], **FAST) as bob,
        connect([n1, n2], tok["carol"], **FAST) as carol,  # on a survivor, sending throughout
    ):
        await open_room("r", alice, bob, carol)
        acks, received = await stream(
            "r", {"alice": (alice, 200), "carol": (carol, 100)}, [bob, carol], chaos=kill_node0, timeout=60
        )
        assert killed.is_set() and alice.reconnects >= 1 and bob.reconnects >= 1
    await check_exact(nodes[1], tok["carol"], "r", acks, received, 300)


# ---- c. the broker dies ------------------------------------------------------------------------


async def stream_through_a_broker_fault(
    engine: Engine,
    nodes_factory: Callable[[Engine, int], Awaitable[list[ServerProcess]]],
    tmp_path: Path,
    fault: Callable[[], Awaitable[None]],
    timeout: float,
) -> None:
    """Three clients on two nodes stream 300 messages; ``fault`` strikes the broker after 100 acks.

    Then: every acked message stored once under its seq, every receiver got all of them once in
    order, and live delivery works again across the nodes (both resubscribed)."""
    nodes = await nodes_factory(engine, 2)
    n0, n1 = (n.ws_url for n in nodes)
    tok = await tokens(tmp_path, "alice", "bob", "carol")
    struck = asyncio.Event()

    async def chaos(acks: list[Sent]) -> None:
        await wait_until("100 acks", lambda: len(acks) >= 100, 60, every_s=0.005)
        await fault()
        struck.set()

    async with (
        connect([n0, n1], tok["alice"], **FAST) as alice,
        connect([n1, n0], tok["bob"], **FAST) as bob,
        connect([n0, n1], tok["carol"], **FAST) as carol,
    ):
        await open_room("r", alice, bob, carol)
        acks, received = await stream(
            "r", {"alice": (alice, 200), "carol": (carol, 100)}, [bob, carol], chaos=chaos, timeout=timeout
        )
        assert struck.is_set()
        await check_exact(nodes[0], tok["alice"], "r", acks, received, 300)
        await live_probe(alice, bob, "r")  # node 0 publishes, node 1 delivers


@pytest.mark.parametrize("broker", ["redis"], indirect=True)
async def test_kill_9_of_aof_redis_mid_stream_loses_no_acked_message(
    engine: Engine, nodes_factory: Callable[[Engine, int], Awaitable[list[ServerProcess]]], tmp_path: Path
) -> None:
    assert engine.redis is not None
    redis = engine.redis

    async def restart_redis() -> None:
        old = redis.pid
        redis.kill()
        await asyncio.sleep(1.0)  # the subject: an outage; sends fail meanwhile (4503) and the SDK retries them
        await asyncio.to_thread(redis.start)  # same dir and port: reloads the AOF
        assert redis.pid != old

    await stream_through_a_broker_fault(engine, nodes_factory, tmp_path, restart_redis, timeout=60)


@pytest.mark.parametrize("broker", ["nats-cluster"], indirect=True)
async def test_kill_9_of_a_nats_node_with_r3_streams_loses_no_acked_message(
    engine: Engine, nodes_factory: Callable[[Engine, int], Awaitable[list[ServerProcess]]], tmp_path: Path
) -> None:
    assert engine.cluster is not None
    cluster = engine.cluster

    async def kill_the_room_leader() -> None:
        victim = await stream_leader(cluster, engine.ns, "r")
        cluster.kill(victim)
        await asyncio.sleep(2.0)  # the subject: an outage long enough for the stream to elect another leader
        await asyncio.to_thread(cluster.restart, victim)  # rejoins and catches up

    await stream_through_a_broker_fault(engine, nodes_factory, tmp_path, kill_the_room_leader, timeout=90)


async def stream_leader(cluster: NatsCluster, prefix: str, room: str) -> str:
    """The server leading the room's stream: killing it costs the most (a Raft election)."""
    import nats

    from roost.backends.nats import token

    nc = await nats.connect([f"nats://127.0.0.1:{p}" for p in cluster.clients])
    try:
        info = await nc.jetstream().stream_info(f"ROOST_{prefix}_{token(room)}".replace(".", "_"))
        assert info.cluster is not None and info.cluster.leader is not None
        return info.cluster.leader
    finally:
        await nc.close()


# ---- d. a Redis Cluster master dies ------------------------------------------------------------


@pytest.mark.parametrize("broker", ["redis-cluster"], indirect=True)
async def test_redis_cluster_failover_moves_the_subscriptions_to_the_promoted_replica(
    engine: Engine, nodes_factory: Callable[[Engine, int], Awaitable[list[ServerProcess]]], tmp_path: Path
) -> None:
    assert engine.redis_cluster is not None
    rc = engine.redis_cluster
    nodes = await nodes_factory(engine, 2)
    n0, n1 = (n.ws_url for n in nodes)
    tok = await tokens(tmp_path, "alice", "bob", "carol")
    tag = f"{{{engine.ns}:r}}"
    master = rc.owner(f"{tag}:meta")
    failed_over = asyncio.Event()

    async with (
        connect([n0, n1], tok["alice"], **FAST) as alice,
        connect([n1, n0], tok["bob"], **FAST) as bob,
        connect([n0, n1], tok["carol"], **FAST) as carol,
    ):
        await open_room("r", alice, bob, carol)
        acks, received = await stream("r", {"alice": (alice, 60), "carol": (carol, 40)}, [bob, carol], timeout=30)
        # Everything so far is on the replica too: one more write on the room's slot, then WAIT for it.
        assert redis_call(master, "SET", f"{tag}:fence", "1") is True
        assert redis_call(master, "WAIT", 1, 2000, timeout=3) == 1

        async def kill_master(later: list[Sent]) -> None:
            await wait_until("5 acks", lambda: len(later) >= 5, 60, every_s=0.005)
            rc.kill(master)

            async def moved() -> bool:  # asked off the loop: a dead node can take its timeout to not answer
                return await asyncio.to_thread(rc.owner, f"{tag}:meta") != master

            await wait_until("a replica took over the room's slot", moved, 30, every_s=0.2)
            failed_over.set()
            await asyncio.to_thread(rc.restart, master)  # it rejoins as a replica

        more, received2 = await stream(
            "r", {"alice": (alice, 120), "carol": (carol, 80)}, [bob, carol], chaos=kill_master, timeout=60, tag="2-"
        )
        assert failed_over.is_set()
        merged = [a + b for a, b in zip(received, received2, strict=True)]
        await check_exact(nodes[0], tok["alice"], "r", acks + more, merged, 300)
        await live_probe(alice, bob, "r")


@pytest.mark.parametrize("broker", ["redis-cluster"], indirect=True)
async def test_redis_cluster_failover_with_wait_loses_no_acked_message(
    engine: Engine, nodes_factory: Callable[[Engine, int], Awaitable[list[ServerProcess]]], tmp_path: Path
) -> None:
    """[R-DUR-12] With ``?wait=1`` on the store URL every write (rooms, members, messages) is acked only once the
    primary's replica has it, so killing the room's primary mid-stream and failing over to that replica
    loses no acked message: the test no longer fences with ``WAIT`` itself, the store does."""
    assert engine.redis_cluster is not None
    rc = engine.redis_cluster
    engine = dataclasses.replace(engine, url=f"{engine.url}&wait=1")
    nodes = await nodes_factory(engine, 2)
    n0, n1 = (n.ws_url for n in nodes)
    tok = await tokens(tmp_path, "alice", "bob", "carol")
    master = rc.owner(f"{{{engine.ns}:r}}:meta")
    failed_over = asyncio.Event()

    async with (
        connect([n0, n1], tok["alice"], **FAST) as alice,
        connect([n1, n0], tok["bob"], **FAST) as bob,
        connect([n0, n1], tok["carol"], **FAST) as carol,
    ):
        await open_room("r", alice, bob, carol)

        async def kill_master(later: list[Sent]) -> None:
            await wait_until("20 acks", lambda: len(later) >= 20, 60, every_s=0.005)
            rc.kill(master)

            async def moved() -> bool:  # asked off the loop: a dead node can take its timeout to not answer
                return await asyncio.to_thread(rc.owner, f"{{{engine.ns}:r}}:meta") != master

            await wait_until("a replica took over the room's slot", moved, 30, every_s=0.2)
            failed_over.set()
            await asyncio.to_thread(rc.restart, master)  # it rejoins as a replica

        acks, received = await stream(
            "r", {"alice": (alice, 150), "carol": (carol, 100)}, [bob, carol], chaos=kill_master, timeout=90
        )
        assert failed_over.is_set()
        await check_exact(nodes[0], tok["alice"], "r", acks, received, 250)
        await live_probe(alice, bob, "r")


# ---- a resubscribe refused while the broker is down ----------------------------------------------


@pytest.mark.parametrize("broker", ["redis"], indirect=True)
async def test_a_resubscribe_refused_while_the_broker_is_down_is_retried(
    engine: Engine,
    nodes_factory: Callable[[Engine, int], Awaitable[list[ServerProcess]]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert engine.redis is not None
    # Node 1 must take bob's connection while the store is down, but a node refuses new connections (4504)
    # from its first failed readiness probe on (every 1 s): bob's reconnect raced it. Here the nodes probe
    # once, at start, and so take him.
    monkeypatch.setenv("ROOST_LIMIT_PROBE_INTERVAL_S", "600")
    nodes = await nodes_factory(engine, 2)
    n0, n1 = (n.ws_url for n in nodes)
    tok = await tokens(tmp_path, "alice", "bob")
    async with (
        connect([n1], tok["alice"], **FAST) as alice,
        connect([n0, n1], tok["bob"], **FAST) as bob,
    ):
        await open_room("r", alice, bob)
        engine.redis.kill()
        nodes[0].kill()  # bob reconnects to node 1 and resubscribes while the store is down: 4503
        await wait_until("bob back on node 1", lambda: bob.connected.is_set() and bob.reconnects >= 1)
        await asyncio.sleep(1.0)  # the subject: the store stays down while his resubscribes are refused
        await asyncio.to_thread(engine.redis.start)
        sent = await asyncio.wait_for(alice.send("r", "after the outage", cmid="after"), 20)
        arrived = await texts_within(bob, 5.0, stop_at=1)
        arrived += await texts_within(bob, 0.3)  # a duplicate would show here
        assert [m.seq for m in arrived] == [sent.seq]
