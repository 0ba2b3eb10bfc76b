"""The running server against its OpenAPI document (GET /api/openapi.json): every route served is documented,
every operation answers valid input with a documented success whose body matches the documented schema
exactly, and invalid input (malformed JSON, wrong types, missing fields, no credential, an unknown room,
random bodies drawn from the schemas) with a documented error status and the error shape.

Everything about the routes is read from the document the node serves, not from the server's code: the
only knowledge written here is a scenario of valid calls (a room must exist before it is joined), and a test
fails if the scenario leaves an operation out.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from roost.apikeys import SCOPES
from roost.config import Settings
from roost.node import Node, serve

from ..conftest import with_limits
from ..schema_check import errors, resolve, values

DOC = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"
ADMIN = "ops"
JSON = "application/json"


@dataclass
class Api:
    """A client of one node that checks every answer against the document the node serves."""

    node: Node
    http: aiohttp.ClientSession
    doc: dict[str, Any]
    credentials: dict[str, str] = field(default_factory=dict)
    """``x-roost-auth`` -> the bearer credential that may call such a route."""
    called: set[tuple[str, str]] = field(default_factory=set)

    def operation(self, method: str, template: str) -> dict[str, Any]:
        op: dict[str, Any] = self.doc["paths"][template][method.lower()]
        return op

    async def call(
        self,
        method: str,
        template: str,
        params: dict[str, str | int] | None = None,
        *,
        json_body: Any = None,
        raw: bytes | None = None,
        query: dict[str, str] | None = None,
        auth: str | bool | None = True,
    ) -> tuple[int, Any]:
        """``(status, decoded body)``; ``auth=True`` uses the credential the route's ``x-roost-auth`` needs."""
        op = self.operation(method, template)
        path = template
        for name, value in (params or {}).items():
            path = path.replace("{" + name + "}", quote(str(value), safe=""))
        assert "{" not in path, path
        headers = {}
        token = self.credentials.get(op["x-roost-auth"]) if auth is True else auth
        if isinstance(token, str):
            headers["Authorization"] = f"Bearer {token}"
        data = raw if raw is not None else None if json_body is None else json.dumps(json_body).encode()
        async with self.http.request(method, self.node.url + path, data=data, headers=headers, params=query) as r:
            body = await r.read()
            status, media = r.status, r.content_type
        documented = op["responses"].get(str(status))
        assert documented is not None, f"{method} {template}: {status} is not documented: {body[:300]!r}"
        error = "$ref" in documented
        documented = resolve(self.doc, documented["$ref"]) if error else documented
        assert media in documented["content"], (method, template, status, media)
        if media != JSON:
            assert not error, (method, template, status)
            self.called.add((method.lower(), template))
            return status, body
        value = json.loads(body)
        schema = documented["content"][JSON]["schema"]
        problems = errors(self.doc, schema, value, exact=True)
        assert not problems, f"{method} {template} {status}: {problems}"
        if error:
            assert value["error"]["code"] == 4000 + status, value
        else:
            self.called.add((method.lower(), template))
        return status, value

    async def ok(self, method: str, template: str, params: dict[str, str | int] | None = None, **kw: Any) -> Any:
        """The call must succeed (a documented 2xx whose body matches its schema)."""
        status, value = await self.call(method, template, params, **kw)
        assert 200 <= status < 300, (method, template, status, value)
        return value


def operations(doc: dict[str, Any]) -> list[tuple[str, str]]:
    return [(method, path) for path, item in doc["paths"].items() for method in item]


@pytest.fixture
async def api(embedded_settings: Settings) -> AsyncIterator[Api]:
    async with serve(replace(embedded_settings, admins=(ADMIN,))) as node, aiohttp.ClientSession() as http:
        async with http.get(node.url + "/api/openapi.json") as r:
            assert r.status == 200
            doc = await r.json()
        client = Api(node, http, doc, {"admin": node.tokens.issue(ADMIN), "user": node.tokens.issue("alice")})
        # One key of alice's with every scope: it may call every route that is not the admin API's.
        key = await client.ok("POST", "/api/admin/apikeys", json_body={"principal": "alice", "scopes": list(SCOPES)})
        client.credentials |= {scope: key["key"] for scope in SCOPES}
        client.called.clear()
        yield client


