"""The metrics' cost on the fan-out path, in instructions: this tree against a baseline checkout.

Why instructions: on this shared 2-core machine the fan-out ceiling of identical code moves by a whole
ladder step between runs (docs/benchmarks.md), and CPU seconds per frame move with the queue depths
the load happens to build. Callgrind counts the instructions the server executes, which do not depend
on what else the machine is doing. Each server runs saturated (under callgrind it is ~50x slower
than the native generator feeding it), which is the regime of the fan-out ceiling.

Each variant serves the same workload twice, with N and 2N messages, and the difference of the two
totals divided by N is the cost of one message (its store append and its fan-out to every member),
with the start-up, connection and shut-down costs cancelled out.

    .venv/bin/python bench/metrics_cost.py --baseline-src /work/wt-base/src --messages 300
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from roost.auth import TokenAuthority
from roost.chaos.infra import free_port

HERE = Path(__file__).resolve().parent
THIS_SRC = HERE.parent / "src"


async def _wait_ready(base: str, within_s: float) -> None:
    deadline = time.monotonic() + within_s
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            try:
                async with http.get(f"{base}/readyz") as answer:
                    if answer.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.5)
    raise TimeoutError(f"{base} not ready within {within_s} s")


async def _member(
    http: aiohttp.ClientSession, url: str, token: str, room: str, create: bool
) -> aiohttp.ClientWebSocketResponse:
    ws = await http.ws_connect(f"{url}/ws", max_msg_size=0)
    await ws.send_json({"type": "auth", "token": token})
    await _until(ws, lambda f: f.get("type") == "welcome")
    await ws.send_json({"type": "create" if create else "join", "room": room, "id": "m"})
    await _until(ws, lambda f: f.get("ref") == "m")
    await ws.send_json({"type": "subscribe", "room": room, "id": "s"})
    await _until(ws, lambda f: f.get("type") == "live")
    return ws


def _frames(text: str) -> list[dict[str, object]]:
    """A WebSocket message may carry several frames, one JSON object per line (protocol.md section 2)."""
    return [json.loads(line) for line in text.splitlines() if line]


async def _until(ws: aiohttp.ClientWebSocketResponse, accept: object) -> dict[str, object]:
    while True:
        for frame in _frames(await ws.receive_str(timeout=300)):
            if frame.get("type") == "error":
                raise RuntimeError(frame)
            if accept(frame):  # type: ignore[operator]
                return frame


async def _workload(url: str, secret: str, rooms: int, members: int, messages: int, window: int) -> None:
    """``messages`` sends spread over the rooms, at most ``window`` unacknowledged per room; every member
    must receive every message of its room before the workload ends."""
    authority = TokenAuthority(secret)
    prefix = secrets.token_hex(3)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        socks: list[list[aiohttp.ClientWebSocketResponse]] = []
        for r in range(rooms):
            room = f"c{prefix}r{r}"
            row = [
                await _member(http, url, authority.issue(f"c{prefix}u{r}-{m}", ttl_s=3600), room, m == 0)
                for m in range(members)
            ]
            socks.append(row)
        per_room = messages // rooms

        async def reader(r: int, m: int) -> None:
            ws = socks[r][m]
            want, seen, acks = per_room, 0, 0
            while seen < want or (m == 0 and acks < want):
                for frame in _frames(await ws.receive_str(timeout=300)):
                    kind = frame.get("type")
                    if kind == "msg" and frame.get("kind", "text") == "text":
                        seen += 1
                    elif kind == "ack":
                        acks += 1
                        gates[r].release()
                    elif kind == "error":
                        raise RuntimeError(frame)

        gates = [asyncio.Semaphore(window) for _ in range(rooms)]

        async def paced_sender(r: int) -> None:
            ws, room = socks[r][0], f"c{prefix}r{r}"
            for i in range(per_room):
                await gates[r].acquire()
                if ws.closed:
                    raise RuntimeError(f"the server closed the sender of room {r}: {ws.close_code}")
                await ws.send_json({"type": "send", "room": room, "cmid": f"m{i}", "body": "x" * 200, "id": f"a{i}"})

        await asyncio.gather(
            *(paced_sender(r) for r in range(rooms)),
            *(reader(r, m) for r in range(rooms) for m in range(members)),
        )
        for row in socks:
            for ws in row:
                await ws.close()


_MICRO = """
import sys, time
from roost.metrics import NodeMetrics


class Service:  # the statements Writer.append and Session's send path add, in the same shape
    def __init__(self, metrics):
        self.metrics = metrics

    def append(self, measured):
        if measured:
            started = time.perf_counter()
            self.metrics.append_seconds.observe(time.perf_counter() - started)
            self.metrics.tally.appended_new += 1

    def send(self, measured):
        if measured:
            started = time.perf_counter()
            self.append(measured)
            self.metrics.send_ack_seconds.observe(time.perf_counter() - started)
        else:
            self.append(measured)


