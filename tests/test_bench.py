"""`roost bench --quick`: the benchmark itself works end to end (a smoke test, not a speed threshold).

It starts real servers (Roost embedded, Roost x2 over Redis, the bare aiohttp ceiling) and the load
generator as separate processes, exactly as the full run does, and checks that every scenario
produced a record that is internally consistent: nothing lost, every client caught up.
"""

from __future__ import annotations

import json
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
