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
    note: str = ""
    tags: tuple[str, ...] = field(default=())


TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target("roost", "roost", "roost", note="Roost, embedded default (SQLite WAL + in-process bus), durable acks"),
        Target(
            "roost-baseline",
            "roost",
            "roost",
            note="Roost from another checkout (ROOST_BENCH_BASELINE_SRC=<its src folder>), for before/after",
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

    def __init__(self, target: Target, base: Path, peers: Path, secret: str, prefix: str) -> None:
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
        for i in range(target.processes):
            port = free_port()
            core = str(i % max(1, os.cpu_count() or 1)) if target.processes > 1 else "0"
            argv = ["taskset", "-c", core] if shutil.which("taskset") else []
            own = self.engines[0] if self.engines and isinstance(self.engines[0], RedisServer) else None
            argv += self._argv(target, port, base / f"data{i}", peers, secret, prefix, own)
            self.procs.append(Process(f"{target.name}-{i}", argv, base / f"{target.name}-{i}.log", port))

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
        return [f"ws://{HOST}:{p.port}" for p in self.procs]

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
        for p in self.procs:
            if self.target.kind == "roost":
                await wait_healthy(p, f"http://{HOST}:{p.port}", within_s=30)
            else:
                await p.wait_port(30)

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
        for engine in self.engines:
            engine.stop()
        if self.pg_dir is not None:
            shutil.rmtree(self.pg_dir, ignore_errors=True)


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
