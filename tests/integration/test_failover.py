"""A node cut off from its broker tells the truth and hands its clients to a node that can serve them.

Two real ``roost serve`` nodes on one engine (the machine's Redis or NATS, each test with its own
prefix). Node B reaches the broker only through a TCP proxy the test controls (roost/chaos/tcpproxy.py).
Clients list B first and A second. While they chat, the proxy is cut (connections reset, new ones
refused) or blackholed (nothing forwarded, nothing refused: a partition). Then:

* B's ``/readyz`` answers 503 naming the failing checks, and after the grace period B closes its
  clients with 4504;
* every client that was on B is on A within a bound (measured, printed, asserted);
* nothing acked is lost or duplicated, and every receiver sees one order (``check_exact``);
* after the link heals, B's ``/readyz`` answers 200 again and B takes new connections.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest

from roost.chaos.infra import wait_until
from roost.chaos.tcpproxy import TcpProxy
from roost.client import Client, Sent, connect
from roost.config import Limits

from ..backends import NATS, REDIS, _clean_nats, _clean_redis
from .procs import ServerProcess, issue_token, node_behind_proxy, start_nodes
from .test_multinode import check_exact, stream

pytestmark = pytest.mark.slow

SECRET = "failover-test-secret"
FAST = {"initial_backoff_s": 0.02, "max_backoff_s": 0.2}
LIMITS = Limits()
DETECT_S = LIMITS.probe_interval_s + LIMITS.probe_timeout_s
"""Worst case from the fault to the first failed probe."""
SHED_BOUND_S = LIMITS.unready_grace_s + max(LIMITS.probe_interval_s, LIMITS.probe_timeout_s)
"""Worst case from the fault to the shedding: the grace runs from the last passing probe, and is checked
after each round (one round per interval, or per timeout when probes hang)."""
MOVE_BOUND_S = SHED_BOUND_S + 3.0
"""The target: every client is on another node at most 3 s after the node shed it."""


async def readyz(node: ServerProcess) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, http.get(f"{node.url}/readyz") as resp:
        return resp.status, await resp.json()


async def ready(node: ServerProcess, want: bool = True) -> bool:
    return ((await readyz(node))[0] == 200) is want


@pytest.fixture
async def proxied(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[str, ServerProcess, ServerProcess, TcpProxy]]:
    """(engine, node A direct, node B through the proxy, the proxy)."""
    engine: str = request.param
    ns = "f" + uuid.uuid4().hex[:10]
    target = urlsplit(REDIS if engine == "redis" else NATS)
    host, port = target.hostname or "127.0.0.1", target.port or (6379 if engine == "redis" else 4222)
    proxy = await TcpProxy(port, host).start()
    if engine == "redis":
        direct, via = f"{REDIS}?prefix={ns}", f"redis://{host}:{proxy.port}/0?prefix={ns}"
    else:
        direct, via = f"{NATS}?prefix={ns}", f"nats://{host}:{proxy.port}?prefix={ns}"
    (a,) = await start_nodes(tmp_path / "a", 1, "--store", direct, "--secret", SECRET)
    try:
        (b,) = await start_nodes(tmp_path / "b", 1, "--store", via, "--secret", SECRET)
    except BaseException:
        a.stop()
        raise
    try:
        yield engine, a, b, proxy
    finally:
        b.stop()
        a.stop()
        await proxy.aclose()
        if engine == "redis":
            await _clean_redis(REDIS, ns)
        else:
            await _clean_nats(NATS, ns)


@pytest.mark.parametrize("fault", ["cut", "blackhole"])
@pytest.mark.parametrize("proxied", ["redis", "nats"], indirect=True)
async def test_a_node_cut_off_from_its_broker_sheds_its_clients_to_another_node(
    proxied: tuple[str, ServerProcess, ServerProcess, TcpProxy], fault: str, tmp_path: Path
) -> None:
    engine, a, b, proxy = proxied
    users = [f"u{i}" for i in range(8)]
    issued = await asyncio.gather(*(issue_token(u, tmp_path / "tokens", SECRET) for u in users))
    tokens = dict(zip(users, issued, strict=True))
    on_b, on_a = users[:6], users[6:]
    clients: dict[str, Client] = {}
    for user in users:
        urls = [b.ws_url, a.ws_url] if user in on_b else [a.ws_url, b.ws_url]
        clients[user] = connect(urls, tokens[user], **FAST)
        await clients[user].start()
    try:
        assert all(clients[u].url == b.ws_url for u in on_b)
        assert all(clients[u].url == a.ws_url for u in on_a)
        room = "r-" + uuid.uuid4().hex[:8]
        await clients[users[0]].create(room)
        for user in users[1:]:
            await clients[user].join(room)
        for user in users:
            await clients[user].subscribe(room, after=0)
        assert (await readyz(b))[0] == 200

        moved_after: list[float] = []
        unready_bodies: list[Any] = []

        async def partition(acks: list[Sent]) -> None:
            await wait_until("60 acks", lambda: len(acks) >= 60, 60, every_s=0.01)
            t0 = time.monotonic()
            proxy.cut() if fault == "cut" else proxy.blackhole()

            async def moved() -> bool:  # and what B says meanwhile
                if all(clients[u].url == a.ws_url and clients[u].connected.is_set() for u in on_b):
                    return True
                status, body = await readyz(b)
                if status == 503:
                    unready_bodies.append(body)
                return False

            await wait_until("B's clients moved to A", moved, 30, every_s=0.05)
            moved_after.append(time.monotonic() - t0)
            status, body = await readyz(b)
            assert status == 503, body
            unready_bodies.append(body)
            proxy.heal()

        senders = {
            users[0]: (clients[users[0]], 150),
            users[1]: (clients[users[1]], 150),
            users[6]: (clients[users[6]], 150),
        }
        acks, received = await stream(room, senders, [clients[u] for u in users], partition, timeout=90.0)
        await check_exact(a, tokens[users[0]], room, acks, received, 450)

        print(
            f"\n{engine}/{fault}: B's clients on A {moved_after[0]:.2f} s after the fault (bound {MOVE_BOUND_S:.1f} s)"
        )
        assert moved_after[0] <= MOVE_BOUND_S
        # B said why while it was out: the store or the bus check failed, with a cause.
        failing = {name for body in unready_bodies for name, check in body["checks"].items() if not check["ok"]}
        assert failing & {"store", "bus"}, unready_bodies[-1]
        last = unready_bodies[-1]
        assert not last["ready"] and last["shedding"]
        assert all(last["checks"][name]["error"] for name, check in last["checks"].items() if not check["ok"])

        # Healed: B is ready again and takes a new connection.
        await wait_until("B ready again", lambda: ready(b), 20)
        async with connect([b.ws_url], tokens[users[7]], **FAST) as late:
            assert late.url == b.ws_url
    finally:
        for client in clients.values():
            await client.aclose()


async def test_a_node_that_is_not_ready_refuses_websocket_upgrades_with_4504(tmp_path: Path) -> None:
    """[R-CODE-21] A node whose store is blackholed from the start of a connection attempt answers 503 + 4504."""
    async with node_behind_proxy(tmp_path, "--secret", SECRET) as (node, proxy):
        proxy.blackhole()
        await wait_until("the node not ready", lambda: ready(node, False), DETECT_S + 5)
        async with aiohttp.ClientSession() as http:
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await http.ws_connect(node.ws_url)
        assert refused.value.status == 503
        upgrade = {
            "Connection": "Upgrade",
            "Upgrade": "websocket",
            "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        }
        http_url = node.ws_url.replace("ws://", "http://")
        async with aiohttp.ClientSession() as http, http.get(http_url, headers=upgrade) as resp:
            assert resp.status == 503
            assert (await resp.json())["code"] == 4504


async def test_livez_and_readyz_on_the_embedded_default(tmp_path: Path) -> None:
    node = ServerProcess(tmp_path / "data")
    (tmp_path / "data").mkdir()
    await node.start()
    try:
        status, body = await readyz(node)
        assert status == 200
        assert body["ready"] is True and body["draining"] is False and body["shedding"] is False
        assert set(body["checks"]) == {"store", "bus"}
        assert body["warnings"] == []  # the embedded store fsyncs every commit
        assert all(check["ok"] and check["error"] is None for check in body["checks"].values())
        async with aiohttp.ClientSession() as http:
            for path in ("/livez", "/healthz"):
                async with http.get(node.url + path) as resp:
                    assert resp.status == 200 and await resp.json() == {"status": "ok"}
    finally:
        node.stop()


def test_operations_doc_states_the_code_defaults() -> None:
    """docs/operations.md's settings table is checked against roost.config.Limits (one source per rule)."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text()
    rows = {}
    for line in doc.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`") and cells[0].endswith("_s`"):
            rows[cells[0].strip("`")] = float(cells[1])
    assert rows == {
        "probe_interval_s": LIMITS.probe_interval_s,
        "probe_timeout_s": LIMITS.probe_timeout_s,
        "unready_grace_s": LIMITS.unready_grace_s,
    }
    assert f"({SHED_BOUND_S:g} s)" in doc and f"({MOVE_BOUND_S:g} s from the fault)" in doc


