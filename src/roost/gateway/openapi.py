"""The OpenAPI 3.1 document of every HTTP route, generated from the route table the server is built from.

Each operation comes from a ``@route`` declaration (routes.py) of one of ``DOCUMENTED``'s classes: its
request and answer schemas are ``msgspec.json.schema_components`` of the Structs the handler decodes and
encodes (bodies.py), its error answers follow from who may call it and what it takes, plus the codes it
declares. node.py serves exactly these classes (a test compares the router with the document), so a route
cannot be served undocumented, nor documented with a body it does not use. docs/openapi.json is
``render(build())`` checked in; ``GET /api/openapi.json`` and ``roost spec --openapi`` give the same bytes.
Only ``/ws`` is outside it: the WebSocket is described by AsyncAPI (roost.protocol.asyncapi).
"""

from __future__ import annotations

import collections
import functools
import re
import typing
from typing import Any, Final

import msgspec
from aiohttp import web

from ..protocol import types
from ..protocol.codes import Code
from ..protocol.spec import attribute_docs, render
from . import bodies
from .attachments import AttachmentApi
from .consumers import ConsumerApi
from .health import Health, MetricsPage
from .http import HttpApi
from .page import Page
from .push import PushApi
from .routes import ADMIN, JSON, PUBLIC, Route, declared, route
from .search import SearchApi

__all__ = ["DOCUMENTED", "ApiDocs", "build", "operations", "render"]

VERSION: Final = "1"
"""The API's version in ``info.version``: the API is append-only, like the protocol (docs/protocol.md)."""

SCHEMAS: Final = "#/components/schemas/{name}"

_SEGMENT: Final = "percent-encoded; not . or .. (URL dot segments, removed by clients)"
PATH_PARAMETERS: Final[dict[str, dict[str, Any]]] = {
    "room": {"type": "string", "pattern": f"^{types._ROOM_RE.pattern}$"},
    "user": {"type": "string", "pattern": f"^{types._USER_RE.pattern}$"},
    "seq": {"type": "integer", "minimum": 1, "maximum": types.MAX_SEQ},
    "emoji": {"type": "string", "pattern": "^[^{}/]+$", "description": _SEGMENT},
    "id": {"type": "string", "pattern": "^[^{}/]+$", "description": _SEGMENT},
}
"""The schema of each ``{name}`` a path may hold: the names the handlers read from ``match_info``. aiohttp
matches a ``{name}`` with ``[^{}/]+`` (a percent-encoded ``/`` included), so no other value reaches a handler."""

_REASONS: Final = {200: "OK", 201: "Created", 503: "Service Unavailable"}


class ApiDocs:
    @route("GET", "/api/openapi.json", "this document: every HTTP route, generated from the route table", auth=PUBLIC)
    async def openapi(self, request: web.Request) -> web.Response:
        return web.Response(body=_rendered(), content_type=JSON)


DOCUMENTED: Final[dict[type, str]] = {
    HttpApi: "api",
    ConsumerApi: "api",
    PushApi: "api",
    SearchApi: "api",
    AttachmentApi: "api",
    ApiDocs: "api",
    Health: "probes",
    MetricsPage: "probes",
    Page: "web",
}
"""The classes whose routes node.py serves, with the tag of their operations (admin routes: ``admin``)."""


@functools.cache
def _rendered() -> bytes:
    return render(build()).encode()


def operations() -> list[tuple[str, Route]]:
    """``(tag, route)`` of every documented route, in declaration order."""
    out = []
    for cls, tag in DOCUMENTED.items():
        for r in declared(cls):
            out.append(("admin" if r.auth == ADMIN else tag, r))
    return out


def _status_text(status: int) -> str:
    return _REASONS.get(status, str(status))


def _error_codes(r: Route) -> list[Code]:
    """What a route may answer besides success: by who may call it and what it reads, plus its own."""
    codes = set(r.errors)
    takes_input = r.body is not None or r.query is not None or r.raw_body is not None or "{" in r.path
    if takes_input:
        codes.add(Code.BAD_FRAME)
    if r.auth != PUBLIC:
        codes |= {Code.UNAUTHORIZED, Code.FORBIDDEN, Code.INTERNAL, Code.UNAVAILABLE}
        if "{" in r.path:
            codes.add(Code.UNKNOWN_ROOM)
    return sorted(codes)


def _query_parameters(kind: type) -> list[dict[str, Any]]:
    hints = typing.get_type_hints(kind, include_extras=True)
    info = msgspec.inspect.type_info(kind)
    assert isinstance(info, msgspec.inspect.StructType)
    docs = {**attribute_docs(kind)}
    out = []
    for f in info.fields:
        param: dict[str, Any] = {"name": f.encode_name, "in": "query", "required": f.required}
        param["schema"] = msgspec.json.schema(hints[f.name])
        if f.name in docs:
            param["description"] = docs[f.name]
        out.append(param)
    return out


