"""NATS with JetStream: the server on this machine (127.0.0.1:4222) and the 3-node cluster tests/clusters.py
starts (R3 streams); a subject prefix and streams per test. One URL serves as store and bus."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from roost.ports import Storage

from ..clusters import address, base_dir
from .engine import DigestPin, Engine
from .rawbytes import files_under

NATS = os.environ.get("ROOST_TEST_NATS", "nats://127.0.0.1:4222")


async def stream_names(nc: Any) -> list[str]:
    """Every stream's name, page by page: nats-py's ``streams_info()`` returns the first 256 only, so on a server
    holding more (the shared one had 18,000 from earlier runs) a test missed its own streams."""
    names: list[str] = []
    while True:
        reply = await nc.request("$JS.API.STREAM.NAMES", json.dumps({"offset": len(names)}).encode(), timeout=10)
        page = json.loads(reply.data)
        names += page.get("streams") or []
        if not page.get("streams") or len(names) >= page.get("total", 0):
            return names


async def _clean_nats(url: str, ns: str) -> None:
    import nats

    nc = await nats.connect([f"nats://{h}" for h in url.removeprefix("nats://").split(",")])
    try:
        js = nc.jetstream()
        for name in await stream_names(nc):
            if ns in name:
                await js.delete_stream(name)
    finally:
        await nc.close()


def _nats(ns: str) -> str:
    return f"{NATS}?prefix={ns}"


def _nats_cluster(ns: str) -> str:
    return f"{address('nats-cluster')}?prefix={ns}&replicas=3"


async def _clean(ns: str) -> None:
    await _clean_nats(NATS, ns)


async def _clean_cluster(ns: str) -> None:
    await _clean_nats(address("nats-cluster"), ns)


async def _stored_digest(store: Storage, ns: str, data_dir: Path) -> object:
    from roost.backends.nats import JetStreamStore, token

    assert isinstance(store, JetStreamStore)
    entry = await store.idem_kv.get(f"{token('r')}.{token('alice' + chr(10) + 'c1')}")
    return (entry.value or b"").decode().split(":", 2)[2]  # seq:ts:digest


_DIGEST = DigestPin(_stored_digest, lambda d: d[:16].hex())


async def _stored_messages(store: Storage, ns: str, data_dir: Path) -> bytes:
    """Every message (headers and data) of every stream of the namespace, KV buckets included, as the server
    hands it out by seq: the shared server's files are not the test's to read."""
    from nats.js.errors import NotFoundError

    from roost.backends.nats import JetStreamStore

    assert isinstance(store, JetStreamStore)
    out = []
    for name in await stream_names(store.nc):
        if ns not in name:
            continue
        info = await store.js.stream_info(name)
        for seq in range(max(1, info.state.first_seq), info.state.last_seq + 1):
            try:
                raw = await store.js.get_msg(name, seq)
            except NotFoundError:
                continue
            out.append(repr(raw.headers).encode() + (raw.data or b""))
    return b"".join(out)


def raft_logs() -> list[Path]:
    """The Raft groups' directories of the cluster this session started (``$SYS/_js_``: each stream's log of
    appends, compacted when the server snapshots the stream: docs/reliability.md, R-ERASE-5)."""
    return sorted(base_dir("nats-cluster").glob("*/store/jetstream/$SYS/_js_"))


async def _cluster_files(store: Storage, ns: str, data_dir: Path) -> bytes:
    """The cluster this session started: every file its three servers wrote for the streams and buckets (the
    streams' stores, on each server), besides the messages as the servers hand them out. Not the Raft logs:
    ``raft_logs``, for the test of their own window."""
    streams = sorted(base_dir("nats-cluster").glob("*/store/jetstream/$G/streams"))
    assert streams, "no stream store found in the cluster's directory"
    return await _stored_messages(store, ns, data_dir) + b"".join(files_under(d) for d in streams)


ENGINES = (
    Engine("nats", store_url=_nats, bus_url=_nats, clean=_clean, digest=_DIGEST, raw=_stored_messages),
    Engine(
        "nats-cluster",
        store_url=_nats_cluster,
        bus_url=_nats_cluster,
        rig="nats_cluster",
        clean=_clean_cluster,
        digest=_DIGEST,
        raw=_cluster_files,
    ),
)
