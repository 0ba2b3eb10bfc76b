"""Contract point 6: history after/before a seq with a limit, the seed's since_ts, multi-room sync."""

from __future__ import annotations

import time
from typing import Any

import aiohttp

from roost.node import Node
from roost.protocol.codes import Code

from .test_send import make_room


async def api(node: Node, method: str, path: str, user: str | None, body: Any = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {node.tokens.issue(user)}"} if user else {}
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, node.url + path, json=body, headers=headers) as resp,
    ):
        return resp.status, await resp.json()


async def test_history_after_before_and_limit(node: Node) -> None:
    """[R-HIST-1] ``after``: the oldest page above it; ``before``: the newest below it; neither: the newest ``limit``
    messages."""
    await make_room(node, "alice", "r")
    for i in range(30):
        await node.service.send("alice", "r", f"c{i}", str(i))
    status, page = await api(node, "GET", "/api/rooms/r/messages?after=5&limit=10", "alice")
    assert status == 200 and [m["seq"] for m in page["messages"]] == list(range(6, 16)) and page["has_more"]
    _, page = await api(node, "GET", "/api/rooms/r/messages?after=25&limit=10", "alice")
    assert [m["seq"] for m in page["messages"]] == list(range(26, 32)) and not page["has_more"]
    _, page = await api(node, "GET", "/api/rooms/r/messages?before=11&limit=4", "alice")
    assert [m["seq"] for m in page["messages"]] == [7, 8, 9, 10] and page["has_more"]
    _, page = await api(node, "GET", "/api/rooms/r/messages?before=3&limit=4", "alice")
    assert [m["seq"] for m in page["messages"]] == [1, 2] and not page["has_more"]
    _, page = await api(node, "GET", "/api/rooms/r/messages?limit=3", "alice")
    assert [m["seq"] for m in page["messages"]] == [29, 30, 31] and page["has_more"]
    assert page["head"] == 31 and page["first"] == 1 and page["epoch"]


async def test_paging_backwards_visits_every_message_once(node: Node) -> None:
    await make_room(node, "alice", "r")
    for i in range(57):
        await node.service.send("alice", "r", f"c{i}", str(i))
    seen: list[int] = []
    before = None
    while True:
        query = f"?limit=10&before={before}" if before else "?limit=10"
        _, page = await api(node, "GET", "/api/rooms/r/messages" + query, "alice")
        seen = [m["seq"] for m in page["messages"]] + seen
        if not page["has_more"]:
            break
        before = page["messages"][0]["seq"]
    assert seen == list(range(1, 59))


async def test_since_ts_is_accepted_for_compatibility(node: Node) -> None:
    await make_room(node, "alice", "r")
    await node.service.send("alice", "r", "old", "old")
    time.sleep(0.01)  # the subject: a millisecond clock moves between the two sends and the cut
    cut = time.time_ns() // 1_000_000
    time.sleep(0.01)  # the subject: likewise
    await node.service.send("alice", "r", "new", "new")
    _, page = await api(node, "GET", f"/api/rooms/r/messages?since_ts={cut}", "alice")
    assert [m["body"] for m in page["messages"]] == ["new"]


async def test_multi_room_sync_in_one_call(node: Node) -> None:
    """[R-HTTP-2] ``POST /api/sync`` pages several rooms at once; a room that fails is an ``error`` entry, not a failed
    request."""
    await make_room(node, "alice", "a")
    await make_room(node, "alice", "b")
    await make_room(node, "bob", "c")
    for i in range(5):
        await node.service.send("alice", "a", f"a{i}", f"a{i}")
        await node.service.send("alice", "b", f"b{i}", f"b{i}")
    status, out = await api(node, "POST", "/api/sync", "alice", {"rooms": {"a": 3, "b": 0, "c": 0}, "limit": 4})
    assert status == 200
    rooms = out["rooms"]
    assert [m["seq"] for m in rooms["a"]["messages"]] == [4, 5, 6] and rooms["a"]["has_more"] is False
    assert [m["seq"] for m in rooms["b"]["messages"]] == [1, 2, 3, 4] and rooms["b"]["has_more"] is True
    assert rooms["c"]["error"]["code"] == Code.FORBIDDEN


async def test_http_send_is_idempotent_and_errors_carry_codes(node: Node) -> None:
    """[R-HTTP-1] [R-CODE-1] HTTP errors are ``{"error": {"code", "reason"}}`` with the status ``code - 4000``."""
    await make_room(node, "alice", "r")
    status, first = await api(node, "POST", "/api/rooms/r/messages", "alice", {"cmid": "h1", "body": "via http"})
    assert status == 201 and first["message"]["seq"] == 2 and first["duplicate"] is False
    status, again = await api(node, "POST", "/api/rooms/r/messages", "alice", {"cmid": "h1", "body": "via http"})
    assert status == 200 and again["message"]["seq"] == 2 and again["duplicate"] is True
    status, err = await api(node, "POST", "/api/rooms/r/messages", "mallory", {"cmid": "m", "body": "x"})
    assert status == 403 and err["error"]["code"] == Code.FORBIDDEN
    status, err = await api(node, "GET", "/api/rooms/r/messages", None)
    assert status == 401 and err["error"]["code"] == Code.UNAUTHORIZED
    status, err = await api(node, "GET", "/api/rooms/nope/messages", "alice")
    assert status == 404 and err["error"]["code"] == Code.UNKNOWN_ROOM
    status, err = await api(node, "GET", "/api/rooms/r/messages?after=x", "alice")
    assert status == 400 and err["error"]["code"] == Code.BAD_FRAME


async def test_health_and_login(node: Node) -> None:
    status, body = await api(node, "GET", "/healthz", None)
    assert status == 200 and body == {"status": "ok"}
    status, body = await api(node, "POST", "/api/login", None, {"name": "carol"})
    assert status == 200 and node.tokens.verify(body["token"])[0] == "carol"
    status, body = await api(node, "POST", "/api/login", None, {"name": "bad name!"})
    assert status == 400
