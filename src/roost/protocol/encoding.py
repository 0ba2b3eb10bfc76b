"""The two encodings of the wire, negotiated by WebSocket subprotocol: JSON (the default) and MessagePack.

Both carry exactly the frames of ``roost.protocol.frames``: the same structures, field names and validation,
and the same errors (bad input is ``ProtocolError(BAD_FRAME)``: a malformed MessagePack frame gets the code a
malformed JSON one gets). What differs is the bytes, the WebSocket frame kind, and how the server packs several
frames into one WebSocket message (docs/protocol.md section 2, R-WIRE-3 and R-WIRE-10):

* ``roost.v1.json`` (or no subprotocol): text frames; a client sends one JSON object per message, the server one or
  more objects separated by ``"\\n"``.
* ``roost.v1.msgpack``: binary frames; a client sends one MessagePack map per message, the server one MessagePack
  array of one or more maps (an array header, then the maps as they are: packing costs a header, not a copy
  per frame).

The server's other parts produce JSON (the bus carries JSON-encoded frames between nodes); ``Codec.recode``
turns one such payload into this encoding, once per fan-out, however many recipients share it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import msgspec

from . import frames
from .codes import Code
from .errors import ProtocolError

__all__ = [
    "BY_SUBPROTOCOL",
    "JSON",
    "MSGPACK",
    "SUBPROTOCOLS",
    "Codec",
    "negotiate",
]

SUBPROTOCOL_JSON: Final = "roost.v1.json"
SUBPROTOCOL_MSGPACK: Final = "roost.v1.msgpack"


@dataclass(frozen=True, slots=True, eq=False)
class Codec:
    """One encoding: how frames become bytes and back, and how the server packs several into one message."""

    name: str
    """``json`` or ``msgpack``."""
    subprotocol: str
    binary: bool
    """Binary WebSocket frames (MessagePack) rather than text ones (JSON)."""
    media_type: str
    encode: Callable[[Any], bytes]
    """One frame (a ``frames`` Struct or a ``Message``) in this encoding."""
    decode_client: Callable[[bytes | str], frames.ClientFrame]
    """One client frame, or ``ProtocolError(BAD_FRAME)`` saying what is wrong."""
    peek_ref: Callable[[bytes | str], tuple[str | None, str | None]]
    """``(id, room)`` of a frame that failed to decode, where readable (R-REF-2)."""
    decode_server: Callable[[bytes | str], frames.ServerFrame]
    split: Callable[[bytes | str], list[bytes]]
    """The encoded frames of one server WebSocket message (clients)."""
    pack: Callable[[Sequence[bytes]], bytes]
    """Several encoded server frames as one WebSocket message (at least one)."""
    recode: Callable[[bytes], bytes] | None
    """A JSON-encoded server frame in this encoding; None for JSON itself (nothing to do)."""


# ---- JSON ---------------------------------------------------------------------------------------


def _json_pack(parts: Sequence[bytes]) -> bytes:
    return parts[0] if len(parts) == 1 else b"\n".join(parts)


JSON: Final = Codec(
    name="json",
    subprotocol=SUBPROTOCOL_JSON,
    binary=False,
    media_type="application/json",
    encode=frames.encode,
    decode_client=frames.decode_client,
    peek_ref=frames.peek_ref,
    decode_server=frames.decode_server,
    split=frames.split,
    pack=_json_pack,
    recode=None,
)

# ---- MessagePack ----------------------------------------------------------------------------------

_mp_encode: Final = msgspec.msgpack.Encoder().encode
_mp_client: Final[msgspec.msgpack.Decoder[frames.ClientFrame]] = msgspec.msgpack.Decoder(frames.ClientFrame)
_mp_server: Final[msgspec.msgpack.Decoder[frames.ServerFrame]] = msgspec.msgpack.Decoder(frames.ServerFrame)
_mp_peek: Final = msgspec.msgpack.Decoder(frames._Peek)
_mp_batch: Final = msgspec.msgpack.Decoder(list[msgspec.Raw])
_json_any: Final = msgspec.json.Decoder()

_FIXARRAY_MAX: Final = 15
_ARRAY16_MAX: Final = 0xFFFF


def _mp_decode_client(data: bytes | str) -> frames.ClientFrame:
    if isinstance(data, str):  # a text frame has no business here: the endpoint refuses it before this
        raise ProtocolError("expected a MessagePack binary frame", Code.BAD_FRAME)
    try:
        return _mp_client.decode(data)
    except msgspec.ValidationError as exc:
        raise ProtocolError(f"invalid frame: {exc}", Code.BAD_FRAME) from None
    except msgspec.DecodeError as exc:
        raise ProtocolError(f"malformed MessagePack: {exc}", Code.BAD_FRAME) from None
    except UnicodeError as exc:
        raise ProtocolError(f"invalid text: {exc}", Code.BAD_FRAME) from None
    except RecursionError:
        raise ProtocolError("MessagePack nested too deeply", Code.BAD_FRAME) from None


def _mp_peek_ref(data: bytes | str) -> tuple[str | None, str | None]:
    if isinstance(data, str):
        return None, None
    try:
        peeked = _mp_peek.decode(data)
    except (msgspec.MsgspecError, UnicodeError, RecursionError):
        return None, None
    return frames.named_by(peeked)


def _mp_decode_server(data: bytes | str) -> frames.ServerFrame:
    try:
        return _mp_server.decode(data.encode() if isinstance(data, str) else data)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise ProtocolError(f"invalid server frame: {exc}", Code.BAD_FRAME) from None


def _mp_split(data: bytes | str) -> list[bytes]:
    """A server message is one array of frames: each element, still encoded."""
    try:
        return [bytes(part) for part in _mp_batch.decode(data.encode() if isinstance(data, str) else data)]
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise ProtocolError(f"invalid server message: {exc}", Code.BAD_FRAME) from None


def array_header(count: int) -> bytes:
    """The MessagePack header of an array of ``count`` elements (fixarray, array 16 or array 32)."""
    if count <= _FIXARRAY_MAX:
        return bytes((0x90 | count,))
    if count <= _ARRAY16_MAX:
        return b"\xdc" + count.to_bytes(2, "big")
    return b"\xdd" + count.to_bytes(4, "big")


def _mp_pack(parts: Sequence[bytes]) -> bytes:
    return array_header(len(parts)) + b"".join(parts)


def _mp_recode(data: bytes) -> bytes:
    """A JSON-encoded frame as MessagePack: the same map, field for field (a generic decode keeps every field, in
    order, and every number's kind: a JSON integer stays an integer, a fraction a float)."""
    return _mp_encode(_json_any.decode(data))


MSGPACK: Final = Codec(
    name="msgpack",
    subprotocol=SUBPROTOCOL_MSGPACK,
    binary=True,
    media_type="application/vnd.msgpack",
    encode=_mp_encode,
    decode_client=_mp_decode_client,
    peek_ref=_mp_peek_ref,
    decode_server=_mp_decode_server,
    split=_mp_split,
    pack=_mp_pack,
    recode=_mp_recode,
)

BY_SUBPROTOCOL: Final = {c.subprotocol: c for c in (JSON, MSGPACK)}
SUBPROTOCOLS: Final = tuple(BY_SUBPROTOCOL)
"""What the server offers (``Sec-WebSocket-Protocol``); of several a client offers, the first it lists wins."""
BY_NAME: Final = {c.name: c for c in (JSON, MSGPACK)}


def negotiate(offered: str | None) -> Codec | None:
    """The codec for a ``Sec-WebSocket-Protocol`` request header: the first offered subprotocol the server knows
    (the client's order of preference, RFC 6455 4.2.2), JSON without the header; None when every offered one is
    unknown (the server then answers without a subprotocol, and speaks JSON: R-WIRE-9)."""
    if offered is None or not offered.strip():
        return JSON
    for name in offered.split(","):
        codec = BY_SUBPROTOCOL.get(name.strip())
        if codec is not None:
            return codec
    return None
