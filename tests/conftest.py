"""Shared fixtures. ``settings``/``node`` are parametrized over every backend: the conformance suite.

``ROOST_BACKENDS=embedded,redis`` narrows the run. ``ROOST_TEST_WS_TRANSPORT=picows`` runs every node of the
``settings``/``embedded_settings`` fixtures with the picows WebSocket server (its own port: ``node.ws_url``).
``embedded_settings`` is for tests of the
embedded store itself (its file lock, its internals).

``redis_cluster``/``nats_cluster``/``kafka_broker`` (session scope) start the session's own clusters and
broker (tests/clusters.py, tests/kafka_infra.py) the first time a test needs one, on ports the OS hands
out, and stop them when the session ends: sessions running at once on one machine never meet (unless
``ROOST_CLUSTER_DIR`` names clusters started by hand for them to share: see tests/clusters.py).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from roost.config import Limits, Settings
from roost.node import Node, serve

from .backends import SELECTED, Backend, cleanup, make, rigs
from .clusters import NatsCluster, RedisCluster, for_session, registered
from .kafka_infra import EXTERNAL, Tansu

WS_TRANSPORT = os.environ.get("ROOST_TEST_WS_TRANSPORT", "aiohttp")
"""The WebSocket server of the fixtures' nodes (aiohttp, the default, or picows)."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked ``timing`` run first. They compare latencies under a load with a baseline measured beside
    it, and are best judged while little else is around: later, the session's clusters and broker are up and
    the process carries earlier tests' leftovers (its heap, their threads). A CI run that had the flood test at
    minute 40 saw baseline p99s of 5-36 ms; a fresh process on this machine sees 1-3 ms. The flood test prints
    the process's threads and the machine's load beside its table, to tell the causes apart next time."""
    items.sort(key=lambda item: item.get_closest_marker("timing") is None)


@pytest.fixture
def limits() -> Limits:
    # Tests preload rooms through the service as one user: the per-user send and membership rates are
    # lifted here, and tested on their own (test_node.py, tests/security/test_budgets.py).
    return Limits(head_check_s=1.0, sends_per_s=1e6, send_burst=10**6, membership_per_s=1e6, membership_burst=10**6)


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisCluster]:
    with for_session(RedisCluster) as rig:
        yield rig


@pytest.fixture(scope="session")
def nats_cluster() -> Iterator[NatsCluster]:
    with for_session(NatsCluster) as rig:
        yield rig


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[str]:
    """The bootstrap address of the "kafka-*" backends' broker: ``$ROOST_TEST_KAFKA``, else the session's
    Tansu (Kafka API, memory storage; see tests/kafka_infra.py)."""
    if EXTERNAL:
        with registered(Tansu.NAME, EXTERNAL):
            yield EXTERNAL
        return
    with for_session(Tansu) as broker:
        yield broker.url


@pytest.fixture(params=SELECTED)
def backend_name(request: pytest.FixtureRequest) -> str:
    """The backend's name; brings its cluster up first if it runs on one."""
    name: str = request.param
    for rig in rigs(name):
        request.getfixturevalue(rig)
    return name


@pytest.fixture
async def backend(backend_name: str) -> AsyncIterator[Backend]:
    chosen = make(backend_name)
    yield chosen
    await cleanup(chosen)


@pytest.fixture
def settings(tmp_path: Path, limits: Limits, backend: Backend) -> Settings:
    return Settings(
        port=0,
        data_dir=str(tmp_path / "data"),
        limits=limits,
        store=backend.store,
        bus=backend.bus,
        ws_transport=WS_TRANSPORT,
    )


@pytest.fixture
def embedded_settings(tmp_path: Path, limits: Limits) -> Settings:
    return Settings(port=0, data_dir=str(tmp_path / "data"), limits=limits, ws_transport=WS_TRANSPORT)


@pytest.fixture
async def node(settings: Settings) -> AsyncIterator[Node]:
    async with serve(settings) as running:
        yield running


@pytest.fixture
async def embedded_node(embedded_settings: Settings) -> AsyncIterator[Node]:
    async with serve(embedded_settings) as running:
        yield running


def with_limits(settings: Settings, **changes: object) -> Settings:
    return replace(settings, limits=replace(settings.limits, **changes))  # type: ignore[arg-type]


SHARED_ENGINES = [b for b in SELECTED if b in ("redis", "nats", "pg-redis", "pg-nats")]
"""Engines several nodes can share (the embedded store belongs to one process)."""


@pytest.fixture(params=SHARED_ENGINES)
async def shared(request: pytest.FixtureRequest, embedded_settings: Settings) -> AsyncIterator[Settings]:
    """Settings for several nodes over one shared engine, with one token secret for all of them."""
    chosen = make(request.param)
    yield replace(
        embedded_settings, store=chosen.store, bus=chosen.bus, secret="a-secret-shared-by-every-node-0123456789"
    )
    await cleanup(chosen)
