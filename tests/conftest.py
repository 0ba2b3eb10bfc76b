"""Shared fixtures: an in-process Roost node on a free port, over real backends in a temp directory."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from roost.config import Limits, Settings
from roost.node import Node, serve

TIMEOUT_FACTOR = float(os.environ.get("ROOST_TEST_TIMEOUT_FACTOR", "1"))


def scaled(seconds: float) -> float:
    return seconds * TIMEOUT_FACTOR


@pytest.fixture
def limits() -> Limits:
    return Limits(head_check_s=1.0)


@pytest.fixture
def settings(tmp_path: Path, limits: Limits) -> Settings:
    return Settings(port=0, data_dir=str(tmp_path / "data"), limits=limits)


@pytest.fixture
async def node(settings: Settings) -> AsyncIterator[Node]:
    async with serve(settings) as running:
        yield running


def with_limits(settings: Settings, **changes: object) -> Settings:
    return replace(settings, limits=replace(settings.limits, **changes))  # type: ignore[arg-type]
