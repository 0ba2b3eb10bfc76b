"""The two encodings of the wire (roost.protocol.encoding), sans I/O: the same frames, the same errors."""

from __future__ import annotations

import json
import typing

import msgspec
import pytest

from roost.protocol import frames
from roost.protocol.codes import Code
from roost.protocol.encoding import BY_NAME, JSON, MSGPACK, SUBPROTOCOLS, array_header, negotiate
from roost.protocol.errors import ProtocolError
from roost.protocol.types import Message

CLIENT_FRAMES: list[frames.ClientFrame] = [
    frames.Auth(token="t.o.k", id="a"),
    frames.Create(room="r", kind="private", id="1"),
    frames.Dm(user="bob"),
    frames.Invite(room="r", user="bob", id="2"),
    frames.Subscribe(room="r", after=7, epoch="e"),
    frames.Send(room="r", cmid="c", body="hé\nllo", id="3", reply_to=2, attachments=("x", "y")),
    frames.Edit(room="r", target=2, body="b", cmid="c2"),
    frames.Delete(room="r", target=2, erase=True),
    frames.React(room="r", target=2, emoji="👍", remove=True),
    frames.History(room="r", before=100, limit=20, thread=3),
    frames.Ping(id="p"),
    frames.Typing(room="r"),
    frames.Read(room="r", seq=9),
]

MESSAGE = Message(room="r", seq=3, cmid="c", sender="alice", body='{"a":"\\n"} é', ts=1_795_760_156_415, kind="rich")
SERVER_FRAMES: list[frames.ServerFrame] = [
    frames.Welcome("alice", "s", 16384, 65536, ref="a", inbox="~u:alice"),
    frames.Ok(ref=None, room="r"),
    frames.Subscribed(ref="1", room="r", epoch="e", head=2**53, after=0),
    frames.Live(room="r", seq=3),
    frames.Ack(ref="3", room="r", cmid="c", seq=3, ts=1, dup=True),
    frames.HistoryPage(ref=None, room="r", messages=[MESSAGE, MESSAGE], has_more=False, epoch="e", head=3, first=1),
    frames.Pong(),
    frames.TypingEvent(room="r", user="bob"),
    frames.PresenceEvent(room="r", user="bob", status="online"),
    frames.Receipt(room="r", user="bob", seq=3),
    frames.Error(code=4429, reason="slow down", ref="x", room="r", retry_after_s=0.25),
    frames.Error(code=4410, reason="resync", room="r", epoch="e", head=9, first=4),
    MESSAGE,
]


def test_every_frame_type_is_covered() -> None:
    """The lists above hold one of each frame the protocol has (so the checks below cover them all)."""
    assert {type(f) for f in CLIENT_FRAMES} | {frames.Join, frames.Leave, frames.Unsubscribe, frames.Kick} | {
        frames.Ban,
        frames.Unban,
        frames.Role,
        frames.Uninvite,
        frames.Decline,
    } == set(typing.get_args(frames.ClientFrame))
    assert {type(f) for f in SERVER_FRAMES} == set(typing.get_args(frames.ServerFrame))


@pytest.mark.parametrize("frame", CLIENT_FRAMES, ids=lambda f: type(f).__name__)
def test_a_client_frame_decodes_the_same_from_either_encoding(frame: frames.ClientFrame) -> None:
    """[R-WIRE-10] A MessagePack client frame is the JSON one's structure as a map: same field names, same
    values, decoded to the same frame."""
    packed = MSGPACK.encode(frame)
    assert MSGPACK.decode_client(packed) == JSON.decode_client(JSON.encode(frame)) == frame
    assert msgspec.msgpack.decode(packed) == json.loads(JSON.encode(frame))


@pytest.mark.parametrize("frame", SERVER_FRAMES, ids=lambda f: type(f).__name__)
def test_a_server_frame_is_the_same_map_and_a_json_payload_recodes_to_it(frame: frames.ServerFrame) -> None:
    """[R-WIRE-10] [R-WIRE-13] A server frame in MessagePack is its JSON object as a map, field for field (integers
    stay integers, fractions floats); re-encoding the JSON bytes the bus carries gives exactly the bytes encoding
    the frame directly gives, so a recoded fan-out and a direct reply look alike."""
    as_json = JSON.encode(frame)
    packed = MSGPACK.encode(frame)
    assert MSGPACK.recode is not None and MSGPACK.recode(as_json) == packed
    assert msgspec.msgpack.decode(packed) == json.loads(as_json)
    assert MSGPACK.decode_server(packed) == frame
    assert JSON.recode is None


@pytest.mark.parametrize("count", [1, 2, 15, 16, 256])
def test_the_server_packs_frames_into_one_array_and_a_client_splits_it(count: int) -> None:
    """[R-WIRE-10] A server WebSocket message over MessagePack is one array of one or more frames (a header
    in front of the frames as they are); a client takes its elements, each one frame."""
    parts = [MSGPACK.encode(frames.Live(room="r", seq=i)) for i in range(count)]
    message = MSGPACK.pack(parts)
    assert message == array_header(count) + b"".join(parts)
    assert MSGPACK.split(message) == parts
    assert [MSGPACK.decode_server(p) for p in MSGPACK.split(message)] == [frames.Live("r", i) for i in range(count)]
    assert msgspec.msgpack.decode(message) == [{"type": "live", "room": "r", "seq": i} for i in range(count)]


