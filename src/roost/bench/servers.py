"""The servers a benchmark run compares: Roost on each engine, the bare ceilings, the Socket.IO peers.

Every server is a child process pinned to its own core (``taskset``), started fresh for each
scenario, and stopped by its pid. The peers live in the repository's ``bench/peers`` folder.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from ..chaos.infra import HOST, PostgresServer, Process, RedisServer, free_port, wait_healthy

__all__ = ["TARGETS", "Server", "Target", "cpu_seconds", "rss_bytes"]


@dataclass(frozen=True)
class Target:
    """One thing to measure: how to start it and which wire shape it speaks."""

    name: str
    shape: str
    kind: str
    """roost | bare-aiohttp | bare-picows | socketio-node | socketio-py"""
    store: str | None = None
    bus: str | None = None
    processes: int = 1
    workers: int = 1
    """``roost serve --workers N``: one process whose N workers share its port (and the cores 0 to N-1)."""
    consumer: bool = False
    """One durable consumer attached (every event of every room POSTed to a receiver of the bench's own)."""
    note: str = ""
    tags: tuple[str, ...] = field(default=())


TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target("roost", "roost", "roost", note="Roost, embedded default (SQLite WAL + in-process bus), durable acks"),
        Target(
            "roost-nosearch",
            "roost",
            "roost",
            note="Roost, embedded default with --search off: against roost, the cost of the search indexer",
        ),
        Target(
            "roost-baseline",
            "roost",
            "roost",
            note="Roost from another checkout (ROOST_BENCH_BASELINE_SRC=<its src folder>), for before/after",
        ),
        Target(
            "roost-consumer",
            "roost",
            "roost",
            consumer=True,
            note="Roost, embedded, with one durable consumer attached: every event POSTed to a receiver on the "
            "generator's core",
        ),
        Target(
            "roost-picows",
            "roost",
            "roost",
            note="Roost, embedded default, with --ws-transport picows: the WebSocket on a port of its own",
        ),
        Target("bare-aiohttp", "bare", "bare-aiohttp", note="bare broadcast on aiohttp (Roost's stack): no storage"),
        Target("bare-picows", "bare", "bare-picows", note="bare broadcast on picows (fastest maintained stack)"),
        Target("socketio-node", "socketio", "socketio-node", note="Node socket.io 4 + redis-streams-adapter + CSR"),
        Target("socketio-py", "socketio", "socketio-py", note="python-socketio + AsyncRedisManager"),
        Target("roost-redis", "roost", "roost", store="redis", bus="redis", note="Roost on Redis Streams + Pub/Sub"),
        Target(
            "roost-redis-x2", "roost", "roost", store="redis", bus="redis", processes=2, note="2 Roost processes, Redis"
        ),
        Target(
            "roost-redis-repl",
            "roost",
            "roost",
            store="redis-repl",
            bus="redis-repl",
            note="Roost on a Redis primary with one replica of its own (AOF everysec), acks without waiting",
        ),
        Target(
            "roost-redis-wait",
            "roost",
            "roost",
            store="redis-repl-wait",
            bus="redis-repl",
            note="the same with ?wait=1: every write acked once the replica has it",
        ),
        Target(
            "roost-pg",
            "roost",
            "roost",
            store="pg",
            bus="redis",
            note="Roost on a PostgreSQL of its own (defaults: fsync, synchronous_commit on), Redis bus",
        ),
        Target(
            "roost-pg-sync",
            "roost",
            "roost",
            store="pg-sync",
            bus="redis",
            note="the same primary with a synchronous standby (remote_apply): every write acked once applied there",
        ),
        Target("roost-nats", "roost", "roost", store="nats", bus="nats", note="Roost on NATS JetStream + core NATS"),
        Target(
            "roost-nats-x2", "roost", "roost", store="nats", bus="nats", processes=2, note="2 Roost processes, NATS"
        ),
        Target(
            "roost-redis-w2",
            "roost",
            "roost",
            store="redis",
            bus="redis",
            workers=2,
            note="one roost serve --workers 2 (two nodes sharing one port), Redis",
        ),
        Target(
            "roost-nats-w2",
            "roost",
            "roost",
            store="nats",
            bus="nats",
            workers=2,
            note="one roost serve --workers 2 (two nodes sharing one port), NATS",
        ),
    )
}


