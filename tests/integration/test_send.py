"""Contract points 1 (persist, then publish), 2 (dense seq), 4 (idempotent sends) and 8 (bad input)."""

from __future__ import annotations

import asyncio
import json

import pytest

from roost.node import Node
from roost.protocol.codes import Code

from .wsutil import Raw


async def make_room(node: Node, owner: str, room: str, *members: str) -> None:
    await node.service.create_room(owner, room)
    for member in members:
        await node.service.join(member, room)


async def test_ack_comes_after_the_message_is_durable_and_live_delivery_follows(node: Node) -> None:
    await make_room(node, "alice", "r", "bob")
    bob = await Raw.open(node, "bob")
    sub = await bob.request({"type": "subscribe", "room": "r", "id": "s"})
    assert sub["type"] == "subscribed"
    alice = await Raw.open(node, "alice")
    ack = await alice.request({"type": "send", "room": "r", "cmid": "m1", "body": "hello", "id": "1"})
    assert ack["type"] == "ack" and ack["seq"] == 3 and ack["dup"] is False
    page = await node.backends.store.read("r", 0, 10)
    assert [m.body for m in page.messages if m.kind == "text"] == ["hello"]
    live = await bob.until(lambda f: f["type"] == "msg" and f["kind"] == "text")
    assert live["seq"] == 3 and live["body"] == "hello" and live["sender"] == "alice"
    await alice.close()
    await bob.close()


async def test_a_published_message_is_already_in_the_store(embedded_node: Node) -> None:
    """Every live message a subscriber sees is committed at that moment (the embedded store's head)."""
    node = embedded_node
    await make_room(node, "alice", "r", "bob")
    seen_in_store: list[bool] = []

    class Probe:
        def on_message(self, room: str, wire: object) -> None:
            seq = wire.seq  # type: ignore[attr-defined]
            seen_in_store.append(seq <= node.backends.store._heads[room])  # type: ignore[attr-defined]

        def on_ephemeral(self, room: str, data: bytes) -> None: ...
        def on_dropped(self, room: str) -> None: ...
        def on_head(self, room: str, position: object) -> None: ...

    await node.hub.attach("r", Probe())  # type: ignore[arg-type]
    await asyncio.gather(*(node.service.send("alice", "r", f"c{i}", f"m{i}") for i in range(50)))
    assert len(seen_in_store) == 50 and all(seen_in_store)


async def test_a_failed_write_is_an_error_to_the_sender_and_nothing_is_published(node: Node) -> None:
    await make_room(node, "alice", "r", "bob")
    bob = await Raw.open(node, "bob")
    await bob.request({"type": "subscribe", "room": "r", "id": "s"})
    await bob.until(lambda f: f["type"] == "live")
    alice = await Raw.open(node, "alice")
    await node.backends.store.aclose()  # the store goes away under the running server
    reply = await alice.request({"type": "send", "room": "r", "cmid": "m1", "body": "lost?", "id": "1"})
    assert reply["type"] == "error" and reply["code"] == Code.UNAVAILABLE
    with pytest.raises(TimeoutError):
        await bob.until(lambda f: f["type"] == "msg", timeout=0.5)
    pong = await bob.request({"type": "ping", "id": "p"})
    assert pong["type"] == "pong"
    await alice.close()
    await bob.close()


async def test_concurrent_senders_get_a_dense_unique_sequence(node: Node) -> None:
    """[R-ORDER-1] Concurrent senders get seqs 1, 2, 3, ... without holes or duplicates."""
    users = [f"u{i}" for i in range(8)]
    await make_room(node, "owner", "r", *users)
    clients = [await Raw.open(node, u) for u in users]

    async def pump(raw: Raw, user: str) -> list[int]:
        for i in range(40):
            await raw.send({"type": "send", "room": "r", "cmid": f"{user}-{i}", "body": f"{user} {i}", "id": str(i)})
        acks = [await raw.until(lambda f: f["type"] == "ack") for _ in range(40)]
        return [a["seq"] for a in acks]

    seqs = [s for got in await asyncio.gather(*(pump(c, u) for c, u in zip(clients, users, strict=True))) for s in got]
    page = await node.backends.store.read("r", 0, 1000)
    stored = [m.seq for m in page.messages]
    assert stored == list(range(1, len(stored) + 1))
    assert sorted(seqs) == sorted(set(seqs)) and set(seqs) <= set(stored)
    assert len(seqs) == 8 * 40 and page.position.head == len(stored)
    for c in clients:
        await c.close()


async def test_each_client_sees_its_own_sends_in_order(node: Node) -> None:
    """[R-ORDER-2] Pipelined sends of one connection to one room are stored, and acked, in the order sent."""
    await make_room(node, "alice", "r")
    alice = await Raw.open(node, "alice")
    for i in range(100):
        await alice.send({"type": "send", "room": "r", "cmid": f"c{i}", "body": str(i), "id": str(i)})
    acks = [await alice.until(lambda f: f["type"] == "ack") for _ in range(100)]
    assert [a["seq"] for a in acks] == sorted(a["seq"] for a in acks)
    page = await node.backends.store.read("r", 1, 1000)
    assert [m.body for m in page.messages] == [str(i) for i in range(100)]
    await alice.close()


async def test_a_retry_returns_the_original_and_stores_nothing_new(node: Node) -> None:
    """[R-SEND-2] [R-SEND-3] Same key and body: the original seq and ts with ``dup: true``; same key, another body:
    4409; nothing stored."""
    await make_room(node, "alice", "r")
    alice = await Raw.open(node, "alice")
    first = await alice.request({"type": "send", "room": "r", "cmid": "x", "body": "once", "id": "1"})
    again = await alice.request({"type": "send", "room": "r", "cmid": "x", "body": "once", "id": "2"})
    assert again["seq"] == first["seq"] and again["ts"] == first["ts"] and again["dup"] is True
    other = await alice.request({"type": "send", "room": "r", "cmid": "x", "body": "different", "id": "3"})
    assert other["type"] == "error" and other["code"] == Code.CONFLICT
    page = await node.backends.store.read("r", 0, 100)
    assert [m.body for m in page.messages if m.kind == "text"] == ["once"]
    await alice.close()


