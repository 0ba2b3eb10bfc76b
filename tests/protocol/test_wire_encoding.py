"""How server frames are encoded: the rules of docs/protocol.md section 2 that the encoder alone decides."""

from __future__ import annotations

import json

from roost.protocol import frames
from roost.protocol.types import Message


def test_absent_optional_fields_are_left_out_and_reply_refs_are_always_present() -> None:
    """[R-WIRE-5] An optional field without a value is left out of a server frame (``ref`` of a ``pong`` for a
    ping without ``id``, the optional fields of ``error``), while ``ref`` of ``ok``, ``subscribed``, ``ack``
    and ``history`` is always present, ``null`` when the request had no ``id``."""
    assert json.loads(frames.encode(frames.Pong())) == {"type": "pong"}
    error = json.loads(frames.encode(frames.Error(code=4400, reason="bad")))
    assert error == {"type": "error", "code": 4400, "reason": "bad"}
    replies = [
        frames.Ok(ref=None, room="r"),
        frames.Subscribed(ref=None, room="r", epoch="e", head=0, after=0),
        frames.Ack(ref=None, room="r", cmid="c", seq=1, ts=1, dup=False),
        frames.HistoryPage(ref=None, room="r", messages=[], has_more=False, epoch="e", head=0, first=1),
    ]
    for reply in replies:
        encoded = json.loads(frames.encode(reply))
        assert "ref" in encoded and encoded["ref"] is None, encoded


def test_an_encoded_frame_never_holds_a_raw_newline() -> None:
    """[R-WIRE-3] JSON text never contains a raw newline (newlines in strings are escaped), so a client can
    split a batched WebSocket frame on ``\\n``."""
    message = Message(room="r", seq=1, cmid="c", sender="a", body="two\nlines\r\n", ts=1)
    encoded = frames.encode(message)
    assert b"\n" not in encoded and frames.split(encoded + b"\n" + encoded) == [encoded, encoded]
