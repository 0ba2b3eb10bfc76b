"""Mentions and notification settings (issue #14 item 2) on every backend.

A text's mentions are parsed once, on the server, into the stored ``rich`` content; ``@room``/``@here`` are
permission-checked and bounded; the mentioned members (only members) are told in their event streams; the unread
mention counts and each user's per-room notification levels are kept server-side on every engine.
"""

from __future__ import annotations

import json
from dataclasses import replace

from roost.config import Settings
from roost.node import Node, serve
from roost.protocol.codes import Code
from roost.protocol.errors import AuthError, Conflict
from roost.protocol.inbox import inbox_room
from roost.protocol.types import Draft, Message

from .test_history import api
from .test_inbox import stream
from .test_rooms import refused
from .test_send import make_room
from .wsutil import Raw


async def last(node: Node, room: str) -> Message:
    position = await node.backends.store.position(room)
    return (await node.backends.store.read(room, position.head - 1, 1)).messages[0]


async def mention_events(node: Node, user: str) -> list[tuple[str, int, str]]:
    return [(e["room"], e["seq"], e["sender"]) for kind, e in await stream(node, user) if kind == "mention"]


async def test_mentions_are_parsed_once_into_the_stored_message(node: Node) -> None:
    """[R-MENTION-1] A text that mentions someone is stored as ``rich`` with ``mentions`` (user names, in order, each
    once, at most 50) and ``room`` (``@room``/``@here``) as the server parsed them; ``bob@example.com`` mentions
    nobody and such a text stays ``text``; a retry is a duplicate; an edit carries the mentions of its new text; a
    send retried across the upgrade (stored as plain text before) is answered as the duplicate it is."""
    await make_room(node, "alice", "r", "bob", "carol")
    sent = await node.service.send("alice", "r", "a1", "@bob and @carol. see @bob, mail bob@example.com")
    stored = await last(node, "r")
    assert stored.kind == "rich" and json.loads(stored.body) == {
        "body": "@bob and @carol. see @bob, mail bob@example.com",
        "mentions": ["bob", "carol"],
    }
    again = await node.service.send("alice", "r", "a1", "@bob and @carol. see @bob, mail bob@example.com")
    assert again.duplicate and again.message.seq == sent.message.seq
    await node.service.send("alice", "r", "a2", "write to bob@example.com")
    assert (await last(node, "r")).kind == "text"
    await node.service.send("alice", "r", "a3", "@here " + " ".join(f"@u{i}" for i in range(60)))
    crowded = json.loads((await last(node, "r")).body)
    assert crowded["room"] is True and crowded["mentions"] == [f"u{i}" for i in range(50)]
    await node.service.edit("alice", "r", sent.message.seq, "only @carol now", "e1")
    assert json.loads((await last(node, "r")).body) == {
        "target": sent.message.seq,
        "body": "only @carol now",
        "mentions": ["carol"],
    }
    await node.service.writer.append(Draft("r", "alice", "old", "hi @bob"))  # as a server before mentions stored it
    retried = await node.service.send("alice", "r", "old", "hi @bob")
    assert retried.duplicate and retried.message.kind == "text" and retried.message.body == "hi @bob"
    try:
        await node.service.send("alice", "r", "old", "hi @carol")
    except Conflict:
        pass
    else:
        raise AssertionError("another text under the same cmid is 4409")


async def test_room_mentions_are_for_owners_and_admins_of_small_rooms(settings: Settings) -> None:
    """[R-MENTION-2] ``@room``/``@here`` in a send or an edit: the owner or an admin may, a plain member is refused
    (4403, nothing stored), anyone may in a direct conversation; in a room of more than
    ``max_room_mention_members`` members nobody may."""
    small = replace(settings, limits=replace(settings.limits, max_room_mention_members=4))
    async with serve(small) as node:
        await make_room(node, "alice", "r", "bob", "carol")
        bob = await Raw.open(node, "bob")
        before = (await node.backends.store.position("r")).head
        await refused(bob, {"type": "send", "room": "r", "cmid": "b1", "body": "@room hi", "id": "1"}, Code.FORBIDDEN)
        await refused(bob, {"type": "send", "room": "r", "cmid": "b2", "body": "@here hi", "id": "2"}, Code.FORBIDDEN)
        status, _ = await api(node, "POST", "/api/rooms/r/messages", "bob", {"cmid": "b3", "body": "ping @here"})
        assert status == 403 and (await node.backends.store.position("r")).head == before
        mine = await bob.request({"type": "send", "room": "r", "cmid": "b4", "body": "mine", "id": "3"})
        edit = {"type": "edit", "room": "r", "target": mine["seq"], "body": "@room", "cmid": "b5", "id": "4"}
        await refused(bob, edit, Code.FORBIDDEN)
        assert (await node.service.send("alice", "r", "a1", "@room lunch?")).message.kind == "rich"
        await node.service.set_role("alice", "r", "bob", "admin")
        assert (await bob.request({"type": "send", "room": "r", "cmid": "b6", "body": "@here", "id": "5"}))[
            "type"
        ] == "ack"
        room = await node.service.dm("carol", "dave")
        assert (await node.service.send("dave", room, "d1", "@here?")).message.kind == "rich"
        await node.service.join("dave", "r")
        await node.service.join("erin", "r")  # five members now
        await refused(bob, {"type": "send", "room": "r", "cmid": "b7", "body": "@room", "id": "6"}, Code.FORBIDDEN)
        try:
            await node.service.send("alice", "r", "a2", "@room too many")
        except AuthError as exc:
            assert exc.code == Code.FORBIDDEN
        else:
            raise AssertionError("a room over the limit refuses @room, also to its owner")
        await bob.close()


