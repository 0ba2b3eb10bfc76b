"""Large reads (issue #17, point 5): rooms full of messages at the documented size limit, read by history,
catch-up and ``POST /api/sync``, on the embedded store and on Redis.

Before pages were bounded by bytes, a ``history`` page of 500 messages of 16 KiB (both documented limits)
was one frame of over 8 MB: it arrived, then the connection was closed with 4508 (the outbox holds 4 MiB);
a catch-up queued 8 MB per page for each connection; one sync over 40 such rooms was a 163 MB answer.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import aiohttp
import pytest

from roost.client import connect
from roost.client.rooms import GAP_PAGE
from roost.config import Limits, Settings
from roost.gateway.outbox import Outbox
from roost.node import Node, serve
from roost.protocol.types import Message

from ..backends import Backend, cleanup, make
from ..scripted_peer import dropping_relay
from .test_send import make_room
from .wsutil import Raw

BODY = "x" * (16 * 1024)
"""A body of the documented maximum, ``max_body_bytes``."""
PAGE = Limits().max_page_bytes
ONE_MESSAGE = 17 * 1024
"""More than one ``msg`` object of a 16 KiB body of plain characters (body plus fields and names)."""


@pytest.fixture(params=["embedded", "redis"])
async def big_node(request: pytest.FixtureRequest, embedded_settings: Settings) -> AsyncIterator[Node]:
    """A node with the default read limits, on the embedded store or Redis. Sends are unthrottled to fill rooms
    fast, and so are frame budgets: these tests ask for many 500-message pages at once to load the byte
    bounds and the pacing, which a budget would refuse with 4429 first (R-RATE-40..46 test that; the SDK's
    gap repair asks 100 at a time and waits the 4429's ``retry_after_s``)."""
    settings = replace(
        embedded_settings,
        limits=replace(
            embedded_settings.limits, frame_burst=10**6, frames_per_s=1e6, user_frame_burst=10**6, user_frames_per_s=1e6
        ),
    )
    backend: Backend | None = None
    if request.param != "embedded":
        backend = make(request.param)
        settings = Settings(
            port=0, data_dir=settings.data_dir, limits=settings.limits, store=backend.store, bus=backend.bus
        )
    try:
        async with serve(settings) as node:
            yield node
    finally:
        if backend is not None:
            await cleanup(backend)


async def fill(node: Node, room: str, count: int, body: str = BODY, start: int = 0) -> None:
    for first in range(start, start + count, 100):
        last = min(first + 100, start + count)
        await asyncio.gather(*(node.service.send("alice", room, f"{room}-{i}", body) for i in range(first, last)))


def _size(messages: list[dict[str, Any]]) -> int:
    """The bytes of the messages as the server wrote them (compact JSON, UTF-8)."""
    return sum(len(json.dumps(m, separators=(",", ":"), ensure_ascii=False).encode()) for m in messages)


async def test_a_max_size_history_page_arrives_paged_by_bytes_and_the_client_stays(big_node: Node) -> None:
    """[R-HIST-50] [R-LIMIT-50] ``history`` with ``limit: 500`` in a room of 500 messages of 16 KiB: each page's
    messages total at most 256 KiB (plus at most one), ``has_more`` leads on, and following it forwards
    and backwards reads every message once, in order; the connection is still open afterwards (it was
    closed with 4508 after the first 8 MB page)."""
    node = big_node
    await make_room(node, "alice", "r", "bob")
    await fill(node, "r", 500)
    head = 502
    bob = await Raw.open(node, "bob")
    seqs: list[int] = []
    after, pages = 0, 0
    while True:
        page = await bob.request({"type": "history", "room": "r", "after": after, "limit": 500, "id": f"a{after}"})
        assert page["type"] == "history", page
        assert 1 <= len(page["messages"]) < 500 and _size(page["messages"]) <= PAGE + ONE_MESSAGE
        seqs += [m["seq"] for m in page["messages"]]
        pages += 1
        after = page["messages"][-1]["seq"]
        if not page["has_more"]:
            break
    assert seqs == list(range(1, head + 1)) and pages >= 30
    back: list[int] = []
    frame: dict[str, Any] = {"type": "history", "room": "r", "limit": 500}
    while True:
        page = await bob.request({**frame, "id": f"b{len(back)}"})
        assert _size(page["messages"]) <= PAGE + ONE_MESSAGE
        back = [m["seq"] for m in page["messages"]] + back
        if not page["has_more"]:
            break
        frame["before"] = page["messages"][0]["seq"]
    assert back == list(range(1, head + 1))
    assert (await bob.request({"type": "ping", "id": "p"}))["type"] == "pong"
    assert not bob.ws.closed
    await bob.close()
    # The same bound over HTTP.
    async with aiohttp.ClientSession() as http:
        headers = {"Authorization": f"Bearer {node.tokens.issue('bob')}"}
        async with http.get(f"{node.url}/api/rooms/r/messages?after=0&limit=500", headers=headers) as resp:
            raw = await resp.read()
    page = json.loads(raw)
    assert page["has_more"] and 1 <= len(page["messages"]) < 500 and len(raw) <= PAGE + ONE_MESSAGE + 1024


async def test_history_pages_asked_for_all_at_once_never_make_a_slow_consumer(big_node: Node) -> None:
    """[R-HIST-51] Twenty ``history`` requests of 500 messages of 16 KiB sent at once (5 MB of replies, more than
    the 4 MiB outbox) are answered one page at a time, as the client reads: all twenty arrive and the
    connection stays open."""
    node = big_node
    await make_room(node, "alice", "r", "bob")
    await fill(node, "r", 500)
    bob = await Raw.open(node, "bob")
    for i in range(20):
        await bob.send({"type": "history", "room": "r", "after": 20 * i, "limit": 500, "id": f"h{i}"})
    await bob.send({"type": "ping", "id": "p"})
    got: dict[str, dict[str, Any]] = {}
    while len(got) < 21:
        frame = await bob.recv(timeout=20)
        assert frame["type"] in ("history", "pong"), frame
        got[frame["ref"]] = frame
    for i in range(20):
        page = got[f"h{i}"]
        assert page["messages"][0]["seq"] == 20 * i + 1 and page["has_more"]
        assert _size(page["messages"]) <= PAGE + ONE_MESSAGE
    assert not bob.ws.closed
    await bob.close()


class _OutboxHighWater:
    """The most bytes any connection's outbox held at once (patched into ``Outbox.push``)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.most = 0
        real = Outbox.push

        def push(outbox: Outbox, data: bytes, paced: bool = False) -> None:
            real(outbox, data, paced)
            self.most = max(self.most, outbox._bytes)

        monkeypatch.setattr(Outbox, "push", push)


async def test_catch_up_of_a_room_of_16_kib_messages_completes_without_4508(
    big_node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    """[R-SUB-50] A subscription from 0 in a room of 1,000 messages of 16 KiB (16 MB), by a client that reads
    normally, gets every message once, in order, then ``live``, then live messages of 16 KiB, and stays
    connected; the outbox never held more than about one page (256 KiB and one message) of it (it was 8 MB
    per page of 500)."""
    node = big_node
    await make_room(node, "alice", "r", "bob")
    await fill(node, "r", 1000)
    high = _OutboxHighWater(monkeypatch)
    bob = await Raw.open(node, "bob")
    await bob.send({"type": "subscribe", "room": "r", "after": 0, "id": "s"})
    seqs: list[int] = []
    while True:
        frame = await bob.recv(timeout=20)
        if frame["type"] == "live":
            break
        if frame["type"] == "msg":
            seqs.append(frame["seq"])
            if len(seqs) % 100 == 0:
                await asyncio.sleep(0.01)  # the subject: a client that reads, at its own pace
    assert seqs == list(range(1, 1003))
    assert high.most <= PAGE + ONE_MESSAGE + 4096, high.most
    await fill(node, "r", 50, start=1000)
    while len(seqs) < 1052:
        frame = await bob.recv(timeout=20)
        if frame["type"] == "msg":
            seqs.append(frame["seq"])
    assert seqs == list(range(1, 1053))
    assert (await bob.request({"type": "ping", "id": "p"}))["type"] == "pong"
    await bob.close()


async def test_rooms_catching_up_at_once_queue_one_page_at_a_time(
    big_node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    """[R-SUB-50] [R-LIMIT-50] Six rooms of 100 messages of 16 KiB followed at once on one connection, with
    ``history`` reads of 500 among them: the rooms and the reads take turns, so the connection's outbox never
    holds more than about one page (each room's first page was queued at once before)."""
    node = big_node
    rooms = [f"m{i}" for i in range(6)]
    for room in rooms:
        await make_room(node, "alice", room, "bob")
        await fill(node, room, 100)
    high = _OutboxHighWater(monkeypatch)
    bob = await Raw.open(node, "bob")
    for room in rooms:
        await bob.send({"type": "subscribe", "room": room, "after": 0, "id": f"s-{room}"})
        await bob.send({"type": "history", "room": room, "after": 0, "limit": 500, "id": f"h-{room}"})
    seqs: dict[str, list[int]] = {room: [] for room in rooms}
    live: set[str] = set()
    pages: set[str] = set()
    while len(live) < len(rooms) or len(pages) < len(rooms):
        frame = await bob.recv(timeout=20)
        if frame["type"] == "msg":
            seqs[frame["room"]].append(frame["seq"])
        elif frame["type"] == "live":
            live.add(frame["room"])
        elif frame["type"] == "history":
            pages.add(frame["room"])
    assert seqs == {room: list(range(1, 103)) for room in rooms}
    assert high.most <= PAGE + ONE_MESSAGE + 8192, high.most
    assert (await bob.request({"type": "ping", "id": "p"}))["type"] == "pong"
    await bob.close()


async def _sync(node: Node, user: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as http:
        headers = {"Authorization": f"Bearer {node.tokens.issue(user)}"}
        async with http.post(f"{node.url}/api/sync", json=body, headers=headers) as resp:
            raw = await resp.read()
            return len(raw), json.loads(raw)


async def test_a_sync_over_many_rooms_of_big_messages_is_bounded_and_continued_by_next(big_node: Node) -> None:
    """[R-HTTP-50] ``POST /api/sync`` over 12 rooms of 60 messages of 8 KiB (6 MB): each answer's messages stay
    within 2 MiB (``max_sync_bytes``), each room's within 256 KiB; ``next`` names the rooms to ask again,
    unread ones first, and following it until it is empty delivers every message of every room once, in
    order; a room the user may not read is an error, never in ``next``."""
    node = big_node
    rooms = [f"s{i}" for i in range(12)]
    for room in rooms:
        await make_room(node, "alice", room)
        await fill(node, room, 60, body="y" * 8192)
    await make_room(node, "bob", "closed")
    limits = Limits()
    got: dict[str, list[int]] = {room: [] for room in rooms}
    cursors: dict[str, int] = {"closed": 0} | {room: 0 for room in rooms}
    answers = 0
    while cursors:
        size, out = await _sync(node, "alice", {"rooms": cursors, "limit": 500})
        answers += 1
        assert size <= limits.max_sync_bytes + 16 * 1024
        pages = {room: page for room, page in out["rooms"].items() if "error" not in page}
        assert 0 < sum(_size(page["messages"]) for page in pages.values()) <= limits.max_sync_bytes
        for room, page in pages.items():
            assert _size(page["messages"]) <= limits.max_page_bytes
            got[room] += [m["seq"] for m in page["messages"]]
        if answers == 1:
            assert out["rooms"]["closed"]["error"]["code"] == 4403
        unread = [room for room in cursors if room not in out["rooms"]]
        assert list(out["next"])[: len(unread)] == unread
        assert {room: cursors[room] for room in unread} == {room: out["next"][room] for room in unread}
        assert "closed" not in out["next"]
        cursors = out["next"]
    assert got == {room: list(range(1, 62)) for room in rooms}
    assert answers >= 3


async def test_the_sdk_fills_a_gap_of_16_kib_messages_page_by_page_and_stays_connected(big_node: Node) -> None:
    """[R-CLIENT-50] The SDK (``roost.client``) behind a relay that loses 280 live messages of 16 KiB (4.5 MB)
    fills the gap with ``history`` reads of ``limit`` 500 that come back in pages of 256 KiB, reading on
    while a page ends below its ``head``: every message arrives once, in order, with no reconnect (the
    first 4.5 MB page closed it with 4508, and each reconnect met the same gap again)."""
    node = big_node
    await make_room(node, "alice", "r", "bob")
    await fill(node, "r", 10)
    requests: list[dict[str, Any]] = []

    def lost(frame: dict[str, Any]) -> bool:
        return frame.get("type") == "msg" and 20 <= frame.get("seq", 0) <= 299

    async with (
        dropping_relay(node.ws_url, lost, requests) as url,
        connect(url, node.tokens.issue("bob"), start_timeout_s=10) as bob,
    ):
        start = await bob.subscribe("r", after=0)
        assert start is not None
        await fill(node, "r", 300, start=10)
        seqs: list[int] = []
        async with asyncio.timeout(60):
            async for item in bob:
                assert isinstance(item, Message)
                seqs.append(item.seq)
                if item.seq == 312:
                    break
        assert seqs == list(range(1, 313))
        assert bob.reconnects == 0
    reads = [f for f in requests if f["type"] == "history"]
    assert len(reads) >= 15 and all(f["limit"] == GAP_PAGE for f in reads)
