"""Rooms: public, private (by invitation) and direct; roles; invite, kick, ban; the rooms-per-user limit.

Conformance: every test runs on every backend (the ``node`` fixture). The rules live in the service
over the Directory's per-room attributes, so what differs per backend is only where those are kept.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from typing import Any

import pytest

from roost.config import Settings
from roost.node import Node, serve
from roost.protocol.codes import Code
from roost.protocol.errors import AuthError

from ..conftest import with_limits
from .test_history import api
from .wsutil import Raw


async def ok(raw: Raw, frame: dict[str, Any]) -> dict[str, Any]:
    reply = await raw.request(frame)
    assert reply["type"] == "ok", reply
    return reply


async def refused(raw: Raw, frame: dict[str, Any], code: Code) -> dict[str, Any]:
    reply = await raw.request(frame)
    assert reply["type"] == "error" and reply["code"] == code, reply
    assert reply["reason"], reply
    return reply


async def head(node: Node, room: str) -> int:
    return (await node.backends.store.position(room)).head


async def events(node: Node, room: str, after: int = 0) -> list[tuple[str, str, str]]:
    """``(kind, member concerned, by)`` of the room's membership events after ``after``."""
    page = await node.backends.store.read(room, after, 500)
    out = []
    for m in page.messages:
        if m.kind != "text":
            by = json.loads(m.body)["by"] if m.body else ""
            out.append((m.kind, m.sender, by))
    return out


async def test_a_private_room_is_unlisted_and_joined_only_by_invitation(node: Node) -> None:
    """[R-ROOM-7] [R-ROOM-1] [R-SEC-9] A private room is not listed and is joined only with an invitation, which the
    join uses up; a public one is listed."""
    alice, bob = await Raw.open(node, "alice"), await Raw.open(node, "bob")
    await ok(alice, {"type": "create", "room": "plans", "kind": "private", "id": "c"})
    await ok(alice, {"type": "create", "room": "lobby", "id": "c2"})
    assert await node.service.public_rooms() == ["lobby"]
    _, listing = await api(node, "GET", "/api/rooms", "bob")
    assert listing["public"] == ["lobby"]
    before = await head(node, "plans")
    # An outsider is told there is no such room (R-SEC-63).
    await refused(bob, {"type": "join", "room": "plans", "id": "j"}, Code.UNKNOWN_ROOM)
    await refused(bob, {"type": "invite", "room": "plans", "user": "carol", "id": "i0"}, Code.UNKNOWN_ROOM)
    assert await head(node, "plans") == before  # nothing stored for refused requests
    await ok(alice, {"type": "invite", "room": "plans", "user": "bob", "id": "i"})
    await ok(alice, {"type": "invite", "room": "plans", "user": "bob", "id": "i2"})  # idempotent
    assert (await node.service.room_info("plans")).invites == ["bob"]
    await ok(bob, {"type": "join", "room": "plans", "id": "j2"})
    info = await node.service.room_info("plans")
    assert info.kind == "private" and info.members == {"alice": "owner", "bob": "member"} and info.invites == []
    page = await bob.request({"type": "history", "room": "plans", "after": 0, "id": "h"})
    kinds = [(m["kind"], m["sender"]) for m in page["messages"]]
    assert kinds == [("join", "alice"), ("invite", "bob"), ("join", "bob")]
    # The invitation was used up: after leaving, bob needs a new one.
    await ok(bob, {"type": "leave", "room": "plans", "id": "l"})
    await refused(bob, {"type": "join", "room": "plans", "id": "j3"}, Code.UNKNOWN_ROOM)
    # Inviting someone who is in already is a conflict.
    await refused(alice, {"type": "invite", "room": "plans", "user": "alice", "id": "x"}, Code.BAD_FRAME)
    await node.service.join("carol", "lobby")
    await refused(alice, {"type": "invite", "room": "lobby", "user": "carol", "id": "y"}, Code.CONFLICT)
    await alice.close()
    await bob.close()


