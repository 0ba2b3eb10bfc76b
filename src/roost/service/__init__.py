"""The service layer: Roost's rules over the ports. ``ChatService`` (``chat.py``) is its entry point."""

from ..protocol.types import MAX_SEQ
from .chat import ChatService
from .reads import HistoryResult
from .rooms import ROOM_KINDS, RoomInfo, dm_room

__all__ = ["MAX_SEQ", "ROOM_KINDS", "ChatService", "HistoryResult", "RoomInfo", "dm_room"]
