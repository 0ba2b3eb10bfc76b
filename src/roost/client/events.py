"""What the client hands the application: cursors to save, acks of sends, and the items it iterates over."""

from __future__ import annotations

from dataclasses import dataclass

from ..protocol import frames
from ..protocol.inbox import InboxEvent
from ..protocol.types import Message, Position

__all__ = ["Cursor", "InboxItem", "Incoming", "Resynced", "Sent"]


@dataclass(frozen=True, slots=True)
class Cursor:
    epoch: str | None
    seq: int


@dataclass(frozen=True, slots=True)
class Sent:
    room: str
    cmid: str
    seq: int
    ts: int
    duplicate: bool


@dataclass(frozen=True, slots=True)
class Resynced:
    """The room's continuity was lost (trimmed or recreated history); it restarts at ``position.first``."""

    room: str
    reason: str
    position: Position | None


Incoming = Message | frames.TypingEvent | Resynced


InboxItem = InboxEvent | Resynced
"""What the user's event stream yields (``Client.inbox_events``): each event once, in order; a ``Resynced``
when continuity was lost (the stream's retention trimmed past the cursor)."""
