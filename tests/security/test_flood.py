"""One user's flood of any frame type does not slow the others: other users' send->deliver p99 under a
max-rate flood stays within ``MAX_RATIO`` of the no-flood baseline (R-SEC-40).

The benchmark's style, side by side in one run: a real server (embedded engine, default limits, the runtime
of `roost serve`), three victims in one room each sending a message every ``PACE_S`` and timing its
delivery to the two others, and phases that alternate a baseline (no flood) with a flood of one frame type
by one attacker (``mallory``, a member of the victims' room) over ``CONNECTIONS`` connections from its own
process (tests/security/flooder.py: as fast as it can write, reconnecting at once when closed). Each flood
phase is compared with the worse of the two baselines around it, each as long as the flood phase: one
stall of the shared machine (a slow fsync, another process's burst) lifts the p99 of whichever window it
lands in, so the flood window must be worse than both its neighbours, and a machine that is busier for a
while moves both sides. The table of ratios is printed; the test fails above ``MAX_RATIO``. The flood's
first second (the attacker's burst) is reported apart, not judged (``START_S``).
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import statistics
import sys
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import aiohttp
import pytest

from roost.chaos.infra import wait_until
from roost.config import Limits, Settings
from roost.node import Node, serve
from roost.protocol.types import KIND_TEXT, Draft

from ..backends import cleanup, make

FLOODER = Path(__file__).with_name("flooder.py")
ALL_KINDS = ("ping", "typing", "garbage", "subscribe", "send", "read", "join-leave", "create", "history")
KINDS = tuple(os.environ.get("ROOST_FLOOD_KINDS", ",".join(ALL_KINDS)).split(","))
"""``ROOST_FLOOD_KINDS=ping,read`` narrows a run (to look into one)."""
VICTIMS = ("alice", "bob", "carol")
ROOM = "lobby"
PACE_S = 0.02
"""Each victim sends every 20 ms: 150 messages/s into the room, 300 timed deliveries/s."""
PHASE_S = 2.5
"""Measured seconds per phase."""
START_S = 1.0
"""The flood's first second, measured apart and reported, not judged: the attacker spends its burst (the
buckets' size, ``user_frame_burst`` units at once) there, and the steady max-rate flood comes after."""
MAX_RATIO = 2.0
FLOOR_S = 0.004
"""A baseline p99 below this counts as this: the scheduler's own jitter on a shared 2-core machine (a few
ms) is not a slowdown a flood caused."""
CONNECTIONS = 2
ATTEMPTS = 3
"""A kind over ``MAX_RATIO`` is measured again (a new flood and a new baseline after it), up to twice, and
judged by the last attempt: on a 2-core machine shared with other test runs, a burst of someone else's work
can land in one phase; a flood that really slows the others fails every attempt (the report lists the
earlier ones too)."""