async def test_the_same_cmid_from_another_user_is_another_message(node: Node) -> None:
    """[R-SEND-1] The key is ``(room, sender, cmid)``: the same cmid from another user is another message."""
    await make_room(node, "alice", "r", "bob")
    a = await node.service.send("alice", "r", "same", "from alice")
    b = await node.service.send("bob", "r", "same", "from bob")
    assert a.message.seq != b.message.seq and not b.duplicate


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("{not json", Code.BAD_FRAME),
        ("[1, 2, 3]", Code.BAD_FRAME),
        ('"a string"', Code.BAD_FRAME),
        (json.dumps({"type": "launch-missiles"}), Code.BAD_FRAME),
        (json.dumps({"body": "no type"}), Code.BAD_FRAME),
        (json.dumps({"type": "send", "room": "r", "body": "no cmid"}), Code.BAD_FRAME),
        (json.dumps({"type": "send", "room": "r", "cmid": 5, "body": "x"}), Code.BAD_FRAME),
        (json.dumps({"type": "send", "room": "r", "cmid": "c", "body": "x" * 17_000, "id": "big"}), Code.TOO_LARGE),
        (json.dumps({"type": "send", "room": "r", "cmid": "c", "body": "   ", "id": "blank"}), Code.BAD_FRAME),
        (json.dumps({"type": "send", "room": "r", "cmid": "bad id\n", "body": "x", "id": "c"}), Code.BAD_FRAME),
        (json.dumps({"type": "send", "room": "nowhere", "cmid": "c", "body": "x", "id": "u"}), Code.UNKNOWN_ROOM),
        (json.dumps({"type": "subscribe", "room": "nowhere", "id": "u"}), Code.UNKNOWN_ROOM),
        (json.dumps({"type": "subscribe", "room": "r", "after": -1, "id": "n"}), Code.BAD_FRAME),
        (json.dumps({"type": "history", "room": "r", "after": 1, "before": 3, "id": "h"}), Code.BAD_FRAME),
        (json.dumps({"type": "send", "room": "../../etc", "cmid": "c", "body": "x", "id": "p"}), Code.BAD_FRAME),
        (json.dumps({"type": "send", "room": "r", "cmid": "c", "body": "x" * 70_000}), Code.TOO_LARGE),
        (b"\x00\xff\xfe binary junk", Code.BAD_FRAME),
    ],
)
async def test_bad_input_is_refused_with_a_stable_code_and_nothing_is_stored(
    node: Node, frame: str | bytes, code: Code
) -> None:
    """[R-HIST-1] [R-WIRE-2] Bad frames (not one JSON object, missing fields, both ``after`` and ``before``, ...) get a
    stable code; nothing is stored."""
    await make_room(node, "alice", "r")
    before = await node.backends.store.position("r")
    alice = await Raw.open(node, "alice")
    await alice.send(frame)
    error = await alice.until(lambda f: f["type"] == "error")
    assert error["code"] == code, error
    assert isinstance(error["reason"], str) and error["reason"]
    # The connection and the server stay healthy.
    assert (await alice.request({"type": "ping", "id": "p"}))["type"] == "pong"
    ok = await alice.request({"type": "send", "room": "r", "cmid": "after", "body": "still fine", "id": "ok"})
    assert ok["type"] == "ack"
    after = await node.backends.store.position("r")
    assert after.head == before.head + 1
    await alice.close()


async def test_non_members_can_neither_read_nor_write(node: Node) -> None:
    await make_room(node, "alice", "secret")
    mallory = await Raw.open(node, "mallory")
    for frame in (
        {"type": "send", "room": "secret", "cmid": "c", "body": "x", "id": "1"},
        {"type": "subscribe", "room": "secret", "after": 0, "id": "2"},
        {"type": "history", "room": "secret", "after": 0, "id": "3"},
    ):
        reply = await mallory.request(frame)
        assert reply["type"] == "error" and reply["code"] == Code.FORBIDDEN
    assert (await node.backends.store.position("secret")).head == 1
    await mallory.close()


async def test_a_connection_must_authenticate(node: Node) -> None:
    """[R-AUTH-3] A failed authentication is one error frame and a close with the same code (4401); nothing is served
    before it."""
    import aiohttp

    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(node.ws_url) as ws:
            await ws.send_str(json.dumps({"type": "auth", "token": "not-a-token"}))
            error = json.loads((await ws.receive(timeout=5)).data)
            assert error["code"] == Code.UNAUTHORIZED
            closed = await ws.receive(timeout=5)
            assert closed.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
            assert ws.close_code == Code.UNAUTHORIZED
        async with http.ws_connect(node.ws_url) as ws:
            await ws.send_str(json.dumps({"type": "send", "room": "r", "cmid": "c", "body": "x"}))
            error = json.loads((await ws.receive(timeout=5)).data)
            assert error["code"] == Code.UNAUTHORIZED


async def test_a_decode_error_names_the_request_when_it_can(node: Node) -> None:
    await make_room(node, "alice", "r")
    alice = await Raw.open(node, "alice")
    reply = await alice.request({"type": "send", "room": "r", "cmid": "c", "id": "no-body"})
    assert reply["type"] == "error" and reply["code"] == Code.BAD_FRAME and reply["room"] == "r"
    await alice.close()
