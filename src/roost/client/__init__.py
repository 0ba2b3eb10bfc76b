"""The asyncio client SDK. It imports only ``roost.protocol``: it ships without server code."""

from .connection import Client, Cursor, Resynced, Sent, connect
from .errors import ClientClosed, ConnectionLost, RequestFailed

__all__ = ["Client", "ClientClosed", "ConnectionLost", "Cursor", "RequestFailed", "Resynced", "Sent", "connect"]
