"""Durable event consumers (webhooks) on every backend, against a real HTTP receiver (hookrecv.py).

The first tests run a node in this process (the conformance suite's ``settings``, one per backend) and check
one rule each: filters and starting points, failures and pauses, rewinds, what a key's consumer may read, who
may call the routes. The last one runs real ``roost serve`` processes on the backend's shared engine (one
node, restarted, on the embedded one): a consumer delivered through a ``kill -9`` of the node delivering it,
a receiver stopped, started again and failing for a while; afterwards every matching event has arrived, in
seq order per room, signed, with duplicates only for the events in flight at a fault.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import re
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from roost.chaos.infra import wait_until
from roost.config import Limits, Settings
from roost.hooks.filters import event_class
from roost.node import Node, serve

from ..backends import ENGINES, PAIRS, Backend
from .hookrecv import Got, Receiver
from .procs import ServerProcess, issue_token

ADMIN = "ops"
FAST = {
    "consumer_scan_s": 0.3,
    "consumer_lease_s": 2.0,
    "consumer_backoff_s": 0.05,
    "consumer_max_backoff_s": 0.2,
    "consumer_timeout_s": 2.0,
    "max_consumers": 4,
}
"""Scans, leases and retries in fractions of a second, so each test takes seconds."""


@pytest.fixture
def limits() -> Limits:
    return Limits(
        head_check_s=1.0, sends_per_s=1e6, send_burst=10**6, membership_per_s=1e6, membership_burst=10**6, **FAST
    )


@pytest.fixture
async def node(settings: Settings) -> AsyncIterator[Node]:
    async with serve(replace(settings, admins=(ADMIN,))) as running:
        yield running


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    started = await Receiver().start()
    yield started
    await started.stop()


class Api:
    """HTTP calls to a node, each with a bearer credential."""

    def __init__(self, http: aiohttp.ClientSession, url: str) -> None:
        self.http = http
        self.url = url

    async def call(self, method: str, path: str, credential: str | None, body: Any = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {credential}"} if credential else {}
        async with self.http.request(method, self.url + path, json=body, headers=headers) as answer:
            return answer.status, await answer.json()

    async def ok(self, method: str, path: str, credential: str | None, body: Any = None) -> Any:
        status, value = await self.call(method, path, credential, body)
        assert 200 <= status < 300, (method, path, status, value)
        return value


@pytest.fixture
async def api(node: Node) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as http:
        yield Api(http, node.url)


async def stored(node: Node, room: str) -> list[dict[str, Any]]:
    """Every message of ``room`` as history serves it (tombstones applied), read as a member would."""
    members = await node.backends.directory.members(room)
    result = await node.service.history(members[0], room, after=0, limit=500)
    return [{"seq": m.seq, "kind": m.kind} for m in result.page.messages]


async def create(api: Api, credential: str, receiver: Receiver, **fields: Any) -> dict[str, Any]:
    created: dict[str, Any] = await api.ok("POST", "/api/consumers", credential, {"url": receiver.url, **fields})
    return created


async def until_delivered(
    receiver: Receiver, consumer: str, wanted: set[tuple[str, int]], within_s: float = 30
) -> None:
    await wait_until(
        f"deliveries of {sorted(wanted - receiver.delivered(consumer))[:10]}",
        lambda: wanted <= receiver.delivered(consumer),
        within_s,
    )


# ---- filters and starting points ------------------------------------------------------------------------


async def test_from_now_from_a_seq_and_the_filters(node: Node, api: Api, receiver: Receiver) -> None:
    """[R-HOOK-2] [R-HOOK-1] A consumer starting now gets what comes after each matching room's head at its
    creation, and rooms created later from their first event; one starting after seq N gets seq > N in every
    matching room. Rooms match by glob and kind (direct conversations only when asked), events by class; the
    others are never POSTed. Each POST carries the event's room, seq, class and message."""
    service, admin = node.service, node.tokens.issue(ADMIN)
    await service.create_room("alice", "r-old")
    await service.join("bob", "r-old")
    for i in range(3):
        await service.send("alice", "r-old", f"old-{i}", f"before {i}")
    head = len(await stored(node, "r-old"))
    now = await create(api, admin, receiver, rooms="r-*", events=["messages", "membership"])
    sent = await service.send("alice", "r-old", "after-0", "after")
    await service.react("bob", "r-old", sent.message.seq, "\N{THUMBS UP SIGN}")  # reactions: not asked for
    await service.edit("alice", "r-old", sent.message.seq, "after!", "edit-0")  # edits: not asked for
    await service.create_room("alice", "r-new", kind="private")
    await service.send("alice", "r-new", "new-0", "new room")
    await service.create_room("alice", "other")  # another name
    await service.send("alice", "other", "o-0", "elsewhere")
    dm = await service.dm("alice", "bob")  # a direct conversation: not asked for
    await service.send("alice", dm, "dm-0", "hi bob")
    await service.send("alice", "r-old", "after-1", "last")
    wanted = {
        (room, m["seq"])
        for room in ("r-old", "r-new")
        for m in await stored(node, room)
        if event_class(m["kind"]) in ("messages", "membership") and (room == "r-new" or m["seq"] > head)
    }
    await until_delivered(receiver, now["id"], wanted)
    assert receiver.delivered(now["id"]) == wanted
    got = receiver.accepted(now["id"])[0]
    assert set(got.payload) == {"consumer", "room", "seq", "epoch", "event", "message"}
    assert got.payload["message"]["type"] == "msg" and got.payload["message"]["seq"] == got.seq
    assert got.payload["message"]["room"] == got.room and got.event == event_class(got.payload["message"]["kind"])
    assert got.headers["Content-Type"] == "application/json"
    # From a seq, direct conversations only: the events of the conversation after seq 2.
    direct = await create(api, admin, receiver, kinds=["direct"], **{"from": 2})
    await service.send("bob", dm, "dm-1", "hi alice")
    wanted_dm = {(dm, m["seq"]) for m in await stored(node, dm) if m["seq"] > 2}
    await until_delivered(receiver, direct["id"], wanted_dm)
    assert receiver.delivered(direct["id"]) == wanted_dm
    assert not receiver.unsigned({now["id"]: now["secret"], direct["id"]: direct["secret"]})


