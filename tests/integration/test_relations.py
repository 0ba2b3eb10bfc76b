"""Edits, deletions and reactions (issue #5) on every backend: sequenced events, rules, tombstones.

A relation event is an ordinary stored message (kind edit/delete/react/unreact, JSON body naming the
target), so these are conformance tests: each runs against every backend of tests/backends/.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

import aiohttp
import pytest

from roost.config import Settings
from roost.node import Node
from roost.protocol.codes import Code
from roost.protocol.errors import AuthError, NotFound
from roost.protocol.relations import fold
from roost.protocol.types import Message

from .test_send import make_room
from .wsutil import Raw


async def texts(node: Node, room: str) -> list[Message]:
    page = await node.backends.store.read(room, 0, 1000)
    return page.messages


async def test_edit_delete_react_are_dense_sequenced_and_delivered_live(node: Node) -> None:
    await make_room(node, "alice", "r", "bob")
    bob = await Raw.open(node, "bob")
    await bob.request({"type": "subscribe", "room": "r", "id": "s"})
    await bob.until(lambda f: f["type"] == "live")
    alice = await Raw.open(node, "alice")
    sent = await alice.request({"type": "send", "room": "r", "cmid": "m1", "body": "helo", "id": "1"})
    target = sent["seq"]
    edit = {"type": "edit", "room": "r", "target": target, "body": "hello", "cmid": "e1", "id": "2"}
    edited = await alice.request(edit)
    assert edited["type"] == "ack" and edited["seq"] == target + 1 and edited["dup"] is False
    bob_phone = await Raw.open(node, "bob")  # bob's other device: ``request`` skips the frames it waits past
    reacted = await bob_phone.request({"type": "react", "room": "r", "target": target, "emoji": "👍", "id": "3"})
    assert reacted["type"] == "ack" and reacted["seq"] == target + 2
    deleted = await alice.request({"type": "delete", "room": "r", "target": target, "id": "4"})
    assert deleted["type"] == "ack" and deleted["seq"] == target + 3 and deleted["cmid"] == f"~delete-{target}"

    live = [await bob.until(lambda f: f["type"] == "msg") for _ in range(4)]
    assert [f["seq"] for f in live] == list(range(target, target + 4))
    assert [f["kind"] for f in live] == ["text", "edit", "react", "delete"]
    assert json.loads(live[1]["body"]) == {"target": target, "body": "hello"}
    assert json.loads(live[2]["body"]) == {"target": target, "emoji": "👍"} and live[2]["sender"] == "bob"
    assert json.loads(live[3]["body"]) == {"target": target}

    stored = await texts(node, "r")
    assert [m.seq for m in stored] == list(range(1, len(stored) + 1))
    await alice.close()
    await bob.close()
    await bob_phone.close()


async def test_a_member_who_was_offline_catches_up_and_folds_to_the_final_state(node: Node) -> None:
    await make_room(node, "alice", "r", "bob", "carol")
    carol = await Raw.open(node, "carol")
    await carol.request({"type": "subscribe", "room": "r", "id": "s"})
    cursor = (await carol.until(lambda f: f["type"] == "live"))["seq"]
    await carol.close()  # carol goes offline

    a = await node.service.send("alice", "r", "a1", "first draft")
    b = await node.service.send("bob", "r", "b1", "to be deleted")
    await node.service.edit("alice", "r", a.message.seq, "final text", "e1")
    await node.service.react("bob", "r", a.message.seq, "👍")
    await node.service.react("alice", "r", a.message.seq, "👍")
    await node.service.react("alice", "r", a.message.seq, "🎉")
    await node.service.react("alice", "r", a.message.seq, "🎉", remove=True)
    await node.service.delete("bob", "r", b.message.seq)

    carol = await Raw.open(node, "carol")
    await carol.request({"type": "subscribe", "room": "r", "after": cursor, "id": "s2"})
    head = (await node.backends.store.position("r")).head
    frames: list[dict[str, Any]] = []
    while not frames or frames[-1]["seq"] < head:
        frames.append(await carol.until(lambda f: f["type"] == "msg"))
    assert [f["seq"] for f in frames] == list(range(cursor + 1, head + 1))
    messages = [Message(**{k: v for k, v in f.items() if k != "type"}) for f in frames]
    view = {m.seq: m for m in fold(messages)}
    first, second = view[a.message.seq], view[b.message.seq]
    assert (first.body, first.edited, first.deleted) == ("final text", True, False)
    assert first.counts == {"👍": 2} and first.reactions == {"👍": ("alice", "bob")}
    assert second.deleted and second.body == ""
    # The catch-up itself served the deleted message as a tombstone: its text is not on the wire.
    assert not any("to be deleted" in json.dumps(f) for f in frames)
    await carol.close()


async def test_only_the_sender_edits_and_a_stranger_cannot_delete(node: Node) -> None:
    """[R-REL-3] [R-REL-8] Only the sender may edit (4403 for anyone else); a member who is not a moderator may
    not delete; the room's owner moderates it."""
    await make_room(node, "alice", "r", "bob", "carol")
    sent = await node.service.send("bob", "r", "b1", "bob's words")
    head = (await node.backends.store.position("r")).head
    carol = await Raw.open(node, "carol")
    edit = {"type": "edit", "room": "r", "target": sent.message.seq, "body": "carol's", "cmid": "c1", "id": "1"}
    reply = await carol.request(edit)
    assert reply["type"] == "error" and reply["code"] == Code.FORBIDDEN
    reply = await carol.request({"type": "delete", "room": "r", "target": sent.message.seq, "id": "2"})
    assert reply["type"] == "error" and reply["code"] == Code.FORBIDDEN
    assert (await node.backends.store.position("r")).head == head  # nothing stored
    # The room's owner moderates it: alice may delete bob's message (but not edit it).
    alice = await Raw.open(node, "alice")
    reply = await alice.request({**edit, "id": "3", "cmid": "a1"})
    assert reply["code"] == Code.FORBIDDEN
    reply = await alice.request({"type": "delete", "room": "r", "target": sent.message.seq, "id": "4"})
    assert reply["type"] == "ack" and reply["seq"] == head + 1
    await alice.close()
    await carol.close()


