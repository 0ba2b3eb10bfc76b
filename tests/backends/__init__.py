"""The engines the suites run against, each isolated by a fresh prefix, schema, stream or topic.

* The contract suites at the ports (``tests/backends/test_store.py``, ``test_bus.py``) run on every store
  and every bus engine: ``STORES`` and ``BUSES``.
* The conformance suite (tests/integration/) runs whole nodes on every *backend*: a store engine paired
  with a bus engine (``PAIRS``; parametrized in tests/conftest.py).

Each engine is described in its own file here (``Engine``: its URLs, the cluster it runs on, its cleanup).
A new engine is one such file, listed in ``_MODULES``, and its id in ``PAIRS``. ``ROOST_BACKENDS`` (pair
ids, comma separated) narrows every suite: the port suites then run on the engines of the chosen pairs.

Redis, NATS and PostgreSQL are the real services on this machine (127.0.0.1:6379, :4222, :5432).
"redis-cluster" and "nats-cluster" run on clusters that tests/clusters.py starts, "kafka" on the Tansu
broker of tests/kafka_infra.py (once per session, only when selected: see ``Engine.rig``).
Every test gets its own namespace and removes it afterwards, since those services keep state.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass

from . import kafka, local, nats, postgres, redis, sqlite
from .engine import Engine
from .nats import NATS, _clean_nats
from .postgres import POSTGRES
from .redis import REDIS, _clean_redis, _clean_redis_cluster

__all__ = [
    "ALL",
    "BUSES",
    "ENGINES",
    "NATS",
    "PAIRS",
    "POSTGRES",
    "REDIS",
    "SELECTED",
    "STORES",
    "Backend",
    "Engine",
    "_clean_nats",
    "_clean_redis",
    "_clean_redis_cluster",
    "cleanup",
    "make",
    "rigs",
]

_MODULES = (sqlite, local, redis, nats, postgres, kafka)
ENGINES: dict[str, Engine] = {engine.id: engine for module in _MODULES for engine in module.ENGINES}

PAIRS: dict[str, tuple[str, str]] = {
    "embedded": ("sqlite", "local"),
    "redis": ("redis", "redis"),
    "nats": ("nats", "nats"),
    "pg-redis": ("postgres", "redis"),
    "pg-nats": ("postgres", "nats"),
    "redis-cluster": ("redis-cluster", "redis-cluster"),
    "nats-cluster": ("nats-cluster", "nats-cluster"),
    "kafka-redis": ("kafka", "redis"),
    "kafka-nats": ("kafka", "nats"),
}
"""Backend id -> (store engine, bus engine): what a node of the conformance suite runs on."""

ALL = list(PAIRS)
SELECTED = [b for b in os.environ.get("ROOST_BACKENDS", ",".join(ALL)).split(",") if b]
STORES = list(dict.fromkeys(PAIRS[b][0] for b in SELECTED))
"""The store engines of the selected backends, each once."""
BUSES = list(dict.fromkeys(PAIRS[b][1] for b in SELECTED))
"""The bus engines of the selected backends, each once."""


@dataclass(frozen=True)
class Backend:
    name: str
    store: str | None
    bus: str | None
    ns: str


def make(name: str) -> Backend:
    store, bus = (ENGINES[e] for e in PAIRS[name])
    assert store.store_url is not None and bus.bus_url is not None
    ns = "t" + uuid.uuid4().hex[:12]
    return Backend(name, store.store_url(ns), bus.bus_url(ns), ns)


def rigs(name: str) -> list[str]:
    """The session fixtures backend ``name`` needs (its engines' clusters or brokers)."""
    return list(dict.fromkeys(r for e in PAIRS[name] if (r := ENGINES[e].rig) is not None))


async def cleanup(backend: Backend) -> None:
    """Remove everything the test created on the shared services."""
    for engine in dict.fromkeys(PAIRS[backend.name]):
        await ENGINES[engine].clean(backend.ns)
