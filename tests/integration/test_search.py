"""Full-text search on every backend: ``GET /api/search`` over the index the node's indexer keeps (SQLite FTS5 per
node, or PostgreSQL's full-text search in a PostgreSQL store's database), with membership checked when the query
runs; edits, deletions and erasures followed; a restart resumed from the index's cursors; hostile queries."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import aiohttp
import pytest

from roost.config import Settings
from roost.node import Node, serve
from roost.protocol.codes import Code

from ..conftest import with_limits
from .test_send import make_room


@pytest.fixture
def searching(settings: Settings) -> Settings:
    """New rooms are found by the indexer within 0.1 s (``search_rescan_s``), not 5; tests poll freely."""
    return with_limits(settings, search_rescan_s=0.1, searches_per_s=1e6)


async def until(check: Callable[[], Awaitable[bool]], within_s: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + within_s
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "not within the time"
        await asyncio.sleep(0.05)  # a wait helper's poll


async def ask(node: Node, credential: str, **params: Any) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {credential}"}
    query = {k: str(v) for k, v in params.items()}
    async with aiohttp.ClientSession() as http, http.get(f"{node.url}/api/search", params=query, headers=headers) as r:
        return r.status, await r.json()


async def search(node: Node, user: str, q: str, **params: Any) -> list[tuple[str, int]]:
    """The results' (room, seq), having checked they come newest first (R-SEARCH-5)."""
    status, answer = await ask(node, node.tokens.issue(user), q=q, **params)
    assert status == 200, answer
    stamps = [r["ts"] for r in answer["results"]]
    assert stamps == sorted(stamps, reverse=True), answer
    return [(r["room"], r["seq"]) for r in answer["results"]]


def finds(
    node: Node, user: str, q: str, expected: list[tuple[str, int]], **params: Any
) -> Callable[[], Awaitable[bool]]:
    """Messages of one millisecond come in the order the index got them (R-SEARCH-5): compared in any order."""

    async def check() -> bool:
        return sorted(await search(node, user, q, **params)) == sorted(expected)

    return check


def refused(answer: tuple[int, Any], code: Code) -> None:
    status, body = answer
    assert status == int(code) - 4000 and body["error"]["code"] == code, answer


async def test_a_message_is_found_by_members_of_its_room_only(searching: Settings) -> None:
    """[R-SEARCH-1] [R-SEARCH-2] A sent message is found by its room's members with a snippet and the matched words'
    offsets; not by a member of another room, not by a user in no room, not by a member who left (Roost serves no
    history to a former member), and again once they rejoin. Asking for one room is checked like a history read:
    4403 in a public room one is not in, 4404 in a private one."""
    async with serve(searching) as node:
        await make_room(node, "alice", "lobby", "bob", "carol")
        await make_room(node, "dave", "elsewhere")
        await node.service.create_room("alice", "hideout", "private")
        sent = await node.service.send("alice", "lobby", "c1", "Meet at the old   lighthouse\nat noon")
        await node.service.send("dave", "elsewhere", "c2", "no lighthouse here")
        await node.service.send("alice", "hideout", "c3", "the lighthouse key")
        seq = sent.message.seq
        await until(finds(node, "bob", "lighthouse", [("lobby", seq)]))
        status, answer = await ask(node, node.tokens.issue("bob"), q="LIGHTHOUSE noon")
        assert status == 200 and answer == {
            "results": [
                {
                    "room": "lobby",
                    "seq": seq,
                    "sender": "alice",
                    "ts": sent.message.ts,
                    "snippet": "Meet at the old lighthouse at noon",
                    "highlights": [[16, 26], [30, 34]],
                }
            ],
            "next": None,
        }
        await until(finds(node, "alice", "lighthouse", [("hideout", 2), ("lobby", seq)]))
        await until(finds(node, "dave", "lighthouse", [("elsewhere", 2)]))  # each room is indexed on its own
        assert await search(node, "mallory", "lighthouse") == []
        assert await search(node, "bob", "lighthouse", room="lobby") == [("lobby", seq)]
        refused(await ask(node, node.tokens.issue("dave"), q="lighthouse", room="lobby"), Code.FORBIDDEN)
        refused(await ask(node, node.tokens.issue("bob"), q="lighthouse", room="hideout"), Code.UNKNOWN_ROOM)
        refused(await ask(node, node.tokens.issue("bob"), q="lighthouse", room="nowhere"), Code.UNKNOWN_ROOM)
        await node.service.leave("carol", "lobby")
        assert await search(node, "carol", "lighthouse") == []
        refused(await ask(node, node.tokens.issue("carol"), q="lighthouse", room="lobby"), Code.FORBIDDEN)
        await node.service.join("carol", "lobby")
        assert await search(node, "carol", "lighthouse") == [("lobby", seq)]


