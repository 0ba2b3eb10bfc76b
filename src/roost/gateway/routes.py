"""The route table: each HTTP handler declares its method, path, summary and who may call it, and its
annotations give the rest, so aiohttp's routing and the OpenAPI document (openapi.py) read one source.

A handler is ``async def name(self, request, [body: Body[S]], [query: Query[Q]]) -> R`` decorated with
``@route(...)``. ``S`` and ``Q`` are the msgspec Structs the request is decoded into (the handler reads
them when it chooses: after its credential check, so a request without one is a 401 whatever its body),
and ``R`` is the answer: a Struct (encoded with the route's first status), an ``Answer[Struct]`` (one of
its statuses), or a ``web.Response`` for a route whose media is not JSON. The types the server decodes
and encodes with *are* the documented schemas: a new field or route appears in the document by itself,
and a route that is not declared is not served (``bind`` is the only way in).
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar

import msgspec
from aiohttp import web

from ..protocol.codes import Code
from ..protocol.errors import ProtocolError

__all__ = [
    "ADMIN",
    "JSON",
    "PUBLIC",
    "ROUTE",
    "Answer",
    "Body",
    "Query",
    "Route",
    "bind",
    "declaration",
    "declared",
    "route",
]

JSON: Final = "application/json"
PUBLIC: Final = "public"
"""No credential: the probes, the page, the development login, this document."""
ADMIN: Final = "admin"
"""A server administrator's token (never an API key)."""

S = TypeVar("S")
F = TypeVar("F", bound=Callable[..., Awaitable[Any]])

_json: Final = msgspec.json.Encoder()


class Body(Generic[S]):
    """The request's JSON body as an ``S``, decoded when the handler asks (after its credential check)."""

    def __init__(self, request: web.Request, kind: type[S]) -> None:
        self._request = request
        self._kind = kind

    async def read(self) -> S:
        raw = await self._request.read()
        try:
            return msgspec.json.decode(raw, type=self._kind)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            raise ProtocolError(f"invalid request body: {exc}", Code.BAD_FRAME) from None


class Query(Generic[S]):
    """The query string as an ``S`` (strings converted to the fields' types; an empty value is absent)."""

    def __init__(self, request: web.Request, kind: type[S]) -> None:
        self._request = request
        self._kind = kind

    def read(self) -> S:
        values = {k: v for k, v in self._request.query.items() if v != ""}
        try:
            return msgspec.convert(values, type=self._kind, strict=False)
        except msgspec.ValidationError as exc:
            raise ProtocolError(f"invalid query: {exc}", Code.BAD_FRAME) from None


@dataclass(frozen=True)
class Answer(Generic[S]):
    """An answer whose status is one of several the route declares (201 stored now, 200 a retry)."""

    body: S
    status: int


@dataclass(frozen=True)
class Route:
    """One operation. ``body``, ``query`` and ``response`` come from the handler's annotations."""

    method: str
    path: str
    name: str
    summary: str
    doc: str
    auth: str
    """``PUBLIC``, ``ADMIN``, or the API-key scope the route needs (a user's token needs none)."""
    statuses: tuple[int, ...]
    media: str
    errors: tuple[Code, ...]
    """Codes this route answers beyond the ones every route of its kind may (openapi.py adds those)."""
    body: type | None
    query: type | None
    response: type | None
    """The answer's Struct; None for a non-JSON route (its body is described by ``media``)."""
    more_media: tuple[str, ...] = ()
    """Further media types a non-JSON answer may have (a download: the file's type)."""
    raw_body: str | None = None
    """The media type of a request body read as a stream of bytes (an upload), not decoded as JSON."""


_ROUTES: Final = "__roost_routes__"
ROUTE: Final = web.RequestKey("roost.route", Route)
"""The request's key for its ``Route``: a handler's credential check reads the scope the route declares."""


def declaration(request: web.Request) -> Route:
    """The route that is handling ``request``."""
    return request[ROUTE]


def route(
    method: str,
    path: str,
    summary: str,
    *,
    auth: str,
    statuses: tuple[int, ...] = (200,),
    media: str = JSON,
    errors: tuple[Code, ...] = (),
    more_media: tuple[str, ...] = (),
    raw_body: str | None = None,
) -> Callable[[F], F]:
    """Declare ``fn`` as the handler of ``method path``; may be applied to one function for several paths."""

    def mark(fn: F) -> F:
        hints = typing.get_type_hints(fn)
        answer = hints.get("return")
        if typing.get_origin(answer) is Answer:
            answer = typing.get_args(answer)[0]
        elif answer is not None and isinstance(answer, type) and issubclass(answer, web.StreamResponse):
            answer = None
        assert answer is not None or "return" in hints, f"{fn.__name__}: annotate the answer"
        doc = " ".join((inspect.getdoc(fn) or "").split())
        declared_route = Route(
            method=method,
            path=path,
            name=fn.__name__,
            summary=summary,
            doc=doc,
            auth=auth,
            statuses=statuses,
            media=media,
            errors=errors,
            body=_param(hints, "body", Body),
            query=_param(hints, "query", Query),
            response=answer,
            more_media=more_media,
            raw_body=raw_body,
        )
        routes: list[Route] = fn.__dict__.setdefault(_ROUTES, [])
        routes.append(declared_route)
        return fn

    return mark


def _param(hints: dict[str, Any], name: str, wrapper: type) -> type | None:
    hint = hints.get(name)
    if hint is None:
        return None
    assert typing.get_origin(hint) is wrapper, f"parameter {name!r} must be {wrapper.__name__}[Struct]"
    kind: type = typing.get_args(hint)[0]
    return kind


def declared(cls: type) -> list[Route]:
    """The routes ``cls`` declares, in the order its handlers are defined."""
    out: list[Route] = []
    for value in vars(cls).values():
        out.extend(getattr(value, _ROUTES, ()))
    return out


def bind(owner: object) -> list[web.RouteDef]:
    """aiohttp routes for every route ``owner``'s class declares, each handled by ``owner``'s method."""
    return [web.route(r.method, r.path, _serve(r, getattr(owner, r.name))) for r in declared(type(owner))]


Endpoint = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _serve(spec: Route, handler: Callable[..., Awaitable[Any]]) -> Endpoint:
    async def serve(request: web.Request) -> web.StreamResponse:
        request[ROUTE] = spec
        kwargs: dict[str, Any] = {}
        if spec.body is not None:
            kwargs["body"] = Body(request, spec.body)
        if spec.query is not None:
            kwargs["query"] = Query(request, spec.query)
        result = await handler(request, **kwargs)
        if isinstance(result, web.StreamResponse):
            return result
        body, status = (result.body, result.status) if isinstance(result, Answer) else (result, spec.statuses[0])
        assert spec.response is not None and isinstance(body, spec.response), spec.name
        assert status in spec.statuses, (spec.name, status)
        return web.Response(body=_json.encode(body), status=status, content_type=JSON)

    return serve
