"""The Kafka store beyond the conformance suite: several nodes over one topic, node and broker failures.

Against Tansu (tests/kafka_infra.py, the "kafka_broker" session fixture; memory storage):

a. Two ``roost serve`` processes over one topic; ``kill -9`` of one mid-stream: every acked message is
   stored exactly once under its acked seq, every receiver gets each exactly once in order, and a node
   started afterwards replays the topic to the very same history.
b. Two stores racing the same client message id get one seq; a different body under the same id is a
   conflict, whichever node sees it.
c. A store opened later replays the whole directory and history (trim, leave, read positions, idempotency
   keys of trimmed messages) to the same state as the store that wrote it.

Against noida-db (an emulator whose data survives a restart):

d. The broker stops and starts again under two running nodes and connected clients, between two bursts of
   messages: nothing acked is lost or repeated, the nodes carry on by themselves, and after a restart of
   everything a node answers an old client message id as a duplicate of the original.
   Between bursts because noida-db, stopped while produce requests are in flight, can keep part of a batch
   that consumers had already read and then append the producer's retry of the whole batch: offsets that
   were visible change content. No Kafka does that to committed offsets; Roost detects it (``_verify``) and
   stops serving, which is the right answer but not what this test is about.
e. A broker ``kill -9`` that loses acknowledged records (noida-db writes its file only now and then) is
   detected: the store refuses to serve a log that went backwards instead of handing out lost seqs again.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from roost.auth import TokenAuthority
from roost.backends.kafka import KafkaStore
from roost.chaos.infra import wait_until
from roost.chaos.powerfs import PowerFS, settle
from roost.client import Sent, connect
from roost.protocol.errors import Conflict, Unavailable
from roost.protocol.types import KIND_JOIN, Draft, Message

from ..backends import NATS, REDIS, Backend, cleanup
from ..clusters import address
from ..kafka_infra import Noida, delete_topic
from .procs import ServerProcess
from .test_crash import read_all
from .test_multinode import stream

pytestmark = pytest.mark.slow

SECRET = "kafka-test-secret-shared-by-every-node"
FAST = {"initial_backoff_s": 0.02, "max_backoff_s": 0.2}


def issue_token(user: str) -> str:
    """What ``roost token USER --secret SECRET`` prints, without a subprocess."""
    return TokenAuthority(SECRET).issue(user)


@pytest.fixture
async def tansu_topic(kafka_broker: str) -> AsyncIterator[str]:
    ns = "k" + uuid.uuid4().hex[:12]
    yield ns
    await delete_topic(kafka_broker, ns)


@pytest.fixture
def noida(tmp_path: Path) -> Iterator[Noida]:
    broker = Noida(tmp_path / "noida")
    broker.start()
    try:
        yield broker
    finally:
        broker.kill()


async def clean_redis(ns: str) -> None:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(REDIS)
    try:
        keys = [k async for k in client.scan_iter(match=f"*{ns}*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


def nodes_over(base: Path, count: int, store: str, bus: str) -> list[ServerProcess]:
    nodes = []
    for i in range(count):
        data = base / f"node{i}" / "data"
        data.parent.mkdir(parents=True, exist_ok=True)
        nodes.append(ServerProcess(data, None, "--store", store, "--bus", bus, "--secret", SECRET))
    return nodes


async def check_exact(
    node: ServerProcess, token: str, room: str, acks: list[Sent], received: list[list[Message]], total: int
) -> list[dict]:  # type: ignore[type-arg]
    stored = await read_all(node.url, token, room)
    texts = [m for m in stored if m["kind"] == "text"]
    by_cmid = {m["cmid"]: m for m in texts}
    assert len(by_cmid) == len(texts) == total, f"{len(texts)} stored texts, {len(by_cmid)} distinct, want {total}"
    assert len(acks) == total
    for ack in acks:
        assert by_cmid[ack.cmid]["seq"] == ack.seq  # stored once, under the seq its ack named
    assert [m["seq"] for m in stored] == list(range(1, len(stored) + 1))  # one dense order
    want = [(m["seq"], m["cmid"]) for m in texts]
    for got in received:
        assert [(m.seq, m.cmid) for m in got] == want  # each exactly once, in seq order
    return stored


# ---- a. two nodes, one topic, kill -9 of a node ----------------------------------------------------


@pytest.mark.parametrize("bus", ["redis", "nats"])
async def test_kill_9_of_a_node_over_one_topic_loses_nothing_and_repeats_nothing(
    tmp_path: Path, tansu_topic: str, bus: str
) -> None:
    ns = tansu_topic
    store = f"kafka://{address('tansu')}/{ns}"
    bus_url = f"{REDIS if bus == 'redis' else NATS}?prefix={ns}"
    a, b = nodes_over(tmp_path, 2, store, bus_url)
    late: ServerProcess | None = None
    try:
        await asyncio.gather(a.start(), b.start())
        alice_tok, bob_tok, carol_tok = (issue_token(u) for u in ("alice", "bob", "carol"))

        async def kill_a(acks: list[Sent]) -> None:
            await wait_until("100 acks", lambda: len(acks) >= 100, 60, every_s=0.005)
            a.kill()

        async with (
            connect([a.ws_url, b.ws_url], alice_tok, **FAST) as alice,  # on the doomed node, then fails over
            connect([a.ws_url, b.ws_url], bob_tok, **FAST) as bob,
            connect([b.ws_url], carol_tok, **FAST) as carol,  # on the survivor, sending throughout
        ):
            await alice.create("r")
            await bob.join("r")
            await carol.join("r")
            for client in (alice, bob, carol):
                await client.subscribe("r", after=0)
            acks, received = await stream(
                "r",
                {"alice": (alice, 200), "carol": (carol, 100)},
                [bob, carol],
                chaos=kill_a,
            )
            assert alice.reconnects >= 1 and bob.reconnects >= 1
        stored = await check_exact(b, carol_tok, "r", acks, received, 300)
        # A node that starts now replays the topic into the very same history.
        (late,) = nodes_over(tmp_path / "late", 1, store, bus_url)
        await late.start()
        assert await read_all(late.url, carol_tok, "r") == stored
    finally:
        for node in (a, b, late):
            if node is not None:
                node.stop()
        await cleanup(Backend(f"kafka-{bus}", store, bus_url, ns))


# ---- b. two nodes race the same client message id ---------------------------------------------------


async def test_two_stores_racing_the_same_cmid_agree_on_one_seq(tansu_topic: str) -> None:
    url = f"kafka://{address('tansu')}/{tansu_topic}"
    one, two = await asyncio.gather(KafkaStore.from_url(url).open(), KafkaStore.from_url(url).open())
    try:
        assert await one.create_room("r", "alice")
        assert not await two.create_room("r", "mallory")  # the first create in the log wins
        drafts = [Draft("r", "alice", f"c{i}", f"body {i}") for i in range(20)]
        # Every message is sent 3 times through each store at once: 6 first attempts racing.
        results = await asyncio.gather(*(store.append(d) for d in drafts for store in (one, two, one, two, one, two)))
        by_cmid: dict[str, set[int]] = {}
        originals: dict[str, int] = {}
        for result in results:
            by_cmid.setdefault(result.message.cmid, set()).add(result.message.seq)
            if not result.duplicate:
                originals[result.message.cmid] = originals.get(result.message.cmid, 0) + 1
        assert all(len(seqs) == 1 for seqs in by_cmid.values())  # one seq per cmid, on both nodes
        assert originals == {d.cmid: 1 for d in drafts}  # exactly one caller was told "new"
        for store in (one, two):
            page = await store.read("r", 0, 100)
            assert [m.seq for m in page.messages] == list(range(1, 21)) and page.position.head == 20
            assert sorted(m.cmid for m in page.messages) == sorted(d.cmid for d in drafts)
        assert (await one.read("r", 0, 100)).messages == (await two.read("r", 0, 100)).messages
        # The same id with another body, through both nodes at once: one is stored, the other is a conflict.
        outcomes = await asyncio.gather(
            one.append(Draft("r", "bob", "x", "from node one")),
            two.append(Draft("r", "bob", "x", "from node two")),
            return_exceptions=True,
        )
        assert sum(isinstance(o, Conflict) for o in outcomes) == 1
        assert (await one.position("r")).head == (await two.position("r")).head == 21
    finally:
        await asyncio.gather(one.aclose(), two.aclose())


async def test_concurrent_producers_never_make_two_nodes_disagree_on_a_seq(tansu_topic: str) -> None:
    """[R-DUR-16] Three nodes append to one room at once (12 writers, 4,800 messages): every ack names the seq
    that every node, and a node that replays the topic afterwards, holds for that message. Tansu makes an
    offset readable before the ones below it under concurrent producers (a fetch from n answers n+2); a node
    that skipped past that hole would have handed out seqs the log does not back. It reads the hole again."""
    url = f"kafka://{address('tansu')}/{tansu_topic}?partitions=1"
    nodes = await asyncio.gather(*(KafkaStore.from_url(url).open() for _ in range(3)))
    try:
        assert await nodes[0].create_room("r", "alice")
        acked: dict[str, int] = {}

        async def writer(node: KafkaStore, name: str) -> None:  # one produce request at a time: many small ones
            for i in range(400):
                result = await node.append(Draft("r", name, f"{name}-{i}", f"body {i}"))
                acked[result.message.cmid] = result.message.seq

        await asyncio.gather(*(writer(node, f"w{n}{k}") for n, node in enumerate(nodes) for k in range(4)))
        later = await KafkaStore.from_url(url).open()
        try:
            for store in (*nodes, later):
                held: dict[str, int] = {}
                after = 0
                while page := (await store.read("r", after, 500)).messages:
                    held.update((m.cmid, m.seq) for m in page)
                    after = page[-1].seq
                assert held == acked
        finally:
            await later.aclose()
    finally:
        await asyncio.gather(*(n.aclose() for n in nodes))


# ---- c. replay: a later store reaches the same state --------------------------------------------------


async def test_a_store_opened_later_replays_the_same_state(tansu_topic: str) -> None:
    url = f"kafka://{address('tansu')}/{tansu_topic}?partitions=3"
    first = await KafkaStore.from_url(url).open()
    try:
        for room in ("a", "b", "c", "d"):
            assert await first.create_room(room, "alice")
            await first.append(Draft(room, "alice", f"~join-{room}", "", KIND_JOIN))
        assert await first.add_member("a", "bob")
        assert not await first.add_member("a", "bob")
        assert await first.add_member("b", "bob")
        assert await first.remove_member("b", "bob")
        early = await first.append(Draft("a", "bob", "early", "early bird"))
        for i in range(30):
            await first.append(Draft("a" if i % 3 else "c", "alice", f"m{i}", f"message {i}"))
        assert await first.trim("a", keep_last=5) > 0
        assert await first.mark_read("a", "bob", 7) == 7
        assert await first.mark_read("a", "bob", 3) == 7  # never lowered
        later = await KafkaStore.from_url(url).open()
        try:
            for room in ("a", "b", "c", "d"):
                assert await later.position(room) == await first.position(room)
                assert await later.read(room, 0, 100) == await first.read(room, 0, 100)
                assert await later.read_before(room, 10**6, 3) == await first.read_before(room, 10**6, 3)
                assert await later.readers(room) == await first.readers(room)
            assert await later.all_rooms() == ["a", "b", "c", "d"]
            assert await later.rooms_of("bob") == await first.rooms_of("bob") == ["a"]
            assert await later.read_positions("bob") == {"a": 7}
            assert await later.is_member("a", "bob") and not await later.is_member("b", "bob")
            # Idempotency survives the replay, for a trimmed message too (no time window).
            retry = await later.append(Draft("a", "bob", "early", "early bird"))
            assert retry.duplicate and retry.message.seq == early.message.seq and retry.message.ts == early.message.ts
            with pytest.raises(Conflict):
                await later.append(Draft("a", "bob", "early", "another body"))
            fresh = await later.append(Draft("a", "bob", "new", "next"))
            assert fresh.message.seq == (await first.position("a")).head  # both see the new head
        finally:
            await later.aclose()
    finally:
        await first.aclose()


# ---- d. noida-db: the broker restarts under running nodes ---------------------------------------------


async def test_a_broker_restart_under_running_nodes_loses_nothing_and_idempotency_holds(
    tmp_path: Path, noida: Noida
) -> None:
    ns = "k" + uuid.uuid4().hex[:12]
    store = f"kafka://{noida.bootstrap}/{ns}"
    bus_url = f"{REDIS}?prefix={ns}"
    a, b = nodes_over(tmp_path, 2, store, bus_url)
    try:
        await asyncio.gather(a.start(), b.start())
        alice_tok, bob_tok = (issue_token(u) for u in ("alice", "bob"))
        async with (
            connect([a.ws_url, b.ws_url], alice_tok, **FAST) as alice,
            connect([b.ws_url, a.ws_url], bob_tok, **FAST) as bob,
        ):
            await alice.create("r")
            await bob.join("r")
            await bob.subscribe("r", after=0)
            acks, received = await stream("r", {"alice": (alice, 120)}, [bob])
            # Between two bursts (see the module docstring: noida-db may rewrite offsets it was writing when
            # it stops), the broker stops and starts again under the running nodes and connected clients.
            await asyncio.to_thread(noida.stop)
            await asyncio.sleep(0.5)  # the subject: the broker is away for a while
            await asyncio.to_thread(noida.start)
            more_acks, more = await stream("r", {"alice": (alice, 120)}, [bob], tag="again-")
            assert bob.reconnects == 0  # the nodes reconnected to the broker by themselves
        acks += more_acks
        received[0] += more[0]
        stored = await check_exact(a, alice_tok, "r", acks, received, 240)
        assert await read_all(b.url, alice_tok, "r") == stored
        # Both nodes and the broker restart; a retry of an old message is still answered by the log.
        a.stop()
        b.stop()
        await asyncio.to_thread(noida.stop)
        await asyncio.to_thread(noida.start)
        await a.start()
        async with connect(a.ws_url, alice_tok, **FAST) as alice:
            again = await alice.send("r", "alice 7", cmid="alice-7")
            assert again.seq == next(ack.seq for ack in acks if ack.cmid == "alice-7")
            fresh = await alice.send("r", "after all that", cmid="fresh")
            assert fresh.seq == stored[-1]["seq"] + 1
    finally:
        a.stop()
        b.stop()
        await clean_redis(ns)


# ---- e. noida-db: a broker that loses acked records -------------------------------------------------


async def _log_end(bootstrap: str, topic: str) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        parts = sorted(consumer.partitions_for_topic(topic) or ())
        if not parts:
            await consumer.topics()
            parts = sorted(consumer.partitions_for_topic(topic) or ())
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in parts])
        return {tp.partition: int(offset) for tp, offset in ends.items()}
    finally:
        await consumer.stop()


async def test_a_broker_that_loses_acked_records_is_refused_not_served(noida: Noida) -> None:
    def kill_and_restart() -> None:
        noida.kill()  # kill -9 right after the acks: noida-db writes its data file only now and then
        noida.start()

    await acked_records_kept_or_refused(noida, kill_and_restart)


async def test_a_power_loss_of_a_single_broker_is_refused_not_served(tmp_path: Path) -> None:
    """[R-DUR-15] The broker's machine loses power (its disk keeps only what was fsynced) while the Roost node,
    on another machine, stays up: the node either still finds every record it acked, or refuses to serve the
    log that lost them; it never hands their seqs out again. (A single broker's power loss is a loss: Roost
    warns about such a topic at startup, test_durability_warnings.py.)"""
    fs = PowerFS(tmp_path / "disk", tmp_path / "mnt")
    fs.mount()
    noida = Noida(fs.mountpoint / "noida")
    try:
        noida.start()
        settle(fs.mountpoint)  # the broker's first start has settled on disk

        def lose_power() -> None:
            noida.kill()
            fs.lose_power()
            fs.mount()
            noida.start()

        kept = await acked_records_kept_or_refused(noida, lose_power)
        print(f"noida-db after a power loss: {'kept every acked record' if kept else 'lost acked records'}")
    finally:
        noida.kill()
        fs.unmount()


async def acked_records_kept_or_refused(noida: Noida, lose: Callable[[], None]) -> bool:
    """Ack 300 records, ``lose`` the broker's unsynced data, then: every acked record is still served and the
    next seq is the next one (returns True), or the store refuses to serve (returns False)."""
    topic = "k" + uuid.uuid4().hex[:12]
    store = await KafkaStore.from_url(f"kafka://{noida.bootstrap}/{topic}?partitions=1").open()
    try:
        assert await store.create_room("r", "alice")
        await asyncio.gather(*(store.append(Draft("r", "alice", f"c{i}", f"m{i}")) for i in range(300)))
        applied = (await store.position("r")).head + 1  # records: the create and 300 messages
        lose()
        ends = await _log_end(noida.bootstrap, topic)
        if ends.get(0, 0) >= applied:
            # The broker kept every acked record this time: then the store must go on serving all of them.
            position = await store.position("r")
            assert position.head == applied - 1
            next_one = await store.append(Draft("r", "alice", "late", "after a lossless broker restart"))
            assert next_one.message.seq == applied and not next_one.duplicate
            return True
        # The consumer finds its position past the end of the log (or the fence sees the end go back).

        async def refused() -> Unavailable | None:
            try:
                await store.position("r")
            except Unavailable as exc:
                return exc
            return None

        exc = await wait_until("the store refuses a log that lost acknowledged records", refused, every_s=0.1)
        assert "lost" in str(exc) or "backwards" in str(exc) or "gone" in str(exc), exc
        with pytest.raises(Unavailable):  # no seq is handed out again
            await store.append(Draft("r", "alice", "late", "must not reuse a lost seq"))
        return False
    finally:
        await store.aclose()
