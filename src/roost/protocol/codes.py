"""Stable error and close codes.

Every value lies in 4000-4999, the WebSocket private close-code range, so one number serves both
as the ``code`` of an ``error`` frame and as a close code. The last three digits are the nearest
HTTP status. What a client should do follows from the range, not from a table:

* ``44xx``: the request itself is wrong; resending it unchanged fails again
  (``4429`` may be retried after ``retry_after_s``).
* ``45xx``: the server or the connection is in trouble; reconnect or retry with backoff.

Codes are append-only: a number is never reused for another meaning.
"""

from __future__ import annotations

from enum import IntEnum

__all__ = ["Code"]


class Code(IntEnum):
    BAD_FRAME = 4400
    """Malformed JSON (or MessagePack), an unknown frame type, a missing or mistyped field."""
    UNAUTHORIZED = 4401
    """No token, a bad token or an expired one."""
    FORBIDDEN = 4403
    """Authenticated, but not allowed: not a member of a public room, banned, or lacking the role."""
    UNKNOWN_ROOM = 4404
    """The room does not exist, or is private or direct and the user is neither in it nor invited (the same
    answer, so outsiders cannot tell which names are taken); or the user a request names is not a member."""
    AUTH_TIMEOUT = 4408
    """The connection did not authenticate in time."""
    CONFLICT = 4409
    """A client message id was reused with a different body, or a room already exists."""
    RESYNC_REQUIRED = 4410
    """The cursor cannot be continued: the room's history was trimmed past it or recreated."""
    TOO_LARGE = 4413
    """A frame or a message body over the configured limit."""
    UNSUPPORTED_TYPE = 4415
    """An uploaded file whose type (sniffed from its bytes, never taken from the client) this server does not
    accept."""
    TOO_MANY_ROOMS = 4422
    """The user is in ``max_rooms_per_user`` rooms already (or opened that many direct conversations): leave
    one before creating or joining another. Also: ``max_consumers`` durable consumers exist already."""
    RATE_LIMITED = 4429
    """Too many requests; retry after ``retry_after_s``."""
    INTERNAL = 4500
    """A bug in the server; the request may or may not have taken effect (retry sends with the same id)."""
    UNAVAILABLE = 4503
    """The store or the bus is unreachable; nothing was stored. Retry with backoff."""
    NODE_UNREADY = 4504
    """This node cannot reach its store or bus (not ready for longer than its grace period), or it is not
    ready yet: reconnect to another URL in your list and resume from the cursors."""
    SLOW_CONSUMER = 4508
    """The connection could not keep up with its rooms and was closed; reconnect and resume."""
    GOING_AWAY = 4509
    """The server is shutting down; reconnect (to another node) and resume."""

    @property
    def retryable(self) -> bool:
        """True when the same request may succeed later without change."""
        return self >= 4500 or self is Code.RATE_LIMITED
