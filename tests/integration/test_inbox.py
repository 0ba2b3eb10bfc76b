"""The per-user event stream (docs/protocol.md section 19): what goes in, who may read it, and how it resumes.

Conformance: every test runs on every backend (the ``node`` fixture, or a real ``roost serve`` over the
backend's engines for the kill test). A stream is a room, so its delivery is the room machinery's; what is
checked here is that each cause writes its event once, that only its user reads it, and that it survives
the faults a room survives.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp

from roost.chaos.infra import wait_until
from roost.client import Added, Client, Cursor, InboxEvent, Invited, Mention, Sent, Uninvited, connect
from roost.config import Settings
from roost.node import Node, serve
from roost.protocol.codes import Code
from roost.protocol.inbox import inbox_room
from roost.protocol.rich import text_of
from roost.protocol.types import Message

from ..backends import Backend
from .procs import ServerProcess, issue_token
from .test_history import api
from .test_rooms import ok, refused
from .wsutil import Raw


async def stream(node: Node, user: str, after: int = 0) -> list[tuple[str, dict[str, Any]]]:
    """``(kind, body)`` of the events in ``user``'s stream after ``after``, read from the store."""
    room = inbox_room(user)
    if not await node.backends.directory.room_exists(room):
        return []
    page = await node.backends.store.read(room, after, 500)
    assert all(m.sender == "system" for m in page.messages)
    return [(m.kind, json.loads(m.body)) for m in page.messages]


async def test_welcome_names_the_stream_and_its_user_follows_it_like_a_room(node: Node) -> None:
    """[R-INBOX-1] ``welcome`` names the user's stream; its user subscribes to it (before its first event too),
    reads it with ``history``, ``GET .../messages`` and ``/api/sync``, and gets each event live, once, in order."""
    http = aiohttp.ClientSession()
    ws = await http.ws_connect(node.ws_url)
    await ws.send_json({"type": "auth", "token": node.tokens.issue("bob")})
    welcome = json.loads((await ws.receive()).data)
    assert welcome["type"] == "welcome" and welcome["inbox"] == "~u:bob"
    bob = Raw(ws, http)
    sub = await bob.request({"type": "subscribe", "room": "~u:bob", "after": 0, "id": "s"})
    assert sub["type"] == "subscribed" and sub["head"] == 0
    await bob.until(lambda f: f["type"] == "live")
    alice = await Raw.open(node, "alice")
    await ok(alice, {"type": "create", "room": "plans", "kind": "private", "id": "c"})
    await ok(alice, {"type": "invite", "room": "plans", "user": "bob", "id": "i"})
    live = await bob.until(lambda f: f["type"] == "msg")
    assert (live["room"], live["seq"], live["sender"], live["kind"]) == ("~u:bob", 1, "system", "invited")
    assert json.loads(live["body"]) == {"room": "plans", "by": "alice"}
    page = await bob.request({"type": "history", "room": "~u:bob", "after": 0, "id": "h"})
    assert [m["kind"] for m in page["messages"]] == ["invited"] and page["head"] == 1
    status, answer = await api(node, "GET", "/api/rooms/~u:bob/messages?after=0", "bob")
    assert status == 200 and [m["seq"] for m in answer["messages"]] == [1]
    status, synced = await api(node, "POST", "/api/sync", "bob", {"rooms": {"~u:bob": 0}})
    assert status == 200 and [m["kind"] for m in synced["rooms"]["~u:bob"]["messages"]] == ["invited"]
    # A stream is not a room of the user's: not listed, not counted.
    _, rooms = await api(node, "GET", "/api/rooms", "bob")
    assert rooms["rooms"] == [] and "~u:bob" not in rooms["unread"] and "~u:bob" not in rooms["public"]
    await alice.close()
    await bob.close()


