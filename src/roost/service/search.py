"""Search: the rooms a user may read, asked of the search index (search/port.py) with the user's membership now.

Membership is checked when the query runs, as for every read: the rooms searched are those the user
is a member of at that moment (``rooms_of``), or the one room asked for after ``check_member`` (4403 in a public
room, 4404 in a private or direct one, as a history read answers). Roost serves no history to a user who left a
room, not even what they saw while in it, so a former member's search finds nothing of that room, and a member's
finds everything the room keeps, also from before they joined, as ``history`` would serve it (R-SEARCH-2).

The index follows the store by a little (the indexer's lag, search/indexer.py): a message is found, an edit's
new text found and a deleted text gone once the indexer has read them, usually within a second.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import Limits
from ..protocol.codes import Code
from ..protocol.errors import AuthError, ProtocolError
from ..ratelimit import RateLimiter
from ..search.port import Hit, SearchIndex
from ..search.query import parse, snippet
from .rooms import Rooms

__all__ = ["DEFAULT_RESULTS", "MAX_RESULTS", "Result", "Results", "Search"]

DEFAULT_RESULTS = 20
MAX_RESULTS = 100
MAX_CURSOR = 2**62


@dataclass(frozen=True, slots=True)
class Result:
    hit: Hit
    snippet: str
    highlights: list[tuple[int, int]]


@dataclass(frozen=True, slots=True)
class Results:
    results: list[Result]
    next: int | None


class Search:
    def __init__(self, index: SearchIndex | None, rooms: Rooms, limits: Limits) -> None:
        self.index = index
        self.rooms = rooms
        self.rate = RateLimiter(limits.searches_per_s, max(1.0, 4 * limits.searches_per_s), "searches")

    async def search(
        self, user: str, text: str, room: str | None = None, limit: int | None = None, before: int | None = None
    ) -> Results:
        """The newest messages holding every term of ``text`` in ``room`` or in every room of ``user``."""
        if self.index is None:
            raise AuthError("search is off on this server", Code.FORBIDDEN)
        query = parse(text)
        count = DEFAULT_RESULTS if limit is None else max(1, min(limit, MAX_RESULTS))
        if before is not None and not 0 <= before <= MAX_CURSOR:
            raise ProtocolError("before is the next of an earlier answer", Code.BAD_FRAME)
        self.rate.check(user)
        if room is not None:
            await self.rooms.check_member(user, room)
            rooms = [room]
        else:
            rooms = await self.rooms.rooms_of(user)
        found = await self.index.search(rooms, query, count, before)
        out = []
        for hit in found.hits:
            text_, spans = snippet(hit.body, query)
            out.append(Result(hit, text_, spans))
        return Results(out, found.next)