# ---- failures, pause, resume ----------------------------------------------------------------------------


async def test_a_failing_receiver_pauses_the_consumer_until_it_is_resumed(
    node: Node, api: Api, receiver: Receiver
) -> None:
    """[R-HOOK-5] A non-2xx answer is a failed attempt, retried (backoff) before any later event of the room;
    after ``max_failures`` in a row the consumer is paused, visibly (state, failures, last error, metric), and
    nothing is attempted until it is resumed; then it delivers from where it stopped, failures back at 0."""
    admin = node.tokens.issue(ADMIN)
    await node.service.create_room("alice", "r1")
    receiver.failing = True
    created = await create(api, admin, receiver, rooms="r1", max_failures=3)
    await node.service.send("alice", "r1", "m1", "one")
    path = f"/api/consumers/{created['id']}"
    shown = await wait_until(
        "the consumer paused",
        lambda: _state(api, path, admin, "paused"),
        within_s=20,
    )
    assert shown["failures"] == 3 and shown["last_error"] == "HTTP 500" and len(receiver.requests) == 3
    assert {(g.room, g.seq) for g in receiver.requests} == {("r1", 2)}  # the same event each time (1: the join)
    await asyncio.sleep(4 * FAST["consumer_scan_s"])  # the subject: paused, nothing is attempted meanwhile
    assert len(receiver.requests) == 3
    async with api.http.get(node.url + "/metrics") as answer:
        metrics = await answer.text()
    assert "roost_consumer_pauses_total 1.0" in metrics and 'roost_consumers{state="paused"} 1.0' in metrics
    receiver.failing = False
    resumed = await api.ok("POST", f"{path}/resume", admin)
    assert resumed["state"] == "active" and resumed["failures"] == 0
    await node.service.send("alice", "r1", "m2", "two")
    await until_delivered(receiver, created["id"], {("r1", 2), ("r1", 3)})
    shown = await api.ok("GET", path, admin)
    assert shown["state"] == "active" and shown["failures"] == 0 and shown["cursors"] == {"r1": 3}
    assert [g.seq for g in receiver.accepted()] == [2, 3]


