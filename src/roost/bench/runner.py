"""The benchmark run: for each scenario and target, a fresh server, a fresh load generator, one record.

The server is pinned to core 0 and the load generator (Python or Node, ``generators.py``) to core 1
(``taskset``), so the figures are per server core. The runner samples the server's CPU over exactly
each measured window (the generator says when a window starts and ends) and its memory when the
generator holds its connections open.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from . import generators
from .searchlag import Snapshot, scrape, step_figures
from .servers import TARGETS, Server, Target, cpu_seconds, rss_bytes

__all__ = ["Plan", "full_plan", "quick_plan", "run_bench"]


@dataclass
class Plan:
    scenarios: dict[str, dict[str, Any]]
    """Scenario name → its parameters; each lists its ``targets``."""
    quick: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def fixed_rates(self, rates: list[int]) -> None:
        """Measure exactly these rates: a before/after comparison needs every step of every round."""
        for name in ("fanout", "scale"):
            if name in self.scenarios:
                self.scenarios[name] = {**self.scenarios[name], "rates": rates, "stop_on_fail": False}


FANOUT_RATES = [100, 500, 1000, 1500, 2000, 2500, 3000, 4000, 5000, 6000, 8000]

WIRE_VARIANTS = ("json", "msgpack", "json+deflate")
"""The ``wire`` scenario's variants: an encoding, with ``+deflate`` for permessage-deflate (docs/benchmarks.md)."""


def wire_options(variant: str) -> tuple[dict[str, Any], list[str]]:
    """The load generator's plan fields and the server's extra flags of one ``wire`` variant."""
    encoding, _, compression = variant.partition("+")
    if encoding not in ("json", "msgpack") or compression not in ("", "deflate"):
        raise ValueError(f"unknown wire variant {variant!r}: an encoding (json, msgpack), optionally +deflate")
    deflate = compression == "deflate"
    plan = {"encoding": encoding, "deflate": deflate, "wire_bytes": True}
    return plan, (["--ws-compression", "deflate"] if deflate else [])


def full_plan() -> Plan:
    fanout = {"rooms": 20, "members": 50, "size": 200, "rates": FANOUT_RATES, "duration_s": 10.0, "p99_ms": 100.0}
    return Plan(
        {
            "fanout": {
                **fanout,
                "targets": ["bare-picows", "bare-aiohttp", "roost", "socketio-node", "socketio-py"],
            },
            "idle": {
                "rooms": 100,
                "members": 100,
                "size": 200,
                "hold_s": 3.0,
                "targets": ["roost", "bare-aiohttp", "bare-picows", "socketio-node", "socketio-py"],
            },
            "storm": {"rooms": 40, "members": 50, "behind": 200, "size": 200, "targets": ["roost"]},
            "scale": {
                **fanout,
                "targets": [
                    "roost-redis",
                    "roost-redis-x2",
                    "roost-redis-w2",
                    "roost-nats",
                    "roost-nats-x2",
                    "roost-nats-w2",
                ],
            },
            "wire": {
                "rooms": 20,
                "members": 50,
                "size": 200,
                "rates": [1000],
                "duration_s": 10.0,
                "p99_ms": 100.0,
                "filler": "words",
                "variants": list(WIRE_VARIANTS),
                "targets": ["roost"],
            },
        }
    )


def quick_plan() -> Plan:
    """A smoke run: every scenario and the Roost + bare targets, small and short. No speed threshold."""
    fanout = {"rooms": 2, "members": 10, "size": 200, "rates": [50, 200], "duration_s": 1.0, "p99_ms": 1000.0}
    return Plan(
        {
            "fanout": {
                **fanout,
                "targets": ["roost", "roost-consumer", "bare-aiohttp"],
                "warmup_s": 0.5,
                "drain_s": 5.0,
            },
            "idle": {"rooms": 10, "members": 20, "size": 200, "hold_s": 0.5, "targets": ["roost", "bare-aiohttp"]},
            "storm": {"rooms": 4, "members": 10, "behind": 30, "size": 200, "targets": ["roost"]},
            "scale": {**fanout, "targets": ["roost-redis-x2"], "warmup_s": 0.5, "drain_s": 5.0},
            "wire": {
                **fanout,
                "rates": [100],
                "filler": "words",
                "variants": list(WIRE_VARIANTS),
                "targets": ["roost"],
                "warmup_s": 0.5,
                "drain_s": 5.0,
            },
        },
        quick=True,
    )


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        mem = int(Path("/proc/meminfo").read_text().split()[1]) * 1024
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(mem / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "pinning": "server taskset -c 0, load generator taskset -c 1" if shutil.which("taskset") else "none",
    }


class _Progress:
    def __init__(self, out: TextIO) -> None:
        self.out = out

    def __call__(self, text: str) -> None:
        self.out.write(f"[bench {time.strftime('%H:%M:%S')}] {text}\n")
        self.out.flush()