async def test_a_kicked_member_loses_the_live_subscription_and_every_access(node: Node) -> None:
    """[R-ROOM-3] [R-ROOM-4] A kick removes the member (who may join a public room again) and ends their subscription:
    the ``kick`` message, then 4403."""
    await node.service.create_room("alice", "r")
    await node.service.join("bob", "r")
    await node.service.send("alice", "r", "c1", "before the kick")
    alice, bob = await Raw.open(node, "alice"), await Raw.open(node, "bob")
    await bob.request({"type": "subscribe", "room": "r", "after": 0, "id": "s"})
    await bob.until(lambda f: f["type"] == "live")
    await ok(alice, {"type": "kick", "room": "r", "user": "bob", "id": "k"})
    kick = await bob.until(lambda f: f["type"] == "msg" and f["kind"] != "text")
    assert kick["kind"] == "kick" and kick["sender"] == "bob" and json.loads(kick["body"]) == {"by": "alice"}
    gone = await bob.until(lambda f: f["type"] == "error")
    assert gone["code"] == Code.FORBIDDEN and gone["room"] == "r"
    before = await head(node, "r")
    await node.service.send("alice", "r", "c2", "after the kick")  # not delivered to bob
    before += 1
    for frame in (
        {"type": "send", "room": "r", "cmid": "b1", "body": "let me back", "id": "1"},
        {"type": "subscribe", "room": "r", "after": 0, "id": "2"},
        {"type": "history", "room": "r", "after": 0, "id": "3"},
        {"type": "read", "room": "r", "seq": 1, "id": "4"},
        {"type": "kick", "room": "r", "user": "alice", "id": "5"},
    ):
        await refused(bob, frame, Code.FORBIDDEN)
    status, _ = await api(node, "POST", "/api/rooms/r/messages", "bob", {"cmid": "b2", "body": "http"})
    assert status == 403
    status, _ = await api(node, "GET", "/api/rooms/r/messages?after=0", "bob")
    assert status == 403
    assert await head(node, "r") == before  # nothing stored
    assert not [f for f in bob.frames if f.get("type") == "msg" and f.get("body") == "after the kick"]
    # A kick is not a ban: bob may come back into a public room.
    await ok(bob, {"type": "join", "room": "r", "id": "j"})
    await refused(alice, {"type": "kick", "room": "r", "user": "nobody", "id": "k2"}, Code.UNKNOWN_ROOM)
    await alice.close()
    await bob.close()


async def test_a_ban_refuses_joins_and_invitations_until_unban(node: Node) -> None:
    """[R-ROOM-3] A ban removes the member and refuses their joins and invitations until ``unban``."""
    await node.service.create_room("alice", "r")
    await node.service.join("bob", "r")
    alice, bob = await Raw.open(node, "alice"), await Raw.open(node, "bob")
    await ok(alice, {"type": "ban", "room": "r", "user": "bob", "id": "b"})
    assert not await node.backends.directory.is_member("r", "bob")
    start = await head(node, "r")
    await refused(bob, {"type": "join", "room": "r", "id": "j"}, Code.FORBIDDEN)
    await refused(alice, {"type": "invite", "room": "r", "user": "bob", "id": "i"}, Code.FORBIDDEN)
    await refused(bob, {"type": "send", "room": "r", "cmid": "c", "body": "x", "id": "s"}, Code.FORBIDDEN)
    await ok(alice, {"type": "ban", "room": "r", "user": "mallory", "id": "b2"})  # a non-member, ahead of time
    await ok(alice, {"type": "ban", "room": "r", "user": "mallory", "id": "b3"})  # idempotent
    assert await head(node, "r") == start + 1
    assert (await node.service.room_info("r")).bans == ["bob", "mallory"]
    await ok(alice, {"type": "unban", "room": "r", "user": "bob", "id": "u"})
    await ok(bob, {"type": "join", "room": "r", "id": "j2"})
    assert [e[:2] for e in await events(node, "r")] == [
        ("join", "alice"),
        ("join", "bob"),
        ("ban", "bob"),
        ("ban", "mallory"),
        ("unban", "bob"),
        ("join", "bob"),
    ]
    await alice.close()
    await bob.close()