async def test_the_served_document_is_the_checked_in_one(api: Api) -> None:
    """[R-HTTP-90] ``GET /api/openapi.json`` needs no credential and answers docs/openapi.json, byte for byte."""
    assert await api.ok("GET", "/api/openapi.json", auth=None) == json.loads(DOC.read_bytes())
    async with api.http.get(api.node.url + "/api/openapi.json") as answer:
        assert await answer.read() == DOC.read_bytes()


async def test_every_served_route_is_documented_and_every_operation_served(api: Api) -> None:
    """[R-HTTP-91] The node's router and the document name the same operations; only ``/ws`` (AsyncAPI) and the
    ``HEAD`` aiohttp adds to each ``GET`` are outside it."""
    served = {
        (route.method.lower(), route.resource.canonical)
        for route in api.node.runner.app.router.routes()
        if route.method != "HEAD" and route.resource is not None
    }
    assert served - {("get", "/ws")} == set(operations(api.doc))


async def test_every_operation_answers_valid_input_as_documented(api: Api) -> None:
    """[R-HTTP-92] A scenario calls every operation of the document with valid input; each answer is a documented
    2xx whose body matches the documented schema exactly (``Api.call``)."""
    user = api.credentials["user"]
    for path, item in api.doc["paths"].items():
        if item.get("get", {}).get("x-roost-auth") == "public":
            await api.ok("GET", path, auth=None)
    await api.ok("POST", "/api/login", json_body={"name": "carol"}, auth=None)
    await api.ok("POST", "/api/rooms", json_body={"room": "general"}, auth=user)
    bob = api.node.tokens.issue("bob")
    await api.ok("POST", "/api/rooms/{room}/join", {"room": "general"}, auth=bob)
    await api.ok("GET", "/api/rooms")
    sent = await api.ok(
        "POST", "/api/rooms/{room}/messages", {"room": "general"}, json_body={"cmid": "m1", "body": "hi"}
    )
    again = await api.ok(
        "POST", "/api/rooms/{room}/messages", {"room": "general"}, json_body={"cmid": "m1", "body": "hi"}
    )
    assert again["duplicate"] and again["message"] == sent["message"]
    system = {"cmid": "s1", "body": "deploy", "as": "system"}
    posted = await api.ok("POST", "/api/rooms/{room}/messages", {"room": "general"}, json_body=system)
    at = {"room": "general", "seq": sent["message"]["seq"]}
    await api.ok("POST", "/api/rooms/{room}/messages/{seq}/edit", at, json_body={"cmid": "e1", "body": "hi!"})
    await api.ok("POST", "/api/rooms/{room}/messages/{seq}/reactions", at, json_body={"emoji": "\N{THUMBS UP SIGN}"})
    await api.ok("DELETE", "/api/rooms/{room}/messages/{seq}/reactions/{emoji}", {**at, "emoji": "\N{THUMBS UP SIGN}"})
    await api.ok("GET", "/api/rooms/{room}/messages", {"room": "general"}, query={"after": "0", "limit": "10"})
    await api.ok("GET", "/api/messages", query={"room_id": "general", "last_sync_timestamp": "0"})
    synced = await api.ok("POST", "/api/sync", json_body={"rooms": {"general": 0, "no-such-room": 0}, "limit": 10})
    assert synced["rooms"]["no-such-room"]["error"]["code"] == 4404  # the ErrorAnswer branch, checked too
    await api.ok("POST", "/api/rooms/{room}/read", {"room": "general"}, json_body={"seq": 2})
    await api.ok("GET", "/api/rooms/{room}/receipts", {"room": "general"})
    await api.ok("PUT", "/api/rooms/{room}/notify", {"room": "general"}, json_body={"level": "mentions"})
    await api.ok("GET", "/api/search", query={"q": "deploy", "room": "general", "limit": "5"})
    upload = "/api/rooms/{room}/attachments"
    up = await api.ok("POST", upload, {"room": "general"}, raw=b"some notes", query={"name": "notes.txt"})
    await api.ok(
        "POST",
        "/api/rooms/{room}/messages",
        {"room": "general"},
        json_body={"cmid": "f1", "body": "", "attachments": [up["id"]]},
    )
    file = {"room": "general", "id": up["id"]}
    assert await api.ok("GET", upload + "/{id}", file) == b"some notes"
    link = await api.ok("GET", upload + "/{id}/link", file)
    assert link["thumb"] is None and link["url"].startswith("/api/rooms/general/attachments/")
    await api.ok("GET", "/api/rooms/{room}/members", {"room": "general"})
    await api.ok("POST", "/api/rooms", json_body={"room": "plans", "kind": "private"})
    plans = {"room": "plans"}
    await api.ok("POST", "/api/rooms/{room}/invite", plans, json_body={"user": "bob"})
    await api.ok("POST", "/api/rooms/{room}/join", plans, auth=bob)
    await api.ok("POST", "/api/rooms/{room}/role", plans, json_body={"user": "bob", "role": "admin"})
    await api.ok("POST", "/api/rooms/{room}/role", plans, json_body={"user": "bob", "role": "member"})
    await api.ok("POST", "/api/rooms/{room}/kick", plans, json_body={"user": "bob"})
    await api.ok("POST", "/api/rooms/{room}/ban", plans, json_body={"user": "bob"})
    await api.ok("POST", "/api/rooms/{room}/unban", plans, json_body={"user": "bob"})
    await api.ok("POST", "/api/rooms/{room}/members", plans, json_body={"user": "dave"})
    await api.ok("POST", "/api/dm", json_body={"user": "bob"})
    erin = api.node.tokens.issue("erin")
    await api.ok("POST", "/api/rooms/{room}/invite", plans, json_body={"user": "erin"})
    assert (await api.ok("GET", "/api/invites", auth=erin))["invites"] == [{"room": "plans", "by": "alice"}]
    await api.ok("POST", "/api/rooms/{room}/decline", plans, auth=erin)
    await api.ok("POST", "/api/rooms/{room}/invite", plans, json_body={"user": "erin"})
    await api.ok("DELETE", "/api/rooms/{room}/invites/{user}", {**plans, "user": "erin"})
    policy = {"max_messages": 1000, "max_age_s": None}
    await api.ok("PUT", "/api/rooms/{room}/retention", {"room": "general"}, json_body=policy)
    await api.ok("GET", "/api/rooms/{room}/retention", {"room": "general"})
    await api.ok("PUT", "/api/admin/rooms/{room}/retention", plans, json_body={"max_age_s": 86400})
    await api.ok("POST", "/api/rooms/{room}/leave", {"room": "general"}, auth=bob)
    await api.ok("DELETE", "/api/rooms/{room}/messages/{seq}", at, query={"cmid": "d1", "erase": "true"})
    await api.ok("GET", "/api/admin/rooms")
    await api.ok("GET", "/api/admin/rooms/{room}", plans)
    await api.ok("POST", "/api/admin/rooms/{room}/bans", plans, json_body={"user": "dave"})
    await api.ok("DELETE", "/api/admin/rooms/{room}/bans/{user}", {**plans, "user": "dave"})
    await api.ok(
        "DELETE", "/api/admin/rooms/{room}/messages/{seq}", {"room": "general", "seq": posted["message"]["seq"]}
    )
    await api.ok("POST", "/api/admin/users/{user}/revoke-tokens", {"user": "carol"})
    created = await api.ok("POST", "/api/admin/apikeys", json_body={"principal": "bot", "scopes": ["publish"]})
    await api.ok("GET", "/api/admin/apikeys")
    await api.ok("DELETE", "/api/admin/apikeys/{id}", {"id": created["id"]})
    # A consumer whose endpoint is a closed local port: it is created and managed, its deliveries only fail.
    hook = await api.ok("POST", "/api/consumers", json_body={"url": "http://127.0.0.1:9/hook", "rooms": "general"})
    await api.ok("GET", "/api/consumers")
    await api.ok("GET", "/api/consumers/{id}", {"id": hook["id"]})
    await api.ok("POST", "/api/consumers/{id}/rewind", {"id": hook["id"]}, json_body={"seq": 0, "room": "general"})
    await api.ok("POST", "/api/consumers/{id}/resume", {"id": hook["id"]})
    await api.ok("DELETE", "/api/consumers/{id}", {"id": hook["id"]})
    # A push device of alice's, registered, listed and deleted before anything is pushed to it.
    await api.ok("GET", "/api/push/vapid", auth=None)
    device = ec.generate_private_key(ec.SECP256R1()).public_key()
    p256dh = device.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    keys = {"p256dh": base64.urlsafe_b64encode(p256dh).decode(), "auth": base64.urlsafe_b64encode(b"0" * 16).decode()}
    browser = {"endpoint": "https://push.invalid/1", "keys": keys}
    push = await api.ok("POST", "/api/push/subscriptions", json_body=browser)
    await api.ok("GET", "/api/push/subscriptions")
    await api.ok("DELETE", "/api/push/subscriptions/{id}", {"id": push["id"]})
    assert api.called == set(operations(api.doc)), "the scenario leaves operations out"


