"""Real processes for chaos runs: Roost nodes and the brokers under them, each stopped by its own pid."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import aiohttp

from .. import durable

__all__ = [
    "NatsServer",
    "PostgresServer",
    "Process",
    "RedisServer",
    "RoostNode",
    "free_port",
    "wait_healthy",
    "wait_until",
]

HOST = "127.0.0.1"
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


async def wait_until(
    what: str, check: Callable[[], T | Awaitable[T]], within_s: float = 10.0, every_s: float = 0.02
) -> T:
    """Poll ``check`` (a function or a coroutine function) until it returns something truthy, and return that.

    The way to wait for something to have happened, instead of sleeping for as long as it usually takes: on a
    quiet machine it returns as soon as the condition holds, on a loaded one it waits up to ``within_s``
    (a bound on failing, so generous) and then fails saying ``what`` never happened."""
    deadline = time.monotonic() + within_s
    while True:
        result = check()
        if isinstance(result, Awaitable):
            result = await result
        if result:
            return result
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what}: not within {within_s:g} s")
        await asyncio.sleep(every_s)


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((HOST, port)) == 0


class Process:
    """A child process we own: start, kill -9, pause (SIGSTOP), resume (SIGCONT), stop."""

    def __init__(self, name: str, argv: list[str], log: Path, port: int) -> None:
        self.name = name
        self.argv = argv
        self.log = log
        self.port = port
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def spawn(self, env: dict[str, str] | None = None) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, env=env)

    async def start(self) -> None:
        """Start it and return once it listens (a Roost node: once it is ready)."""
        self.spawn()
        await self.wait_port()

    async def wait_port(self, within_s: float = 20.0) -> None:
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            if not self.running:
                raise RuntimeError(f"{self.name} exited: {self.log.read_text()[-1500:]}")
            if _port_open(self.port):
                return
            await asyncio.sleep(0.05)
        raise TimeoutError(f"{self.name} did not listen on {self.port}")

    def kill(self) -> None:
        if self.running:
            assert self.proc is not None
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def pause(self) -> None:
        if self.running:
            assert self.proc is not None
            os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self.running:
            assert self.proc is not None
            os.kill(self.proc.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.running:
            assert self.proc is not None
            os.kill(self.proc.pid, signal.SIGCONT)
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


async def wait_healthy(process: Process, url: str, within_s: float = 15.0) -> None:
    """Until ``GET url/readyz`` answers 200 (the node serves, not just listens); fail early, with the log's
    tail, if the process died. A Roost from before ``/readyz`` (a benchmark baseline) is asked ``/healthz``."""
    deadline = time.monotonic() + within_s
    probe = "/readyz"
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            if not process.running:
                raise RuntimeError(f"{process.name} exited: {process.log.read_text()[-2000:]}")
            try:
                async with http.get(url + probe) as resp:
                    if resp.status == 200:
                        return
                    if resp.status == 404:
                        probe = "/healthz"
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    raise TimeoutError(f"{process.name} did not become healthy: {process.log.read_text()[-2000:]}")


class RoostNode(Process):
    def __init__(
        self, base: Path, index: int, store: str | None, bus: str | None, secret: str, data_base: Path | None = None
    ) -> None:
        """``data_base``: where the node's data directory goes (default ``base``; a power-loss run puts it on
        the filesystem that loses power, and the log stays in ``base``)."""
        port = free_port()
        self.data_dir = (data_base or base) / f"node{index}"
        argv = [
            sys.executable,
            "-m",
            "roost",
            "serve",
            "--port",
            str(port),
            "--data-dir",
            str(self.data_dir),
            f"--secret={secret}",  # one argument: a generated secret may begin with "-"
            "--log-level",
            "WARNING",
        ]
        if store:
            argv += ["--store", store]
        if bus:
            argv += ["--bus", bus]
        super().__init__(f"node{index}", argv, base / f"node{index}.log", port)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{HOST}:{self.port}/ws"

    async def start(self) -> None:
        self.spawn(dict(os.environ, PYTHONUNBUFFERED="1"))
        await wait_healthy(self, self.url)


class RedisServer(Process):
    """A standalone redis-server with an append-only file fsynced on every write."""

    def __init__(self, base: Path, port: int | None = None, appendfsync: str = "always") -> None:
        port = port or free_port()
        self.dir = base / f"redis-{port}"
        self.dir.mkdir(parents=True, exist_ok=True)
        binary = shutil.which("redis-server") or "redis-server"
        argv = [
            binary,
            "--port",
            str(port),
            "--bind",
            HOST,
            "--dir",
            str(self.dir),
            "--appendonly",
            "yes",
            "--appendfsync",
            appendfsync,
            "--save",
            "",
            "--daemonize",
            "no",
        ]
        super().__init__(f"redis-{port}", argv, base / f"redis-{port}.log", port)

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"



class NatsServer(Process):
    """A single nats-server with JetStream and a file store that survives restarts."""

    def __init__(
        self, base: Path, port: int | None = None, binary: str | None = None, sync_interval: str | None = None
    ) -> None:
        """``sync_interval``: the JetStream setting (``always``: fsync before each ack; nats-server 2.10+)."""
        port = port or free_port()
        self.dir = base / f"nats-{port}"
        self.dir.mkdir(parents=True, exist_ok=True)
        binary = binary or shutil.which("nats-server") or "/usr/sbin/nats-server"
        argv = [binary, "-a", HOST, "-p", str(port), "-js"]
        if sync_interval is None:
            argv += ["-sd", str(self.dir)]
        else:
            conf = base / f"nats-{port}.conf"
            text = f'jetstream {{ store_dir: "{self.dir}", sync_interval: {sync_interval} }}\n'
            durable.write_file(conf, text.encode(), 0o644)  # a power-loss test must not lose the server's config
            argv += ["-c", str(conf)]
        super().__init__(f"nats-{port}", argv, base / f"nats-{port}.log", port)

    @property
    def url(self) -> str:
        return f"nats://{HOST}:{self.port}"



class PostgresServer(Process):
    """A PostgreSQL cluster of its own (initdb'd in ``base``, which the ``postgres`` user must be able to
    reach), run as that user in its own process group: ``kill`` takes the postmaster and every backend at once."""

    AS_POSTGRES = ("setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups")

    def __init__(self, base: Path, *settings: str, standby_of: PostgresServer | None = None) -> None:
        """``settings``: ``name=value`` server settings (``-c``), e.g. ``synchronous_commit=off``.
        ``standby_of``: a streaming-replication standby of that (running) server, from ``pg_basebackup``."""
        port = free_port()
        self.dir = base / f"pg-{port}"
        self.dir.mkdir()
        shutil.chown(self.dir, "postgres", "postgres")
        self.dir.chmod(0o700)
        versions = Path("/usr/lib/postgresql")  # Debian's layout: the newest installed server
        self.bin_dir = bin_dir = versions / max(os.listdir(versions), key=int) / "bin"
        as_postgres = list(self.AS_POSTGRES)
        if standby_of is None:
            make = [str(bin_dir / "initdb"), "-D", str(self.dir), "-A", "trust", "-U", "postgres"]
        else:  # -R: standby.signal and primary_conninfo; -X stream: the WAL written meanwhile too
            primary = ["-h", HOST, "-p", str(standby_of.port), "-U", "postgres"]
            make = [str(bin_dir / "pg_basebackup"), "-D", str(self.dir), *primary, "-R", "-X", "stream"]
        subprocess.run([*as_postgres, *make], check=True, capture_output=True)
        argv = [*as_postgres, str(bin_dir / "postgres"), "-D", str(self.dir), "-p", str(port), "-k", ""]
        for setting in ("listen_addresses=127.0.0.1", *settings):  # otherwise PostgreSQL's defaults
            argv += ["-c", setting]
        super().__init__(f"postgres-{port}", argv, base / f"postgres-{port}.log", port)

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def spawn(self, env: dict[str, str] | None = None) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def kill(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        self.kill()


    def promote(self) -> None:
        """A standby becomes a primary (``pg_ctl promote``, which waits until it accepts writes)."""
        subprocess.run(
            [*self.AS_POSTGRES, str(self.bin_dir / "pg_ctl"), "promote", "-w", "-D", str(self.dir)],
            check=True,
            capture_output=True,
        )
