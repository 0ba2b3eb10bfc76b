"""The relation fold (roost.protocol.relations), sans-I/O: what an app that was offline shows."""

from __future__ import annotations

import json
import random

from hypothesis import given
from hypothesis import strategies as st

from roost.protocol.relations import (
    KIND_DELETED,
    DeleteContent,
    EditContent,
    ReactContent,
    Relations,
    Timeline,
    encode_content,
    fold,
    react_cmid,
    redact,
)
from roost.protocol.types import Message


class Room:
    """Builds a room's messages with dense seqs, as the server would store them."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    def add(self, sender: str, kind: str, body: str) -> int:
        seq = len(self.messages) + 1
        self.messages.append(Message("r", seq, f"c{seq}", sender, body, 1000 + seq, kind))
        return seq

    def text(self, sender: str, body: str) -> int:
        return self.add(sender, "text", body)

    def edit(self, sender: str, target: int, body: str) -> int:
        return self.add(sender, "edit", encode_content(EditContent(target, body)))

    def delete(self, sender: str, target: int) -> int:
        return self.add(sender, "delete", encode_content(DeleteContent(target)))

    def react(self, sender: str, target: int, emoji: str, remove: bool = False) -> int:
        return self.add(sender, "unreact" if remove else "react", encode_content(ReactContent(target, emoji)))


def test_the_fold_applies_edits_deletes_and_reactions() -> None:
    """[R-REL-7] The fold gives the final state: the latest own edit, deletions, reaction counts."""
    room = Room()
    room.add("alice", "join", "")
    a = room.text("alice", "helo")
    b = room.text("bob", "oops")
    room.edit("alice", a, "hallo")
    room.edit("alice", a, "hello")
    room.react("bob", a, "👍")
    room.react("carol", a, "👍")
    room.react("carol", a, "🎉")
    room.react("carol", a, "🎉", remove=True)
    room.delete("bob", b)
    view = fold(room.messages)
    assert [(f.seq, f.kind) for f in view] == [(1, "join"), (a, "text"), (b, KIND_DELETED)]
    first = view[1]
    assert (first.body, first.edited, first.deleted) == ("hello", True, False)
    assert first.counts == {"👍": 2} and first.reactions == {"👍": ("bob", "carol")}
    assert view[2].deleted and view[2].body == "" and view[2].reactions == {}


def test_the_order_of_arrival_does_not_matter_only_the_seqs() -> None:
    """[R-REL-7] Relations that arrive before their target, or in any order, fold by seq to the same state."""
    room = Room()
    a = room.text("alice", "one")
    room.edit("alice", a, "two")
    room.react("bob", a, "👍")
    room.react("bob", a, "👍", remove=True)
    room.edit("alice", a, "three")
    room.react("bob", a, "👍")
    expected = fold(room.messages)
    shuffled = list(room.messages)
    random.Random(5).shuffle(shuffled)
    assert fold(shuffled) == expected
    assert fold(list(reversed(room.messages))) == expected
    assert expected[0].body == "three" and expected[0].counts == {"👍": 1}


def test_a_deletion_is_final_and_edits_by_others_do_not_count() -> None:
    """[R-REL-7] A deletion is final (later edits are ignored) and only the sender's own edits count."""
    room = Room()
    a = room.text("alice", "mine")
    room.edit("mallory", a, "hijacked")  # the server refuses this; the fold does not trust that
    assert fold(room.messages)[0].body == "mine" and not fold(room.messages)[0].edited
    room.delete("alice", a)
    room.edit("alice", a, "after the delete")  # a race the server may lose: still deleted
    assert fold(room.messages)[0].deleted


def test_a_page_seen_twice_counts_once() -> None:
    room = Room()
    a = room.text("alice", "x")
    room.react("bob", a, "👍")
    room.react("bob", a, "👍", remove=True)
    timeline = Timeline().extend(room.messages).extend(room.messages)
    assert timeline.get(a) is not None and timeline.get(a).counts == {}  # type: ignore[union-attr]
    assert timeline.relations.reaction(a, "bob", "👍") == (False, 1)


def test_redact_hides_the_text_of_a_deleted_message_and_of_its_edits() -> None:
    room = Room()
    a = room.text("alice", "secret")
    e = room.edit("alice", a, "secret 2")
    other = room.text("alice", "kept")
    room.delete("alice", a)
    relations = Relations(keep_edits=False)
    for m in room.messages:
        relations.add(m)
    served = [redact(m, relations) for m in room.messages]
    assert served[a - 1].kind == KIND_DELETED and served[a - 1].body == ""
    assert json.loads(served[e - 1].body) == {"target": a, "body": ""}
    assert served[other - 1] == room.messages[other - 1]
    assert "secret" not in repr(served)
    assert fold(served)[0].deleted  # a tombstone folds the same as the original plus its delete


def test_unparseable_relation_bodies_are_ignored() -> None:
    room = Room()
    a = room.text("alice", "x")
    room.add("alice", "edit", "not json")
    room.add("alice", "delete", '{"target": "one"}')
    room.add("alice", "poke", '{"target": 1}')  # an unknown kind is shown, not applied
    view = fold(room.messages)
    assert view[0].body == "x" and not view[0].deleted and not view[0].edited
    assert [f.kind for f in view] == ["text", "poke"] and a == 1


def test_reaction_keys_fit_a_cmid_and_differ_by_generation() -> None:
    keys = {react_cmid(kind, 2**53, "👩‍👩‍👧‍👦", g) for kind in ("react", "unreact") for g in range(3)}
    assert len(keys) == 6 and all(len(k) <= 64 and k.isascii() and " " not in k for k in keys)


@given(st.lists(st.tuples(st.sampled_from(["bob", "carol"]), st.sampled_from(["👍", "🎉"]), st.booleans())))
def test_the_last_react_or_unreact_of_each_user_and_emoji_wins(ops: list[tuple[str, str, bool]]) -> None:
    """[R-REL-7] For each (sender, emoji) on a target the latest react/unreact counts."""
    room = Room()
    a = room.text("alice", "x")
    last: dict[tuple[str, str], bool] = {}
    for user, emoji, remove in ops:
        room.react(user, a, emoji, remove)
        last[(user, emoji)] = not remove
    expected: dict[str, int] = {}
    for (_, emoji), on in sorted(last.items()):
        if on:
            expected[emoji] = expected.get(emoji, 0) + 1
    assert fold(room.messages)[0].counts == dict(sorted(expected.items()))