async def test_edits_replace_the_text_and_deletions_and_erasures_remove_it(searching: Settings) -> None:
    """[R-SEARCH-7] An edit's new text is found and the old one no longer is; a deleted message and an erased one
    (with its edit) are found by no word they held."""
    async with serve(searching) as node:
        await make_room(node, "alice", "r", "bob")
        first = (await node.service.send("alice", "r", "c1", "the first draft")).message.seq
        gone = (await node.service.send("alice", "r", "c2", "deleted words")).message.seq
        erased = (await node.service.send("alice", "r", "c3", "erased words")).message.seq
        await node.service.edit("alice", "r", erased, "erased and edited", "c4")
        await until(finds(node, "bob", "words", [("r", gone)]))
        await node.service.edit("alice", "r", first, "the final version", "c5")
        await until(finds(node, "bob", "final", [("r", first)]))
        assert await search(node, "bob", "draft") == []
        await node.service.delete("alice", "r", gone)
        await node.service.delete("alice", "r", erased, erase=True)
        await until(finds(node, "bob", "words", []))  # the delete; the erasure may come in a later pass
        await until(finds(node, "bob", "erased", []))
        assert await search(node, "bob", "edited") == []
        assert await search(node, "bob", "final version") == [("r", first)]


async def test_a_restarted_node_resumes_from_its_cursor_and_indexes_nothing_twice(searching: Settings) -> None:
    """[R-SEARCH-7] The index keeps each room's cursor with its rows: a node that stops and starts again resumes
    there (what was sent while it was down is found, nothing is indexed again, no message is found twice)."""
    async with serve(searching) as node:
        await make_room(node, "alice", "r")
        for i in range(30):
            await node.service.send("alice", "r", f"c{i}", f"apple number {i}")
        await until(lambda: _count(node, "alice", "apple", 30))
        assert node.indexer is not None
    async with serve(searching) as node:
        for i in range(30, 40):
            await node.service.send("alice", "r", f"c{i}", f"apple number {i}")
        await until(lambda: _count(node, "alice", "apple", 40))
        assert node.indexer is not None and node.indexer.indexed <= 10
        _, answer = await ask(node, node.tokens.issue("alice"), q="apple", limit=100)
        seqs = [r["seq"] for r in answer["results"]]
        assert len(seqs) == len(set(seqs)) == 40 and answer["next"] is None


async def _count(node: Node, user: str, q: str, n: int) -> bool:
    status, answer = await ask(node, node.tokens.issue(user), q=q, limit=100)
    return status == 200 and len(answer["results"]) == n


async def test_pages_of_results_follow_next(searching: Settings) -> None:
    """[R-SEARCH-5] ``limit`` per page (default 20, at most 100), newest first; ``next`` as ``before`` gives the
    following page, until one without ``next``."""
    async with serve(searching) as node:
        await make_room(node, "alice", "r")
        seqs = [(await node.service.send("alice", "r", f"c{i}", f"pear {i}")).message.seq for i in range(45)]
        await until(lambda: _count(node, "alice", "pear", 45))
        token = node.tokens.issue("alice")
        status, page = await ask(node, token, q="pear")
        assert status == 200 and len(page["results"]) == 20 and page["next"] is not None
        got = [r["seq"] for r in page["results"]]
        status, page = await ask(node, token, q="pear", limit=1000, before=page["next"])
        assert status == 200 and page["next"] is None
        got += [r["seq"] for r in page["results"]]
        assert sorted(got) == seqs and len(got) == 45
        refused(await ask(node, token, q="pear", before=-1), Code.BAD_FRAME)
        refused(await ask(node, token, q="pear", limit="many"), Code.BAD_FRAME)


HOSTILE = [
    "NEAR(lighthouse noon, 3)",
    "body:lighthouse",
    "rid:r1 OR lighthouse",
    "{body rid} : lighthouse",
    "lighthouse) OR (1=1",
    "'; DROP TABLE docs; --",
    "' OR ''='",
    "lighthouse' & !noon",
    "lighthouse:*",
    "!!",
    '"unbalanced lighthouse',
    "lighthouse AND OR NOT",
    "\\",
    "%",
    "%%",
    "\x00",
    "\U0001d529\U0001d526\U0001d524\U0001d525\U0001d531",
    "<script>",
    "*lighthouse",
    "-lighthouse",
    "lighthouse^2",
    "ли*",
    "a*",
    "*" * 200,
    "x" * 300,
    " ".join(["w"] * 40),
]