async def test_a_room_admin_may_delete_others_messages_and_a_member_may_not(node: Node) -> None:
    """[R-REL-3] [R-REL-8] A moderator (a room admin) may delete others' messages; a plain member may not, nor
    an admin made a member again."""
    await make_room(node, "alice", "r", "bob")
    await node.service.join("carol", "r")
    first = await node.service.send("bob", "r", "b1", "one")
    second = await node.service.send("bob", "r", "b2", "two")
    with pytest.raises(AuthError):
        await node.service.delete("carol", "r", first.message.seq)
    await node.service.set_role("alice", "r", "carol", "admin")
    appended = await node.service.delete("carol", "r", first.message.seq)
    assert appended.message.kind == "delete" and appended.message.sender == "carol"
    await node.service.set_role("alice", "r", "carol", "member")
    with pytest.raises(AuthError):
        await node.service.delete("carol", "r", second.message.seq)


async def test_a_moderator_flag_lets_an_admin_api_delete(node: Node) -> None:
    await make_room(node, "alice", "r", "bob")
    sent = await node.service.send("bob", "r", "b1", "spam")
    appended = await node.service.delete("admin", "r", sent.message.seq, moderator=True)
    assert appended.message.kind == "delete" and appended.message.sender == "admin"


@pytest.mark.parametrize(
    ("case", "code"),
    [("deleted", Code.CONFLICT), ("missing", Code.UNKNOWN_ROOM), ("join", Code.BAD_FRAME), ("edit", Code.BAD_FRAME)],
)
async def test_an_edit_of_a_bad_target_is_refused_with_a_stable_code(node: Node, case: str, code: Code) -> None:
    """[R-REL-1] [R-REL-4] A target that is missing (4404), not a text (4400) or deleted (4409) is refused, and nothing
    is stored."""
    await make_room(node, "alice", "r")
    sent = await node.service.send("alice", "r", "a1", "text")
    edit = await node.service.edit("alice", "r", sent.message.seq, "text 2", "e1")
    if case == "deleted":
        await node.service.delete("alice", "r", sent.message.seq)
    target = {"deleted": sent.message.seq, "missing": 999, "join": 1, "edit": edit.message.seq}[case]
    head = (await node.backends.store.position("r")).head
    alice = await Raw.open(node, "alice")
    frames = [
        {"type": "edit", "room": "r", "target": target, "body": "again", "cmid": "e2", "id": "1"},
        {"type": "react", "room": "r", "target": target, "emoji": "👍", "id": "2"},
    ]
    for frame in frames:
        reply = await alice.request(frame)
        assert reply["type"] == "error" and reply["code"] == code, reply
    if case != "deleted":
        reply = await alice.request({"type": "delete", "room": "r", "target": target, "id": "3"})
        assert reply["type"] == "error" and reply["code"] == code, reply
    assert (await node.backends.store.position("r")).head == head
    await alice.close()


