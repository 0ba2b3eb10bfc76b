"""The engine boundary: whatever a driver raises becomes ``Unavailable`` (4503), with its cause.

A driver fails in more ways than its documented exception classes: uvloop raises ``RuntimeError`` from
a transport that closed under a command, asyncio raises ``IncompleteReadError``, a cluster client
raises its own hierarchy. Each of these means "the engine did not answer", which the protocol calls
4503 (retry with backoff), never 4500 ("a bug in the server"). Roost's own errors pass through, and so
do the ones that mean a bug in Roost (``UsageError``, ``AssertionError``).
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import AsyncIterator
from typing import Final

from ..protocol.errors import RoostError, Unavailable, UsageError

__all__ = ["FAILURES", "engine_boundary", "unavailable"]

_OURS = (RoostError, UsageError, AssertionError)

FAILURES: Final[Counter[tuple[str, str]]] = Counter()
"""(engine, exception class) -> how many failures crossed the boundary in this process (``/metrics``)."""


def unavailable(engine: str, exc: BaseException) -> Unavailable:
    FAILURES[engine, type(exc).__name__] += 1
    return Unavailable(f"{engine}: {type(exc).__name__}: {exc}"[:300])


@contextlib.asynccontextmanager
async def engine_boundary(engine: str) -> AsyncIterator[None]:
    try:
        yield
    except _OURS:
        raise
    except Exception as exc:  # every other failure is the engine's, however the driver spells it
        raise unavailable(engine, exc) from exc
