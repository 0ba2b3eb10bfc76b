"""Frame budgets, the membership rate and the coalescing of receipts and presence (docs/protocol.md, "Frame
budgets"), each rule against a real embedded server with its limit made small. Whether they are enough to
keep one user's flood from slowing the others is measured in test_flood.py."""

from __future__ import annotations

import json
import time
from typing import Any

import aiohttp

from roost.chaos.infra import wait_until
from roost.config import Settings
from roost.node import Node, serve
from roost.protocol.codes import Code

from ..conftest import with_limits
from ..integration.test_history import api
from ..integration.test_send import make_room
from ..integration.wsutil import Raw

SLOW = 0.01
"""A refill rate (units per second) that adds nothing during a test: what was spent stays spent."""


async def stored_read(node: Node, user: str, seq: int) -> bool:
    return (await node.backends.directory.readers("r")).get(user) == seq


async def quiet(raw: Raw, seconds: float) -> list[dict[str, Any]]:
    """Every frame that arrives until none has for ``seconds``."""
    got = []
    while True:
        try:
            got.append(await raw.recv(timeout=seconds))
        except TimeoutError:
            return got


async def test_every_frame_pays_from_the_connections_budget_by_its_cost(embedded_settings: Settings) -> None:
    """[R-RATE-40] Every frame costs units from the connection's budget, malformed, binary and oversized ones
    too, and costlier requests more (a history page of 50 costs 25); the frame that does not fit is refused
    with 4429, its ``ref`` and ``retry_after_s``, and nothing of it is carried out."""
    settings = with_limits(embedded_settings, frames_per_s=SLOW, frame_burst=39)
    async with serve(settings) as node:
        await make_room(node, "alice", "r")
        alice = await Raw.open(node, "alice")
        for _ in range(8):
            await alice.send("{not json")
        await alice.send(b"\x00binary")
        await alice.send(json.dumps({"type": "ping", "id": "big", "pad": "x" * (70 * 1024)}))
        for _ in range(8):
            assert (await alice.recv())["code"] == Code.BAD_FRAME
        assert (await alice.recv())["code"] == Code.BAD_FRAME  # the binary frame
        assert (await alice.recv())["code"] == Code.TOO_LARGE  # the oversized one: 10 units spent
        page = await alice.request({"type": "history", "room": "r", "id": "h"})  # 25 units: 35 of 39 spent
        assert page["type"] == "history"
        for i in range(5):  # 1 unit each: the fifth does not fit
            await alice.send({"type": "ping", "id": f"p{i}"})
        answers = {a["ref"]: a for a in [await alice.recv() for _ in range(5)]}  # the refusal may come first
        assert [answers[f"p{i}"]["type"] for i in range(5)] == ["pong"] * 4 + ["error"]
        refused = answers["p4"]
        assert refused["code"] == Code.RATE_LIMITED and refused["ref"] == "p4"
        assert refused["retry_after_s"] >= 0.1
        await alice.close()
        bob = await Raw.open(node, "bob")  # another connection, another user: a full budget
        assert (await bob.request({"type": "ping", "id": "b"}))["type"] == "pong"
        await bob.close()


async def test_a_users_connections_share_the_users_budget(embedded_settings: Settings) -> None:
    """[R-RATE-41] The user's budget on a node is shared by all the user's connections: ten units on the phone
    and ten on the laptop empty it, the next frame on either is refused with 4429 (with its ``room``); other
    users are not affected, and the refused connection is not read for ``retry_after_s``."""
    settings = with_limits(embedded_settings, user_frames_per_s=SLOW, user_frame_burst=20)
    async with serve(settings) as node:
        await make_room(node, "alice", "r")
        phone, laptop = await Raw.open(node, "alice"), await Raw.open(node, "alice")
        for device in (phone, laptop):
            for i in range(10):
                assert (await device.request({"type": "ping", "id": f"{i}"}))["type"] == "pong"
        refused = await phone.request({"type": "typing", "room": "r", "id": "t"})
        assert refused["code"] == Code.RATE_LIMITED and refused["room"] == "r" and refused["retry_after_s"] > 1
        assert (await laptop.request({"type": "ping", "id": "x"}))["code"] == Code.RATE_LIMITED
        bob = await Raw.open(node, "bob")
        assert (await bob.request({"type": "ping", "id": "b"}))["type"] == "pong"
        for raw in (phone, laptop, bob):
            await raw.close()