async def test_retries_are_duplicates_of_the_original_event(node: Node) -> None:
    """[R-REL-4] [R-REL-5] Retried edits, reactions and deletes are answered with the original event and ``dup:
    true``."""
    await make_room(node, "alice", "r", "bob")
    sent = await node.service.send("alice", "r", "a1", "text")
    target = sent.message.seq
    alice = await Raw.open(node, "alice")
    edit = {"type": "edit", "room": "r", "target": target, "body": "better", "cmid": "e1", "id": "1"}
    first = await alice.request(edit)
    again = await alice.request({**edit, "id": "2"})
    assert again["type"] == "ack" and again["dup"] is True and again["seq"] == first["seq"]
    other = await alice.request({**edit, "body": "other text", "id": "3"})
    assert other["type"] == "error" and other["code"] == Code.CONFLICT  # a reused cmid, as for send

    # A double click on a reaction is one event; react, unreact, react again are three.
    bob = await Raw.open(node, "bob")
    react = {"type": "react", "room": "r", "target": target, "emoji": "👍", "id": "r1"}
    r1 = await bob.request(react)
    r2 = await bob.request({**react, "id": "r2"})
    assert r2["dup"] is True and r2["seq"] == r1["seq"]
    u1 = await bob.request({**react, "remove": True, "id": "u1"})
    u2 = await bob.request({**react, "remove": True, "id": "u2"})
    assert u1["dup"] is False and u2["dup"] is True and u2["seq"] == u1["seq"]
    r3 = await bob.request({**react, "id": "r3"})
    assert r3["dup"] is False and r3["seq"] == u1["seq"] + 1
    never = await bob.request({**react, "emoji": "🎉", "remove": True, "id": "u3"})
    assert never["type"] == "error" and never["code"] == Code.UNKNOWN_ROOM

    # A retried delete is answered with the first; another user's delete of it is a conflict.
    d1 = await alice.request({"type": "delete", "room": "r", "target": target, "id": "d1"})
    d2 = await alice.request({"type": "delete", "room": "r", "target": target, "id": "d2"})
    assert d2["dup"] is True and d2["seq"] == d1["seq"]
    d3 = await alice.request({"type": "delete", "room": "r", "target": target, "cmid": "mine", "id": "d3"})
    assert d3["type"] == "error" and d3["code"] == Code.CONFLICT

    kinds = [m.kind for m in await texts(node, "r") if m.seq > target]
    assert kinds == ["edit", "react", "unreact", "react", "delete"]
    await alice.close()
    await bob.close()


async def test_a_non_member_can_neither_edit_nor_delete_nor_react(node: Node) -> None:
    """[R-REL-2] Only members may edit, delete or react: anyone else gets 4403 and nothing is stored."""
    await make_room(node, "alice", "r")
    sent = await node.service.send("alice", "r", "a1", "members only")
    head = (await node.backends.store.position("r")).head
    mallory = await Raw.open(node, "mallory")
    target = sent.message.seq
    for frame in (
        {"type": "edit", "room": "r", "target": target, "body": "x", "cmid": "m1", "id": "1"},
        {"type": "delete", "room": "r", "target": target, "id": "2"},
        {"type": "react", "room": "r", "target": target, "emoji": "👎", "id": "3"},
    ):
        reply = await mallory.request(frame)
        assert reply["type"] == "error" and reply["code"] == Code.FORBIDDEN, reply
    assert (await node.backends.store.position("r")).head == head
    await mallory.close()


