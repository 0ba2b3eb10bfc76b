"""`roost bench --quick`: the benchmark itself works end to end (a smoke test, not a speed threshold).

It starts real servers (Roost embedded, Roost x2 over Redis, the bare aiohttp ceiling) and the load
generator as separate processes, exactly as the full run does, and checks that every scenario
produced a record that is internally consistent: nothing lost, every client caught up. It does so with
each load generator (Python on picows, Node on ws: bench/gen_node), and checks that the Node one puts
the same bytes on the wire as the Python one (timed bodies, frames, tokens).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from roost.auth import TokenAuthority
from roost.bench import wire

ROOT = Path(__file__).resolve().parents[1]
GEN_NODE = ROOT / "bench" / "gen_node"


def _quick(tmp_path: Path, *extra: str) -> tuple[dict[str, Any], Path, Path]:
    """Run ``roost bench --quick`` (every scenario, the quick plan's targets): the results, report and plot."""
    out = tmp_path / "bench.json"
    report = tmp_path / "bench.md"
    plot = tmp_path / "bench.svg"
    argv = [sys.executable, "-m", "roost", "bench", "--quick", "--out", str(out), "--report", str(report)]
    argv += ["--plot", str(plot), "--peers", str(ROOT / "bench" / "peers"), *extra]
    run = subprocess.run(argv, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    result: dict[str, Any] = json.loads(out.read_text())
    return result, report, plot


def test_quick_bench_runs_every_scenario_and_loses_nothing(tmp_path: Path) -> None:
    result, report, plot = _quick(tmp_path)
    _check_quick(result, report, plot)
    assert result["generator"] == "python" and {r["generator"] for r in result["records"]} == {"python"}
    _check_wire(result, report)


def _check_wire(result: dict[str, Any], report: Path) -> None:
    """The ``wire`` scenario: one record per variant (JSON, MessagePack, JSON with permessage-deflate), each a
    fan-out step with nothing lost, the server's CPU per delivered frame and the bytes each frame took on the
    wire; MessagePack frames are smaller than JSON's, and compressed ones smaller still."""
    wire_records = {r["variant"]: r for r in result["records"] if r["scenario"] == "wire"}
    assert set(wire_records) == {"json", "msgpack", "json+deflate"}
    size = {}
    for variant, record in wire_records.items():
        assert "error" not in record, (variant, record.get("error"))
        (step,) = record["steps"]
        assert step["lost"] == 0 and step["dropped"] == 0 and step["acks"] == step["sent"] > 0, step
        assert step["server_us_per_frame"] >= 0 and step["rx_bytes"] > 0, step
        size[variant] = step["bytes_per_frame"]
    assert size["json+deflate"] < size["msgpack"] < size["json"], size
    assert "### Wire options" in report.read_text()


def test_quick_bench_with_the_node_generator_gives_the_same_records(tmp_path: Path) -> None:
    """`--generator node`: every scenario (the quick plan's targets: the roost and bare shapes; socketio is
    the full plan's) through bench/gen_node, its npm dependencies installed on first use: the same records and
    step keys as the Python generator, each naming its generator."""
    result, report, plot = _quick(tmp_path, "--generator", "node")
    _check_quick(result, report, plot)
    assert result["generator"] == "node"
    for record in result["records"]:
        assert record["generator"] == "node", record
        for step in record["steps"]:
            assert step["generator"] == "node", step
            if "rate" in step:  # loadgen.py's fan-out step, key for key, its floats as floats
                assert set(step) == FANOUT_STEP_KEYS | {"server_cpu", "generator"} | ({"search"} & set(step)), step
                assert isinstance(step["seconds"], float) and isinstance(step["gen_cpu"], float), step
                assert all(isinstance(v, float) for v in step["e2e_ms"].values()), step
    assert "Load generator: node" in report.read_text()
    assert "load generator: node" in report.read_text()  # beside every step table


def test_the_c_generator_runs_the_fanout_ladder_with_loadgens_rule(tmp_path: Path) -> None:
    """`--generator c` (bench/gen_c/gen.c, compiled on first use, driven by roost.bench.cgen): the fan-out and
    scale ladders on the roost and bare shapes, the same step keys as the Python generator (the step line is
    made by loadgen.summarize itself), nothing lost, every durable send acknowledged; a scenario it does not run
    is refused with a clear error, not measured wrongly."""
    out = tmp_path / "bench.json"
    argv = [sys.executable, "-m", "roost", "bench", "--quick", "--scenarios", "fanout,scale,idle", "--out", str(out)]
    argv += ["--peers", str(ROOT / "bench" / "peers"), "--generator", "c"]
    run = subprocess.run(argv, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    result: dict[str, Any] = json.loads(out.read_text())
    assert result["generator"] == "c"
    records = {(r["scenario"], r["target"]): r for r in result["records"]}
    for (scenario, target), record in records.items():
        assert record["generator"] == "c"
        if scenario == "idle":
            assert "fan-out ladder" in record["error"], record
            continue
        assert "error" not in record, (scenario, target, record.get("error"))
        assert record["steps"], record
        for step in record["steps"]:
            assert set(step) >= FANOUT_STEP_KEYS, step
            assert step["lost"] == 0 and step["dropped"] == 0 and step["sent"] > 0, step
            assert step["delivered_in_window"] > 0 and step["gen_cpu"] > 0, step
            if target.startswith("roost"):
                assert step["acks"] == step["sent"], step
    assert {s for s, _ in records} == {"fanout", "scale", "idle"}
    assert run.returncode != 0  # the idle records' errors make the run fail, as any generator error does


FANOUT_STEP_KEYS = {
    "event",
    "rate",
    "seconds",
    "sent",
    "expected_frames",
    "delivered_in_window",
    "delivered_per_s",
    "lost",
    "dropped",
    "e2e_ms",
    "ack_ms",
    "acks",
    "gen_cpu",
    "sustainable",
}


def _check_quick(result: dict[str, Any], report: Path, plot: Path) -> None:
    records = {(r["scenario"], r["target"]): r for r in result["records"]}
    assert set(records) == {
        ("fanout", "roost"),
        ("fanout", "roost-consumer"),
        ("fanout", "bare-aiohttp"),
        ("idle", "roost"),
        ("idle", "bare-aiohttp"),
        ("storm", "roost"),
        ("scale", "roost-redis-x2"),
    } | ({("wire", "roost")} if result["generator"] == "python" else set())
    for (scenario, target), record in records.items():
        if scenario == "wire":
            continue  # one record per variant: _check_wire
        assert "error" not in record, (scenario, target, record.get("error"))
        for step in record["steps"]:
            if scenario in ("fanout", "scale"):
                assert step["lost"] == 0 and step["dropped"] == 0, step
                assert step["sent"] > 0 and step["delivered_in_window"] > 0, step
                if target.startswith("roost"):
                    assert step["acks"] == step["sent"], step  # every durable send was acknowledged
            elif scenario == "idle":
                assert step["liveness"][0] == step["liveness"][1] > 0, step
            else:
                assert step["complete"] == step["clients"], step
                assert step["messages_delivered"] == step["clients"] * step["behind"], step
    assert "### Fan-out" in report.read_text() and "### Catch-up storm" in report.read_text()
    assert plot.read_text().startswith("<svg")


def _node(script: str, arg: object) -> Any:
    """Run ``script`` in Node beside bench/gen_node (its modules as ``./token``, ``./wire``) on a JSON argument."""
    run = subprocess.run(
        ["node", "-e", script, json.dumps(arg)], capture_output=True, text=True, timeout=60, cwd=GEN_NODE, check=True
    )
    return json.loads(run.stdout)


def test_node_generator_issues_tokens_byte_for_byte_as_token_authority() -> None:
    """The Node generator authenticates with the very token TokenAuthority(secret).issue(user, ttl_s=3600) gives."""
    cases = []
    pairs = [("s" * 32, "bu0-1"), ("a secret with é and spaces, 32 bytes or more", "alice.b@x_y")]
    for secret, user in [*pairs, ("k" * 48, "b1f2c3u12-49")]:
        token = TokenAuthority(secret).issue(user, ttl_s=3600)
        claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
        cases.append({"secret": secret, "user": user, "iat": claims["iat"], "python": token})
    script = (
        "const { issueToken } = require('./token');"
        "const cases = JSON.parse(process.argv[1]);"
        "console.log(JSON.stringify(cases.map((c) => issueToken(c.secret, c.user, 3600, c.iat))));"
    )
    assert _node(script, cases) == [c["python"] for c in cases]


def test_node_generator_writes_the_wire_bytes_of_wire_py() -> None:
    """Timed bodies (the ~T<ns>:<step>: mark both generators read), the three shapes' frames, and the setup
    frames (Python's json.dumps), byte for byte."""
    bodies = [(1_234_567_890_123_456, 3, 200), (0, -9, 200), (987_654_321, 12, 10), (5, -1, 0)]
    frames = [("b1a2b3r0", "b17", "~T1:2:xx", "17"), ("room.é", "c", "", "w49")]
    setup = [
        {"type": "auth", "token": "a.b.c"},
        {"type": "subscribe", "room": "r0", "id": "s", "after": 17},
        {"type": "subscribe", "room": "r0", "after": 3, "id": "s"},
        {"type": "create", "room": 'é\u2028"q"', "id": "c"},
    ]
    python = {
        "body": [wire.body(*b) for b in bodies],
        "roost": [wire.roost_send(*f).decode() for f in frames],
        "bare": [wire.bare_send(f[0], 7, 1_700_000_000_123_456_789 // 1000, f[2]).decode() for f in frames],
        "socketio": [wire.socketio_send(f[0], 10, 42, f[2]).decode() for f in frames],
        "join": [wire.socketio_join(f[0]).decode() for f in frames],
        "setup": [json.dumps(frame) for frame in setup],
    }
    script = (
        "const w = require('./wire');"
        "const [bodies, frames, setup] = JSON.parse(process.argv[1]);"
        "console.log(JSON.stringify({"
        "body: bodies.map((b) => w.body(...b)),"
        "roost: frames.map((f) => w.roostSend(...f)),"
        "bare: frames.map((f) => w.bareSend(f[0], 7, 1700000000123456, f[2])),"
        "socketio: frames.map((f) => w.socketioSend(f[0], 10, 42, f[2])),"
        "join: frames.map((f) => w.socketioJoin(f[0])),"
        "setup: setup.map((s) => w.pyDumps(s)),"
        "}));"
    )
    assert _node(script, [bodies, frames, setup]) == python


def test_rounds_alternate_targets_and_report_cpu_per_frame_against_the_baseline(tmp_path: Path) -> None:
    """The before/after method of docs/benchmarks.md: fixed rates, every one measured, A B then B A.

    The baseline slot runs this same tree (an A/A run), which is also how the noise floor is measured."""
    out, report = tmp_path / "bench.json", tmp_path / "bench.md"
    argv = [sys.executable, "-m", "roost", "bench", "--quick", "--scenarios", "fanout"]
    argv += ["--only", "roost,roost-baseline", "--rates", "50,100", "--rounds", "2"]
    argv += ["--out", str(out), "--report", str(report), "--peers", str(ROOT / "bench" / "peers")]
    env = {**os.environ, "ROOST_BENCH_BASELINE_SRC": str(ROOT / "src")}
    run = subprocess.run(argv, capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(out.read_text())
    order = [(r["round"], r["target"]) for r in result["records"]]
    assert order == [(1, "roost"), (1, "roost-baseline"), (2, "roost-baseline"), (2, "roost")]
    for record in result["records"]:
        assert [s["rate"] for s in record["steps"]] == [50, 100], record  # no step skipped
        assert all(s["lost"] == 0 and s["acks"] == s["sent"] for s in record["steps"]), record
    table = report.read_text().split("#### Server CPU per delivered frame", 1)[1]
    rows = {line.split(" | ")[0].strip("| "): line for line in table.splitlines() if line.startswith("| roost")}
    assert set(rows) == {"roost", "roost-baseline"}
    assert rows["roost"].count("n=2") == 2 and rows["roost"].count(" %") == 2
    assert " %" not in rows["roost-baseline"]  # the baseline is not compared with itself


def test_two_generators_in_one_run_each_row_naming_its_generator(tmp_path: Path) -> None:
    """`--generator python,node`: every target once per generator in the A B / B A alternation, and every
    comparison (the CPU-per-frame cost over the baseline) between servers measured by the same generator."""
    out, report = tmp_path / "bench.json", tmp_path / "bench.md"
    argv = [sys.executable, "-m", "roost", "bench", "--quick", "--scenarios", "fanout"]
    argv += ["--only", "roost,roost-baseline", "--rates", "50", "--rounds", "2", "--generator", "python,node"]
    argv += ["--out", str(out), "--report", str(report), "--peers", str(ROOT / "bench" / "peers")]
    env = {**os.environ, "ROOST_BENCH_BASELINE_SRC": str(ROOT / "src")}
    run = subprocess.run(argv, capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(out.read_text())
    order = [(r["round"], r["target"], r["generator"]) for r in result["records"]]
    first = [
        (1, "roost", "python"),
        (1, "roost", "node"),
        (1, "roost-baseline", "python"),
        (1, "roost-baseline", "node"),
    ]
    assert order == first + [(2, target, gen) for _, target, gen in first[::-1]]
    for record in result["records"]:
        assert [(s["rate"], s["generator"]) for s in record["steps"]] == [(50, record["generator"])], record
        assert all(s["lost"] == 0 and s["acks"] == s["sent"] for s in record["steps"]), record
    text = report.read_text()
    table = text.split("#### Server CPU per delivered frame", 1)[1].split("####", 1)[0]
    rows = {line.split(" | ")[0].strip("| "): line for line in table.splitlines() if line.startswith("| roost")}
    assert set(rows) == {"roost [python]", "roost [node]", "roost-baseline [python]", "roost-baseline [node]"}
    assert rows["roost [python]"].count(" %") == rows["roost [node]"].count(" %") == 1
    assert " %" not in rows["roost-baseline [python]"] and " %" not in rows["roost-baseline [node]"]
    assert "ratio of each (load generator python): roost-baseline" in text
    assert "ratio of each (load generator node): roost-baseline" in text


def test_node_generator_summarizes_a_step_as_loadgen_does() -> None:
    """One step's JSON line, byte for byte from both generators on the same counts: percentiles with the
    missing frames infinitely late, and the sustainable rule (>= 95 % in the window, none missing, no drop,
    p99 under the plan's)."""
    from roost.bench import generators, loadgen

    generators.prepare("node", ROOT / "bench" / "peers")  # generator.js needs ws
    plan = {"p99_ms": 100.0}
    lat = [1500, 800, 2200, 99_000, 400, 1234, 640, 12_000, 150_000, 7]
    cases = [  # sent, members, received, latencies (us), acks (us), in_window, dropped
        (5, 2, 10, lat, [300, 200, 900, 100, 5000], 10, 0),  # all there, but p99 over 100 ms
        (5, 2, 10, lat[:3] + lat[4:8] + lat[9:] * 3, [300], 10, 0),  # all there in time: sustainable
        (6, 2, 10, lat, [], 10, 0),  # 2 missing: p99 and p999 infinitely late
        (5, 2, 10, [5] * 10, [1], 9, 0),  # 90 % in the window
        (5, 2, 10, [5] * 10, [1], 10, 1),  # a connection dropped
        (0, 2, 0, [], [], 0, 0),  # nothing sent: no p99, not sustainable
    ]
    python = []
    for sent, members, received, lat_us, ack_us, in_window, dropped in cases:
        step = loadgen.Step(3, members, sent, received)
        step.lat_us.extend(lat_us)
        step.ack_us.extend(ack_us)
        python.append(json.dumps(loadgen.summarize(step, 1000, 2.0004, in_window, dropped, 37.46, plan)))
    script = (
        "const g = require('./generator'); const w = require('./wire');"
        "const [cases, plan] = JSON.parse(process.argv[1]);"
        "console.log(JSON.stringify(cases.map(([sent, members, received, lat, acks, inWindow, dropped]) => {"
        "  const s = new g.Step(3, members); Object.assign(s, { sent, received, latUs: lat, ackUs: acks });"
        "  return w.pyDumps(g.summarize(s, 1000, 2.0004, inWindow, dropped, 37.46, plan), g.FLOATS);"
        "})));"
    )
    assert _node(script, [cases, plan]) == python
    assert [json.loads(line)["sustainable"] for line in python] == [False, True, False, False, False, False]
