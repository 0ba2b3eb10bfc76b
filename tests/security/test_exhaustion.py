"""Connection exhaustion (issue #17 point 2) against real ``roost serve`` processes, with the limits scaled
down so the whole takes seconds: thousands of idle and slowloris sockets are closed after their bound,
caps per source address and per node (derived from a lowered descriptor limit) hold while more sockets
than the node has descriptors try to stay open, and a real user (login, WebSocket, auth, subscribe, send)
and ``/healthz`` still get in.

The attacking sockets come from other loopback addresses (127.0.0.2 and up) than the newcomer (127.0.0.1),
so the per-source caps are exercised as they would be from distinct hosts. They are plain non-blocking
sockets watched with epoll in a thread (``Herd``), while the newcomer runs on the test's event loop.
"""

from __future__ import annotations

import asyncio
import json
import re
import resource
import select
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from roost.chaos.infra import wait_until
from roost.config import Settings
from roost.node import serve

from ..backends import REDIS, _clean_redis
from ..integration.procs import ServerProcess

HEAD_S = 2.0
"""header_timeout_s and idle_timeout_s of the timeout tests."""
SHED_AFTER_S = 1.0


@dataclass(eq=False)
class Sock:
    sock: socket.socket
    source: str
    opened: float
    first_byte: float | None = None
    trickle: bool = False
    data: bytes = b""
    closed: float | None = None

    @property
    def answer(self) -> str:
        """The status line the server wrote before closing, if any."""
        return self.data.split(b"\r\n", 1)[0].decode(errors="replace")


@dataclass
class Herd:
    """Many raw sockets to one port: opened, optionally trickling header bytes, and watched until the
    server closes them (the time and whatever it wrote first are kept)."""

    port: int
    socks: dict[int, Sock] = field(default_factory=dict)
    poller: Any = field(default_factory=select.epoll)

    def open(self, source: str, n: int, first: bytes = b"", trickle: bool = False) -> list[Sock]:
        opened = []
        for _ in range(n):
            s = socket.socket()
            s.bind((source, 0))
            s.settimeout(10)
            s.connect(("127.0.0.1", self.port))
            s.setblocking(False)
            sock = Sock(s, source, time.monotonic(), trickle=trickle)
            if first:
                s.send(first)
                sock.first_byte = time.monotonic()
            self.socks[s.fileno()] = sock
            self.poller.register(s.fileno(), select.EPOLLIN | select.EPOLLRDHUP)
            opened.append(sock)
        return opened

    def run(self, seconds: float, trickle_every: float = 0.25) -> None:
        """Read what the server sends and note closes for ``seconds``; trickling sockets get one more header
        byte every ``trickle_every`` (never a whole head)."""
        end = time.monotonic() + seconds
        next_trickle = time.monotonic()
        while (now := time.monotonic()) < end:
            for fd, _ in self.poller.poll(0.05):
                self._read(self.socks[fd])
            if now >= next_trickle:
                next_trickle = now + trickle_every
                for sock in self.socks.values():
                    if sock.trickle and sock.closed is None:
                        try:
                            sock.sock.send(b"a")
                        except OSError:
                            self._read(sock)

    def _read(self, sock: Sock) -> None:
        while sock.closed is None:
            try:
                chunk = sock.sock.recv(65536)
            except BlockingIOError:
                return
            except OSError:
                chunk = b""
            if not chunk:
                sock.closed = time.monotonic()
                self.poller.unregister(sock.sock.fileno())
            sock.data += chunk

    def held(self, source: str | None = None) -> list[Sock]:
        return [s for s in self.socks.values() if s.closed is None and source in (None, s.source)]

    def close(self) -> None:
        for sock in self.socks.values():
            sock.sock.close()
        self.poller.close()


class LimitedServer(ServerProcess):
    """``roost serve`` started under a descriptor limit of ``nofile`` (soft, hard) when given."""

    def __init__(self, data_dir: Path, nofile: tuple[int, int] | None, *extra: str) -> None:
        super().__init__(data_dir, None, *extra)
        self.nofile = nofile

    def spawn(self, env: dict[str, str] | None = None) -> None:
        nofile = self.nofile

        def limit() -> None:
            if nofile is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, nofile)

        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, env=env, preexec_fn=limit)


