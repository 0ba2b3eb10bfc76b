"""Errors the SDK raises to the application."""

from __future__ import annotations

from ..protocol.codes import Code
from ..protocol.errors import RoostError

__all__ = ["ClientClosed", "ConnectionLost", "RequestFailed"]


class RequestFailed(RoostError):
    """The server answered a request with an error frame; ``code`` says which, and ``retry_after_s`` (4429,
    4503) how long to wait before asking again."""

    def __init__(self, reason: str, code: Code | None = None, retry_after_s: float | None = None) -> None:
        super().__init__(reason, code)
        self.retry_after_s = retry_after_s


class ConnectionLost(RoostError):
    """The connection dropped before the reply came; the request may be retried."""

    default_code = Code.UNAVAILABLE


class ClientClosed(RoostError):
    """The client was closed."""

    default_code = Code.GOING_AWAY