async def test_history_serves_a_deleted_message_and_its_edits_as_tombstones(node: Node) -> None:
    """[R-REL-6] Every form of ``history`` and a retried send serve a deleted message, and its edits, without their
    text."""
    await make_room(node, "alice", "r")
    sent = await node.service.send("alice", "r", "a1", "secret one")
    await node.service.edit("alice", "r", sent.message.seq, "secret two", "e1")
    await node.service.delete("alice", "r", sent.message.seq)
    for kwargs in ({"after": 0}, {"before": 10**6}, {}):
        result = await node.service.history("alice", "r", **kwargs)  # type: ignore[arg-type]
        kinds = [m.kind for m in result.page.messages]
        assert kinds == ["join", "deleted", "edit", "delete"], kinds
        assert "secret" not in repr(result.page.messages)
    # A retried send of the deleted message gets the tombstone back (and re-publishes only that).
    again = await node.service.send("alice", "r", "a1", "secret one")
    assert again.duplicate and again.message.kind == "deleted" and again.message.body == ""
    # The store itself still has the row: erasure happens on read, until retention trims it.
    assert any(m.body == "secret one" for m in await texts(node, "r"))


async def test_edit_delete_and_react_over_http(node: Node) -> None:
    """[R-REL-6] The HTTP forms of edit, delete and react; the page read after a delete serves the tombstone."""
    await make_room(node, "alice", "r", "bob")
    sent = await node.service.send("alice", "r", "a1", "over http")
    seq = sent.message.seq
    base = f"{node.url}/api/rooms/r/messages/{seq}"
    alice = {"Authorization": f"Bearer {node.tokens.issue('alice')}"}
    bob = {"Authorization": f"Bearer {node.tokens.issue('bob')}"}
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{base}/edit", json={"cmid": "e1", "body": "edited"}, headers=alice) as resp:
            assert resp.status == 201
            assert (await resp.json())["message"]["kind"] == "edit"
        async with http.post(f"{base}/edit", json={"cmid": "e1", "body": "edited"}, headers=alice) as resp:
            assert resp.status == 200 and (await resp.json())["duplicate"] is True
        async with http.post(f"{base}/edit", json={"cmid": "b1", "body": "not yours"}, headers=bob) as resp:
            assert resp.status == 403 and (await resp.json())["error"]["code"] == Code.FORBIDDEN
        async with http.post(f"{base}/reactions", json={"emoji": "👍"}, headers=bob) as resp:
            assert resp.status == 201 and (await resp.json())["message"]["kind"] == "react"
        async with http.delete(f"{base}/reactions/%F0%9F%91%8D", headers=bob) as resp:
            assert resp.status == 200 and (await resp.json())["message"]["kind"] == "unreact"
        async with http.delete(base, headers=bob) as resp:
            assert resp.status == 403
        async with http.delete(base, headers=alice) as resp:
            assert resp.status == 200 and (await resp.json())["message"]["kind"] == "delete"
        async with http.get(f"{node.url}/api/rooms/r/messages?after={seq - 1}", headers=bob) as resp:
            page = await resp.json()
            assert [m["kind"] for m in page["messages"]] == ["deleted", "edit", "react", "unreact", "delete"]
        async with http.delete(f"{node.url}/api/rooms/r/messages/x", headers=alice) as resp:
            assert resp.status == 400


async def test_tombstones_agree_with_a_full_fold_for_any_order_of_reads(embedded_node: Node) -> None:
    """The per-node index only ever extends its seq range; random reads must match a fold of everything."""
    import random

    from roost.protocol.relations import Relations, redact
    from roost.relindex import RelationIndex

    node = embedded_node
    rng = random.Random(7)
    await make_room(node, "alice", "r", "bob")
    texts_sent: list[int] = []
    for i in range(300):
        roll = rng.random()
        if roll < 0.5 or not texts_sent:
            texts_sent.append(
                (await node.service.send(rng.choice(["alice", "bob"]), "r", f"c{i}", f"t{i}")).message.seq
            )
        elif roll < 0.7:
            with contextlib.suppress(NotFound):  # removing a reaction never made
                await node.service.react(
                    "bob", "r", rng.choice(texts_sent), rng.choice("ab"), remove=rng.random() < 0.3
                )
        else:
            target = rng.choice(texts_sent)
            texts_sent.remove(target)
            await node.service.delete("alice", "r", target)  # alice created the room: she moderates
        if i % 37 == 0:  # reads interleaved with writes, in every direction
            after = rng.randrange(0, i + 3)
            await node.service.history("alice", "r", after=after, limit=rng.randrange(1, 40))
            await node.service.history("alice", "r", before=rng.randrange(1, i + 4), limit=rng.randrange(1, 40))
    stored = await texts(node, "r")
    everything = Relations(keep_edits=False)
    for m in stored:
        everything.add(m)
    expected = {m.seq: redact(m, everything) for m in stored}
    for i in range(60):
        if i % 15 == 0:  # a node that starts cold, first asked about the newest or an old page
            node.service.relations = RelationIndex(node.backends.store)
        if rng.random() < 0.5:
            result = await node.service.history("bob", "r", after=rng.randrange(0, len(stored)), limit=50)
        else:
            result = await node.service.history("bob", "r", before=rng.randrange(1, len(stored) + 2), limit=50)
        assert result.page.messages == [expected[m.seq] for m in result.page.messages]


