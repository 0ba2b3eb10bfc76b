"""What each stored message does to the search index (roost.search.indexer.change_of), without an engine: texts,
rich texts, edits, deletions and erasures, and everything else."""

from __future__ import annotations

from roost.protocol.relations import DeleteContent, EditContent, ReactContent, encode_content
from roost.protocol.types import Message
from roost.search.indexer import change_of
from roost.search.port import Edit, Insert, Remove


def msg(seq: int, kind: str, body: str, sender: str = "alice") -> Message:
    return Message("r", seq, f"c{seq}", sender, body, 1_790_000_000_000 + seq, kind)


def test_each_kind_of_stored_message_does_what_readers_fold_it_to() -> None:
    """[R-SEARCH-7] A text (plain, or rich: a reply, a thread's reply, a text with mentions) is indexed by its text;
    an edit replaces its target's text, an erased edit (no text) does nothing; a delete removes the target, an
    erasing one says so; membership events, reactions and tombstones only move the cursor."""
    assert change_of(msg(1, "text", "hello")) == Insert(1, "alice", 1_790_000_000_001, "hello")
    rich = '{"body":"sure, @bob","reply_to":1,"thread":1,"mentions":["bob"],"future":{"x":1}}'
    assert change_of(msg(2, "rich", rich)) == Insert(2, "alice", 1_790_000_000_002, "sure, @bob")
    assert change_of(msg(3, "rich", "not json")) is None
    assert change_of(msg(4, "edit", encode_content(EditContent(1, "hello there")))) == Edit(1, "alice", "hello there")
    assert change_of(msg(5, "edit", '{"target":1,"body":"new","mentions":["bob"]}')) == Edit(1, "alice", "new")
    assert change_of(msg(6, "edit", encode_content(EditContent(1, "")))) is None
    assert change_of(msg(7, "delete", encode_content(DeleteContent(2)))) == Remove(2, False)
    assert change_of(msg(8, "delete", encode_content(DeleteContent(1, erase=True)))) == Remove(1, True)
    for kind, body in [("react", encode_content(ReactContent(1, "+1"))), ("join", ""), ("deleted", ""), ("x", "?")]:
        assert change_of(msg(9, kind, body)) is None