def _kind(schema: dict[str, Any]) -> str:
    """The JSON type a request field takes (the first that is not null)."""
    if "anyOf" in schema:
        return next(_kind(s) for s in schema["anyOf"] if s.get("type") != "null")
    kind: str = schema["type"]
    return kind


_TYPED = {"string": "x", "integer": 1, "number": 1.5, "boolean": False, "array": [], "object": {}}
_WRONG = {"string": 12, "integer": "twelve", "number": "twelve", "boolean": "no", "array": {}, "object": []}


async def test_invalid_input_is_answered_with_a_documented_error(api: Api) -> None:
    """[R-HTTP-93] For every operation: no credential (401), malformed JSON, each field of the wrong type, each
    required field missing, a query number that is not one, an invalid room name in the path (400), an unknown
    room (404): each answer is a documented status of the operation with the error shape and the code matching
    the status."""
    await api.ok("POST", "/api/rooms", json_body={"room": "general"})
    await api.ok("POST", "/api/rooms/{room}/messages", {"room": "general"}, json_body={"cmid": "m", "body": "x"})
    valid = {"room": "general", "seq": 1, "user": "alice", "emoji": "x", "id": "k"}
    unknown = {**valid, "room": "no-such-room"}
    for method, path in operations(api.doc):
        op = api.operation(method, path)
        names = set(re.findall(r"\{(\w+)\}", path))
        params = {n: v for n, v in valid.items() if n in names}
        if op["x-roost-auth"] != "public":
            status, _ = await api.call(method, path, params, auth=None)
            assert status == 401, (method, path, status)
        body_schema = op.get("requestBody", {}).get("content", {}).get(JSON, {}).get("schema")
        if body_schema is not None:
            status, _ = await api.call(method, path, params, raw=b'{"room": "general",', auth=True)
            assert status == 400, (method, path, status)
            schema = resolve(api.doc, body_schema["$ref"])
            typed = {name: _TYPED[_kind(prop)] for name, prop in schema["properties"].items()}
            for name, prop in schema["properties"].items():
                wrong = {**typed, name: _WRONG[_kind(prop)]}
                status, answer = await api.call(method, path, params, json_body=wrong)
                assert status == 400 and f"$.{name}" in answer["error"]["reason"], (method, path, name, answer)
            for name in schema.get("required", []):
                missing = {k: v for k, v in typed.items() if k != name}
                status, answer = await api.call(method, path, params, json_body=missing)
                assert status == 400 and f"`{name}`" in answer["error"]["reason"], (method, path, name, answer)
        for param in op.get("parameters", []):
            if param["in"] == "query" and "integer" in json.dumps(param["schema"]):
                query = {"room_id": "general", param["name"]: "twelve"}
                status, _ = await api.call(method, path, params, query=query)
                assert status == 400, (method, path, param["name"], status)
        if "room" in names:
            body = {"user": "bob", "cmid": "c", "body": "x", "emoji": "x", "seq": 1, "role": "admin"}
            status, _ = await api.call(method, path, {n: unknown[n] for n in names}, json_body=body)
            assert status == 404, (method, path, status)
            status, _ = await api.call(method, path, {**params, "room": "not a room name!"}, json_body=body)
            assert status == 400, (method, path, status)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
