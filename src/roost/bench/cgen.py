"""The compiled load generator's driver: ``python -m roost.bench.cgen SOURCE -`` (the plan on stdin).

The generator itself is C (``bench/gen_c/gen.c``: epoll, a byte loop per frame, nothing allocated per frame), so
that receiving 150,000-300,000 frames a second fits on the generator's one core, which neither the Python nor the
Node generator does (docs/benchmarks.md). This driver keeps everything that is not I/O in Python, where
``loadgen`` has it: it compiles the source (once per content, with the machine's ``cc``), lays out the clients
exactly as ``loadgen.open_rooms`` does (rooms, users, URLs, tokens), and turns each step's raw figures into the
same JSON line with ``loadgen.summarize``, so the sustainable rule and the percentiles are literally the same
code. It waits on a pipe while a step runs (its own CPU is not the generator's: ``gen_cpu`` is the C process's).

Scenarios: the fan-out ladder (``fanout``, and ``scale``, which runs it); shapes ``roost`` and ``bare``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from array import array
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..auth import TokenAuthority
from .loadgen import Step, emit, summarize

__all__ = ["build", "config_lines", "main"]


def build(source: Path) -> Path:
    """The compiled generator for this source (built once per content, in the user's cache)."""
    code = source.read_bytes()
    digest = hashlib.sha256(code).hexdigest()[:16]
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "roost-bench"
    binary = cache / f"gen-{digest}"
    if binary.exists():
        return binary
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise FileNotFoundError("the c load generator needs a C compiler (cc or gcc on the PATH)")
    cache.mkdir(parents=True, exist_ok=True)
    partial = binary.with_suffix(".partial")
    subprocess.run([compiler, "-O2", "-Wall", "-o", str(partial), str(source)], check=True, capture_output=True)
    partial.replace(binary)
    return binary


def config_lines(plan: dict[str, Any]) -> list[str]:
    """The C generator's config: the plan's numbers, then one client per line, rooms in order, each room's
    first member first (it creates the room), URLs dealt round-robin as ``loadgen.open_rooms`` deals them."""
    rooms, members, prefix, urls = plan["rooms"], plan["members"], plan["prefix"], plan["urls"]
    shape = plan["shape"]
    authority = TokenAuthority(plan["secret"]) if shape == "roost" else None
    lines = [
        f"shape {shape}",
        f"size {plan['size']}",
        f"members {members}",
        f"duration {plan['duration_s']}",
        f"warmup {plan.get('warmup_s', 2.0)}",
        f"drain {plan.get('drain_s', 10.0)}",
        "rates " + " ".join(str(int(rate)) for rate in plan["rates"]),
    ]
    for r in range(rooms):
        room = f"{prefix}r{r}"
        for m in range(members):
            index = r * members + m
            url = urlsplit(urls[index % len(urls)])
            path = "/ws" if shape == "roost" else f"/ws?room={room}"
            token = authority.issue(f"{prefix}u{r}-{m}", ttl_s=3600) if authority is not None else "-"
            lines.append(f"client {url.hostname} {url.port} {path} {room} {token}")
    return lines


def _step_line(raw: dict[str, Any], plan: dict[str, Any]) -> dict[str, Any]:
    """One step's JSON line from the C generator's raw figures, by loadgen's own rule."""
    lat, acks = array("q"), array("q")
    data = Path(raw["file"]).read_bytes()
    split = raw["lat"] * 8
    lat.frombytes(data[:split])
    acks.frombytes(data[split:])
    step = Step(raw["index"], plan["members"], raw["sent"], raw["received"], lat, acks)
    return summarize(step, raw["rate"], raw["wall"], raw["in_window"], raw["dropped"], raw["gen_cpu"], plan)


def run(source: Path, plan: dict[str, Any]) -> int:
    if plan["scenario"] != "fanout" or plan["shape"] not in ("roost", "bare"):
        emit({"event": "error", "reason": "the c generator runs the fan-out ladder (fanout, scale) on roost or bare"})
        emit({"event": "done"})
        return 1
    binary = build(source)
    with tempfile.TemporaryDirectory(prefix="roost-cgen-") as folder:
        config = Path(folder) / "config"
        config.write_text("\n".join(config_lines(plan)) + "\n")
        with subprocess.Popen(
            [str(binary), str(config)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        ) as gen:
            assert gen.stdin is not None and gen.stdout is not None
            for line in gen.stdout:
                event = json.loads(line)
                if event.get("event") != "cstep":
                    sys.stdout.write(line)
                    sys.stdout.flush()
                    continue
                result = _step_line(event, plan)
                emit(result)
                Path(event["file"]).unlink(missing_ok=True)
                go = result["sustainable"] or not plan.get("stop_on_fail", True)
                gen.stdin.write("go\n" if go else "stop\n")
                gen.stdin.flush()
            return gen.wait()


def main() -> None:
    source = Path(sys.argv[1])
    plan = json.loads(sys.argv[2]) if sys.argv[2] != "-" else json.loads(sys.stdin.readline())
    sys.exit(run(source, plan))


if __name__ == "__main__":
    main()