async def test_a_503_says_how_long_to_wait_at_least(tmp_path: Path) -> None:
    """With the store cut off, a send over HTTP is 503 with ``Retry-After: 1`` and ``retry_after_s`` 1."""
    async with node_behind_proxy(tmp_path) as (node, proxy), aiohttp.ClientSession() as http:
        async with http.post(node.url + "/api/login", json={"name": "alice"}) as resp:
            headers = {"Authorization": f"Bearer {(await resp.json())['token']}"}
        async with http.post(node.url + "/api/rooms", json={"room": "r"}, headers=headers) as resp:
            assert resp.status == 201, await resp.text()
        proxy.cut()
        body = {"cmid": "c1", "body": "hello"}
        async with http.post(node.url + "/api/rooms/r/messages", json=body, headers=headers) as resp:
            assert resp.status == 503
            assert resp.headers["Retry-After"] == "1"
            error = (await resp.json())["error"]
    assert error["code"] == 4503 and error["retry_after_s"] == 1.0 and error["reason"].startswith("redis: ")


def test_no_user_can_name_the_probe_rooms() -> None:
    """The readiness probes write to and publish on rooms outside the room-name alphabet: they can never
    be a user's room, so no user sees a probe reader in "seen by" or a probe payload on a subscription."""
    from roost.protocol.types import valid_room
    from roost.readiness import PROBE_ROOM

    assert not valid_room(PROBE_ROOM) and not valid_room(f"{PROBE_ROOM}-0123abcd")


async def test_a_node_that_stays_unready_closes_its_connections_with_4504(tmp_path: Path) -> None:
    """[R-CODE-21] A node that cannot reach its store for longer than its grace period closes every connection
    with 4504: a close, no error frame; and refuses new WebSocket upgrades with HTTP 503 (the test above)."""
    async with node_behind_proxy(tmp_path, "--secret", SECRET) as (node, proxy):
        token = await issue_token("alice", tmp_path / "tokens", SECRET)
        async with aiohttp.ClientSession() as http, http.ws_connect(f"{node.ws_url}?token={token}") as ws:
            assert (await ws.receive_json(timeout=5))["type"] == "welcome"
            t0 = time.monotonic()
            proxy.blackhole()
            frames_seen = []
            async for msg in ws:
                frames_seen.append(msg.data)
            elapsed = time.monotonic() - t0
            assert ws.close_code == 4504 and frames_seen == [], (ws.close_code, frames_seen)
            assert elapsed <= SHED_BOUND_S + 2, elapsed
