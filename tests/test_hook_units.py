"""Durable consumers' pure parts, without sockets: the signature, the filters, the retry delays, the stored
forms of records, statuses and cursors (roost.hooks)."""

from __future__ import annotations

import hashlib
import hmac
import random

import msgspec
import pytest

from roost.hooks import backoff, signing
from roost.hooks.filters import DEFAULT_KINDS, EVENTS, Filter, event_class
from roost.hooks.registry import Cursor, Record, Rewind, Status, decode_cursor, encode_cursor
from roost.protocol import relations, types
from roost.protocol.relations import KIND_DELETE, KIND_DELETED, KIND_EDIT, KIND_REACT, KIND_UNREACT
from roost.protocol.types import (
    KIND_BAN,
    KIND_INVITE,
    KIND_JOIN,
    KIND_KICK,
    KIND_LEAVE,
    KIND_ROLE,
    KIND_TEXT,
    KIND_UNBAN,
)

BODY = b'{"consumer":"c1","room":"general","seq":3}'


def test_a_signature_is_the_hmac_of_the_timestamp_and_the_raw_body() -> None:
    """[R-HOOK-3] ``Roost-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, f"{t}." + body)>``, which
    ``verify`` accepts within its tolerance."""
    header = signing.sign("s3cret", BODY, timestamp=1_700_000_000)
    expected = hmac.new(b"s3cret", b"1700000000." + BODY, hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={expected}"
    assert signing.verify("s3cret", header, BODY, now=1_700_000_100)


@pytest.mark.parametrize(
    ("secret", "body", "now"),
    [
        ("s3cret", BODY.replace(b"3}", b"4}"), 1_700_000_000),  # a tampered body
        ("wrong", BODY, 1_700_000_000),  # the wrong secret
        ("s3cret", BODY, 1_700_000_301),  # older than the tolerance (300 s)
        ("s3cret", BODY, 1_699_999_699),  # from the future beyond it
    ],
    ids=["tampered-body", "wrong-secret", "too-old", "too-new"],
)
def test_verify_refuses_a_tampered_body_a_wrong_secret_and_an_old_timestamp(secret: str, body: bytes, now: int) -> None:
    """[R-HOOK-3] A receiver's check fails for any change of the body, another secret, or a timestamp more than
    the tolerance away from its clock (a replayed capture)."""
    header = signing.sign("s3cret", BODY, timestamp=1_700_000_000)
    assert not signing.verify(secret, header, body, now=now)


@pytest.mark.parametrize(
    "header",
    ["", "t=abc,v1=00", "v1=00", "t=1700000000", "t=1700000000,v1", "garbage"],
)
def test_verify_refuses_malformed_headers(header: str) -> None:
    assert not signing.verify("s3cret", header, BODY, now=1_700_000_000)


def test_verify_accepts_any_matching_v1_value() -> None:
    """Room for a secret rotation: a header may carry several ``v1`` values; one matching is enough."""
    good = signing.signature("s3cret", 1_700_000_000, BODY)
    assert signing.verify("s3cret", f"t=1700000000,v1={'0' * 64},v1={good}", BODY, now=1_700_000_000)


def test_event_classes_cover_every_kind_the_server_stores() -> None:
    """[R-HOOK-2] text (and its tombstone) -> messages; edit -> edits; delete -> deletes; react/unreact ->
    reactions; every membership kind -> membership; a kind this server does not know -> none (skipped)."""
    assert {k: event_class(k) for k in (KIND_TEXT, KIND_DELETED, KIND_EDIT, KIND_DELETE, KIND_REACT, KIND_UNREACT)} == {
        KIND_TEXT: "messages",
        KIND_DELETED: "messages",
        KIND_EDIT: "edits",
        KIND_DELETE: "deletes",
        KIND_REACT: "reactions",
        KIND_UNREACT: "reactions",
    }
    for kind in (KIND_JOIN, KIND_LEAVE, KIND_INVITE, KIND_KICK, KIND_BAN, KIND_UNBAN, KIND_ROLE):
        assert event_class(kind) == "membership"
    assert event_class("poll") is None
    # Every kind the server defines has a class: a new kind cannot be skipped by every consumer unnoticed.
    defined = {v for m in (types, relations) for k, v in vars(m).items() if k.startswith("KIND_")}
    assert defined and all(event_class(kind) is not None for kind in defined), defined


def test_filters_match_rooms_by_glob_and_kind_and_events_by_class() -> None:
    """[R-HOOK-2] Rooms by an fnmatch glob (case-sensitive) and kind, direct conversations only when asked;
    events by class."""
    default = Filter()
    assert default.kinds == DEFAULT_KINDS == ("public", "private") and default.events == EVENTS
    assert default.room("general", "public") and default.room("plans", "private")
    assert not default.room("dm:alice:bob", "direct")
    ops = Filter(rooms="ops-*", kinds=("public", "direct"), events=("messages", "deletes"))
    assert ops.room("ops-alerts", "public") and ops.room("ops-x", "direct")
    assert not ops.room("Ops-alerts", "public") and not ops.room("ops-alerts", "private")
    assert not ops.room("general", "public")
    assert ops.event(KIND_TEXT) and ops.event(KIND_DELETE) and ops.event(KIND_DELETED)
    assert not ops.event(KIND_EDIT) and not ops.event(KIND_REACT) and not ops.event(KIND_JOIN)
    assert not ops.event("poll")
    assert Filter(rooms="room-[ab]?").room_named("room-a1") and not Filter(rooms="room-[ab]?").room_named("room-c1")


def test_backoff_doubles_from_the_initial_wait_up_to_the_cap_with_jitter() -> None:
    """[R-HOOK-5] The wait after the n-th consecutive failure is drawn from [d/2, d], d = initial * 2**(n-1)
    capped."""
    rand = random.Random(7)
    for failures, step in [(1, 0.5), (2, 1.0), (3, 2.0), (6, 16.0), (7, 30.0), (50, 30.0), (10_000, 30.0)]:
        waits = [backoff.delay(failures, 0.5, 30.0, rand) for _ in range(200)]
        assert all(step / 2 <= w <= step for w in waits), (failures, min(waits), max(waits))
        assert max(waits) - min(waits) > step / 4  # jitter: not all the same


def test_records_statuses_and_cursors_round_trip_through_their_stored_forms() -> None:
    """What registry.py writes as Directory attributes reads back the same; a bare seq (no epoch) is a cursor
    whose epoch is not known; anything else is no cursor."""
    record = Record(
        url="https://hooks.example.test/roost",
        secret="s",
        rooms="ops-*",
        kinds=("public",),
        events=("messages",),
        start=4,
        after=4,
        owner="bot",
        key="0123456789abcdef",
        by="bot",
        created_at=1,
        max_failures=3,
        resume="r1",
        rewind=Rewind("w1", 2, "ops-a"),
    )
    raw = msgspec.json.encode(record)
    assert msgspec.json.decode(raw, type=Record) == record
    assert b'"secret":"s"' in raw  # kept: every delivery is signed with it (docs/security.md)
    status = Status(state="paused", failures=3, last_error="HTTP 500", holder="n@h:1", token=9, lag=12)
    assert msgspec.json.decode(msgspec.json.encode(status), type=Status) == status
    assert decode_cursor(encode_cursor(Cursor(17, "e1"))) == Cursor(17, "e1")
    assert encode_cursor(Cursor(5, "")) == "5" and decode_cursor("5") == Cursor(5, "")
    assert decode_cursor("x y") is None
