"""HTTP routes of durable event consumers (webhooks): ``/api/consumers``.

Who may call them: a server administrator's token (every consumer), or an API key with the ``consumers``
scope (only the consumers of its principal, R-HOOK-10); a user's token that is not an administrator's gets
4403. The work is roost.hooks.manage's; this only maps requests and answers.
"""

from __future__ import annotations

import msgspec
from aiohttp import web

from ..apikeys import CONSUMERS, require
from ..hooks.manage import Caller, Consumers, View
from ..protocol.codes import Code
from ..protocol.errors import AuthError
from .bodies import (
    ConsumerCreated,
    ConsumerDeleted,
    ConsumerDetail,
    ConsumerInfo,
    ConsumerList,
    NewConsumer,
    RewindRequest,
)
from .http import HttpApi
from .routes import Body, route

__all__ = ["ConsumerApi"]


def _info(view: View) -> ConsumerInfo:
    r, s = view.record, view.status
    return ConsumerInfo(
        id=view.id,
        url=r.url,
        rooms=r.rooms,
        kinds=list(r.kinds),
        events=list(r.events),
        from_=r.after,
        owner=r.owner or None,
        key=r.key or None,
        created_by=r.by,
        created_at=r.created_at,
        state=view.state,
        failures=view.failures,
        last_error=s.last_error,
        max_failures=r.max_failures,
        lag=s.lag,
        holder=s.holder,
    )


class ConsumerApi:
    def __init__(self, api: HttpApi, consumers: Consumers) -> None:
        self.api = api
        self.consumers = consumers

    async def caller_of(self, request: web.Request) -> Caller:
        """An administrator (never through a key), or a key with ``consumers``: 4401 / 4403 before anything
        is read or written."""
        identity = await self.api.identity_of(request)
        if identity.key is None:
            if identity.admin or identity.user in self.api.admins:
                return Caller(identity.user)
            raise AuthError("consumers are managed by administrators and by API keys with 'consumers'", Code.FORBIDDEN)
        require(identity, CONSUMERS)
        return Caller(identity.user, identity.key)

    @route(
        "POST",
        "/api/consumers",
        "register a durable event consumer (webhook); its signing secret is shown here only",
        auth=CONSUMERS,
        statuses=(201,),
        errors=(Code.TOO_MANY_ROOMS,),
    )
    async def create_consumer(self, request: web.Request, body: Body[NewConsumer]) -> ConsumerCreated:
        """An administrator's token or an API key with ``consumers`` (a key's consumer sees only the rooms its
        principal is a member of when each event is delivered)."""
        caller = await self.caller_of(request)
        new = await body.read()
        consumer, record = await self.consumers.create(
            caller, new.url, new.rooms, new.kinds, new.events, new.from_, new.max_failures
        )
        view = View(consumer, record, await self.consumers.registry.status(consumer))
        return ConsumerCreated(**msgspec.structs.asdict(_info(view)), secret=record.secret)

    @route("GET", "/api/consumers", "the consumers the caller may see, with state and lag (no secrets)", auth=CONSUMERS)
    async def list_consumers(self, request: web.Request) -> ConsumerList:
        caller = await self.caller_of(request)
        views = await self.consumers.visible(caller)
        return ConsumerList([_info(view) for view in views])

    @route("GET", "/api/consumers/{id}", "one consumer, with its cursor in each room", auth=CONSUMERS)
    async def consumer(self, request: web.Request) -> ConsumerDetail:
        caller = await self.caller_of(request)
        view = await self.consumers.get(caller, request.match_info["id"])
        cursors = await self.consumers.cursors(view)
        return ConsumerDetail(**msgspec.structs.asdict(_info(view)), cursors=cursors)

    @route("DELETE", "/api/consumers/{id}", "delete a consumer: no node delivers it any more", auth=CONSUMERS)
    async def delete_consumer(self, request: web.Request) -> ConsumerDeleted:
        caller = await self.caller_of(request)
        consumer = request.match_info["id"]
        await self.consumers.delete(caller, consumer)
        return ConsumerDeleted(consumer, True)

    @route("POST", "/api/consumers/{id}/resume", "resume a paused consumer (failures start again at 0)", auth=CONSUMERS)
    async def resume_consumer(self, request: web.Request) -> ConsumerInfo:
        caller = await self.caller_of(request)
        view = await self.consumers.resume(caller, request.match_info["id"])
        return _info(view)

    @route("POST", "/api/consumers/{id}/rewind", "deliver again from a seq, in one room or every room", auth=CONSUMERS)
    async def rewind_consumer(self, request: web.Request, body: Body[RewindRequest]) -> ConsumerInfo:
        """The node delivering the consumer sets its cursors to ``seq`` (the events after it are delivered
        again, or skipped when ``seq`` is ahead of the cursor)."""
        caller = await self.caller_of(request)
        wanted = await body.read()
        view = await self.consumers.rewind(caller, request.match_info["id"], wanted.seq, wanted.room)
        return _info(view)
