"""Token buckets per user: a flood from one user is refused with a retry-after, without slowing others."""

from __future__ import annotations

import time
from collections.abc import Callable

from .protocol.errors import RateLimited

__all__ = ["RateLimiter", "TokenBucket"]


class TokenBucket:
    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.stamp = now

    def take(self, now: float, cost: float = 1.0) -> float:
        """0.0 if ``cost`` tokens were taken, else the seconds until they are available (nothing taken)."""
        wait = self.shortfall(now, cost)
        if not wait:
            self.tokens -= cost
        return wait

    def shortfall(self, now: float, cost: float = 1.0) -> float:
        """The seconds until ``cost`` tokens are available (0.0: now), taking nothing. A cost over the burst
        counts as the burst, so it fits a full bucket."""
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        cost = min(cost, self.burst)
        return 0.0 if self.tokens >= cost else (cost - self.tokens) / self.rate


class RateLimiter:
    """One bucket per key. Idle buckets are forgotten, so memory follows active users only."""

    def __init__(
        self, rate: float, burst: float, what: str, clock: Callable[[], float] = time.monotonic, max_keys: int = 100_000
    ) -> None:
        self.rate = rate
        self.burst = burst
        self.what = what
        self.clock = clock
        self.max_keys = max_keys
        self._buckets: dict[str, TokenBucket] = {}

    def check(self, key: str) -> None:
        """Take a token for ``key`` or raise ``RateLimited`` with the wait."""
        wait = self.wait(key)
        if wait:
            raise RateLimited(f"over {self.rate:g} {self.what} per second", wait)

    def wait(self, key: str) -> float:
        now = self.clock()
        return self.bucket(key, now).take(now)

    def bucket(self, key: str, now: float) -> TokenBucket:
        """``key``'s bucket (a full one for a key not seen lately)."""
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_keys:
                self._prune(now)
            bucket = self._buckets[key] = TokenBucket(self.rate, self.burst, now)
        return bucket

    def _prune(self, now: float) -> None:
        full_after = self.burst / self.rate
        self._buckets = {k: b for k, b in self._buckets.items() if now - b.stamp < full_after}
