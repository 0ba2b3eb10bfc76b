"""Web Push to offline devices on every backend, end to end against a push service run here (pushsvc.py), which
checks the VAPID JWT and decrypts each payload with the device's keys as a browser would.

Nodes run in this process (the conformance suite's ``settings``, one per backend; two nodes over the shared
engines). Users are "offline" when no WebSocket of theirs is open on any node.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import aiohttp
import pytest

from roost.apikeys import SCOPES
from roost.chaos.infra import wait_until
from roost.config import Limits, Settings
from roost.node import Node, serve

from .pushsvc import PushService
from .wsutil import Raw

ADMIN = "ops"
FAST = {
    "consumer_scan_s": 0.3,
    "consumer_lease_s": 2.0,
    "consumer_backoff_s": 0.05,
    "consumer_max_backoff_s": 0.2,
    "presence_interval_s": 0.2,
    "push_allow_http": True,
    "push_max_attempts": 3,
    "push_timeout_s": 2.0,
    "max_push_devices": 3,
}


@pytest.fixture
def limits() -> Limits:
    return Limits(
        head_check_s=1.0, sends_per_s=1e6, send_burst=10**6, membership_per_s=1e6, membership_burst=10**6, **FAST
    )


@pytest.fixture
async def pushsvc() -> AsyncIterator[PushService]:
    started = await PushService().start()
    yield started
    await started.stop()


class Api:
    def __init__(self, http: aiohttp.ClientSession, node: Node) -> None:
        self.http = http
        self.node = node

    async def call(self, method: str, path: str, user: str | None, body: Any = None, raw: str | None = None) -> Any:
        headers = {"Authorization": f"Bearer {raw or self.node.tokens.issue(user)}"} if (user or raw) else {}
        async with self.http.request(method, self.node.url + path, json=body, headers=headers) as answer:
            return answer.status, await answer.json()

    async def ok(self, method: str, path: str, user: str | None, body: Any = None) -> Any:
        status, value = await self.call(method, path, user, body)
        assert 200 <= status < 300, (method, path, status, value)
        return value


@contextlib.asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[Api]:
    async with serve(replace(settings, admins=(ADMIN,))) as node, aiohttp.ClientSession() as http:
        yield Api(http, node)


async def setup_room(api: Api, room: str = "plans") -> None:
    await api.ok("POST", "/api/rooms", "alice", {"room": room})
    await api.ok("POST", f"/api/rooms/{room}/join", "bob")


async def send(api: Api, room: str, body: str, cmid: str, user: str = "alice") -> int:
    sent = await api.ok("POST", f"/api/rooms/{room}/messages", user, {"cmid": cmid, "body": body})
    seq: int = sent["message"]["seq"]
    return seq


async def until_events(svc: PushService, wanted: set[tuple[str, int]], within_s: float = 20) -> None:
    await wait_until(f"pushes of {sorted(wanted - svc.events())}", lambda: wanted <= svc.events(), within_s)


async def test_offline_user_is_pushed_mentions_and_direct_messages(settings: Settings, pushsvc: PushService) -> None:
    """[R-PUSH-1] [R-PUSH-3] [R-PUSH-4] [R-PUSH-6] A user with a registered device and no connection gets one push
    per mention and per direct message from the other user, signed with the server's VAPID key (the one
    ``/api/push/vapid`` serves; aud the endpoint's origin, exp within 24 h), encrypted for the device, carrying
    room, seq, kind and sender and no text; messages that call for no push (a text without a mention, their
    own direct messages) send nothing."""
    async with running(settings) as api:
        vapid = (await api.ok("GET", "/api/push/vapid", None))["public_key"]
        phone = pushsvc.device("phone")
        created = await api.ok("POST", "/api/push/subscriptions", "bob", phone.subscription())
        assert (await api.ok("GET", "/api/push/subscriptions", "bob"))["subscriptions"] == [created]
        await setup_room(api)
        plain = await send(api, "plans", "no mention here", "a-0")
        mention = await send(api, "plans", "@bob can you check the plan?", "a-1")
        dm = (await api.ok("POST", "/api/dm", "alice", {"user": "bob"}))["room"]
        direct = await send(api, dm, "a secret for bob", "a-2")
        await send(api, dm, "bob's own message", "b-1", user="bob")
        await until_events(pushsvc, {("plans", mention), (dm, direct)})
        await asyncio.sleep(0.5)  # the subject: nothing else is pushed
        got = pushsvc.delivered("phone")
        assert sorted((g.payload for g in got if g.payload is not None), key=str) == sorted(
            [
                {"room": "plans", "seq": mention, "kind": "mention", "sender": "alice"},
                {"room": dm, "seq": direct, "kind": "dm", "sender": "alice"},
            ],
            key=str,
        )
        assert ("plans", plain) not in pushsvc.events()
        for g in got:
            assert g.vapid_key == vapid and g.claims["aud"] == pushsvc.origin and g.claims["sub"].startswith("mailto:")
            assert int(g.headers["TTL"]) == Limits().push_ttl_s and g.headers["Urgency"] == "high"
            assert len(g.headers["Topic"]) <= 32
        assert not [g for g in pushsvc.requests if g.problem], pushsvc.requests


async def test_online_user_is_not_pushed(settings: Settings, pushsvc: PushService) -> None:
    """[R-PUSH-4] A mention while the user has a connection open is not pushed; once their last connection
    closed, the next one is."""
    async with running(settings) as api:
        await api.ok("POST", "/api/push/subscriptions", "bob", pushsvc.device("phone").subscription())
        await setup_room(api)
        ws = await Raw.open(api.node, "bob")
        await wait_until("bob known online", lambda: api.node.push.online.is_online("bob"))
        online = await send(api, "plans", "@bob are you there?", "a-1")
        await ws.ws.close()
        await ws.http.close()
        await asyncio.sleep(0.3)  # the subject: the announcement of bob offline goes out
        offline = await send(api, "plans", "@bob now you are gone", "a-2")
        await until_events(pushsvc, {("plans", offline)})
        assert ("plans", online) not in pushsvc.events()


async def test_text_only_when_the_operator_allows_it(settings: Settings, pushsvc: PushService) -> None:
    """[R-PUSH-3] With ``push_include_text`` the payload carries the message's text too."""
    allowed = replace(settings, limits=replace(settings.limits, push_include_text=True))
    async with running(allowed) as api:
        await api.ok("POST", "/api/push/subscriptions", "bob", pushsvc.device("phone").subscription())
        await setup_room(api)
        seq = await send(api, "plans", "@bob the code is 1234", "a-1")
        await until_events(pushsvc, {("plans", seq)})
        (got,) = pushsvc.delivered()
        assert got.payload == {
            "room": "plans",
            "seq": seq,
            "kind": "mention",
            "sender": "alice",
            "text": "@bob the code is 1234",
        }