async def test_a_connection_that_keeps_exceeding_its_budget_is_closed_with_4429(embedded_settings: Settings) -> None:
    """[R-RATE-42] A flood over the budget gets 4429 refusals, one per pause, and the ``frame_strikes``-th within
    10 s closes the connection with close code 4429; the frames behind it are never read (no more pongs)."""
    settings = with_limits(embedded_settings, frames_per_s=10.0, frame_burst=5, frame_strikes=3)
    async with serve(settings) as node, aiohttp.ClientSession() as http:
        ws = await http.ws_connect(node.ws_url)
        await ws.send_json({"type": "auth", "token": node.tokens.issue("mallory")})
        assert (await ws.receive_json(timeout=5))["type"] == "welcome"
        started = time.monotonic()
        for i in range(200):
            await ws.send_json({"type": "ping", "id": str(i)})
        got: list[dict[str, Any]] = []
        while True:
            msg = await ws.receive(timeout=10)
            if msg.type is not aiohttp.WSMsgType.TEXT:
                break
            got += [json.loads(part) for part in msg.data.split("\n") if part]
        assert ws.close_code == Code.RATE_LIMITED
        refusals = [f for f in got if f["type"] == "error"]
        assert [f["code"] for f in refusals] == [Code.RATE_LIMITED] * 3
        pongs = [f for f in got if f["type"] == "pong"]
        # The burst, plus what the refill (10/s) allowed while the refusals paused the connection.
        assert 5 <= len(pongs) <= 5 + 10 * (time.monotonic() - started) + 1
        assert len(pongs) < 50


async def test_a_refused_send_pauses_reading_without_a_strike(embedded_settings: Settings) -> None:
    """[R-RATE-43] A send refused by the send rate (4429) stops the server reading the connection for its
    ``retry_after_s``, at most 0.1 s (here the bucket needs more): a ping sent right after the refusal is
    answered no sooner. Such refusals are not strikes: six leave the connection open with ``frame_strikes`` 3."""
    settings = with_limits(embedded_settings, sends_per_s=2.0, send_burst=1, frame_strikes=3)
    async with serve(settings) as node:
        await make_room(node, "alice", "r")
        alice = await Raw.open(node, "alice")
        first = await alice.request({"type": "send", "room": "r", "cmid": "a", "body": "x", "id": "a"})
        assert first["type"] == "ack"
        for i in range(6):
            refused = await alice.request({"type": "send", "room": "r", "cmid": f"b{i}", "body": "x", "id": f"b{i}"})
            if refused["type"] == "ack":  # the bucket refilled meanwhile: use it up again
                continue
            assert refused["code"] == Code.RATE_LIMITED
            refused_at = time.monotonic()
            assert (await alice.request({"type": "ping", "id": f"p{i}"}))["type"] == "pong"
            assert time.monotonic() - refused_at >= 0.05
        assert (await alice.request({"type": "ping", "id": "still-open"}))["type"] == "pong"
        await alice.close()