async def test_roles_decide_who_may_moderate_whom(node: Node) -> None:
    """[R-ROOM-2] [R-SEC-10] Owners and admins moderate; a kick or ban needs a higher role than the target's."""
    await node.service.create_room("alice", "r")
    for user in ("bob", "carol", "dave"):
        await node.service.join(user, "r")
    alice, bob, carol = await Raw.open(node, "alice"), await Raw.open(node, "bob"), await Raw.open(node, "carol")
    start = await head(node, "r")
    await refused(carol, {"type": "kick", "room": "r", "user": "dave", "id": "1"}, Code.FORBIDDEN)
    await refused(carol, {"type": "ban", "room": "r", "user": "dave", "id": "2"}, Code.FORBIDDEN)
    await refused(carol, {"type": "role", "room": "r", "user": "carol", "role": "admin", "id": "3"}, Code.BAD_FRAME)
    await refused(carol, {"type": "role", "room": "r", "user": "dave", "role": "admin", "id": "4"}, Code.FORBIDDEN)
    assert await head(node, "r") == start
    await ok(alice, {"type": "role", "room": "r", "user": "bob", "role": "admin", "id": "5"})
    await ok(alice, {"type": "role", "room": "r", "user": "carol", "role": "admin", "id": "6"})
    await refused(alice, {"type": "role", "room": "r", "user": "bob", "role": "owner", "id": "7"}, Code.BAD_FRAME)
    # An admin kicks members, but not the owner, not another admin, and gives no roles.
    await refused(bob, {"type": "kick", "room": "r", "user": "alice", "id": "8"}, Code.FORBIDDEN)
    await refused(bob, {"type": "kick", "room": "r", "user": "carol", "id": "9"}, Code.FORBIDDEN)
    await refused(bob, {"type": "role", "room": "r", "user": "dave", "role": "admin", "id": "10"}, Code.FORBIDDEN)
    await ok(bob, {"type": "kick", "room": "r", "user": "dave", "id": "11"})
    # The owner outranks admins; a demoted admin is a member again.
    await ok(alice, {"type": "role", "room": "r", "user": "carol", "role": "member", "id": "12"})
    await ok(bob, {"type": "kick", "room": "r", "user": "carol", "id": "13"})
    await ok(alice, {"type": "kick", "room": "r", "user": "bob", "id": "14"})
    info = await node.service.room_info("r")
    assert info.members == {"alice": "owner"}
    status, body = await api(node, "GET", "/api/rooms/r/members", "alice")
    assert status == 200 and body["members"] == [{"user": "alice", "role": "owner"}]
    roles = [(m.kind, m.sender, m.body) for m in (await node.backends.store.read("r", start, 100)).messages]
    assert [(k, s, json.loads(b)) for k, s, b in roles] == [
        ("role", "bob", {"by": "alice", "role": "admin"}),
        ("role", "carol", {"by": "alice", "role": "admin"}),
        ("kick", "dave", {"by": "bob"}),
        ("role", "carol", {"by": "alice", "role": "member"}),
        ("kick", "carol", {"by": "bob"}),
        ("kick", "bob", {"by": "alice"}),
    ]
    for raw in (alice, bob, carol):
        await raw.close()


async def test_a_direct_conversation_has_exactly_its_two_users(node: Node) -> None:
    """[R-ROOM-6] [R-ROOM-1] [R-SEC-9] A direct conversation is created by ``dm`` for its two users and nobody else
    may join it; ``create`` cannot use the ``dm:`` prefix."""
    alice, bob, carol = await Raw.open(node, "alice"), await Raw.open(node, "bob"), await Raw.open(node, "carol")
    opened = await ok(alice, {"type": "dm", "user": "bob", "id": "d"})
    assert opened["room"] == "dm:alice:bob"
    again = await ok(bob, {"type": "dm", "user": "alice", "id": "d2"})  # the same room, from either side
    assert again["room"] == "dm:alice:bob"
    assert await node.backends.directory.members("dm:alice:bob") == ["alice", "bob"]
    assert [e[:2] for e in await events(node, "dm:alice:bob")] == [("join", "alice"), ("join", "bob")]
    start = await head(node, "dm:alice:bob")
    await refused(carol, {"type": "join", "room": "dm:alice:bob", "id": "j"}, Code.UNKNOWN_ROOM)  # R-SEC-63
    await refused(carol, {"type": "create", "room": "dm:carol:dave", "id": "c"}, Code.BAD_FRAME)
    await refused(carol, {"type": "create", "room": "x", "kind": "direct", "id": "c2"}, Code.BAD_FRAME)
    await refused(alice, {"type": "invite", "room": "dm:alice:bob", "user": "carol", "id": "i"}, Code.FORBIDDEN)
    await refused(alice, {"type": "kick", "room": "dm:alice:bob", "user": "bob", "id": "k"}, Code.FORBIDDEN)
    await refused(alice, {"type": "dm", "user": "alice", "id": "self"}, Code.BAD_FRAME)
    assert await head(node, "dm:alice:bob") == start
    assert "dm:alice:bob" not in await node.service.public_rooms()
    # Leaving and coming back: only the two may.
    await ok(bob, {"type": "leave", "room": "dm:alice:bob", "id": "l"})
    await ok(bob, {"type": "join", "room": "dm:alice:bob", "id": "j2"})
    status, body = await api(node, "POST", "/api/dm", "carol", {"user": "alice"})
    assert status == 200 and body["room"] == "dm:alice:carol"
    # A dm: room from before kinds (the web page used to create them as plain rooms) is direct too.
    assert await node.backends.directory.create_room("dm:bob:dave", "bob")
    await refused(carol, {"type": "join", "room": "dm:bob:dave", "id": "old"}, Code.UNKNOWN_ROOM)
    assert (await node.service.room_info("dm:bob:dave")).kind == "direct"
    await node.service.dm("dave", "bob")
    assert await node.backends.directory.members("dm:bob:dave") == ["bob", "dave"]
    for raw in (alice, bob, carol):
        await raw.close()


