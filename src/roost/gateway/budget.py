"""Frame budgets: what one connection, and one user over all their connections to a node, may ask per second.

Every client frame costs units (``COSTS``), taken from two token buckets: the connection's
(``frames_per_s``, ``frame_burst``) and the user's on this node (``user_frames_per_s``,
``user_frame_burst``, shared by the user's connections through ``UserBudgets``). ``BASE_COST`` is taken
before the frame is decoded, so malformed frames pay too; the rest of a costlier frame's price after. A frame
that does not fit is refused with 4429 and the server stops reading the connection until it would fit
(``Session._over_budget``), so a flood costs the server its budget and no more: the excess waits in the
client's socket (TCP backpressure), not in the server. ``frame_strikes`` refusals within ``STRIKE_WINDOW_S``
close the connection with 4429. Why costs: a ping is answered from memory, a subscribe or a history page
reads the store, a membership change writes it.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Final

from ..config import Limits
from ..protocol import frames
from ..ratelimit import RateLimiter, TokenBucket

__all__ = [
    "BASE_COST",
    "COSTS",
    "HISTORY_PER_MESSAGE",
    "MAX_PAUSE_S",
    "MIN_PAUSE_S",
    "STRIKE_WINDOW_S",
    "FrameBudget",
    "UserBudgets",
    "cost_of",
]

BASE_COST: Final = 1
"""Taken before decoding: every frame, a malformed or unknown one included."""

_MEMBERSHIP: Final = 10
COSTS: Final[dict[type, int]] = {
    frames.Ping: 1,
    frames.Typing: 1,
    frames.Auth: 1,
    frames.Send: 1,
    frames.Edit: 1,
    frames.Delete: 1,
    frames.React: 1,
    frames.Read: 50,
    frames.Unsubscribe: 10,
    frames.Subscribe: 20,
    frames.History: 5,
    frames.Create: _MEMBERSHIP,
    frames.Dm: _MEMBERSHIP,
    frames.Join: _MEMBERSHIP,
    frames.Leave: _MEMBERSHIP,
    frames.Invite: _MEMBERSHIP,
    frames.Kick: _MEMBERSHIP,
    frames.Ban: _MEMBERSHIP,
    frames.Unban: _MEMBERSHIP,
    frames.Role: _MEMBERSHIP,
    frames.Uninvite: _MEMBERSHIP,
    frames.Decline: _MEMBERSHIP,
}
"""Units per frame type (sends, edits, deletes and reactions also take from the per-user send bucket, and
membership changes from the membership bucket)."""

STRIKE_WINDOW_S: Final = 10.0
MIN_PAUSE_S: Final = 0.1
"""After a refusal the connection is not read for at least this long, so a flood is refused (and answered)
at most ten times a second per connection, however small the wait for one unit."""
MAX_PAUSE_S: Final = 1.0
"""The longest the connection is not read after a refusal (a drained bucket with a slow refill says to wait
longer in ``retry_after_s``; the next frame is judged then)."""


HISTORY_PER_MESSAGE: Final = 0.4
"""A history request costs ``COSTS[History]`` plus this per message asked for (``limit``): 50 messages (the
default) 25 units, 500 messages 205. The store read of a page holds the interpreter in a reader thread, so
pages cost the event loop more than their encoding shows."""


def cost_of(frame: frames.ClientFrame) -> int:
    if isinstance(frame, frames.History):
        return COSTS[frames.History] + int(max(1, frame.limit) * HISTORY_PER_MESSAGE)
    return COSTS.get(type(frame), BASE_COST)


class UserBudgets:
    """The per-user buckets of one node, shared by each user's connections (idle ones are forgotten)."""

    def __init__(self, limits: Limits, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._limiter = RateLimiter(limits.user_frames_per_s, limits.user_frame_burst, "frame units", clock)

    def bucket(self, user: str, now: float) -> TokenBucket:
        return self._limiter.bucket(user, now)


class FrameBudget:
    """One connection's budget: its own bucket and its user's, charged together or not at all."""

    def __init__(self, limits: Limits, users: UserBudgets, user: str) -> None:
        self.users = users
        self.user = user
        self.clock = users.clock
        self.strikes = limits.frame_strikes
        self._own = TokenBucket(limits.frames_per_s, limits.frame_burst, self.clock())
        self._refusals: deque[float] | None = None
        """Made at the first refusal: an empty deque is about 600 bytes, on every idle connection."""

    def charge(self, cost: int) -> float:
        """Take ``cost`` units from both buckets and return 0.0, or take nothing and return the seconds until
        both have them."""
        now = self.clock()
        users = self.users.bucket(self.user, now)
        wait = max(self._own.shortfall(now, cost), users.shortfall(now, cost))
        if not wait:
            self._own.take(now, cost)
            users.take(now, cost)
        return wait

    def refused(self) -> bool:
        """Count a refusal; True when this one makes ``frame_strikes`` within ``STRIKE_WINDOW_S``."""
        now = self.clock()
        if self._refusals is None:
            self._refusals = deque()
        refusals = self._refusals
        refusals.append(now)
        while refusals and now - refusals[0] > STRIKE_WINDOW_S:
            refusals.popleft()
        return len(refusals) >= self.strikes
