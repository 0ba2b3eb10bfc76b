"""Retention: the store URL's cap (``keep=N``), and the rooms' policies (the server's defaults, each room's own)
applied by the retention task on one node at a time. Old messages go, clients get 4410, idempotency keys stay."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import aiohttp
import pytest

from roost.config import Settings
from roost.node import Node, serve
from roost.protocol.codes import Code
from roost.protocol.types import Draft

from ..conftest import with_limits
from .test_send import make_room
from .wsutil import Raw


@pytest.fixture
def kept(shared: Settings) -> Settings:
    assert shared.store is not None
    return replace(shared, store=shared.store + "&keep=5")


async def test_a_room_keeps_its_newest_messages_and_says_so(kept: Settings) -> None:
    async with serve(kept) as node:
        await make_room(node, "alice", "r")
        first = await node.service.send("alice", "r", "c0", "the oldest")
        for i in range(1, 12):
            await node.service.send("alice", "r", f"c{i}", f"m{i}")
        position = await node.backends.store.position("r")
        assert position.head == 13 and position.first == 9
        page = await node.backends.store.read("r", 0, 100)
        assert [m.seq for m in page.messages] == [9, 10, 11, 12, 13]
        alice = await Raw.open(node, "alice")
        reply = await alice.request({"type": "subscribe", "room": "r", "after": 2, "id": "s"})
        assert reply["type"] == "error" and reply["code"] == Code.RESYNC_REQUIRED and reply["first"] == 9
        retry = await node.service.send("alice", "r", "c0", "the oldest")  # long trimmed: still one message
        assert retry.duplicate and retry.message.seq == first.message.seq
        assert (await node.backends.store.position("r")).head == 13
        await alice.close()


# ---- retention policies: the server's defaults, each room's own, the task that applies them ----------------


async def until(check: Callable[[], Awaitable[bool]], within_s: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + within_s
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "not within the time"
        await asyncio.sleep(0.05)  # a wait helper's poll


def auth(node: Node, user: str, **claims: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {node.tokens.issue(user, **claims)}"}


async def test_a_room_policy_by_count_is_set_by_its_owner_and_applied(settings: Settings) -> None:
    """[R-RET-1] [R-RET-3] The owner sets a room's policy over HTTP: a ``retention`` event, then the task keeps the
    newest N; ``first`` rises, an older cursor gets 4410, a late retry of a dropped message is not stored again."""
    async with serve(with_limits(settings, retention_interval_s=0.1)) as node:
        await make_room(node, "alice", "r", "bob")
        first = await node.service.send("alice", "r", "c0", "the oldest")
        async with aiohttp.ClientSession() as http:
            url = f"{node.url}/api/rooms/r/retention"
            async with http.put(url, json={"max_messages": 5}, headers=auth(node, "alice")) as resp:
                assert resp.status == 200
                assert await resp.json() == {
                    "room": "r",
                    "max_messages": 5,
                    "max_age_s": 0,
                    "room_max_messages": 5,
                    "room_max_age_s": None,
                }
            async with http.get(url, headers=auth(node, "bob")) as resp:
                assert (await resp.json())["max_messages"] == 5
        event = (await node.backends.store.read("r", first.message.seq, 1)).messages[0]
        assert (event.kind, event.sender) == ("retention", "alice")
        assert json.loads(event.body) == {"by": "alice", "max_messages": 5, "max_age_s": None}
        for i in range(1, 12):
            await node.service.send("alice", "r", f"c{i}", f"m{i}")
        head = (await node.backends.store.position("r")).head
        await until(lambda: _first_is(node, "r", head - 4))
        assert [m.seq for m in (await node.backends.store.read("r", 0, 100)).messages] == list(
            range(head - 4, head + 1)
        )
        alice = await Raw.open(node, "alice")
        reply = await alice.request({"type": "subscribe", "room": "r", "after": 2, "id": "s"})
        assert reply["type"] == "error" and reply["code"] == Code.RESYNC_REQUIRED and reply["first"] == head - 4
        retry = await node.service.send("alice", "r", "c0", "the oldest")
        assert retry.duplicate and retry.message.seq == first.message.seq
        await alice.close()
        assert node.retention.passes > 0


async def _first_is(node: Node, room: str, first: int) -> bool:
    return (await node.backends.store.position(room)).first == first


async def test_the_server_default_by_age_applies_to_every_room_unless_the_room_says_otherwise(
    settings: Settings,
) -> None:
    """[R-RET-2] [R-RET-3] [R-RET-4] A server-wide age drops what is older in every room, the server's pseudo-rooms
    included, and keeps what is younger; a room whose own policy is 0 keeps everything."""
    async with serve(with_limits(settings, retention_max_age_s=3, retention_interval_s=0.2)) as node:
        await make_room(node, "alice", "old")
        await make_room(node, "alice", "kept")
        await node.backends.store.create_room("~pseudo", "~roost")
        await node.service.set_retention("alice", "kept", None, 0)
        for room in ("old", "kept"):
            for i in range(3):
                await node.service.send("alice", room, f"o{i}", f"old {i}")
        await node.backends.store.append(Draft("~pseudo", "~roost", "p0", "old pseudo"))
        await asyncio.sleep(3.2)  # the subject: age (the old ones are past it; the young have 3 s)
        young = [(await node.service.send("alice", "old", f"y{i}", f"young {i}")).message.seq for i in range(2)]
        await until(lambda: _first_is(node, "old", young[0]), within_s=2.5)
        assert [m.body for m in (await node.backends.store.read("old", 0, 100)).messages] == ["young 0", "young 1"]
        await until(lambda: _first_is(node, "~pseudo", 2))
        assert (await node.backends.store.position("kept")).first == 1


async def test_bad_retention_requests_are_refused_and_change_nothing(node: Node) -> None:
    """[R-RET-1] Values out of range, of the wrong type, unknown fields and bodies that are not the object: 4400;
    a member who is not a moderator: 4403, also in a direct conversation; an outsider of a private room and an
    unknown room: 4404; the admin API for a non-administrator: 4403. Nothing is stored, and the server goes on."""
    await make_room(node, "alice", "r", "bob")
    await node.service.create_room("alice", "secret", "private")
    dm = await node.service.dm("alice", "bob")
    heads = {room: (await node.backends.store.position(room)).head for room in ("r", "secret", dm)}
    bad_bodies: list[Any] = [
        {"max_messages": -1},
        {"max_age_s": -5},
        {"max_messages": 10**12},
        {"max_age_s": 10**11},
        {"max_messages": "100"},
        {"max_messages": 1.5},
        {"max_age": 60},
        [5],
        "yes",
    ]
    async with aiohttp.ClientSession() as http:
        url = f"{node.url}/api/rooms/r/retention"
        for body in bad_bodies:
            async with http.put(url, json=body, headers=auth(node, "alice")) as resp:
                assert resp.status == 400, body
                assert (await resp.json())["error"]["code"] == Code.BAD_FRAME
        async with http.put(url, data=b"{not json", headers=auth(node, "alice")) as resp:
            assert resp.status == 400
        refused = [
            ("r", "bob", 403),
            (dm, "alice", 403),
            ("secret", "bob", 404),
            ("nowhere", "alice", 404),
        ]
        for room, user, status in refused:
            async with http.put(
                f"{node.url}/api/rooms/{room}/retention", json={"max_messages": 1}, headers=auth(node, user)
            ) as resp:
                assert resp.status == status, (room, user)
        async with http.put(
            f"{node.url}/api/admin/rooms/r/retention", json={"max_messages": 1}, headers=auth(node, "bob")
        ) as resp:
            assert resp.status == 403
        async with http.get(url, headers=auth(node, "alice")) as resp:
            assert (await resp.json())["room_max_messages"] is None
        admin = auth(node, "ops", roles=["admin"])
        async with http.put(
            f"{node.url}/api/admin/rooms/secret/retention", json={"max_age_s": 60}, headers=admin
        ) as resp:
            assert resp.status == 200 and (await resp.json())["room_max_age_s"] == 60
    for room in ("r", dm):
        assert (await node.backends.store.position(room)).head == heads[room]
    assert (await node.backends.store.position("secret")).head == heads["secret"] + 1  # the admin's event
    assert (await node.service.send("alice", "r", "ok", "still serving")).message.seq == heads["r"] + 1


async def test_a_room_goes_back_to_the_defaults_and_setting_the_same_again_stores_nothing(node: Node) -> None:
    """[R-RET-1] ``null`` puts a value back to the server's default (an event); repeating a policy stores nothing."""
    await make_room(node, "alice", "r")
    await node.service.set_retention("alice", "r", 100, 3600)
    head = (await node.backends.store.position("r")).head
    policy = await node.service.set_retention("alice", "r", 100, 3600)
    assert (await node.backends.store.position("r")).head == head
    assert (policy.max_messages, policy.max_age_s) == (100, 3600)
    policy = await node.service.set_retention("alice", "r", None, None)
    assert (policy.room_max_messages, policy.room_max_age_s, policy.max_messages) == (None, None, 0)
    event = (await node.backends.store.read("r", head, 1)).messages[0]
    assert json.loads(event.body) == {"by": "alice", "max_messages": None, "max_age_s": None}


async def test_one_node_at_a_time_applies_retention(shared: Settings) -> None:
    """[R-RET-3] Two nodes, one store: only the holder of the ``retention`` lease makes passes; when it stops, the
    other takes over."""
    settings = with_limits(shared, retention_max_messages=3, retention_interval_s=0.1)
    async with serve(settings) as one, serve(settings) as two:
        await make_room(one, "alice", "r")
        for i in range(8):
            await one.service.send("alice", "r", f"c{i}", f"m{i}")
        await until(lambda: _first_is(one, "r", 7))
        await asyncio.sleep(0.5)  # the subject: a window in which a second holder would have made passes
        passes = (one.retention.passes, two.retention.passes)
        assert sorted(p > 0 for p in passes) == [False, True], passes
        holder, other = (one, two) if passes[0] else (two, one)
        await holder.retention.aclose()  # releases the lease
        before = other.retention.passes
        for i in range(8, 12):
            await other.service.send("alice", "r", f"c{i}", f"m{i}")
        await until(lambda: _first_is(other, "r", 11))
        assert other.retention.passes > before
