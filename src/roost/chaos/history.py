"""What a chaos run records. Plain data, written as JSON lines so a run can be checked again later."""

from __future__ import annotations

import msgspec

__all__ = ["Delivery", "Fault", "History", "Send", "Stored"]


class Send(msgspec.Struct):
    """One ``send()`` by a client: acked with ``seq``, failed with ``error``, or neither (still pending)."""

    client: str
    user: str
    room: str
    cmid: str
    t: float
    seq: int | None = None
    t_ack: float | None = None
    error: int | None = None


class Delivery(msgspec.Struct, array_like=True):
    client: str
    room: str
    seq: int
    cmid: str
    t: float


class Stored(msgspec.Struct, array_like=True):
    """The ground truth: a message as the store holds it after the run."""

    room: str
    seq: int
    sender: str
    cmid: str
    kind: str


class Fault(msgspec.Struct):
    kind: str
    target: str
    t_start: float
    t_end: float
    recovered_s: float | None = None
    """Seconds from the start of the fault until every client was connected and caught up with the
    store again (so it includes the fault's own duration); None if that never happened."""


class History(msgspec.Struct):
    members: dict[str, list[str]]
    """client -> rooms it is a member of (and follows from seq 0)."""
    users: dict[str, str]
    """client -> user."""
    sends: list[Send]
    deliveries: list[Delivery]
    stored: list[Stored]
    faults: list[Fault]