@dataclass
class Victims:
    """The victims' connections, their pacing senders and the delivery latencies they record."""

    node: Node
    http: aiohttp.ClientSession
    sockets: dict[str, aiohttp.ClientWebSocketResponse] = field(default_factory=dict)
    sent_at: dict[str, float] = field(default_factory=dict)
    samples: list[float] = field(default_factory=list)
    recording: bool = False
    cpu: float = 0.0
    gc_max: float = 0.0
    """The longest garbage collection pause of the test process in the last measured phase."""
    """The test process's (server and victims) CPU share in the last measured phase."""
    lost: list[str] = field(default_factory=list)
    """Victims the server closed: a flood that gets others disconnected fails at once."""
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self) -> None:
        for user in VICTIMS:
            ws = await self.http.ws_connect(self.node.ws_url, max_msg_size=0)
            await ws.send_str(json.dumps({"type": "auth", "token": self.node.tokens.issue(user)}))
            await ws.send_str(json.dumps({"type": "subscribe", "room": ROOM, "id": "s"}))
            self.sockets[user] = ws
        for user, ws in self.sockets.items():
            self.tasks.append(asyncio.create_task(self._read(user, ws)))
            self.tasks.append(asyncio.create_task(self._send(user, ws)))

    async def _read(self, user: str, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in ws:
            if msg.type is not aiohttp.WSMsgType.TEXT:
                break
            if self.stop.is_set():
                continue
            now = time.perf_counter()
            for part in msg.data.split("\n"):
                if '"msg"' not in part:
                    continue
                frame = json.loads(part)
                cmid = frame.get("cmid", "")
                mine = frame.get("sender") == user
                if self.recording and frame.get("type") == "msg" and not mine and cmid in self.sent_at:
                    self.samples.append(now - self.sent_at[cmid])

    async def _send(self, user: str, ws: aiohttp.ClientWebSocketResponse) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            cmid = f"{user}-{n}"
            self.sent_at[cmid] = time.perf_counter()
            await ws.send_str(json.dumps({"type": "send", "room": ROOM, "cmid": cmid, "body": "hi", "id": cmid}))
            await asyncio.sleep(PACE_S)  # the subject: victims send at a steady pace
            if ws.closed:
                self.lost.append(f"{user} closed with {ws.close_code}")
                return

    async def measure(self, seconds: float) -> list[float]:
        self.samples = []
        self.recording = True
        cpu = time.process_time()
        GC_PAUSES.clear()
        await asyncio.sleep(seconds)  # the subject: the phase's measuring window
        self.cpu = (time.process_time() - cpu) / seconds
        self.gc_max = max(GC_PAUSES, default=0.0)
        self.recording = False
        assert not self.lost, self.lost
        return self.samples

    async def aclose(self) -> None:
        self.stop.set()
        for ws in self.sockets.values():
            await ws.close()
        await asyncio.gather(*self.tasks, return_exceptions=True)


@dataclass
class Row:
    """One flood kind's line of the report."""

    kind: str
    base: float
    start: float
    flood: float
    cpu: float
    gc_max: float
    counts: dict[str, object]
    HEADER = (
        f"{'flood':<11} {'base p99':>9} {'start p99':>9} {'flood p99':>9} {'ratio':>6} {'cpu':>5} {'gc max':>7}"
        "  attacker"
    )

    @property
    def ratio(self) -> float:
        return self.flood / max(self.base, FLOOR_S)

    def line(self) -> str:
        ms = f"{self.base * 1000:7.1f}ms {self.start * 1000:7.1f}ms {self.flood * 1000:7.1f}ms"
        return f"{self.kind:<11} {ms} {self.ratio:6.2f} {self.cpu:5.2f} {self.gc_max * 1000:5.1f}ms  {self.counts}"


GC_PAUSES: list[float] = []
_gc_started = [0.0]


def _gc_timer(phase: str, info: dict[str, int]) -> None:
    if phase == "start":
        _gc_started[0] = time.perf_counter()
    else:
        GC_PAUSES.append(time.perf_counter() - _gc_started[0])


def attackers(node: Node) -> list[object]:
    return [s for s in node.websocket.sessions if s.user == "mallory"]


def p99(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=100)[98]


async def flood_phase(node: Node, kind: str, victims: Victims) -> tuple[list[float], list[float], dict[str, object]]:
    """Start the attacker, measure the victims while it floods, stop it; its counts come back too."""
    attacker = await asyncio.create_subprocess_exec(
        sys.executable,
        str(FLOODER),
        node.ws_url,
        node.tokens.issue("mallory"),
        kind,
        ROOM,
        str(CONNECTIONS),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert attacker.stdin is not None and attacker.stdout is not None
    try:
        line = await asyncio.wait_for(attacker.stdout.readline(), 30)
        assert line.strip() == b"ready", line
        start = await victims.measure(START_S)
        samples = await victims.measure(PHASE_S)
        attacker.stdin.close()
        out, _ = await asyncio.wait_for(attacker.communicate(), 15)
    finally:
        if attacker.returncode is None:
            attacker.kill()
            await attacker.wait()
    counts: dict[str, object] = json.loads(out.decode().strip().splitlines()[-1])
    # The next baseline starts once the server has let go of every attacker connection (and its backlog).
    await wait_until("the attacker's connections are gone", lambda: not attackers(node), within_s=30)
    # The flood may leave mallory outside the room (join/leave) or the room followed: restore the member.
    await node.backends.directory.add_member(ROOM, "mallory")
    return start, samples, counts


ENGINES = [e for e in os.environ.get("ROOST_FLOOD_ENGINES", "embedded,redis").split(",") if e]
"""The embedded default and a shared engine (Redis Streams + Pub/Sub). On a quiet machine every kind stays
within 1.4x on Redis too; while the machine also ran other suites its send flood measured 2x-6x
(docs/security.md, R-SEC-40)."""


@pytest.fixture(params=ENGINES)
async def flood_settings(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Settings]:
    """The defaults: the limits under test are the ones a server runs with."""
    settings = Settings(port=0, data_dir=str(tmp_path / "data"), limits=Limits())
    if request.param == "embedded":
        yield settings
        return
    chosen = make(request.param)
    yield replace(settings, store=chosen.store, bus=chosen.bus)
    await cleanup(chosen)


@pytest.mark.slow
@pytest.mark.timing
async def test_a_flood_of_any_frame_type_keeps_other_users_p99_within_2x(flood_settings: Settings) -> None:
    """[R-SEC-40] Under a max-rate flood of each frame type by one user over two connections, the
    other users' send->deliver p99 stays within 2x of the no-flood baseline measured beside it."""
    async with serve(flood_settings) as node, aiohttp.ClientSession() as http:
        await node.service.create_room("alice", ROOM)
        for user in (*VICTIMS[1:], "mallory"):
            await node.service.join(user, ROOM)
        for i in range(600):  # a full history page for the history flood to read
            await node.service.writer.append(Draft(ROOM, "alice", f"pre-{i}", f"old {i}", KIND_TEXT))
        gc.callbacks.append(_gc_timer)
        # The runtime of `roost serve` (cli._serve): a short GIL switch interval, start-up objects frozen.
        switch = sys.getswitchinterval()
        sys.setswitchinterval(0.0005)
        gc.freeze()
        victims = Victims(node, http)
        await victims.start()
        await victims.measure(1.0)  # warm-up, not counted
        baselines = [await victims.measure(PHASE_S)]
        rows: list[Row] = []
        retried: list[Row] = []
        for kind in KINDS:
            for attempt in range(ATTEMPTS):
                start, flooded, counts = await flood_phase(node, kind, victims)
                flood_cpu, flood_gc = victims.cpu, victims.gc_max
                baselines.append(await victims.measure(PHASE_S))
                base = max(p99(baselines[-2]), p99(baselines[-1]))
                row = Row(kind, base, p99(start), p99(flooded), flood_cpu, flood_gc, counts)
                print(row.line(), flush=True)
                if row.ratio <= MAX_RATIO or attempt == ATTEMPTS - 1:
                    break
                retried.append(row)
            rows.append(row)
        await victims.aclose()
        gc.callbacks.remove(_gc_timer)
        gc.unfreeze()
        sys.setswitchinterval(switch)
    load = f"test process: {threading.active_count()} threads; load average {os.getloadavg()[0]:.2f}"
    lines = [load, Row.HEADER, *(row.line() for row in rows), "measured again after:", *map(Row.line, retried)]
    table = "\n".join(lines)
    print("\n" + table)
    failed = [row.kind for row in rows if row.ratio > MAX_RATIO]
    assert not failed, f"p99 over {MAX_RATIO}x the baseline under a flood of {failed}:\n{table}"
