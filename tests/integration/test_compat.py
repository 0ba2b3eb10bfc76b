"""The seed's own catch-up call, ``GET /api/messages?room_id=...&last_sync_timestamp=...`` (docs/protocol.md
section 15), on every engine: the room's messages stamped at or after that time, oldest first, paged with
``has_more`` and ``after``, members only. It used to be ignored (200 and the newest page)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp

from roost.node import Node

from .test_send import make_room


async def _get(node: Node, user: str, path: str) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {node.tokens.issue(user)}"}
    async with aiohttp.ClientSession() as http, http.get(node.url + path, headers=headers) as resp:
        return resp.status, await resp.json()


async def test_last_sync_timestamp_returns_what_was_stored_since_oldest_first_paged(node: Node) -> None:
    """[R-COMPAT-1] Three messages before the sync time, three after: the seed's call returns the later
    three, oldest first, in pages that continue with ``after``; the room path takes the same parameter."""
    await make_room(node, "alice", "r", "bob")
    for i in range(3):
        await node.service.send("alice", "r", f"old{i}", f"old {i}")
    await asyncio.sleep(0.05)  # the subject: the clock moves past the old messages
    synced_at = int(time.time() * 1000)
    await asyncio.sleep(0.05)  # the subject: and past the sync time
    new = [(await node.service.send("alice", "r", f"new{i}", f"new {i}")).message for i in range(3)]
    status, page = await _get(node, "bob", f"/api/messages?room_id=r&last_sync_timestamp={synced_at}&limit=2")
    assert status == 200, page
    assert [m["body"] for m in page["messages"]] == ["new 0", "new 1"] and page["has_more"] is True
    status, rest = await _get(node, "bob", f"/api/messages?room_id=r&after={page['messages'][-1]['seq']}")
    assert status == 200 and [m["body"] for m in rest["messages"]] == ["new 2"] and rest["has_more"] is False
    status, same = await _get(node, "bob", f"/api/rooms/r/messages?last_sync_timestamp={synced_at}")
    assert status == 200 and [m["seq"] for m in same["messages"]] == [m.seq for m in new]
    # "At or after": a message stamped exactly at the time comes again (drop it by seq).
    status, again = await _get(node, "bob", f"/api/messages?room_id=r&last_sync_timestamp={new[1].ts}")
    seqs = [m["seq"] for m in again["messages"]]
    assert seqs[-2:] == [new[1].seq, new[2].seq] and seqs[0] >= new[0].seq


async def test_last_sync_timestamp_is_checked_like_every_read(node: Node) -> None:
    """[R-COMPAT-1] Membership is checked (403), an unknown room is 404, and the call is refused with 400
    without ``room_id``, with a cursor as well, or with both names of the time."""
    await make_room(node, "alice", "r")
    assert (await _get(node, "mallory", "/api/messages?room_id=r&last_sync_timestamp=0"))[0] == 403
    assert (await _get(node, "alice", "/api/messages?room_id=nope&last_sync_timestamp=0"))[0] == 404
    assert (await _get(node, "alice", "/api/messages?last_sync_timestamp=0"))[0] == 400
    assert (await _get(node, "alice", "/api/messages?room_id=r&last_sync_timestamp=0&after=1"))[0] == 400
    assert (await _get(node, "alice", "/api/messages?room_id=r&last_sync_timestamp=0&since_ts=0"))[0] == 400
    status, everything = await _get(node, "alice", "/api/messages?room_id=r&last_sync_timestamp=0")
    assert status == 200 and [m["seq"] for m in everything["messages"]] == [1]