def _engine_url(engine: str | None, prefix: str, own: RedisServer | None = None) -> str | None:
    """The URL of a shared engine or of the target's own Redis; a PostgreSQL of its own is named in ``start``."""
    if engine == "redis":
        return f"redis://{HOST}:6379/0?prefix={prefix}"
    if engine == "nats":
        return f"nats://{HOST}:4222?prefix={prefix}"
    if engine in ("redis-repl", "redis-repl-wait") and own is not None:
        return f"{own.url}?prefix={prefix}" + ("&wait=1" if engine == "redis-repl-wait" else "")
    return None


class Server:
    """The processes of one target for one scenario."""

    def __init__(
        self, target: Target, base: Path, peers: Path, secret: str, prefix: str, flags: tuple[str, ...] = ()
    ) -> None:
        """``flags``: more ``roost serve`` flags for a Roost target (a ``wire`` variant's ``--ws-compression``)."""
        self.target = target
        self.procs: list[Process] = []
        base.mkdir(parents=True, exist_ok=True)
        self.engines: list[Process] = []
        """Engines of the target's own (a Redis primary and its replica, a PostgreSQL and its standby), started
        before it, stopped after."""
        self.pg_dir: Path | None = None
        if target.store in ("redis-repl", "redis-repl-wait"):
            primary = RedisServer(base, appendfsync="everysec")
            replica = RedisServer(base, appendfsync="everysec")
            replica.argv += ["--replicaof", HOST, str(primary.port)]
            self.engines = [primary, replica]
        self.ws_ports: list[int] = []
        """Each process's WebSocket port: its HTTP port but with ``--ws-transport picows``."""
        self.metrics_base = _free_ports_in_a_row(target.workers) if target.workers > 1 else None
        """With workers: worker i's /readyz and /metrics are on this port + i (the shared port answers from any)."""
        cpus = max(1, os.cpu_count() or 1)
        for i in range(target.processes):
            port = free_port()
            self.ws_ports.append(free_port() if target.name == "roost-picows" else port)
            core = str(i % cpus) if target.processes > 1 else "0"
            if target.workers > 1:
                core = ",".join(sorted({str(w % cpus) for w in range(target.workers)}))
            argv = ["taskset", "-c", core] if shutil.which("taskset") else []
            own = self.engines[0] if self.engines and isinstance(self.engines[0], RedisServer) else None
            argv += self._argv(target, port, base / f"data{i}", peers, secret, prefix, own)
            if target.name == "roost-picows":
                argv += ["--ws-transport", "picows", "--ws-port", str(self.ws_ports[-1])]
            if self.metrics_base is not None:
                argv += ["--workers", str(target.workers), "--metrics-port-base", str(self.metrics_base)]
            if target.kind == "roost":
                argv += list(flags)
            self.procs.append(Process(f"{target.name}-{i}", argv, base / f"{target.name}-{i}.log", port))
        self.secret = secret
        self.receiver: Process | None = None
        if target.consumer:
            port = free_port()
            argv = ["taskset", "-c", "1"] if shutil.which("taskset") else []
            argv += [sys.executable, str(peers / "hook_receiver.py"), "--port", str(port)]
            self.receiver = Process("hook-receiver", argv, base / "hook-receiver.log", port)

    @staticmethod
    def _argv(
        target: Target, port: int, data: Path, peers: Path, secret: str, prefix: str, own: RedisServer | None
    ) -> list[str]:
        py = sys.executable
        if target.kind == "roost":
            argv = [py, "-m", "roost", "serve", "--port", str(port), "--data-dir", str(data)]
            argv += [f"--secret={secret}", "--log-level", "WARNING"]
            if target.name != "roost-baseline":  # (an older checkout may not know the setting)
                # The load generator is one address opening thousands of connections at once (the storm's
                # reconnects): a per-source cap is for distinct clients, and would shed its slow handshakes.
                argv += ["--limit", "max_pending_per_source=0"]
            store, bus = _engine_url(target.store, prefix, own), _engine_url(target.bus, prefix, own)
            if store:
                argv += ["--store", store]
            if bus:
                argv += ["--bus", bus]
            if target.name == "roost-nosearch":
                argv += ["--search", "off"]
            return argv
        if target.kind == "bare-aiohttp":
            return [py, str(peers / "bare_aiohttp.py"), "--port", str(port)]
        if target.kind == "bare-picows":
            return [py, str(peers / "bare_picows.py"), "--port", str(port)]
        if target.kind == "socketio-py":
            return [py, str(peers / "socketio_py.py"), "--port", str(port), "--channel", prefix]
        if target.kind == "socketio-node":
            node = shutil.which("node") or "node"
            server = peers / "socketio_node" / "server.js"
            return [node, str(server), "--port", str(port), "--redis", f"redis://{HOST}:6379", "--stream", prefix]
        raise ValueError(f"unknown target kind {target.kind}")

    @property
    def urls(self) -> list[str]:
        """Where the load generators connect (``/ws`` after it)."""
        return [f"ws://{HOST}:{port}" for port in self.ws_ports]

    @property
    def http_urls(self) -> list[str]:
        """Each node's HTTP API (/metrics): the same port as ``urls`` but with picows; with workers, each worker's
        own metrics port (the shared one answers from whichever worker accepts)."""
        if self.metrics_base is not None:
            return [f"http://{HOST}:{self.metrics_base + i}" for i in range(self.target.workers)]
        return [f"http://{HOST}:{p.port}" for p in self.procs]

    @property
    def pids(self) -> list[int]:
        return [p.proc.pid for p in self.procs if p.proc is not None]

    async def start(self) -> None:
        for engine in self.engines:
            await engine.start()
        if len(self.engines) == 2 and isinstance(self.engines[1], RedisServer):
            await self._replica_linked(self.engines[1])
        if self.target.store in ("pg", "pg-sync"):
            await self._postgres(sync=self.target.store == "pg-sync")
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        if self.target.name == "roost-baseline":
            baseline = os.environ.get("ROOST_BENCH_BASELINE_SRC")
            if not baseline:
                raise RuntimeError("roost-baseline needs ROOST_BENCH_BASELINE_SRC=<src folder of the other checkout>")
            env["PYTHONPATH"] = baseline
        for p in self.procs:
            p.spawn(env)
        if self.receiver is not None:
            await self.receiver.start()
        for p in self.procs:
            if self.target.kind == "roost":
                for url in self.http_urls if self.metrics_base is not None else [f"http://{HOST}:{p.port}"]:
                    await wait_healthy(p, url, within_s=30)  # with workers: every worker ready
            else:
                await p.wait_port(30)
        if self.receiver is not None:
            await self._attach_consumer(self.receiver.port)

    def _admin(self) -> dict[str, str]:
        from ..auth import TokenAuthority

        return {"Authorization": f"Bearer {TokenAuthority(self.secret).issue('bench', ttl_s=3600, roles=['admin'])}"}

    async def _attach_consumer(self, port: int) -> None:
        """Every room, every event, from now: the most a consumer can ask of the node delivering it."""
        import aiohttp

        body = {"url": f"http://{HOST}:{port}/hook", "kinds": ["public", "private", "direct"]}
        async with aiohttp.ClientSession() as http:
            async with http.post(
                f"http://{HOST}:{self.procs[0].port}/api/consumers", json=body, headers=self._admin()
            ) as r:
                answer = await r.json()
                if r.status != 201:
                    raise RuntimeError(f"the bench's consumer was refused: {r.status} {answer}")
            async with http.put(f"http://{HOST}:{port}/secret", data=answer["secret"]) as r:
                r.raise_for_status()
            for _ in range(300):  # a node takes a new consumer's lease at its next scan: measure once one has
                async with http.get(f"http://{HOST}:{self.procs[0].port}/api/consumers", headers=self._admin()) as r:
                    if (await r.json())["consumers"][0]["holder"]:
                        return
                await asyncio.sleep(0.1)
            raise RuntimeError("no node took the bench's consumer in 30 s")

    async def consumer_report(self) -> dict[str, object] | None:
        """What the consumer delivered by the end of the scenario, and how far behind it was."""
        if self.receiver is None:
            return None
        import aiohttp

        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://{HOST}:{self.receiver.port}/count") as r:
                counts = await r.json()
            async with http.get(f"http://{HOST}:{self.procs[0].port}/api/consumers", headers=self._admin()) as r:
                consumers = (await r.json())["consumers"]
        state = consumers[0] if consumers else {}
        return {**counts, "lag": state.get("lag"), "state": state.get("state"), "failures": state.get("failures")}

    async def _postgres(self, sync: bool) -> None:
        """A PostgreSQL of the target's own (initdb), and for ``sync`` a standby of it (``pg_basebackup``) that
        the primary waits for on every commit; the nodes' ``--store`` names both, writable one first."""
        self.pg_dir = Path(tempfile.mkdtemp(prefix="roost-bench-pg-"))
        self.pg_dir.chmod(0o755)  # PostgreSQL runs as its own user
        settings = ("synchronous_standby_names=*", "synchronous_commit=remote_apply") if sync else ()
        primary = PostgresServer(self.pg_dir, "max_connections=200", *settings)
        self.engines.append(primary)
        await primary.start()
        hosts = f"{HOST}:{primary.port}"
        if sync:
            standby = PostgresServer(self.pg_dir, "max_connections=200", standby_of=primary)
            self.engines.append(standby)
            await standby.start()
            hosts += f",{HOST}:{standby.port}"
        store = f"postgresql://postgres@{hosts}/postgres?target_session_attrs=read-write"
        for p in self.procs:
            p.argv += ["--store", store]

    @staticmethod
    async def _replica_linked(replica: RedisServer) -> None:
        import redis.asyncio as aioredis

        client = aioredis.Redis(host=HOST, port=replica.port)
        try:
            for _ in range(600):
                info = await client.info("replication")
                if info.get("master_link_status") == "up":
                    return
                await asyncio.sleep(0.05)
            raise TimeoutError("the bench's Redis replica did not link to its primary in 30 s")
        finally:
            await client.aclose()

    def stop(self) -> None:
        for p in self.procs:
            p.stop()
        if self.receiver is not None:
            self.receiver.stop()
        for engine in self.engines:
            engine.stop()
        if self.pg_dir is not None:
            shutil.rmtree(self.pg_dir, ignore_errors=True)


def _free_ports_in_a_row(count: int) -> int:
    """A port P such that P to P + count - 1 are free now (``--metrics-port-base``)."""
    import socket

    for _ in range(100):
        base = free_port()
        socks: list[socket.socket] = []
        try:
            for port in range(base, base + count):
                sock = socket.socket()
                socks.append(sock)
                sock.bind((HOST, port))
            return base
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
    raise RuntimeError(f"no {count} free ports in a row")


def _tree(pid: int) -> list[int]:
    out = [pid]
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            children = Path(f"/proc/{pid}/task/{task}/children").read_text().split()
            for child in children:
                out += _tree(int(child))
    except OSError:
        pass
    return out


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of these processes and their children, in seconds."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for root in pids:
        for pid in _tree(root):
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])
    return total / ticks


def rss_bytes(pids: list[int]) -> int:
    total = 0
    for root in pids:
        for pid in _tree(root):
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
            except OSError:
                continue
    return total
