"""The browser client's MessagePack codec (src/roost/web/encoding.js over the vendored @msgpack/msgpack) under
Node, against the server's encoding (roost.protocol.encoding): tests/vectors/frames.json turned into MessagePack
gets the verdicts it gets as JSON, and the client's frames decode on the server as their JSON twins do."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import msgspec
import pytest

from roost.protocol import frames
from roost.protocol.encoding import JSON, MSGPACK

from .js import run_js

VECTORS: dict[str, Any] = json.loads((Path(__file__).parent / "frames.json").read_text(encoding="utf-8"))
FLOAT_LITERAL = re.compile(r"\d\.0\b|\de\d")


def _packed(objects: list[Any]) -> str | None:
    try:
        return base64.b64encode(msgspec.msgpack.encode(objects)).decode()
    except (UnicodeEncodeError, TypeError, OverflowError):  # a lone surrogate, a number MessagePack cannot hold
        return None


def _convertible(frame: str) -> Any:
    try:
        return json.loads(frame)
    except ValueError:
        return None


VALID = [(c["name"], json.loads(c["frame"]), c["type"]) for c in VECTORS["valid"]]
INVALID = [
    (c["name"], obj, c["frame"])
    for c in VECTORS["invalid"]
    if (obj := _convertible(c["frame"])) is not None and _packed([obj]) is not None
]
BATCHES = [([json.loads(p) for p in b["data"].split("\n") if p], b["types"]) for b in VECTORS["batches"]]
CLIENT = [
    frames.Auth(token="t"),
    frames.Subscribe(room="r", after=2**40, epoch=None, id="s"),
    frames.Send(room="r", cmid="c", body="hé \n 👍", id="1", reply_to=3, attachments=("a",)),
    frames.Read(room="r", seq=9),
    frames.History(room="r", before=10, limit=5),
]
NOT_MESSAGES = [
    base64.b64encode(msgspec.msgpack.encode({"type": "pong"})).decode(),  # a map, not an array of maps
    base64.b64encode(b"\xc1").decode(),  # not MessagePack
    base64.b64encode(msgspec.msgpack.encode([{"type": "pong"}]) + b"\x00").decode(),  # trailing bytes
]


@pytest.fixture(scope="module")
def js() -> dict[str, Any]:
    server = [_packed([obj]) for _, obj, _ in VALID] + [_packed([obj]) for _, obj, _ in INVALID]
    server += [_packed(objs) for objs, _ in BATCHES] + NOT_MESSAGES
    client = [JSON.encode(f).decode() for f in CLIENT]
    result: dict[str, Any] = run_js({"msgpack": {"server": server, "client": client}})["msgpack"]
    return result


def test_valid_frames_decode_from_messagepack_as_from_json(js: dict[str, Any]) -> None:
    """[R-WIRE-10] Every valid frame vector, as a MessagePack array of one map, is that frame for the browser
    client, with the same fields (and ``kind`` defaulted on messages, as from JSON)."""
    assert js["subprotocol"] == "roost.v1.msgpack"
    for (name, obj, kind), verdict, decoded in zip(VALID, js["server"], js["decoded"], strict=False):
        assert verdict == [kind], name
        expected = dict(obj)
        if kind == "msg":
            expected.setdefault("kind", "text")
        if kind == "history":
            expected["messages"] = [{"kind": "text", **m} for m in obj["messages"]]
        assert decoded == [expected], name


def test_invalid_frames_are_refused_from_messagepack_too(js: dict[str, Any]) -> None:
    """[R-WIRE-11] Every invalid frame vector that MessagePack can carry is refused as it is from JSON; the one gap
    is JSON's too where JavaScript cannot tell them apart: a float with an integral value passes as an integer."""
    verdicts = js["server"][len(VALID) : len(VALID) + len(INVALID)]
    assert len(INVALID) >= 30
    for (name, _, text), verdict in zip(INVALID, verdicts, strict=True):
        if FLOAT_LITERAL.search(text):
            continue
        assert len(verdict) == 1 and verdict[0].startswith("REFUSED"), (name, verdict)


def test_a_server_message_is_an_array_of_frames(js: dict[str, Any]) -> None:
    """[R-WIRE-10] A server message is one array of frames, decoded in order; a message that is not one array
    (a bare map, bytes that are not MessagePack, trailing bytes) is refused whole."""
    start = len(VALID) + len(INVALID)
    batches = js["server"][start : start + len(BATCHES)]
    assert batches == [types for _, types in BATCHES]
    refused = js["server"][start + len(BATCHES) :]
    assert len(refused) == len(NOT_MESSAGES) and all(isinstance(v, str) and v.startswith("REFUSED") for v in refused)


def test_the_browser_clients_frames_decode_on_the_server(js: dict[str, Any]) -> None:
    """[R-WIRE-10] What encoding.js encodes is, for the server, the frame its JSON twin is (absent fields left
    out, integers as integers up to 2**53)."""
    for frame, encoded in zip(CLIENT, js["client"], strict=True):
        data = base64.b64decode(encoded)
        assert MSGPACK.decode_client(data) == frame
        assert msgspec.msgpack.decode(data) == json.loads(JSON.encode(frame))
