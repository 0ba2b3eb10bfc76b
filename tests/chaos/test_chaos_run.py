"""A short chaos run per backend (about 25 s each): real nodes, real brokers, faults; no violation allowed."""

from __future__ import annotations

from pathlib import Path

import pytest

from roost.chaos.checker import check
from roost.chaos.runner import FAULTS, ChaosConfig, run


@pytest.mark.parametrize("backend", ["embedded", "redis", "nats", "pg-redis"])
@pytest.mark.timeout(240)
async def test_a_short_chaos_run_keeps_the_contract(backend: str, tmp_path: Path) -> None:
    config = ChaosConfig(
        backend=backend,
        nodes=2,
        clients=10,
        rooms=4,
        duration_s=22.0,
        rate=120.0,
        faults=FAULTS,
        fault_every_s=1.5,
        seed=7,
        base=tmp_path,
    )
    history = await run(config)
    report = check(history)
    assert report.ok, report.table() + "\n" + "\n".join(f"{v.kind}: {v.detail} {v.evidence}" for v in report.violations)
    assert report.acked > 500 and report.delivered > 2 * report.acked
    assert sum(report.faults.values()) >= 4, report.faults
