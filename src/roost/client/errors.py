"""Errors the SDK raises to the application."""

from __future__ import annotations

from ..protocol.codes import Code
from ..protocol.errors import RoostError

__all__ = ["ClientClosed", "ConnectionLost", "RequestFailed"]


class RequestFailed(RoostError):
    """The server answered a request with an error frame; ``code`` says which."""


class ConnectionLost(RoostError):
    """The connection dropped before the reply came; the request may be retried."""

    default_code = Code.UNAVAILABLE


class ClientClosed(RoostError):
    """The client was closed."""

    default_code = Code.GOING_AWAY