async def test_hostile_queries_are_answered_or_refused_never_failing(searching: Settings) -> None:
    """[R-SEARCH-4] Engine syntax (FTS5 operators, column filters, NEAR, quotes), SQL and oddities are words or
    nothing: each query is answered (200) or refused with 4400, never a 500, and finds nothing it should not;
    then the node still searches."""
    async with serve(searching) as node:
        await make_room(node, "alice", "r")
        await node.service.create_room("mallory", "secret-place", "private")
        await node.service.send("mallory", "secret-place", "m1", "lighthouse noon secret")
        seq = (await node.service.send("alice", "r", "c1", "the lighthouse at noon")).message.seq
        await until(finds(node, "alice", "lighthouse", [("r", seq)]))
        token = node.tokens.issue("alice")
        for q in HOSTILE:
            status, answer = await ask(node, token, q=q)
            if status == 200:
                assert all(r["room"] == "r" for r in answer["results"]), (q, answer)
            else:
                assert status == 400 and answer["error"]["code"] == Code.BAD_FRAME, (q, answer)
        refused(await ask(node, token, q=""), Code.BAD_FRAME)
        refused(await ask(node, token, q="   "), Code.BAD_FRAME)
        status, answer = await ask(node, token, room="r")
        assert status == 400
        assert await search(node, "alice", "lighthouse noon") == [("r", seq)]


async def test_the_search_route_needs_the_rooms_read_scope(searching: Settings) -> None:
    """[R-SEARCH-1] ``GET /api/search`` takes a user's token or an API key with ``rooms:read`` (4403 for a key
    without it, 4401 without a credential); a key searches its principal's rooms."""
    async with serve(replace(searching, admins=("root",))) as node:
        await make_room(node, "bot", "r")
        seq = (await node.service.send("bot", "r", "c1", "scoped words")).message.seq
        await until(finds(node, "bot", "scoped", [("r", seq)]))
        reader = await _key(node, "bot", "rooms:read")
        writer = await _key(node, "bot", "publish")
        status, answer = await ask(node, reader, q="scoped")
        assert status == 200 and [r["seq"] for r in answer["results"]] == [seq]
        refused(await ask(node, writer, q="scoped"), Code.FORBIDDEN)
        async with aiohttp.ClientSession() as http, http.get(f"{node.url}/api/search?q=scoped") as r:
            assert r.status == 401


async def _key(node: Node, principal: str, *scopes: str) -> str:
    headers = {"Authorization": f"Bearer {node.tokens.issue('root')}"}
    body = {"principal": principal, "scopes": list(scopes)}
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{node.url}/api/admin/apikeys", json=body, headers=headers) as r,
    ):
        assert r.status == 201
        key: str = (await r.json())["key"]
        return key


async def test_searches_are_rate_limited_and_search_can_be_off(searching: Settings) -> None:
    """[R-SEARCH-9] Searches per user are a token bucket (``searches_per_s``, bursts of four times it): over it,
    4429 with Retry-After; with ``--search off`` the route answers 4403 and the node serves everything else."""
    async with serve(with_limits(searching, searches_per_s=1.0)) as node:
        await make_room(node, "alice", "r")
        token = node.tokens.issue("alice")
        for _ in range(4):
            assert (await ask(node, token, q="anything"))[0] == 200
        refused(await ask(node, token, q="anything"), Code.RATE_LIMITED)
        assert (await ask(node, node.tokens.issue("bob"), q="anything"))[0] == 200  # per user
    async with serve(replace(searching, search="off")) as node:
        assert node.search_index is None and node.indexer is None
        refused(await ask(node, node.tokens.issue("alice"), q="anything"), Code.FORBIDDEN)
        await make_room(node, "alice", "r2")
        await node.service.send("alice", "r2", "c1", "still works")


async def test_every_node_answers_and_a_shared_index_has_one_indexer_at_a_time(shared: Settings) -> None:
    """[R-SEARCH-7] Several nodes over one store: every node answers searches. With per-node indexes (Redis, NATS)
    every node indexes into its own; with the PostgreSQL store's shared index one node at a time does, the holder
    of the lease ``search-indexer``, and when it stops another takes over and indexes what comes next."""
    settings = with_limits(shared, search_rescan_s=0.1, searches_per_s=1e6)
    async with contextlib.AsyncExitStack() as first, contextlib.AsyncExitStack() as second:
        one = await first.enter_async_context(serve(settings))
        two = await second.enter_async_context(serve(replace(settings, data_dir=settings.data_dir + "-2")))
        await make_room(one, "alice", "r")
        seq = (await one.service.send("alice", "r", "c1", "shared haystack")).message.seq
        for node in (one, two):
            await until(finds(node, "alice", "haystack", [("r", seq)]))
        assert one.indexer is not None and two.indexer is not None
        if not one.indexer.index.shared:
            assert one.indexer.leading and two.indexer.leading
            return
        await until(lambda: _leaders(one, two, 1))
        leader, survivor = (one, two) if one.indexer.leading else (two, one)
        await (first if leader is one else second).aclose()  # the leader stops: its lease is released
        seq = (await survivor.service.send("alice", "r", "c2", "later haystack")).message.seq
        await until(finds(survivor, "alice", "later", [("r", seq)]), within_s=20)
        # The indexer process tells its node it leads in its next status line (within 0.1 s of the change).
        await until(lambda: _leads(survivor))


async def _leads(node: Node) -> bool:
    return node.indexer is not None and node.indexer.leading


async def _leaders(one: Node, two: Node, n: int) -> bool:
    return sum(1 for node in (one, two) if node.indexer is not None and node.indexer.leading) == n
