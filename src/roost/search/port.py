"""The ``SearchIndex`` port: where the text of the rooms is indexed, and how it is asked.

Contract (checked on both engines by tests/backends/test_search_index.py):

* The index holds, per room, a ``Mark``: the store's epoch it follows, its ``cursor`` (every seq up to it has
  been applied) and the room's ``first`` when it was last read. ``apply`` changes a room's documents and moves
  its mark in one transaction, and only if the stored mark is the one the caller read (``expected``): what was
  applied and how far are never apart, so an indexer that stops at any point resumes from the mark and applies
  nothing twice, and two indexers that race (a lease changing hands) cannot both apply a page. ``apply_many``
  does the same for several rooms in one transaction, each room's mark compared on its own.
* ``apply`` with ``reset`` first drops every document of the room (its history was recreated: a new epoch);
  then drops the documents below ``mark.first`` (retention dropped them from the store); then applies the
  changes in order: ``Insert`` adds a text message, ``Edit`` replaces the text of a document if the edit's
  sender is the document's sender (the fold's rule, protocol/relations.py), ``Remove`` drops a document.
* ``search`` returns the newest documents first (by ``ts``, then ``room`` and ``seq``) of the given rooms only
  whose text holds every term of the query, at most ``limit``, older than the cursor ``before`` (the ``next``
  of the previous page); ``next`` is set when a page is full. The cursor is the engine's: opaque to callers.
* ``compact`` physically removes what ``Remove`` left of erased texts in the engine's storage (R-SEARCH-8);
  ``apply`` notes the need (``Remove(erase=True)``) in its transaction, so a restart does not forget it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import msgspec

from .query import Query

__all__ = [
    "SLOT",
    "Change",
    "Edit",
    "Found",
    "Hit",
    "Insert",
    "Mark",
    "Remove",
    "SearchIndex",
    "Update",
    "docid_base",
]

SLOT = 1024
"""Documents per millisecond a docid has room for before it spills into the next millisecond's slot."""


def docid_base(ts: int) -> int:
    """The first docid of a message stamped ``ts``: both engines key documents so, and "newest first" is the order
    of their keys (a message's ``ts`` in ms times ``SLOT``, plus a counter for the same millisecond)."""
    return max(0, ts) * SLOT


class Mark(msgspec.Struct, frozen=True):
    """How far the index follows a room: ``epoch`` of its history, every seq up to ``cursor`` applied."""

    epoch: str
    cursor: int
    first: int = 1


class Insert(msgspec.Struct, frozen=True):
    seq: int
    sender: str
    ts: int
    body: str


class Edit(msgspec.Struct, frozen=True):
    target: int
    sender: str
    body: str


class Remove(msgspec.Struct, frozen=True):
    target: int
    erase: bool = False
    """An erasing delete: the text must also leave the engine's storage (``compact``)."""


Change = Insert | Edit | Remove


class Update(msgspec.Struct, frozen=True):
    """One room's step: ``changes`` applied and ``mark`` stored if the stored mark is ``expected``."""

    room: str
    expected: Mark | None
    mark: Mark
    changes: Sequence[Change]
    reset: bool = False


class Hit(msgspec.Struct, frozen=True):
    room: str
    seq: int
    sender: str
    ts: int
    body: str
    """The document's text now: the message's latest edit."""


class Found(msgspec.Struct, frozen=True):
    hits: list[Hit]
    next: int | None
    """The cursor of the next page (``before``), when this one is full."""


class SearchIndex(Protocol):
    shared: bool
    """Several nodes use this index (a PostgreSQL one): one of them indexes at a time, under a lease."""

    async def marks(self) -> dict[str, Mark]:
        """Every room's mark: where the indexer resumes."""
        ...

    async def apply(
        self, room: str, expected: Mark | None, mark: Mark, changes: Sequence[Change], *, reset: bool = False
    ) -> bool:
        """Apply ``changes`` and store ``mark`` if the stored mark is ``expected`` (None: the room is new to the
        index), all in one transaction; False, with nothing done, otherwise."""
        ...

    async def apply_many(self, updates: Sequence[Update]) -> list[bool]:
        """``apply`` for each update, in one transaction (one commit for a pass over many rooms); each room's
        mark is compared on its own, so a stale one is skipped (False) and the others applied."""
        ...

    async def search(self, rooms: Sequence[str], query: Query, limit: int, before: int | None) -> Found: ...

    async def compact(self) -> bool:
        """If an erasure was applied since the last compaction, remove its remains from storage; True if it ran."""
        ...

    async def aclose(self) -> None: ...
