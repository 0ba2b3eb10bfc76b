"""Reconnect delays: exponential with full jitter, so a fleet of clients does not reconnect in step."""

from __future__ import annotations

import random
from collections.abc import Iterator

__all__ = ["backoff"]


def backoff(
    initial_s: float = 0.1, factor: float = 2.0, max_s: float = 10.0, rng: random.Random | None = None
) -> Iterator[float]:
    """Yield delays: the n-th is uniform in [d/2, d] where d = min(max_s, initial_s * factor**n)."""
    rng = rng or random.Random()
    delay = initial_s
    while True:
        yield rng.uniform(delay / 2, delay)
        delay = min(max_s, delay * factor)