async def _state(api: Api, path: str, credential: str, state: str) -> dict[str, Any] | None:
    shown: dict[str, Any] = await api.ok("GET", path, credential)
    return shown if shown["state"] == state else None


# ---- rewind ---------------------------------------------------------------------------------------------


async def test_rewind_delivers_again_from_a_seq(node: Node, api: Api, receiver: Receiver) -> None:
    """[R-HOOK-6] A rewind of one room to seq N delivers that room's events after N again, in order, and
    nothing of the other rooms; a rewind of every room to 0 delivers everything again."""
    admin = node.tokens.issue(ADMIN)
    for room in ("r1", "r2"):
        await node.service.create_room("alice", room)
        for i in range(4):
            await node.service.send("alice", room, f"{room}-{i}", f"m{i}")
    created = await create(api, admin, receiver, **{"from": 0})
    everything = {(room, seq) for room in ("r1", "r2") for seq in range(1, 6)}
    await until_delivered(receiver, created["id"], everything)
    path = f"/api/consumers/{created['id']}"

    async def settled() -> None:
        """Every delivery acknowledged and its cursor stored: a retry or a takeover (a lease lost on a loaded
        machine) delivers nothing again from here, so what follows is the rewind's doing alone."""
        deadline = asyncio.get_running_loop().time() + 20
        while (await api.ok("GET", path, admin))["cursors"] != {"r1": 5, "r2": 5}:
            assert asyncio.get_running_loop().time() < deadline, "cursors not stored"
            await asyncio.sleep(0.05)  # a wait helper's poll

    await settled()
    first = len(receiver.accepted())
    await api.ok("POST", f"{path}/rewind", admin, {"seq": 2, "room": "r1"})
    await wait_until("r1 3-5 again", lambda: len(receiver.accepted()) >= first + 3, 20)
    await settled()
    again = receiver.accepted()[first:]
    assert [(g.room, g.seq) for g in again] == [("r1", 3), ("r1", 4), ("r1", 5)]
    first = len(receiver.accepted())
    await api.ok("POST", f"{path}/rewind", admin, {"seq": 0})
    await wait_until("everything again", lambda: len(receiver.accepted()) >= first + 10, 20)
    await settled()
    replayed = receiver.accepted()[first:]
    assert {(g.room, g.seq) for g in replayed} == everything and len(replayed) == 10
    for room in ("r1", "r2"):
        assert [g.seq for g in replayed if g.room == room] == [1, 2, 3, 4, 5]
    assert (await api.ok("GET", path, admin))["cursors"] == {"r1": 5, "r2": 5}


# ---- a key's consumer -----------------------------------------------------------------------------------


async def test_a_keys_consumer_gets_only_the_rooms_its_principal_is_in(
    node: Node, api: Api, receiver: Receiver
) -> None:
    """[R-HOOK-8] A consumer created with an API key delivers only rooms its principal is a member of when
    each event is delivered: not a public room it is not in, not a private one, not after it left; and it is
    paused when that key is revoked."""
    service, admin = node.service, node.tokens.issue(ADMIN)
    key = await api.ok(
        "POST", "/api/admin/apikeys", admin, {"principal": "bot", "scopes": ["consumers", "rooms:write"]}
    )
    bot = key["key"]
    await service.create_room("alice", "pub-in")
    await service.create_room("alice", "pub-out")
    await service.create_room("alice", "priv-out", kind="private")
    await api.ok("POST", "/api/rooms/pub-in/join", bot)
    created = await create(api, bot, receiver, kinds=["public", "private", "direct"], **{"from": 0})
    assert created["owner"] == "bot" and created["key"] == key["id"]
    dm = await service.dm("alice", "bot")
    other_dm = await service.dm("alice", "carol")
    for room in ("pub-in", "pub-out", "priv-out", dm, other_dm):
        await service.send("alice", room, f"{room}-1", "hello")
    wanted = {(room, m["seq"]) for room in ("pub-in", dm) for m in await stored(node, room)}
    await until_delivered(receiver, created["id"], wanted)
    await api.ok("POST", "/api/rooms/pub-in/leave", bot)
    left = len(await stored(node, "pub-in"))  # the seq of the principal's leave
    await service.send("alice", "pub-in", "after-leave", "not for the bot")
    await service.send("alice", dm, "sentinel", "the last one")
    await until_delivered(receiver, created["id"], {(dm, len(await stored(node, dm)))})
    assert {room for room, _ in receiver.delivered()} == {"pub-in", dm}
    assert max(seq for room, seq in receiver.delivered() if room == "pub-in") < left
    await api.ok("DELETE", f"/api/admin/apikeys/{key['id']}", admin)
    shown = await wait_until(
        "paused by the revocation", lambda: _state(api, f"/api/consumers/{created['id']}", admin, "paused"), 20
    )
    assert "revoked" in shown["last_error"]


