"""Throwaway Redis and NATS servers and clusters on 127.0.0.1: for the chaos runner, the tests and by hand.

* ``RedisCluster``: 6 nodes (3 masters + 3 replicas), AOF everysec.
* ``NatsCluster``: 3 nodes with JetStream (each with a client, a route and a monitor port).
* ``RedisServer``: one redis-server with ``appendonly yes`` + ``appendfsync always``, restartable on its dir/port.
* ``NatsServer``: one nats-server with JetStream, restartable on its store dir/port.

Every port is one the OS hands out (``free_port``), chosen when a cluster starts and kept in
``<dir>/ports.json`` (a node restarted after ``kill -9`` comes back on its own ports). Every process runs in
the foreground as our child (no ``daemonize``, so the pid we hold *is* the server), records its pid in
``<node dir>/pid``, and is stopped by that pid. A base directory holds a marker file; a process whose working
directory lies under a marked directory is ours. ``tests/clusters.py`` gives each test session its own.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from .infra import free_port

__all__ = [
    "MARKER",
    "ClusterError",
    "NatsCluster",
    "NatsServer",
    "PortTaken",
    "Proc",
    "RedisCluster",
    "RedisServer",
    "Rig",
    "alive",
    "free_ports",
    "kill_pid",
    "mark",
    "ours",
    "poll_until",
    "read_pid",
    "redis_call",
]

MARKER = ".roost-clusters"
HOST = "127.0.0.1"


class ClusterError(RuntimeError):
    pass


class PortTaken(ClusterError):
    """A port the OS had handed out was taken before our server bound it: start again on other ports."""


# ---- processes and ports -----------------------------------------------------------------------


def alive(pid: int) -> bool:
    """True if ``pid`` runs (a zombie, which this sandbox's init may never reap, counts as dead)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def _wait_dead(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.02)  # a wait helper's poll
    return not alive(pid)


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def kill_pid(pid: int, timeout: float = 5.0) -> None:
    """``kill -9`` and wait until it is gone (for a leftover of ours found by its pid file)."""
    _signal(pid, signal.SIGKILL)
    _wait_dead(pid, timeout)


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _describe(pid: int) -> str:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        cmd = "?"
    try:
        cwd = os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        cwd = "?"
    return f"pid {pid} ({cmd!r}, cwd {cwd})"


def ours(pid: int) -> bool:
    """A process is ours if its working directory lies under a directory holding our marker file."""
    try:
        cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
    except OSError:
        return False
    return any((d / MARKER).exists() for d in (cwd, *cwd.parents))


def _listening_inodes(port: int) -> set[str]:
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    return inodes


def _listener_pid(port: int) -> int | None:
    """The pid of the process listening on ``port`` (any address), if /proc tells."""
    inodes = {f"socket:[{i}]" for i in _listening_inodes(port)}
    if not inodes:
        return None
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for fd in (proc / "fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) in inodes:
                        return int(proc.name)
        except OSError:
            continue
    return None


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers do: TIME_WAIT is no obstacle
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return not _listening_inodes(port)  # a wildcard or IPv6 listener also counts


def _ensure_free(ports: Iterable[int], what: str) -> None:
    """Refuse to start on a port someone holds (never kill the holder: it may be another session's server)."""
    for port in ports:
        if not _port_free(port):
            pid = _listener_pid(port)
            holder = _describe(pid) if pid is not None else "a process /proc does not show"
            raise PortTaken(f"{what}: port {HOST}:{port} is in use by {holder}")


def mark(base: Path) -> None:
    base.mkdir(parents=True, exist_ok=True)
    (base / MARKER).touch()


class Proc:
    """One server process in the foreground, our child; its pid is also written to ``<dir>/pid``."""

    def __init__(self, name: str, directory: Path, argv: Sequence[str], ports: Sequence[int]) -> None:
        self.name = name
        self.dir = directory
        self.argv = list(argv)
        self.ports = list(ports)
        self.popen: subprocess.Popen[bytes] | None = None

    @property
    def pidfile(self) -> Path:
        return self.dir / "pid"

    @property
    def pid(self) -> int | None:
        if self.popen is not None:
            return self.popen.pid
        pid = read_pid(self.pidfile)
        return pid if pid is not None and ours(pid) else None

    @property
    def alive(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is None
        pid = self.pid
        return pid is not None and alive(pid)

    def start(self) -> None:
        if self.alive:
            raise ClusterError(f"{self.name} is already running ({_describe(self.pid or 0)})")
        self.dir.mkdir(parents=True, exist_ok=True)
        _ensure_free(self.ports, self.name)
        with open(self.dir / "stdout.log", "ab") as out:
            self.popen = subprocess.Popen(
                self.argv, cwd=self.dir, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.pidfile.write_text(f"{self.popen.pid}\n")

    def exited(self) -> str | None:
        """A description of the exit if the process died (checked while waiting for readiness)."""
        if self.popen is not None and self.popen.poll() is not None:
            tail = "".join(log.read_text(errors="replace")[-1500:] for log in sorted(self.dir.glob("*.log")))
            return f"{self.name} exited with {self.popen.returncode}: {tail}"
        return None

    def kill(self, sig: int = signal.SIGKILL, timeout: float = 10.0) -> None:
        """Send ``sig`` (default: ``kill -9``) and wait until the process is gone."""
        pid = self.pid
        if pid is None or not alive(pid):
            self._reap()
            return
        _signal(pid, sig)
        if self.popen is not None:
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                _signal(pid, signal.SIGKILL)
                self.popen.wait(5)
        elif not _wait_dead(pid, timeout):
            _signal(pid, signal.SIGKILL)
            _wait_dead(pid, 5)
        self._reap()

    def stop(self, timeout: float = 10.0) -> None:
        self.kill(signal.SIGTERM, timeout)

    def _reap(self) -> None:
        if self.popen is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(0.5)
            self.popen = None
        self.pidfile.unlink(missing_ok=True)


def poll_until(what: str, check: object, timeout: float, procs: Sequence[Proc] = (), interval: float = 0.05) -> None:
    """Poll ``check()`` until it is truthy; fail early if one of ``procs`` died."""
    assert callable(check)
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        for proc in procs:
            if (exit_note := proc.exited()) is not None:
                raise (PortTaken if "already in use" in exit_note.lower() else ClusterError)(exit_note)
        try:
            if check():
                return
        except Exception as exc:
            last = exc
        time.sleep(interval)  # a wait helper's poll
    note = f" (last error: {last})" if last else ""
    raise ClusterError(f"timed out after {timeout:.0f}s waiting for {what}{note}")


# ---- Redis -------------------------------------------------------------------------------------


def _redis(port: int, timeout: float = 1.0) -> object:
    import redis

    return redis.Redis(host=HOST, port=port, socket_timeout=timeout, socket_connect_timeout=timeout)


def redis_call(port: int, *args: object, timeout: float = 1.0) -> object:
    client = _redis(port, timeout)
    try:
        return client.execute_command(*args)  # type: ignore[attr-defined]
    finally:
        client.close()  # type: ignore[attr-defined]


def _redis_ping(port: int) -> bool:
    return redis_call(port, "PING") is True


def _redis_info(port: int, section: str) -> dict[str, str]:
    raw = redis_call(port, "INFO", section)
    assert isinstance(raw, dict)
    return {str(k): str(v) for k, v in raw.items()}


def _redis_conf(directory: Path, port: int, extra: str) -> Path:
    conf = directory / "redis.conf"
    conf.write_text(
        f"port {port}\nbind {HOST}\nprotected-mode yes\ndir {directory}\ndaemonize no\n"
        f'pidfile {directory}/redis.pid\nlogfile {directory}/redis.log\nsave ""\n{extra}'
    )
    return conf


class RedisServer:
    """A standalone redis-server with ``appendonly yes`` + ``appendfsync always``, restartable in place."""

    def __init__(self, directory: Path, port: int | None = None, appendfsync: str = "always") -> None:
        self.dir = Path(directory)
        self.port = port = port or free_port()
        self.appendfsync = appendfsync
        self.proc = Proc(f"redis-server :{port}", self.dir, [], [port])

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return self.proc.pid

    def start(self, timeout: float = 20.0) -> None:
        """Start (or restart, reloading the AOF) and return once it answers PING (not LOADING)."""
        mark(self.dir)
        conf = _redis_conf(self.dir, self.port, f"appendonly yes\nappendfsync {self.appendfsync}\n")
        self.proc.argv = ["redis-server", str(conf)]
        self.proc.start()
        poll_until(f"redis on {self.port}", lambda: _redis_ping(self.port), timeout, [self.proc])

    def kill(self) -> None:
        self.proc.kill()

    def stop(self) -> None:
        self.proc.stop()


class Rig:
    """What the clusters share: their ports, handed out by the OS and kept in ``<base>/ports.json``; reuse of
    a healthy cluster of ours; a fresh start on other ports when one was taken before our server bound it."""

    NAME = ""
    """The rig's name: the backend name its address is registered under, and its directory under the base."""
    procs: dict[Any, Proc]

    def __init__(self, base: Path) -> None:
        self.base = Path(base) / self.NAME
        self.started = False
        """Whether ``up()`` started the nodes (False when it reused a running cluster of ours)."""
        try:
            saved = json.loads(self._ports_file.read_text())
        except (OSError, ValueError):
            saved = None
        self._use_ports(saved or self._new_ports())

    @property
    def _ports_file(self) -> Path:
        return self.base / "ports.json"

    @property
    def url(self) -> str:
        raise NotImplementedError

    def _new_ports(self) -> dict[str, list[int]]:
        raise NotImplementedError

    def _use_ports(self, ports: dict[str, list[int]]) -> None:
        """Take ``ports`` (as ``_new_ports`` returns them) and build ``procs`` on them."""
        raise NotImplementedError

    def _fresh(self, timeout: float) -> None:
        raise NotImplementedError

    def healthy(self) -> bool:
        raise NotImplementedError

    def down(self) -> None:
        for proc in self.procs.values():
            proc.kill()

    def up(self, timeout: float = 60.0, attempts: int = 3) -> bool:
        """Reuse a healthy cluster of ours in ``base``, else start a fresh one. Returns whether it started one."""
        if self._ports_file.exists() and all(proc.alive for proc in self.procs.values()) and self.healthy():
            self.started = False
            return False
        for attempt in range(1, attempts + 1):
            self.down()
            shutil.rmtree(self.base, ignore_errors=True)
            mark(self.base)
            ports = self._new_ports()
            self._use_ports(ports)
            try:
                self._fresh(timeout)
                break
            except PortTaken:
                if attempt == attempts:
                    raise
        self._ports_file.write_text(json.dumps(ports))
        self.started = True
        return True

    def reuse(self, wait_s: float = 60.0) -> None:
        """Wait for the cluster ``python -m tests.clusters up`` started in ``base`` (a session sharing it may be
        restarting a node it killed); never start or stop one."""
        if not self._ports_file.exists():
            raise ClusterError(f"no cluster in {self.base}: start one with python -m tests.clusters up --dir DIR")
        poll_until(f"the cluster in {self.base}", self.healthy, wait_s, interval=0.2)


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports the OS hands out now."""
    ports: list[int] = []
    while len(ports) < count:
        if (port := free_port()) not in ports:
            ports.append(port)
    return ports


class RedisCluster(Rig):
    """3 masters + 3 replicas (``--cluster-replicas 1``), ``cluster-node-timeout 2000``, AOF everysec.

    ``procs`` and ``ports`` name the nodes by client port; each node's cluster bus has a port of its own
    (``cluster-port``) instead of the default client port + 10000, which nobody reserved for us."""

    NAME = "redis-cluster"
    SIZE = 6

    def _new_ports(self) -> dict[str, list[int]]:
        ports = free_ports(2 * self.SIZE)
        return {"clients": ports[: self.SIZE], "buses": ports[self.SIZE :]}

    def _use_ports(self, ports: dict[str, list[int]]) -> None:
        self.ports = tuple(ports["clients"])
        self.buses = tuple(ports["buses"])
        self.procs = {
            p: Proc(f"redis cluster node :{p}", self.base / f"n{i + 1}", [], [p, bus])
            for i, (p, bus) in enumerate(zip(self.ports, self.buses, strict=True))
        }

    @property
    def url(self) -> str:
        return f"redis+cluster://{HOST}:{self.ports[0]}"

    def _conf(self, port: int) -> Path:
        d = self.procs[port].dir
        d.mkdir(parents=True, exist_ok=True)
        return _redis_conf(
            d,
            port,
            "cluster-enabled yes\ncluster-config-file nodes.conf\ncluster-node-timeout 2000\n"
            f"cluster-port {self.buses[self.ports.index(port)]}\n"
            "appendonly yes\nappendfsync everysec\nrepl-diskless-sync-delay 0\n",
        )

    def _fresh(self, timeout: float) -> None:
        for port, proc in self.procs.items():
            proc.argv = ["redis-server", str(self._conf(port))]
            proc.start()
        procs = list(self.procs.values())
        for port in self.ports:
            poll_until(f"redis node {port}", lambda p=port: _redis_ping(p), timeout, procs)
        nodes = [f"{HOST}:{p}" for p in self.ports]
        create = subprocess.run(
            ["redis-cli", "--cluster", "create", *nodes, "--cluster-replicas", "1", "--cluster-yes"],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        (self.base / "create.log").write_text(create.stdout + create.stderr)
        if create.returncode != 0:
            raise ClusterError(f"redis-cli --cluster create failed: {create.stdout[-1500:]}{create.stderr[-500:]}")
        self.wait_ready(timeout)

    def healthy(self) -> bool:
        """Every node is up and agrees the cluster is ok, and every replica has finished its sync."""
        try:
            links = 0
            masters = 0
            for port in self.ports:
                if not self.procs[port].alive:
                    return False
                info = str(redis_call(port, "CLUSTER", "INFO"))
                if "cluster_state:ok" not in info or "cluster_slots_ok:16384" not in info:
                    return False
                replication = _redis_info(port, "replication")
                if replication.get("role") == "master":
                    masters += 1
                elif replication.get("master_link_status") == "up":
                    links += 1
            return masters == len(self.ports) // 2 and links == len(self.ports) - masters
        except Exception:
            return False

    def wait_ready(self, timeout: float = 60.0) -> None:
        poll_until("the redis cluster (state ok, every replica's link up)", self.healthy, timeout, interval=0.1)

    def masters(self) -> list[int]:
        out = []
        for port in self.ports:
            with contextlib.suppress(Exception):
                if _redis_info(port, "replication").get("role") == "master":
                    out.append(port)
        return out

    def owner(self, key: str) -> int:
        """The port of the master serving ``key``'s slot, as the first node that answers sees it."""
        from redis.crc import key_slot

        slot = key_slot(key.encode())
        for port in self.ports:
            try:
                ranges = redis_call(port, "CLUSTER", "SLOTS")
            except Exception:
                continue
            assert isinstance(ranges, list)
            for first, last, master, *_ in ranges:
                if int(first) <= slot <= int(last):
                    return int(master[1])
        raise ClusterError(f"no node tells who serves {key}")

    def kill(self, port: int) -> None:
        self.procs[port].kill()

    def restart(self, port: int, timeout: float = 60.0) -> None:
        """Start a killed node again on its dir (nodes.conf, AOF): it rejoins, as a replica if it lost its slots."""
        proc = self.procs[port]
        proc.argv = ["redis-server", str(proc.dir / "redis.conf")]
        proc.start()
        self.wait_ready(timeout)


# ---- NATS --------------------------------------------------------------------------------------


def _http_json(port: int, path: str, timeout: float = 1.0) -> dict[str, object]:
    with urllib.request.urlopen(f"http://{HOST}:{port}{path}", timeout=timeout) as resp:
        data = json.loads(resp.read())
    assert isinstance(data, dict)
    return data


def _healthz(port: int) -> bool:
    try:
        return _http_json(port, "/healthz").get("status") == "ok"
    except (urllib.error.URLError, OSError, ValueError):
        return False


class NatsServer:
    """A single nats-server with JetStream (file store in its dir), restartable on the same dir/ports."""

    def __init__(self, directory: Path, port: int | None = None, http_port: int | None = None) -> None:
        self.dir = Path(directory)
        self.port, self.http_port = port, http_port = (port, http_port) if port and http_port else free_ports(2)
        self.proc = Proc(f"nats-server :{port}", self.dir, [], [port, http_port])

    @property
    def url(self) -> str:
        return f"nats://{HOST}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid

    def start(self, timeout: float = 20.0) -> None:
        mark(self.dir)
        conf = self.dir / "nats.conf"
        conf.write_text(
            f"server_name: single{self.port}\nlisten: {HOST}:{self.port}\nhttp: {HOST}:{self.http_port}\n"
            f'jetstream {{\n  store_dir: "{self.dir / "store"}"\n  max_memory_store: 256MB\n  max_file_store: 2GB\n}}\n'
        )
        self.proc.argv = ["nats-server", "-c", str(conf), "-l", str(self.dir / "nats.log")]
        self.proc.start()
        poll_until(f"nats on {self.port} (healthz)", lambda: _healthz(self.http_port), timeout, [self.proc])

    def kill(self) -> None:
        self.proc.kill()

    def stop(self) -> None:
        self.proc.stop()


class NatsCluster(Rig):
    """3 nats-servers in one cluster ``chat`` with JetStream; ready once every node sees a meta leader."""

    NAME = "nats-cluster"
    SIZE = 3

    def _new_ports(self) -> dict[str, list[int]]:
        ports = free_ports(3 * self.SIZE)
        return {"clients": ports[: self.SIZE], "routes": ports[self.SIZE : -self.SIZE], "monitors": ports[-self.SIZE :]}

    def _use_ports(self, ports: dict[str, list[int]]) -> None:
        self.clients, self.routes, self.monitors = (tuple(ports[k]) for k in ("clients", "routes", "monitors"))
        self.names = [f"n{i + 1}" for i in range(len(self.clients))]
        self.procs = {
            name: Proc(f"nats cluster node {name}", self.base / name, [], [c, r, m])
            for name, c, r, m in zip(self.names, self.clients, self.routes, self.monitors, strict=True)
        }

    @property
    def servers(self) -> str:
        return ",".join(f"{HOST}:{p}" for p in self.clients)

    @property
    def url(self) -> str:
        return f"nats://{self.servers}"

    def client_port(self, name: str) -> int:
        return self.clients[self.names.index(name)]

    def _conf(self, i: int) -> Path:
        name = self.names[i]
        d = self.base / name
        d.mkdir(parents=True, exist_ok=True)
        routes = "\n".join(f"    nats-route://{HOST}:{p}" for p in self.routes)
        conf = d / "nats.conf"
        conf.write_text(
            f"server_name: {name}\nlisten: {HOST}:{self.clients[i]}\nhttp: {HOST}:{self.monitors[i]}\n"
            f'jetstream {{\n  store_dir: "{d / "store"}"\n  max_memory_store: 256MB\n  max_file_store: 2GB\n}}\n'
            f"cluster {{\n  name: chat\n  listen: {HOST}:{self.routes[i]}\n  routes: [\n{routes}\n  ]\n}}\n"
        )
        return conf

    def _argv(self, i: int) -> list[str]:
        name = self.names[i]
        return ["nats-server", "-c", str(self._conf(i)), "-l", str(self.base / name / "nats.log")]

    def _fresh(self, timeout: float) -> None:
        for i, proc in enumerate(self.procs.values()):
            proc.argv = self._argv(i)
            proc.start()
        self.wait_ready(timeout)

    def meta_leader(self, monitor: int) -> str:
        meta = _http_json(monitor, "/jsz").get("meta_cluster") or {}
        assert isinstance(meta, dict)
        return str(meta.get("leader") or "")

    def healthy(self, names: Iterable[str] | None = None) -> bool:
        """The given nodes (default: all) are healthy, routed to each other, and see one meta leader."""
        try:
            chosen = list(names) if names is not None else self.names
            leaders = set()
            for name in chosen:
                i = self.names.index(name)
                if not self.procs[name].alive or not _healthz(self.monitors[i]):
                    return False
                routez = _http_json(self.monitors[i], "/routez")
                if int(str(routez.get("num_routes", 0))) < len(self.names) - 1:
                    return False
                leaders.add(self.meta_leader(self.monitors[i]))
            return len(leaders) == 1 and "" not in leaders
        except Exception:
            return False

    def wait_ready(self, timeout: float = 60.0) -> None:
        poll_until("the nats cluster (healthz, routes, one JetStream meta leader)", self.healthy, timeout, interval=0.1)

    def kill(self, name: str) -> None:
        self.procs[name].kill()

    def restart(self, name: str, timeout: float = 60.0) -> None:
        proc = self.procs[name]
        proc.argv = self._argv(self.names.index(name))
        proc.start()
        self.wait_ready(timeout)
