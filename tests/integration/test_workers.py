"""``roost serve --workers 2`` as a real process tree over the machine's Redis and NATS (each test its own prefix).

Which worker a connection lands on is the kernel's choice (one accept queue, roost/workers/sockets.py), so the tests
find out instead of choosing: each worker's own ``/readyz`` and ``/metrics`` (``--metrics-port-base 0``) say its
node id and how many WebSocket connections it holds; a client is placed on a worker by connecting through the
shared port until the wanted worker's count rises.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest

from roost.chaos.infra import wait_until
from roost.client import Client, Sent, connect
from roost.workers.supervisor import GIVE_UP_AFTER

from ..backends import NATS, REDIS, _clean_nats, _clean_redis
from .procs import WorkersProcess, issue_token
from .test_multinode import FAST, check_exact, live_probe, open_room, stream, texts_within

pytestmark = pytest.mark.slow

SECRET = "workers-test-secret"


def _alive(pid: int) -> bool:
    """The process exists and is not a zombie waiting to be reaped."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _descendants(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as children:
                for child in children.read().split():
                    out += [int(child), *_descendants(int(child))]
    except OSError:
        pass
    return out


async def _get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http, http.get(url, headers={"Connection": "close"}) as resp:
        return resp.status, await resp.text()


async def node_ids(proc: WorkersProcess) -> list[str]:
    """Each worker's node id, from its own /readyz."""
    ids = []
    for url in proc.worker_urls:
        async with aiohttp.ClientSession() as http, http.get(f"{url}/readyz") as resp:
            ids.append((await resp.json())["node"])
    return ids


async def connection_counts(proc: WorkersProcess) -> list[int]:
    """Each worker's open WebSocket connections, from its own /metrics."""
    counts = []
    for i, url in enumerate(proc.worker_urls):
        _, text = await _get(f"{url}/metrics")
        found = re.search(rf'^roost_connections\{{worker="{i}"\}} (\S+)$', text, re.M)
        assert found is not None, text[:2000]
        counts.append(int(float(found.group(1))))
    return counts


async def placed(proc: WorkersProcess, token: str, worker: int) -> Client:
    """A client connected through the shared port whose connection worker ``worker`` accepted."""
    for _ in range(100):
        before = await connection_counts(proc)
        client = connect(proc.ws_url, token, **FAST)
        await client.start()
        now = await wait_until("the new connection in a worker's count", _counted(proc, sum(before) + 1), 10)
        if now[worker] == before[worker] + 1:
            return client
        await client.aclose()
        await wait_until("the connection gone", _counted(proc, sum(before)), 10)
    raise AssertionError(f"no connection landed on worker {worker} in 100 attempts")


def _counted(proc: WorkersProcess, total: int) -> Callable[[], Awaitable[list[int] | None]]:
    """A check for ``wait_until``: the workers' connection counts once they add up to ``total``."""

    async def check() -> list[int] | None:
        now = await connection_counts(proc)
        return now if sum(now) == total else None

    return check


async def both_ways(a: Client, b: Client, room: str) -> None:
    """A message from ``a`` (on one worker) arrives live at ``b`` (on the other), and one from ``b`` at ``a``."""
    await live_probe(a, b, room)
    assert len(await texts_within(a, 5, stop_at=1)) == 1  # the sender's own copy, before the other way
    await live_probe(b, a, room)
    assert len(await texts_within(b, 5, stop_at=1)) == 1


