"""Authorization of rooms: outsiders and removed members are refused with a stable code, and nothing is
stored; the admin HTTP API is for administrators only."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import aiohttp

from roost.config import Settings
from roost.node import Node, serve
from roost.protocol.codes import Code

from ..integration.wsutil import Raw


async def call(node: Node, method: str, path: str, token: str | None, body: Any = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as http, http.request(method, node.url + path, json=body, headers=headers) as r:
        return r.status, await r.json()


async def snapshot(node: Node, room: str) -> tuple[int, dict[str, int], list[str]]:
    """What a refused request must not change: the room's head, read positions and members."""
    directory = node.backends.directory
    return (await node.backends.store.position(room)).head, await directory.readers(room), await directory.members(room)


async def test_outsiders_and_removed_members_are_refused_and_nothing_is_stored(embedded_node: Node) -> None:
    """[R-SEC-3] [R-ROOM-8] Outsiders, kicked and banned users: every read, subscribe, send, receipt, typing
    signal and moderation is refused over WebSocket and HTTP, and nothing is stored (with 4404, "no room", since
    the room is private: R-SEC-63)."""
    node = embedded_node
    await node.service.create_room("alice", "private-room", "private")
    await node.service.invite("alice", "private-room", "kicked")
    await node.service.join("kicked", "private-room")
    await node.service.invite("alice", "private-room", "banned")
    await node.service.join("banned", "private-room")
    await node.service.send("alice", "private-room", "c", "secret")
    await node.service.kick("alice", "private-room", "kicked")
    await node.service.ban("alice", "private-room", "banned")
    before = await snapshot(node, "private-room")
    for user in ("mallory", "kicked", "banned"):
        raw = await Raw.open(node, user)
        for frame in (
            {"type": "subscribe", "room": "private-room", "after": 0, "id": "1"},
            {"type": "subscribe", "room": "private-room", "id": "2"},
            {"type": "history", "room": "private-room", "after": 0, "id": "3"},
            {"type": "history", "room": "private-room", "before": 100, "id": "4"},
            {"type": "send", "room": "private-room", "cmid": "x", "body": "let me in", "id": "5"},
            {"type": "read", "room": "private-room", "seq": 3, "id": "6"},
            {"type": "typing", "room": "private-room", "id": "6t"},
            {"type": "join", "room": "private-room", "id": "7"},
            {"type": "invite", "room": "private-room", "user": user + "2", "id": "8"},
            {"type": "kick", "room": "private-room", "user": "alice", "id": "9"},
            {"type": "unban", "room": "private-room", "user": "zed", "id": "10"},
        ):
            reply = await raw.request(frame)
            assert reply["type"] == "error" and reply["code"] == Code.UNKNOWN_ROOM, (user, frame, reply)
        assert not [f for f in raw.frames if f.get("type") == "msg"]
        await raw.close()
        token = node.tokens.issue(user)
        for method, path, body in (
            ("GET", "/api/rooms/private-room/messages?after=0", None),
            ("POST", "/api/rooms/private-room/messages", {"cmid": "h", "body": "let me in"}),
            ("POST", "/api/rooms/private-room/read", {"seq": 3}),
            ("GET", "/api/rooms/private-room/receipts", None),
            ("GET", "/api/rooms/private-room/members", None),
            ("POST", "/api/rooms/private-room/join", None),
        ):
            status, reply = await call(node, method, path, token, body)
            assert status == 404 and reply["error"]["code"] == Code.UNKNOWN_ROOM, (user, path, reply)
        _, synced = await call(node, "POST", "/api/sync", token, {"rooms": {"private-room": 0}})
        assert synced["rooms"]["private-room"]["error"]["code"] == Code.UNKNOWN_ROOM
    assert await snapshot(node, "private-room") == before


