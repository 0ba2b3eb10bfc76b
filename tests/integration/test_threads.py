"""Replies and threads (issue #14 item 1) on every backend: ``rich`` messages, their rules, a thread's pages.

A reply is an ordinary stored message (kind ``rich``, a JSON body naming what it replies to), so these are
conformance tests: each runs against every backend of tests/backends/, through WebSocket and HTTP.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from roost.client import connect
from roost.node import Node
from roost.protocol.codes import Code
from roost.protocol.relations import Timeline
from roost.protocol.types import Message

from .test_history import api
from .test_rooms import refused
from .test_sdk import drop_connections
from .test_send import make_room
from .wsutil import Raw


async def stored(node: Node, room: str) -> list[Message]:
    return (await node.backends.store.read(room, 0, 1000)).messages


def as_message(frame: dict[str, Any]) -> Message:
    return Message(**{k: v for k, v in frame.items() if k != "type"})


def send(room: str, cmid: str, body: str, **more: Any) -> dict[str, Any]:
    return {"type": "send", "room": room, "cmid": cmid, "body": body, "id": cmid, **more}


async def test_a_reply_is_a_rich_message_stored_delivered_and_retried_once(node: Node) -> None:
    """[R-THREAD-1] ``send`` with ``reply_to`` stores kind ``rich`` with body ``{"body", "reply_to"}`` through the one
    write path: acked, delivered live as ``msg``, replayed by history; a retry is answered as a duplicate; over HTTP
    the same. A plain send stays ``text``."""
    await make_room(node, "alice", "r", "bob")
    watcher = await Raw.open(node, "bob")  # bob's other device
    await watcher.request({"type": "subscribe", "room": "r", "id": "s"})
    await watcher.until(lambda f: f["type"] == "live")
    alice, bob = await Raw.open(node, "alice"), await Raw.open(node, "bob")
    first = await alice.request(send("r", "a1", "lunch?"))
    reply = await bob.request(send("r", "b1", "sure", reply_to=first["seq"]))
    assert reply["type"] == "ack" and reply["dup"] is False
    again = await bob.request(send("r", "b1", "sure", reply_to=first["seq"]))
    assert again["type"] == "ack" and again["dup"] is True and again["seq"] == reply["seq"]
    live = await watcher.until(lambda f: f["type"] == "msg" and f["seq"] == reply["seq"])
    assert live["kind"] == "rich" and json.loads(live["body"]) == {"body": "sure", "reply_to": first["seq"]}
    status, answer = await api(
        node, "POST", "/api/rooms/r/messages", "alice", {"cmid": "a2", "body": "ok", "reply_to": 3}
    )
    assert status == 201 and answer["message"]["kind"] == "rich"
    assert json.loads(answer["message"]["body"]) == {"body": "ok", "reply_to": 3}
    kinds = [(m.kind, m.sender) for m in await stored(node, "r")][2:]
    assert kinds == [("text", "alice"), ("rich", "bob"), ("rich", "alice")]
    await alice.close()
    await bob.close()
    await watcher.close()


async def test_a_reply_names_a_kept_text_of_the_same_room(node: Node) -> None:
    """[R-THREAD-2] ``reply_to`` and ``thread`` name a kept message of the same room that is a text: a seq the room
    does not have (one of another room's, beyond the head) is 4404; a membership or relation event, or a seq outside
    1 to 2**53, is 4400; nothing is stored. A deleted message may be replied to."""
    await make_room(node, "alice", "r", "bob")
    await make_room(node, "alice", "big")
    for i in range(10):
        await node.service.send("alice", "big", f"c{i}", f"m{i}")  # big has seq 11; r does not
    alice = await Raw.open(node, "alice")
    text = (await alice.request(send("r", "t", "a text")))["seq"]
    edit = (await alice.request({"type": "edit", "room": "r", "target": text, "body": "b", "cmid": "e", "id": "e"}))[
        "seq"
    ]
    head = (await node.backends.store.position("r")).head
    for field in ("reply_to", "thread"):
        await refused(alice, send("r", f"x-{field}-1", "x", **{field: 11}), Code.UNKNOWN_ROOM)
        await refused(alice, send("r", f"x-{field}-2", "x", **{field: 1}), Code.BAD_FRAME)  # alice's join
        await refused(alice, send("r", f"x-{field}-3", "x", **{field: edit}), Code.BAD_FRAME)
        await refused(alice, send("r", f"x-{field}-4", "x", **{field: 0}), Code.BAD_FRAME)
        await refused(alice, send("r", f"x-{field}-5", "x", **{field: 2**53 + 1}), Code.BAD_FRAME)
        status, answer = await api(
            node, "POST", "/api/rooms/r/messages", "alice", {"cmid": "h", "body": "x", field: 99}
        )
        assert status == 404 and answer["error"]["code"] == Code.UNKNOWN_ROOM
    mallory = await Raw.open(node, "mallory")
    await refused(mallory, send("r", "m", "x", reply_to=text), Code.FORBIDDEN)
    assert (await node.backends.store.position("r")).head == head  # nothing stored
    await alice.request({"type": "delete", "room": "r", "target": text, "id": "d"})
    late = await alice.request(send("r", "late", "replying anyway", reply_to=text))
    assert late["type"] == "ack"
    await alice.close()
    await mallory.close()


async def test_threads_are_one_level_deep(node: Node) -> None:
    """[R-THREAD-3] ``thread`` names the root: a reply in a thread cannot be a root (4400); ``reply_to`` with
    ``thread`` quotes the root or a reply of that same thread (4400 otherwise); a reply may quote a message of a
    thread from the main timeline."""
    await make_room(node, "alice", "r", "bob")
    alice, bob = await Raw.open(node, "alice"), await Raw.open(node, "bob")
    root = (await alice.request(send("r", "root", "plans for friday")))["seq"]
    other = (await alice.request(send("r", "other", "another topic")))["seq"]
    one = await bob.request(send("r", "b1", "I'm in", thread=root))
    assert one["type"] == "ack"
    quoted = await alice.request(send("r", "a1", "great", thread=root, reply_to=one["seq"]))
    assert quoted["type"] == "ack"
    also = await alice.request(send("r", "a2", "the plan is up there", thread=root, reply_to=root))
    assert also["type"] == "ack"
    await refused(bob, send("r", "b2", "nested", thread=one["seq"]), Code.BAD_FRAME)
    await refused(bob, send("r", "b3", "wrong thread", thread=root, reply_to=other), Code.BAD_FRAME)
    other_thread = (await bob.request(send("r", "b4", "about that", thread=other)))["seq"]
    await refused(bob, send("r", "b5", "crossing", thread=root, reply_to=other_thread), Code.BAD_FRAME)
    outside = await bob.request(send("r", "b6", "from the room", reply_to=one["seq"]))
    assert outside["type"] == "ack"
    rich = {m.seq: json.loads(m.body) for m in await stored(node, "r") if m.kind == "rich"}
    assert rich[one["seq"]] == {"body": "I'm in", "thread": root}
    assert rich[quoted["seq"]] == {"body": "great", "reply_to": one["seq"], "thread": root}
    await alice.close()
    await bob.close()


async def test_a_threads_pages_over_websocket_and_http(node: Node) -> None:
    """[R-THREAD-4] ``history`` with ``thread`` (HTTP ``?thread=``) pages through the root and its replies by seq with
    ``after``/``before``/``limit`` and ``has_more``, other messages left out; a deleted reply is a tombstone that keeps
    its thread, also once erased; a root that is a reply, or not a text, is 4400, an unknown one 4404, a non-member
    4403."""
    await make_room(node, "alice", "r", "bob")
    alice = await Raw.open(node, "alice")
    root = (await alice.request(send("r", "root", "the root")))["seq"]
    replies = []
    for i in range(7):
        await alice.request(send("r", f"noise{i}", f"noise {i}"))
        replies.append((await alice.request(send("r", f"re{i}", f"reply {i}", thread=root)))["seq"])
    await alice.request({"type": "delete", "room": "r", "target": replies[1], "id": "d1"})
    await alice.request({"type": "delete", "room": "r", "target": replies[2], "erase": True, "id": "d2"})

    newest = await alice.request({"type": "history", "room": "r", "thread": root, "limit": 3, "id": "h1"})
    assert [m["seq"] for m in newest["messages"]] == replies[-3:] and newest["has_more"] is True
    older = await alice.request(
        {"type": "history", "room": "r", "thread": root, "before": replies[-3], "limit": 10, "id": "h2"}
    )
    assert [m["seq"] for m in older["messages"]] == [root, *replies[:4]] and older["has_more"] is False
    tombs = {m["seq"]: (m["kind"], m["body"]) for m in older["messages"] if m["kind"] == "deleted"}
    assert tombs == {seq: ("deleted", json.dumps({"thread": root}, separators=(",", ":"))) for seq in replies[1:3]}
    status, forward = await api(node, "GET", f"/api/rooms/r/messages?thread={root}&after={root}&limit=2", "bob")
    assert status == 200 and [m["seq"] for m in forward["messages"]] == replies[:2] and forward["has_more"] is True
    assert forward["head"] == (await node.backends.store.position("r")).head

    timeline = Timeline().extend([as_message(m) for m in older["messages"] + newest["messages"]])
    assert [f.seq for f in timeline.thread(root)] == [root, *replies]
    folded_root = timeline.get(root)
    assert folded_root is not None and folded_root.replies == 5 and folded_root.last_reply == replies[-1]

    await refused(alice, {"type": "history", "room": "r", "thread": replies[0], "id": "x1"}, Code.BAD_FRAME)
    await refused(alice, {"type": "history", "room": "r", "thread": 1, "id": "x2"}, Code.BAD_FRAME)  # a join
    await refused(alice, {"type": "history", "room": "r", "thread": 999, "id": "x3"}, Code.UNKNOWN_ROOM)
    status, _ = await api(node, "GET", f"/api/rooms/r/messages?thread={root}", "mallory")
    assert status == 403
    status, _ = await api(node, "GET", f"/api/rooms/r/messages?thread={root}&since_ts=1", "alice")
    assert status == 400
    await alice.close()


async def test_an_offline_member_catches_up_on_replies_their_edits_and_thread_counts(node: Node) -> None:
    """[R-THREAD-5] Replies, edits of replies, deletions in a thread: an offline member catching up from a cursor gets
    them in order like any message, and the fold gives each root its reply count and last reply, each reply its
    quote and thread, with the edited text."""
    await make_room(node, "alice", "r", "bob")
    bob = await Raw.open(node, "bob")
    await bob.request({"type": "subscribe", "room": "r", "after": 0, "id": "s"})
    cursor = (await bob.until(lambda f: f["type"] == "live"))["seq"]
    await bob.close()  # bob goes offline
    root = (await node.service.send("alice", "r", "root", "friday?")).message.seq
    first = (await node.service.send("alice", "r", "t1", "7pm", thread=root)).message
    second = (await node.service.send("alice", "r", "t2", "or 8", thread=root)).message
    quote = (await node.service.send("alice", "r", "q", "see above", reply_to=root)).message
    await node.service.edit("alice", "r", first.seq, "7:30pm", "e1")
    await node.service.delete("alice", "r", second.seq)
    bob = await Raw.open(node, "bob")
    await bob.request({"type": "subscribe", "room": "r", "after": cursor, "id": "s2"})
    caught: list[Message] = []
    while (frame := await bob.recv())["type"] != "live":
        if frame["type"] == "msg":
            caught.append(as_message(frame))
    assert [m.seq for m in caught] == list(range(cursor + 1, cursor + 1 + len(caught)))
    timeline = Timeline().extend(caught)
    root_folded, first_folded, quote_folded = (timeline.get(s) for s in (root, first.seq, quote.seq))
    assert root_folded is not None and root_folded.replies == 1 and root_folded.last_reply == first.seq
    assert root_folded.last_reply_ts == first.ts
    assert first_folded is not None and (first_folded.body, first_folded.edited, first_folded.thread) == (
        "7:30pm",
        True,
        root,
    )
    assert quote_folded is not None and quote_folded.reply_to == root and quote_folded.thread is None
    assert [f.seq for f in timeline.thread(root)] == [root, first.seq, second.seq]
    assert timeline.get(second.seq) is not None and timeline.get(second.seq).deleted  # type: ignore[union-attr]
    await bob.close()


async def test_the_python_sdk_sends_replies_reads_a_thread_and_folds_it(node: Node) -> None:
    """[R-THREAD-6] The Python SDK: ``send(reply_to=, thread=)`` goes through the outbox like any send (a connection
    cut before the ack stores it once), ``history(thread=)`` reads a thread's pages, and ``Timeline`` folds what it
    received into roots with their reply counts, replies with their quote and thread."""
    await make_room(node, "alice", "r", "bob")
    async with (
        connect(node.ws_url, node.tokens.issue("alice"), initial_backoff_s=0.01) as alice,
        connect(node.ws_url, node.tokens.issue("bob")) as bob,
    ):
        await bob.subscribe("r", after=0)
        root = await alice.send("r", "where do we meet?")
        sending = asyncio.ensure_future(alice.send("r", "at the station", thread=root.seq))
        await drop_connections(node, "alice")
        first = await sending
        again = await alice.send("r", "at the station", thread=root.seq, cmid=first.cmid)
        assert again.seq == first.seq
        quote = await alice.send("r", "as I said", reply_to=first.seq, thread=root.seq)
        page = await bob.history("r", thread=root.seq, after=0, limit=10)
        assert [m.seq for m in page.messages] == [root.seq, first.seq, quote.seq] and not page.has_more
        timeline = Timeline()
        async with asyncio.timeout(10):
            async for item in bob:
                if isinstance(item, Message):
                    timeline.add(item)
                    if item.seq == quote.seq:
                        break
        folded_root = timeline.get(root.seq)
        assert folded_root is not None and (folded_root.replies, folded_root.last_reply) == (2, quote.seq)
        folded_quote = timeline.get(quote.seq)
        assert folded_quote is not None and (folded_quote.reply_to, folded_quote.thread) == (first.seq, root.seq)
        assert folded_quote.body == "as I said" and folded_quote.kind == "text"
    stored_rich = [m for m in await stored(node, "r") if m.kind == "rich"]
    assert [m.seq for m in stored_rich] == [first.seq, quote.seq]  # the retried one stored once