# ---- who may call the routes ----------------------------------------------------------------------------


async def test_the_routes_need_an_administrator_or_a_key_with_the_consumers_scope(
    node: Node, api: Api, receiver: Receiver
) -> None:
    """[R-HOOK-9] [R-HOOK-10] No credential: 401. A user's token, or a key without ``consumers``: 403, nothing
    created. An administrator sees and manages every consumer; a key only its principal's (another's is 404).
    The secret is in the creation's answer only. A bad URL or filter is 400; one consumer over
    ``max_consumers`` is 422."""
    admin, alice = node.tokens.issue(ADMIN), node.tokens.issue("alice")
    scoped = await api.ok("POST", "/api/admin/apikeys", admin, {"principal": "bot", "scopes": ["consumers"]})
    unscoped = await api.ok("POST", "/api/admin/apikeys", admin, {"principal": "bot", "scopes": ["rooms:read"]})
    body = {"url": receiver.url}
    routes = [("POST", "/api/consumers"), ("GET", "/api/consumers"), ("GET", "/api/consumers/x")]
    routes += [("DELETE", "/api/consumers/x"), ("POST", "/api/consumers/x/resume")]
    routes += [("POST", "/api/consumers/x/rewind")]
    for method, path in routes:
        assert (await api.call(method, path, None, body))[0] == 401, (method, path)
        assert (await api.call(method, path, "rk_0123456789abcdef_wrong", body))[0] == 401, (method, path)
        for credential in (alice, unscoped["key"]):
            status, answer = await api.call(method, path, credential, body)
            assert status == 403 and answer["error"]["code"] == 4403, (method, path, answer)
    mine = await create(api, admin, receiver)
    theirs = await create(api, scoped["key"], receiver)
    assert mine["secret"] and theirs["secret"] and mine["secret"] != theirs["secret"]
    assert mine["owner"] is None and mine["created_by"] == ADMIN and theirs["owner"] == "bot"
    listed = await api.ok("GET", "/api/consumers", admin)
    assert [c["id"] for c in listed["consumers"]] == sorted([mine["id"], theirs["id"]])
    assert all("secret" not in c for c in listed["consumers"])
    assert "secret" not in await api.ok("GET", f"/api/consumers/{mine['id']}", admin)
    assert [c["id"] for c in (await api.ok("GET", "/api/consumers", scoped["key"]))["consumers"]] == [theirs["id"]]
    for method, suffix in [("GET", ""), ("DELETE", ""), ("POST", "/resume"), ("POST", "/rewind")]:
        status, _ = await api.call(method, f"/api/consumers/{mine['id']}{suffix}", scoped["key"], {"seq": 0})
        assert status == 404, (method, suffix)
    for bad in ({"url": "ftp://127.0.0.1/x"}, {"url": "not a url"}, {"url": receiver.url, "kinds": ["nope"]}):
        assert (await api.call("POST", "/api/consumers", admin, bad))[0] == 400, bad
    await create(api, admin, receiver)
    await create(api, admin, receiver)  # the fourth: max_consumers
    status, answer = await api.call("POST", "/api/consumers", admin, body)
    assert status == 422 and answer["error"]["code"] == 4422
    assert (await api.ok("DELETE", f"/api/consumers/{theirs['id']}", scoped["key"]))["deleted"]
    status, _ = await api.call("GET", f"/api/consumers/{theirs['id']}", admin)
    assert status == 404