OUTSIDER_FRAMES: list[dict[str, Any]] = [
    {"type": "subscribe", "room": "ROOM", "after": 0},
    {"type": "history", "room": "ROOM", "after": 0},
    {"type": "send", "room": "ROOM", "cmid": "x", "body": "hello?"},
    {"type": "read", "room": "ROOM", "seq": 1},
    {"type": "join", "room": "ROOM"},
    {"type": "leave", "room": "ROOM"},
    {"type": "invite", "room": "ROOM", "user": "zed"},
    {"type": "kick", "room": "ROOM", "user": "alice"},
    {"type": "ban", "room": "ROOM", "user": "alice"},
    {"type": "role", "room": "ROOM", "user": "alice", "role": "admin"},
    {"type": "edit", "room": "ROOM", "target": 2, "cmid": "e", "body": "x"},
    {"type": "delete", "room": "ROOM", "target": 2},
    {"type": "react", "room": "ROOM", "target": 2, "emoji": "x"},
]
OUTSIDER_ROUTES: list[tuple[str, str, Any]] = [
    ("GET", "/api/rooms/ROOM/messages?after=0", None),
    ("POST", "/api/rooms/ROOM/messages", {"cmid": "h", "body": "hello?"}),
    ("POST", "/api/rooms/ROOM/read", {"seq": 1}),
    ("GET", "/api/rooms/ROOM/receipts", None),
    ("GET", "/api/rooms/ROOM/members", None),
    ("POST", "/api/rooms/ROOM/join", None),
    ("POST", "/api/rooms/ROOM/leave", None),
    ("POST", "/api/rooms/ROOM/invite", {"user": "zed"}),
    ("POST", "/api/rooms/ROOM/kick", {"user": "alice"}),
    ("POST", "/api/rooms/ROOM/role", {"user": "alice", "role": "admin"}),
    ("DELETE", "/api/rooms/ROOM/messages/2", None),
    ("POST", "/api/rooms/ROOM/messages/2/reactions", {"emoji": "x"}),
]


async def outsider_answers(node: Node, user: str, room: str) -> list[Any]:
    """Every answer ``user`` gets for ``room`` over WebSocket frames and HTTP routes, with the name masked."""
    answers: list[Any] = []
    raw = await Raw.open(node, user)
    for n, template in enumerate(OUTSIDER_FRAMES):
        frame = {**template, "room": room, "id": str(n)}
        reply = await raw.request(frame)
        answers.append({k: v for k, v in reply.items() if k not in ("ref", "room")})
    await raw.close()
    token = node.tokens.issue(user)
    for method, path, body in OUTSIDER_ROUTES:
        answers.append(await call(node, method, path.replace("ROOM", room), token, body))
    answers.append(await call(node, "POST", "/api/sync", token, {"rooms": {room: 0}}))
    return json.loads(json.dumps(answers).replace(room, "ROOM"))


async def test_an_outsider_cannot_tell_a_private_room_from_none(embedded_node: Node) -> None:
    """[R-SEC-63] To a user who is not a member (nor invited), a private room that exists, a direct conversation of two
    other users, and a room that does not exist get the very same answers, 4404 "no room", over every WebSocket frame
    and HTTP route; a public room says 4403 (its existence is public)."""
    node = embedded_node
    await node.service.create_room("alice", "secret", "private")
    await node.service.send("alice", "secret", "c1", "plans")
    await node.service.dm("alice", "bob")
    await node.service.send("alice", "dm:alice:bob", "c2", "psst")
    await node.service.create_room("alice", "lobby")
    await node.service.send("alice", "lobby", "c3", "hi")
    absent = await outsider_answers(node, "mallory", "nothing-here")
    assert all(a["code"] == Code.UNKNOWN_ROOM for a in absent[: len(OUTSIDER_FRAMES)]), absent
    assert all(a[0] == 404 for a in absent[len(OUTSIDER_FRAMES) : -1]), absent
    assert await outsider_answers(node, "mallory", "secret") == absent
    assert await outsider_answers(node, "mallory", "dm:alice:bob") == absent
    public = await outsider_answers(node, "mallory", "lobby")
    assert public[0]["code"] == Code.FORBIDDEN and public != absent
    assert [m.body for m in (await node.backends.store.read("secret", 0, 10)).messages][-1] == "plans"