def _path_parameters(path: str) -> list[dict[str, Any]]:
    return [
        {"name": name, "in": "path", "required": True, "schema": PATH_PARAMETERS[name]}
        for name in re.findall(r"\{(\w+)\}", path)
    ]


def _ref(kind: type) -> dict[str, str]:
    return {"$ref": SCHEMAS.format(name=kind.__name__)}


def _operation(tag: str, r: Route, shared: bool) -> dict[str, Any]:
    """One operation; ``shared``: its handler serves several paths (the web files), named apart by the path."""
    name = r.name + "_" + re.sub(r"\W+", "_", r.path).strip("_") if shared else r.name
    op: dict[str, Any] = {"operationId": name, "summary": r.summary, "tags": [tag]}
    if r.doc:
        op["description"] = r.doc
    op["security"] = [] if r.auth == PUBLIC else [{"bearer": []}]
    op["x-roost-auth"] = r.auth
    parameters = _path_parameters(r.path) + (_query_parameters(r.query) if r.query else [])
    if parameters:
        op["parameters"] = parameters
    if r.body is not None:
        op["requestBody"] = {"required": True, "content": {JSON: {"schema": _ref(r.body)}}}
    elif r.raw_body is not None:
        binary = {"schema": {"type": "string", "format": "binary"}}
        op["requestBody"] = {"required": True, "content": {r.raw_body: binary}}
    if r.response is not None:
        schema = _ref(r.response)
    elif r.media == JSON:
        schema = {"type": "object"}
    else:
        schema = {"type": "string"}
    media = {m: {"schema": schema} for m in (r.media, *r.more_media)}
    responses: dict[str, Any] = {str(s): {"description": _status_text(s), "content": media} for s in r.statuses}
    for code in _error_codes(r):
        status = str(int(code) - 4000)
        assert status not in responses, f"{r.name}: {status} is both a success and an error"
        responses[status] = {"$ref": f"#/components/responses/{code.name}"}
    op["responses"] = responses
    return op


def _error_responses() -> dict[str, Any]:
    docs = attribute_docs(Code)
    out: dict[str, Any] = {}
    for code in Code:
        response: dict[str, Any] = {
            "description": f"{int(code)} {code.name}: {docs[code.name]}",
            "content": {JSON: {"schema": _ref(bodies.ErrorAnswer)}},
        }
        if code in (Code.RATE_LIMITED, Code.UNAVAILABLE):
            response["headers"] = {
                "Retry-After": {"description": "whole seconds, at least 1", "schema": {"type": "integer"}}
            }
        out[code.name] = response
    return out


def _schemas(routes: list[Route]) -> dict[str, Any]:
    """Every body and answer Struct, with each field's docstring as its description."""
    kinds: list[type] = [bodies.ErrorAnswer, bodies.HistoryAnswer]
    for r in routes:
        kinds += [k for k in (r.body, r.response) if k is not None and k not in kinds]
    _, components = msgspec.json.schema_components(kinds, ref_template=SCHEMAS)
    for name, schema in components.items():
        cls = getattr(bodies, name, None) or getattr(types, name)
        for field, doc in attribute_docs(cls).items():
            prop = schema.get("properties", {}).get(field)
            if prop is not None and "description" not in prop:
                prop["description"] = doc
    return dict(sorted(components.items()))


def build() -> dict[str, Any]:
    """The whole document as plain JSON-able data, in a fixed order (so its rendering is byte-stable)."""
    ops = operations()
    names = collections.Counter(r.name for _, r in ops)
    paths: dict[str, dict[str, Any]] = {}
    for tag, r in ops:
        paths.setdefault(r.path, {})[r.method.lower()] = _operation(tag, r, names[r.name] > 1)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Roost HTTP API",
            "version": VERSION,
            "description": (
                "Generated by roost.gateway.openapi from the route table and the msgspec Structs the server "
                "decodes and encodes. Errors: {'error': {'code', 'reason'}} with the HTTP status code - 4000 "
                "(docs/protocol.md, section 15). The WebSocket at /ws is described by docs/asyncapi.json."
            ),
        },
        "servers": [{"url": "http://localhost:8080", "description": "roost serve (the embedded default)"}],
        "tags": [
            {"name": "api", "description": "rooms, membership, history, sync, messages"},
            {"name": "admin", "description": "server administrators only (never an API key)"},
            {"name": "probes", "description": "health and metrics for orchestrators"},
            {"name": "web", "description": "the web client's page and modules"},
        ],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "a user's token (JWT) or an API key rk_<id>_<secret>; x-roost-auth names the "
                    "scope a key needs (admin: an administrator's token)",
                }
            },
            "schemas": _schemas([r for _, r in ops]),
            "responses": _error_responses(),
        },
    }
