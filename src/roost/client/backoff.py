"""Reconnect and retry delays: exponential, each drawn uniformly from [d/2, d] (jitter), so a fleet of clients does
not reconnect in step, and none waits less than half the current step."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

__all__ = ["RECONNECT", "SEND_RETRY", "Backoff", "backoff", "nth_delay", "retry_delay"]


@dataclass(frozen=True, slots=True)
class Backoff:
    initial_s: float
    factor: float
    max_s: float


RECONNECT: Final = Backoff(initial_s=0.1, factor=2.0, max_s=5.0)
"""Reconnects (``Client``'s ``initial_backoff_s`` and ``max_backoff_s``)."""
SEND_RETRY: Final = Backoff(initial_s=0.25, factor=2.0, max_s=5.0)
"""A send refused with 4429, 4500 or 4503, per send (``retry_delay``)."""


def nth_delay(n: int, initial_s: float, factor: float, max_s: float, rng: random.Random) -> float:
    """The one rule for every wait: uniform in [d/2, d] where d = min(max_s, initial_s * factor**n).

    Not "full jitter" ([0, d]): no client comes back sooner than half the step. The browser client's
    src/roost/web/backoff.js is the same rule; tests/vectors/backoff.json holds both to these parameters
    and to the same waits for the same draws (docs/protocol.md section 11 states them)."""
    d = min(max_s, initial_s * factor ** min(n, 64))
    return rng.uniform(d / 2, d)


def backoff(
    initial_s: float = RECONNECT.initial_s,
    factor: float = RECONNECT.factor,
    max_s: float = RECONNECT.max_s,
    rng: random.Random | None = None,
) -> Iterator[float]:
    """Yield reconnect delays: ``nth_delay`` for n = 0, 1, 2, ..."""
    rng = rng or random.Random()
    n = 0
    while True:
        yield nth_delay(n, initial_s, factor, max_s, rng)
        n += 1


def retry_delay(
    retry_after_s: float | None,
    failures: int,
    rng: random.Random | None = None,
    initial_s: float = SEND_RETRY.initial_s,
    max_s: float = SEND_RETRY.max_s,
) -> float:
    """How long to wait before sending a refused request again (the ``failures``-th refusal in a row, from 1).

    The server's ``retry_after_s`` (4429) is a floor. Without one (4500, 4503: the store or bus is in
    trouble) the wait doubles with each refusal, from ``initial_s`` to ``max_s``, drawn in [d/2, d]: a
    fleet of clients facing a full disk does not hammer it twice a second each (docs/protocol.md 11)."""
    delay = nth_delay(max(0, failures - 1), initial_s, SEND_RETRY.factor, max_s, rng or random.Random())
    return max(retry_after_s or 0.0, delay)