async def test_membership_changes_are_limited_per_user(embedded_settings: Settings) -> None:
    """[R-RATE-44] Create, join, leave (and dm, invite, kick, ban, unban, role) take from the user's membership
    bucket, over WebSocket and HTTP alike: over it, 4429 with ``retry_after_s`` (HTTP 429) and nothing stored;
    other users are not affected."""
    settings = with_limits(embedded_settings, membership_per_s=SLOW, membership_burst=3)
    async with serve(settings) as node:
        await node.service.create_room("alice", "r")
        bob = await Raw.open(node, "bob")
        for i, kind in enumerate(("join", "leave", "join")):
            assert (await bob.request({"type": kind, "room": "r", "id": f"{i}"}))["type"] == "ok"
        head = (await node.backends.store.position("r")).head
        refused = await bob.request({"type": "leave", "room": "r", "id": "over"})
        assert refused["code"] == Code.RATE_LIMITED and refused["retry_after_s"] > 1
        status, body = await api(node, "POST", "/api/rooms/r/leave", "bob")
        assert status == 429 and body["error"]["code"] == Code.RATE_LIMITED
        refused = await bob.request({"type": "create", "room": "other", "id": "c"})
        assert refused["code"] == Code.RATE_LIMITED
        assert (await node.backends.store.position("r")).head == head  # nothing stored
        assert await node.backends.directory.is_member("r", "bob")
        carol = await Raw.open(node, "carol")
        assert (await carol.request({"type": "join", "room": "r", "id": "j"}))["type"] == "ok"
        for raw in (bob, carol):
            await raw.close()


async def test_read_receipts_are_coalesced_per_user_and_room(embedded_settings: Settings) -> None:
    """[R-RATE-45] Twenty reads in a row, each moving the position: every one is answered ``ok`` and this node
    shows the newest position at once; it is stored, and a follower gets its receipt, at the end of the
    interval (the first read: at once), so two receipts in all; a read that does not move the position sends
    no receipt."""
    async with serve(embedded_settings) as node:
        await make_room(node, "alice", "r", "bob")
        for i in range(20):
            await node.service.send("alice", "r", f"c{i}", f"m{i}")  # seqs 3..22
        bob = await Raw.open(node, "bob")
        await bob.request({"type": "subscribe", "room": "r", "id": "s"})
        await bob.until(lambda f: f["type"] == "live")
        alice = await Raw.open(node, "alice")
        for seq in range(3, 23):
            assert (await alice.request({"type": "read", "room": "r", "seq": seq, "id": f"r{seq}"}))["type"] == "ok"
        _, seen = await api(node, "GET", "/api/rooms/r/receipts", "bob")
        assert seen["readers"]["alice"] == 22  # this node answers with what it will store
        await wait_until("the newest position stored", lambda: stored_read(node, "alice", 22), within_s=5)
        receipts = [f for f in await quiet(bob, 1.5) if f["type"] == "receipt"]
        assert [r["seq"] for r in receipts] == [3, 22]
        assert (await alice.request({"type": "read", "room": "r", "seq": 10, "id": "back"}))["type"] == "ok"
        assert not [f for f in await quiet(bob, 1.0) if f["type"] == "receipt"]
        for raw in (alice, bob):
            await raw.close()


async def test_presence_changes_are_coalesced_per_user_and_room(embedded_settings: Settings) -> None:
    """[R-RATE-46] A user following and leaving a room ten times in a row: the room's followers see one
    ``online`` at once and one ``offline`` (the final state) at the end of the interval, not twenty events."""
    async with serve(embedded_settings) as node:
        await make_room(node, "alice", "r", "bob")
        alice = await Raw.open(node, "alice")
        alice.skip_types = set()
        await alice.request({"type": "subscribe", "room": "r", "id": "s"})
        await alice.until(lambda f: f["type"] == "presence" and f["user"] == "alice")
        bob = await Raw.open(node, "bob")
        for i in range(10):
            assert (await bob.request({"type": "subscribe", "room": "r", "id": f"s{i}"}))["type"] == "subscribed"
            assert (await bob.request({"type": "unsubscribe", "room": "r", "id": f"u{i}"}))["type"] == "ok"
        seen = [f["status"] for f in await quiet(alice, 1.5) if f["type"] == "presence" and f["user"] == "bob"]
        assert seen == ["online", "offline"]
        for raw in (alice, bob):
            await raw.close()