# ---- the faults, with real processes --------------------------------------------------------------------

SECRET = "hooks-test-secret-shared-by-every-node"
ROOMS = ("r1", "r2", "r3")
EVENTS = ["messages", "edits", "deletes", "membership"]
"""Not reactions: the test's reactions are events the consumer must never receive."""
PROCESS_LIMITS = {**FAST, "consumer_scan_s": 0.5, "consumer_timeout_s": 1.0, "max_consumers": 100}


class Nodes:
    """The backend's node processes: two on a shared engine, one on the embedded one."""

    def __init__(self, base: Path, backend: Backend) -> None:
        store, bus = PAIRS[backend.name]
        shared = ENGINES[store].shared and ENGINES[bus].shared
        extra = ["--secret", SECRET, "--admin", ADMIN]
        extra += ["--store", backend.store] if backend.store else []
        extra += ["--bus", backend.bus] if backend.bus else []
        for name, value in PROCESS_LIMITS.items():
            extra += ["--limit", f"{name}={value}"]
        self.procs = [ServerProcess(base / f"node{i}" / "data", None, *extra) for i in range(2 if shared else 1)]
        for proc in self.procs:
            proc.data_dir.parent.mkdir(parents=True, exist_ok=True)

    async def start(self) -> None:
        await asyncio.gather(*(proc.start(timeout=60) for proc in self.procs))

    def stop(self) -> None:
        for proc in self.procs:
            proc.stop()

    def up(self) -> list[ServerProcess]:
        return [proc for proc in self.procs if proc.running]


async def _post(
    http: aiohttp.ClientSession, nodes: Nodes, path: str, token: str, body: Any = None, method: str = "POST"
) -> Any:
    """A write through whichever node answers, retried (the same ``cmid``: one message) while nodes restart."""
    deadline = time.monotonic() + 60
    turn = 0
    while True:
        up = nodes.up() or nodes.procs
        proc = up[turn % len(up)]
        turn += 1
        try:
            headers = {"Authorization": f"Bearer {token}"}
            async with http.request(method, proc.url + path, json=body, headers=headers) as answer:
                if answer.status < 500:
                    value = await answer.json()
                    assert answer.status < 300, (path, answer.status, value)
                    return value
        except (aiohttp.ClientError, OSError):
            pass
        assert time.monotonic() < deadline, f"no node took {path}"
        await asyncio.sleep(0.05)  # a wait helper's poll: the node is restarting


async def _history(http: aiohttp.ClientSession, nodes: Nodes, room: str, token: str) -> list[dict[str, Any]]:
    proc = nodes.up()[0]
    async with http.get(f"{proc.url}/api/rooms/{room}/messages?after=0&limit=500", headers=_auth(token)) as answer:
        page = await answer.json()
    assert not page["has_more"]
    messages: list[dict[str, Any]] = page["messages"]
    return messages


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _holder(http: aiohttp.ClientSession, nodes: Nodes, consumer: str, admin: str) -> ServerProcess:
    """The node delivering the consumer, as the API shows it (its host and port)."""

    async def find() -> ServerProcess | None:
        for proc in nodes.up():
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with http.get(f"{proc.url}/api/consumers/{consumer}", headers=_auth(admin)) as answer:
                    holder = (await answer.json())["holder"]
                match = re.search(r":(\d+)$", holder)
                return next((p for p in nodes.up() if match and p.port == int(match.group(1))), None)
        return None

    return await wait_until("a node delivering the consumer", find, 30)


async def test_every_event_arrives_through_a_node_kill_and_a_failing_receiver(tmp_path: Path, backend: Backend) -> None:
    """[R-HOOK-4] [R-HOOK-7] [R-HOOK-1] [R-HOOK-3] A consumer on two nodes over the backend's engine (one on the
    embedded store), the node delivering it killed with SIGKILL mid-delivery (and started again later), the
    receiver stopped, started again on its port and answering 500 for a while: afterwards every matching event
    was delivered, each room's in seq order with every seq present, signed, with its ``(room, seq)`` as
    ``Roost-Event-Id``; duplicates only for what was delivered since the cursors were last stored or in flight
    at a fault, and no event the filter leaves out."""
    nodes = Nodes(tmp_path, backend)
    receiver = await Receiver(delay_s=0.02).start()
    await nodes.start()
    try:
        admin, alice, bob = [await issue_token(u, tmp_path / "tokens", SECRET) for u in (ADMIN, "alice", "bob")]
        async with aiohttp.ClientSession() as http:
            await _scenario(http, nodes, receiver, admin, alice, bob)
    finally:
        nodes.stop()
        await receiver.stop()