def test_array_headers_follow_the_messagepack_spec() -> None:
    for count in (0, 1, 15, 16, 65535, 65536):
        assert msgspec.msgpack.decode(array_header(count) + b"\xc0" * count) == [None] * count


def test_a_server_message_that_is_not_an_array_is_refused_by_a_client() -> None:
    with pytest.raises(ProtocolError) as caught:
        MSGPACK.split(MSGPACK.encode(frames.Pong()))
    assert caught.value.code == Code.BAD_FRAME


BAD = [
    (b"\xc1", "malformed"),  # never used opcode
    (b"\x81\xa4ty", "malformed"),  # cut short
    (MSGPACK.encode(frames.Ping(id="a")) + MSGPACK.encode(frames.Ping(id="b")), "malformed"),  # two maps
    (msgspec.msgpack.encode([{"type": "ping", "id": "a"}]), "invalid"),  # an array
    (msgspec.msgpack.encode("ping"), "invalid"),
    (msgspec.msgpack.encode({"type": "nope", "id": "a"}), "invalid"),
    (msgspec.msgpack.encode({"type": "send", "room": 5, "cmid": "c", "body": "b", "id": "a"}), "invalid"),
    (msgspec.msgpack.encode({"type": "read", "room": "r", "seq": 1.0}), "invalid"),  # a float is not an int
    (msgspec.msgpack.encode({"type": "send", "room": "r", "cmid": "c", "body": b"bin"}), "invalid"),  # bin != str
    (b"\x82\xa4type\xa4ping\xa1x" + b"\x91" * 100_000 + b"\xc0", "nested"),
]


@pytest.mark.parametrize(("data", "kind"), BAD, ids=[f"{i}-{k}" for i, (_, k) in enumerate(BAD)])
def test_an_invalid_messagepack_frame_gets_the_code_invalid_json_gets(data: bytes, kind: str) -> None:
    """[R-WIRE-11] Whatever is wrong with a MessagePack client frame (not MessagePack, not one map, an unknown type,
    a missing or mistyped field, nested too deeply) it is a ``ProtocolError`` 4400, as for JSON."""
    with pytest.raises(ProtocolError) as caught:
        MSGPACK.decode_client(data)
    assert caught.value.code == Code.BAD_FRAME
    assert {"malformed": "malformed MessagePack", "invalid": "invalid frame", "nested": "nested too deeply"}[
        kind
    ] in caught.value.reason


def test_validation_errors_read_the_same_in_both_encodings() -> None:
    """[R-WIRE-11] The same mistake gets the same reason, whichever the encoding."""
    wrong = {"type": "send", "room": 5, "cmid": "c", "body": "b", "id": "a"}
    reasons = []
    for data, codec in ((json.dumps(wrong).encode(), JSON), (msgspec.msgpack.encode(wrong), MSGPACK)):
        with pytest.raises(ProtocolError) as caught:
            codec.decode_client(data)
        reasons.append(caught.value.reason)
    assert reasons[0] == reasons[1] == "invalid frame: Expected `str`, got `int` - at `$.room`"


def test_a_text_frame_is_not_a_messagepack_frame() -> None:
    """[R-WIRE-11] Text handed to the MessagePack decoder is a 4400 (the endpoint refuses text frames before)."""
    with pytest.raises(ProtocolError) as caught:
        MSGPACK.decode_client('{"type":"ping"}')
    assert caught.value.code == Code.BAD_FRAME
    assert MSGPACK.peek_ref('{"id":"a"}') == (None, None)


def test_the_id_and_room_of_a_bad_frame_are_read_when_they_are_strings() -> None:
    """[R-REF-2] [R-WIRE-11] A MessagePack frame that fails to decode still names its ``id`` (and ``room``) in its
    error, when it is a map whose ``id`` is a string; nothing when it is not a map or not MessagePack."""
    bad = msgspec.msgpack.encode({"type": "send", "room": "r", "id": "7"})
    assert MSGPACK.peek_ref(bad) == ("7", "r")
    assert MSGPACK.peek_ref(msgspec.msgpack.encode({"type": "x", "id": 7, "room": 5})) == (None, None)
    assert MSGPACK.peek_ref(msgspec.msgpack.encode([{"id": "7"}])) == (None, None)
    assert MSGPACK.peek_ref(b"\xc1") == (None, None)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, "json"),
        ("", "json"),
        ("roost.v1.json", "json"),
        ("roost.v1.msgpack", "msgpack"),
        ("chat, roost.v1.msgpack", "msgpack"),
        ("roost.v1.msgpack, roost.v1.json", "msgpack"),
        ("roost.v1.json,roost.v1.msgpack", "json"),
        ("chat", None),
        ("roost.v2.msgpack", None),
    ],
)
def test_the_subprotocol_is_the_first_offered_one_the_server_knows(header: str | None, expected: str | None) -> None:
    """[R-WIRE-9] No ``Sec-WebSocket-Protocol``: JSON; else the first subprotocol of the client's list the server
    knows; none known: None (the server answers without one, and speaks JSON)."""
    codec = negotiate(header)
    assert (codec.name if codec is not None else None) == expected
    assert SUBPROTOCOLS == ("roost.v1.json", "roost.v1.msgpack")
    assert set(BY_NAME) == {"json", "msgpack"}