async def test_random_requests_drawn_from_the_schemas_get_documented_answers(api: Api, data: st.DataObject) -> None:
    """[R-HTTP-92] [R-HTTP-93] Property: a request drawn from an operation's documented parameters and body
    schema (valid by the schema, or with its body mutated into any JSON at all) is answered with a documented
    status: a success matching its schema, or an error with the error shape; never a server error."""
    if ("post", "/api/rooms") not in api.called:  # once per node: a room and a message for requests to find
        await api.ok("POST", "/api/rooms", json_body={"room": "general"})
        await api.ok("POST", "/api/rooms/{room}/messages", {"room": "general"}, json_body={"cmid": "m", "body": "x"})
    method, path = data.draw(st.sampled_from(operations(api.doc)))
    op = api.operation(method, path)
    params: dict[str, str | int] = {}
    query: dict[str, str] = {}
    for param in op.get("parameters", []):
        drawn = values(api.doc, param["schema"])
        if param["name"] == "room" or param["name"] == "room_id":
            drawn = st.one_of(st.just("general"), drawn)
        if param["in"] == "path":  # the dot segments clients remove (the schema's description says so)
            drawn = drawn.filter(lambda v: v not in (".", ".."))
        if param["in"] == "path":
            params[param["name"]] = data.draw(drawn)
        elif param["required"] or data.draw(st.booleans()):
            value = data.draw(drawn)
            if value is not None:
                query[param["name"]] = str(value)
    body: Any = None
    schema = op.get("requestBody", {}).get("content", {}).get(JSON, {}).get("schema")
    if schema is not None:
        json_values = st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=10),
            lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
            max_leaves=6,
        )
        body = data.draw(st.one_of(values(api.doc, schema), json_values))
    status, value = await api.call(method, path, params, json_body=body, query=query)
    assert status < 500, (method, path, params, query, body, value)


