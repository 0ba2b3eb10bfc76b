"""The three wire shapes the load generator speaks: Roost's protocol, bare broadcast, and Socket.IO.

Every shape carries the send time in the message body (``~T<ns>:<step>:``), so one byte search
extracts it from whatever frame comes back, however the server re-serialized the JSON around it
(python-socketio writes ``"body": "..."`` with a space; Node appends a recovery offset).
"""

from __future__ import annotations

import json
from typing import Final

__all__ = ["BODY_MARK", "SHAPES", "body", "parse_mark"]

BODY_MARK: Final = b"~T"
SHAPES: Final = ("roost", "bare", "socketio")


def body(t_ns: int, step: int, size: int) -> str:
    """A message body of ``size`` bytes that names its send time and the step it belongs to."""
    head = f"~T{t_ns}:{step}:"
    return head + "x" * max(0, size - len(head))


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


def bare_send(room: str, seq: int, t_ns: int, text: str) -> bytes:
    return b'{"room":"%s","seq":%d,"t":%d,"body":"%s"}' % (room.encode(), seq, t_ns, text.encode())


def socketio_send(room: str, ack: int, t_ns: int, text: str) -> bytes:
    return b'42%d["msg",{"room":"%s","t":%d,"body":"%s"}]' % (ack, room.encode(), t_ns, text.encode())


def socketio_join(room: str) -> bytes:
    return b"421" + json.dumps(["join", room]).encode()