async def test_another_users_stream_is_hidden_and_only_the_server_writes_one(node: Node) -> None:
    """[R-INBOX-2] Anyone else's stream is 4404 to every request, over WebSocket and HTTP; in one's own, every request
    that would store something or change membership is 4403; ``create`` cannot take a stream's name."""
    await node.service.create_room("alice", "plans", "private")
    await node.service.invite("alice", "plans", "bob")  # bob's stream exists
    before = await stream(node, "bob")
    mallory = await Raw.open(node, "mallory")
    for frame in (
        {"type": "subscribe", "room": "~u:bob", "after": 0},
        {"type": "history", "room": "~u:bob", "after": 0},
        {"type": "send", "room": "~u:bob", "cmid": "m1", "body": "hi"},
        {"type": "read", "room": "~u:bob", "seq": 1},
        {"type": "join", "room": "~u:bob"},
        {"type": "leave", "room": "~u:bob"},
        {"type": "typing", "room": "~u:bob"},
        {"type": "react", "room": "~u:bob", "target": 1, "emoji": "x"},
        {"type": "invite", "room": "~u:bob", "user": "carol"},
        {"type": "decline", "room": "~u:bob"},
    ):
        await refused(mallory, {**frame, "id": frame["type"]}, Code.UNKNOWN_ROOM)
    for method, path, body in (
        ("GET", "/api/rooms/~u:bob/messages?after=0", None),
        ("POST", "/api/rooms/~u:bob/messages", {"cmid": "m2", "body": "hi"}),
        ("POST", "/api/rooms/~u:bob/read", {"seq": 1}),
    ):
        status, answer = await api(node, method, path, "mallory", body)
        assert status == 404 and answer["error"]["code"] == Code.UNKNOWN_ROOM, (path, answer)
    _, synced = await api(node, "POST", "/api/sync", "mallory", {"rooms": {"~u:bob": 0}})
    assert synced["rooms"]["~u:bob"]["error"]["code"] == Code.UNKNOWN_ROOM
    bob = await Raw.open(node, "bob")
    for frame in (
        {"type": "send", "room": "~u:bob", "cmid": "b1", "body": "note to self"},
        {"type": "edit", "room": "~u:bob", "target": 1, "body": "x", "cmid": "b2"},
        {"type": "delete", "room": "~u:bob", "target": 1},
        {"type": "react", "room": "~u:bob", "target": 1, "emoji": "x"},
        {"type": "typing", "room": "~u:bob"},
        {"type": "join", "room": "~u:bob"},
        {"type": "leave", "room": "~u:bob"},
        {"type": "invite", "room": "~u:bob", "user": "carol"},
        {"type": "kick", "room": "~u:bob", "user": "carol"},
    ):
        await refused(bob, {**frame, "id": frame["type"]}, Code.FORBIDDEN)
    status, _ = await api(node, "POST", "/api/rooms/~u:bob/messages", "bob", {"cmid": "b3", "body": "hi"})
    assert status == 403
    await refused(bob, {"type": "create", "room": "~u:bob", "id": "c"}, Code.BAD_FRAME)
    await ok(bob, {"type": "read", "room": "~u:bob", "seq": 1, "id": "r"})  # a position in it is fine
    assert await stream(node, "bob") == before  # nothing stored, and reading one's stream tells nothing
    assert await stream(node, "mallory") == []
    await mallory.close()
    await bob.close()


async def test_an_invitation_is_listed_and_ends_when_declined(node: Node) -> None:
    """[R-INBOX-3] [R-INBOX-4] [R-CODE-23] An invitation is an ``invited`` event in the invitee's stream and is
    listed by ``GET /api/invites`` (a repeat adds nothing); declining it stores ``uninvite`` in the room and
    ``uninvited`` in the stream, ends the listing, and a join needs a new invitation."""
    await node.service.create_room("alice", "plans", "private")
    alice, bob = await Raw.open(node, "alice"), await Raw.open(node, "bob")
    await ok(alice, {"type": "invite", "room": "plans", "user": "bob", "id": "i"})
    await ok(alice, {"type": "invite", "room": "plans", "user": "bob", "id": "i2"})  # a repeat: nothing new
    assert await stream(node, "bob") == [("invited", {"room": "plans", "by": "alice"})]
    status, listed = await api(node, "GET", "/api/invites", "bob")
    assert status == 200 and listed == {"invites": [{"room": "plans", "by": "alice"}]}
    await ok(bob, {"type": "decline", "room": "plans", "id": "d"})
    page = await node.backends.store.read("plans", 0, 10)
    assert [(m.kind, m.sender, m.body) for m in page.messages][-2:] == [
        ("invite", "bob", '{"by":"alice"}'),
        ("uninvite", "bob", '{"by":"bob"}'),
    ]
    assert (await stream(node, "bob"))[1:] == [("uninvited", {"room": "plans", "by": "bob", "reason": "declined"})]
    assert (await api(node, "GET", "/api/invites", "bob"))[1] == {"invites": []}
    assert (await node.service.room_info("plans")).invites == []
    await refused(bob, {"type": "join", "room": "plans", "id": "j"}, Code.UNKNOWN_ROOM)
    await refused(bob, {"type": "decline", "room": "plans", "id": "d2"}, Code.UNKNOWN_ROOM)
    status, _ = await api(node, "POST", "/api/rooms/plans/decline", "bob")
    assert status == 404
    # A new invitation is a new event, and joining uses it up: ``added`` ends it in the listing.
    await ok(alice, {"type": "invite", "room": "plans", "user": "bob", "id": "i3"})
    await ok(bob, {"type": "join", "room": "plans", "id": "j2"})
    kinds = [kind for kind, _ in await stream(node, "bob")]
    assert kinds == ["invited", "uninvited", "invited", "added"]
    assert (await api(node, "GET", "/api/invites", "bob"))[1] == {"invites": []}
    await alice.close()
    await bob.close()


