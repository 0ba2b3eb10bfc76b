"""Read positions: one per user per room, shared by devices and nodes; unread counts and "seen by"."""

from __future__ import annotations

from dataclasses import replace

from roost.config import Settings
from roost.node import Node, serve

from .test_history import api
from .test_send import make_room
from .wsutil import Raw


async def test_read_position_is_shared_by_a_users_devices(node: Node) -> None:
    """[R-READ-1] [R-READ-2] One read position per user and room, shared by the user's devices: it never moves
    back, and a seq beyond the head is taken as the head; the user's other device, following the room, gets the
    ``receipt``."""
    await make_room(node, "alice", "r", "bob")
    for i in range(8):
        await node.service.send("alice", "r", f"c{i}", f"m{i}")  # seqs 3..10
    phone, laptop = await Raw.open(node, "bob"), await Raw.open(node, "bob")
    await laptop.request({"type": "subscribe", "room": "r", "id": "s"})
    await laptop.until(lambda f: f["type"] == "live")
    _, rooms = await api(node, "GET", "/api/rooms", "bob")
    assert rooms["unread"]["r"] == {"head": 10, "read": 0, "unread": 8, "mentions": 0}  # not the joins [R-READ-3]
    ok = await phone.request({"type": "read", "room": "r", "seq": 7, "id": "1"})
    assert ok["type"] == "ok"
    receipt = await laptop.until(lambda f: f["type"] == "receipt")
    assert receipt == {"type": "receipt", "room": "r", "user": "bob", "seq": 7}
    _, rooms = await api(node, "GET", "/api/rooms", "bob")
    assert rooms["unread"]["r"] == {"head": 10, "read": 7, "unread": 3, "mentions": 0}
    await phone.request({"type": "read", "room": "r", "seq": 4, "id": "2"})  # never moves back
    _, rooms = await api(node, "GET", "/api/rooms", "bob")
    assert rooms["unread"]["r"]["read"] == 7
    status, body = await api(node, "POST", "/api/rooms/r/read", "bob", {"seq": 99})  # clamped to the head
    assert status == 200 and body["read"] == 10
    _, seen = await api(node, "GET", "/api/rooms/r/receipts", "alice")
    assert seen["readers"]["bob"] == 10
    status, _ = await api(node, "GET", "/api/rooms/r/receipts", "mallory")
    assert status == 403
    await phone.close()
    await laptop.close()


async def test_receipts_and_unread_counts_agree_across_nodes(shared: Settings) -> None:
    """[R-READ-2] A follower of the room on another node gets the ``receipt`` of another user's ``read``."""
    async with serve(shared) as one, serve(replace(shared, data_dir=shared.data_dir + "-2")) as two:
        await make_room(one, "alice", "r", "bob")
        for i in range(4):
            await one.service.send("alice", "r", f"c{i}", f"m{i}")  # head 6
        watcher = await Raw.open(two, "alice")
        await watcher.request({"type": "subscribe", "room": "r", "id": "s"})
        await watcher.until(lambda f: f["type"] == "live")
        bob_on_one = await Raw.open(one, "bob")
        await bob_on_one.request({"type": "read", "room": "r", "seq": 5, "id": "1"})
        receipt = await watcher.until(lambda f: f["type"] == "receipt")
        assert receipt["user"] == "bob" and receipt["seq"] == 5
        _, rooms = await api(two, "GET", "/api/rooms", "bob")
        assert rooms["unread"]["r"]["unread"] == 1
        await watcher.close()
        await bob_on_one.close()


async def test_unread_counts_only_what_there_is_to_read(node: Node) -> None:
    """[R-READ-3] ``GET /api/rooms``'s ``unread`` counts the texts of others after the read position: not membership
    events, edits, reactions, deletions (nor the deleted message), nor the user's own messages; past the newest
    100 messages after the read position, each kept message counts as one."""
    await make_room(node, "alice", "r", "bob")  # seqs 1, 2: the joins
    _, rooms = await api(node, "GET", "/api/rooms", "bob")
    assert rooms["unread"]["r"] == {"head": 2, "read": 0, "unread": 0, "mentions": 0}
    one = await node.service.send("alice", "r", "a1", "one")
    two = await node.service.send("alice", "r", "a2", "two")
    await node.service.send("bob", "r", "b1", "mine, from my phone")
    await node.service.edit("alice", "r", one.message.seq, "one!", "a3")
    await node.service.react("bob", "r", one.message.seq, "👍")
    await node.service.delete("alice", "r", two.message.seq)
    await node.service.join("carol", "r")
    await node.service.leave("carol", "r")
    _, rooms = await api(node, "GET", "/api/rooms", "bob")
    assert rooms["unread"]["r"] == {"head": 10, "read": 0, "unread": 1, "mentions": 0}, rooms["unread"]
    _, rooms = await api(node, "GET", "/api/rooms", "alice")
    assert rooms["unread"]["r"]["unread"] == 1  # bob's message
    await node.service.mark_read("bob", "r", one.message.seq)
    _, rooms = await api(node, "GET", "/api/rooms", "bob")
    assert rooms["unread"]["r"]["unread"] == 0
    # Past the scan: 100 joins and leaves after 5 texts; the texts beyond the newest 100 count one each.
    await node.service.mark_read("bob", "r", 10)
    for i in range(5):
        await node.service.send("alice", "r", f"t{i}", f"text {i}")
    for i in range(50):
        await node.service.join(f"u{i}", "r")
        await node.service.leave(f"u{i}", "r")
    _, rooms = await api(node, "GET", "/api/rooms", "bob")
    assert rooms["unread"]["r"]["unread"] == 5
    await node.service.send("alice", "r", "last", "and one more")
    _, rooms = await api(node, "GET", "/api/rooms", "bob")
    # The newest 100 are 17..116 (one text); 11..16 are beyond them: five texts and a join, one each.
    assert rooms["unread"]["r"]["unread"] == 7