async def _one(
    scenario: str,
    params: dict[str, Any],
    target: Target,
    work: Path,
    peers: Path,
    say: _Progress,
    generator: str,
    variant: str | None = None,
) -> dict[str, Any]:
    if variant is not None and generator != "python":
        raise ValueError(f"the wire scenario is measured with the python generator only, not {generator}")
    secret = secrets.token_hex(16)
    prefix = f"b{secrets.token_hex(3)}"
    options, flags = wire_options(variant) if variant is not None else ({}, [])
    label = f"{target.name}-{variant}" if variant is not None else target.name
    server = Server(target, work / f"{scenario}-{label}", peers, secret, prefix, tuple(flags))
    await server.start()
    record: dict[str, Any] = {
        "scenario": scenario,
        "target": target.name,
        "note": target.note,
        "generator": generator,
        "steps": [],
    }
    if variant is not None:
        record["variant"] = variant
    profilers = _profile(server, scenario, target)
    try:
        await asyncio.sleep(0.5)
        rss0 = rss_bytes(server.pids)
        loadgen_scenario = "fanout" if scenario in ("scale", "wire") else scenario
        plan = {
            **{k: v for k, v in params.items() if k not in ("targets", "variants")},
            **options,
            "scenario": loadgen_scenario,
            "shape": target.shape,
            "urls": server.urls,
            "prefix": prefix,
            "secret": secret,
        }
        argv = generators.argv(generator, peers)
        if shutil.which("taskset") and target.processes == 1 and target.workers == 1:
            argv = ["taskset", "-c", "1", *argv]
        gen = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, limit=2**20
        )
        assert gen.stdin is not None and gen.stdout is not None
        gen.stdin.write(json.dumps(plan).encode() + b"\n")
        await gen.stdin.drain()
        cpu0 = wall0 = 0.0
        server_cpu: float | None = None
        http_urls = server.http_urls if target.kind == "roost" else []
        search0: Snapshot | None = None
        while True:
            line = await asyncio.wait_for(gen.stdout.readline(), timeout=600)
            if not line:
                break
            event = json.loads(line)
            kind = event["event"]
            if kind == "step-start":
                cpu0, wall0 = cpu_seconds(server.pids), time.monotonic()
                server_cpu = None
                search0 = await scrape(http_urls) if http_urls else None
            elif kind == "step-end":
                server_cpu = (cpu_seconds(server.pids) - cpu0) / (time.monotonic() - wall0) * 100
            elif kind == "measure":
                rss = rss_bytes(server.pids)
                record["rss_before"], record["rss_after"] = rss0, rss
                gen.stdin.write(b"go\n")
                await gen.stdin.drain()
            elif kind == "step":
                if server_cpu is None:
                    server_cpu = (cpu_seconds(server.pids) - cpu0) / (time.monotonic() - wall0) * 100
                event["server_cpu"] = round(server_cpu, 1)
                event["generator"] = generator  # whose figures (e2e, ack, gen_cpu) these are
                if variant is not None and event.get("delivered_in_window"):
                    # The server's CPU over the window, per frame delivered in it (both sampled over that window).
                    busy_us = server_cpu / 100 * event["seconds"] * 1e6
                    event["server_us_per_frame"] = round(busy_us / event["delivered_in_window"], 2)
                search = step_figures(search0, await scrape(http_urls)) if http_urls else None
                if search is not None:
                    event["search"] = search
                record["steps"].append(event)
                say(f"{scenario} {label}: {_brief(event)}")
            elif kind == "error":
                record["error"] = event["reason"]
                say(f"{scenario} {target.name}: ERROR {event['reason']}")
            elif kind in ("ready", "opened", "written"):
                record[kind] = event
                say(f"{scenario} {target.name}: {kind} {event}")
            elif kind == "done":
                break
        code = await gen.wait()
        if code != 0:
            record["error"] = record.get("error") or f"load generator exited with {code}"
        consumer = await server.consumer_report()
        if consumer is not None:
            record["consumer"] = consumer
            say(f"{scenario} {target.name}: consumer {consumer}")
    finally:
        for p in profilers:
            p.send_signal(signal.SIGINT)
            await asyncio.to_thread(p.wait)
        server.stop()
        await _forget(target, prefix)
    return record


async def _forget(target: Target, prefix: str) -> None:
    """Delete what the run left in the shared Redis and NATS (keys, streams and buckets named ``prefix``)."""
    engines = {target.store, target.bus} | ({"redis"} if target.kind in ("socketio-node", "socketio-py") else set())
    try:
        if "redis" in engines:
            import redis.asyncio as aioredis

            client = aioredis.Redis(host="127.0.0.1", port=6379)
            async for key in client.scan_iter(match=f"*{prefix}*", count=1000):
                await client.delete(key)
            await client.aclose()
        if "nats" in engines:
            import nats

            nc = await nats.connect("nats://127.0.0.1:4222")
            js = nc.jetstream()
            for info in await js.streams_info():
                name = info.config.name or ""
                if prefix in name:
                    await js.delete_stream(name)
            await nc.close()
    except Exception as exc:  # cleanup is a courtesy to later runs, never a reason to fail this one
        print(f"[bench] cleanup of {prefix} failed: {exc}", file=sys.stderr)