async def test_rooms_per_user_are_limited(settings: Settings) -> None:
    async with serve(with_limits(settings, max_rooms_per_user=2)) as node:
        alice = await Raw.open(node, "alice")
        await ok(alice, {"type": "create", "room": "a", "id": "1"})
        await ok(alice, {"type": "create", "room": "a2", "id": "1b"})
        await ok(alice, {"type": "dm", "user": "bob", "id": "2"})
        await ok(alice, {"type": "dm", "user": "dave", "id": "2b"})
        reply = await refused(alice, {"type": "create", "room": "c", "id": "3"}, Code.TOO_MANY_ROOMS)
        assert "2 rooms" in reply["reason"]
        await node.service.create_room("bob", "b")
        await refused(alice, {"type": "join", "room": "b", "id": "4"}, Code.TOO_MANY_ROOMS)
        await refused(alice, {"type": "dm", "user": "carol", "id": "5"}, Code.TOO_MANY_ROOMS)
        assert not await node.backends.directory.room_exists("c")
        assert not await node.backends.directory.room_exists("dm:alice:carol")
        await ok(alice, {"type": "leave", "room": "a", "id": "6"})
        await ok(alice, {"type": "join", "room": "b", "id": "7"})
        await alice.close()


async def test_an_offline_member_converges_on_membership_from_the_sequence(node: Node) -> None:
    await node.service.create_room("alice", "r", "private")
    await node.service.invite("alice", "r", "carol")
    await node.service.join("carol", "r")
    await node.service.invite("alice", "r", "bob")
    await node.service.join("bob", "r")
    carol = await Raw.open(node, "carol")
    sub = await carol.request({"type": "subscribe", "room": "r", "id": "s"})
    cursor = sub["after"]
    await carol.close()
    # While carol is away:
    await node.service.invite("alice", "r", "dave")
    await node.service.join("dave", "r")
    await node.service.set_role("alice", "r", "dave", "admin")
    await node.service.kick("dave", "r", "bob")
    await node.service.ban("alice", "r", "eve")
    await node.service.leave("dave", "r")
    carol = await Raw.open(node, "carol")
    await carol.request({"type": "subscribe", "room": "r", "after": cursor, "epoch": sub["epoch"], "id": "s2"})
    seen = []
    while True:
        frame = await carol.until(lambda f: f["type"] in ("msg", "live"))
        if frame["type"] == "live":
            break
        seen.append((frame["kind"], frame["sender"]))
    assert seen == [
        ("invite", "dave"),
        ("join", "dave"),
        ("role", "dave"),
        ("kick", "bob"),
        ("ban", "eve"),
        ("leave", "dave"),
    ]
    # Replaying them gives the directory's answer.
    members = {"alice", "carol", "bob"}
    for kind, user in seen:
        if kind == "join":
            members.add(user)
        elif kind in ("leave", "kick", "ban"):
            members.discard(user)
    assert sorted(members) == await node.backends.directory.members("r")
    await carol.close()