async def test_an_invitation_is_revoked_by_its_inviter_or_a_moderator_only(node: Node) -> None:
    """[R-INBOX-4] [R-CODE-22] Who made an invitation, or an owner or admin, revokes it (HTTP ``DELETE`` or
    ``uninvite``): ``uninvited`` with reason ``revoked`` in the invitee's stream, and the join is refused
    afterwards; a plain member cannot revoke another's invitation."""
    await node.service.create_room("alice", "plans", "private")
    for user in ("bob", "carol"):
        await node.service.invite("alice", "plans", user)
    await node.service.join("bob", "plans")
    status, answer = await api(node, "DELETE", "/api/rooms/plans/invites/carol", "bob")
    assert status == 403 and answer["error"]["code"] == Code.FORBIDDEN
    status, answer = await api(node, "DELETE", "/api/rooms/plans/invites/carol", "mallory")
    assert status == 404  # an outsider learns nothing of a private room
    status, answer = await api(node, "DELETE", "/api/rooms/plans/invites/carol", "alice")
    assert status == 200 and answer == {"room": "plans", "user": "carol"}
    assert await stream(node, "carol") == [
        ("invited", {"room": "plans", "by": "alice"}),
        ("uninvited", {"room": "plans", "by": "alice", "reason": "revoked"}),
    ]
    carol = await Raw.open(node, "carol")
    await refused(carol, {"type": "join", "room": "plans", "id": "j"}, Code.UNKNOWN_ROOM)
    status, _ = await api(node, "DELETE", "/api/rooms/plans/invites/carol", "alice")  # nothing left: no error
    assert status == 200 and len(await stream(node, "carol")) == 2
    # An admin revokes the owner's invitation, over the WebSocket.
    await node.service.set_role("alice", "plans", "bob", "admin")
    await node.service.invite("alice", "plans", "dave")
    bob = await Raw.open(node, "bob")
    await ok(bob, {"type": "uninvite", "room": "plans", "user": "dave", "id": "u"})
    assert (await stream(node, "dave"))[-1] == ("uninvited", {"room": "plans", "by": "bob", "reason": "revoked"})
    assert (await node.service.room_info("plans")).invites == []
    await carol.close()
    await bob.close()


async def test_rooms_the_user_is_added_to_are_in_their_stream(node: Node) -> None:
    """[R-INBOX-5] ``added`` names the room, who added the user and the seq of their join: a direct conversation
    someone opened with them (both users), a room they created or joined, and one an API key added them to."""
    alice = await Raw.open(node, "alice")
    opened = await ok(alice, {"type": "dm", "user": "bob", "id": "d"})
    room = opened["room"]
    assert await stream(node, "bob") == [("added", {"room": room, "by": "alice", "seq": 2})]
    assert await stream(node, "alice") == [("added", {"room": room, "by": "alice", "seq": 1})]
    await ok(alice, {"type": "dm", "user": "bob", "id": "d2"})  # already in: nothing new
    assert len(await stream(node, "bob")) == 1
    await ok(alice, {"type": "create", "room": "lobby", "id": "c"})
    await node.service.join("bob", "lobby")
    assert (await stream(node, "alice"))[-1] == ("added", {"room": "lobby", "by": "alice", "seq": 1})
    assert (await stream(node, "bob"))[-1] == ("added", {"room": "lobby", "by": "bob", "seq": 2})
    await node.service.add_member("alice", "lobby", "carol")
    assert await stream(node, "carol") == [
        ("invited", {"room": "lobby", "by": "alice"}),
        ("added", {"room": "lobby", "by": "alice", "seq": 4}),
    ]
    await alice.close()


