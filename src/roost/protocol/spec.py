"""The protocol as data: one machine-readable definition built from the typed definitions the server runs.

docs/protocol.json is ``render(build())`` checked in (``roost spec`` prints it), and the generated tables of
docs/protocol.md come from the same dictionary (``doc_regions``); tests regenerate both and compare bytes,
so neither can drift from ``frames``, ``codes``, ``errors`` or ``config.Limits``. The prose of the doc
states the rules that types cannot; each carries a rule id (``[R-AREA-N]``) that a test names.

Nothing here is hand-kept except the ordering classes, which a test compares with the gateway's dispatch.
The only I/O is reading this package's own source for attribute docstrings (``attribute_docs``).
"""

from __future__ import annotations

import ast
import inspect
import json
import re
import typing
from typing import Any, Final

import msgspec

from ..config import Limits
from . import errors, frames, types
from .codes import Code

__all__ = [
    "CONTROL",
    "PIPELINED",
    "WRITES",
    "attribute_docs",
    "build",
    "doc_regions",
    "render",
    "splice",
]

VERSION: Final = 1
"""Bumped when the shape of the document changes (not when the protocol grows: that is append-only)."""

WRITES: Final[tuple[type[msgspec.Struct], ...]] = (frames.Send, frames.Edit, frames.Delete, frames.React)
"""Frames that store a message: pipelined, and each waits for the connection's previous write."""
PIPELINED: Final[tuple[type[msgspec.Struct], ...]] = (frames.Ping, frames.Typing)
"""Frames that wait only for the most recent control frame."""
CONTROL: Final[tuple[type[msgspec.Struct], ...]] = tuple(
    cls for cls in typing.get_args(frames.ClientFrame) if cls not in WRITES + PIPELINED
)
"""Frames that wait until every earlier frame of the connection has been handled."""


def attribute_docs(cls: type) -> dict[str, str]:
    """The docstring written under each attribute of ``cls`` (fields, enum members), whitespace folded."""
    body = ast.parse(inspect.getsource(cls)).body[0]
    assert isinstance(body, ast.ClassDef)
    docs: dict[str, str] = {}
    for node, after in zip(body.body, body.body[1:], strict=False):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            name = node.target.id
        elif isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
        else:
            continue
        if isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant) and isinstance(after.value.value, str):
            docs[name] = " ".join(after.value.value.split())
    return docs


def _type_name(info: msgspec.inspect.Type) -> str:
    """The doc's name of a wire type: ``string``, ``int``, ``list of msg``, ..."""
    if isinstance(info, msgspec.inspect.StrType):
        return "string"
    if isinstance(info, msgspec.inspect.BoolType):
        return "bool"
    if isinstance(info, msgspec.inspect.IntType):
        return "int"
    if isinstance(info, msgspec.inspect.FloatType):
        return "float"
    if isinstance(info, msgspec.inspect.ListType | msgspec.inspect.VarTupleType):  # both are JSON arrays
        return f"list of {_type_name(info.item_type)}"
    if isinstance(info, msgspec.inspect.StructType):
        tag = info.cls.__struct_config__.tag
        assert isinstance(tag, str), info.cls
        return tag
    raise TypeError(f"no wire name for {info!r}")  # a new field type: name it here


def _field(field: msgspec.inspect.Field) -> dict[str, Any]:
    """One field: its wire type, whether it may be absent, whether it may be null, and its default."""
    info = field.type
    nullable = False
    if isinstance(info, msgspec.inspect.UnionType):
        members = [t for t in info.types if not isinstance(t, msgspec.inspect.NoneType)]
        assert len(members) == 1 and len(members) < len(info.types), f"{field.name}: only T | None is supported"
        nullable, info = True, members[0]
    out: dict[str, Any] = {"name": field.encode_name, "type": _type_name(info), "required": field.required}
    out["nullable"] = nullable
    if not field.required:  # a tuple is a JSON array: the definition holds what a JSON reader reads back
        out["default"] = list(field.default) if isinstance(field.default, tuple) else field.default
    return out


def doc_type(field: dict[str, Any]) -> str:
    """The Type cell of the doc's field tables: ``T``; ``T?`` (absent or null); ``T or null`` (present, may be null).

    A field with a default other than null may be absent but not null: its type is plain ``T``."""
    kind = str(field["type"])
    item = kind.removeprefix("list of ")
    name = kind if item not in _FRAME_TAGS else kind.replace(item, f"`{item}`")
    if not field["nullable"]:
        return name
    return f"{name}?" if not field["required"] else f"{name} or null"


def _frame(cls: type[msgspec.Struct]) -> dict[str, Any]:
    info = msgspec.inspect.type_info(cls)
    assert isinstance(info, msgspec.inspect.StructType)
    tag = cls.__struct_config__.tag
    doc = " ".join(cls.__doc__.split()) if cls.__doc__ else None
    return {"type": tag, "struct": cls.__name__, "doc": doc, "fields": [_field(f) for f in info.fields]}


_FRAME_TAGS: Final = frozenset(
    str(cls.__struct_config__.tag)
    for cls in (*typing.get_args(frames.ClientFrame), *typing.get_args(frames.ServerFrame))
)


def _error_class(code: Code) -> type[errors.RoostError]:
    """The exception the server raises for ``code`` (the most specific one whose default it is)."""
    found: type[errors.RoostError] = errors.RoostError
    pending = list(errors.RoostError.__subclasses__())
    while pending:
        cls = pending.pop()
        if cls.default_code is code:
            found = cls
        pending.extend(cls.__subclasses__())
    return found


