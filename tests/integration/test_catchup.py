"""Contract point 3: subscribe (buffer) first, read the store from the cursor, merge, then go live."""

from __future__ import annotations

import asyncio

import pytest

from roost.chaos.infra import wait_until
from roost.config import Settings
from roost.node import Node, serve
from roost.protocol.codes import Code
from roost.service.pages import Bounded

from ..conftest import with_limits
from .test_send import make_room
from .wsutil import Raw


async def collect_until_head(raw: Raw, room: str, head: int, timeout: float = 20.0) -> list[int]:
    seqs: list[int] = []
    while not seqs or seqs[-1] < head:
        frame = await raw.until(lambda f: f["type"] in ("msg", "error") and f.get("room") == room, timeout)
        assert frame["type"] == "msg", frame
        seqs.append(frame["seq"])
    return seqs


async def collect_until_live(raw: Raw, room: str, timeout: float = 20.0) -> list[int]:
    """The seqs of the catch-up, up to the ``live`` frame that ends it."""
    seqs: list[int] = []
    while True:
        frame = await raw.until(lambda f: f["type"] in ("msg", "live", "error") and f.get("room") == room, timeout)
        if frame["type"] == "live":
            return seqs
        assert frame["type"] == "msg", frame
        seqs.append(frame["seq"])


async def test_messages_sent_during_catch_up_are_neither_lost_nor_duplicated(node: Node) -> None:
    """[R-ORDER-4] Messages stored during a catch-up arrive exactly once, in seq order, without gaps."""
    await make_room(node, "alice", "r", "bob")
    for i in range(1500):  # a backlog of three catch-up pages
        await node.service.send("alice", "r", f"pre{i}", f"pre {i}")
    stop = asyncio.Event()
    sent = 0

    async def writer() -> None:
        nonlocal sent
        while not stop.is_set():
            await node.service.send("alice", "r", f"live{sent}", f"live {sent}")
            sent += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(writer())
    await wait_until("the writer under way", lambda: sent > 0)
    bobs = [await Raw.open(node, "bob") for _ in range(3)]
    for i, bob in enumerate(bobs):
        await bob.send({"type": "subscribe", "room": "r", "after": i * 10, "id": "s"})
    caught_up = await asyncio.gather(*(collect_until_live(bob, "r") for bob in bobs))  # writes go on meanwhile
    stop.set()
    await task
    head = (await node.backends.store.position("r")).head
    for i, bob in enumerate(bobs):
        seqs = caught_up[i]
        if not seqs or seqs[-1] < head:
            seqs += await collect_until_head(bob, "r", head)
        assert seqs == list(range(i * 10 + 1, head + 1))
        await bob.close()


async def test_catch_up_ends_with_live_and_then_passes_new_messages(node: Node) -> None:
    """[R-SUB-1] ``subscribed``, the backlog after the cursor, ``live`` with the last seq sent, then new messages
    live."""
    await make_room(node, "alice", "r", "bob")
    for i in range(5):
        await node.service.send("alice", "r", f"c{i}", str(i))
    bob = await Raw.open(node, "bob")
    await bob.send({"type": "subscribe", "room": "r", "after": 2, "id": "s"})
    kinds = [await bob.recv() for _ in range(7)]
    assert kinds[0]["type"] == "subscribed" and kinds[0]["head"] == 7  # two join events, then five messages
    assert [f["seq"] for f in kinds[1:6]] == [3, 4, 5, 6, 7]
    assert kinds[6] == {"type": "live", "room": "r", "seq": 7}
    await node.service.send("alice", "r", "new", "new")
    live = await bob.recv()
    assert live["seq"] == 8 and live["body"] == "new"
    await bob.close()


async def test_subscribe_without_cursor_starts_at_the_head(node: Node) -> None:
    """[R-SUB-2] Without ``after`` there is no backlog: the server starts at the head and says which in
    ``subscribed.after``."""
    await make_room(node, "alice", "r", "bob")
    await node.service.send("alice", "r", "old", "old")
    bob = await Raw.open(node, "bob")
    sub = await bob.request({"type": "subscribe", "room": "r", "id": "s"})
    assert sub["head"] == 3 and sub["after"] == 3
    assert (await bob.recv())["type"] == "live"
    await node.service.send("alice", "r", "new", "new")
    assert (await bob.recv())["body"] == "new"
    await bob.close()


async def test_a_cursor_from_another_epoch_gets_a_resync_signal_not_a_hole(node: Node) -> None:
    """[R-RESYNC-1] A cursor of another epoch gets 4410 with the room's position, and a subscribe in that epoch
    works."""
    await make_room(node, "alice", "r")
    alice = await Raw.open(node, "alice")
    reply = await alice.request({"type": "subscribe", "room": "r", "after": 1, "epoch": "not-this-one", "id": "s"})
    assert reply["type"] == "error" and reply["code"] == Code.RESYNC_REQUIRED
    assert reply["epoch"] != "not-this-one" and reply["head"] == 1 and reply["first"] == 1
    with_epoch = await alice.request({"type": "subscribe", "room": "r", "after": 0, "epoch": reply["epoch"], "id": "t"})
    assert with_epoch["type"] == "subscribed"
    await alice.close()


