"""The three wire shapes the load generator speaks: Roost's protocol, bare broadcast, and Socket.IO.

Every shape carries the send time in the message body (``~T<ns>:<step>:``), so one byte search
extracts it from whatever frame comes back, however the server re-serialized the JSON around it
(python-socketio writes ``"body": "..."`` with a space; Node appends a recovery offset).
"""

from __future__ import annotations

import json
import random
from typing import Final

import msgspec

__all__ = ["BODY_MARK", "SHAPES", "body", "parse_mark"]

BODY_MARK: Final = b"~T"
SHAPES: Final = ("roost", "bare", "socketio")


_VOCABULARY: Final = (
    "the of and to in is you that it he was for on are as with his they at be this have from or one had by word but"
    " not what all were we when your can said there use an each which she do how their if will up other about out"
    " many then them these so some her would make like him into time has look two more write go see number no way"
    " could people my than first water been call who oil its now find long down day did get come made may part"
    " room message send later tonight meeting thanks ok sure lunch deploy build test merge review"
)
_WORDS: Final = tuple(_VOCABULARY.split(" "))


def body(t_ns: int, step: int, size: int, words: random.Random | None = None) -> str:
    """A message body of ``size`` bytes that names its send time and the step it belongs to, padded with ``x``, or
    with ``words`` drawn from a small vocabulary (text compresses as chat does, not as a run of one letter)."""
    head = f"~T{t_ns}:{step}:"
    if words is None:
        return head + "x" * max(0, size - len(head))
    parts = [head]
    length = len(head)
    while length < size:
        word = words.choice(_WORDS)
        parts.append(word + " ")
        length += len(word) + 1
    return "".join(parts)[:size]


def parse_mark(data: bytes, start: int) -> tuple[int, int, int]:
    """Read ``<ns>:<step>:`` at ``start`` (just after the mark): (t_ns, step, end index)."""
    colon = data.index(b":", start)
    t_ns = int(data[start:colon])
    colon2 = data.index(b":", colon + 1)
    return t_ns, int(data[colon + 1 : colon2]), colon2


def roost_send(room: str, cmid: str, text: str, ref: str) -> bytes:
    return b'{"type":"send","room":"%s","cmid":"%s","body":"%s","id":"%s"}' % (
        room.encode(),
        cmid.encode(),
        text.encode(),
        ref.encode(),
    )


def roost_send_msgpack(room: str, cmid: str, text: str, ref: str) -> bytes:
    """The same ``send`` frame as ``roost_send``, as a MessagePack map (``roost.v1.msgpack``)."""
    return msgspec.msgpack.encode({"type": "send", "room": room, "cmid": cmid, "body": text, "id": ref})


def bare_send(room: str, seq: int, t_ns: int, text: str) -> bytes:
    return b'{"room":"%s","seq":%d,"t":%d,"body":"%s"}' % (room.encode(), seq, t_ns, text.encode())


def socketio_send(room: str, ack: int, t_ns: int, text: str) -> bytes:
    return b'42%d["msg",{"room":"%s","t":%d,"body":"%s"}]' % (ack, room.encode(), t_ns, text.encode())


def socketio_join(room: str) -> bytes:
    return b"421" + json.dumps(["join", room]).encode()