def _profile(server: Server, scenario: str, target: Target) -> list[subprocess.Popen[bytes]]:
    """With ``ROOST_BENCH_PYSPY=DIR``, sample each server process with py-spy into DIR (collapsed stacks)."""
    folder = os.environ.get("ROOST_BENCH_PYSPY")
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not folder or not Path(spy).exists():
        return []
    Path(folder).mkdir(parents=True, exist_ok=True)
    return [
        subprocess.Popen(
            [spy, "record", "-p", str(pid), "-r", "100", "-f", "raw", "-o", f"{folder}/{scenario}-{target.name}-{i}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for i, pid in enumerate(server.pids)
    ]


def _fits(scenario: str, target: Target) -> bool:
    """The storm and the wire options speak Roost's protocol; scale is about Roost over a shared engine."""
    if scenario == "storm":
        return target.shape == "roost"
    if scenario == "wire":
        return target.shape == "roost" and target.name != "roost-picows"  # picows cannot compress
    if scenario == "scale":
        return target.shape == "roost" and target.store is not None
    return target.store is None


def _brief(step: dict[str, Any]) -> str:
    if "rate" in step:
        e2e, ack = step["e2e_ms"], step["ack_ms"]
        ok = "ok" if step["sustainable"] else "FAIL"
        return (
            f"{step['rate']} msg/s → {step['delivered_per_s']} frames/s, e2e p50 {e2e['p50']} p99 {e2e['p99']} ms, "
            f"ack p99 {ack['p99']} ms, lost {step['lost']}, cpu srv {step['server_cpu']}% "
            f"gen ({step.get('generator', 'python')}) {step['gen_cpu']}% {ok}"
            + (f", {_search(step['search'])}" if "search" in step else "")
        )
    return json.dumps(step)


def _search(figures: dict[str, Any]) -> str:
    return (
        f"search: {figures['indexed']} indexed, delay p50 <= {figures['delay_p50_s']}"
        f" p99 <= {figures['delay_p99_s']} s, lag {figures['lag_events']} at the end, {figures['errors']} errors"
    )


async def run_bench(
    plan: Plan,
    out: Path,
    peers: Path,
    only: set[str] | None = None,
    rounds: int = 1,
    generator: str = "python",
) -> dict[str, Any]:
    """Run the plan; with ``rounds`` > 1 every target runs that many times, its order reversed every
    other round (A B, B A, ...), so a drift of the machine over the run falls on both sides alike.
    ``generator`` (``generators.GENERATORS``, or several comma-separated) drives every target; with several,
    each target runs once per generator, in the same alternation; each record and step names its generator."""
    say = _Progress(sys.stderr)
    chosen = generator.split(",")
    for name in chosen:
        generators.argv(name, peers)  # an unknown name fails here, before any server starts
        await asyncio.to_thread(generators.prepare, name, peers)
    result: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": " ".join(["roost", *sys.argv[1:]]) if sys.argv else "roost bench",
        "machine": machine(),
        "quick": plan.quick,
        "rounds": rounds,
        "generator": generator,
        "plan": plan.scenarios,
        "records": [],
    }
    with tempfile.TemporaryDirectory(prefix="roost-bench-") as tmp:
        work = Path(tmp)
        for scenario, params in plan.scenarios.items():
            names = params["targets"] if only is None else sorted(n for n in only if _fits(scenario, TARGETS[n]))
            variants: list[str | None] = list(params.get("variants", [None]))
            gens = [g for g in chosen if g == "python"] if scenario == "wire" else chosen
            if not gens:
                # Its MessagePack and permessage-deflate clients are the Python generator's (loadgen.py) only.
                say(f"{scenario}: needs the python load generator ({generator} chosen): not run")
                continue
            units = [(name, gen, variant) for name in names for gen in gens for variant in variants]
            for round_ in range(1, rounds + 1):
                for name, gen, variant in units if round_ % 2 else units[::-1]:
                    target = TARGETS[name]
                    say(
                        f"{scenario}: {name}{f' [{variant}]' if variant else ''} ({target.note})"
                        + (f", load generator {gen}" if len(chosen) > 1 else "")
                        + (f", round {round_}/{rounds}" if rounds > 1 else "")
                    )
                    try:
                        record = await _one(scenario, params, target, work, peers, say, gen, variant)
                    except Exception as exc:  # a broken peer must not hide the other results
                        record = {
                            "scenario": scenario,
                            "target": name,
                            "generator": gen,
                            "error": f"{type(exc).__name__}: {exc}",
                        }
                        if variant is not None:
                            record["variant"] = variant
                        say(f"{scenario} {name}: ERROR {record['error']}")
                    record["round"] = round_
                    result["records"].append(record)
                    out.parent.mkdir(parents=True, exist_ok=True)
                    out.write_text(json.dumps(result, indent=1))
    result["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    out.write_text(json.dumps(result, indent=1))
    return result