async def test_a_cursor_behind_trimmed_history_gets_a_resync_signal(node: Node) -> None:
    """[R-RESYNC-1] A cursor below ``first - 1`` gets 4410 with ``first`` and ``head``; resubscribing from ``first - 1``
    works."""
    await make_room(node, "alice", "r")
    for i in range(10):
        await node.service.send("alice", "r", f"c{i}", str(i))
    await node.backends.store.trim("r", keep_last=4)  # type: ignore[attr-defined]
    alice = await Raw.open(node, "alice")
    reply = await alice.request({"type": "subscribe", "room": "r", "after": 2, "id": "s"})
    assert reply["type"] == "error" and reply["code"] == Code.RESYNC_REQUIRED
    assert reply["first"] == 8 and reply["head"] == 11
    ok = await alice.request({"type": "subscribe", "room": "r", "after": 7, "id": "t"})
    assert ok["type"] == "subscribed"
    assert [(await alice.recv())["seq"] for _ in range(4)] == [8, 9, 10, 11]
    await alice.close()


async def test_a_lost_tail_is_repaired_by_the_head_check(node: Node) -> None:
    """[R-ORDER-4] A message stored but never published (a crash between commit and publish) still arrives."""
    await make_room(node, "alice", "r", "bob")
    bob = await Raw.open(node, "bob")
    await bob.request({"type": "subscribe", "room": "r", "id": "s"})
    await bob.until(lambda f: f["type"] == "live")
    from roost.protocol.types import Draft

    await node.backends.store.append(Draft("r", "alice", "silent", "never published"))
    frame = await bob.until(lambda f: f["type"] == "msg", timeout=5)
    assert frame["body"] == "never published"
    await bob.close()


async def test_idempotency_outlives_retention(node: Node) -> None:
    """[R-SEND-1] The idempotency key of a trimmed message still answers a retry (and 4409 for another body)."""
    await make_room(node, "alice", "r")
    first = await node.service.send("alice", "r", "early", "early bird")
    for i in range(5):
        await node.service.send("alice", "r", f"c{i}", str(i))
    assert await node.backends.store.trim("r", keep_last=2) == 5  # type: ignore[attr-defined]
    retry = await node.service.send("alice", "r", "early", "early bird")
    assert retry.duplicate and retry.message.seq == first.message.seq
    import pytest

    from roost.protocol.errors import Conflict

    with pytest.raises(Conflict):
        await node.service.send("alice", "r", "early", "changed")
    assert (await node.backends.store.position("r")).head == 7


async def test_a_cursor_ahead_of_the_head_gets_a_resync_signal(node: Node) -> None:
    await make_room(node, "alice", "r")
    alice = await Raw.open(node, "alice")
    reply = await alice.request({"type": "subscribe", "room": "r", "after": 1000, "id": "s"})
    assert reply["type"] == "error" and reply["code"] == Code.RESYNC_REQUIRED and reply["head"] == 1
    await alice.close()


async def test_leaving_ends_the_users_subscriptions_everywhere(node: Node) -> None:
    """[R-ORDER-4] The user's own ``leave`` (from any connection) ends the subscription: the ``leave`` message, then
    4403 without ``ref``."""
    await make_room(node, "alice", "r", "bob")
    phone, laptop = await Raw.open(node, "bob"), await Raw.open(node, "bob")
    for device in (phone, laptop):
        await device.request({"type": "subscribe", "room": "r", "id": "s"})
        await device.until(lambda f: f["type"] == "live")
    await phone.request({"type": "leave", "room": "r", "id": "l"})
    left = await laptop.until(lambda f: f["type"] == "msg")
    assert left["kind"] == "leave" and left["sender"] == "bob"
    ended = await laptop.until(lambda f: f["type"] == "error")
    assert ended["code"] == Code.FORBIDDEN and ended["room"] == "r" and "ref" not in ended
    await node.service.send("alice", "r", "after", "bob must not see this")
    with pytest.raises(TimeoutError):
        await laptop.until(lambda f: f["type"] == "msg", timeout=0.5)
    await phone.close()
    await laptop.close()


async def test_a_subscriber_without_cursor_gets_a_contiguous_stream_under_load(node: Node) -> None:
    from roost.client import connect
    from roost.protocol.types import Message

    await make_room(node, "alice", "r", "bob")
    stop = asyncio.Event()

    async def writer() -> None:
        i = 0
        while not stop.is_set():
            await node.service.send("alice", "r", f"w{i}", f"w{i}")
            i += 1

    task = asyncio.create_task(writer())
    try:
        for _ in range(5):
            async with connect(node.ws_url, node.tokens.issue("bob")) as bob:
                cursor = await bob.subscribe("r")
                assert cursor is not None
                start = cursor.seq
                seqs: list[int] = []
                while len(seqs) < 20:
                    item = await bob.receive(timeout_s=5)
                    if isinstance(item, Message):
                        seqs.append(item.seq)
                assert seqs == list(range(start + 1, start + 21))
    finally:
        stop.set()
        await task