async def test_kicks_bans_and_leaves_are_in_the_removed_users_stream(node: Node) -> None:
    """[R-INBOX-6] ``removed`` names the room, who removed the user, how (``kick``, ``ban``, ``leave``) and the seq
    of the removing event; a ban of a user who only held an invitation ends it (``uninvited``, ``banned``)."""
    await node.service.create_room("alice", "r")
    for user in ("bob", "carol", "dave"):
        await node.service.join(user, "r")
    await node.service.kick("alice", "r", "bob")
    await node.service.ban("alice", "r", "carol")
    await node.service.leave("dave", "r")
    await node.service.invite("alice", "r", "erin")
    await node.service.ban("alice", "r", "erin")
    page = await node.backends.store.read("r", 0, 50)
    seq = {(m.kind, m.sender): m.seq for m in page.messages}
    assert (await stream(node, "bob"))[-1] == (
        "removed",
        {"room": "r", "by": "alice", "how": "kick", "seq": seq["kick", "bob"]},
    )
    assert (await stream(node, "carol"))[-1] == (
        "removed",
        {"room": "r", "by": "alice", "how": "ban", "seq": seq["ban", "carol"]},
    )
    assert (await stream(node, "dave"))[-1] == (
        "removed",
        {"room": "r", "by": "dave", "how": "leave", "seq": seq["leave", "dave"]},
    )
    assert (await stream(node, "erin"))[-1] == ("uninvited", {"room": "r", "by": "alice", "reason": "banned"})
    assert (await api(node, "GET", "/api/invites", "erin"))[1] == {"invites": []}


async def test_a_mention_tells_members_only_once_without_the_text(node: Node) -> None:
    """[R-INBOX-7] ``@name`` tells a member of the room once per message (a retried send re-emits the same event),
    with the room, seq and sender but not the text; never a non-member, the sender, a name inside an address, or an
    edit."""
    await node.service.create_room("alice", "r", "private")
    await node.service.invite("alice", "r", "bob")
    await node.service.join("bob", "r")
    await node.service.invite("alice", "r", "carol")  # invited, not a member: learns nothing of the text
    before = {user: len(await stream(node, user)) for user in ("alice", "bob", "carol")}
    body = "hi @bob, @carol and @alice. mail bob@example.com or @bob."
    sent = await node.service.send("alice", "r", "m1", body)
    again = await node.service.send("alice", "r", "m1", body)  # a retry of the same send
    assert again.duplicate
    status, _ = await api(node, "POST", "/api/rooms/r/messages", "alice", {"cmid": "m1", "body": body})
    assert status == 200
    bob_events = (await stream(node, "bob"))[before["bob"] :]
    assert bob_events == [("mention", {"room": "r", "seq": sent.message.seq, "sender": "alice"})]
    assert len(await stream(node, "carol")) == before["carol"]
    assert len(await stream(node, "alice")) == before["alice"]
    await node.service.edit("alice", "r", sent.message.seq, body + " @bob again", "e1")
    assert len(await stream(node, "bob")) == before["bob"] + 1
    # Over HTTP, and from ``system`` (an application posting as the service): the same rule.
    status, posted = await api(node, "POST", "/api/rooms/r/messages", "bob", {"cmid": "b1", "body": "@alice look"})
    assert status == 201
    assert (await stream(node, "alice"))[-1] == (
        "mention",
        {"room": "r", "seq": posted["message"]["seq"], "sender": "bob"},
    )


async def test_mentions_past_the_limit_are_not_told(settings: Settings) -> None:
    """[R-INBOX-7] At most ``max_mentions`` distinct names of one message are told; the message is stored whole."""
    limited = replace(settings, limits=replace(settings.limits, max_mentions=2))
    async with serve(limited) as node:
        await node.service.create_room("alice", "r")
        for user in ("bob", "carol", "dave"):
            await node.service.join(user, "r")
        sent = await node.service.send("alice", "r", "m", "@bob @bob @carol @dave")
        assert text_of(sent.message) == "@bob @bob @carol @dave"  # and it lists them all: only telling is bounded
        assert json.loads(sent.message.body)["mentions"] == ["bob", "carol", "dave"]
        told = {u: [k for k, _ in await stream(node, u)].count("mention") for u in ("bob", "carol", "dave")}
        assert told == {"bob": 1, "carol": 1, "dave": 0}