async def test_the_admin_api_needs_an_administrator(embedded_settings: Settings) -> None:
    """[R-HTTP-4] [R-SEC-8] The admin API answers a token with the ``admin`` role, or a user named by ``--admin``:
    every room of every kind with member counts, a room's members and bans, ban and unban anywhere; anyone else
    gets 403/4403, no valid token 401/4401."""
    async with serve(replace(embedded_settings, admins=("root",))) as node:
        await node.service.create_room("alice", "lobby")
        await node.service.join("bob", "lobby")
        await node.service.create_room("alice", "plans", "private")
        await node.service.dm("alice", "bob")
        alice = node.tokens.issue("alice")  # the owner of rooms, not an administrator
        for method, path, body in (
            ("GET", "/api/admin/rooms", None),
            ("GET", "/api/admin/rooms/lobby", None),
            ("POST", "/api/admin/rooms/lobby/bans", {"user": "bob"}),
            ("DELETE", "/api/admin/rooms/lobby/bans/bob", None),
            ("DELETE", "/api/admin/rooms/lobby/messages/1", None),
        ):
            status, reply = await call(node, method, path, alice, body)
            assert status == 403 and reply["error"]["code"] == Code.FORBIDDEN, reply
            status, reply = await call(node, method, path, None, body)
            assert status == 401 and reply["error"]["code"] == Code.UNAUTHORIZED, reply
            forged = node.tokens.issue("alice", roles=["admin"])[:-4] + "AAAA"
            status, _ = await call(node, method, path, forged, body)
            assert status == 401
        assert await node.backends.directory.is_member("lobby", "bob")

        admin = node.tokens.issue("ops", roles=["admin"])  # by the token's roles claim
        status, listing = await call(node, "GET", "/api/admin/rooms", admin)
        assert status == 200 and listing["rooms"] == [
            {"room": "dm:alice:bob", "kind": "direct", "owner": "", "members": 2},
            {"room": "lobby", "kind": "public", "owner": "alice", "members": 2},
            {"room": "plans", "kind": "private", "owner": "alice", "members": 1},
        ]
        status, room = await call(node, "GET", "/api/admin/rooms/lobby", admin)
        assert status == 200 and room["members"] == [
            {"user": "alice", "role": "owner"},
            {"user": "bob", "role": "member"},
        ]
        status, reply = await call(node, "POST", "/api/admin/rooms/lobby/bans", admin, {"user": "bob"})
        assert status == 200 and reply["banned"] is True
        assert not await node.backends.directory.is_member("lobby", "bob")
        ban = (await node.backends.store.read("lobby", 0, 10)).messages[-1]
        assert ban.kind == "ban" and ban.sender == "bob" and ban.body == '{"by":"ops"}'
        status, reply = await call(node, "POST", "/api/rooms/lobby/join", node.tokens.issue("bob"))
        assert status == 403
        status, _ = await call(node, "GET", "/api/admin/rooms/nowhere", admin)
        assert status == 404

        root = node.tokens.issue("root")  # named by --admin, with a plain token
        status, room = await call(node, "GET", "/api/admin/rooms/lobby", root)
        assert status == 200 and room["bans"] == ["bob"]
        status, reply = await call(node, "DELETE", "/api/admin/rooms/lobby/bans/bob", root)
        assert status == 200 and reply["banned"] is False
        status, _ = await call(node, "POST", "/api/rooms/lobby/join", node.tokens.issue("bob"))
        assert status == 200


async def test_an_administrator_removes_a_message_as_a_tombstone(embedded_settings: Settings) -> None:
    """[R-HTTP-4] ``DELETE /api/admin/rooms/{room}/messages/{seq}`` stores a ``delete`` by the administrator,
    served as a tombstone; a retry returns the same delete; a missing message is 404/4404."""
    async with serve(replace(embedded_settings, admins=("root",))) as node:
        await node.service.create_room("alice", "lobby")
        await node.service.join("bob", "lobby")
        spam = (await node.service.send("bob", "lobby", "s1", "buy now")).message
        admin = node.tokens.issue("ops", roles=["admin"])
        status, reply = await call(node, "DELETE", f"/api/admin/rooms/lobby/messages/{spam.seq}", admin)
        assert status == 200, reply
        delete = (await node.backends.store.read("lobby", spam.seq, 1)).messages[0]
        assert delete.kind == "delete" and delete.sender == "ops"
        # Every read path now serves the message as a tombstone.
        status, page = await call(node, "GET", "/api/rooms/lobby/messages?after=0", node.tokens.issue("alice"))
        served = {m["seq"]: m for m in page["messages"]}
        assert served[spam.seq]["kind"] == "deleted" and served[spam.seq]["body"] == ""
        # A retry is answered with the same delete; a message that does not exist is 4404.
        status, again = await call(node, "DELETE", f"/api/admin/rooms/lobby/messages/{spam.seq}", admin)
        assert status == 200 and again["duplicate"] is True and again["message"]["seq"] == delete.seq
        status, reply = await call(node, "DELETE", "/api/admin/rooms/lobby/messages/999", admin)
        assert status == 404 and reply["error"]["code"] == Code.UNKNOWN_ROOM
