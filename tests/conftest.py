"""Shared fixtures. ``settings``/``node`` are parametrized over every backend: the conformance suite.

``ROOST_BACKENDS=embedded,redis`` narrows the run. ``embedded_settings`` is for tests of the
embedded store itself (its file lock, its internals).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from roost.config import Limits, Settings
from roost.node import Node, serve

from .backends import SELECTED, Backend, cleanup, make

TIMEOUT_FACTOR = float(os.environ.get("ROOST_TEST_TIMEOUT_FACTOR", "1"))


def scaled(seconds: float) -> float:
    return seconds * TIMEOUT_FACTOR


@pytest.fixture
def limits() -> Limits:
    # Tests preload rooms through the service as one user: the per-user send rate is lifted here,
    # and tested on its own in test_node.py.
    return Limits(head_check_s=1.0, sends_per_s=1e6, send_burst=10**6)


@pytest.fixture(params=SELECTED)
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    chosen = make(request.param)
    yield chosen
    await cleanup(chosen)


@pytest.fixture
def settings(tmp_path: Path, limits: Limits, backend: Backend) -> Settings:
    return Settings(port=0, data_dir=str(tmp_path / "data"), limits=limits, store=backend.store, bus=backend.bus)


@pytest.fixture
def embedded_settings(tmp_path: Path, limits: Limits) -> Settings:
    return Settings(port=0, data_dir=str(tmp_path / "data"), limits=limits)


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