async def _scenario(
    http: aiohttp.ClientSession, nodes: Nodes, receiver: Receiver, admin: str, alice: str, bob: str
) -> None:
    for room in ROOMS:
        await _post(http, nodes, "/api/rooms", alice, {"room": room, "kind": "private" if room == "r3" else "public"})
    await _post(http, nodes, "/api/rooms", alice, {"room": "other"})
    created = await _post(
        http, nodes, "/api/consumers", admin, {"url": receiver.url, "rooms": "r*", "events": EVENTS, "from": 0}
    )
    consumer = created["id"]
    await _post(http, nodes, "/api/rooms/r1/join", bob)
    await _post(http, nodes, "/api/rooms/r2/join", bob)
    await _post(http, nodes, "/api/rooms/r3/invite", alice, {"user": "bob"})
    await _post(http, nodes, "/api/rooms/r3/join", bob)
    dm = (await _post(http, nodes, "/api/dm", alice, {"user": "bob"}))["room"]
    total = 60
    sending = asyncio.create_task(_send(http, nodes, alice, bob, dm, total))
    faults = asyncio.create_task(_faults(http, nodes, receiver, consumer, admin))
    await asyncio.wait_for(asyncio.gather(sending, faults), 120)
    wanted: dict[str, list[int]] = {}
    for room in ROOMS:
        wanted[room] = [m["seq"] for m in await _history(http, nodes, room, alice) if event_class(m["kind"]) in EVENTS]
    everything = {(room, seq) for room, seqs in wanted.items() for seq in seqs}
    await wait_until(
        "every matching event delivered", lambda: everything <= receiver.delivered(consumer), within_s=60, every_s=0.1
    )
    await _check(receiver, consumer, created["secret"], wanted)


async def _send(http: aiohttp.ClientSession, nodes: Nodes, alice: str, bob: str, dm: str, total: int) -> None:
    """Texts, edits, deletes and reactions in the matching rooms; texts in rooms the consumer leaves out."""
    for i in range(total):
        room = ROOMS[i % len(ROOMS)]
        sent = await _post(http, nodes, f"/api/rooms/{room}/messages", alice, {"cmid": f"m{i}", "body": f"text {i}"})
        seq = sent["message"]["seq"]
        if i % 7 == 0:
            await _post(http, nodes, f"/api/rooms/{room}/messages/{seq}/edit", alice, {"cmid": f"e{i}", "body": "!"})
        if i % 11 == 0:
            await _post(http, nodes, f"/api/rooms/{room}/messages/{seq}/reactions", bob, {"emoji": "x"})
        if i % 13 == 0:
            await _post(http, nodes, f"/api/rooms/{room}/messages/{seq}?cmid=d{i}", alice, method="DELETE")
        if i % 5 == 0:
            await _post(http, nodes, "/api/rooms/other/messages", alice, {"cmid": f"o{i}", "body": "elsewhere"})
            await _post(http, nodes, f"/api/rooms/{dm}/messages", bob, {"cmid": f"dm{i}", "body": "direct"})
        await asyncio.sleep(0.05)  # the subject: a stream of events over the time the faults take