def _retry_after(code: Code) -> tuple[str, float | None]:
    """("none" | "fixed" | "computed", the fixed value): what ``errors.retry_after`` gives an error of ``code``."""
    cls = _error_class(code)
    if cls is errors.RateLimited:
        probes = {errors.retry_after(errors.RateLimited("probe", wait)) for wait in (0.25, 2.0)}
        return ("computed", None) if probes == {0.25, 2.0} else ("none", None)
    value = errors.retry_after(errors.RoostError("probe", code))
    return ("none", None) if value is None else ("fixed", value)


def _code(code: Code, meaning: str) -> dict[str, Any]:
    kind, value = _retry_after(code)
    return {
        "code": int(code),
        "name": code.name,
        "meaning": meaning,
        "class": "request" if code < 4500 else "server",
        "retryable": code.retryable,
        "retry_after": kind,
        "retry_after_s": value,
    }


def _limits() -> list[dict[str, Any]]:
    docs = attribute_docs(Limits)
    defaults = Limits()
    return [
        {"name": name, "default": getattr(defaults, name), "meaning": docs[name]}
        for name in (f for f in Limits.__dataclass_fields__)
    ]


def _tags(classes: tuple[type[msgspec.Struct], ...]) -> list[str]:
    return [str(cls.__struct_config__.tag) for cls in classes]


def build() -> dict[str, Any]:
    """The whole definition as plain JSON-able data, in a fixed order (so its rendering is byte-stable)."""
    client: tuple[type[msgspec.Struct], ...] = typing.get_args(frames.ClientFrame)
    server: tuple[type[msgspec.Struct], ...] = typing.get_args(frames.ServerFrame)
    code_docs = attribute_docs(Code)
    schemas, components = msgspec.json.schema_components([frames.ClientFrame, frames.ServerFrame])
    return {
        "title": "The Roost wire protocol",
        "version": VERSION,
        "source": "generated by roost.protocol.spec from roost.protocol.frames, codes, errors and roost.config.Limits",
        "prose": "docs/protocol.md",
        "frames": {"client": [_frame(c) for c in client], "server": [_frame(c) for c in server]},
        "names": {
            "room": types._ROOM_RE.pattern,
            "user": types._USER_RE.pattern,
            "cmid": types._CMID_RE.pattern,
        },
        "codes": [_code(code, code_docs[code.name]) for code in Code],
        "code_rules": {
            "request": "44xx: the request itself is wrong; resending it unchanged fails again",
            "server": "45xx: the server or the connection is in trouble; reconnect or retry with backoff",
            "retryable": "code >= 4500 or code == 4429 (Code.retryable)",
            "http_status": "an error answer of the HTTP API has the status code - 4000",
        },
        "ordering": {
            "writes": _tags(WRITES),
            "pipelined": _tags(PIPELINED),
            "control": _tags(CONTROL),
        },
        "limits": _limits(),
        # Through JSON and back: a tuple default (``()``) is the array a JSON reader reads.
        "json_schema": json.loads(json.dumps({"client": schemas[0], "server": schemas[1], "$defs": components})),
    }


def render(spec: dict[str, Any]) -> str:
    """The bytes of docs/protocol.json: two-space indent, UTF-8, a final newline."""
    return json.dumps(spec, indent=2, ensure_ascii=False) + "\n"


# ---- the generated regions of docs/protocol.md -------------------------------------------------

_BEGIN: Final = "<!-- generated by scripts/gen_protocol_doc.py from docs/protocol.json: {name} -->"
_END: Final = "<!-- end of generated {name} -->"


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return f"{value:g}"
    return str(value).replace("|", "\\|")


def _code_table(spec: dict[str, Any]) -> list[str]:
    lines = [
        "| Code | Name | Class | May succeed unchanged later (`Code.retryable`) | `retry_after_s` |",
        "|---|---|---|---|---|",
    ]
    for c in spec["codes"]:
        after = {"none": "", "fixed": f"{_cell(c['retry_after_s'])} s", "computed": "set by the rate limit"}
        retry = "yes" if c["retryable"] else "no"
        lines.append(f"| {c['code']} | `{c['name']}` | {c['class']} | {retry} | {after[c['retry_after']]} |")
    return lines


def _limit_table(spec: dict[str, Any]) -> list[str]:
    lines = ["| Limit (`roost.config.Limits`) | Default | Meaning |", "|---|---|---|"]
    for limit in spec["limits"]:
        lines.append(f"| `{limit['name']}` | {_cell(limit['default'])} | {_cell(limit['meaning'])} |")
    return lines


def doc_regions(spec: dict[str, Any]) -> dict[str, str]:
    """The text between each pair of marker comments in docs/protocol.md, by region name."""
    return {"codes": "\n".join(_code_table(spec)), "limits": "\n".join(_limit_table(spec))}


def splice(doc: str, regions: dict[str, str]) -> str:
    """``doc`` with each marked region replaced; a region whose markers are missing is an error."""
    for name, text in regions.items():
        begin, end = _BEGIN.format(name=name), _END.format(name=name)
        pattern = re.compile(re.escape(begin) + r"\n.*?" + re.escape(end), re.S)
        if len(pattern.findall(doc)) != 1:
            raise ValueError(f"docs/protocol.md needs exactly one pair of markers for {name!r}: {begin} ... {end}")
        doc = pattern.sub(f"{begin}\n{text}\n{end}".replace("\\", "\\\\"), doc)
    return doc