async def test_gone_devices_are_deleted_and_failures_retried(settings: Settings, pushsvc: PushService) -> None:
    """[R-PUSH-5] A 410 deletes the device (never tried again, the user's list no longer shows it); a 500 is
    retried with the same (room, seq) until it is taken; a push failing ``push_max_attempts`` times is
    dropped and the next event is still pushed."""
    async with running(settings) as api:
        await api.ok("POST", "/api/push/subscriptions", "bob", pushsvc.device("dead").subscription())
        await api.ok("POST", "/api/push/subscriptions", "bob", pushsvc.device("flaky").subscription())
        pushsvc.answers = {"dead": [410], "flaky": [500, 503, 201]}
        await setup_room(api)
        first = await send(api, "plans", "@bob one", "a-1")
        await until_events(pushsvc, {("plans", first)})

        async def listed() -> list[str]:
            return [s["endpoint"] for s in (await api.ok("GET", "/api/push/subscriptions", "bob"))["subscriptions"]]

        await wait_until("the dead device deleted", lambda: _only(listed, pushsvc.devices["flaky"].endpoint))
        assert [g.status for g in pushsvc.requests if g.device == "flaky"] == [500, 503, 201]
        assert all(g.event == ("plans", first) for g in pushsvc.requests)
        pushsvc.answers = {"flaky": [500, 500, 500, 201]}
        dropped = await send(api, "plans", "@bob two", "a-2")
        after = await send(api, "plans", "@bob three", "a-3")
        await until_events(pushsvc, {("plans", after)})
        assert [g.status for g in pushsvc.requests if g.event == ("plans", dropped)] == [500, 500, 500]
        assert [g.device for g in pushsvc.requests].count("dead") == 1


async def _only(listed: Any, endpoint: str) -> bool:
    return bool(await listed() == [endpoint])


async def test_a_restart_resumes_from_the_stored_cursor(settings: Settings, pushsvc: PushService) -> None:
    """[R-PUSH-6] Pushes are read from the store after a stored cursor: events stored while the push service
    failed, with the node stopped mid-way and started again, are all pushed after the restart; a push sent
    again carries the same (room, seq), so the service worker drops the copy."""
    slow = replace(settings, limits=replace(settings.limits, push_max_attempts=1000))
    pushsvc.answers = {"phone": [500]}
    async with running(slow) as api:
        await api.ok("POST", "/api/push/subscriptions", "bob", pushsvc.device("phone").subscription())
        await setup_room(api)
        seqs = {await send(api, "plans", f"@bob number {i}", f"a-{i}") for i in range(3)}
        await wait_until("a failed attempt", lambda: pushsvc.requests)
    pushsvc.answers = {}
    async with running(slow):
        await until_events(pushsvc, {("plans", s) for s in seqs})
    copies = Counter(g.event for g in pushsvc.delivered())
    assert set(copies) == {("plans", s) for s in seqs}
    by_event = {}
    for g in pushsvc.delivered():
        assert by_event.setdefault(g.event, g.payload) == g.payload  # a copy is the same push


