"""tests/vectors/relations.json through both relation folds: roost.protocol.relations.Timeline and the
browser client's src/roost/web/relations.js (its Timeline, and Relations.add/.state the way app.js
folds a room), under Node. All three must show every case as the file says, and both Timelines count the same
unread messages and fold replies and threads the same way."""

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
            "reply_to": f.reply_to,
            "thread": f.thread,
            "replies": f.replies,
            "last_reply": f.last_reply,
            "last_reply_ts": f.last_reply_ts,
            "mentions": list(f.mentions),
            "mentions_room": f.mentions_room,
        }
        for f in timeline.view()
    ]
    reaction = [list(timeline.relations.reaction(t, user, emoji)) for t, user, emoji in case.get("reaction", [])]
    unread = [timeline.unread(read, user) for read, user in case.get("unread", [])]
    threads = [[f.seq for f in timeline.thread(root)] for root in case.get("thread", [])]
    mentioned = [timeline.mentioned(read, user) for read, user in case.get("mentioned", [])]
    return {"view": view, "reaction": reaction, "unread": unread, "thread": threads, "mentioned": mentioned}


def as_expected(view: list[dict[str, Any]], expected: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows of ``view`` on the keys each expected row has (the older cases predate replies and threads)."""
    return [{key: row.get(key) for key in want} for row, want in zip(view, expected, strict=False)] + view[
        len(expected) :
    ]


@pytest.fixture(scope="module")
def js_observed() -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = run_js({"relations": CASES})["relations"]
    return result


@pytest.mark.parametrize("index", range(len(CASES)), ids=IDS)
def test_python_fold_follows_the_vectors(index: int) -> None:
    """[R-CLIENT-72] [R-THREAD-7] [R-CLIENT-75] The Python Timeline: the fold, the unread and mention counts, a
    thread's messages."""
    case = CASES[index]
    seen = run_python(case)
    assert as_expected(seen["view"], case["view"]) == case["view"]
    assert seen["reaction"] == case.get("reaction_is", [])
    assert seen["unread"] == case.get("unread_is", [])
    assert seen["thread"] == case.get("thread_is", [])
    assert seen["mentioned"] == case.get("mentioned_is", [])


@pytest.mark.parametrize("index", range(len(CASES)), ids=IDS)
def test_js_fold_follows_the_vectors(index: int, js_observed: list[dict[str, Any]]) -> None:
    """[R-CLIENT-72] [R-THREAD-7] [R-CLIENT-75] relations.js's Timeline: the same fold, counts and threads."""
    case, seen = CASES[index], js_observed[index]
    assert as_expected(seen["view"], case["view"]) == case["view"], "Timeline"
    assert seen["reaction"] == case.get("reaction_is", []), "Relations.reaction"
    assert seen["unread"] == case.get("unread_is", []), "Timeline.unread"
    assert seen["thread"] == case.get("thread_is", []), "Timeline.thread"
    assert seen["mentioned"] == case.get("mentioned_is", []), "Timeline.mentioned"
    shown = [{key: row[key] for key in ("body", "edited", "deleted", "reactions")} for row in case["view"]]
    assert seen["shown"] == shown, "Relations.state, as app.js uses it"
