"""The asyncio client SDK. It imports only ``roost.protocol``: it ships without server code."""

from ..protocol.relations import Folded, Timeline, fold
from .connection import Client, Cursor, Resynced, Sent, connect
from .errors import ClientClosed, ConnectionLost, RequestFailed

__all__ = [
    "Client",
    "ClientClosed",
    "ConnectionLost",
    "Cursor",
    "Folded",
    "RequestFailed",
    "Resynced",
    "Sent",
    "Timeline",
    "connect",
    "fold",
]
