"""The asyncio client SDK. It imports only ``roost.protocol``: it ships without server code."""

from ..protocol.inbox import Added, InboxEvent, Invited, Mention, NotifyLevel, ReadUpTo, Removed, Uninvited, mentions
from ..protocol.relations import Folded, Timeline, counts_as_unread, fold
from ..protocol.rich import mentions_user
from .connection import Client, Cursor, Resynced, Sent, connect
from .errors import ClientClosed, ConnectionLost, RequestFailed

__all__ = [
    "Added",
    "Client",
    "ClientClosed",
    "ConnectionLost",
    "Cursor",
    "Folded",
    "InboxEvent",
    "Invited",
    "Mention",
    "NotifyLevel",
    "ReadUpTo",
    "Removed",
    "RequestFailed",
    "Resynced",
    "Sent",
    "Timeline",
    "Uninvited",
    "connect",
    "counts_as_unread",
    "fold",
    "mentions",
    "mentions_user",
]
