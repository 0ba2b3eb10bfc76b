"""The exception tree.

::

    RoostError(code, reason)          anything a peer may be told, with a stable Code
     +-- ProtocolError                the peer sent bad data (4400, 4413)
     +-- AuthError                    4401, 4403, 4408
     +-- NotFound                     4404
     +-- Conflict                     4409
     +-- ResyncRequired               4410
     +-- RateLimited                  4429
     +-- Unavailable                  4503: the store or bus failed; nothing was stored
    UsageError                        Roost itself called something wrongly: a bug, never sent to a peer

Backends translate their driver's exceptions into ``Unavailable`` in one place each; nothing above
the backends catches a driver exception.
"""

from __future__ import annotations

from .codes import Code

__all__ = [
    "AuthError",
    "Conflict",
    "NotFound",
    "ProtocolError",
    "RateLimited",
    "ResyncRequired",
    "RoostError",
    "Unavailable",
    "UsageError",
]


class RoostError(Exception):
    """An error with a stable code that can be reported to the peer."""

    default_code: Code = Code.INTERNAL

    def __init__(self, reason: str, code: Code | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code if code is not None else self.default_code


class ProtocolError(RoostError):
    default_code = Code.BAD_FRAME


class AuthError(RoostError):
    default_code = Code.UNAUTHORIZED


class NotFound(RoostError):
    default_code = Code.UNKNOWN_ROOM


class Conflict(RoostError):
    default_code = Code.CONFLICT


class ResyncRequired(RoostError):
    default_code = Code.RESYNC_REQUIRED


class RateLimited(RoostError):
    default_code = Code.RATE_LIMITED

    def __init__(self, reason: str, retry_after_s: float) -> None:
        super().__init__(reason)
        self.retry_after_s = retry_after_s


class Unavailable(RoostError):
    default_code = Code.UNAVAILABLE


UNAVAILABLE_RETRY_AFTER_S = 1.0
"""What a 4503 says to wait at least: the engine is down or overloaded, and clients back off from there."""


def retry_after(exc: RoostError) -> float | None:
    """The ``retry_after_s`` an error carries: 4429's from its bucket, 4503's floor, else none."""
    if isinstance(exc, RateLimited):
        return exc.retry_after_s
    if exc.code is Code.UNAVAILABLE:
        return UNAVAILABLE_RETRY_AFTER_S
    return None


class UsageError(Exception):
    """Roost called an API in a state where it is not allowed: a bug in Roost, not in the peer."""