async def test_rate_limits_are_documented_where_they_apply(embedded_settings: Settings) -> None:
    """[R-HTTP-93] With one send and one membership change a second, every operation called three times in a row
    (valid names, a room that exists) gets documented answers only, and 429 comes where the document says."""
    tight = with_limits(embedded_settings, sends_per_s=1.0, send_burst=1, membership_per_s=1.0, membership_burst=1)
    async with serve(replace(tight, admins=(ADMIN,))) as node, aiohttp.ClientSession() as http:
        doc = json.loads(DOC.read_bytes())
        api = Api(node, http, doc, {"admin": node.tokens.issue(ADMIN)})
        key = await api.ok("POST", "/api/admin/apikeys", json_body={"principal": "alice", "scopes": list(SCOPES)})
        api.credentials |= {scope: key["key"] for scope in SCOPES}
        await node.service.create_room("alice", "general")
        await node.service.send("alice", "general", "m", "x")
        params = {"room": "general", "seq": 2, "user": "bob", "emoji": "x", "id": "k"}
        body = {"room": "r", "user": "bob", "cmid": "c", "body": "x", "emoji": "x", "seq": 1, "role": "admin"}
        limited = set()
        for method, path in operations(doc):
            names = set(re.findall(r"\{(\w+)\}", path))
            for i in range(3):
                fresh = {**body, "room": f"r{i}", "cmid": f"c{i}"}
                status, _ = await api.call(method, path, {n: params[n] for n in names}, json_body=fresh)
                if status == 429:
                    limited.add((method, path))
        assert ("post", "/api/rooms/{room}/join") in limited and ("post", "/api/rooms/{room}/messages") in limited
