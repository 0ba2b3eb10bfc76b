"""The load generator: its own process (pinned to its own core), many WebSocket clients on picows.

Run as ``python -m roost.bench.loadgen '<json plan>'``. It prints one JSON object per line on stdout:
``{"event": "step-start", ...}`` and ``{"event": "step", ...}`` around every measured step, so the
runner can sample the server's CPU over exactly that window, and ``{"event": "done"}`` at the end.

Why picows and byte searches: a client that decodes every frame with ``json.loads`` costs about as
much per frame as the server that sent it, and the generator would become the bottleneck it is
supposed to measure. The generator reports its own CPU share per step; a step where it is near 100 %
is a lower bound for the server, and the report says so.

The wire options (the ``wire`` scenario, docs/benchmarks.md): ``"encoding": "msgpack"`` speaks
``roost.v1.msgpack`` (the same byte searches find the timed bodies: MessagePack keeps strings as they are);
``"deflate": true`` offers permessage-deflate, which picows does not implement: the generator inflates the
server's compressed frames itself (one zlib stream per connection, RFC 7692 section 7.2.2) and sends its own
frames uncompressed, as the RFC allows. ``"wire_bytes": true`` adds to each step the TCP bytes its sockets
received in the window (``TCP_INFO``'s ``tcpi_bytes_received``: WebSocket headers, compression and acks
included).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import socket
import struct
import sys
import time
import zlib
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from ..auth import TokenAuthority
from . import wire

__all__ = ["main"]


@dataclass
class Step:
    """What one measured window saw."""

    index: int
    members: int
    sent: int = 0
    received: int = 0
    lat_us: array[int] = field(default_factory=lambda: array("q"))
    ack_us: array[int] = field(default_factory=lambda: array("q"))


_DEFLATE_TAIL = b"\x00\x00\xff\xff"
_TCP_BYTES_RECEIVED = 128
"""Offset of ``tcpi_bytes_received`` (u64) in Linux's ``struct tcp_info``."""


class Gen:
    """Shared state of every client: the current step, the counters, pending acks."""

    def __init__(self, shape: str, encoding: str = "json", deflate: bool = False) -> None:
        self.shape = shape
        self.msgpack = encoding == "msgpack"
        """Roost over ``roost.v1.msgpack``: binary frames, MessagePack maps (server messages: arrays of them)."""
        self.deflate = deflate
        self.data_kind = WSMsgType.BINARY if self.msgpack else WSMsgType.TEXT
        self.steps: dict[int, Step] = {}
        self.pending: dict[str, int] = {}
        self.dropped = 0
        self.closing = False
        self.caught_up = 0
        self.storm_received = 0
        self.connect_s = 0.0
        """How long opening (and authenticating) every connection took."""
        self.enter_s = 0.0
        """How long joining and following the rooms took, after that."""