@asynccontextmanager
async def roost(
    tmp_path: Path, limits: dict[str, float], engine: str = "embedded", nofile: tuple[int, int] | None = None
) -> AsyncIterator[LimitedServer]:
    extra = [f"--limit={name}={value}" for name, value in limits.items()]
    prefix = "x" + uuid.uuid4().hex[:10]
    if engine == "redis":
        extra += ["--store", f"{REDIS}?prefix={prefix}"]
    (tmp_path / "data").mkdir()
    server = LimitedServer(tmp_path / "data", nofile, *extra)
    try:
        await server.start()
        yield server
    finally:
        server.stop()
        if engine == "redis":
            await _clean_redis(REDIS, prefix)


@dataclass
class User:
    """A real user's WebSocket (and the HTTP session it came from), with the frames not yet looked at:
    one WebSocket message may carry several frames, one a line."""

    http: aiohttp.ClientSession
    ws: aiohttp.ClientWebSocketResponse
    room: str
    queue: list[dict[str, Any]] = field(default_factory=list)

    async def frame(self, kind: str, also: Callable[[dict[str, Any]], bool] = lambda f: True) -> dict[str, Any]:
        """The next frame of type ``kind`` (any type when empty) for which ``also`` holds; others are skipped."""
        while True:
            while self.queue:
                got = self.queue.pop(0)
                assert got["type"] != "error", got
                if got["type"] == (kind or got["type"]) and also(got):
                    return got
            msg = await self.ws.receive(timeout=10)
            assert msg.type is aiohttp.WSMsgType.TEXT, (msg.type, self.ws.close_code)
            self.queue.extend(json.loads(part) for part in msg.data.split("\n") if part)

    async def say(self, body: str) -> None:
        """Send ``body``: its ack and the message itself (live, on the subscription) both come."""
        cmid = uuid.uuid4().hex
        await self.ws.send_json({"type": "send", "room": self.room, "cmid": cmid, "body": body, "id": cmid})
        wanted = {"ack", "msg"}
        while wanted:
            got = await self.frame("", lambda f: f.get("ref") == cmid or f.get("body") == body)
            wanted.discard(got["type"])

    async def close(self) -> None:
        await self.ws.close()
        await self.http.close()


async def newcomer(server: ServerProcess, name: str) -> User:
    """A real user from 127.0.0.1: log in over HTTP, create a room, open a WebSocket, authenticate,
    subscribe, send, and see the ack and the message live."""
    http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
    async with http.post(server.url + "/api/login", json={"name": name}) as resp:
        assert resp.status == 200, await resp.text()
        token = (await resp.json())["token"]
    async with http.post(server.url + "/api/rooms", json={"room": name}, headers=bearer(token)) as resp:
        assert resp.status == 201, await resp.text()
    user = User(http, await http.ws_connect(server.ws_url), name)
    await user.ws.send_json({"type": "auth", "token": token, "id": "a"})
    assert (await user.frame("welcome"))["user"] == name
    await user.ws.send_json({"type": "subscribe", "room": name, "id": "s"})
    assert (await user.frame("subscribed"))["ref"] == "s"
    await user.say("hello")
    return user


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def get(server: ServerProcess, path: str) -> tuple[int, str]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http, http.get(server.url + path) as r:
        return r.status, await r.text()


async def closed_by_guard(server: ServerProcess) -> dict[str, int]:
    status, text = await get(server, "/metrics")
    assert status == 200
    found = re.findall(r'^roost_unauthenticated_closed_total\{reason="(\w+)"\} (\S+)$', text, re.M)
    return {reason: int(float(n)) for reason, n in found}