class Session:  # Session.on_message's one statement per live delivery
    def __init__(self, metrics):
        self._tally = metrics.tally

    def on_message(self, measured):
        if measured:
            self._tally.delivered += 1


def run(members, n, measured):
    metrics = NodeMetrics()
    service, sessions = Service(metrics), [Session(metrics) for _ in range(members)]
    for _ in range(n):
        service.send(measured)
        for session in sessions:
            session.on_message(measured)


run(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "with")
"""


def _micro(src: Path, members: int, n: int, variant: str, work: Path) -> int:
    """Instructions of a loop that does, ``n`` times, exactly what the metrics add to one message (the
    statements of ``Writer.append``, ``Session`` send and delivery), or the same loop without them."""
    out = work / f"micro-{variant}-{n}.out"
    argv = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, "-c", _MICRO]
    argv += [str(members), str(n), variant]
    subprocess.run(argv, env=dict(os.environ, PYTHONPATH=str(src)), check=True, capture_output=True)
    return _totals(out)


def _serve(src: Path, data: Path, port: int, secret: str, out: Path) -> subprocess.Popen[bytes]:
    argv = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable]
    argv += ["-m", "roost", "serve", "--port", str(port), "--data-dir", str(data), f"--secret={secret}"]
    argv += ["--log-level", "WARNING"]
    env = dict(os.environ, PYTHONPATH=str(src))
    return subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=open(f"{out}.log", "wb"))


def _totals(out: Path) -> int:
    match = re.search(r"^totals:\s+(\d+)", out.read_text(errors="replace"), re.MULTILINE)
    if not match:
        raise RuntimeError(f"no totals in {out}")
    return int(match.group(1))


async def _one(src: Path, work: Path, messages: int, args: argparse.Namespace) -> int:
    port, secret = free_port(), secrets.token_hex(16)
    data = Path(tempfile.mkdtemp(dir=work))
    out = data / "callgrind.out"
    server = _serve(src, data / "data", port, secret, out)
    try:
        await _wait_ready(f"http://127.0.0.1:{port}", within_s=300)
        await _workload(f"ws://127.0.0.1:{port}", secret, args.rooms, args.members, messages, args.window)
    except Exception:
        log = Path(f"{out}.log").read_text(errors="replace").splitlines()
        print("the server's last log lines:", *[line for line in log if not line.startswith("==")][-20:], sep="\n")
        raise
    finally:
        server.send_signal(signal.SIGTERM)
        await asyncio.to_thread(server.wait, 300)
    return _totals(out)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline-src", required=True, help="src folder of the baseline checkout")
    parser.add_argument("--this-src", default=str(THIS_SRC), help="src folder of the measured checkout (default: here)")
    parser.add_argument("--messages", type=int, default=300, help="N: messages in the short run (2N in the long)")
    parser.add_argument("--rooms", type=int, default=4)
    parser.add_argument("--members", type=int, default=50, help="members per room (S1: 50)")
    parser.add_argument("--window", type=int, default=16, help="unacknowledged sends per room")
    parser.add_argument("--repeat", type=int, default=1, help="measure each variant this many times")
    args = parser.parse_args()
    variants = {"this tree": Path(args.this_src).resolve(), "baseline": Path(args.baseline_src).resolve()}
    n = args.messages
    per_message: dict[str, list[float]] = {name: [] for name in variants}
    with tempfile.TemporaryDirectory(prefix="roost-metrics-cost-") as tmp:
        for attempt in range(args.repeat):
            for name, src in variants.items() if attempt % 2 == 0 else reversed(variants.items()):
                short = await _one(src, Path(tmp), n, args)
                long = await _one(src, Path(tmp), 2 * n, args)
                cost = (long - short) / n
                per_message[name].append(cost)
                print(
                    f"{name}: {short:,} instructions with {n} messages, {long:,} with {2 * n}: "
                    f"{cost:,.0f} per message ({cost / args.members:,.0f} per delivered frame)",
                    flush=True,
                )
        this, base = statistics.median(per_message["this tree"]), statistics.median(per_message["baseline"])
        print(f"this tree / baseline, instructions per message: {this / base:.4f} ({(this / base - 1) * 100:+.2f} %)")
        # The metrics' own statements, counted alone: the difference above is within the run-to-run spread
        # of a whole server (batching depends on timing), this one is exact.
        counts = {
            (variant, k): _micro(variants["this tree"], args.members, k, variant, Path(tmp))
            for variant in ("with", "without")
            for k in (20_000, 40_000)
        }
        with_, without = (counts[v, 40_000] - counts[v, 20_000] for v in ("with", "without"))
        own = (with_ - without) / 20_000
        print(
            f"the metrics' statements for one message and its {args.members} deliveries: {own:,.0f} instructions, "
            f"{own / base * 100:.2f} % of the baseline's {base:,.0f} per message"
        )


if __name__ == "__main__":
    asyncio.run(main())