async def test_registry_routes_refuse_bad_input_and_other_users(settings: Settings, pushsvc: PushService) -> None:
    """[R-PUSH-2] Registering needs a user's token (none: 4401; an API key: 4403), an https endpoint (http on a
    loopback address only when allowed) and valid keys (4400, nothing stored), at most ``max_push_devices``
    devices (4422; the same endpoint again replaces its entry); a user never sees or deletes another's."""
    async with running(settings) as api:
        good = pushsvc.device("phone").subscription()
        assert (await api.call("POST", "/api/push/subscriptions", None, good))[0] == 401
        key = await api.ok("POST", "/api/admin/apikeys", ADMIN, {"principal": "bob", "scopes": list(SCOPES)})
        status, answer = await api.call("POST", "/api/push/subscriptions", None, good, raw=key["key"])
        assert status == 403 and answer["error"]["code"] == 4403
        bad = [
            {**good, "endpoint": "ftp://127.0.0.1/x"},
            {**good, "endpoint": "http://10.0.0.1/push"},
            {**good, "endpoint": "https://" + "a" * 2048},
            {**good, "endpoint": "not a url"},
            {**good, "keys": {"p256dh": good["keys"]["p256dh"]}},
            {**good, "keys": {**good["keys"], "p256dh": "AAAA"}},
            {**good, "keys": {**good["keys"], "auth": "%%%"}},
            {**good, "keys": {**good["keys"], "auth": "AAAA"}},
            {"endpoint": good["endpoint"]},
            {**good, "keys": "nope"},
        ]
        for body in bad:
            status, answer = await api.call("POST", "/api/push/subscriptions", "bob", body)
            assert status == 400 and answer["error"]["code"] == 4400, (body, answer)
        assert (await api.ok("GET", "/api/push/subscriptions", "bob"))["subscriptions"] == []
        mine = await api.ok("POST", "/api/push/subscriptions", "bob", good)
        again = await api.ok("POST", "/api/push/subscriptions", "bob", good)
        assert again["id"] == mine["id"]
        for i in range(2):
            await api.ok("POST", "/api/push/subscriptions", "bob", pushsvc.device(f"d{i}").subscription())
        status, answer = await api.call("POST", "/api/push/subscriptions", "bob", pushsvc.device("d3").subscription())
        assert status == 422 and answer["error"]["code"] == 4422
        assert (await api.ok("GET", "/api/push/subscriptions", "carol"))["subscriptions"] == []
        status, _ = await api.call("DELETE", f"/api/push/subscriptions/{mine['id']}", "carol")
        assert status == 404
        await api.ok("DELETE", f"/api/push/subscriptions/{mine['id']}", "bob")
        assert len((await api.ok("GET", "/api/push/subscriptions", "bob"))["subscriptions"]) == 2
    strict = replace(settings, limits=replace(settings.limits, push_allow_http=False))
    async with running(strict) as api:
        status, _ = await api.call("POST", "/api/push/subscriptions", "bob", pushsvc.device("x").subscription())
        assert status == 400


async def test_two_nodes_one_dispatcher(shared: Settings, limits: Limits, pushsvc: PushService) -> None:
    """[R-PUSH-7] Over a shared engine, one node dispatches (the lease), both serve the same VAPID key, and each
    event is pushed once; stopping the dispatching node hands the pushes to the other."""
    settings = replace(shared, limits=limits)
    async with running(settings) as one, running(settings) as two:
        keys = {(await api.ok("GET", "/api/push/vapid", None))["public_key"] for api in (one, two)}
        assert len(keys) == 1
        await one.ok("POST", "/api/push/subscriptions", "bob", pushsvc.device("phone").subscription())
        await setup_room(one)
        await wait_until("a dispatcher", lambda: one.node.push.dispatching or two.node.push.dispatching)
        assert not (one.node.push.dispatching and two.node.push.dispatching)
        seqs = {await send(api, "plans", f"@bob {i}", f"a-{i}") for i, api in enumerate((one, two, one))}
        await until_events(pushsvc, {("plans", s) for s in seqs})
        assert Counter(g.event for g in pushsvc.delivered()) == Counter({("plans", s): 1 for s in seqs})
    assert sum(api.node.push.tally.takeovers for api in (one, two)) == 1