async def test_a_read_position_that_rises_is_in_the_readers_stream(node: Node) -> None:
    """[R-INBOX-8] ``read`` (room, seq) when the user's position rises, whichever device moved it; a read that moves
    nothing adds nothing."""
    await node.service.create_room("alice", "r")
    for i in range(5):
        await node.service.send("alice", "r", f"c{i}", f"m{i}")
    start = len(await stream(node, "alice"))
    alice = await Raw.open(node, "alice")
    await ok(alice, {"type": "read", "room": "r", "seq": 4, "id": "r1"})
    await ok(alice, {"type": "read", "room": "r", "seq": 3, "id": "r2"})  # lower: nothing
    assert (await stream(node, "alice"))[start:] == [("read", {"room": "r", "seq": 4})]
    status, _ = await api(node, "POST", "/api/rooms/r/read", "alice", {"seq": 99})  # clamped to the head
    assert status == 200

    async def raised_to_6() -> bool:
        return ("read", {"room": "r", "seq": 6}) in (await stream(node, "alice"))[start:]

    await wait_until("the coalesced read stored", raised_to_6)
    assert (await stream(node, "alice"))[start:] == [
        ("read", {"room": "r", "seq": 4}),
        ("read", {"room": "r", "seq": 6}),
    ]
    await alice.close()


async def test_a_stream_is_trimmed_like_a_room_and_says_so(shared: Settings) -> None:
    """[R-INBOX-11] The store's retention (``keep=N``) applies to a stream as to any room: a cursor older than what
    it keeps is answered 4410 with ``first``, and the stream resumes from there."""
    assert shared.store is not None
    async with serve(replace(shared, store=shared.store + "&keep=3")) as node:
        await node.service.create_room("alice", "r")
        await node.service.join("bob", "r")
        for i in range(6):
            await node.service.send("alice", "r", f"c{i}", f"@bob {i}")
        position = await node.backends.store.position("~u:bob")
        assert position.head == 7 and position.first == 5
        bob = await Raw.open(node, "bob")
        refusal = await bob.request({"type": "subscribe", "room": "~u:bob", "after": 0, "id": "s"})
        assert refusal["code"] == Code.RESYNC_REQUIRED and refusal["first"] == 5
        sub = await bob.request(
            {"type": "subscribe", "room": "~u:bob", "after": 4, "epoch": refusal["epoch"], "id": "s2"}
        )
        assert sub["type"] == "subscribed"
        got = [f["seq"] for f in [await bob.until(lambda f: f["type"] == "msg") for _ in range(3)]]
        assert got == [5, 6, 7]
        await bob.close()


async def test_the_sdk_follows_a_conversation_someone_opens_with_its_user(node: Node) -> None:
    """[R-CLIENT-73] The SDK follows its user's stream after the welcome: a direct conversation bob opens with alice
    reaches alice's SDK as ``added`` while it runs, and the SDK follows the room at once, from alice's join, so
    bob's first message (sent right after opening it) reaches her too; an invitation arrives the same way, and
    declining it through the SDK is ``uninvited``."""
    async with (
        connect(node.ws_url, node.tokens.issue("alice")) as alice,
        connect(node.ws_url, node.tokens.issue("bob")) as bob,
    ):
        assert alice.inbox == "~u:alice"
        room = await bob.dm("alice")
        await bob.send(room, "hi alice, a word?")
        item = await alice.receive_inbox(timeout_s=5)
        assert isinstance(item, InboxEvent) and item.kind == "added" and item.content == Added(room, "bob", 2)
        got = await alice.receive(timeout_s=5)
        while not (isinstance(got, Message) and got.kind == "text"):
            got = await alice.receive(timeout_s=5)
        assert (got.room, got.sender, got.body) == (room, "bob", "hi alice, a word?")
        await bob.send(room, "still there?")
        got = await alice.receive(timeout_s=5)
        assert isinstance(got, Message) and got.body == "still there?"
        await bob.create("plans", "private")
        await bob.invite("plans", "alice")
        item = await alice.receive_inbox(timeout_s=5)
        assert isinstance(item, InboxEvent) and item.content == Invited("plans", "bob")
        await alice.decline("plans")
        item = await alice.receive_inbox(timeout_s=5)
        assert isinstance(item, InboxEvent) and item.content == Uninvited("plans", "alice", "declined")
        assert set(alice.cursors) == {"~u:alice", room}


