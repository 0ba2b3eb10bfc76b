"""The wait before retrying a failed delivery: capped exponential, with jitter.

``initial_s`` doubles with each consecutive failure up to ``max_s``; the wait is drawn from the upper half
of that (``[d/2, d]``), so the deliveries of many consumers to one receiver that came back do not arrive in
lockstep, while a wait never drops below half its step (a receiver that is down is not hammered).
"""

from __future__ import annotations

import random

__all__ = ["delay"]


def delay(failures: int, initial_s: float, max_s: float, rand: random.Random | None = None) -> float:
    """Seconds to wait after the ``failures``-th consecutive failure (1 for the first)."""
    step = min(max_s, initial_s * 2.0 ** max(0, min(failures - 1, 62)))
    draw = rand.random() if rand is not None else random.random()
    return step / 2 + step / 2 * draw
