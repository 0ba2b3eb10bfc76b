"""Who may delete whose message: the sender, a room moderator of a higher role, a server admin (admin API)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import aiohttp

from roost.config import Settings
from roost.node import Node, serve
from roost.protocol.codes import Code

from ..integration.wsutil import Raw


async def http_delete(node: Node, path: str, user: str) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {node.tokens.issue(user)}"}
    async with aiohttp.ClientSession() as http, http.delete(node.url + path, headers=headers) as r:
        return r.status, await r.json()


async def test_a_moderator_deletes_only_messages_of_lower_roles(settings: Settings) -> None:
    """[R-SEC-64] In a room owned by alice with admins carol and erin and member bob: an admin deletes a member's
    message but not the owner's nor another admin's (4403 over WebSocket and HTTP, nothing stored); a member deletes
    only their own; the owner deletes an admin's. A server administrator deletes the owner's message through
    ``DELETE /api/admin/rooms/{room}/messages/{seq}`` without being a member; others get 4403 there."""
    async with serve(replace(settings, admins=("root",))) as node:
        service = node.service
        await service.create_room("alice", "r", "private")
        for user in ("bob", "carol", "erin"):
            await service.invite("alice", "r", user)
            await service.join(user, "r")
        await service.set_role("alice", "r", "carol", "admin")
        await service.set_role("alice", "r", "erin", "admin")
        seq = {u: (await service.send(u, "r", f"{u}-1", f"{u} says")).message.seq for u in ("alice", "bob", "erin")}
        store = node.backends.store
        head = (await store.position("r")).head

        carol = await Raw.open(node, "carol")
        bob = await Raw.open(node, "bob")
        for raw, target in ((carol, "alice"), (carol, "erin"), (bob, "erin")):
            reply = await raw.request({"type": "delete", "room": "r", "target": seq[target], "id": target})
            assert reply["type"] == "error" and reply["code"] == Code.FORBIDDEN, (target, reply)
        status, body = await http_delete(node, f"/api/rooms/r/messages/{seq['alice']}", "carol")
        assert status == 403 and body["error"]["code"] == Code.FORBIDDEN
        status, body = await http_delete(node, f"/api/admin/rooms/r/messages/{seq['alice']}", "carol")
        assert status == 403 and body["error"]["code"] == Code.FORBIDDEN
        assert (await store.position("r")).head == head  # nothing stored

        reply = await carol.request({"type": "delete", "room": "r", "target": seq["bob"], "id": "ok"})
        assert reply["type"] == "ack"
        status, body = await http_delete(node, f"/api/rooms/r/messages/{seq['erin']}", "alice")
        assert status == 200 and body["message"]["sender"] == "alice"
        status, body = await http_delete(node, f"/api/admin/rooms/r/messages/{seq['alice']}", "root")
        assert status == 200 and body["message"]["kind"] == "delete" and body["message"]["sender"] == "root"
        history = await service.history("alice", "r", after=0, limit=100)
        assert {m.seq for m in history.page.messages if m.kind == "deleted"} == set(seq.values())
        await carol.close()
        await bob.close()