async def test_history_never_answers_4410_its_page_carries_epoch_and_first(node: Node) -> None:
    """[R-RESYNC-2] A ``history`` read does not return 4410: from a cursor behind trimmed history, beyond the head,
    or at ``before=0`` it answers a page with ``epoch``, ``head`` and ``first``, from which the client sees the
    hole itself."""
    await make_room(node, "alice", "r")
    for i in range(10):
        await node.service.send("alice", "r", f"c{i}", str(i))
    await node.backends.store.trim("r", keep_last=4)  # type: ignore[attr-defined]
    alice = await Raw.open(node, "alice")
    subscribed = await alice.request({"type": "subscribe", "room": "r", "after": 0, "id": "s"})
    assert subscribed["code"] == Code.RESYNC_REQUIRED
    behind = await alice.request({"type": "history", "room": "r", "after": 2, "id": "h1"})
    assert behind["type"] == "history" and behind["first"] == 8 and behind["head"] == 11
    assert behind["epoch"] == subscribed["epoch"] and [m["seq"] for m in behind["messages"]] == [8, 9, 10, 11]
    for query in ({"after": 1000}, {"before": 0}, {"before": 3}):
        page = await alice.request({"type": "history", "room": "r", **query, "id": "h2"})
        assert page["type"] == "history" and page["messages"] == [] and page["first"] == 8, (query, page)
    await alice.close()


class _CountedCatchup:
    """Counts the service's catch-up reads, optionally holding them until ``gate`` is set."""

    def __init__(self, node: Node, monkeypatch: pytest.MonkeyPatch, gate: asyncio.Event | None = None) -> None:
        self.calls = 0
        self.called = asyncio.Event()
        self._real = node.service.catchup
        self._gate = gate
        monkeypatch.setattr(node.service, "catchup", self)

    async def __call__(self, room: str, after: int, limit: int) -> Bounded:
        self.calls += 1
        self.called.set()
        if self._gate is not None:
            await self._gate.wait()
        return await self._real(room, after, limit)


async def test_catch_up_is_paced_by_the_reader(embedded_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """[R-SUB-9] The next catch-up page is read only after the previous one was written to the socket: a client
    that reads nothing stops the reads once the socket buffers are full (a room of 24 MB in about 94 pages of
    256 KiB, ``max_page_bytes``), and one that reads slowly gets the whole room and ``live``, and is not
    disconnected."""
    async with serve(with_limits(embedded_settings, catchup_page=100)) as node:
        await make_room(node, "alice", "r", "bob")
        body = "x" * 16_000
        for start in range(0, 1500, 100):
            await asyncio.gather(*(node.service.send("alice", "r", f"c{i}", body) for i in range(start, start + 100)))
        reads = _CountedCatchup(node, monkeypatch)
        bob = await Raw.open(node, "bob")
        await bob.send({"type": "subscribe", "room": "r", "after": 0, "id": "s"})
        await asyncio.sleep(1.5)  # the subject: bob reads nothing, the reads stop when the socket buffers are full
        stalled = reads.calls
        await asyncio.sleep(1.5)  # the subject: a window in which no further page may be read
        assert reads.calls == stalled < 60  # at most the socket buffers' worth of pages (~20 here)
        seqs: list[int] = []
        while True:
            frame = await bob.recv(timeout=10)
            if frame["type"] == "live":
                break
            if frame["type"] == "msg":
                seqs.append(frame["seq"])
                if frame["seq"] % 100 == 0:
                    await asyncio.sleep(0.05)  # the subject: a slow reader, but reading
        assert seqs == list(range(1, 1503)) and reads.calls >= 90
        assert (await bob.request({"type": "ping", "id": "p"}))["type"] == "pong"
        await bob.close()


async def test_a_catch_up_buffer_that_overflows_costs_reads_not_messages(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """[R-SUB-10] Live messages that arrive during a catch-up are buffered up to ``outbox_frames`` (4096 by
    default; 8 here); beyond that the buffer is dropped and the catch-up reads them from the store: every
    message arrives once, in order, at the price of more reads."""
    async with serve(with_limits(settings, outbox_frames=8, catchup_page=5)) as node:
        await make_room(node, "alice", "r", "bob")
        for i in range(10):
            await node.service.send("alice", "r", f"pre{i}", f"pre {i}")
        gate = asyncio.Event()
        reads = _CountedCatchup(node, monkeypatch, gate)
        bob = await Raw.open(node, "bob")
        await bob.send({"type": "subscribe", "room": "r", "after": 0, "id": "s"})
        await reads.called.wait()  # subscribed to live traffic, the first page is held
        for i in range(40):
            await node.service.send("alice", "r", f"live{i}", f"live {i}")
        gate.set()
        assert await collect_until_head(bob, "r", 52) == list(range(1, 53))
        assert reads.calls >= 52 // 5  # the live messages were read again, a page of 5 at a time
        await bob.close()