async def test_who_is_told_of_a_mention(node: Node) -> None:
    """[R-MENTION-3] ``@room`` tells every member but the sender (one ``mention`` event each, once also when the send
    is retried); ``@name`` tells only members: a non-member, invited or a stranger, is told nothing and their stream
    holds nothing of the room."""
    await make_room(node, "alice", "r", "bob", "carol")
    await node.service.create_room("alice", "secret", "private")
    await node.service.invite("alice", "secret", "mallory")
    everyone = await node.service.send("alice", "r", "a1", "@room standup in 5")
    await node.service.send("alice", "r", "a1", "@room standup in 5")  # a retry tells nobody again
    named = await node.service.send("alice", "secret", "a2", "@mallory @stranger the plan is X")
    for user in ("bob", "carol"):
        assert await mention_events(node, user) == [("r", everyone.message.seq, "alice")]
    assert await mention_events(node, "alice") == []
    assert await mention_events(node, "mallory") == []
    assert not await node.backends.directory.room_exists(inbox_room("stranger"))
    assert json.loads(named.message.body)["mentions"] == ["mallory", "stranger"]  # stored as written: no more text


async def test_unread_mentions_are_counted_apart(node: Node) -> None:
    """[R-MENTION-4] ``GET /api/rooms`` counts, beside ``unread``, the unread messages that mention the user (by name
    or ``@room``, as sent: not an edit that adds a mention, not a deleted message, not the user's own)."""
    await make_room(node, "alice", "r", "bob")
    await node.service.send("alice", "r", "a1", "@bob look")
    await node.service.send("alice", "r", "a2", "@room lunch")
    plain = await node.service.send("alice", "r", "a3", "no mention")
    await node.service.edit("alice", "r", plain.message.seq, "now @bob", "e1")
    gone = await node.service.send("alice", "r", "a4", "@bob oops")
    await node.service.delete("alice", "r", gone.message.seq)
    await node.service.send("bob", "r", "b1", "@bob to myself")
    _, rooms = await api(node, "GET", "/api/rooms", "bob")
    assert rooms["unread"]["r"]["unread"] == 3 and rooms["unread"]["r"]["mentions"] == 2
    await node.service.mark_read("bob", "r", plain.message.seq)
    _, rooms = await api(node, "GET", "/api/rooms", "bob")
    assert rooms["unread"]["r"]["mentions"] == 0


async def test_notification_levels_are_kept_per_user_and_told_to_their_devices(node: Node) -> None:
    """[R-MENTION-5] ``PUT /api/rooms/{room}/notify`` keeps the user's level for a room (``all``, ``mentions``,
    ``none``), listed by ``GET /api/rooms`` in ``notify`` for that user only, and writes a ``notify`` event to the
    user's stream (their other devices see it live); a bad level is 400, a non-member 403 (404 for a private room),
    an event stream 403."""
    await make_room(node, "alice", "r", "bob")
    await node.service.create_room("alice", "secret", "private")
    phone = await Raw.open(node, "bob")
    await phone.request({"type": "subscribe", "room": "~u:bob", "id": "s"})
    await phone.until(lambda f: f["type"] == "live")
    status, answer = await api(node, "PUT", "/api/rooms/r/notify", "bob", {"level": "none"})
    assert status == 200 and answer == {"room": "r", "level": "none"}
    event = await phone.until(lambda f: f["type"] == "msg")
    assert event["kind"] == "notify" and json.loads(event["body"]) == {"room": "r", "level": "none"}
    status, _ = await api(node, "PUT", "/api/rooms/r/notify", "bob", {"level": "mentions"})
    _, rooms = await api(node, "GET", "/api/rooms", "bob")
    assert rooms["notify"] == {"r": "mentions"}
    _, rooms = await api(node, "GET", "/api/rooms", "alice")
    assert rooms["notify"] == {}
    for room, user, body, code in (
        ("r", "bob", {"level": "loud"}, 400),
        ("r", "bob", {"level": "all", "more": 1}, 400),
        ("r", "mallory", {"level": "all"}, 403),
        ("secret", "bob", {"level": "all"}, 404),
        ("~u:bob", "bob", {"level": "all"}, 403),
        ("~u:bob", "mallory", {"level": "all"}, 404),
    ):
        status, answer = await api(node, "PUT", f"/api/rooms/{room}/notify", user, body)
        assert status == code, (room, user, body, answer)
    await phone.close()
