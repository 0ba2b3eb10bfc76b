"""Tests for the wire frames (roost.protocol.frames) and the stable codes (roost.protocol.codes)."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from roost.protocol import frames
from roost.protocol.codes import Code
from roost.protocol.errors import ProtocolError
from roost.protocol.frames import (
    Ack,
    Auth,
    ClientFrame,
    Create,
    Error,
    History,
    HistoryPage,
    Join,
    Leave,
    Live,
    Ok,
    Ping,
    Pong,
    Send,
    Subscribe,
    Subscribed,
    Typing,
    TypingEvent,
    Unsubscribe,
    Welcome,
    decode_client,
    decode_server,
    encode,
    split,
)
from roost.protocol.types import Message, Position

CLIENT_TAGS = {
    Auth: "auth",
    Create: "create",
    Join: "join",
    Leave: "leave",
    Subscribe: "subscribe",
    Unsubscribe: "unsubscribe",
    Send: "send",
    History: "history",
    Ping: "ping",
    Typing: "typing",
    frames.Read: "read",
    frames.Dm: "dm",
    frames.Invite: "invite",
    frames.Kick: "kick",
    frames.Ban: "ban",
    frames.Unban: "unban",
    frames.Role: "role",
    frames.Edit: "edit",
    frames.Delete: "delete",
    frames.React: "react",
    frames.Uninvite: "uninvite",
    frames.Decline: "decline",
}

CLIENT_FRAMES: list[ClientFrame] = [
    Auth("tok"),
    Auth("tok", id="a1"),
    Create("room-1"),
    Create("room-1", id="c1"),
    Join("room-1"),
    Join("room-1", id="j1"),
    Leave("room-1", id="l1"),
    Subscribe("room-1"),
    Subscribe("room-1", after=0, epoch="e1", id="s1"),
    Subscribe("room-1", after=42),
    Unsubscribe("room-1", id="u1"),
    Send("room-1", "cmid-1", "hello\nworld \u00e9\U0001f600", id="x1"),
    Send("room-1", "cmid-2", ""),
    History("room-1"),
    History("room-1", after=10, limit=5, id="h1"),
    History("room-1", before=100, limit=1),
    Ping(),
    Ping(id="p1"),
    Typing("room-1"),
    frames.Read("room-1", 7, id="r1"),
    Create("room-2", kind="private", id="c2"),
    frames.Dm("bob", id="d1"),
    frames.Invite("room-1", "bob", id="i1"),
    frames.Kick("room-1", "bob"),
    frames.Ban("room-1", "bob", id="b1"),
    frames.Unban("room-1", "bob", id="n1"),
    frames.Role("room-1", "bob", "admin", id="o1"),
    frames.Edit("room-1", 7, "new text \U0001f600", "e-1", id="e1"),
    frames.Delete("room-1", 7, id="d1"),
    frames.Delete("room-1", 7, cmid="d-1"),
    frames.React("room-1", 7, "\U0001f44d", id="x1"),
    frames.React("room-1", 7, "\U0001f44d", remove=True),
    frames.Uninvite("room-1", "bob", id="v1"),
    frames.Decline("room-1", id="n2"),
]

MESSAGE = Message(room="room-1", seq=7, cmid="cmid-1", sender="alice", body="hi\nthere", ts=1_700_000_000_000)

SERVER_FRAMES: list[frames.ServerFrame] = [
    Welcome("alice", "sess-1", 4096, 65536),
    Welcome("alice", "sess-1", 4096, 65536, ref="a1", inbox="~u:alice"),
    Ok("r1", "room-1"),
    Ok(None, "room-1"),
    Subscribed("s1", "room-1", "e1", 12, 10),
    Live("room-1", 12),
    Ack("x1", "room-1", "cmid-1", 13, 1_700_000_000_000, False),
    Ack(None, "room-1", "cmid-1", 13, 1_700_000_000_000, True),
    HistoryPage("h1", "room-1", [MESSAGE], True, "e1", 12, 1),
    Pong("p1"),
    Pong(),
    TypingEvent("room-1", "bob"),
    frames.PresenceEvent("room-1", "bob", "online"),
    frames.Receipt("room-1", "bob", 7),
    Error(int(Code.RATE_LIMITED), "slow down", ref="x1", retry_after_s=0.5),
    frames.position_error(Code.RESYNC_REQUIRED, "trimmed", "room-1", Position("e1", 20, 5), "s1"),
    MESSAGE,
]


def bad_frame(data: bytes | str) -> ProtocolError:
    """decode_client(data) must raise ProtocolError(BAD_FRAME); nothing else may escape."""
    with pytest.raises(ProtocolError) as info:
        decode_client(data)
    assert info.value.code is Code.BAD_FRAME
    assert info.value.reason
    return info.value


# ---- client frames: round trip ------------------------------------------------------------------


@pytest.mark.parametrize("frame", CLIENT_FRAMES, ids=repr)
def test_client_frame_round_trips(frame: ClientFrame) -> None:
    """encode() then decode_client() gives back an equal frame, from bytes and from str."""
    data = encode(frame)
    assert decode_client(data) == frame
    assert decode_client(data.decode()) == frame


@pytest.mark.parametrize("frame", CLIENT_FRAMES, ids=repr)
def test_client_frame_is_a_tagged_json_object(frame: ClientFrame) -> None:
    """Each frame is one JSON object tagged by ``type``; defaults are omitted."""
    obj = json.loads(encode(frame))
    assert obj["type"] == CLIENT_TAGS[type(frame)]
    assert "id" not in obj or obj["id"] is not None
    assert b"\n" not in encode(frame)


def test_every_client_frame_type_is_covered() -> None:
    """The round-trip table above covers the whole ClientFrame union."""
    assert set(CLIENT_TAGS) == set(ClientFrame.__args__)  # type: ignore[attr-defined]
    assert {type(f) for f in CLIENT_FRAMES} == set(CLIENT_TAGS)


def test_decode_fills_defaults() -> None:
    """Optional fields may be left out by the client."""
    assert decode_client(b'{"type":"history","room":"r"}') == History("r", after=None, before=None, limit=50)
    assert decode_client(b'{"type":"subscribe","room":"r"}') == Subscribe("r")
    assert decode_client(b'{"type":"ping"}') == Ping()
    assert decode_client(b'{"type":"delete","room":"r","target":3}') == frames.Delete("r", 3, cmid=None)
    assert decode_client(b'{"type":"react","room":"r","target":3,"emoji":"x"}') == frames.React("r", 3, "x", False)


@pytest.mark.parametrize(
    "data",
    [
        b'{"type":"edit","room":"r","target":3,"body":"no cmid"}',
        b'{"type":"edit","room":"r","target":"3","body":"b","cmid":"c"}',
        b'{"type":"delete","room":"r"}',
        b'{"type":"delete","room":"r","target":1.5}',
        b'{"type":"react","room":"r","target":3}',
        b'{"type":"react","room":"r","target":3,"emoji":"x","remove":"yes"}',
    ],
    ids=repr,
)
def test_relation_frames_with_missing_or_mistyped_fields_are_bad_frames(data: bytes) -> None:
    bad_frame(data)


def test_unknown_fields_are_ignored() -> None:
    """[R-WIRE-4] Extra fields are skipped (forward compatibility), not an error."""
    assert decode_client(b'{"type":"join","room":"r","later":[1,{"a":null}]}') == Join("r")


st_text = st.text(max_size=20)
st_id = st.none() | st_text
st_seq = st.none() | st.integers(0, 2**63 - 1)

CLIENT_FRAME_STRATEGY: st.SearchStrategy[ClientFrame] = st.one_of(
    st.builds(Auth, token=st_text, id=st_id),
    st.builds(Create, room=st_text, id=st_id),
    st.builds(Join, room=st_text, id=st_id),
    st.builds(Leave, room=st_text, id=st_id),
    st.builds(Subscribe, room=st_text, after=st_seq, epoch=st.none() | st_text, id=st_id),
    st.builds(Unsubscribe, room=st_text, id=st_id),
    st.builds(Send, room=st_text, cmid=st_text, body=st.text(), id=st_id),
    st.builds(History, room=st_text, after=st_seq, before=st_seq, limit=st.integers(0, 1000), id=st_id),
    st.builds(Ping, id=st_id),
    st.builds(Typing, room=st_text),
    st.builds(frames.Read, room=st_text, seq=st.integers(0, 2**53), id=st_id),
    st.builds(frames.Edit, room=st_text, target=st.integers(0, 2**53), body=st.text(), cmid=st_text, id=st_id),
    st.builds(frames.Delete, room=st_text, target=st.integers(0, 2**53), cmid=st.none() | st_text, id=st_id),
    st.builds(frames.React, room=st_text, target=st.integers(0, 2**53), emoji=st_text, remove=st.booleans(), id=st_id),
)


@given(CLIENT_FRAME_STRATEGY)
def test_any_client_frame_round_trips(frame: ClientFrame) -> None:
    """Round trip for arbitrary field values (any text, newlines and non-ASCII included)."""
    data = encode(frame)
    assert b"\n" not in data
    assert decode_client(data) == frame


# ---- client frames: bad input -------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"{",
        b"not json",
        b'{"type":"ping"',
        b'{"type":"ping"} trailing',
        b'{"type":"ping"}\n{"type":"ping"}',
        b"{'type': 'ping'}",
        b'{"type":"ping",}',
        "",
        "{",
    ],
    ids=repr,
)
def test_malformed_json_is_bad_frame(data: bytes | str) -> None:
    """Malformed JSON (including two objects in one client frame) is BAD_FRAME."""
    bad_frame(data)


@pytest.mark.parametrize(
    "data",
    [
        b'{"type":"nope"}',
        b'{"type":"PING"}',
        b'{"type":""}',
        b'{"type":null}',
        b'{"type":1}',
        b'{"room":"r"}',
        b"{}",
        b'{"type":"welcome","user":"u","session":"s","max_body_bytes":1,"max_frame_bytes":1}',
        b'{"type":"msg","room":"r","seq":1,"cmid":"c","sender":"u","body":"b","ts":1}',
        b'{"type":"ack","ref":null,"room":"r","cmid":"c","seq":1,"ts":1,"dup":false}',
    ],
    ids=repr,
)
def test_unknown_or_missing_type_is_bad_frame(data: bytes) -> None:
    """An unknown type, a missing type, or a server-only type sent by a client is BAD_FRAME."""
    bad_frame(data)


@pytest.mark.parametrize(
    "data",
    [
        b'{"type":"auth"}',
        b'{"type":"join"}',
        b'{"type":"send","room":"r","cmid":"c"}',
        b'{"type":"send","room":"r","body":"b"}',
        b'{"type":"subscribe"}',
        b'{"type":"typing"}',
    ],
    ids=repr,
)
def test_missing_field_is_bad_frame(data: bytes) -> None:
    """A missing required field is BAD_FRAME, and the reason names it."""
    error = bad_frame(data)
    assert "missing" in error.reason.lower()


@pytest.mark.parametrize(
    "data",
    [
        b'{"type":"join","room":5}',
        b'{"type":"join","room":null}',
        b'{"type":"join","room":["r"]}',
        b'{"type":"auth","token":{"t":1}}',
        b'{"type":"history","room":"r","limit":"10"}',
        b'{"type":"history","room":"r","limit":true}',
        b'{"type":"history","room":"r","limit":1.5}',
        b'{"type":"history","room":"r","after":1e400}',
        b'{"type":"subscribe","room":"r","after":"1"}',
        b'{"type":"subscribe","room":"r","epoch":3}',
        b'{"type":"send","room":"r","cmid":"c","body":false}',
        b'{"type":"ping","id":7}',
    ],
    ids=repr,
)
def test_wrong_field_type_is_bad_frame(data: bytes) -> None:
    """A mistyped field is BAD_FRAME."""
    bad_frame(data)


@pytest.mark.parametrize("data", [b"[]", b'[{"type":"ping"}]', b'"ping"', b"1", b"-0.5", b"null", b"true"], ids=repr)
def test_non_object_json_is_bad_frame(data: bytes) -> None:
    """[R-WIRE-2] A frame must be a JSON object."""
    bad_frame(data)


@pytest.mark.parametrize(
    "data",
    [b"\xff\xfe\x00", b"\x00" * 16, b"\x80abc", b'{"type":"join","room":"\xc3"}', bytes(range(256))],
    ids=repr,
)
def test_binary_junk_is_bad_frame(data: bytes) -> None:
    """Bytes that are not UTF-8 JSON are BAD_FRAME."""
    bad_frame(data)


@pytest.mark.parametrize("data", ["\ud800", '{"type":"join","room":"\udc00"}', '"\udfff"'], ids=ascii)
def test_unencodable_str_is_bad_frame(data: str) -> None:
    """A str with lone surrogates cannot be UTF-8: BAD_FRAME, not a UnicodeEncodeError."""
    bad_frame(data)


@pytest.mark.parametrize("opener", [b"[", b'{"a":'], ids=repr)
def test_deep_nesting_is_bad_frame(opener: bytes) -> None:
    """A deeply nested (ignored) field well under the frame size limit is BAD_FRAME, not a RecursionError."""
    depth = 10_000
    closer = b"]" if opener == b"[" else b"}"
    data = b'{"type":"ping","x":' + opener * depth + b"1" + closer * depth + b"}"
    assert len(data) < 64 * 1024
    bad_frame(data)


def decodes_or_bad_frame(data: bytes | str) -> None:
    """The contract for any input: a ClientFrame, or ProtocolError(BAD_FRAME); never anything else."""
    try:
        frame = decode_client(data)
    except ProtocolError as exc:
        assert exc.code is Code.BAD_FRAME
    else:
        assert isinstance(frame, tuple(CLIENT_TAGS))


@settings(max_examples=500)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_escape(data: bytes) -> None:
    """Any bytes: a frame or BAD_FRAME."""
    decodes_or_bad_frame(data)


@settings(max_examples=300)
@given(st.text(alphabet=st.characters(exclude_categories=()), max_size=100))
def test_arbitrary_text_never_escapes(data: str) -> None:
    """Any str, lone surrogates included: a frame or BAD_FRAME."""
    decodes_or_bad_frame(data)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
FIELDS = ["token", "room", "after", "before", "epoch", "limit", "id", "cmid", "body"]


@st.composite
def frame_like(draw: st.DrawFn) -> Any:
    """JSON objects with a real or random ``type`` and real field names holding values of any JSON type."""
    obj = draw(st.dictionaries(st.sampled_from(FIELDS), json_values | st.text(max_size=10), max_size=6))
    obj["type"] = draw(st.sampled_from(sorted(CLIENT_TAGS.values())) | json_values)
    return obj


@settings(max_examples=500)
@given(json_values | frame_like())
def test_arbitrary_json_never_escapes(value: Any) -> None:
    """Any JSON value, and frame-shaped objects with mistyped fields: a frame or BAD_FRAME."""
    decodes_or_bad_frame(json.dumps(value))
    decodes_or_bad_frame(json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass"))


# ---- server frames and split() ------------------------------------------------------------------


def test_encode_message_is_a_msg_frame() -> None:
    """A stored Message encodes as-is to the ``msg`` frame, with every field."""
    obj = json.loads(encode(MESSAGE))
    assert obj == {
        "type": "msg",
        "room": "room-1",
        "seq": 7,
        "cmid": "cmid-1",
        "sender": "alice",
        "body": "hi\nthere",
        "ts": 1_700_000_000_000,
        "kind": "text",
    }
    assert decode_server(encode(MESSAGE)) == MESSAGE


@pytest.mark.parametrize("frame", SERVER_FRAMES, ids=repr)
def test_server_frame_round_trips(frame: frames.ServerFrame) -> None:
    """Every server frame decodes back to itself on the client side."""
    assert decode_server(encode(frame)) == frame


def test_split_batched_server_frame() -> None:
    """A batch of server frames joined by newlines splits back into the same frames, in order."""
    batch = b"\n".join(encode(f) for f in SERVER_FRAMES)
    parts = split(batch)
    assert len(parts) == len(SERVER_FRAMES)
    assert [decode_server(p) for p in parts] == SERVER_FRAMES


def test_split_accepts_str_and_skips_empty_parts() -> None:
    """split() takes str too, and ignores empty lines (a trailing newline, an empty frame)."""
    ping, pong = encode(Ping()), encode(Pong("p"))
    assert split((ping + b"\n" + pong).decode()) == [ping, pong]
    assert split(ping + b"\n\n" + pong + b"\n") == [ping, pong]
    assert split(ping) == [ping]
    assert split(b"") == []
    assert split("") == []


@given(st.lists(st.builds(Message, st_text, st.integers(1, 2**62), st_text, st_text, st.text(), st.integers(0))))
def test_split_recovers_any_batch_of_messages(messages: list[Message]) -> None:
    """[R-WIRE-3] Message bodies may hold newlines; encoded JSON never does, so a batch always splits cleanly."""
    batch = b"\n".join(encode(m) for m in messages)
    assert [decode_server(p) for p in split(batch)] == messages


def test_decode_server_bad_input_is_bad_frame() -> None:
    """decode_server() reports bad input as ProtocolError(BAD_FRAME) too."""
    for data in (b"{", b'{"type":"nope"}', b'{"type":"live","room":"r"}', b"[]"):
        with pytest.raises(ProtocolError) as info:
            decode_server(data)
        assert info.value.code is Code.BAD_FRAME


def test_ack_dup_is_required_on_the_wire() -> None:
    """``dup`` is always sent, false included, so a client never has to guess it."""
    ack = Ack("x", "r", "c", 1, 2, False)
    assert json.loads(encode(ack))["dup"] is False
    with pytest.raises(ProtocolError):
        decode_server(b'{"type":"ack","ref":"x","room":"r","cmid":"c","seq":1,"ts":2}')


def test_position_error_carries_the_position() -> None:
    """A resync error frame says where the room stands, so the client can restart from ``first - 1``."""
    error = frames.position_error(Code.RESYNC_REQUIRED, "gone", "r", Position("e2", 30, 11), "s1")
    obj = json.loads(encode(error))
    assert obj == {
        "type": "error",
        "code": 4410,
        "reason": "gone",
        "ref": "s1",
        "room": "r",
        "epoch": "e2",
        "head": 30,
        "first": 11,
    }


def test_frames_are_msgspec_structs() -> None:
    """Frames are immutable structs (safe to share across sessions)."""
    with pytest.raises(AttributeError):
        Ping().id = "x"  # type: ignore[misc]
    assert isinstance(Ping(), msgspec.Struct)


# ---- codes --------------------------------------------------------------------------------------


@pytest.mark.parametrize("code", list(Code), ids=lambda c: c.name)
def test_code_retryable_follows_the_range_rule(code: Code) -> None:
    """[R-CODE-2] 44xx: fix the request (except 4429, after retry_after_s); 45xx: retry with backoff."""
    assert code // 100 in (44, 45)
    assert code.retryable == (code // 100 == 45 or code is Code.RATE_LIMITED)


def test_codes_are_private_websocket_close_codes() -> None:
    """[R-CODE-1] Every code lies in 4000-4999, so it doubles as a WebSocket close code."""
    assert all(4000 <= code <= 4999 for code in Code)


def test_code_values_are_unique() -> None:
    """No two names share a number (an IntEnum would silently make an alias)."""
    values = [member.value for member in Code.__members__.values()]
    assert len(values) == len(set(values))
    assert len(Code.__members__) == len(Code)


def test_code_last_digits_are_an_http_status() -> None:
    """[R-CODE-1] The last three digits are the nearest HTTP status: a 4xx for the client's fault, a 5xx for ours."""
    for code in Code:
        assert 400 <= code - 4000 <= 599
        assert (code - 4000 >= 500) == code.retryable or code is Code.RATE_LIMITED
