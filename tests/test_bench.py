"""`roost bench --quick`: the benchmark itself works end to end (a smoke test, not a speed threshold).

It starts real servers (Roost embedded, Roost x2 over Redis, the bare aiohttp ceiling) and the load
generator as separate processes, exactly as the full run does, and checks that every scenario
produced a record that is internally consistent: nothing lost, every client caught up.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_quick_bench_runs_every_scenario_and_loses_nothing(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    report = tmp_path / "bench.md"
    plot = tmp_path / "bench.svg"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "roost",
            "bench",
            "--quick",
            "--out",
            str(out),
            "--report",
            str(report),
            "--plot",
            str(plot),
            "--peers",
            str(ROOT / "bench" / "peers"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(out.read_text())
    records = {(r["scenario"], r["target"]): r for r in result["records"]}
    assert set(records) == {
        ("fanout", "roost"),
        ("fanout", "bare-aiohttp"),
        ("idle", "roost"),
        ("idle", "bare-aiohttp"),
        ("storm", "roost"),
        ("scale", "roost-redis-x2"),
    }
    for (scenario, target), record in records.items():
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
