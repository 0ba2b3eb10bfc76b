"""The one erasure window a replicated engine keeps on its own: a NATS R3 stream's Raft log (R-ERASE-5).

Apart from test_erasure.py because it waits for nats-server's own compaction (minutes) and runs on the cluster
this session starts (tests/clusters.py), whatever ``ROOST_BACKENDS`` says.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from pathlib import Path

import pytest

from roost.ports import Redaction
from roost.protocol.relations import KIND_DELETED
from roost.protocol.types import KIND_TEXT, Draft

from ..clusters import NatsCluster
from . import ENGINES
from .conftest import Stores
from .nats import raft_logs
from .rawbytes import files_under


@pytest.mark.slow
@pytest.mark.timeout(420)
async def test_an_erased_text_leaves_the_raft_logs_of_an_r3_stream_within_minutes(
    nats_cluster: NatsCluster, tmp_path: Path
) -> None:
    """[R-ERASE-5] On a NATS cluster, the stream's Raft log keeps the append of an erased message until each server
    snapshots the stream and compacts its log: there right after the erasure, gone from every server's files
    within about three minutes (nats-server 2.9 snapshots a changed stream every two)."""
    rig = Stores(ENGINES["nats-cluster"], tmp_path)
    try:
        store = await rig.open()
        await store.create_room("r", "alice")
        text = f"raft-{secrets.token_hex(8)}"
        await store.append(Draft("r", "alice", "c1", text, KIND_TEXT))
        await store.append(Draft("r", "alice", "c2", "later", KIND_TEXT))
        assert await store.erase("r", [Redaction(1, KIND_DELETED, "")]) == 1
        logs = raft_logs()
        assert len(logs) == 3 and text.encode() in b"".join(files_under(d) for d in logs)
        started = time.monotonic()
        while text.encode() in b"".join(files_under(d) for d in logs):
            assert time.monotonic() - started < 300, "the Raft logs still hold the erased text after 5 minutes"
            await asyncio.sleep(10)  # a wait helper's poll (Raft compacts its log in minutes)
    finally:
        await rig.aclose()
