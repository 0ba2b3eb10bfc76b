"""The listening sockets of ``roost serve --workers N``: bound once by the parent, inherited by every worker.

Why one inherited socket, not ``SO_REUSEPORT`` (one socket per worker, bound to the same port):

* With one socket shared by every worker (the same open file, inherited through ``pass_fds``), there is one accept
  queue. The kernel wakes the workers waiting on it and whichever accepts first takes the connection: a busy worker
  (not waiting in its event loop) takes fewer, an idle one more. A worker that dies takes nothing with it: the
  connections queued meanwhile stay in the queue and the other workers accept them, and its replacement serves
  on the same socket, so the port is never closed, not even between two workers. The port is known once the
  parent has bound it (``--port 0`` works: the parent prints the real one).
* With ``SO_REUSEPORT`` each worker has its own queue and the kernel spreads new connections over them by a hash of
  the addresses, blind to how busy each worker is. When a worker dies, the connections waiting in its queue are
  reset (a client sees a refused or dropped connection that another worker could have served), and the port is
  briefly bound by fewer sockets. Any other process of the same user may also bind the port and take a share of
  the connections.

The price of the shared queue: an event loop that wakes accepts every connection waiting (asyncio and uvloop
accept in a loop), so a burst arriving at once may land mostly on one worker; connections arriving over time spread
by how busy each worker is. docs/deploy.md says so.

Worker ``i`` also gets its own metrics socket when ``--metrics-port-base`` is set (port base + i, or any free port
with base 0), bound by the parent too, so its port stays the same when the worker is restarted.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field

import msgspec

from ..config import Settings
from ..gateway.connections import LISTEN_BACKLOG

__all__ = ["Handed", "Listeners", "Place", "bind"]


@dataclass(frozen=True)
class Place:
    """A worker's place: its index among ``count`` workers and the listening sockets it serves on."""

    index: int
    count: int
    http: socket.socket
    """The HTTP port (the API, the page, health, and ``/ws`` with the aiohttp transport), shared by every worker."""
    ws: socket.socket | None = None
    """With ``--ws-transport picows``: the WebSocket port, shared by every worker."""
    metrics: socket.socket | None = None
    """With ``--metrics-port-base``: this worker's own health and metrics port."""


class Handed(msgspec.Struct, frozen=True):
    """A worker's place as the parent passes it (file descriptors, which ``pass_fds`` keeps the numbers of)."""

    index: int
    count: int
    http_fd: int
    ws_fd: int | None = None
    metrics_fd: int | None = None

    def place(self) -> Place:
        def adopt(fd: int | None) -> socket.socket | None:
            return None if fd is None else socket.socket(fileno=fd)

        http = adopt(self.http_fd)
        assert http is not None
        return Place(self.index, self.count, http, adopt(self.ws_fd), adopt(self.metrics_fd))


@dataclass
class Listeners:
    """What the parent bound: the shared socket(s) and one metrics socket per worker (or none)."""

    http: socket.socket
    ws: socket.socket | None = None
    metrics: list[socket.socket] = field(default_factory=list)

    @property
    def port(self) -> int:
        return int(self.http.getsockname()[1])

    @property
    def ws_port(self) -> int | None:
        return None if self.ws is None else int(self.ws.getsockname()[1])

    @property
    def metrics_ports(self) -> list[int]:
        return [int(s.getsockname()[1]) for s in self.metrics]

    def handed(self, index: int, count: int) -> Handed:
        metrics = self.metrics[index].fileno() if self.metrics else None
        ws = None if self.ws is None else self.ws.fileno()
        return Handed(index, count, self.http.fileno(), ws, metrics)

    def fds(self, index: int) -> tuple[int, ...]:
        """The descriptors worker ``index`` inherits."""
        handed = self.handed(index, 0)
        return tuple(fd for fd in (handed.http_fd, handed.ws_fd, handed.metrics_fd) if fd is not None)

    def close(self) -> None:
        """The parent's copies: once the workers stop, nothing listens (no connection waits in a queue nobody
        accepts from)."""
        for sock in (self.http, self.ws, *self.metrics):
            if sock is not None:
                sock.close()


def _listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on the first address ``host`` resolves to (as ``SO_REUSEADDR``: a restart does not
    wait for the previous process's connections in TIME_WAIT)."""
    found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, kind, proto, _, address = found[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        sock.listen(LISTEN_BACKLOG)
    except BaseException:
        sock.close()
        raise
    return sock


def bind(settings: Settings) -> Listeners:
    """Every socket the workers of ``settings`` serve on; ``OSError`` if one cannot be bound (a port taken)."""
    listeners = Listeners(_listen(settings.host, settings.port))
    try:
        if settings.ws_transport == "picows":
            # As a single node: --ws-port, else the HTTP port + 1 (any free port when the HTTP one was 0).
            wanted = settings.ws_port if settings.ws_port is not None else (listeners.port + 1 if settings.port else 0)
            listeners.ws = _listen(settings.host, wanted)
        base = settings.metrics_port_base
        if base is not None:
            for i in range(settings.workers):
                listeners.metrics.append(_listen(settings.host, base + i if base else 0))
    except BaseException:
        listeners.close()
        raise
    return listeners
