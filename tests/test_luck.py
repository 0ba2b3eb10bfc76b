"""Tests that do not depend on luck: on a loaded machine, or beside another run of the suite.

* Waiting for something to happen is waiting for it (``roost.chaos.infra.wait_until``, a frame, an event),
  never sleeping for as long as it usually takes: a sleep left in a test is what the test is about (an
  outage, a window, pacing) and says so, or it is the poll of a wait helper.
* Every server a test starts listens on ports the OS handed out: two sessions run their own clusters and
  brokers side by side (tests/clusters.py, tests/kafka_infra.py).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from .clusters import NatsCluster, RedisCluster
from .kafka_infra import Tansu

TESTS = Path(__file__).parent
SLEEP = re.compile(r"\b(?:asyncio|time)\.sleep\((?!0\))")
SAYS_WHY = ("# the subject", "# a wait helper's poll")


def test_a_sleep_in_a_test_is_its_subject_or_a_wait_helpers_poll() -> None:
    unexplained = [
        f"{path.relative_to(TESTS.parent)}:{number}: {line.strip()}"
        for path in sorted(TESTS.rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if SLEEP.search(line) and not any(why in line for why in SAYS_WHY)
    ]
    assert not unexplained, "wait for the condition (wait_until) or say it is the subject:\n" + "\n".join(unexplained)


@pytest.mark.slow
def test_two_sessions_run_their_own_clusters_and_brokers_side_by_side(tmp_path: Path) -> None:
    rigs = [kind(tmp_path / session) for session in ("one", "two") for kind in (RedisCluster, NatsCluster, Tansu)]
    try:
        for rig in rigs:
            assert rig.up()  # started, not reused
        assert all(rig.healthy() for rig in rigs)
        ports = [port for rig in rigs for proc in rig.procs.values() for port in proc.ports]
        assert len(ports) == len(set(ports)) == 2 * (6 * 2 + 3 * 3 + 1)  # every node's own, none shared
    finally:
        for rig in rigs:
            rig.down()
