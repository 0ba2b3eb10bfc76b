"""tests/vectors/inbox.json through both decoders of the user's event stream: roost.protocol.inbox.decode_event
(the Python SDK's ``InboxEvent``) and protocol.js ``inboxEvent`` (roost.js's ``inbox`` events), under Node.
Both must take the same fields from each message, and refuse the same bodies."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import pytest

from roost.protocol.inbox import decode_event
from roost.protocol.types import Message

from .js import run_js

CASES: list[dict[str, Any]] = json.loads((Path(__file__).parent / "inbox.json").read_text(encoding="utf-8"))["cases"]
IDS = [f"{i}-{case['kind']}" for i, case in enumerate(CASES)]


@pytest.fixture(scope="module")
def js_observed() -> list[dict[str, Any] | None]:
    result: list[dict[str, Any] | None] = run_js({"inbox": CASES})["inbox"]
    return result


@pytest.mark.parametrize("index", range(len(CASES)), ids=IDS)
def test_python_decodes_the_stream_as_the_vectors_say(index: int) -> None:
    case = CASES[index]
    event = decode_event(Message("~u:bob", 1, "k", "system", case["body"], 0, case["kind"]))
    assert (None if event.content is None else msgspec.structs.asdict(event.content)) == case["fields"]


@pytest.mark.parametrize("index", range(len(CASES)), ids=IDS)
def test_js_decodes_the_stream_as_the_vectors_say(index: int, js_observed: list[dict[str, Any] | None]) -> None:
    assert js_observed[index] == CASES[index]["fields"]
