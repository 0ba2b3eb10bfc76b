"""``GET /api/search``: full-text search of the user's rooms (docs/protocol.md, "Search"; service/search.py).

A class of its own beside ``HttpApi`` (whose credential check it uses), bound and documented like it (openapi.py).
"""

from __future__ import annotations

from aiohttp import web

from ..apikeys import ROOMS_READ
from ..protocol.codes import Code
from ..service import ChatService
from .bodies import SearchAnswer, SearchQuery, SearchResult
from .http import HttpApi
from .routes import Query, route

__all__ = ["SearchApi"]


class SearchApi:
    def __init__(self, service: ChatService, api: HttpApi) -> None:
        self.service = service
        self.api = api

    @route(
        "GET",
        "/api/search",
        "search the messages of my rooms (newest first)",
        auth=ROOMS_READ,
        errors=(Code.RATE_LIMITED,),
    )
    async def search(self, request: web.Request, query: Query[SearchQuery]) -> SearchAnswer:
        """Every word, phrase and prefix of ``q`` must match; only rooms the user is a member of now are searched
        (R-SEARCH-2). 400 for a query with no word, too long or with too many terms; 403 when search is off."""
        user = await self.api.user_of(request)
        q = query.read()
        found = await self.service.search(user, q.q, q.room, q.limit, q.before)
        return SearchAnswer(
            [
                SearchResult(r.hit.room, r.hit.seq, r.hit.sender, r.hit.ts, r.snippet, r.highlights)
                for r in found.results
            ],
            found.next,
        )