class Client(WSListener):
    """One connection. During setup it queues frames for a coroutine; afterwards it only counts."""

    def __init__(self, gen: Gen, index: int, room: str, user: str) -> None:
        super().__init__()
        self.gen = gen
        self.index = index
        self.room = room
        self.user = user
        self.transport: WSTransport | None = None
        self.setup: asyncio.Queue[bytes] | None = asyncio.Queue()
        self.acks: dict[int, int] = {}
        self.ack_counter = itertools.count(10)
        self.storm_target = 0
        self.storm_done: asyncio.Future[None] | None = None
        self.storm_seen = 0
        self.last_seq = 0
        self.inflate = zlib.decompressobj(-zlib.MAX_WBITS) if gen.deflate else None

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        if not self.gen.closing:
            self.gen.dropped += 1

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type is not self.gen.data_kind:
            if frame.msg_type is WSMsgType.CLOSE:
                transport.send_close(frame.get_close_code())
                transport.disconnect()
            return
        data = frame.get_payload_as_bytes()
        if self.inflate is not None and frame.rsv1:
            data = self.inflate.decompress(data + _DEFLATE_TAIL)
        shape = self.gen.shape
        if shape == "socketio" and data[:1] != b"4":
            if data == b"2":  # Engine.IO ping
                transport.send(WSMsgType.TEXT, b"3")
            elif self.setup is not None:
                self.setup.put_nowait(data)  # the open packet
            return
        if self.setup is not None:
            self.setup.put_nowait(data)
            return
        now = time.monotonic_ns()
        if shape == "roost":
            self._roost(data, now)
        elif shape == "bare":
            self._count(data, 0, now)
        else:
            self._socketio(data, now)

    def _count(self, data: bytes, start: int, now: int) -> int:
        """Count every timed body in ``data`` from ``start``; returns how many were found."""
        # The hot loop of the generator: wire.parse_mark, inlined (a call per frame shows in profiles).
        found = 0
        steps = self.gen.steps
        find = data.find
        i = find(b"~T", start)
        while i >= 0:
            colon = find(b":", i)
            colon2 = find(b":", colon + 1)
            s = steps.get(int(data[colon + 1 : colon2]))
            if s is not None:
                s.received += 1
                s.lat_us.append((now - int(data[i + 2 : colon])) // 1000)
            found += 1
            i = find(b"~T", colon2)
        return found

    def _roost(self, data: bytes, now: int) -> None:
        if self.storm_done is not None:
            self._storm(data)
            return
        self._count(data, 0, now)
        if self.gen.msgpack:
            if b"\xa3ack" in data:  # the string "ack": decode the message only then
                for f in msgspec.msgpack.decode(data):
                    if f.get("type") == "ack":
                        t_ns = self.gen.pending.pop(f.get("ref"), None)
                        if t_ns is not None:
                            self._ack(t_ns, now)
            return
        if b'"type":"ack"' in data:
            for part in data.split(b"\n"):
                if part.startswith(b'{"type":"ack"'):
                    ref = part[21 : part.index(b'"', 21)].decode()
                    t_ns = self.gen.pending.pop(ref, None)
                    if t_ns is not None:
                        self._ack(t_ns, now)

    def _socketio(self, data: bytes, now: int) -> None:
        if data.startswith(b"43"):
            ack = int(data[2 : data.index(b"[")])
            t_ns = self.acks.pop(ack, None)
            if t_ns is not None:
                self._ack(t_ns, now)
            return
        self._count(data, 0, now)

    def _ack(self, t_ns: int, now: int) -> None:
        # The ack belongs to the step its message was sent in; latest step is where it was sent.
        for s in reversed(self.gen.steps.values()):
            s.ack_us.append((now - t_ns) // 1000)
            break

    def _storm(self, data: bytes) -> None:
        for part in data.split(b"\n"):
            if part.startswith(b'{"type":"msg"'):
                self.storm_seen += 1
                self.gen.storm_received += 1
                seq_at = part.index(b'"seq":') + 6
                self.last_seq = int(part[seq_at : part.index(b",", seq_at)])
            elif part.startswith(b'{"type":"live"') and self.storm_done is not None and not self.storm_done.done():
                self.storm_done.set_result(None)

    def send(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.send(self.gen.data_kind, data)

    def send_frame(self, frame: dict[str, Any]) -> None:
        """A Roost frame in the connection's encoding."""
        self.send(msgspec.msgpack.encode(frame) if self.gen.msgpack else json.dumps(frame).encode())

    def bytes_received(self) -> int:
        """TCP bytes this connection has received so far (headers, compression and all)."""
        if self.transport is None:
            return 0
        sock = self.transport.underlying_transport.get_extra_info("socket")
        if sock is None:
            return 0
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
        return int(struct.unpack_from("=Q", info, _TCP_BYTES_RECEIVED)[0]) if len(info) >= 136 else 0

    async def expect(self, accept: Callable[[dict[str, Any]], bool], timeout: float = 30.0) -> dict[str, Any]:
        """Setup only: wait for a frame (Roost frames may be ``\\n``-batched) that ``accept`` takes."""
        assert self.setup is not None
        deadline = time.monotonic() + timeout
        while True:
            data = await asyncio.wait_for(self.setup.get(), max(0.01, deadline - time.monotonic()))
            parts: list[Any] = msgspec.msgpack.decode(data) if self.gen.msgpack else data.split(b"\n")
            for part in parts:
                if not part:
                    continue
                if self.gen.shape == "socketio":
                    obj: dict[str, Any] = {"raw": part.decode()}
                elif self.gen.msgpack:
                    obj = part
                else:
                    obj = json.loads(part)
                    if obj.get("type") == "error" and obj.get("code") not in (4409,):
                        raise RuntimeError(f"{self.user}: {obj}")
                if accept(obj):
                    return obj


# ---- connecting ---------------------------------------------------------------------------------


async def connect(gen: Gen, plan: dict[str, Any], index: int, room: str, user: str, url: str) -> Client:
    def factory() -> Client:
        return Client(gen, index, room, user)

    shape = gen.shape
    if shape == "bare":
        target = f"{url}/ws?room={room}"
    elif shape == "socketio":
        target = f"{url}/socket.io/?EIO=4&transport=websocket"
    else:
        target = f"{url}/ws"
    headers: dict[str, str] = {}
    if gen.msgpack:
        headers["Sec-WebSocket-Protocol"] = "roost.v1.msgpack"
    if gen.deflate:
        headers["Sec-WebSocket-Extensions"] = "permessage-deflate; client_max_window_bits"
    _, client = await ws_connect(
        factory, target, websocket_handshake_timeout=60, read_buffer_init_size=4096, extra_headers=headers or None
    )
    assert isinstance(client, Client)
    if shape == "roost":
        token = TokenAuthority(plan["secret"]).issue(user, ttl_s=3600)
        client.send_frame({"type": "auth", "token": token})
        await client.expect(lambda f: f.get("type") == "welcome")
    elif shape == "socketio":
        await client.expect(lambda f: f["raw"].startswith("0"))
        client.send(b"40")
        await client.expect(lambda f: f["raw"].startswith("40"))
    return client


async def enter(client: Client, first: bool, after: int | None = None) -> None:
    """Join the client's room (the first member creates it) and follow it until live."""
    shape = client.gen.shape
    room = client.room
    if shape == "socketio":
        client.send(wire.socketio_join(room))
        await client.expect(lambda f: f["raw"].startswith("431"))
    elif shape == "roost":
        if first:
            client.send_frame({"type": "create", "room": room, "id": "c"})
            await client.expect(lambda f: f.get("type") in ("ok", "error") and f.get("ref") == "c")
        else:
            client.send_frame({"type": "join", "room": room, "id": "j"})
            await client.expect(lambda f: f.get("type") in ("ok", "error") and f.get("ref") == "j")
        await follow(client, after)


async def follow(client: Client, after: int | None) -> None:
    frame: dict[str, Any] = {"type": "subscribe", "room": client.room, "id": "s"}
    if after is not None:
        frame["after"] = after
    client.send_frame(frame)
    live = await client.expect(lambda f: f.get("type") == "live")
    client.last_seq = int(live["seq"])


async def gather_limited(coros: list[Any], limit: int) -> list[Any]:
    gate = asyncio.Semaphore(limit)

    async def one(coro: Any) -> Any:
        async with gate:
            return await coro

    return await asyncio.gather(*(one(c) for c in coros))


async def open_rooms(gen: Gen, plan: dict[str, Any]) -> list[Client]:
    """Connect ``rooms x members`` clients, spread over the server URLs, each in its room, live."""
    urls: list[str] = plan["urls"]
    rooms, members = plan["rooms"], plan["members"]
    prefix = plan["prefix"]
    specs = [(r * members + m, f"{prefix}r{r}", f"{prefix}u{r}-{m}") for r in range(rooms) for m in range(members)]
    t0 = time.monotonic()
    clients: list[Client] = await gather_limited(
        [connect(gen, plan, i, room, user, urls[i % len(urls)]) for i, room, user in specs],
        plan.get("handshakes_in_flight", 200),
    )
    gen.connect_s = time.monotonic() - t0
    # The first member of each room creates it, then everyone else joins and follows.
    t1 = time.monotonic()
    firsts = clients[::members]
    await gather_limited([enter(c, True) for c in firsts], 200)
    others = [c for c in clients if c.index % members]
    await gather_limited([enter(c, False) for c in others], 200)
    gen.enter_s = time.monotonic() - t1
    return clients


# ---- the fan-out ladder ------------------------------------------------------------------------


def percentile(values: list[int], q: float) -> float | None:
    if not values:
        return None
    return values[min(len(values) - 1, int(q * len(values)))] / 1000.0


class Sender:
    """Sends timed messages at a fixed offered rate, rotating the publisher over all clients."""

    def __init__(self, gen: Gen, clients: list[Client], size: int, filler: str = "x") -> None:
        self.gen = gen
        self.clients = clients
        self.size = size
        self.words = random.Random(7) if filler == "words" else None
        """``filler: words`` (the wire scenario): bodies padded with words, so compression meets text."""
        self.turn = itertools.cycle(clients)
        self.counter = itertools.count()

    def send_one(self, step: int) -> None:
        client = next(self.turn)
        now = time.monotonic_ns()
        n = next(self.counter)
        text = wire.body(now, step, self.size, self.words)
        shape = self.gen.shape
        if shape == "roost":
            ref = str(n)
            self.gen.pending[ref] = now
            if self.gen.msgpack:
                client.send(wire.roost_send_msgpack(client.room, f"b{n}", text, ref))
            else:
                client.send(wire.roost_send(client.room, f"b{n}", text, ref))
        elif shape == "bare":
            client.send(wire.bare_send(client.room, n, now, text))
        else:
            ack = next(client.ack_counter)
            client.acks[ack] = now
            client.send(wire.socketio_send(client.room, ack, now, text))

    async def run(self, step: Step, rate: float, duration: float) -> None:
        start = time.monotonic()
        while True:
            elapsed = time.monotonic() - start
            if elapsed >= duration:
                break
            due = int(elapsed * rate) - step.sent
            for _ in range(due):
                self.send_one(step.index)
            step.sent += max(0, due)
            await asyncio.sleep(0.002)


async def fanout(gen: Gen, plan: dict[str, Any]) -> None:
    clients = await open_rooms(gen, plan)
    members = plan["members"]
    for c in clients:
        c.setup = None
    emit({"event": "ready", "connections": len(clients), "dropped": gen.dropped})
    sender = Sender(gen, clients, plan["size"], plan.get("filler", "x"))
    # Probe: one message into every room; every member must receive it.
    probe = gen.steps[0] = Step(0, members)
    for room_first in clients[::members]:
        sender.turn = itertools.cycle([room_first])
        sender.send_one(0)
        probe.sent += 1
    sender.turn = itertools.cycle(clients)
    await drain(probe, 15.0)
    if probe.received < probe.sent * members:
        emit({"event": "error", "reason": f"probe: {probe.received}/{probe.sent * members} frames"})
        return
    # Warm-up at the first rate, not measured.
    warm = gen.steps[-1] = Step(-1, members)
    await sender.run(warm, plan["rates"][0], plan.get("warmup_s", 2.0))
    await drain(warm, 10.0)
    del gen.steps[-1]
    gen.pending.clear()
    for index, rate in enumerate(plan["rates"], start=1):
        step = gen.steps[index] = Step(index, members)
        counting = plan.get("wire_bytes", False)
        rx0 = sum(c.bytes_received() for c in clients) if counting else 0
        emit({"event": "step-start", "rate": rate})
        cpu0, wall0 = time.process_time(), time.monotonic()
        dropped0 = gen.dropped
        await sender.run(step, rate, plan["duration_s"])
        wall = time.monotonic() - wall0
        in_window = step.received
        gen_cpu = (time.process_time() - cpu0) / wall * 100
        emit({"event": "step-end", "rate": rate})
        rx = sum(c.bytes_received() for c in clients) - rx0 if counting else 0
        await drain(step, plan.get("drain_s", 10.0))
        await acks_settled(gen, clients, 5.0)
        result = summarize(step, rate, wall, in_window, gen.dropped - dropped0, gen_cpu, plan)
        if counting:
            result["rx_bytes"] = rx
            result["bytes_per_frame"] = round(rx / in_window, 1) if in_window else None
        del gen.steps[index]
        gen.pending.clear()
        emit(result)
        if not result["sustainable"] and plan.get("stop_on_fail", True):
            break


async def drain(step: Step, limit_s: float) -> None:
    deadline = time.monotonic() + limit_s
    while step.received < step.sent * step.members and time.monotonic() < deadline:
        await asyncio.sleep(0.02)


async def acks_settled(gen: Gen, clients: list[Client], limit_s: float) -> None:
    """A sender may see its own message before the ack for it: wait for the acks too."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if gen.shape == "roost" and not gen.pending:
            return
        if gen.shape == "socketio" and not any(c.acks for c in clients):
            return
        if gen.shape == "bare":
            return
        await asyncio.sleep(0.02)


def summarize(
    step: Step, rate: float, wall: float, in_window: int, dropped: int, gen_cpu: float, plan: dict[str, Any]
) -> dict[str, Any]:
    expected = step.sent * step.members
    lost = max(0, expected - step.received)
    lat = sorted(step.lat_us)
    # Frames never received count as infinitely late: they push the percentiles up, never down.
    lat_all = lat + [10**12] * lost
    acks = sorted(step.ack_us)
    p99 = percentile(lat_all, 0.99)
    sustainable = (
        in_window >= 0.95 * expected and lost == 0 and dropped == 0 and p99 is not None and p99 < plan["p99_ms"]
    )
    return {
        "event": "step",
        "rate": rate,
        "seconds": round(wall, 3),
        "sent": step.sent,
        "expected_frames": expected,
        "delivered_in_window": in_window,
        "delivered_per_s": round(in_window / wall),
        "lost": lost,
        "dropped": dropped,
        "e2e_ms": {
            "p50": percentile(lat_all, 0.50),
            "p99": p99,
            "p999": percentile(lat_all, 0.999),
        },
        "ack_ms": {"p50": percentile(acks, 0.5), "p99": percentile(acks, 0.99), "p999": percentile(acks, 0.999)},
        "acks": len(acks),
        "gen_cpu": round(gen_cpu, 1),
        "sustainable": sustainable,
    }


# ---- idle connections --------------------------------------------------------------------------


async def idle(gen: Gen, plan: dict[str, Any]) -> None:
    """Open many connections (each in a room, following it), hold them, then check they still work."""
    emit({"event": "step-start", "connections": plan["rooms"] * plan["members"]})
    t0 = time.monotonic()
    clients = await open_rooms(gen, plan)
    seconds = time.monotonic() - t0
    for c in clients:
        c.setup = None
    emit({"event": "opened", "connections": len(clients), "seconds": round(seconds, 3)})
    await asyncio.sleep(plan.get("hold_s", 3.0))
    emit({"event": "measure"})  # the runner reads the server's memory now
    await wait_for_line()
    # Liveness: one message into each of the first ``check_rooms`` rooms.
    members = plan["members"]
    step = gen.steps[1] = Step(1, members)
    sender = Sender(gen, clients, plan["size"])
    for first in clients[::members][: plan.get("check_rooms", 10)]:
        sender.turn = itertools.cycle([first])
        sender.send_one(1)
        step.sent += 1
    await drain(step, 20.0)
    emit(
        {
            "event": "step",
            "connections": len(clients),
            "open_seconds": round(seconds, 3),
            "connect_seconds": round(gen.connect_s, 3),
            "handshakes_per_s": round(len(clients) / gen.connect_s),
            "join_follow_seconds": round(gen.enter_s, 3),
            "liveness": [step.received, step.sent * members],
            "dropped": gen.dropped,
        }
    )


# ---- catch-up storm ----------------------------------------------------------------------------


async def storm(gen: Gen, plan: dict[str, Any]) -> None:
    """Clients follow their rooms, go away, fall ``behind`` messages back, and all return at once."""
    clients = await open_rooms(gen, plan)
    behind = plan["behind"]
    # Everyone's cursor is the room's head once all members are in (the last join's seq).
    heads: dict[str, int] = {}
    for c in clients:
        heads[c.room] = max(heads.get(c.room, 0), c.last_seq)
    cursors = {c.index: heads[c.room] for c in clients}
    gen.closing = True
    for c in clients:
        assert c.transport is not None
        c.transport.send_close()
        c.transport.disconnect()
    await asyncio.sleep(0.5)
    gen.closing = False
    # One writer per room puts ``behind`` messages in while everyone is away.
    writers = await gather_limited(
        [
            connect(gen, plan, -1, f"{plan['prefix']}r{r}", f"{plan['prefix']}u{r}-0", plan["urls"][0])
            for r in range(plan["rooms"])
        ],
        200,
    )

    async def write(w: Client) -> None:
        for n in range(behind):
            ref = f"w{n}"
            w.send(wire.roost_send(w.room, f"storm-{n}", wire.body(0, -9, plan["size"]), ref))
            if n % 50 == 49 or n == behind - 1:
                await w.expect(_is_ack(ref), 120)

    t_write = time.monotonic()
    await asyncio.gather(*(write(w) for w in writers))
    write_s = time.monotonic() - t_write
    emit({"event": "written", "messages": behind * len(writers), "seconds": round(write_s, 3)})
    # Everyone reconnects at once and resumes from their cursor.
    emit({"event": "step-start", "clients": len(clients)})
    t0 = time.monotonic()
    done_at: list[float] = []

    async def come_back(old: Client) -> Client:
        c = await connect(gen, plan, old.index, old.room, old.user, plan["urls"][old.index % len(plan["urls"])])
        c.storm_done = asyncio.get_running_loop().create_future()
        c.setup = None
        frame = {"type": "subscribe", "room": c.room, "after": cursors[old.index], "id": "s"}
        c.send_frame(frame)
        await asyncio.wait_for(c.storm_done, 120)
        done_at.append(time.monotonic() - t0)
        return c

    back = await gather_limited([come_back(c) for c in clients], plan.get("handshakes_in_flight", 2000))
    total = time.monotonic() - t0
    complete = sum(1 for c in back if c.storm_seen >= behind)
    done_at.sort()
    emit(
        {
            "event": "step",
            "clients": len(back),
            "behind": behind,
            "seconds_all_caught_up": round(total, 3),
            "p50_s": round(done_at[len(done_at) // 2], 3),
            "p99_s": round(done_at[int(len(done_at) * 0.99) - 1], 3),
            "complete": complete,
            "messages_delivered": gen.storm_received,
            "dropped": gen.dropped,
        }
    )


def _is_ack(ref: str) -> Callable[[dict[str, Any]], bool]:
    return lambda f: f.get("type") == "ack" and f.get("ref") == ref


# ---- plumbing ----------------------------------------------------------------------------------


def emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def wait_for_line() -> None:
    """Block until the runner writes a line on stdin (it has finished its measurement)."""
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)


async def run(plan: dict[str, Any]) -> None:
    gen = Gen(plan["shape"], plan.get("encoding", "json"), plan.get("deflate", False))
    scenario = {"fanout": fanout, "idle": idle, "storm": storm}[plan["scenario"]]
    try:
        await scenario(gen, plan)
    finally:
        gen.closing = True
        emit({"event": "done"})


def main() -> None:
    plan = json.loads(sys.argv[1]) if sys.argv[1] != "-" else json.loads(sys.stdin.readline())
    try:
        import uvloop

        uvloop.run(run(plan))
    except ImportError:  # pragma: no cover - uvloop is a dependency on every supported platform
        asyncio.run(run(plan))


if __name__ == "__main__":
    main()
