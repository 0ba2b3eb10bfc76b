"""The client SDK: durable send, ordered exactly-once iteration, reconnect with resume, outbox, gap fill."""

from __future__ import annotations

import asyncio
import socket

from roost.chaos.infra import wait_until
from roost.client import Client, Cursor, RequestFailed, Resynced, Sent, connect
from roost.node import Node
from roost.protocol.codes import Code
from roost.protocol.types import Message

from .test_send import make_room


async def texts(client: Client, count: int, timeout: float = 20.0) -> list[Message]:
    got: list[Message] = []
    async with asyncio.timeout(timeout):
        async for item in client:
            if isinstance(item, Message) and item.kind == "text":
                got.append(item)
                if len(got) == count:
                    return got
    raise AssertionError("client closed early")


async def drop_connections(node: Node, user: str) -> None:
    """Cut the user's connections from the server side, as a network failure would."""
    for session in list(node.websocket.sessions):
        if session.user == user:
            await session.transport.close(4509, "test cut")


async def test_send_returns_after_the_durable_ack_and_iteration_is_ordered(node: Node) -> None:
    async with connect(node.ws_url, node.tokens.issue("alice")) as alice:
        await alice.create("r")
        await alice.subscribe("r", after=0)
        sent = [await alice.send("r", f"m{i}") for i in range(20)]
        assert [s.seq for s in sent] == list(range(2, 22))
        page = await node.backends.store.read("r", 1, 100)
        assert [m.body for m in page.messages] == [f"m{i}" for i in range(20)]
        got = await texts(alice, 20)
        assert [m.seq for m in got] == list(range(2, 22))
        assert alice.cursors["r"].seq == 21


async def test_server_errors_reach_the_caller_with_their_code(node: Node) -> None:
    """[R-CLIENT-8] A send refused with a code that is not retryable (4403) leaves the outbox and the failure
    reaches the app with its code."""
    await make_room(node, "alice", "private")
    async with connect(node.ws_url, node.tokens.issue("mallory")) as mallory:
        try:
            await mallory.send("private", "let me in")
        except RequestFailed as exc:
            assert exc.code == Code.FORBIDDEN
        else:
            raise AssertionError("send into a room one is not in must fail")
        assert mallory.unacked == 0


async def test_a_receiver_that_loses_its_connection_resumes_without_loss_or_duplicates(node: Node) -> None:
    """[R-CLIENT-7] After every reconnect the client subscribes again from its cursor: cut five times while 300
    messages flow, it hands every one to the app once, in order."""
    await make_room(node, "alice", "r", "bob")
    async with (
        connect(node.ws_url, node.tokens.issue("alice")) as alice,
        connect(node.ws_url, node.tokens.issue("bob"), initial_backoff_s=0.01) as bob,
    ):
        await bob.subscribe("r", after=0)

        async def sender() -> list[Sent]:
            acks = []
            for i in range(300):
                acks.append(await alice.send("r", f"m{i}"))
                if i % 60 == 30:
                    await drop_connections(node, "bob")
            return acks

        acks, got = await asyncio.gather(sender(), texts(bob, 300))
        assert [m.seq for m in got] == [a.seq for a in acks]
        assert [m.body for m in got] == [f"m{i}" for i in range(300)]
        assert bob.reconnects >= 4


async def test_the_outbox_resends_with_the_same_id_and_nothing_is_stored_twice(node: Node) -> None:
    """[R-CLIENT-2] After each reconnect the outbox resends every unacked entry with the same ``cmid``: each is
    stored once."""
    await make_room(node, "alice", "r")
    async with connect(node.ws_url, node.tokens.issue("alice"), initial_backoff_s=0.01) as alice:

        async def cutter() -> None:
            for _ in range(5):
                await asyncio.sleep(0.05)  # the subject: cuts spread over the sends in flight
                await drop_connections(node, "alice")

        sends = [asyncio.create_task(alice.send("r", f"m{i}", cmid=f"id-{i}")) for i in range(400)]
        await asyncio.gather(cutter(), *sends)
        acks = [t.result() for t in sends]
        assert alice.unacked == 0 and alice.reconnects >= 1
    page = await node.backends.store.read("r", 1, 1000)
    cmids = [m.cmid for m in page.messages]
    assert sorted(cmids) == sorted(f"id-{i}" for i in range(400))  # each exactly once
    assert {a.seq for a in acks} == {m.seq for m in page.messages}