def _process_args(backend: Backend) -> list[str]:
    args = ["--secret", SECRET]
    if backend.store is not None:
        args += ["--store", backend.store]
    if backend.bus is not None:
        args += ["--bus", backend.bus]
    return args


SECRET = "inbox-test-secret-0123456789abcdef0123456789"


async def test_a_stream_resumes_from_its_cursor_after_kill_9(tmp_path: Path, backend: Backend) -> None:
    """[R-INBOX-10] [R-INBOX-9] A stream followed by the SDK resumes from its cursor after its node is killed with
    ``kill -9`` mid-stream: every event once, in order, without a gap; sends retried across the kill re-emit their
    mentions under the same keys, so the stream holds exactly one per message; a new client given the saved cursor
    gets exactly what came after it."""
    data = tmp_path / "data"
    server = ServerProcess(data, None, *_process_args(backend))
    await server.start()
    try:
        alice_token = await issue_token("alice", data, SECRET)
        bob_token = await issue_token("bob", data, SECRET)
        fast = {"initial_backoff_s": 0.02, "max_backoff_s": 0.2}
        async with connect(server.ws_url, bob_token, **fast) as bob:
            await bob.create("r")
            async with connect(server.ws_url, alice_token, **fast) as alice:
                await alice.join("r")
                assert alice.inbox == "~u:alice"
                await _inbox_resumes_across_a_kill(server, alice, bob)
                saved = alice.cursors
        stored = await _read_stream(server.url, alice_token)
        assert [m["seq"] for m in stored] == list(range(1, len(stored) + 1))
        mentions = [json.loads(m["body"])["seq"] for m in stored if m["kind"] == "mention"]
        assert len(mentions) == len(set(mentions)) == TOTAL
        # A new client with the saved cursor resumes exactly after it.
        await _http(server.url, bob_token, "POST", "/api/rooms/r/messages", {"cmid": "late", "body": "@alice late"})
        async with connect(server.ws_url, alice_token, cursors=saved, **fast) as again:
            item = await again.receive_inbox(timeout_s=10)
            assert isinstance(item, InboxEvent) and item.seq == saved["~u:alice"].seq + 1
            assert isinstance(item.content, Mention) and item.content.sender == "bob"
    finally:
        server.stop()


TOTAL = 120


async def _inbox_resumes_across_a_kill(server: ServerProcess, alice: Client, bob: Client) -> None:
    acks: list[Sent] = []
    got: list[InboxEvent] = []

    async def sender() -> None:
        window = asyncio.Semaphore(8)

        async def one(i: int) -> None:
            async with window:
                acks.append(await bob.send("r", f"@alice number {i}", cmid=f"b-{i}"))

        await asyncio.gather(*(one(i) for i in range(TOTAL)))

    async def chaos() -> None:
        await wait_until("a third acked", lambda: len(acks) >= TOTAL // 3, 60, every_s=0.01)
        server.kill()
        await asyncio.sleep(0.3)  # the subject: an outage
        await server.start()

    async def receiver() -> None:
        mentioned: set[int] = set()
        async for item in alice.inbox_events():
            assert isinstance(item, InboxEvent), item
            got.append(item)
            if isinstance(item.content, Mention):
                mentioned.add(item.content.seq)
                if len(mentioned) == TOTAL:
                    return

    await asyncio.wait_for(asyncio.gather(sender(), chaos(), receiver()), timeout=90)
    assert alice.reconnects >= 1 and bob.reconnects >= 1
    seqs = [e.seq for e in got]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # once each, in order, no gap
    assert alice.cursors["~u:alice"] == Cursor(alice.cursors["~u:alice"].epoch, seqs[-1])
    by_seq = {e.content.seq for e in got if isinstance(e.content, Mention)}
    assert by_seq == {a.seq for a in acks}


async def _http(url: str, token: str, method: str, path: str, body: Any = None) -> Any:
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http,
        http.request(method, url + path, json=body) as resp,
    ):
        assert resp.status < 300, await resp.text()
        return await resp.json()


async def _read_stream(url: str, token: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    after = 0
    while True:
        page = await _http(url, token, "GET", f"/api/rooms/~u:alice/messages?after={after}&limit=500")
        out.extend(page["messages"])
        if not page["has_more"]:
            return out
        after = out[-1]["seq"]
