"""NATS with JetStream: the server on this machine (127.0.0.1:4222) and the 3-node cluster tests/clusters.py
starts (R3 streams); a subject prefix and streams per test. One URL serves as store and bus."""

from __future__ import annotations

import os
from pathlib import Path

from roost.ports import Storage

from ..clusters import address
from .engine import DigestPin, Engine

NATS = os.environ.get("ROOST_TEST_NATS", "nats://127.0.0.1:4222")


async def _clean_nats(url: str, ns: str) -> None:
    import nats

    nc = await nats.connect([f"nats://{h}" for h in url.removeprefix("nats://").split(",")])
    try:
        js = nc.jetstream()
        for info in await js.streams_info():
            name = info.config.name or ""
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

ENGINES = (
    Engine("nats", store_url=_nats, bus_url=_nats, clean=_clean, digest=_DIGEST),
    Engine(
        "nats-cluster",
        store_url=_nats_cluster,
        bus_url=_nats_cluster,
        rig="nats_cluster",
        clean=_clean_cluster,
        digest=_DIGEST,
    ),
)