async def test_the_sdk_edits_deletes_reacts_and_folds_what_it_missed(node: Node) -> None:
    from roost.client import RequestFailed, Timeline, connect

    await make_room(node, "alice", "r", "bob")
    async with connect(node.ws_url, node.tokens.issue("alice")) as alice:
        keep = await alice.send("r", "helo")
        drop = await alice.send("r", "never mind")
        edited = await alice.edit("r", keep.seq, "hello", cmid="e-1")
        assert edited.seq == drop.seq + 1 and not edited.duplicate
        assert (await alice.edit("r", keep.seq, "hello", cmid="e-1")).duplicate
        assert (await alice.react("r", keep.seq, "🎉")).seq == edited.seq + 1
        deleted = await alice.delete("r", drop.seq)
        assert (await alice.delete("r", drop.seq)).seq == deleted.seq
        try:
            await alice.edit("r", drop.seq, "back?")
        except RequestFailed as exc:
            assert exc.code == Code.CONFLICT
        else:
            raise AssertionError("an edit of a deleted message must fail")
    async with connect(node.ws_url, node.tokens.issue("bob")) as bob:  # bob was offline for all of it
        await bob.subscribe("r", after=0)
        timeline = Timeline()

        async def read_until(seq: int) -> None:
            last = 0
            while last < seq:
                item = await bob.receive(timeout_s=10)
                assert isinstance(item, Message)
                timeline.add(item)
                last = item.seq

        await read_until(deleted.seq)
        await bob.react("r", keep.seq, "🎉")
        await read_until(deleted.seq + 1)
    shown = [f for f in timeline.view() if f.kind != "join"]
    assert [(f.body, f.edited, f.deleted, f.counts) for f in shown] == [
        ("hello", True, False, {"🎉": 2}),
        ("", False, True, {}),
    ]


async def test_edits_deletes_and_reactions_share_the_send_rate_limit(embedded_settings: Settings) -> None:
    """[R-REL-2] Edits, deletes and reactions take from the same per-user bucket as sends (4429)."""
    from roost.node import serve

    from ..conftest import with_limits

    async with serve(with_limits(embedded_settings, sends_per_s=0.01, send_burst=4)) as node:
        await make_room(node, "alice", "r")
        sent = await node.service.send("alice", "r", "a1", "one")  # token 1 of 4
        alice = await Raw.open(node, "alice")
        target = sent.message.seq
        frames = [
            {"type": "edit", "room": "r", "target": target, "body": "two", "cmid": "e1", "id": "1"},
            {"type": "react", "room": "r", "target": target, "emoji": "👍", "id": "2"},
            {"type": "delete", "room": "r", "target": target, "id": "3"},
        ]
        for frame in frames:
            assert (await alice.request(frame))["type"] == "ack"
        head = (await node.backends.store.position("r")).head
        limited = await alice.request({**frames[1], "remove": True, "id": "4"})
        assert limited["type"] == "error" and limited["code"] == Code.RATE_LIMITED and limited["retry_after_s"] > 0
        assert (await node.backends.store.position("r")).head == head
        await alice.close()


