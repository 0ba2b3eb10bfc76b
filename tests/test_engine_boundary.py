"""Whatever a driver raises at the engine boundary is 4503 with its cause; Roost's own errors pass.

The case that motivated it: uvloop raised ``RuntimeError: ... TCPTransport closed=True`` inside a
Redis command when the broker connection was reset, and the client was told 4500 ("a bug").
"""

from __future__ import annotations

import asyncio

import pytest

from roost.backends.boundary import engine_boundary
from roost.protocol.codes import Code
from roost.protocol.errors import Conflict, NotFound, RoostError, Unavailable, UsageError


@pytest.mark.parametrize(
    "raised",
    [
        RuntimeError("unable to perform operation on <TCPTransport closed=True>; the handler is closed"),
        asyncio.IncompleteReadError(b"", 10),
        ConnectionResetError(104, "Connection reset by peer"),
        TimeoutError(),
        ValueError("a driver's own parse error"),
    ],
    ids=lambda exc: type(exc).__name__,
)
async def test_any_driver_failure_becomes_unavailable_with_its_cause(raised: Exception) -> None:
    with pytest.raises(Unavailable) as caught:
        async with engine_boundary("redis"):
            raise raised
    assert caught.value.code is Code.UNAVAILABLE
    assert caught.value.reason.startswith(f"redis: {type(raised).__name__}")
    assert caught.value.__cause__ is raised


@pytest.mark.parametrize("ours", [Conflict("taken"), NotFound("no room"), UsageError("a bug"), AssertionError()])
async def test_roost_errors_and_bugs_pass_through(ours: Exception) -> None:
    with pytest.raises(type(ours)) as caught:
        async with engine_boundary("nats"):
            raise ours
    assert caught.value is ours
    if isinstance(ours, RoostError):
        assert caught.value.code is not Code.UNAVAILABLE


async def test_cancellation_is_not_translated() -> None:
    with pytest.raises(asyncio.CancelledError):
        async with engine_boundary("postgres"):
            raise asyncio.CancelledError
