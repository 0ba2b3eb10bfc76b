"""Cursor rules of docs/protocol.md sections 8, 13 and 15 that the document used to leave out or state
wrongly, against a real server on every engine: the epoch is checked with or without `after`, `after` may be
at most the head, cursors are capped at 2**53, `limit` is clamped to 1-500 (0 means 1), and a text frame
that is not UTF-8 closes the connection with 1007."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from roost.node import Node
from roost.protocol.codes import Code

from .test_send import make_room
from .wsutil import Raw


async def test_a_wrong_epoch_is_refused_with_or_without_a_seq(node: Node) -> None:
    """[R-SUB-5] `subscribe` with an `epoch` that is not the room's is 4410 (with the room's position)
    whether or not `after` is given; with the right epoch and no `after` it starts at the head."""
    await make_room(node, "alice", "r")
    alice = await Raw.open(node, "alice")
    refused = await alice.request({"type": "subscribe", "room": "r", "epoch": "not-this-one", "id": "s1"})
    assert refused["type"] == "error" and refused["code"] == Code.RESYNC_REQUIRED and refused["ref"] == "s1"
    assert refused["epoch"] != "not-this-one" and refused["head"] == 1 and refused["first"] == 1
    accepted = await alice.request({"type": "subscribe", "room": "r", "epoch": refused["epoch"], "id": "s2"})
    assert accepted["type"] == "subscribed" and accepted["after"] == 1
    await alice.close()


async def test_after_may_be_the_head_but_not_beyond(node: Node) -> None:
    """[R-SUB-6] `after` = head is a cursor with nothing to catch up; head + 1 is 4410 (it cannot be
    continued: the cursor is from another history)."""
    await make_room(node, "alice", "r")
    await node.service.send("alice", "r", "c", "x")
    alice = await Raw.open(node, "alice")
    at_head = await alice.request({"type": "subscribe", "room": "r", "after": 2, "id": "s1"})
    assert at_head["type"] == "subscribed" and at_head["head"] == 2
    beyond = await alice.request({"type": "subscribe", "room": "r", "after": 3, "id": "s2"})
    assert beyond["code"] == Code.RESYNC_REQUIRED and beyond["head"] == 2
    await alice.close()


async def test_cursors_are_capped_at_2_to_the_53(node: Node) -> None:
    """[R-SUB-7] Every seq a client sends (`after`, `before`, `seq`, `target`) is an integer 0..2**53 (what a
    JSON number holds exactly): 2**53 is accepted, 2**53 + 1 and 2**63 - 1 are 4400, on WebSocket and HTTP."""
    await make_room(node, "alice", "r")
    alice = await Raw.open(node, "alice")
    top = await alice.request({"type": "history", "room": "r", "before": 2**53, "id": "h0"})
    assert top["type"] == "history" and [m["seq"] for m in top["messages"]] == [1]
    for i, value in enumerate((2**53 + 1, 2**63 - 1)):
        for frame in (
            {"type": "subscribe", "room": "r", "after": value},
            {"type": "history", "room": "r", "after": value},
            {"type": "read", "room": "r", "seq": value},
            {"type": "delete", "room": "r", "target": value},
        ):
            reply = await alice.request({**frame, "id": f"{frame['type']}{i}"})
            assert reply["type"] == "error" and reply["code"] == Code.BAD_FRAME, (frame, reply)
    headers = {"Authorization": f"Bearer {node.tokens.issue('alice')}"}
    url = f"{node.url}/api/rooms/r/messages?after={2**53 + 1}"
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as resp:
        assert resp.status == 400
    await alice.close()


async def test_limit_0_means_1_and_absent_means_50_on_websocket_and_http(node: Node) -> None:
    """[R-HIST-2] `limit` is clamped to 1-500: 0 or a negative number gives one message, no `limit` 50."""
    await make_room(node, "alice", "r")
    for i in range(59):
        await node.service.send("alice", "r", f"c{i}", "x")
    alice = await Raw.open(node, "alice")
    headers = {"Authorization": f"Bearer {node.tokens.issue('alice')}"}

    async def http_page(query: str) -> dict[str, Any]:
        url = f"{node.url}/api/rooms/r/messages?{query}"
        async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as resp:
            assert resp.status == 200
            page: dict[str, Any] = await resp.json()
            return page

    for limit in (0, -5):
        ws = await alice.request({"type": "history", "room": "r", "limit": limit, "id": f"l{limit}"})
        assert [m["seq"] for m in ws["messages"]] == [60]
        assert [m["seq"] for m in (await http_page(f"limit={limit}"))["messages"]] == [60]
    default = await alice.request({"type": "history", "room": "r", "after": 0, "id": "d"})
    assert [m["seq"] for m in default["messages"]] == list(range(1, 51))
    assert len((await http_page("after=0"))["messages"]) == 50
    await alice.close()


async def test_a_text_frame_that_is_not_utf8_closes_with_1007(embedded_node: Node) -> None:
    """[R-SUB-8] The WebSocket layer refuses a text frame of invalid UTF-8 by closing with 1007 (invalid
    frame payload data), before Roost sees it; a binary frame instead is a 4400 error frame."""
    alice = await Raw.open(embedded_node, "alice")
    await alice.send(b"\x00")
    binary = await alice.recv()
    assert binary["code"] == Code.BAD_FRAME
    await alice.ws.send_frame(b'{"type":"ping","id":"\xff"}', aiohttp.WSMsgType.TEXT)
    msg = await alice.ws.receive(timeout=5)
    assert msg.type is aiohttp.WSMsgType.CLOSE and msg.data == aiohttp.WSCloseCode.INVALID_TEXT
    await alice.close()


async def test_a_frame_over_the_transports_limit_closes_with_1009(embedded_node: Node) -> None:
    """[R-WIRE-7] A client frame over 4 x ``max_frame_bytes`` (256 KiB) is refused by the transport itself: the
    connection is closed with 1009 (message too big); one just over ``max_frame_bytes`` is a 4413 error frame."""
    alice = await Raw.open(embedded_node, "alice")
    limit = embedded_node.settings.limits.max_frame_bytes
    await alice.send({"type": "ping", "id": "x" * limit})
    assert (await alice.recv())["code"] == Code.TOO_LARGE
    await alice.send({"type": "ping", "id": "x" * (4 * limit + 1)})
    msg = await alice.ws.receive(timeout=5)
    assert msg.type is aiohttp.WSMsgType.CLOSE and msg.data == aiohttp.WSCloseCode.MESSAGE_TOO_BIG == 1009
    await alice.close()


async def test_after_a_4410_the_room_is_no_longer_followed(node: Node) -> None:
    """[R-RESYNC-3] After a 4410 the room is no longer followed on the connection, also when a subscription of
    the room was active before the refused ``subscribe``: later messages of the room do not arrive."""
    await make_room(node, "alice", "r", "bob")
    bob = await Raw.open(node, "bob")
    await bob.request({"type": "subscribe", "room": "r", "after": 0, "id": "s1"})
    await bob.until(lambda f: f["type"] == "live")
    refused = await bob.request({"type": "subscribe", "room": "r", "after": 0, "epoch": "another", "id": "s2"})
    assert refused["type"] == "error" and refused["code"] == Code.RESYNC_REQUIRED
    await node.service.send("alice", "r", "later", "not delivered")
    assert (await bob.request({"type": "ping", "id": "p"}))["type"] == "pong"
    with pytest.raises(TimeoutError):
        await bob.until(lambda f: f["type"] == "msg", timeout=0.5)
    assert not [f for f in bob.frames if f.get("type") == "msg"]
    await bob.close()
