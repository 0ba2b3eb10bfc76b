"""A short chaos run per backend (about 25 s each): real nodes, real brokers, faults; no violation allowed.
The long runs are in docs/reliability.md."""

from __future__ import annotations

from pathlib import Path

import pytest

from roost.chaos.checker import check
from roost.chaos.faults import BACKENDS
from roost.chaos.runner import FAULTS, ChaosConfig, run

OWN = {
    "embedded": ("powerloss", "diskfull"),
    "redis": ("broker", "partition", "cut", "powerloss", "diskfull"),
    "nats": ("broker", "partition", "cut", "powerloss", "diskfull"),
    "pg-redis": ("broker", "partition", "cut", "powerloss", "diskfull"),
    "redis-cluster": ("clusternode",),
    "nats-cluster": ("clusternode",),
    "kafka": ("broker", "partition", "cut"),
}
"""The faults each backend is there for; embedded and redis run every fault, the others theirs and ``kill9``
(the runner takes kinds in rounds, so at least one of these runs in every run)."""


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.timeout(240)
async def test_a_short_chaos_run_keeps_the_contract(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """The clusters are the runner's own (it kills their nodes); the Kafka broker is the session's Tansu (its
    ``broker`` fault kills the bus: Tansu keeps its log in memory)."""
    config = ChaosConfig(
        backend=backend,
        kafka=request.getfixturevalue("kafka_broker") if backend == "kafka" else "",
        nodes=2,
        clients=10,
        rooms=4,
        duration_s=22.0,
        rate=120.0,
        faults=FAULTS if backend in ("embedded", "redis") else (*OWN[backend], "kill9"),
        fault_every_s=1.5,
        seed=7,
        base=tmp_path,
    )
    history = await run(config)
    report = check(history)
    assert report.ok, report.table() + "\n" + "\n".join(f"{v.kind}: {v.detail} {v.evidence}" for v in report.violations)
    assert report.acked > 500 and report.delivered > 2 * report.acked
    # A cluster node's fault lasts until the cluster is whole again (10-20 s): fewer of them fit in 22 s.
    assert sum(report.faults.values()) >= (2 if backend.endswith("cluster") else 4), report.faults
    assert set(OWN[backend]) & set(report.faults), f"none of {OWN[backend]} ran: {report.faults}"
