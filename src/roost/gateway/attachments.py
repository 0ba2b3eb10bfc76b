"""Attachments over HTTP: upload, signed links, download (docs/protocol.md, "Attachments"; service/attachments.py).

A class of its own beside ``HttpApi`` (whose credential check it uses), bound and documented like it (openapi.py).
The upload's body is the file's raw bytes, read as a stream: it is refused past ``max_attachment_bytes`` while it
arrives (or at once from its ``Content-Length``), never buffered whole. A download is answered with the file's own
bytes and headers that keep a browser from treating it as a page of this origin: ``X-Content-Type-Options:
nosniff``, ``Content-Security-Policy: default-src 'none'; sandbox``, ``Content-Disposition`` (``attachment``, or
``inline`` for an image) with the sanitized name, and ``Cache-Control: private, no-cache``.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Final

from aiohttp import web

from ..apikeys import PUBLISH, ROOMS_READ
from ..attachments.links import Links
from ..attachments.names import content_disposition
from ..attachments.sniff import IMAGE_TYPES, TEXT
from ..protocol.codes import Code
from ..protocol.errors import AuthError
from ..service import ChatService
from ..service.attachments import DEFAULT_TYPES
from .bodies import AttachmentLink, AttachmentQuery, Upload, UploadQuery
from .http import HttpApi
from .routes import Query, route

__all__ = ["DOWNLOAD_CSP", "AttachmentApi"]

DOWNLOAD_CSP: Final = "default-src 'none'; sandbox"
"""A served file runs nothing and loads nothing, even if a browser were to render it as a document."""
CHUNK: Final = 64 * 1024
_MEDIA: Final = tuple(t for t in DEFAULT_TYPES if t != "application/octet-stream")


class AttachmentApi:
    def __init__(self, service: ChatService, api: HttpApi, links: Links) -> None:
        self.service = service
        self.api = api
        self.links = links

    @route(
        "POST",
        "/api/rooms/{room}/attachments",
        "upload a file to a room (then name its id in a send)",
        auth=PUBLISH,
        statuses=(201,),
        raw_body="application/octet-stream",
        errors=(Code.TOO_LARGE, Code.UNSUPPORTED_TYPE, Code.RATE_LIMITED),
    )
    async def upload(self, request: web.Request, query: Query[UploadQuery]) -> Upload:
        """The body is the file's bytes (any ``Content-Type``: the type is sniffed from the bytes). Members who may
        send in the room only; 413 past ``max_attachment_bytes``, 415 for a type the server does not accept, 400
        for an empty file; nothing is stored then [R-ATT-1] [R-ATT-2]."""
        user = await self.api.user_of(request)
        room = request.match_info["room"]
        await self.service.attachments.check_upload(user, room, request.content_length)  # the room before the query
        name = query.read().name
        meta = await self.service.attachments.upload(user, room, name, _body(request))
        return Upload(meta.id, meta.name, meta.type, meta.size, meta.width, meta.height)

    @route(
        "GET",
        "/api/rooms/{room}/attachments/{id}/link",
        "signed links to a file of a room, for <img src> and downloads",
        auth=ROOMS_READ,
    )
    async def link(self, request: web.Request) -> AttachmentLink:
        """Members only, checked now and again when a link is used; links expire after 10 minutes [R-ATT-6]."""
        user = await self.api.user_of(request)
        room, blob_id = request.match_info["room"], request.match_info["id"]
        meta = await self.service.attachments.allowed(user, room, blob_id)
        now = int(time.time())
        url, expires = self.links.make(room, blob_id, user, False, now)
        thumb = self.links.make(room, blob_id, user, True, now)[0] if meta.type in IMAGE_TYPES else None
        return AttachmentLink(url, thumb, expires)

    @route(
        "GET",
        "/api/rooms/{room}/attachments/{id}",
        "download a file of a room (members only, checked on every request)",
        auth=ROOMS_READ,
        media="application/octet-stream",
        more_media=_MEDIA,
    )
    async def download(self, request: web.Request, query: Query[AttachmentQuery]) -> web.StreamResponse:
        """With ``Authorization``, or a signed link's ``user``, ``exp`` and ``sig`` (``/link``); membership is
        checked either way, as for a history read (4403 in a public room, 4404 in a private one), and a file of a
        deleted message is 404 [R-ATT-5] [R-ATT-6]."""
        room, blob_id = request.match_info["room"], request.match_info["id"]
        q = query.read()
        if q.sig is not None or q.user is not None or q.exp is not None:
            if q.sig is None or q.user is None or q.exp is None:
                raise AuthError("a signed link needs user, exp and sig", Code.UNAUTHORIZED)
            if not self.links.check(room, blob_id, q.user, q.thumb, q.exp, q.sig, int(time.time())):
                raise AuthError("the link is invalid or has expired", Code.UNAUTHORIZED)
            user = q.user
        else:
            user = await self.api.user_of(request)
        fetched = await self.service.attachments.fetch(user, room, blob_id, q.thumb)
        meta, opened = fetched.meta, fetched.opened
        inline = fetched.type in IMAGE_TYPES
        response = web.StreamResponse(
            headers={
                "Content-Type": f"{TEXT}; charset=utf-8" if fetched.type == TEXT else fetched.type,
                "Content-Length": str(opened.size),
                "Content-Disposition": content_disposition(meta.name, inline),
                "X-Content-Type-Options": "nosniff",
                "Content-Security-Policy": DOWNLOAD_CSP,
                "Cross-Origin-Resource-Policy": "same-origin",
                "Cache-Control": "private, no-cache",
            }
        )
        try:
            await response.prepare(request)
            async for chunk in opened.chunks:
                await response.write(chunk)
        finally:
            await opened.chunks.aclose()
        await response.write_eof()
        return response


async def _body(request: web.Request) -> AsyncIterator[bytes]:
    async for chunk in request.content.iter_chunked(CHUNK):
        yield chunk