@pytest.mark.parametrize("engine", ["embedded", "redis"])
async def test_idle_and_slowloris_sockets_are_closed_after_their_bound(tmp_path: Path, engine: str) -> None:
    """[R-SEC-30] With idle_timeout_s and header_timeout_s at 2 s: 2,000 sockets that send nothing and 300 that
    trickle a request head (4 bytes a second, forever), plus 20 that send one request and then trickle the
    next one, are all closed by the server after their bound (the trickling ones answered 408), none before.
    A real user who logged in, authenticated and subscribed meanwhile stays connected past the bounds and
    still sends and receives."""
    limits = {"idle_timeout_s": HEAD_S, "header_timeout_s": HEAD_S}
    async with roost(tmp_path, limits, engine) as server:
        herd = Herd(server.port)
        try:
            kept = herd.open("127.0.0.7", 20, b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
            deadline = time.monotonic() + 5
            while not all(s.data.startswith(b"HTTP/1.1 200") for s in kept) and time.monotonic() < deadline:
                herd.run(0.02)
            for s in kept:  # the next request on each kept-alive connection never completes its head
                assert s.closed is None and s.data.startswith(b"HTTP/1.1 200"), s.data
                s.sock.send(b"GET /healthz HTTP/1.1\r\nX-Slow: ")
                s.first_byte, s.trickle = time.monotonic(), True
            idle = [s for i in range(4) for s in herd.open(f"127.0.0.{2 + i}", 500)]
            slow = herd.open("127.0.0.6", 300, b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Slow: ", trickle=True)
            watching = asyncio.ensure_future(asyncio.to_thread(herd.run, 0.5))
            user = await newcomer(server, "early")
            await watching
            await asyncio.to_thread(herd.run, HEAD_S + 3.5)
            assert not herd.held(), f"{len(herd.held())} sockets still open"
            for group, since in ((idle, "opened"), (slow + kept, "first_byte")):
                lived = [s.closed - getattr(s, since) for s in group if s.closed is not None]
                assert min(lived) >= HEAD_S - 0.2 and max(lived) <= HEAD_S + 3.0, (since, min(lived), max(lived))
            assert {s.data for s in idle} == {b""}
            # A byte trickled in just as the server closes may turn its close into a reset that eats the 408.
            timed_out = [s for s in slow + kept if b"HTTP/1.1 408 Request Timeout" in s.data]
            assert len(timed_out) >= len(slow + kept) // 2
            await user.say("still here")  # the authenticated WebSocket is not timed out
            await user.close()
            counts = await closed_by_guard(server)
            assert counts["idle_timeout"] >= 2000 and counts["header_timeout"] == 320, counts
        finally:
            herd.close()


async def test_more_sockets_than_descriptors_and_a_newcomer_still_gets_in(tmp_path: Path) -> None:
    """[R-SEC-31] [R-SEC-33] A node started with a descriptor limit of 1024 (hard 4096) raises it to 4096 and
    says so, so it holds at most 2048 pending connections; 1000 per source address. 4,800 idle sockets
    from four addresses (more than the node has descriptors) try to stay open: at most 1000 (+ the reserve)
    stay from any one address and at most 2048 (+ the reserve) in all, each one turned away was answered
    429 or shed (closed unanswered) as the metrics count; then a real user (login, WebSocket, auth,
    subscribe, send) and ``/healthz`` get in, from a fresh address and from a crowded one."""
    limits = {"idle_timeout_s": 60, "header_timeout_s": 60, "max_pending_per_source": 1000, "connection_reserve": 8}
    async with roost(tmp_path, limits, nofile=(1024, 4096)) as server:
        log = server.log.read_text()
        assert "file descriptors: raised the limit from 1024 to 4096" in log
        assert "connection limits: 2048 pending (not authenticated) per node, 1000 per source address" in log
        herd = Herd(server.port)
        try:
            for i in range(4):
                herd.open(f"127.0.0.{2 + i}", 1200)
            await asyncio.to_thread(herd.run, SHED_AFTER_S + 0.5)
            deadline = time.monotonic() + 15  # until the node has accepted (and answered) every one
            while len(herd.held()) > 2048 + 8 and time.monotonic() < deadline:
                await asyncio.to_thread(herd.run, 0.1)
            held = herd.held()
            assert 2048 <= len(held) <= 2048 + 8, len(held)
            for i in range(4):
                assert len(herd.held(f"127.0.0.{2 + i}")) <= 1000 + 8
            turned = [s for s in herd.socks.values() if s.closed is not None]
            refused = [s for s in turned if s.answer == "HTTP/1.1 429 Too Many Requests"]
            shed = [s for s in turned if not s.data]
            assert len(refused) + len(shed) == len(turned) == 4800 - len(held)
            counts = await closed_by_guard(server)  # (this request shed one more)
            assert counts["refused_source"] + counts["refused_node"] == len(refused), counts
            assert counts["shed_source"] + counts["shed_node"] == len(shed) + 1, counts
            assert counts["idle_timeout"] == counts["header_timeout"] == 0
            watching = asyncio.ensure_future(asyncio.to_thread(herd.run, 1.0))
            user = await newcomer(server, "newcomer")
            assert (await get(server, "/healthz"))[0] == 200
            await watching
            assert 2048 - 8 <= len(herd.held()) <= 2048 + 8  # the newcomer's connections shed as many
            # From a crowded address: its longest-waiting socket makes room.
            crowded = Herd(server.port)
            try:
                probe = crowded.open("127.0.0.2", 1, b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")[0]
                await asyncio.to_thread(crowded.run, 1.0)
                assert probe.answer == "HTTP/1.1 200 OK"
            finally:
                crowded.close()
            await user.say("while 2,000 wait")
            await user.close()
        finally:
            herd.close()


async def test_the_reserve_serves_health_checks_and_websockets_when_nothing_can_be_shed(tmp_path: Path) -> None:
    """[R-SEC-32] 20 requests whose bodies never come (each a request in progress, which is not shed) fill a
    cap of 20 pending connections: a newcomer then gets a place in the reserve of 2, where ``/healthz`` is
    answered and a login is refused with 429 (code 4429); with the reserve full, a connection is answered
    429 at once. ``request_timeout_s`` (3 s) ends the stalled requests, and the login goes through."""
    limits = {"max_pending_connections": 20, "connection_reserve": 2, "request_timeout_s": 6}
    async with roost(tmp_path, limits) as server:
        herd = Herd(server.port)
        try:
            head = b"POST /api/login HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            stalled = herd.open("127.0.0.2", 20, head + b"Content-Length: 100\r\n\r\n")
            t0 = time.monotonic()
            await asyncio.to_thread(herd.run, SHED_AFTER_S + 0.2)
            assert len(herd.held()) == 20
            assert (await get(server, "/healthz"))[0] == 200  # in the reserve
            async with aiohttp.ClientSession() as http, http.post(server.url + "/api/login", json={"name": "x"}) as r:
                assert r.status == 429 and (await r.json())["error"]["code"] == 4429
            await wait_until("the reserve is free again", lambda: pending(server, 20 + 1))
            taken = herd.open("127.0.0.3", 3)  # two take the reserve, the third is refused at once
            await asyncio.to_thread(herd.run, 0.5)
            assert [s.answer for s in taken] == ["", "", "HTTP/1.1 429 Too Many Requests"]
            assert [s.closed is None for s in taken] == [True, True, False]
            assert time.monotonic() - t0 < 6, "too slow to show the reserve before the requests time out"
            await asyncio.to_thread(herd.run, 6.0 - (time.monotonic() - t0) + 1.5)
            assert all(s.closed is not None and s.closed - t0 >= 6.0 - 0.2 for s in stalled)
            user = await newcomer(server, "later")
            await user.close()
            counts = await closed_by_guard(server)
            assert counts["request_timeout"] == 20 and counts["reserve_only"] == 1, counts
            assert counts["refused_node"] == 1, counts
        finally:
            herd.close()


async def pending(server: ServerProcess, n: int) -> bool:
    """True when the node counts ``n`` connections not authenticated (this request's own included)."""
    status, text = await get(server, "/metrics")
    return status == 200 and f"\nroost_unauthenticated_connections {float(n)}\n" in text


async def test_an_authenticated_websocket_is_no_longer_counted_or_watched(embedded_settings: Settings) -> None:
    """[R-SEC-30] Once its auth frame is accepted, a WebSocket leaves the connection limits: the node no longer
    counts it as pending, and the guard is out of its data path (its socket's protocol is aiohttp's own, so
    the messages of authenticated users cost nothing extra)."""
    async with serve(embedded_settings) as node, aiohttp.ClientSession() as http:
        ws = await http.ws_connect(node.ws_url)
        await ws.send_json({"type": "auth", "token": node.tokens.issue("alice"), "id": "a"})
        assert json.loads((await ws.receive(timeout=5)).data)["type"] == "welcome"
        (session,) = node.websocket.sessions
        raw = session.transport.raw  # type: ignore[attr-defined]
        # The guard left the data path: the socket talks to the WebSocket library's own protocol again.
        library = "picows." if node.ws_port is not None else "aiohttp."
        assert raw is not None and type(raw.get_protocol()).__module__.startswith(library)
        async with http.get(node.url + "/metrics") as resp:
            text = await resp.text()
        assert "\nroost_unauthenticated_connections 1.0\n" in text  # the /metrics request itself
        await ws.close()