async def _faults(http: aiohttp.ClientSession, nodes: Nodes, receiver: Receiver, consumer: str, admin: str) -> None:
    """Kill -9 the node delivering the consumer while deliveries flow; then stop the receiver, start it again
    answering 500 for a while; then start the killed node again."""
    await wait_until("deliveries flowing", lambda: len(receiver.accepted()) >= 10, 60)
    holder = await _holder(http, nodes, consumer, admin)
    before = len(receiver.requests)
    holder.kill()
    if len(nodes.procs) == 1:
        await holder.start(timeout=60)  # the embedded analogue: the one node restarts on its data
    await wait_until("deliveries again", lambda: len(receiver.accepted()) >= before + 5, 60)
    if len(nodes.procs) > 1:
        assert await _holder(http, nodes, consumer, admin) is not holder  # taken over by the other node
    await receiver.stop()
    await asyncio.sleep(1.0)  # the subject: the receiver is down, deliveries fail
    receiver.failing = True
    await receiver.start()
    await asyncio.sleep(1.5)  # the subject: the receiver answers 500
    receiver.failing = False
    if not holder.running:
        await holder.start(timeout=60)


async def _check(receiver: Receiver, consumer: str, secret: str, wanted: dict[str, list[int]]) -> None:
    accepted: list[Got] = receiver.accepted(consumer)
    assert not receiver.unsigned({consumer: secret}), "a delivery without a valid signature or event id"
    assert {g.room for g in accepted} <= set(ROOMS), "a room the filter leaves out"
    assert all(g.event in EVENTS for g in accepted), "an event class the filter leaves out"
    duplicates = replays = 0
    for room, seqs in wanted.items():
        arrived = [g.seq for g in accepted if g.room == room]
        first_times = list(dict.fromkeys(arrived))
        assert first_times == sorted(first_times), f"{room} out of order: {arrived}"
        assert sorted(set(arrived)) == seqs, f"{room}: {sorted(set(arrived) ^ set(seqs))}"
        duplicates += len(arrived) - len(set(arrived))
        # A replay starts again from a stored cursor, then goes on in order: one step back per fault at most.
        replays += sum(1 for before, after in itertools.pairwise(arrived) if after < before)
    assert replays <= 2, replays
    # At the kill: what was delivered since the cursors were last stored (at most consumer_cursor_interval_s of
    # deliveries, each taking the receiver's delay) and the event in flight; at the receiver's stop, the event in
    # flight (cursors are stored before a retry). Nothing else arrives twice.
    interval = PROCESS_LIMITS.get("consumer_cursor_interval_s", Limits().consumer_cursor_interval_s)
    assert duplicates <= math.ceil(interval / receiver.delay_s) + 2, duplicates
    assert any(g.status == 500 for g in receiver.requests), "the receiver's failing phase saw no delivery"


async def test_the_cli_creates_lists_shows_rewinds_resumes_and_deletes_consumers(
    node: Node, settings: Settings, receiver: Receiver, capsys: pytest.CaptureFixture[str]
) -> None:
    """[R-HOOK-10] [R-HOOK-6] ``roost consumer ...`` calls the routes of a running node with an administrator's
    token signed from the data directory: ``create`` prints the secret alone on stdout (and it signs the
    deliveries), ``list`` and ``show`` never print it, ``rewind`` delivers again, ``delete`` stops it."""
    from roost.cli import main

    cli = ["--server", node.url, "--data-dir", settings.data_dir]
    await node.service.create_room("alice", "ops-1")
    await node.service.send("alice", "ops-1", "m1", "one")
    args = ["consumer", "create", "--url", receiver.url, "--rooms", "ops-*", "--events", "messages", "--from", "0"]
    await asyncio.to_thread(main, [*args, "--max-failures", "7", *cli])
    printed = capsys.readouterr()
    secret = printed.out.strip()
    consumer = re.search(r"consumer ([0-9a-f]{16}) ", printed.err)
    assert consumer is not None and "shown only this once" in printed.err, printed
    consumer_id = consumer.group(1)
    await until_delivered(receiver, consumer_id, {("ops-1", 2)})
    assert not receiver.unsigned({consumer_id: secret})
    await asyncio.to_thread(main, ["consumer", "list", *cli])
    listing = capsys.readouterr().out
    assert consumer_id in listing and "active" in listing and secret not in listing, listing
    await asyncio.to_thread(main, ["consumer", "show", consumer_id, *cli])
    shown = capsys.readouterr().out
    assert '"cursors": {\n    "ops-1": 2' in shown and '"max_failures": 7' in shown and secret not in shown, shown
    await asyncio.to_thread(main, ["consumer", "rewind", consumer_id, "--seq", "0", "--room", "ops-1", *cli])
    assert "every room" not in capsys.readouterr().out
    await wait_until("delivered again", lambda: len(receiver.accepted(consumer_id)) == 2, 20)
    await asyncio.to_thread(main, ["consumer", "resume", consumer_id, *cli])
    assert "resumed (active)" in capsys.readouterr().out
    await asyncio.to_thread(main, ["consumer", "delete", consumer_id, *cli])
    assert f"consumer {consumer_id} deleted" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        await asyncio.to_thread(main, ["consumer", "show", consumer_id, *cli])
    assert "404" in capsys.readouterr().err