@pytest.fixture(params=["redis", "nats"])
async def engine(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """A ``--store`` URL on the machine's Redis or NATS under a fresh prefix, removed afterwards."""
    ns = "w" + uuid.uuid4().hex[:10]
    base = REDIS if request.param == "redis" else NATS
    yield f"{base}?prefix={ns}"
    if request.param == "redis":
        await _clean_redis(REDIS, ns)
    else:
        await _clean_nats(NATS, ns)


@pytest.fixture
async def workers(engine: str, tmp_path: Path) -> AsyncIterator[WorkersProcess]:
    (tmp_path / "w").mkdir()
    proc = WorkersProcess(tmp_path / "w" / "data", 2, "--store", engine, "--secret", SECRET)
    await proc.start()
    try:
        yield proc
    finally:
        proc.stop()


async def test_the_workers_share_one_port_and_are_distinct_nodes(workers: WorkersProcess) -> None:
    """[R-WORK-2] One port, bound once by the parent (``--port 0``: the real port printed once), served by two
    workers that are two nodes: connections through it reach both, each worker answering with its own node id.
    [R-WORK-6] Each worker's /metrics series carry ``worker="<i>"``, ``roost_node_info`` names its node id, and
    ``--metrics-port-base`` serves each worker's own /livez, /readyz and /metrics."""
    output = workers.text()
    assert len(re.findall(r"^roost: listening on ", output, re.M)) == 1, output
    ids = await node_ids(workers)
    assert len(set(ids)) == 2, ids
    seen: set[str] = set()

    async def both_answered() -> bool:
        for _ in range(20):
            status, body = await _get(f"{workers.url}/readyz")  # a new connection each time: accepted anew
            assert status == 200
            seen.add(json.loads(body)["node"])
        return seen == set(ids)

    await wait_until("both workers answering on the shared port", both_answered, 30)
    for i, url in enumerate(workers.worker_urls):
        status, _ = await _get(f"{url}/livez")
        assert status == 200
        _, text = await _get(f"{url}/metrics")
        assert f'roost_node_info{{node="{ids[i]}",worker="{i}"}} 1.0' in text
        series = [line for line in text.splitlines() if line.startswith("roost_") and "{" in line]
        assert series and all(f'worker="{i}"' in line for line in series), series[:5]
        unlabelled = [line for line in text.splitlines() if re.match(r"^roost_\w+ ", line)]
        assert not unlabelled, unlabelled[:5]


async def test_a_message_through_one_worker_reaches_the_other_and_a_killed_worker_is_replaced(
    workers: WorkersProcess, tmp_path: Path
) -> None:
    """[R-WORK-2] A message sent through one worker is delivered live to a client on the other.
    [R-WORK-3] ``kill -9`` of a worker mid-stream: its client reconnects through the same port and catches up,
    every acked message stored once and seen once in order by every receiver; the parent logs one line, starts a
    new worker (a new node id) on the same sockets, and it serves."""
    users = ("alice", "bob")
    issued = await asyncio.gather(*(issue_token(u, tmp_path / "tokens", SECRET) for u in users))
    tok = dict(zip(users, issued, strict=True))
    alice = await placed(workers, tok["alice"], 0)
    bob = await placed(workers, tok["bob"], 1)
    try:
        await open_room("p", alice, bob)  # the live probes' room: "r" holds the stream's messages only
        await open_room("r", alice, bob)
        await both_ways(alice, bob, "p")
        ids_before = await node_ids(workers)
        victim = workers.pids()[1]
        killed = asyncio.Event()

        async def kill_bobs_worker(acks: list[Sent]) -> None:
            await wait_until("100 acks", lambda: len(acks) >= 100, 60, every_s=0.005)
            os.kill(victim, signal.SIGKILL)
            killed.set()

        acks, received = await stream(
            "r", {"alice": (alice, 150), "bob": (bob, 150)}, [alice, bob], chaos=kill_bobs_worker, timeout=60
        )
        assert killed.is_set() and bob.reconnects >= 1 and alice.reconnects == 0
        # Read through the shared port: whichever worker accepts reads the store (check_exact uses only ``url``).
        await check_exact(workers, tok["alice"], "r", acks, received, 300)  # type: ignore[arg-type]

        await wait_until("a new worker 1", lambda: workers.pids().get(1) not in (None, victim), 30)
        await wait_until("the new worker 1 ready", lambda: _ready(workers.worker_urls[1]), 30)
        ids_after = await node_ids(workers)
        assert ids_after[0] == ids_before[0] and ids_after[1] not in ids_before
        assert len(re.findall(r"workers: worker 1 \(pid \d+\) ended unexpectedly", workers.text())) == 1
        assert not _alive(victim)
        carol_token = await issue_token("carol", tmp_path / "tokens", SECRET)
        carol = await placed(workers, carol_token, 1)  # the new worker accepts on the shared port
        try:
            await carol.join("p")
            await carol.subscribe("p")
            await live_probe(alice, carol, "p")
        finally:
            await carol.aclose()
    finally:
        await alice.aclose()
        await bob.aclose()


async def _ready(url: str) -> bool:
    try:
        status, _ = await _get(f"{url}/readyz")
    except aiohttp.ClientError:
        return False
    return status == 200


async def _stopped(proc: WorkersProcess, within_s: float) -> int:
    assert proc.proc is not None
    code = await asyncio.to_thread(proc.proc.wait, within_s)
    return code


async def test_sigterm_to_the_parent_stops_every_worker_and_exits_0(workers: WorkersProcess) -> None:
    """[R-WORK-5] SIGTERM to the parent: each worker drains and stops, the parent exits 0, and no worker (nor a
    worker's own child, the search indexer) is left running."""
    assert workers.proc is not None
    tree = _descendants(workers.proc.pid)
    assert set(workers.pids().values()) <= set(tree) and len(tree) >= 2, tree
    t0 = time.monotonic()
    workers.proc.send_signal(signal.SIGTERM)
    assert await _stopped(workers, 20) == 0
    took = time.monotonic() - t0
    print(f"\nSIGTERM to exit of the parent and its {len(tree)} descendants: {took:.2f} s")
    await wait_until("no descendant left", lambda: not any(_alive(pid) for pid in tree), 10)
    assert re.search(r"workers: stopped \(worker 0: exit status 0, worker 1: exit status 0\)", workers.text())


async def test_a_worker_whose_parent_died_stops(workers: WorkersProcess) -> None:
    """[R-WORK-5] ``kill -9`` of the parent: its workers stop by themselves (PR_SET_PDEATHSIG, the end of the pipe
    the parent held), and so do their own children."""
    assert workers.proc is not None
    tree = _descendants(workers.proc.pid)
    workers.kill()
    await wait_until("every worker gone", lambda: not any(_alive(pid) for pid in tree), 20)


@pytest.mark.parametrize("engine", ["redis"], indirect=True)
async def test_a_worker_that_keeps_dying_makes_the_parent_give_up(workers: WorkersProcess) -> None:
    """[R-WORK-4] A worker that dies again and again, each time soon after its start, is restarted with a growing
    backoff until the parent gives up: it stops the other worker and exits 1."""
    assert workers.proc is not None
    other = workers.pids()[0]
    for death in range(GIVE_UP_AFTER):
        victim = workers.pids()[1]
        os.kill(victim, signal.SIGKILL)
        if death < GIVE_UP_AFTER - 1:
            await wait_until(f"restart {death + 1}", lambda v=victim: workers.pids()[1] != v, 30)  # type: ignore[misc]
    assert await _stopped(workers, 30) == 1
    assert "workers: worker 1 ended 5 times in a row" in workers.text()
    await wait_until("the other worker stopped too", lambda: not _alive(other), 10)


async def test_a_worker_refusing_its_settings_stops_the_parent_at_once(tmp_path: Path) -> None:
    """[R-WORK-4] A mistake only a worker finds (here an unknown search index) is not restarted: the parent stops
    with the worker's exit status 2 and its one line."""
    ns = "w" + uuid.uuid4().hex[:10]
    argv = [sys.executable, "-m", "roost", "serve", "--workers", "2", "--port", "0", "--data-dir", str(tmp_path)]
    argv += ["--store", f"{REDIS}?prefix={ns}", "--secret", SECRET, "--search", "bogus://x"]
    try:
        result = await asyncio.to_thread(subprocess.run, argv, capture_output=True, text=True, timeout=60)
    finally:
        await _clean_redis(REDIS, ns)
    assert result.returncode == 2, result.stderr
    assert "roost: error: unsupported search index 'bogus://x'" in result.stderr
    assert "ended unexpectedly" not in result.stderr


@pytest.mark.parametrize(
    "extra",
    [(), ("--store", "sqlite"), ("--store", "postgresql://postgres@127.0.0.1/test")],
    ids=["embedded", "sqlite-url", "postgres-without-bus"],
)
async def test_workers_are_refused_without_a_shared_store_and_bus(tmp_path: Path, extra: tuple[str, ...]) -> None:
    """[R-WORK-1] ``--workers 2`` on the embedded store (or a shared store with the in-process bus) is refused
    before anything starts: one line, exit status 2."""
    argv = [sys.executable, "-m", "roost", "serve", "--workers", "2", "--port", "0", "--data-dir", str(tmp_path / "d")]
    result = await asyncio.to_thread(subprocess.run, [*argv, *extra], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("roost: error: --workers 2 needs a "), result.stderr
    assert not (tmp_path / "d").exists()  # nothing was started, not even the data directory


async def test_picows_with_workers_shares_its_websocket_port(tmp_path: Path) -> None:
    """[R-WORK-2] With ``--ws-transport picows`` the parent binds the WebSocket port too, and both workers accept
    WebSocket connections on it: a message through one reaches a client of the other live."""
    ns = "w" + uuid.uuid4().hex[:10]
    (tmp_path / "w").mkdir()
    proc = WorkersProcess(
        tmp_path / "w" / "data", 2, "--store", f"{REDIS}?prefix={ns}", "--secret", SECRET, "--ws-transport", "picows"
    )
    await proc.start()
    clients: list[Client] = []
    try:
        assert proc.ws_url != f"ws://127.0.0.1:{proc.port}/ws"
        issued = await asyncio.gather(*(issue_token(u, tmp_path / "tokens", SECRET) for u in ("alice", "bob")))
        clients = [await placed(proc, issued[0], 0), await placed(proc, issued[1], 1)]
        await open_room("r", *clients)
        await both_ways(clients[0], clients[1], "r")
    finally:
        closing: list[Awaitable[None]] = [c.aclose() for c in clients]
        await asyncio.gather(*closing)
        proc.stop()
        await _clean_redis(REDIS, ns)