async def test_a_trimmed_target_is_unknown(node: Node) -> None:
    """[R-REL-1] A target trimmed by retention is 4404 (no longer kept), like one that never existed."""
    await make_room(node, "alice", "r")
    old = await node.service.send("alice", "r", "a1", "old")
    for i in range(3):
        await node.service.send("alice", "r", f"n{i}", f"new {i}")
    await node.backends.store.trim("r", 2)
    alice = await Raw.open(node, "alice")
    reply = await alice.request(
        {"type": "edit", "room": "r", "target": old.message.seq, "body": "x", "cmid": "e", "id": "1"}
    )
    assert reply["type"] == "error" and reply["code"] == Code.UNKNOWN_ROOM and "no longer kept" in reply["reason"]
    head = (await node.backends.store.position("r")).head
    ok = await alice.request({"type": "delete", "room": "r", "target": head, "id": "2"})
    assert ok["type"] == "ack"
    result = await node.service.history("alice", "r", after=0)
    assert [m.kind for m in result.page.messages] == ["text", "deleted", "delete"]
    await alice.close()


@pytest.mark.parametrize(
    ("emoji", "code"),
    [
        ("", Code.BAD_FRAME),
        ("   ", Code.BAD_FRAME),
        ("👍" * 8 + "x", Code.BAD_FRAME),  # 33 bytes
        ("ok\n", Code.BAD_FRAME),
        ("\x1b[31m", Code.BAD_FRAME),
        ("\x85", Code.BAD_FRAME),  # a C1 control character
        ("👍" * 8, None),  # 32 bytes: the most
        ("x", None),
    ],
    ids=["empty", "blank", "33-bytes", "newline", "escape", "c1", "32-bytes", "one-byte"],
)
async def test_an_emoji_is_1_to_32_bytes_without_control_characters(
    embedded_node: Node, emoji: str, code: Code | None
) -> None:
    """[R-REL-9] A reaction's ``emoji`` is 1-32 bytes of UTF-8 with no control characters: anything else is 4400
    and nothing is stored; 32 bytes is accepted."""
    node = embedded_node
    await make_room(node, "alice", "r")
    sent = await node.service.send("alice", "r", "a1", "text")
    alice = await Raw.open(node, "alice")
    reply = await alice.request({"type": "react", "room": "r", "target": sent.message.seq, "emoji": emoji, "id": "1"})
    head = (await node.backends.store.position("r")).head
    if code is None:
        assert reply["type"] == "ack" and head == sent.message.seq + 1
    else:
        assert reply["type"] == "error" and reply["code"] == code and head == sent.message.seq, reply
    await alice.close()


async def test_racing_relations_that_both_passed_fold_to_one_final_state(node: Node) -> None:
    """[R-REL-10] Two requests racing on different nodes can both pass their checks and both be stored (two
    deletes of one message, an edit just after a delete): the fold gives the same final state either way (the
    first delete counts, the late edit is ignored), and every read path serves the target as a tombstone."""
    from roost.protocol.relations import DeleteContent, EditContent, encode_content
    from roost.protocol.types import Draft

    await make_room(node, "alice", "r", "carol")
    await node.service.set_role("alice", "r", "carol", "admin")
    target = (await node.service.send("carol", "r", "c1", "words")).message.seq
    # What two nodes store when each checked the room before the other's write landed:
    store = node.backends.store
    await store.append(Draft("r", "carol", f"~delete-{target}", encode_content(DeleteContent(target)), "delete"))
    await store.append(Draft("r", "alice", f"~delete-{target}", encode_content(DeleteContent(target)), "delete"))
    await store.append(Draft("r", "carol", "late", encode_content(EditContent(target, "too late")), "edit"))
    page = (await node.service.history("alice", "r", after=0)).page.messages
    assert [m.kind for m in page] == ["join", "join", "role", "deleted", "delete", "delete", "edit"]
    assert page[3].body == "" and json.loads(page[6].body) == {"target": target, "body": ""}
    raced = {m.seq: m for m in fold(page)}
    alone = {m.seq: m for m in fold(page[:5])}  # only the first delete, no late edit
    assert raced[target] == alone[target] and raced[target].deleted and raced[target].body == ""
    alice = await Raw.open(node, "alice")
    reply = await alice.request({"type": "delete", "room": "r", "target": target, "id": "d", "cmid": "again"})
    assert reply["type"] == "error" and reply["code"] == Code.CONFLICT
    await alice.close()
