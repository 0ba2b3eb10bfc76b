"""Fixtures of the contract suites: ``store``/``stores`` over every store engine, ``bus``/``buses`` over every
bus engine (``STORES``, ``BUSES``), each on a fresh namespace that is removed afterwards."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from roost.ports import Bus, Storage

from . import BUSES, ENGINES, STORES, Engine


class Stores:
    """Stores of one engine over one namespace: a node, another node, the same node after a restart."""

    def __init__(self, engine: Engine, data_dir: Path) -> None:
        self.engine = engine
        self.ns = "t" + uuid.uuid4().hex[:12]
        self.data_dir = data_dir
        self._open: list[Storage] = []

    async def open(self) -> Storage:
        store = await self.engine.open_store(self.ns, self.data_dir)
        self._open.append(store)
        return store

    async def restart(self, store: Storage) -> Storage:
        """Close ``store`` (the embedded one owns its directory until then) and open the namespace again."""
        await self.close(store)
        return await self.open()

    async def close(self, store: Storage) -> None:
        self._open.remove(store)
        await store.aclose()

    async def aclose(self) -> None:
        while self._open:
            with contextlib.suppress(Exception):
                await self._open.pop().aclose()
        await self.engine.clean(self.ns)


class Buses:
    """Buses of one engine over one namespace: one per node."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.ns = "t" + uuid.uuid4().hex[:12]
        self._open: list[Bus] = []

    async def open(self) -> Bus:
        bus = await self.engine.open_bus(self.ns)
        self._open.append(bus)
        return bus

    async def peer(self, bus: Bus) -> Bus:
        """What another node publishes on: a bus of its own, or (an in-process bus) ``bus`` itself."""
        return await self.open() if self.engine.shared else bus

    async def aclose(self) -> None:
        while self._open:
            with contextlib.suppress(Exception):
                await self._open.pop().aclose()
        await self.engine.clean(self.ns)


def _engine(request: pytest.FixtureRequest) -> Engine:
    engine = ENGINES[request.param]
    if engine.rig is not None:
        request.getfixturevalue(engine.rig)
    return engine


@pytest.fixture(params=STORES)
def store_engine(request: pytest.FixtureRequest) -> Engine:
    return _engine(request)


@pytest.fixture(params=[e for e in STORES if ENGINES[e].shared])
def shared_store_engine(request: pytest.FixtureRequest) -> Engine:
    """Store engines several nodes open at once."""
    return _engine(request)


@pytest.fixture(params=BUSES)
def bus_engine(request: pytest.FixtureRequest) -> Engine:
    return _engine(request)


@pytest.fixture(params=[e for e in BUSES if ENGINES[e].shared])
def networked_bus_engine(request: pytest.FixtureRequest) -> Engine:
    """Bus engines with a connection to lose (the in-process bus has none)."""
    return _engine(request)


@pytest.fixture
async def stores(store_engine: Engine, tmp_path: Path) -> AsyncIterator[Stores]:
    rig = Stores(store_engine, tmp_path / "data")
    yield rig
    await rig.aclose()


@pytest.fixture
async def shared_stores(shared_store_engine: Engine, tmp_path: Path) -> AsyncIterator[Stores]:
    rig = Stores(shared_store_engine, tmp_path / "data")
    yield rig
    await rig.aclose()


@pytest.fixture
async def store(stores: Stores) -> Storage:
    return await stores.open()


@pytest.fixture
async def buses(bus_engine: Engine) -> AsyncIterator[Buses]:
    rig = Buses(bus_engine)
    yield rig
    await rig.aclose()


@pytest.fixture
async def networked_buses(networked_bus_engine: Engine) -> AsyncIterator[Buses]:
    rig = Buses(networked_bus_engine)
    yield rig
    await rig.aclose()


@pytest.fixture
async def bus(buses: Buses) -> Bus:
    return await buses.open()