# ---- the receiver of docs/integration.md, run as written ---------------------------------------------------

INTEGRATION = Path(__file__).resolve().parents[2] / "docs" / "integration.md"


def example_receiver() -> str:
    """The Python block of the section "A receiver that verifies and deduplicates"."""
    section = INTEGRATION.read_text(encoding="utf-8").split("### A receiver that verifies and deduplicates", 1)[1]
    return section.split("```python\n", 1)[1].split("\n```", 1)[0]


async def _delivered(node: Node) -> float:
    async with aiohttp.ClientSession() as http, http.get(node.url + "/metrics") as answer:
        text = await answer.text()
    found = re.search(r'^roost_consumer_deliveries_total\{result="delivered"\} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


async def test_the_example_receiver_of_the_docs_verifies_and_deduplicates(
    embedded_settings: Settings, tmp_path: Path
) -> None:
    """[R-HOOK-3] [R-HOOK-4] The receiver in docs/integration.md, run as written against a node's real
    deliveries: it takes each event once, and again after a rewind without handling it twice (its
    ``(room, seq)`` is the same); a forged signature, and a genuine one from too long ago, get 401."""
    import subprocess
    import sys

    from roost.chaos.infra import free_port
    from roost.hooks.signing import sign

    port = free_port()
    script = tmp_path / "receiver.py"
    script.write_text(example_receiver())
    async with (
        serve(replace(embedded_settings, admins=(ADMIN,))) as node,
        aiohttp.ClientSession() as http,
    ):
        api, admin = Api(http, node.url), node.tokens.issue(ADMIN)
        await node.service.create_room("alice", "general")
        for i in range(3):
            await node.service.send("alice", "general", f"m{i}", f"hello {i}")
        created = await api.ok(
            "POST", "/api/consumers", admin, {"url": f"http://127.0.0.1:{port}/", "from": 0, "max_failures": 1000}
        )
        env = {"PATH": "/usr/bin:/bin", "ROOST_HOOK_SECRET": created["secret"], "PORT": str(port)}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(script), env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        )
        lines: list[str] = []

        async def read() -> None:
            assert proc.stdout is not None
            async for line in proc.stdout:
                lines.append(line.decode().strip())

        reader = asyncio.create_task(read())
        try:
            await wait_until("the receiver printed the 4 events", lambda: len(lines) >= 4, 30)
            assert lines == [
                "general 1 membership",
                "general 2 messages hello 0",
                "general 3 messages hello 1",
                "general 4 messages hello 2",
            ]
            before = await _delivered(node)
            await api.ok("POST", f"/api/consumers/{created['id']}/rewind", admin, {"seq": 0})
            await wait_until("delivered again", lambda: _at_least(node, before + 4), 30)
            assert len(lines) == 4  # the second deliveries were taken (204) and not handled again
            body = b'{"consumer":"x","room":"general","seq":9,"epoch":"e","event":"messages","message":{}}'
            forged = f"t={int(time.time())},v1={'0' * 64}"
            stale = sign(created["secret"], body, timestamp=int(time.time()) - 3600)
            for header in (forged, stale):
                async with http.post(f"http://127.0.0.1:{port}/", data=body, headers={"Roost-Signature": header}) as r:
                    assert r.status == 401
            assert len(lines) == 4
        finally:
            proc.terminate()
            await proc.wait()
            await reader  # to the pipe's end: its transport closes


async def _at_least(node: Node, count: float) -> bool:
    return await _delivered(node) >= count