async def test_a_gap_on_the_live_stream_is_filled_from_history(node: Node) -> None:
    """Messages stored but never published reach an SDK client in order once the next one is published.

    The server's side of the connection sees the gap and fills it from the store first, so the SDK never
    sees it; the SDK's own repair (R-CLIENT-3) is tested against a scripted peer in test_client_gap_read.py."""
    await make_room(node, "alice", "r")
    async with connect(node.ws_url, node.tokens.issue("alice")) as alice:
        await alice.subscribe("r", after=1)
        for i in range(3):
            await node.service.send("alice", "r", f"c{i}", f"m{i}")  # seqs 2, 3, 4
        assert [m.seq for m in await texts(alice, 3)] == [2, 3, 4]
        stored = [await node.backends.store.append(draft) for draft in _drafts(2)]  # stored, never published
        # The next live message reveals the gap (5 and 6 missing) to the server, which reads them first.
        last = await node.service.send("alice", "r", "c9", "after the gap")
        got = await texts(alice, 3)
        assert [m.seq for m in got] == [s.message.seq for s in stored] + [last.message.seq]


def _drafts(n: int) -> list:  # type: ignore[type-arg]
    from roost.protocol.types import Draft

    return [Draft("r", "alice", f"silent{i}", f"silent {i}") for i in range(n)]


async def test_cursors_resume_a_new_client_where_the_old_one_stopped(node: Node) -> None:
    """[R-CLIENT-6] [R-CLIENT-7] The cursor is the last message handed to the app; a new client given the saved
    cursors subscribes from them and gets exactly what came after."""
    await make_room(node, "alice", "r")
    async with connect(node.ws_url, node.tokens.issue("alice")) as first:
        await first.subscribe("r", after=0)
        for i in range(5):
            await first.send("r", f"m{i}")
        await texts(first, 5)
        saved = first.cursors
    for i in range(5, 8):
        await node.service.send("alice", "r", f"late{i}", f"m{i}")
    async with connect(node.ws_url, node.tokens.issue("alice"), cursors=saved) as second:
        await second.subscribe("r")
        got = await texts(second, 3)
        assert [m.body for m in got] == ["m5", "m6", "m7"]
    assert saved["r"] == Cursor(saved["r"].epoch, 6)


async def test_the_sdk_moves_on_to_the_next_url(node: Node) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"ws://127.0.0.1:{s.getsockname()[1]}/ws"  # nothing listens there
    async with connect([dead, node.ws_url], node.tokens.issue("alice"), initial_backoff_s=0.01) as alice:
        await alice.create("r")
        assert (await alice.send("r", "hi")).seq == 2


async def test_rooms_through_the_sdk_and_a_kick_ends_the_followed_room(embedded_node: Node) -> None:
    node = embedded_node
    async with (
        connect(node.ws_url, node.tokens.issue("alice")) as alice,
        connect(node.ws_url, node.tokens.issue("bob")) as bob,
    ):
        await alice.create("plans", kind="private")
        try:
            await bob.join("plans")
        except RequestFailed as exc:
            assert exc.code == Code.UNKNOWN_ROOM  # to an outsider, a private room is as if there were none
        else:
            raise AssertionError("a private room needs an invitation")
        await alice.invite("plans", "bob")
        await bob.join("plans")
        await bob.subscribe("plans")
        await alice.set_role("plans", "bob", "admin")
        assert await alice.dm("bob") == await bob.dm("alice") == "dm:alice:bob"
        await alice.kick("plans", "bob")
        async with asyncio.timeout(10):
            async for item in bob:
                if isinstance(item, Message) and item.kind == "kick":
                    break
        await wait_until("bob's cursor for the room he was kicked from dropped", lambda: "plans" not in bob.cursors)
        await alice.ban("plans", "bob")
        await alice.unban("plans", "bob")


async def test_on_4410_the_sdk_tells_the_app_and_resumes_from_first(node: Node) -> None:
    """[R-CLIENT-5] On 4410 the client tells the app (``Resynced`` with the room's position), replaces its cursor
    with ``(epoch, first - 1)`` and subscribes again from there: it gets everything the room still keeps, in
    order, once. Here the SDK resumes from a cursor behind trimmed history."""
    await make_room(node, "alice", "r")
    for i in range(10):
        await node.service.send("alice", "r", f"c{i}", f"m{i}")  # seqs 2..11
    await node.backends.store.trim("r", keep_last=4)  # type: ignore[attr-defined]
    epoch = (await node.backends.store.position("r")).epoch
    async with connect(node.ws_url, node.tokens.issue("alice"), cursors={"r": Cursor(epoch, 2)}) as alice:
        await alice.subscribe("r")
        got: list[Message | Resynced] = []
        async with asyncio.timeout(20):
            async for item in alice:
                if isinstance(item, Message | Resynced):
                    got.append(item)
                if isinstance(item, Message) and item.seq == 11:
                    break
        resynced, *messages = got
        assert isinstance(resynced, Resynced) and resynced.room == "r" and resynced.position is not None
        assert (resynced.position.first, resynced.position.head, resynced.position.epoch) == (8, 11, epoch)
        assert [m.seq for m in messages if isinstance(m, Message)] == [8, 9, 10, 11]
        assert alice.cursors["r"] == Cursor(epoch, 11)