async def test_a_kick_on_one_node_ends_the_subscription_on_another(shared: Settings) -> None:
    """[R-ROOM-4] A kick on one node ends the member's subscription on another: the ``kick`` message, then 4403."""
    async with serve(shared) as one, serve(replace(shared, data_dir=shared.data_dir + "-2")) as two:
        await one.service.create_room("alice", "r", "private")
        await one.service.invite("alice", "r", "bob")
        await one.service.join("bob", "r")
        bob = await Raw.open(two, "bob")
        await bob.request({"type": "subscribe", "room": "r", "id": "s"})
        await bob.until(lambda f: f["type"] == "live")
        alice = await Raw.open(one, "alice")
        await ok(alice, {"type": "kick", "room": "r", "user": "bob", "id": "k"})
        kick = await bob.until(lambda f: f["type"] == "msg")
        assert kick["kind"] == "kick" and kick["sender"] == "bob"
        gone = await bob.until(lambda f: f["type"] == "error")
        assert gone["code"] == Code.FORBIDDEN and gone["room"] == "r"
        ack = await alice.request({"type": "send", "room": "r", "cmid": "c", "body": "bob is gone", "id": "m"})
        assert ack["type"] == "ack"
        # Private, and bob is out without an invitation: as if it did not exist (R-SEC-63).
        await refused(bob, {"type": "history", "room": "r", "after": 0, "id": "h"}, Code.UNKNOWN_ROOM)
        await refused(bob, {"type": "join", "room": "r", "id": "j"}, Code.UNKNOWN_ROOM)
        assert not [f for f in bob.frames if f.get("body") == "bob is gone"]
        await alice.close()
        await bob.close()


async def test_repeating_a_membership_change_stores_nothing(node: Node) -> None:
    """[R-ROOM-5] Joining a room one is in, leaving a room one is not in, or repeating an invitation, ban or
    unban is answered ``ok`` and stores nothing."""
    await node.service.create_room("alice", "plans", "private")
    await node.service.create_room("alice", "lobby")
    alice, bob = await Raw.open(node, "alice"), await Raw.open(node, "bob")
    await ok(alice, {"type": "invite", "room": "plans", "user": "bob", "id": "i1"})
    await ok(alice, {"type": "ban", "room": "lobby", "user": "carol", "id": "b1"})
    await ok(bob, {"type": "join", "room": "lobby", "id": "j1"})
    plans, lobby = await head(node, "plans"), await head(node, "lobby")
    await ok(alice, {"type": "invite", "room": "plans", "user": "bob", "id": "i2"})
    await ok(alice, {"type": "ban", "room": "lobby", "user": "carol", "id": "b2"})
    await ok(bob, {"type": "join", "room": "lobby", "id": "j2"})
    await ok(bob, {"type": "leave", "room": "plans", "id": "l1"})  # invited, never joined: not a member
    assert (await head(node, "plans"), await head(node, "lobby")) == (plans, lobby)
    await ok(alice, {"type": "unban", "room": "lobby", "user": "carol", "id": "u1"})
    lobby = await head(node, "lobby")
    await ok(alice, {"type": "unban", "room": "lobby", "user": "carol", "id": "u2"})
    assert await head(node, "lobby") == lobby
    await alice.close()
    await bob.close()


async def test_a_join_racing_a_ban_never_leaves_a_banned_member(node: Node) -> None:
    """[R-SEC-12] Joins and a ban of the same user, started together, any interleaving: afterwards the
    user is banned and not a member, whichever of them won each step."""
    await node.service.create_room("alice", "arena")
    for attempt in range(10):
        user = f"racer{attempt}"
        if attempt % 2:
            await node.service.join(user, "arena")  # half the time the user is a member before the race
        results = await asyncio.gather(
            *(node.service.join(user, "arena") for _ in range(3)),
            node.service.ban("alice", "arena", user),
            *(node.service.join(user, "arena") for _ in range(3)),
            return_exceptions=True,
        )
        assert all(r is None or isinstance(r, AuthError) for r in results), results
        assert not await node.service.directory.is_member("arena", user), (attempt, results)
        with pytest.raises(AuthError):
            await node.service.join(user, "arena")
