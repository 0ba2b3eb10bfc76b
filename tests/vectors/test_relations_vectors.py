"""tests/vectors/relations.json through both relation folds: roost.protocol.relations.Timeline and the
browser client's src/roost/web/relations.js (its Timeline, and Relations.add/.state the way app.js
folds a room), under Node. All three must show every case as the file says."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from roost.protocol.relations import Timeline
from roost.protocol.types import Message

from .js import run_js

CASES: list[dict[str, Any]] = json.loads((Path(__file__).parent / "relations.json").read_text(encoding="utf-8"))[
    "cases"
]
IDS = [f"{i}-{case['name'][:60]}" for i, case in enumerate(CASES)]


def run_python(case: dict[str, Any]) -> dict[str, Any]:
    messages = [Message("r", s, f"c{s}", sender, body, 1000 + s, kind) for s, sender, kind, body in case["messages"]]
    timeline = Timeline().extend(messages)
    view = [
        {
            "seq": f.seq,
            "kind": f.kind,
            "body": f.body,
            "edited": f.edited,
            "deleted": f.deleted,
            "reactions": [[emoji, list(users)] for emoji, users in f.reactions.items()],
        }
        for f in timeline.view()
    ]
    reaction = [list(timeline.relations.reaction(t, user, emoji)) for t, user, emoji in case.get("reaction", [])]
    return {"view": view, "reaction": reaction}


@pytest.fixture(scope="module")
def js_observed() -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = run_js({"relations": CASES})["relations"]
    return result


@pytest.mark.parametrize("index", range(len(CASES)), ids=IDS)
def test_python_fold_follows_the_vectors(index: int) -> None:
    case = CASES[index]
    seen = run_python(case)
    assert seen["view"] == case["view"]
    assert seen["reaction"] == case.get("reaction_is", [])


@pytest.mark.parametrize("index", range(len(CASES)), ids=IDS)
def test_js_fold_follows_the_vectors(index: int, js_observed: list[dict[str, Any]]) -> None:
    case, seen = CASES[index], js_observed[index]
    assert seen["view"] == case["view"], "Timeline"
    assert seen["reaction"] == case.get("reaction_is", []), "Relations.reaction"
    shown = [{key: row[key] for key in ("body", "edited", "deleted", "reactions")} for row in case["view"]]
    assert seen["shown"] == shown, "Relations.state, as app.js uses it"
