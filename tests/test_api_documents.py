"""docs/openapi.json and docs/asyncapi.json: regenerated from the server's types, well formed, and in step with
the frames and the route table. (The running server is checked against the OpenAPI document in
tests/integration/test_api_contract.py.)"""

from __future__ import annotations

import json
import re
import typing
from pathlib import Path
from typing import Any

import msgspec
import pytest

from roost.gateway import openapi
from roost.gateway.routes import declared
from roost.protocol import asyncapi, frames, spec

from .schema_check import errors, refs, resolve
from .test_protocol_doc import _as_frame, _fenced_blocks

DOCS = Path(__file__).resolve().parents[1] / "docs"
OPENAPI = DOCS / "openapi.json"
ASYNCAPI = DOCS / "asyncapi.json"
METHODS = {"get", "post", "put", "delete", "patch", "head", "options"}


@pytest.fixture(scope="module")
def api() -> dict[str, Any]:
    return openapi.build()


@pytest.fixture(scope="module")
def wire() -> dict[str, Any]:
    return asyncapi.build()


def test_openapi_json_is_what_the_route_table_generates(api: dict[str, Any]) -> None:
    """[R-HTTP-90] docs/openapi.json is checked in; regenerating it from the route table gives the same bytes,
    and ``roost spec --openapi`` prints them."""
    assert OPENAPI.read_text(encoding="utf-8") == openapi.render(api), (
        "docs/openapi.json is stale: run scripts/gen_protocol_doc.py"
    )


def test_asyncapi_json_is_what_the_frames_generate(wire: dict[str, Any]) -> None:
    """[R-HTTP-95] docs/asyncapi.json is checked in; regenerating it from the frames gives the same bytes."""
    assert ASYNCAPI.read_text(encoding="utf-8") == asyncapi.render(wire), (
        "docs/asyncapi.json is stale: run scripts/gen_protocol_doc.py"
    )


@pytest.mark.parametrize(("flag", "path"), [("--openapi", OPENAPI), ("--asyncapi", ASYNCAPI)])
def test_roost_spec_prints_the_documents(capsys: pytest.CaptureFixture[str], flag: str, path: Path) -> None:
    from roost.cli import main

    main(["spec", flag])
    assert capsys.readouterr().out == path.read_text(encoding="utf-8")


def test_the_openapi_document_is_well_formed(api: dict[str, Any]) -> None:
    """[R-HTTP-94] OpenAPI 3.1.0; each operation has a unique operationId, responses, a schema for every
    answer, its path parameters declared; every ``$ref`` resolves; every error answer is the error shape of its
    code."""
    assert api["openapi"] == "3.1.0"
    assert {"title", "version"} <= set(api["info"])
    ids: list[str] = []
    for path, item in api["paths"].items():
        assert path.startswith("/") and set(item) <= METHODS, path
        for method, op in item.items():
            ids.append(op["operationId"])
            assert op["responses"], (method, path)
            template = set(re.findall(r"\{(\w+)\}", path))
            declared_path = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert declared_path == template, (method, path)
            for status, response in op["responses"].items():
                assert re.fullmatch(r"[1-5]\d\d", status), (method, path, status)
                error = "$ref" in response
                response = resolve(api, response["$ref"]) if error else response
                # One media type per answer, but a download's success: the file's type (several, one schema).
                assert response["description"] and response["content"], (method, path, status)
                assert len(response["content"]) == 1 or not error, (method, path, status)
                media = next(iter(response["content"].values()))
                if error:
                    assert response["description"].startswith(str(4000 + int(status))), (method, path, status)
                    assert media["schema"] == {"$ref": "#/components/schemas/ErrorAnswer"}, (method, path, status)
                else:  # a success; /readyz's 503 is its answer too (the same body, naming what fails)
                    assert int(status) < 400 or (path, status) == ("/readyz", "503"), (method, path, status)
            assert (op["security"] == []) == (op["x-roost-auth"] == "public"), (method, path)
    assert len(ids) == len(set(ids)), "operationIds repeat"
    for ref in refs(api):
        resolve(api, ref)


def test_every_declared_route_is_an_operation(api: dict[str, Any]) -> None:
    """[R-HTTP-91] The document holds exactly the routes the documented classes declare (the served ones are
    compared with the document on a running node, tests/integration/test_api_contract.py)."""
    routes = {(r.method.lower(), r.path) for cls in openapi.DOCUMENTED for r in declared(cls)}
    ops = {(method, path) for path, item in api["paths"].items() for method in item}
    assert routes == ops
    assert "/ws" not in api["paths"]


def test_the_asyncapi_document_has_one_message_per_frame(wire: dict[str, Any]) -> None:
    """[R-HTTP-95] AsyncAPI 3.0.0: a message per client and per server frame, whose payload is the frame's msgspec
    schema (as in docs/protocol.json); client frames are received, server frames sent; every ``$ref``
    resolves."""
    assert wire["asyncapi"] == "3.0.0"
    client: tuple[type[msgspec.Struct], ...] = typing.get_args(frames.ClientFrame)
    server: tuple[type[msgspec.Struct], ...] = typing.get_args(frames.ServerFrame)
    messages = wire["components"]["messages"]
    assert list(messages) == [c.__name__ for c in client + server]
    protocol = spec.build()["json_schema"]["$defs"]
    for cls in client + server:
        message = messages[cls.__name__]
        assert message["name"] == cls.__struct_config__.tag
        schema = resolve(wire, message["payload"]["$ref"])
        as_in_protocol_json = json.loads(json.dumps(schema).replace("#/components/schemas/", "#/$defs/"))
        assert as_in_protocol_json == protocol[cls.__name__]
    for operation, action, classes in (
        ("receiveClientFrames", "receive", client),
        ("sendServerFrames", "send", server),
    ):
        op = wire["operations"][operation]
        assert op["action"] == action
        assert [resolve(wire, m["$ref"]) for m in op["messages"]] == [
            {"$ref": f"#/components/messages/{c.__name__}"} for c in classes
        ]
    assert wire["channels"]["ws"]["address"] == "/ws"
    for ref in refs(wire):
        resolve(wire, ref)


def test_every_frame_example_of_the_protocol_doc_matches_the_asyncapi_schema(wire: dict[str, Any]) -> None:
    """[R-HTTP-95] Each frame written in a ```json or ```console block of docs/protocol.md matches the payload
    schema of a message with its ``type`` (client ``history`` and server ``history`` share a tag), field by field."""
    doc = (DOCS / "protocol.md").read_text(encoding="utf-8")
    by_tag: dict[str, list[dict[str, Any]]] = {}
    for message in wire["components"]["messages"].values():
        by_tag.setdefault(message["name"], []).append(message["payload"])
    checked = 0
    for info, line_no, lines in _fenced_blocks(doc):
        if info not in ("json", "console"):
            continue
        for line in lines:
            frame = _as_frame(line.removeprefix("> ").removeprefix("< "))
            if frame is None or not isinstance(frame.get("type"), str):
                continue
            schemas = by_tag.get(frame["type"])
            assert schemas, f"line {line_no}: no message for {frame['type']!r}"
            found = [errors(wire, s, frame, exact=True) for s in schemas]
            assert any(not e for e in found), f"block at line {line_no}: {line}: {found}"
            checked += 1
    assert checked > 50
