"""The per-user stream's pure parts (roost.protocol.inbox): names, mention syntax, event bodies and keys."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from roost.protocol.inbox import (
    Added,
    Invited,
    Mention,
    ReadUpTo,
    Removed,
    Uninvited,
    decode_event,
    encode_content,
    event_cmid,
    inbox_owner,
    inbox_room,
    is_inbox,
    mentions,
)
from roost.protocol.types import Message, valid_cmid, valid_room


def test_a_stream_is_named_outside_the_room_names() -> None:
    """A stream's name is ``~u:<user>``, which no ``create`` accepts; only names of valid users are streams."""
    assert inbox_room("alice") == "~u:alice" and not valid_room("~u:alice")
    assert inbox_owner("~u:alice") == "alice" and inbox_owner("~u:a@b.c") == "a@b.c"
    for other in ("lobby", "~u:", "~u:system", "~u:a b", "~roost-apikeys", "u:alice", "dm:alice:bob"):
        assert not is_inbox(other), other


@pytest.mark.parametrize(
    ("body", "names"),
    [
        ("@bob hi", ["bob"]),
        ("hi @bob", ["bob"]),
        ("hi @bob, @carol and @bob again", ["bob", "carol"]),
        ('(@bob) [@carol] "@dave"', ["bob", "carol", "dave"]),
        ("end of a sentence, @bob.", ["bob"]),
        ("@bob... or @bob.smith", ["bob", "bob.smith"]),
        ("@alice@example.com", ["alice@example.com"]),
        ("write to bob@example.com", []),
        ("email@bob", []),
        ("@ bob", []),
        ("@system and @", []),
        ("@" + "a" * 64, ["a" * 64]),
        ("@" + "a" * 65, []),
        ("no mention at all", []),
        ("@bob_1 @Bob-2", ["bob_1", "Bob-2"]),
        ("café@bob, naïve@carol", ["bob"]),
    ],
)
def test_the_mention_syntax(body: str, names: list[str]) -> None:
    """[R-INBOX-7] ``@name``: after the start or a character that cannot be in a name, the longest run of name
    characters without its trailing dots, when that is a valid user name; each name once, in order."""
    assert mentions(body, 20) == names


def test_at_most_limit_names_are_taken() -> None:
    """[R-INBOX-7] Past ``max_mentions`` distinct names the rest are not told; 0 tells nobody."""
    assert mentions("@a @b @a @c @d", 3) == ["a", "b", "c"]
    assert mentions("@a @b", 0) == []


@given(st.text(max_size=300))
def test_mentions_are_valid_distinct_user_names_of_the_body(body: str) -> None:
    names = mentions(body, 1000)
    assert len(names) == len(set(names))
    for name in names:
        assert f"@{name}" in body and inbox_owner(inbox_room(name)) == name


@pytest.mark.parametrize(
    ("kind", "content", "body"),
    [
        ("invited", Invited("plans", "alice"), {"room": "plans", "by": "alice"}),
        ("uninvited", Uninvited("plans", "bob", "declined"), {"room": "plans", "by": "bob", "reason": "declined"}),
        ("added", Added("dm:alice:bob", "alice", 2), {"room": "dm:alice:bob", "by": "alice", "seq": 2}),
        ("removed", Removed("r", "alice", "kick", 9), {"room": "r", "by": "alice", "how": "kick", "seq": 9}),
        ("mention", Mention("r", 12, "carol"), {"room": "r", "seq": 12, "sender": "carol"}),
        ("read", ReadUpTo("r", 40), {"room": "r", "seq": 40}),
    ],
)
def test_an_event_body_is_compact_json_and_decodes_to_its_type(kind: str, content: object, body: dict) -> None:  # type: ignore[type-arg]
    """Each kind's body is the documented object (fields in a fixed order, so a re-emission is byte-equal)."""
    encoded = encode_content(content)  # type: ignore[arg-type]
    assert json.loads(encoded) == body and list(json.loads(encoded)) == list(body) and " " not in encoded
    event = decode_event(Message("~u:bob", 3, "k", "system", encoded, 1000, kind))
    assert (event.seq, event.ts, event.kind, event.content) == (3, 1000, kind, content)


def test_an_unknown_kind_or_body_decodes_to_no_content() -> None:
    """A kind this version does not know (the stream may grow), or a body that does not parse, is not an error."""
    assert decode_event(Message("~u:bob", 1, "k", "system", "{}", 0, "future")).content is None
    assert decode_event(Message("~u:bob", 1, "k", "system", "not json", 0, "mention")).content is None


def test_event_keys_are_valid_cmids_and_name_their_cause() -> None:
    """[R-INBOX-9] A key is derived from the kind, the room and the cause: the same cause gives the same key (a
    retry stores once), another cause or room another key, within the 64 characters of a cmid."""
    long_room = "x" * 128
    keys = {event_cmid("mention", room, cause) for room in ("r", long_room) for cause in (1, 2**53, "a" * 32)}
    assert len(keys) == 6 and all(valid_cmid(k) for k in keys)
    assert event_cmid("read", "r", 5) == event_cmid("read", "r", 5) != event_cmid("mention", "r", 5)
    assert event_cmid("uninvited", long_room, "f" * 32).startswith("~uninvited-")
